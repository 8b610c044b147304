"""How sure we are: Wilson intervals for pass rates and a paired bootstrap for comparing two policies.

Modelling assumptions:
- Wilson score interval. The requests of a slice are independent trials that pass with one fixed
  probability; the interval is the set of pass rates a two-sided score test at the given confidence does not
  reject. Unlike the normal ("Wald") interval it stays inside 0..1 and keeps close to its nominal coverage
  for rates near 0 or 1 and for small slices: 40 passes out of 40 give a 95% lower bound of 0.912, so 40
  requests cannot prove a 95% pass rate.
- Paired Poisson bootstrap. Requests (or sessions, where traffic has them) are exchangeable draws from the
  traffic, and both policies answered the same requests. Resample b gives each request a weight
  w(b, i) ~ Poisson(1), a function of (seed, b, the request's key) alone (simulator.core.resample), and
  uses it for both policies, so what the two have in common (a request hard for both) cancels out of the
  difference. A resample's statistics are those of the sample with request i repeated w(b, i) times:
  sums of w·value over each stratum (slice) and over all requests, means as sums over the resample's own
  total weight (the Poisson bootstrap of Hanley and MacGibbon 2006 and Chamandy et al. 2012, the
  standard large-scale approximation of resampling with replacement: the multinomial counts of n draws
  from n requests are n independent Poisson(1) counts conditioned on their total). A stratum is thereby
  resampled within itself, with a size that varies around its own; a resample that gave a stratum no
  weight at all is left out of that stratum's interval. Because a weight depends on nothing but its key,
  the result is the same whatever the order of the requests, chunking, sharding or thread count.
  Intervals are percentile intervals of the resampled statistic, except for the cost changes: costs are
  skewed, so their intervals are studentized (bootstrap-t: the resampled changes standardised by each
  resample's own standard error, from weighted sums of squares; Efron and Tibshirani, An Introduction to
  the Bootstrap, ch. 12), which keeps coverage at a few hundred requests where the percentile interval
  falls to 91-93% (up to 20,000 requests; beyond, the percentile interval, which then covers as it
  should). The bootstrap-t is erratic where a resample's standard error is near zero (few requests, or
  the spread carried by one request): where its interval reaches beyond the smallest or largest resampled
  value, the percentile interval is used instead, so a cost change's interval always lies within the
  resampled extremes (a relative change never below -100%). A stratum of fewer than
  MIN_INTERVAL_REQUESTS requests gets no interval (nan bounds): "too few requests". A statistic that is
  undefined in some resample (a relative change over a resample whose baseline cost nothing) gets none
  either.
- Latency quantiles interpolate linearly between order statistics, exactly as numpy's default method (and
  polars' "linear", the p95 metric's) does, over the requests that have a latency: a request without one
  (a batch answer) is left out of every latency figure, estimate and resample alike. A resample's
  quantile is the exact quantile of the expanded resample (each request w times): walking the requests
  from the slowest down, the k-th order statistic (from 0, of N = the total weight) is the request at
  which the running weight first exceeds N - 1 - k. The walk stops there, so it visits about the slowest
  5% for a p95: it is given only a stratum's slowest requests (twice the share above the quantile, and
  WALK_MARGIN more), and a resample whose weights there fall so short that its walk runs out of them walks
  the whole stratum again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from simulator.core.draws import key_hashes
from simulator.core.errors import RoutesimError
from simulator.core.formats import confidence_level
from simulator.core.money import NANO_PER_USD, usd_per_array

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
RESAMPLED_REQUESTS = "resampled_requests"  # a resample's total weight in the stratum (its size, on average)
# Cost changes get studentized (bootstrap-t) intervals: costs are skewed, and at a few hundred requests the
# percentile interval of a mean of skewed values covers too rarely (91-93% for a nominal 95%).
STUDENTIZED = (COST_CHANGE, COST_RELATIVE_CHANGE)
# Above this many requests in a stratum the percentile interval of a cost change covers as it should (the sampling
# distribution of a mean is close to normal), so the sums the studentized interval needs are skipped.
STUDENTIZED_MAX_REQUESTS = 20_000
SE_PREFIX = "standard_error:"
# A stratum of fewer requests gets no interval: with one request every resample repeats the sample itself
# (a mean of one value, however weighted, is that value), so its "interval" would have zero width and claim
# a certainty the data cannot give.
MIN_INTERVAL_REQUESTS = 2


def check_confidence(confidence: float, *, option: str = "--confidence") -> float:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise RoutesimError(f"confidence must lie strictly between 0 and 1, got {confidence!r}", where=option,
                            fix="e.g. 0.95 for 95% intervals")
    return float(confidence)


DEFAULT_RESAMPLES = 1000


def least_resamples(confidence: float) -> int:
    """The fewest resamples whose percentile interval at `confidence` has a resample beyond each end:
    2 / (1 - confidence), rounded up (40 at 95%, 2,000 at 99.9%). With fewer, an end is the most extreme
    resample, or both ends the same one: an interval of zero width, claiming a certainty no data gives.
    (Efron & Tibshirani 1993, ch. 13: percentile intervals need B(1 - confidence)/2 of the resamples in each
    tail.)"""
    return math.ceil(round(2 / (1 - confidence), 9))  # round: 2 / 0.05 is 40.000000000000004 in floats


def settle_resamples(resamples: int | None, confidence: float, *, most: int | None = None,
                     option: str = "--resamples") -> int:
    """The resamples of a percentile bootstrap interval at `confidence`: `resamples`, or when None
    DEFAULT_RESAMPLES or `least_resamples` where that is more. Raises RoutesimError when given fewer than
    `least_resamples` (naming `option`), or when the confidence needs more than `most`."""
    least, level = least_resamples(confidence), confidence_level(confidence)
    if most is not None and least > most:
        raise RoutesimError(f"a {level} bootstrap interval needs at least {least:,} resamples, more than the limit "
                            f"of {most:,}", where="--confidence", fix="use a confidence of at most 0.9999")
    if resamples is None:
        return max(DEFAULT_RESAMPLES, least)
    if resamples < least:
        raise RoutesimError(
            f"{resamples:,} resamples are too few for a {level} interval: its ends are quantiles of "
            f"the resamples with {(1 - confidence) / 2:.4g} of them beyond each, so it takes at least {least:,} for "
            "one to lie beyond each end (fewer give an end that is the most extreme resample, or an interval of "
            "zero width)", where=option,
            fix=f"use at least {least:,}, or leave {option} out: {DEFAULT_RESAMPLES:,} are taken, or more where "
                "the confidence needs them")
    return resamples


def z_score(confidence: float) -> float:
    """The standard normal quantile of a two-sided interval: 1.959964 for 0.95."""
    return NormalDist().inv_cdf(0.5 + check_confidence(confidence) / 2)


def clustered_wilson_interval(successes, trials, residual_squares, largest_cluster, confidence: float = 0.95):
    """Wilson interval of a pass rate whose trials come in clusters (a session's turns), vectorised over groups.

    Per group: `successes` k and `trials` n in all, `residual_squares` the sum over its clusters of
    (y_c - p m_c)^2 (y_c passes of m_c trials in cluster c, p = k/n), `largest_cluster` the most trials of one
    cluster. The ratio estimator p = k/n has the linearised variance sum_c (y_c - p m_c)^2 / n^2 (Cochran,
    Sampling Techniques, 3rd ed. 1977, section 6.3, without the finite-population correction); divided by
    the simple-random-sampling variance p(1-p)/n it gives Kish's design effect deff (Kish, Survey Sampling,
    1965, section 8.2). The Wilson interval is then taken at the effective sample size n / deff with
    p n / deff successes (Korn and Graubard, Survey Methodology 24(2), 1998). deff is 1 where every cluster
    has one trial or p is 0 or 1, so the interval is then exactly wilson_interval(k, n); deff below 1
    (turns within sessions disagreeing more than chance) is kept: it narrows the interval, as the variance
    says. No trials give (0, 1).
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    squares = np.asarray(residual_squares, dtype=np.float64)
    safe_n = np.where(n > 0, n, 1.0)
    p = k / safe_n
    spread = safe_n * p * (1 - p)
    plain = (np.asarray(largest_cluster) <= 1) | (k == 0) | (k == n) | (squares <= 0)
    deff = np.where(plain, 1.0, squares / np.where(plain, 1.0, spread))
    effective_n = np.where(plain, n, n / deff)
    effective_k = np.where(plain, k, np.minimum(p * effective_n, effective_n))
    return wilson_interval(effective_k, effective_n, confidence)


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
    latency_ms: np.ndarray  # nan where a request has no latency (a batch answer): left out of latency figures


