"""How sure we are: Wilson intervals for pass rates and a paired bootstrap for comparing two policies.

Modelling assumptions:
- Wilson score interval. The requests of a slice are independent trials that pass with one fixed
  probability; the interval is the set of pass rates a two-sided score test at the given confidence does not
  reject. Unlike the normal ("Wald") interval it stays inside 0..1 and keeps close to its nominal coverage
  for rates near 0 or 1 and for small slices: 40 passes out of 40 give a 95% lower bound of 0.912, so 40
  requests cannot prove a 95% pass rate.
- Paired bootstrap. Requests are exchangeable draws from the traffic (within a stratum, when strata are
  given), and both policies answered the same requests. The resampling unit is the request: every resample
  draws request indices with replacement once and uses them for both policies, so what the two policies
  have in common (a request that is hard for both) cancels out of the difference. With strata (slices),
  each stratum is resampled within itself, keeping its size. Intervals are percentile intervals of the
  resampled statistic, except for the cost changes: costs are skewed, so their intervals are studentized
  (bootstrap-t: the resampled changes standardised by each resample's own standard error, from sums of
  squares; Efron and Tibshirani, An Introduction to the Bootstrap, ch. 12), which keeps coverage at a few
  hundred requests where the percentile interval falls to 91-93% (up to 20,000 requests; beyond, the
  percentile interval, which then covers as it should). The draws are exact resampling with replacement (uniform request indices), not a
  Poisson or other approximation; the same inputs and seed give identical intervals.
- Latency quantiles interpolate linearly between order statistics, exactly as numpy's default method does.
  A resample's quantile is found from how many times each request was drawn: sorted by latency, the k-th
  order statistic of the resample is the first request whose running count exceeds k. Only the upper part
  of each stratum (from a margin of six binomial standard deviations below the quantile's rank) is
  scanned; a resample whose quantile falls below that margin (a six-sigma event, of the order of 1e-9 per
  resample) is scanned in full, so the result is exact either way.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from simulator.core.errors import RoutesimError
from simulator.core.money import NANO_PER_USD

# Bound on resamples x requests held at once per worker thread: a block holds its counts and about two
# temporaries of that size, 8 bytes an element, so about 100 MB per worker.
BLOCK_ELEMENTS = 1 << 22
# How far below a quantile's rank (in binomial standard deviations, plus a few requests) the scan starts.
TAIL_SIGMAS = 6.0
TAIL_SLACK = 8

PASS_RATE_CHANGE = "pass_rate_change"
COST_CHANGE = "cost_per_request_change_usd"
COST_RELATIVE_CHANGE = "cost_relative_change"
LATENCY_CHANGE = "latency_quantile_change_ms"
BASELINE_PASS_RATE = "baseline_pass_rate"
CANDIDATE_PASS_RATE = "candidate_pass_rate"
BASELINE_COST = "baseline_cost_per_request_usd"
CANDIDATE_COST = "candidate_cost_per_request_usd"
BASELINE_LATENCY = "baseline_latency_quantile_ms"
CANDIDATE_LATENCY = "candidate_latency_quantile_ms"
# Cost changes get studentized (bootstrap-t) intervals: costs are skewed, and at a few hundred requests the
# percentile interval of a mean of skewed values covers too rarely (91-93% for a nominal 95%).
STUDENTIZED = (COST_CHANGE, COST_RELATIVE_CHANGE)
# Above this many requests in a stratum the percentile interval of a cost change covers as it should (the sampling
# distribution of a mean is close to normal), so the sums the studentized interval needs are skipped.
STUDENTIZED_MAX_REQUESTS = 20_000
SE_PREFIX = "standard_error:"


def check_confidence(confidence: float, *, option: str = "--confidence") -> float:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise RoutesimError(f"confidence must lie strictly between 0 and 1, got {confidence!r}", where=option,
                            fix="e.g. 0.95 for 95% intervals")
    return float(confidence)


def z_score(confidence: float) -> float:
    """The standard normal quantile of a two-sided interval: 1.959964 for 0.95."""
    return NormalDist().inv_cdf(0.5 + check_confidence(confidence) / 2)


def wilson_interval(successes, trials, confidence: float = 0.95):
    """Wilson score interval (low, high) for `successes` out of `trials`; vectorised over arrays.

    No trials give (0, 1): nothing is known. Scalars in give floats out.
    """
    z = z_score(confidence)
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(n < 0) or np.any(k < 0) or np.any(k > n):
        raise RoutesimError("a Wilson interval needs 0 <= successes <= trials",
                            fix="count passes among the requests they were counted on")
    safe_n = np.where(n > 0, n, 1.0)
    z2 = z * z
    # The form (2k + z² ± z·sqrt(z² + 4k(n-k)/n)) / 2(n + z²) is the textbook one rearranged so that
    # k = 0 and k = n land on 0 and 1 without cancellation.
    centre = 2 * k + z2
    spread = z * np.sqrt(z2 + 4 * k * (n - k) / safe_n)
    denominator = 2 * (n + z2)
    low = np.where(n > 0, np.clip((centre - spread) / denominator, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip((centre + spread) / denominator, 0.0, 1.0), 1.0)
    low = np.where(k == 0, 0.0, low)
    high = np.where(k == n, 1.0, high)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


@dataclass(frozen=True)
class PolicyOutcomes:
    """One policy's per-request results, aligned with the other policy's by position."""

    passed: np.ndarray
    cost_nano_usd: np.ndarray  # whole nano-dollars: resampled sums of them are exact in float64 below 2**53
    latency_ms: np.ndarray


def _lerp(low: np.ndarray, high: np.ndarray, weight: float | np.ndarray) -> np.ndarray:
    # numpy's own linear interpolation (numpy.quantile, method "linear"), so results agree to the bit.
    weight = np.broadcast_to(np.asarray(weight, dtype=np.float64), np.shape(low))
    difference = high - low
    return np.where(weight >= 0.5, high - difference * (1 - weight), low + difference * weight)


class PairedSample:
    """Two policies' results on the same requests, laid out for resampling.

    Requests are reordered by stratum, then by the baseline's latency; `strata` holds codes 0..S-1 (or None
    for a single stratum). Statistics are computed from a matrix of counts (rows = resamples, columns =
    requests in this layout): how many times each request was drawn.
    """

    def __init__(self, baseline: PolicyOutcomes, candidate: PolicyOutcomes, strata: np.ndarray | None = None,
                 *, quantile: float = 0.95):
        n = len(baseline.passed)
        arrays = [baseline.passed, baseline.cost_nano_usd, baseline.latency_ms,
                  candidate.passed, candidate.cost_nano_usd, candidate.latency_ms]
        if any(len(array) != n for array in arrays) or (strata is not None and len(strata) != n):
            raise ValueError("baseline, candidate and strata must have one entry per request")
        if n == 0:
            raise RoutesimError("no requests to compare", fix="compare policies replayed on at least one request")
        codes = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
        if codes.min() < 0:
            raise ValueError("strata codes must be >= 0")
        latency_b = np.asarray(baseline.latency_ms, dtype=np.float64)
        latency_c = np.asarray(candidate.latency_ms, dtype=np.float64)
        layout = np.lexsort((latency_b, codes))
        codes = codes[layout]
        present = np.unique(codes)
        # Renumber to the strata present, so every stratum has at least one request.
        self.stratum_codes = present
        codes = np.searchsorted(present, codes)
        self.n = n
        self.quantile = quantile
        self.layout = layout
        self.sizes = np.bincount(codes, minlength=len(present)).astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.position_stratum = codes
        passed_b = np.asarray(baseline.passed, dtype=np.float64)[layout]
        passed_c = np.asarray(candidate.passed, dtype=np.float64)[layout]
        # Columns summed per stratum: passes of each policy, costs of each policy (nano-dollars). Every
        # product and sum is an integer below 2**53, so the sums are exact whatever order BLAS adds them in.
        cost_b = np.asarray(baseline.cost_nano_usd, dtype=np.float64)[layout]
        cost_c = np.asarray(candidate.cost_nano_usd, dtype=np.float64)[layout]
        self.values = np.column_stack([passed_b, passed_c, cost_b, cost_c])
        # Squares and cross products give each resample's standard error of the cost changes (studentized
        # intervals). They are not exact integers, so they are summed by numpy's fixed-order reductions,
        # never by BLAS, and only for samples small enough to need them.
        self.studentized = bool(self.sizes.max() <= STUDENTIZED_MAX_REQUESTS)
        scaled_b, scaled_c = cost_b / NANO_PER_USD, cost_c / NANO_PER_USD
        self.squares = (np.column_stack([scaled_b * scaled_b, scaled_c * scaled_c, scaled_b * scaled_c])
                        if self.studentized else None)
        latency_b, latency_c = latency_b[layout], latency_c[layout]
        candidate_order = np.lexsort((latency_c, codes))
        self._orders = (np.arange(n), candidate_order)
        self._latencies = (latency_b, latency_c)
        # Rank of the quantile's lower order statistic in each stratum, and its interpolation weight.
        virtual = quantile * (self.sizes - 1)
        self._lower_rank = np.floor(virtual).astype(np.int64)
        self._upper_rank = np.minimum(self._lower_rank + 1, self.sizes - 1)
        self._weight = virtual - self._lower_rank
        margin = np.ceil(TAIL_SIGMAS * np.sqrt(self.sizes * quantile * (1 - quantile))).astype(np.int64) + TAIL_SLACK
        tail_from = self.starts + np.maximum(0, self._lower_rank - margin)
        ends = self.starts + self.sizes
        self._draw_groups = self._groups_of_equal_size()
        self._tails = []
        for order, latency in zip(self._orders, self._latencies):
            positions = np.concatenate([order[a:b] for a, b in zip(tail_from, ends)])
            lengths = ends - tail_from
            segment_end = np.cumsum(lengths)
            self._tails.append((positions, latency[positions], segment_end - lengths, segment_end))

    def _groups_of_equal_size(self) -> list[tuple[int, np.ndarray | None, np.ndarray]]:
        """(size, positions, stratum start of each position) per distinct stratum size.

        numpy draws bounded integers several times faster with one bound than with a bound per element, so
        strata of equal size are drawn together: request `start + U{0..size-1}` at every position.
        """
        size_at = self.sizes[self.position_stratum]
        start_at = self.starts[self.position_stratum]
        sizes = np.unique(self.sizes)
        if sizes.size == 1:
            return [(int(sizes[0]), None, start_at)]
        return [(int(size), positions, start_at[positions])
                for size in sizes for positions in [np.flatnonzero(size_at == size)]]

    @property
    def strata(self) -> int:
        return len(self.sizes)

    def draw_counts(self, generators: list[np.random.Generator]) -> np.ndarray:
        """One resample per generator: each draws, per stratum, as many request indices as the stratum has,
        with replacement. Returns (resamples, requests) counts of how often each request was drawn."""
        counts = np.empty((len(generators), self.n), dtype=np.float64)
        drawn = np.empty(self.n, dtype=np.int64)
        for row, rng in enumerate(generators):
            if self.strata == 1:
                drawn = rng.integers(0, self.n, size=self.n)
            for size, positions, starts in self._draw_groups if self.strata > 1 else ():
                if positions is None:
                    np.add(starts, rng.integers(0, size, size=self.n), out=drawn)
                else:
                    drawn[positions] = starts + rng.integers(0, size, size=positions.size)
            counts[row] = np.bincount(drawn, minlength=self.n)
        return counts

    def _sums(self, counts: np.ndarray) -> np.ndarray:
        """(rows, strata, 4) sums of each value column weighted by the counts."""
        if self.strata == 1:
            return (counts @ self.values)[:, None, :]
        sums = np.empty((counts.shape[0], self.strata, self.values.shape[1]))
        weighted = np.empty_like(counts)
        for column in range(self.values.shape[1]):
            np.multiply(counts, self.values[:, column], out=weighted)
            sums[:, :, column] = np.add.reduceat(weighted, self.starts, axis=1)
        return sums

    def _square_sums(self, counts: np.ndarray) -> np.ndarray:
        """(rows, strata, 3) count-weighted sums of b², c² and b·c (costs in USD), for the standard errors.

        numpy's own reductions add in a fixed order whatever the thread count (BLAS would not), so these
        float sums are the same on every machine."""
        sums = np.empty((counts.shape[0], self.strata, 3))
        weighted = np.empty_like(counts)
        for column in range(3):
            np.multiply(counts, self.squares[:, column], out=weighted)
            sums[:, :, column] = np.add.reduceat(weighted, self.starts, axis=1)
        return sums

    def _quantiles(self, counts: np.ndarray, side: int) -> np.ndarray:
        """(rows, strata) latency quantile of one policy in each resample."""
        positions, latency, seg_start, seg_end = self._tails[side]
        rows = counts.shape[0]
        running = np.cumsum(counts[:, positions], axis=1)
        before = np.where(seg_start > 0, running[:, np.maximum(seg_start - 1, 0)], 0.0)
        below_tail = self.sizes[None, :] - (running[:, seg_end - 1] - before)
        ranks = np.stack([self._lower_rank, self._upper_rank])  # (2, strata)
        local = ranks[None, :, :] - below_tail[:, None, :]  # (rows, 2, strata)
        inside = local >= 0
        # One search for every resample, rank and stratum: offsetting each row by more than its largest
        # running count makes the flattened rows one sorted array.
        stride = float(self.n + 1)
        offsets = np.arange(rows, dtype=np.float64)[:, None, None] * stride
        target = (before[:, None, :] + local + offsets)[inside]
        row_of_target = np.nonzero(inside)[0]
        flat = (running + offsets[:, :, 0]).ravel()
        found = np.empty(local.shape, dtype=np.float64)
        found[inside] = latency[np.searchsorted(flat, target, side="right") - row_of_target * positions.size]
        for row, which, stratum in zip(*np.nonzero(~inside)):
            found[row, which, stratum] = self._full_scan(counts[row], side, stratum, ranks[which, stratum])
        return _lerp(found[:, 0, :], found[:, 1, :], self._weight[None, :])

    def _full_scan(self, counts: np.ndarray, side: int, stratum: int, rank: int) -> float:
        start, size = self.starts[stratum], self.sizes[stratum]
        order = self._orders[side][start:start + size]
        running = np.cumsum(counts[order])
        return float(self._latencies[side][order[np.searchsorted(running, rank, side="right")]])

    def statistics(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Every statistic, (rows, strata), of the resamples given as counts per request.

        Each row's counts must add up to every stratum's size, as resamples from `draw_counts` do: the
        quantile scan counts what lies below its tail as the stratum's size minus what lies in it.
        """
        counts = np.asarray(counts, dtype=np.float64)
        sums = self._sums(counts)
        sizes = self.sizes[None, :].astype(np.float64)
        passed_b, passed_c, cost_b, cost_c = (sums[:, :, column] for column in range(4))
        cost_b, cost_c = cost_b / NANO_PER_USD, cost_c / NANO_PER_USD
        latency_b, latency_c = self._quantiles(counts, 0), self._quantiles(counts, 1)
        # Undefined (nan) where the baseline cost nothing in that resample.
        ratio = np.full_like(cost_b, np.nan)
        np.divide(cost_c, cost_b, out=ratio, where=cost_b > 0)
        found = {}
        if self.studentized:
            square_b, square_c, cross = (part for part in np.moveaxis(self._square_sums(counts), 2, 0))
            mean_b, mean_c = cost_b / sizes, cost_c / sizes
            # Standard errors for the studentized intervals: the mean paired difference c - b, and the ratio
            # of means by its linearisation, residuals c - r·b over the baseline's mean (the delta method).
            spread = np.maximum((square_c - 2 * cross + square_b) / sizes - (mean_c - mean_b) ** 2, 0.0)
            ratio_of_means = np.divide(mean_c, mean_b, out=np.full_like(mean_b, np.nan), where=mean_b > 0)
            residual = np.maximum((square_c - 2 * ratio_of_means * cross + ratio_of_means ** 2 * square_b) / sizes,
                                  0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                se_ratio = np.sqrt(residual / sizes) / mean_b
            found = {SE_PREFIX + COST_CHANGE: np.sqrt(spread / sizes),
                     SE_PREFIX + COST_RELATIVE_CHANGE: np.where(mean_b > 0, se_ratio, np.nan)}
        return found | {
            BASELINE_PASS_RATE: passed_b / sizes,
            CANDIDATE_PASS_RATE: passed_c / sizes,
            BASELINE_COST: cost_b / sizes,
            CANDIDATE_COST: cost_c / sizes,
            BASELINE_LATENCY: latency_b,
            CANDIDATE_LATENCY: latency_c,
            PASS_RATE_CHANGE: (passed_c - passed_b) / sizes,
            COST_CHANGE: (cost_c - cost_b) / sizes,
            COST_RELATIVE_CHANGE: ratio - 1,
            LATENCY_CHANGE: latency_c - latency_b,
        }

    def estimates(self) -> dict[str, np.ndarray]:
        """The statistics of the sample itself (every request counted once), one value per stratum."""
        return {name: values[0] for name, values in self.statistics(np.ones((1, self.n), dtype=np.int64)).items()}


@dataclass
class BootstrapResult:
    """Per stratum (in `PairedSample.stratum_codes` order): estimate, interval bounds and all replicates."""

    stratum_codes: np.ndarray
    sizes: np.ndarray
    confidence: float
    resamples: int
    seed: int
    estimate: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    replicates: dict[str, np.ndarray] = field(repr=False)

    def interval(self, name: str, stratum: int = 0) -> tuple[float | None, float | None, float | None]:
        """(estimate, low, high) of one statistic in one stratum; None where it is undefined."""
        values = (self.estimate[name][stratum], self.low[name][stratum], self.high[name][stratum])
        return tuple(None if not np.isfinite(value) else float(value) for value in values)


def paired_bootstrap(sample: PairedSample, *, resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95, workers: int | None = None) -> BootstrapResult:
    """Percentile intervals of every statistic from `resamples` paired resamples.

    Resample i draws from its own random stream (child i of the seed), so the result depends only on the
    inputs, the seed and the number of resamples: not on the block size or the number of worker threads.
    Blocks of resamples bound memory (BLOCK_ELEMENTS counts per worker) and run on threads, since numpy
    releases the GIL in the heavy steps.
    """
    confidence = check_confidence(confidence)
    if resamples < 1:
        raise RoutesimError(f"resamples must be at least 1, got {resamples}", where="--resamples",
                            fix="use e.g. 1000 resamples")
    workers = workers or min(4, os.cpu_count() or 1)
    streams = [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(resamples)]
    block = max(1, min(resamples, BLOCK_ELEMENTS // sample.n))
    blocks = [streams[start:start + block] for start in range(0, resamples, block)]

    def run(generators: list[np.random.Generator]) -> dict[str, np.ndarray]:
        return sample.statistics(sample.draw_counts(generators))

    if workers > 1 and len(blocks) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(run, blocks))
    else:
        parts = [run(generators) for generators in blocks]
    replicates = {name: np.concatenate([part[name] for part in parts], axis=0) for name in parts[0]}
    alpha = 1 - confidence
    low, high = {}, {}
    estimate = sample.estimates()
    for name, values in replicates.items():
        finite = np.isfinite(values).all(axis=0)
        bounds = np.full((2, sample.strata), np.nan)
        if name.startswith(SE_PREFIX):
            continue
        if name in STUDENTIZED and sample.studentized:
            se_star, se = replicates[SE_PREFIX + name], estimate[SE_PREFIX + name]
            finite &= np.isfinite(se_star).all(axis=0) & np.isfinite(se)
            if finite.any():
                # t* = (θ* − θ̂) / se*; the interval is θ̂ − t*(1−α/2)·se to θ̂ − t*(α/2)·se. A resample with no
                # spread (every difference equal) has t* = 0: the change is known exactly there.
                with np.errstate(invalid="ignore", divide="ignore"):
                    t = np.where(se_star[:, finite] > 0,
                                 (values[:, finite] - estimate[name][finite]) / se_star[:, finite], 0.0)
                quantiles = np.quantile(t, [1 - alpha / 2, alpha / 2], axis=0)
                bounds[:, finite] = estimate[name][finite] - quantiles * se[finite]
        elif finite.any():
            bounds[:, finite] = np.quantile(values[:, finite], [alpha / 2, 1 - alpha / 2], axis=0)
        low[name], high[name] = bounds[0], bounds[1]
    return BootstrapResult(stratum_codes=sample.stratum_codes, sizes=sample.sizes, confidence=confidence,
                           resamples=resamples, seed=seed, estimate=estimate, low=low, high=high,
                           replicates=replicates)


def bench_bootstrap(requests: int = 1_000_000, resamples: int = 1000, seed: int = 0) -> float:
    """Seconds to bootstrap a paired comparison of `requests` requests `resamples` times, overall.

    The synthetic pair: the baseline passes 90% of requests, the candidate agrees with it on 95% of them;
    costs and latencies are log-normal. The timing covers the layout (sorting) and every resample of the
    pass-rate, cost and p95 latency changes.
    """
    rng = np.random.default_rng(seed)
    passed_b = rng.random(requests) < 0.9
    passed_c = np.where(rng.random(requests) < 0.95, passed_b, ~passed_b)
    baseline = PolicyOutcomes(passed_b, np.rint(rng.lognormal(-6, 1, requests) * NANO_PER_USD),
                              rng.lognormal(7, 1, requests))
    candidate = PolicyOutcomes(passed_c, np.rint(rng.lognormal(-6.5, 1, requests) * NANO_PER_USD),
                               rng.lognormal(7.1, 1, requests))
    started = time.perf_counter()
    paired_bootstrap(PairedSample(baseline, candidate), resamples=resamples, seed=seed)
    return time.perf_counter() - started
