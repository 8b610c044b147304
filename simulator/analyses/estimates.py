"""Design-weighted estimates: whole-traffic figures from a policy replayed exactly on a shadow sample.

A shadow sample re-ran a stratified random sample of the logged requests on every candidate model, each
request drawn with a known inclusion probability pi_i (`inclusion_probability`). The policy is replayed
exactly on the drawn requests; whole-traffic figures are then estimated with inverse-probability weights
w_i = 1 / pi_i:

- Horvitz-Thompson total of y: sum_i w_i y_i; Hajek mean: sum_i w_i y_i / sum_i w_i (Horvitz & Thompson
  1952; Hajek 1971). The mean is taken within each stratum h (slice) and combined with the stratum's known
  share of the traffic N_h / N (post-stratified Hajek), so a stratum drawn more heavily does not weigh more.
  With pi_i = n_h / N_h, as a stratified simple random sample gives, sum_i w_i = N_h and the Hajek and
  Horvitz-Thompson means coincide.
- Pass rate and cost per request are such means; the escalation rate is the ratio of two (escalated over
  multi-step requests); the p95 latency is the weighted quantile: the smallest latency whose weighted
  cumulative share reaches 0.95.
- Intervals: stratified Poisson bootstrap over requests, percentile intervals. Resample b gives drawn
  request i the count c(b, i) ~ Poisson(1), a function of (seed, b, the request id) alone (the keyed weights
  of simulator.core.resample under the purpose STRATIFIED_PURPOSE): each stratum is resampled within itself,
  its size varying around n_h (Poisson counts are the multinomial counts of resampling n_h of n_h with
  replacement, unconditioned on their total; Hanley and MacGibbon 2006). Where a resample gives a stratum
  no count at all, that stratum's counts in that resample are drawn again from the next keyed stream
  (purpose STRATIFIED_PURPOSE/1, /2, ...), i.e. its counts are Poisson conditioned on a non-empty stratum, so
  every resample has a mean in every stratum. The draws, and so the intervals, do not depend on the order of
  the requests or on how they are split. Because the sample was drawn without replacement from
  a finite week, each stratum's resampled deviation of a mean from its sample value is scaled by
  sqrt((1 - f_h) n_h / (n_h - 1)), f_h = n_h / N_h (the rescaling bootstrap of Rao & Wu 1988, JASA 83:231),
  so intervals shrink to nothing as the sample approaches the whole stratum. The p95 interval is the plain
  stratified bootstrap (no rescaling), which is conservative. A stratum of a single drawn request carries
  no variance information; it is counted in `diagnostics.strata_single`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from simulator.analyses.gate import GateOptions, GateSide, gate_result, recheck, run_gate
from simulator.core.contract import Dataset
from simulator.core.engine import Progress, Replay, replay, select_requests
from simulator.core.errors import RoutesimError
from simulator.core.draws import key_hashes, splitmix64, stream
from simulator.core.formats import counted
from simulator.core.prices import PriceSheet
from simulator.core.results import build_summary
from simulator.core.runner import Inputs, Outcome, run_scenario
from simulator.core.scenario import Scenario
from simulator.core.stats import check_confidence
from simulator.core.verdict import DEFAULT_ADMISSION, MEETS, estimated_verdict, shortfalls

DESIGN_WEIGHTED = "design-weighted"
# The figures each estimator gives, in the summary's metric names.
MEAN_METRICS = ("pass_rate", "cost_per_request_usd")
QUANTILE = 0.95
STRATIFIED_PURPOSE = "stratified-bootstrap"  # the keyed draws of the design-weighted intervals
_REDRAWS = 64  # a stratum of one request is empty in all 64 redraws with probability e^-64


@dataclass(frozen=True)
class Estimate:
    """One estimated figure: point value and interval (None where undefined), and how it was obtained."""

    metric: str
    value: float | None
    low: float | None
    high: float | None
    kind: str

    def as_dict(self) -> dict:
        return {"metric": self.metric, "value": self.value, "low": self.low, "high": self.high, "kind": self.kind}


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Per row of `weights` (resamples x requests): the smallest value whose weighted share reaches q."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[:, order], axis=1)
    total = cumulative[:, -1:]
    index = (cumulative < q * total).sum(axis=1)
    return values[order][np.minimum(index, len(values) - 1)]


def _shared(means: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Per row of (rows x strata) `means`: the strata's means combined by their shares (no BLAS)."""
    return (means * shares).sum(axis=1)