def walk_length(size: int, quantile: float) -> int:
    """How many of a segment's `size` slowest requests its quantile walks keep: twice the share above the
    quantile, and WALK_MARGIN more. A resample's walk that reaches the end of them without finding its order
    statistics (its weights far below their expectation there) walks the whole segment again."""
    return min(size, math.ceil(2 * (1 - quantile) * size) + WALK_MARGIN)


WALK_MARGIN = 64


def _descending_quantile(values: np.ndarray, n: int, quantile: float) -> float:
    """numpy.quantile of n values (method "linear"), from the slowest of them in descending order, to the
    bit: the same virtual index (n - 1) q, the same order statistics and numpy's own interpolation; nan if
    n is 0. `values` must reach the lower order statistic."""
    if n == 0:
        return np.nan
    virtual = (n - 1) * quantile
    lower = math.floor(virtual)
    upper = min(lower + 1, n - 1)
    below, above = values[n - 1 - lower], values[n - 1 - upper]  # from the top: rank k is n - 1 - k
    fraction = virtual - lower
    difference = above - below
    return float(above - difference * (1 - fraction) if fraction >= 0.5 else below + difference * fraction)


def _has_ties(codes: np.ndarray, hashes: np.ndarray) -> bool:
    """Whether two neighbours of a layout (sorted by code, then hash) share both."""
    return bool(np.any((codes[1:] == codes[:-1]) & (hashes[1:] == hashes[:-1])))


def _layout(codes: np.ndarray, hashes: np.ndarray, tiebreak) -> np.ndarray:
    """The positions of the requests sorted by code, then hash, then (where both tie) tiebreak's rank or,
    without one, their position."""
    if codes.max() < 2**15:
        # Where no two requests share a (code, hash) the order is unique, so any sort gives it: the hashes
        # by quicksort, then a stable radix sort of the small codes.
        by_hash = np.argsort(hashes)
        layout = by_hash[np.argsort(codes[by_hash].astype(np.int16), kind="stable")]
        if not _has_ties(codes[layout], hashes[layout]):
            return layout
    layout = np.lexsort((hashes, codes))
    if tiebreak is not None and _has_ties(codes[layout], hashes[layout]):
        layout = np.lexsort((_ranks(tiebreak), hashes, codes))
    return layout


def _whole(costs) -> np.ndarray:
    """Costs as int64 whole nano-dollars (float costs truncated, as the sums have always read them)."""
    costs = np.asarray(costs)
    return costs.astype(np.int64) if costs.dtype.kind in "iub" else costs.astype(np.float64).astype(np.int64)


def _ranks(values) -> np.ndarray:
    """Each value's rank among `values` (strings in byte order), equal values equal."""
    import polars as pl

    series = values if isinstance(values, pl.Series) else pl.Series(values)
    return series.rank("dense").to_numpy().astype(np.int64)


# Columns of the sums (PairedSample.sums, resampled): what each resample sums per stratum.
PASSED_B, PASSED_C, COST_B, COST_C, COUNT, TIMED_B, TIMED_C, SQUARE_B, SQUARE_C, CROSS = range(10)