class StratifiedSample:
    """The drawn requests of a stratified sample: values, weights, strata and each stratum's population.

    `strata` holds codes 0..S-1; `population[h]` is N_h, the stratum's requests in the whole traffic;
    `keys` the requests' ids (strings) or their 64-bit key hashes (simulator.core.draws.key_hashes), which
    the bootstrap draws are keyed by.
    """

    def __init__(self, strata: np.ndarray, weights: np.ndarray, population: np.ndarray,
                 columns: dict[str, np.ndarray], *, keys):
        self.strata = np.asarray(strata, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.population = np.asarray(population, dtype=np.float64)
        self.columns = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
        self.keys = keys if isinstance(keys, np.ndarray) and keys.dtype == np.uint64 else key_hashes(keys)
        if len(self.keys) != len(self.strata):
            raise ValueError("one key per drawn request")
        self.sizes = np.bincount(self.strata, minlength=len(self.population))
        # Each weight over its stratum's largest: a stratum's means are ratios of its sums, which that scale
        # leaves unchanged, and the equal weights of a stratified draw become exactly 1, so 208 passes of 210
        # read 208/210 computed once (0.9904761904761905), not a sum of 208 weights of 10.1 over 210 of them.
        largest = np.zeros(len(self.population))
        np.maximum.at(largest, self.strata, self.weights)
        self._relative = self.weights / np.where(largest > 0, largest, 1.0)[self.strata]
        # The requests stratum by stratum, each stratum in key order: sums then run in an order that does not
        # depend on the order the requests came in, so neither do the figures' last bits.
        self._order = np.lexsort((self.keys, self.strata))
        if np.any((self.sizes == 0) & (self.population > 0)):
            raise RoutesimError("a stratum of the traffic has no drawn request, so nothing can be said about it",
                                fix="draw at least one request from every slice (routesim plan-shadow does)")
        self.shares = self.population / self.population.sum()
        fraction = np.minimum(self.sizes / np.maximum(self.population, 1), 1.0)
        self.scale = np.where(self.sizes > 1, np.sqrt((1 - fraction) * self.sizes / np.maximum(self.sizes - 1, 1)), 0.0)

    def stratum_means(self, counts: np.ndarray, column: str, among: str | None = None) -> np.ndarray:
        """(resamples x strata) weighted means of `column` (over requests where `among` is 1)."""
        weight = counts * self._relative
        if among is not None:
            weight = weight * self.columns[among]
        # Each stratum's sums over its requests in a fixed order (numpy's reduceat, no BLAS whose blocking
        # follows the thread count), so the figures are the same bytes at any thread count.
        present = self.sizes > 0
        starts = (np.cumsum(self.sizes) - self.sizes)[present]
        weight = weight[:, self._order]
        sums = np.zeros((counts.shape[0], len(self.population)))
        totals = np.zeros_like(sums)
        sums[:, present] = np.add.reduceat(weight * self.columns[column][self._order], starts, axis=1)
        totals[:, present] = np.add.reduceat(weight, starts, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / totals, totals

    def draw_counts(self, resamples: int, seed: int) -> np.ndarray:
        """(resamples x requests) Poisson(1) counts, c(b, i) a function of (seed, b, request i's key) alone;
        a stratum a resample leaves empty is drawn again from the next keyed stream (module doc)."""
        counts = keyed_counts(self.keys, resamples, seed, STRATIFIED_PURPOSE)
        for attempt in range(1, _REDRAWS + 1):
            empty = self._stratum_totals(counts) == 0  # (resamples x strata)
            empty &= self.sizes[None, :] > 0
            if not empty.any():
                break
            redraw = keyed_counts(self.keys, resamples, seed, f"{STRATIFIED_PURPOSE}/{attempt}")
            cells = empty[:, self.strata]  # (resamples x requests): the requests of an empty stratum
            counts[cells] = redraw[cells]
        return counts

    def _stratum_totals(self, counts: np.ndarray) -> np.ndarray:
        totals = np.zeros((counts.shape[0], len(self.population)), dtype=np.int64)
        present = self.sizes > 0
        starts = (np.cumsum(self.sizes) - self.sizes)[present]
        totals[:, present] = np.add.reduceat(counts[:, self._order], starts, axis=1)
        return totals

    def mean(self, column: str, boot: np.ndarray) -> tuple[float, np.ndarray]:
        """Point estimate and bootstrap replicates of the whole-traffic mean of `column`."""
        point, _ = self.stratum_means(np.ones((1, len(self.strata))), column)
        replicates, _ = self.stratum_means(boot, column)
        rescaled = point + self.scale * (replicates - point)
        return float(_shared(point, self.shares)[0]), _shared(rescaled, self.shares)

    def stratum_intervals(self, column: str, boot: np.ndarray, confidence: float) -> list[tuple]:
        """Per stratum: (mean, low, high) of `column` within it, rescaled like `mean` (a census: no width)."""
        point, _ = self.stratum_means(np.ones((1, len(self.strata))), column)
        replicates, _ = self.stratum_means(boot, column)
        rescaled = point + self.scale * (replicates - point)
        return [(_finite(point[0, h]), *interval(rescaled[:, h], confidence)) for h in range(len(self.population))]

    def ratio(self, numerator: str, denominator: str, boot: np.ndarray) -> tuple[float, np.ndarray]:
        """Whole-traffic ratio of two means (e.g. escalated among multi-step requests)."""
        def totals(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            num, _ = self.stratum_means(counts, numerator)
            den, _ = self.stratum_means(counts, denominator)
            return np.nan_to_num(num), np.nan_to_num(den)

        point_num, point_den = totals(np.ones((1, len(self.strata))))
        boot_num, boot_den = totals(boot)
        boot_num = point_num + self.scale * (boot_num - point_num)
        boot_den = point_den + self.scale * (boot_den - point_den)
        with np.errstate(invalid="ignore", divide="ignore"):
            point = _shared(point_num, self.shares) / _shared(point_den, self.shares)
            return float(point[0]), _shared(boot_num, self.shares) / _shared(boot_den, self.shares)

    def quantile(self, column: str, q: float, boot: np.ndarray) -> tuple[float, np.ndarray]:
        """Weighted quantile, each request weighted by w_i x N_h-share of its stratum's weight total."""
        stratum_total = np.bincount(self.strata, weights=self.weights, minlength=len(self.population))
        base = self.weights * (self.shares / np.maximum(stratum_total, 1e-300))[self.strata]
        values = self.columns[column]
        point = _weighted_quantile(values, base[None, :], q)[0]
        drawn_total = np.stack([np.bincount(self.strata, weights=row * self.weights, minlength=len(self.population))
                                for row in boot])
        per_request = boot * self.weights * (self.shares / np.maximum(drawn_total, 1e-300))[:, self.strata]
        return float(point), _weighted_quantile(values, per_request, q)


def keyed_counts(keys: np.ndarray, resamples: int, seed: int, purpose: str) -> np.ndarray:
    """(resamples x keys) Poisson(1) counts: row b is simulator.core.resample's weights of resample b for
    the keys mixed with `purpose`'s stream under `seed` (splitmix64(key XOR stream(seed, purpose)))."""
    # numba's compiled loops load here, when a shadow sample is estimated, not with every replay's imports
    from simulator.core.resample import pair_streams, poisson_weights

    mixed = splitmix64(keys ^ stream(seed, purpose))
    pairs = (resamples + 1) // 2
    bits = splitmix64(mixed[None, :] ^ pair_streams(pairs)[:, None])  # (pairs x keys)
    halves = np.stack([bits & np.uint64(0xFFFFFFFF), bits >> np.uint64(32)], axis=1)  # even b low, odd b high
    return poisson_weights(halves.reshape(2 * pairs, len(keys))[:resamples])


def interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return None, None
    alpha = 1 - confidence
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def sample_estimates(sample: StratifiedSample, *, resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95, boot: np.ndarray | None = None) -> list[Estimate]:
    """Pass rate, cost per request, escalation rate and p95 latency of the whole traffic, with intervals.

    Reads columns `passed`, `cost_usd`, `escalated`, `multi_step` and `latency_ms` of the sample (those present).
    `boot` (resamples x requests, from `draw_counts`) is drawn from `resamples` and `seed` when not given.
    """
    confidence = check_confidence(confidence)
    boot = sample.draw_counts(resamples, seed) if boot is None else boot
    figures = {"pass_rate": sample.mean("passed", boot) if "passed" in sample.columns else None,
               "cost_per_request_usd": sample.mean("cost_usd", boot) if "cost_usd" in sample.columns else None}
    if {"escalated", "multi_step"} <= set(sample.columns) and sample.columns["multi_step"].any():
        figures["escalation_rate"] = sample.ratio("escalated", "multi_step", boot)
    if "latency_ms" in sample.columns:
        figures["latency_p95_ms"] = sample.quantile("latency_ms", QUANTILE, boot)
    estimates = []
    for metric, figure in figures.items():
        if figure is None:
            continue
        point, replicates = figure
        low, high = interval(replicates, confidence)
        estimates.append(Estimate(metric, _finite(point), low, high, DESIGN_WEIGHTED))
    return estimates


@dataclass(frozen=True)
class DesignWeighted:
    """A policy replayed exactly on a shadow sample, and its whole-traffic estimates."""

    scenario: str
    requests: int  # the window's requests: the traffic estimated
    sampled: int  # the drawn requests the policy was replayed on
    estimates: list[Estimate]
    strata: list[dict]  # per slice: population, drawn, inclusion probability, pass rate and its interval
    diagnostics: dict
    replay: Replay | None = field(default=None, repr=False, compare=False)  # the exact replay of the drawn requests

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "kind": DESIGN_WEIGHTED, "requests": self.requests,
                "sampled": self.sampled, "estimates": [e.as_dict() for e in self.estimates],
                "strata": self.strata, "diagnostics": self.diagnostics}


def _latency_note(data: Dataset, drawn: pl.DataFrame, models: list[str]) -> str:
    """Whether the drawn answers' latencies were measured: batch re-runs record none (importers.shadow)."""
    if "latency_source" not in data.outcomes.collect_schema():
        return "measured"
    sources = (data.outcomes.join(drawn.lazy(), on="request_id", how="semi").filter(pl.col("model").is_in(models))
               .group_by("latency_source").agg(pl.len()).collect())
    counts = dict(sources.iter_rows())
    if counts.get("unavailable"):
        return (f"unavailable: {counts['unavailable']:,} batch answer(s) have no served latency of their model "
                "to stand in for theirs")
    if counts.get("served_median"):
        return (f"{counts['served_median']:,} batch answer(s) carry their model's median served latency in "
                "their slice")
    return "measured"


def shadow_subset(data: Dataset, ids: pl.DataFrame) -> Dataset:
    """The data folder restricted to the drawn requests (same fingerprint: the same data)."""
    keep = ids.lazy()
    return Dataset(folder=data.folder, traffic=data.traffic.join(keep, on="request_id", how="semi"),
                   outcomes=data.outcomes.join(keep, on="request_id", how="semi"), fingerprint=data.fingerprint)


def drawn_probabilities(data: Dataset) -> pl.DataFrame:
    """(request_id, pi) of every request drawn into the shadow sample; raises RoutesimError when a request's
    answers carry different inclusion probabilities."""
    drawn = (data.outcomes.filter(pl.col("inclusion_probability").is_not_null())
             .group_by("request_id").agg(pl.col("inclusion_probability").min().alias("pi"),
                                         pl.col("inclusion_probability").max().alias("pi_max")).collect())
    uneven = drawn.filter(pl.col("pi") != pl.col("pi_max"))
    if uneven.height:
        raise RoutesimError(f"{uneven.height} request(s) carry different inclusion probabilities on different answers",
                            where=f"{data.folder}, e.g. request {uneven.sort('request_id')['request_id'][0]}",
                            fix="a request is drawn into the shadow sample once: give all its answers the same probability")
    return drawn.select("request_id", "pi")


def design_weighted(scenario: Scenario, data: Dataset, sheet: PriceSheet | None, *, resamples: int = 1000,
                    seed: int = 0, confidence: float = 0.95) -> DesignWeighted:
    """Replays `scenario` exactly on the shadow sample of `data` and estimates the whole window's figures.

    Raises RoutesimError when the data has no shadow sample, when the scenario samples requests itself,
    or when a drawn request lacks an outcome the policy reaches.
    """
    if "inclusion_probability" not in data.outcomes.collect_schema():
        raise RoutesimError("the data holds no shadow sample (no outcomes column inclusion_probability)",
                            where=str(data.folder),
                            fix="plan one with 'routesim plan-shadow', run it and import its answers with --plan "
                                "PLAN (then their grades with --merge)")
    if scenario.sample is not None:
        raise RoutesimError("a design-weighted estimate replays the shadow sample; the scenario draws its own sample",
                            where=f"scenario '{scenario.name}', key 'sample'", fix="remove 'sample'")
    window, _ = select_requests(scenario, data, ["request_id", "ts", "slice"])
    drawn = window.select("request_id", "slice").join(drawn_probabilities(data), on="request_id")
    if drawn.is_empty():
        raise RoutesimError("no request of the window was drawn into the shadow sample",
                            where=f"scenario '{scenario.name}'", fix="check the window and the shadow sample")
    exact = scenario.model_copy(update={"on_missing": "error"})
    result = replay(exact, shadow_subset(data, drawn.select("request_id")), sheet)
    decisions = result.decisions.join(drawn.select("request_id", "pi"), on="request_id", how="left")
    slices = sorted(set(window["slice"]))
    population = window.group_by("slice").agg(pl.len().alias("N"))
    codes = {name: index for index, name in enumerate(slices)}
    sizes = dict(population.iter_rows())
    sample = StratifiedSample(
        strata=decisions["slice"].replace_strict(codes, return_dtype=pl.Int64).to_numpy(),
        weights=(1.0 / decisions["pi"]).to_numpy(),
        population=np.array([sizes[name] for name in slices], dtype=np.float64),
        columns={"passed": decisions["passed"].cast(pl.Float64).to_numpy(),
                 "cost_usd": decisions["cost_usd"].to_numpy(),
                 "latency_ms": decisions["latency_ms"].to_numpy(),
                 "escalated": decisions["escalated"].cast(pl.Float64).to_numpy(),
                 "multi_step": decisions["multi_step"].cast(pl.Float64).to_numpy()},
        keys=decisions["request_id"])
    boot = sample.draw_counts(resamples, seed)
    estimates = sample_estimates(sample, confidence=confidence, boot=boot)
    pass_by_slice = dict(zip(slices, sample.stratum_intervals("passed", boot, confidence)))
    latency = _latency_note(data, drawn.select("request_id"), scenario.policy.models())
    if latency.startswith("unavailable"):
        estimates = [e for e in estimates if e.metric != "latency_p95_ms"]
    per_stratum = (decisions.group_by("slice").agg(pl.len().alias("drawn"), pl.col("pi").first().alias("inclusion_probability"))
                   .join(population, on="slice").sort("slice"))
    strata = [{"slice": s, "population": n_pop, "drawn": n, "inclusion_probability": p,
               **dict(zip(("pass_rate", "low", "high"), pass_by_slice[s]))}
              for s, n, p, n_pop in per_stratum.iter_rows()]
    weights = 1.0 / decisions["pi"].to_numpy()  # summed by numpy in row order: polars sums by chunk
    weight_sum = float(weights.sum())
    diagnostics = {"weight_sum": weight_sum, "population": window.height,
                   "max_weight": float(weights.max()),
                   "strata_single": int((sample.sizes == 1).sum()), "resamples": resamples, "seed": seed,
                   "confidence": confidence, "latency": latency}
    return DesignWeighted(scenario=scenario.name, requests=window.height, sampled=decisions.height,
                          estimates=estimates, strata=strata, diagnostics=diagnostics, replay=result)


def has_shadow_sample(data: Dataset) -> bool:
    """Whether some outcome of the data carries an `inclusion_probability` (a shadow sample was merged in)."""
    if "inclusion_probability" not in data.outcomes.collect_schema():
        return False
    return bool(data.outcomes.select(pl.col("inclusion_probability").is_not_null().any()).collect().item())


def weighted_summary(summary: dict, result: DesignWeighted, scenario: Scenario) -> dict:
    """The exact summary of the drawn requests (`build_summary` of `result.replay`) turned into the window's.

    The headline figures become the design-weighted estimates, with `estimates` holding each one's
    interval; `requests` is the window's, `sampled` the drawn requests; `total_cost_usd` is the
    Horvitz-Thompson total, cost per request x requests. Each slice's pass rate is its drawn requests' mean
    (a simple random sample of the slice: the Hajek mean) with its rescaled bootstrap interval, and the
    verdict judges these intervals by the one admission rule (simulator.core.verdict.estimated_verdict).
    Figures that are not estimated (mean score, p50 and p99, retries) are null: the drawn requests alone,
    unweighted, would be figures of a sample whose slices are drawn at different rates. `by_slice` rows are
    estimates of their slice; `by_day`, `by_model` and `over_time` stay figures of the drawn requests,
    which `kind` and `tables_of` say.
    """
    admission = scenario.admission or DEFAULT_ADMISSION
    figures = {e.metric: e for e in result.estimates}
    cost = figures.get("cost_per_request_usd")
    updated = dict(summary)
    for metric in ("mean_score", "latency_p50_ms", "latency_p99_ms", "retry_rate", "retry_exhausted",
                   "latency_p95_ms", "escalation_rate"):
        updated[metric] = None
    for metric, figure in figures.items():
        updated[metric] = figure.value
    updated["requests"] = result.requests
    updated["total_cost_usd"] = None if cost is None or cost.value is None else cost.value * result.requests
    by_slice = {row["slice"]: row for row in result.strata}
    updated["by_slice"] = [row | {"requests": by_slice[row["slice"]]["population"],
                                  "sampled": by_slice[row["slice"]]["drawn"],
                                  "total_cost_usd": row["cost_per_request_usd"] * by_slice[row["slice"]]["population"]}
                           for row in summary["by_slice"]]
    overall = figures.get("pass_rate")
    verdict = estimated_verdict(
        {"pass_rate": overall.value, "low": overall.low, "high": overall.high, "sampled": result.sampled},
        [{"slice": row["slice"], "pass_rate": row["pass_rate"], "low": row["low"], "high": row["high"],
          "sampled": row["drawn"]} for row in result.strata],
        scenario.quality_bar.default, scenario.quality_bar.for_slice, admission)
    updated |= {"kind": DESIGN_WEIGHTED, "sampled": result.sampled, "verdict": verdict,
                "meets_bar": verdict["state"] == MEETS, "bar_failures": shortfalls(verdict),
                "tables_of": "drawn requests",
                "estimates": {"kind": DESIGN_WEIGHTED, "figures": [e.as_dict() for e in result.estimates],
                              "strata": result.strata, "diagnostics": result.diagnostics}}
    return updated



def replay_or_estimate(scenario: Scenario, inputs: Inputs, progress: Progress | None = None, *,
                       resamples: int = 1000, seed: int = 0) -> Outcome:
    """The scenario's exact replay (simulator.core.runner.run_scenario), or, when its data is a served log
    with a shadow sample that holds every outcome the policy reaches while the whole window does not, the
    exact replay of the drawn requests with design-weighted figures for the window (`weighted_summary`).

    A scenario that asks for `on_missing: skip` or draws its own `sample` is replayed as it asks.
    """
    from simulator.analyses.coverage import DESIGN_WEIGHTED as CAN_WEIGH, scenario_coverage

    data, sheet = inputs.data(scenario), inputs.prices(scenario)
    if scenario.on_missing != "error" or scenario.sample is not None or not has_shadow_sample(data):
        return run_scenario(scenario, inputs, progress)
    coverage = scenario_coverage(scenario, data, sheet)
    if coverage.kind != CAN_WEIGH:
        return run_scenario(scenario, inputs, progress)
    if progress:
        progress("design-weighted estimates from the shadow sample")
    result = design_weighted(scenario, data, sheet, resamples=resamples, seed=seed,
                             confidence=(scenario.admission or DEFAULT_ADMISSION).confidence)
    summary = weighted_summary(build_summary(result.replay, data, sheet), result, scenario)
    summary["coverage"] = {"requests_in_window": coverage.requests, "requests_selected": coverage.requests,
                           "requests_replayed": coverage.replayable, "share": coverage.share,
                           "missing_by_model": coverage.missing_by_model, "sampled": coverage.sampled,
                           "sampled_replayable": coverage.sampled_replayable}
    return Outcome(replay=result.replay, summary=summary)


def weigh_gate(result: dict, baseline: Outcome, candidate: Outcome, data: Dataset, options: GateOptions) -> dict:
    """A gate result of two design-weighted outcomes (`gate_result` on their drawn requests) with its
    whole-window numbers made design-weighted.

    Overall, both policies' pass rate, cost per request and p95, and the changes in pass rate, cost per
    request (absolute and relative) and p95, are estimated from the paired drawn requests with the
    stratified rescaled bootstrap (`StratifiedSample`, `options.resamples` and `options.seed`), since the
    drawn requests alone over-represent the slices drawn at higher rates. Each slice's changes stay the
    paired bootstrap of its drawn requests (a simple random sample of the slice; no finite-population
    correction, so conservative). The bar checks judge the candidate's estimated verdict (its summary's,
    simulator.core.verdict.estimated_verdict), and the failures are checked again (`recheck`).
    """
    columns = ["request_id", "slice", "passed", "cost_usd", "latency_ms"]
    paired = (baseline.replay.decisions.select(columns)
              .join(candidate.replay.decisions.select(columns), on="request_id", suffix="_candidate")
              .join(drawn_probabilities(data), on="request_id").sort("request_id"))
    strata = candidate.summary["estimates"]["strata"]
    codes = {row["slice"]: code for code, row in enumerate(strata)}
    sample = StratifiedSample(
        strata=paired["slice"].replace_strict(codes, return_dtype=pl.Int64).to_numpy(),
        weights=(1.0 / paired["pi"]).to_numpy(),
        population=np.array([row["population"] for row in strata], dtype=np.float64),
        columns={"base_pass": paired["passed"].cast(pl.Float64).to_numpy(),
                 "cand_pass": paired["passed_candidate"].cast(pl.Float64).to_numpy(),
                 "base_cost": paired["cost_usd"].to_numpy(), "cand_cost": paired["cost_usd_candidate"].to_numpy(),
                 "base_latency": paired["latency_ms"].cast(pl.Float64).to_numpy(),
                 "cand_latency": paired["latency_ms_candidate"].cast(pl.Float64).to_numpy()},
        keys=paired["request_id"])
    boot = sample.draw_counts(options.resamples, options.seed)
    figures = {name: sample.mean(name, boot) for name in ("base_pass", "cand_pass", "base_cost", "cand_cost")}
    relative = sample.ratio("cand_cost", "base_cost", boot)
    latency = None
    if not (np.isnan(sample.columns["base_latency"]).any() or np.isnan(sample.columns["cand_latency"]).any()):
        latency = {name: sample.quantile(name, QUANTILE, boot) for name in ("base_latency", "cand_latency")}

    def change(after: tuple, before: tuple, offset: float = 0.0) -> dict:
        low, high = interval(after[1] - before[1] - offset, options.admission.confidence)
        return {"estimate": _finite(after[0] - before[0] - offset), "low": low, "high": high}

    overall = result["overall"]
    for side, prefix in (("baseline", "base"), ("candidate", "cand")):
        overall[side] = {"pass_rate": figures[f"{prefix}_pass"][0], "cost_per_request_usd": figures[f"{prefix}_cost"][0],
                         "latency_p95_ms": latency[f"{prefix}_latency"][0] if latency else None}
    overall["pass_rate_change"] = change(figures["cand_pass"], figures["base_pass"])
    overall["cost_per_request_change_usd"] = change(figures["cand_cost"], figures["base_cost"])
    overall["cost_relative_change"] = change(relative, (0.0, np.zeros_like(relative[1])), 1.0)
    if latency:
        overall["latency_p95_change_ms"] = change(latency["cand_latency"], latency["base_latency"])
    overall["sampled"], overall["requests"] = overall["requests"], candidate.summary["requests"]
    verdict = candidate.summary["verdict"]
    verdicts = {None: verdict["overall"], **{scope["slice"]: scope for scope in verdict["slices"]}}
    result = recheck(result, options, verdicts)
    result["kind"] = DESIGN_WEIGHTED
    result["notes"].append(
        f"design-weighted: the overall figures and changes are estimates for all "
        f"{counted(overall['requests'], 'request')} "
        f"from the {overall['sampled']:,} drawn into the shadow sample (stratified rescaled bootstrap); each slice's "
        "changes are its drawn requests' paired bootstrap; the bar checks judge the estimates' intervals"
        + ("" if latency else "; p95 is of the drawn requests: some have no measured latency"))
    return result


def gate_scenarios(baseline_path, candidate_path, options: GateOptions, *, shards=None, runner: str = "local") -> dict:
    """`routesim gate`: `run_gate` on exact replays (on `shards` with `runner` when given); on a
    shadow-sampled served log that neither scenario can replay exactly, the gate of the two design-weighted
    outcomes (`weigh_gate`), which runs on the whole data folder only."""
    from pathlib import Path

    from simulator.core.scenario import load_scenario

    scenarios = [load_scenario(Path(path)) for path in (baseline_path, candidate_path)]
    inputs = Inputs()
    if not any(has_shadow_sample(inputs.data(scenario)) for scenario in scenarios):
        return run_gate(baseline_path, candidate_path, options, shards=shards, runner=runner)
    if shards is not None:
        raise RoutesimError("a gate on shadow-sampled data is estimated on the whole data folder, not on shards",
                            where="--shards", fix="leave out --shards")
    options = options.settled([(s.name, s.admission) for s in scenarios])  # as run_gate: one setting per run
    options.check()
    scenarios = [s.model_copy(update={"admission": options.admission}) for s in scenarios]
    outcomes = [replay_or_estimate(s, inputs, resamples=options.resamples, seed=options.seed) for s in scenarios]
    kinds = [outcome.summary["kind"] for outcome in outcomes]
    if kinds != [DESIGN_WEIGHTED, DESIGN_WEIGHTED]:
        if DESIGN_WEIGHTED not in kinds:
            return run_gate(baseline_path, candidate_path, options)
        raise RoutesimError(f"the baseline's figures are {kinds[0]} and the candidate's {kinds[1]}: a gate compares "
                            "figures of one kind", where=f"baseline {baseline_path}, candidate {candidate_path}",
                            fix="gate two policies on the same shadow-sampled data, or both on complete outcomes")
    sides = [GateSide(name=o.summary["scenario"], decisions=o.replay.decisions, quality_bar=s.quality_bar,
                      bar_stated=s.quality_bar_stated,
                      description=s.description, source=str(path),
                      prices_fingerprint=o.summary["provenance"]["prices_fingerprint"])
             for o, s, path in zip(outcomes, scenarios, (baseline_path, candidate_path))]
    result = gate_result(*sides, options)
    return weigh_gate(result, *outcomes, inputs.data(scenarios[1]), options)