class PairedSample:
    """Two policies' results on the same requests, laid out for the keyed Poisson bootstrap.

    `keys`: per request, its request id (or session id) or their key hashes (simulator.core.draws); by
    default the request's position. Requests are laid out by stratum, then by key, an order that does not
    depend on the order they came in; requests that share both (a session's turns) are laid out in the
    order of `tiebreak` (their request ids), or as they came without it. `strata` holds codes (or None for
    a single stratum). Each policy's requests with a latency are also kept by stratum in descending
    latency, for the quantiles.
    """

    def __init__(self, baseline: PolicyOutcomes, candidate: PolicyOutcomes, strata: np.ndarray | None = None,
                 *, quantile: float = 0.95, keys=None, tiebreak=None):
        n = len(baseline.passed)
        arrays = [baseline.passed, baseline.cost_nano_usd, baseline.latency_ms,
                  candidate.passed, candidate.cost_nano_usd, candidate.latency_ms]
        if any(len(array) != n for array in arrays) or any(
                extra is not None and len(extra) != n for extra in (strata, keys, tiebreak)):
            raise ValueError("baseline, candidate, strata, keys and tiebreak must have one entry per request")
        if n == 0:
            raise RoutesimError("no requests to compare", fix="compare policies replayed on at least one request")
        codes = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
        if codes.min() < 0:
            raise ValueError("strata codes must be >= 0")
        if keys is None:
            hashes = np.arange(n, dtype=np.uint64)
        elif isinstance(keys, np.ndarray) and keys.dtype == np.uint64:
            hashes = keys
        else:
            hashes = key_hashes(keys)
        self.hashes = hashes
        layout = _layout(codes, hashes, tiebreak)
        codes = codes[layout]
        # Renumber to the strata present, so every stratum has at least one request.
        if codes[-1] < 2**16:  # sorted: the last is the largest
            counts = np.bincount(codes)
            present = np.flatnonzero(counts)
            codes = np.repeat(np.arange(len(present)), counts[present])
        else:
            present = np.unique(codes)
            codes = np.searchsorted(present, codes)
        self.stratum_codes = present
        self.n = n
        self.quantile = quantile
        self.layout = layout
        self.sizes = np.bincount(codes, minlength=len(present)).astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.segments = np.append(self.starts, n).astype(np.int64)
        self.position_stratum = codes
        self.studentized = bool(self.sizes.max() <= STUDENTIZED_MAX_REQUESTS)
        # In layout order: each policy's passes, costs in whole nano-dollars, latencies (nan: none).
        self.passed = [np.asarray(side.passed)[layout].astype(bool) for side in (baseline, candidate)]
        self.costs = [_whole(side.cost_nano_usd)[layout] for side in (baseline, candidate)]
        self._latency = [np.asarray(side.latency_ms, dtype=np.float64)[layout] for side in (baseline, candidate)]
        self.timed = [np.isfinite(latency) for latency in self._latency]
        self._orders: dict[tuple[int, bool, bool], tuple[np.ndarray, ...]] = {}

    @property
    def strata(self) -> int:
        return len(self.sizes)

    def squares(self) -> list[np.ndarray]:
        """b², c², b·c of the costs in USD, in layout order, for studentized intervals (none without them)."""
        if not self.studentized:
            return []
        usd_b, usd_c = (cost.astype(np.float64) / NANO_PER_USD for cost in self.costs)
        return [usd_b * usd_b, usd_c * usd_c, usd_b * usd_c]

    def columns(self) -> list[np.ndarray]:
        """What each resample sums (PASSED_B .. CROSS), float64 in layout order: passes and costs
        (nano-dollars) of each policy, a 1 per request, whether each policy has a latency, and for
        studentized intervals the squares. All but the squares are integers, so their sums are exact."""
        integers = [self.passed[0], self.passed[1], self.costs[0], self.costs[1], np.ones(self.n, dtype=bool),
                    self.timed[0], self.timed[1]]
        return [column.astype(np.float64) for column in integers] + self.squares()

    def quantile_order(self, side: int, overall: bool = False, whole: bool = False
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(positions in layout, latencies, segment bounds, segment sizes): one policy's requests with a
        latency, by stratum (or all in one segment), in descending latency. Each segment holds the
        `walk_length` slowest of its stratum's requests with a latency (all of them, `whole`), the sizes
        count them all. How ties are ordered changes no quantile: a tie's running count past it and its
        latency are the same in any order."""
        cached = self._orders.get((side, overall, whole))
        if cached is not None:
            return cached
        latency = self._latency[side]
        timed = np.flatnonzero(self.timed[side])
        if overall:
            bounds = np.array([0, timed.size])
        else:  # the layout is by stratum, so each stratum's timed requests are one run of `timed`
            bounds = np.concatenate([[0], np.cumsum(np.bincount(self.position_stratum[timed],
                                                                minlength=self.strata))])
        parts = []
        for first, last in zip(bounds[:-1], bounds[1:]):
            run = -latency[timed[first:last]]
            keep = run.size if whole else walk_length(run.size, self.quantile)
            if keep < run.size:  # only the slowest `keep`, then sorted
                top = np.argpartition(run, keep - 1)[:keep]
                parts.append(timed[first:last][top[np.argsort(run[top])]])
            else:
                parts.append(timed[first:last][np.argsort(run)])
        order = np.concatenate(parts) if len(parts) != 1 else parts[0]
        segments = np.concatenate([[0], np.cumsum([part.size for part in parts])]).astype(np.int64)
        self._orders[(side, overall, whole)] = found = (order, latency[order], segments,
                                                         np.diff(bounds).astype(np.int64))
        return found

    def sums(self, weights: np.ndarray, overall: bool = False) -> np.ndarray:
        """(rows, strata, columns) sums of the values weighted by `weights` (rows x requests in layout
        order), in numpy: the reference for the compiled loop, and the estimate (weights of one)."""
        weights = np.asarray(weights, dtype=np.float64)
        found = np.stack([np.add.reduceat(weights * column, self.starts, axis=1) for column in self.columns()],
                         axis=2)
        return found.sum(axis=1, keepdims=True) if overall else found

    def statistics(self, sums: np.ndarray, latency_b: np.ndarray, latency_c: np.ndarray) -> dict[str, np.ndarray]:
        """Every statistic, (rows, strata), from resampled sums (`sums`) and latency quantiles."""
        count = sums[:, :, COUNT]
        passed_b, passed_c = sums[:, :, PASSED_B], sums[:, :, PASSED_C]
        nano_b, nano_c = sums[:, :, COST_B], sums[:, :, COST_C]  # exact integer-valued sums
        cost_b, cost_c = nano_b / NANO_PER_USD, nano_c / NANO_PER_USD
        with np.errstate(invalid="ignore", divide="ignore"):
            # Costs per request and their change: each the exact nano-dollar quotient, correctly rounded once.
            mean_b, mean_c = usd_per_array(nano_b, count), usd_per_array(nano_c, count)
            # Undefined (nan) where the baseline cost nothing in that resample.
            ratio = np.where(cost_b > 0, cost_c / np.where(cost_b > 0, cost_b, 1.0), np.nan)
            found = {}
            if sums.shape[2] > SQUARE_B:
                square_b, square_c, cross = sums[:, :, SQUARE_B], sums[:, :, SQUARE_C], sums[:, :, CROSS]
                # Standard errors for the studentized intervals: the mean paired difference c - b, and the
                # ratio of means by its linearisation, residuals c - r·b over the baseline's mean (the delta
                # method).
                spread = np.maximum((square_c - 2 * cross + square_b) / count - (mean_c - mean_b) ** 2, 0.0)
                ratio_of_means = np.where(mean_b > 0, mean_c / np.where(mean_b > 0, mean_b, 1.0), np.nan)
                residual = np.maximum((square_c - 2 * ratio_of_means * cross + ratio_of_means ** 2 * square_b)
                                      / count, 0.0)
                se_ratio = np.sqrt(residual / count) / mean_b
                found = {SE_PREFIX + COST_CHANGE: np.sqrt(spread / count),
                         SE_PREFIX + COST_RELATIVE_CHANGE: np.where(mean_b > 0, se_ratio, np.nan)}
            return found | {
                RESAMPLED_REQUESTS: count,
                BASELINE_PASS_RATE: passed_b / count,
                CANDIDATE_PASS_RATE: passed_c / count,
                BASELINE_COST: mean_b,
                CANDIDATE_COST: mean_c,
                BASELINE_LATENCY: latency_b,
                CANDIDATE_LATENCY: latency_c,
                PASS_RATE_CHANGE: (passed_c - passed_b) / count,
                COST_CHANGE: usd_per_array(nano_c - nano_b, count),
                COST_RELATIVE_CHANGE: ratio - 1,
                LATENCY_CHANGE: latency_c - latency_b,
            }

    def estimates(self, overall: bool = False) -> dict[str, np.ndarray]:
        """The statistics of the sample itself (every request counted once), one value per stratum."""
        sums = self.sums(np.ones((1, self.n)), overall)
        latencies = []
        for side in (0, 1):
            _, latency, segments, sizes = self.quantile_order(side, overall)
            latencies.append(np.array([[_descending_quantile(latency[a:b], size, self.quantile)
                                        for a, b, size in zip(segments[:-1], segments[1:], sizes)]]))
        return {name: values[0] for name, values in self.statistics(sums, *latencies).items()}


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


def _check_settings(resamples: int, confidence: float) -> float:
    confidence = check_confidence(confidence)
    if resamples < 1:
        raise RoutesimError(f"resamples must be at least 1, got {resamples}", where="--resamples",
                            fix="use e.g. 1000 resamples")
    return confidence


def resampled(sample: PairedSample, resamples: int, seed: int, *, workers: int | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The replicates of every statistic, (resamples, strata) per stratum and (resamples, 1) over all
    requests, from one pass of keyed Poisson weights (simulator.core.resample) over the requests, and one
    walk down each policy's latencies per stratum and over all."""
    import numba

    from simulator.core import resample

    keys = resample.mixed_keys(sample.hashes[sample.layout], seed)
    streams = resample.pair_streams((resamples + 1) // 2)
    threads = numba.get_num_threads()
    numba.set_num_threads(max(1, min(workers or threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        sums = _resampled_sums(sample, keys, streams, resamples)
        parts = [sums, sums.sum(axis=1, keepdims=True)]  # per stratum, over all requests
        latencies = _resampled_quantiles(sample, keys, streams, parts)
        found = [sample.statistics(part, *latency) for part, latency in zip(parts, latencies)]
    finally:
        numba.set_num_threads(threads)
    return found[0], found[1]


def _resampled_sums(sample: PairedSample, keys: np.ndarray, streams: np.ndarray, resamples: int) -> np.ndarray:
    """(resamples, strata, columns) float64: every column's resampled sums (simulator.core.resample)."""
    from simulator.core import resample

    # Flags two to an int32 (the second shifted by FLAG_BITS). A policy whose every request has a latency has
    # its timed count equal to the count: not summed again.
    untimed = [column for column, timed in ((TIMED_B, sample.timed[0]), (TIMED_C, sample.timed[1]))
               if not timed.all()]
    flag_columns = [PASSED_B, PASSED_C, *untimed]
    flag_values = [*sample.passed, *(sample.timed[column - TIMED_B] for column in untimed)]
    if len(flag_values) % 2:
        flag_values.append(np.zeros(sample.n, dtype=bool))
    flags = np.stack([first.astype(np.int32) | (second.astype(np.int32) << resample.FLAG_BITS)
                      for first, second in zip(flag_values[::2], flag_values[1::2])])
    # Costs in int32 where they fit (their products with the weights then take the SIMD lanes), else int64.
    narrow = all(cost.size == 0 or (cost.min() >= -2**31 and cost.max() < 2**31) for cost in sample.costs)
    costs = np.stack(sample.costs).astype(np.int32 if narrow else np.int64)
    squares = sample.squares()
    floats = np.stack(squares) if squares else np.zeros((0, sample.n))
    out_count = np.zeros((resamples, sample.strata), dtype=np.int64)
    out_flags = np.zeros((resamples, sample.strata, 2 * len(flags)), dtype=np.int64)
    out_costs = np.zeros((resamples, sample.strata, 2), dtype=np.int64)
    out_floats = np.zeros((resamples, sample.strata, len(floats)))
    resample.resampled_sums(keys, sample.segments, flags, costs, floats, streams, out_count, out_flags, out_costs,
                            out_floats)
    sums = np.zeros((resamples, sample.strata, SQUARE_B + len(floats)))  # exact: integers below 2**53
    sums[:, :, COUNT] = out_count
    sums[:, :, TIMED_B] = sums[:, :, TIMED_C] = out_count
    sums[:, :, flag_columns] = out_flags[:, :, :len(flag_columns)]
    sums[:, :, [COST_B, COST_C]] = out_costs
    sums[:, :, SQUARE_B:] = out_floats
    return sums


def _resampled_quantiles(sample: PairedSample, keys: np.ndarray, streams: np.ndarray, parts: list[np.ndarray]
                         ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per part (by stratum, overall) the (baseline, candidate) resampled latency quantiles, (resamples,
    segments) each: every walk down a policy's slowest latencies in one call, one pair of resamples per
    thread; the rare resample whose walk needs more than a segment's `walk_length` walks it whole."""
    scopes = [(part, side, overall) for part, overall in zip(parts, (False, True)) for side in (0, 1)]
    totals = np.concatenate([part[:, :, (TIMED_B, TIMED_C)[side]] for part, side, _ in scopes], axis=1)
    totals = totals.astype(np.int64)
    out = np.full(totals.shape, np.nan)
    todo = np.ones(totals.shape, dtype=bool)
    for whole in (False, True):
        missing = _walk(sample, keys, streams, [(side, overall) for _, side, overall in scopes], whole, totals, todo,
                        out)
        if not missing.any():
            break
        todo = missing
    columns = np.cumsum([0] + [part.shape[1] for part, _, _ in scopes])
    found = [out[:, a:b] for a, b in zip(columns[:-1], columns[1:])]
    return [(found[0], found[1]), (found[2], found[3])]


def _walk(sample: PairedSample, keys: np.ndarray, streams: np.ndarray, walks: list[tuple[int, bool]], whole: bool,
          totals: np.ndarray, todo: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Runs the compiled walks (simulator.core.resample.resampled_quantiles) where `todo`, into `out`;
    returns where a walk ran out of requests."""
    from simulator.core import resample

    orders = [sample.quantile_order(side, overall, whole) for side, overall in walks]
    order = np.concatenate([found[0] for found in orders])
    latency = np.concatenate([found[1] for found in orders])
    offsets = np.cumsum([0] + [len(found[0]) for found in orders])
    segments = np.concatenate([found[2][:-1] + offset for found, offset in zip(orders, offsets)] + [offsets[-1:]])
    missing = np.zeros(todo.shape, dtype=bool)
    resample.resampled_quantiles(keys[order], latency, segments.astype(np.int64), totals, sample.quantile, streams,
                                 todo, out, missing)
    return missing


def _bounds(values: np.ndarray, estimate: np.ndarray, se_star: np.ndarray | None, se: np.ndarray | None,
            alpha: float) -> np.ndarray:
    """(2, columns) interval bounds from replicates (rows, columns); nan where a replicate, the estimate or
    (studentized) a standard error is undefined."""
    bounds = np.full((2, values.shape[1]), np.nan)
    finite = np.isfinite(values).all(axis=0) & np.isfinite(estimate) & (values.shape[0] > 0)
    if se_star is not None:
        finite &= np.isfinite(se_star).all(axis=0) & np.isfinite(se)
        if finite.any():
            # t* = (θ* − θ̂) / se*; the interval is θ̂ − t*(1−α/2)·se to θ̂ − t*(α/2)·se. A resample with no
            # spread (every difference equal) has t* = 0: the change is known exactly there.
            with np.errstate(invalid="ignore", divide="ignore"):
                t = np.where(se_star[:, finite] > 0, (values[:, finite] - estimate[finite]) / se_star[:, finite],
                             0.0)
            bounds[:, finite] = estimate[finite] - np.quantile(t, [1 - alpha / 2, alpha / 2], axis=0) * se[finite]
        # The bootstrap-t is unstable where a resample's standard error is near zero (a handful of requests,
        # or one costly request carrying the spread): t* then explodes and the interval leaves the range the
        # statistic can take. Where it reaches beyond the resampled extremes, the percentile interval is
        # used instead (Efron and Tibshirani, An Introduction to the Bootstrap, ch. 12.6 and 14: the
        # bootstrap-t "can be erratic" in small samples; the percentile interval respects the statistic's
        # range), so every interval lies between the smallest and largest resampled value.
        with np.errstate(invalid="ignore"):
            outside = finite & ((bounds[0] < values.min(axis=0, initial=np.inf))
                                | (bounds[1] > values.max(axis=0, initial=-np.inf)))
        if outside.any():
            bounds[:, outside] = np.quantile(values[:, outside], [alpha / 2, 1 - alpha / 2], axis=0)
    elif finite.any():
        bounds[:, finite] = np.quantile(values[:, finite], [alpha / 2, 1 - alpha / 2], axis=0)
    return bounds


def _intervals(estimate: dict[str, np.ndarray], replicates: dict[str, np.ndarray], studentized: bool,
               confidence: float) -> tuple[dict, dict]:
    """Interval bounds per statistic and stratum. A resample that gave a stratum no weight at all (every
    request drawn 0 times: likely only for a handful of requests, e^-n) holds no data on it and is left out
    of that stratum's interval; any other undefined replicate (a ratio over a zero cost) leaves the interval
    undefined."""
    alpha = 1 - confidence
    counted = replicates[RESAMPLED_REQUESTS] > 0
    whole = counted.all(axis=0)  # strata that every resample weighed: one vectorised pass
    low, high = {}, {}
    for name, values in replicates.items():
        if name.startswith(SE_PREFIX) or name == RESAMPLED_REQUESTS:
            continue
        student = name in STUDENTIZED and studentized
        se_star, se = (replicates[SE_PREFIX + name], estimate[SE_PREFIX + name]) if student else (None, None)
        bounds = np.full((2, values.shape[1]), np.nan)
        bounds[:, whole] = _bounds(values[:, whole], estimate[name][whole],
                                   se_star[:, whole] if student else None, se[whole] if student else None, alpha)
        for stratum in np.flatnonzero(~whole):
            rows, column = counted[:, stratum], slice(stratum, stratum + 1)
            bounds[:, column] = _bounds(values[rows, column], estimate[name][column],
                                        se_star[rows, column] if student else None,
                                        se[column] if student else None, alpha)
        low[name], high[name] = bounds[0], bounds[1]
    return low, high


def paired_bootstraps(sample: PairedSample, *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                      workers: int | None = None) -> tuple[BootstrapResult, BootstrapResult]:
    """(per stratum, over all requests): percentile intervals of every statistic (studentized for the cost
    changes) from `resamples` keyed Poisson resamples.

    Resample b weighs each request by a Poisson(1) count that is a function of (seed, b, the request's key)
    alone (simulator.core.resample), so the result depends only on the inputs, the seed and the number of
    resamples: not on the order of the requests, chunking, sharding or the number of threads. Both results
    come from the same resamples: a stratum's weights are the overall resample's weights on its requests.
    """
    confidence = _check_settings(resamples, confidence)
    by_stratum, overall = resampled(sample, resamples, seed, workers=workers)
    results = []
    for replicates, whole in ((by_stratum, False), (overall, True)):
        estimate = sample.estimates(whole)
        studentized = sample.studentized and (not whole or sample.n <= STUDENTIZED_MAX_REQUESTS)
        low, high = _intervals(estimate, replicates, studentized, confidence)
        sizes = np.array([sample.n]) if whole else sample.sizes
        for bounds in (*low.values(), *high.values()):
            bounds[sizes < MIN_INTERVAL_REQUESTS] = np.nan
        codes = np.zeros(1, dtype=np.int64) if whole else sample.stratum_codes
        results.append(BootstrapResult(stratum_codes=codes, sizes=sizes, confidence=confidence,
                                       resamples=resamples, seed=seed, estimate=estimate, low=low, high=high,
                                       replicates=replicates))
    return results[0], results[1]


def paired_bootstrap(sample: PairedSample, *, resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95, workers: int | None = None) -> BootstrapResult:
    """Per stratum: `paired_bootstraps`' first result."""
    return paired_bootstraps(sample, resamples=resamples, seed=seed, confidence=confidence, workers=workers)[0]


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
