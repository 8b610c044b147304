"""The regression gate: does a candidate routing policy hold up against the baseline, slice by slice?

A rerouting swaps the model for every request of a slice, so it ships only through a gate that compares
the candidate with the baseline on the same requests (same data, window and sample), request by request.

Modelling assumptions:
- Intervals are paired Poisson bootstrap intervals (simulator.core.stats): `--resamples` resamples from
  `--seed`, each weighing every request (with `--resample session`, every session: a session's turns move
  together, for traffic where turns are not independent) by a Poisson(1) count keyed by its id, so the whole replay and each slice come from the same resamples and
  no row order, chunking or thread count changes them. Only requests whose verdict differs between the
  policies move the pass-rate interval, so a slice the candidate routes like the baseline has an interval
  of exactly zero width. Requests without a latency are left out of the p95s.
- Non-inferiority. A slice fails when the lower bound of its pass-rate change lies below minus its
  tolerance: the data cannot rule out a loss larger than the tolerance. The tolerance is `--tolerance`
  (default 0.01, one point; also used for the whole replay) or `--tolerance-slice SLICE=X`. Scenarios have
  no tolerance key: the margin is a property of the gate, not of the policy.
- Bar. A slice also fails when the candidate's pass rate does not meet the slice's bar in the candidate
  scenario's `quality_bar` under the run's admission rule (simulator.core.verdict.judge, as `routesim
  replay` judges bars: by default its Wilson lower bound must reach the bar); the whole replay
  against `quality_bar.default`.
- Budgets, optional and on the whole replay only: the gate fails when the upper bound of the relative change
  in cost per request exceeds `--max-cost-increase` (0.05 = +5%), or when the upper bound of the change in
  p95 latency exceeds `--max-p95-increase-ms`. A budget claims the candidate stays within it, so the
  interval's unfavourable end must. When the baseline cost nothing the relative change is undefined and
  the cost budget fails if the candidate costs more than the baseline.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.formats import (against, confidence_level, counted, given, pct_against, points, signed_ms,
                                    signed_pct, usd)
from simulator.core.limits import MAX_RESAMPLES
from simulator.core.metrics import P95
from simulator.core.scenario import QualityBar, Scenario, default_bar_note, load_scenario
from simulator.core.verdict import MEETS, Admission, judge, resolve_admission
from simulator.core.stats import (
    BASELINE_COST,
    BASELINE_LATENCY,
    BASELINE_PASS_RATE,
    CANDIDATE_COST,
    CANDIDATE_LATENCY,
    CANDIDATE_PASS_RATE,
    COST_CHANGE,
    COST_RELATIVE_CHANGE,
    LATENCY_CHANGE,
    MIN_INTERVAL_REQUESTS,
    PASS_RATE_CHANGE,
    BootstrapResult,
    PairedSample,
    PolicyOutcomes,
    paired_bootstraps,
    settle_resamples,
)

DECISION_COLUMNS = ["request_id", "slice", "passed", "cost_nano_usd", "latency_ms"]
# What the bootstrap resamples: requests one by one (default), or whole sessions (a request without a
# session_id is a session of its own).
RESAMPLE_UNITS = ("request", "session")
LATENCY_QUANTILE = P95
NON_INFERIORITY, BAR, COST_BUDGET, LATENCY_BUDGET = "non_inferiority", "bar", "cost_budget", "p95_budget"
EXAMPLES = 3
# A pass-rate change this close to minus the tolerance is on it: floating-point noise, not a larger loss.
TOLERANCE_SLACK = 1e-12
LOADING_SWITCH_INTERVAL = 0.0002  # seconds: the interpreter's thread switch interval while the loops load


@dataclass(frozen=True)
class GateOptions:
    """The gate's settings. One confidence per run: the bootstrap intervals take the bar check's admission
    confidence (`settled`), as `routesim replay` judges every figure by one admission setting."""

    resamples: int | None = None  # None: as many as the confidence needs, at least 1,000 (`settled`)
    seed: int = 0
    confidence: float | None = None  # overrides the admission's (--confidence); the intervals take the result
    rule: str | None = None  # overrides the admission's rule (--rule)
    tolerance: float = 0.01
    slice_tolerances: dict[str, float] = field(default_factory=dict)
    max_cost_increase: float | None = None
    max_p95_increase_ms: float | None = None
    admission: Admission | None = None  # how the bar check judges the candidate; None: the scenarios' own
    resample: str = "request"  # the bootstrap's unit: RESAMPLE_UNITS

    def settled(self, stated: list[tuple[str, Admission | None]] = ()) -> GateOptions:
        """These options with the run's one admission setting: the given `admission`, else the one the
        scenarios state (`stated`: (name, admission or None)), with `rule` and `confidence` overriding it when
        given (simulator.core.verdict.resolve_admission, which also rejects a bad rule or confidence). The
        gate reads it as `admission`."""
        base = [("options", self.admission)] if self.admission is not None else list(stated)
        admission = resolve_admission(base, rule=self.rule, confidence=self.confidence)
        resamples = self.resamples if self.resamples is not None else settle_resamples(
            None, admission.confidence, most=MAX_RESAMPLES)  # `check` refuses too few given ones
        return replace(self, admission=admission, resamples=resamples)

    def check(self) -> None:
        if self.resample not in RESAMPLE_UNITS:
            raise RoutesimError(f"--resample is '{self.resample}'", where="--resample",
                                fix=f"use one of {', '.join(RESAMPLE_UNITS)}")
        if self.resamples < 1:
            raise RoutesimError(f"--resamples must be at least 1, got {self.resamples}", where="--resamples",
                                fix="use e.g. 1000 resamples")
        settle_resamples(self.resamples, self.admission.confidence, most=MAX_RESAMPLES)
        for name, value in [("--tolerance", self.tolerance), *((f"--tolerance-slice {s}", v)
                                                               for s, v in self.slice_tolerances.items())]:
            if not 0 <= value < 1:  # a margin of 1 would pass any drop, down to no request passing
                raise RoutesimError(f"a tolerance is a pass-rate margin in [0, 1): at least 0 and below 1, got "
                                    f"{value}", where=name, fix="give a margin from 0 up to (not including) 1, "
                                                                "e.g. 0.01 for one percentage point")
        if self.max_cost_increase is not None and self.max_cost_increase < -1:
            raise RoutesimError(f"--max-cost-increase is a relative change above -1, got {self.max_cost_increase}",
                                where="--max-cost-increase", fix="e.g. 0.05 to allow at most +5% cost per request")


@dataclass(frozen=True)
class GateSide:
    """One policy of the comparison: its name, per-request decisions and quality bar."""

    name: str
    decisions: pl.DataFrame  # at least request_id, slice, passed, cost_nano_usd, latency_ms
    quality_bar: QualityBar
    description: str = ""
    source: str = ""
    prices_fingerprint: str | None = None
    bar_stated: bool = True  # False: the scenario left quality_bar out and the default applies


def parse_slice_tolerances(items: list[str] | None) -> dict[str, float]:
    """`SLICE=0.02` items into {slice: tolerance}."""
    tolerances: dict[str, float] = {}
    for item in items or []:
        name, separator, value = item.rpartition("=")
        try:
            tolerance = float(value)
        except ValueError:
            tolerance = None
        if not separator or not name or tolerance is None or not math.isfinite(tolerance):
            raise RoutesimError(f"cannot read --tolerance-slice {item!r}", where="--tolerance-slice",
                                fix="write SLICE=TOLERANCE, e.g. --tolerance-slice faq=0.02")
        tolerances[name] = tolerance
    return tolerances


def _interval(result: BootstrapResult, name: str, stratum: int) -> dict:
    estimate, low, high = result.interval(name, stratum)
    return {"estimate": estimate, "low": low, "high": high}


def _float(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _policy_numbers(result: BootstrapResult, stratum: int, pass_rate: str, cost: str, latency: str) -> dict:
    return {"pass_rate": _float(result.estimate[pass_rate][stratum]),
            "cost_per_request_usd": _float(result.estimate[cost][stratum]),
            "latency_p95_ms": _float(result.estimate[latency][stratum])}


def _row(result: BootstrapResult, stratum: int, *, name: str | None, bar: float, tolerance: float,
         changed: int) -> dict:
    return {
        "slice": name,
        "requests": int(result.sizes[stratum]),
        # Too few requests for the bootstrap to give any interval: the changes have none, and the
        # non-inferiority check is undecided (it cannot pass a slice it cannot judge, nor fail one).
        "too_few_requests": bool(result.sizes[stratum] < MIN_INTERVAL_REQUESTS),
        "changed_verdicts": changed,
        "bar": bar,
        "tolerance": tolerance,
        "baseline": _policy_numbers(result, stratum, BASELINE_PASS_RATE, BASELINE_COST, BASELINE_LATENCY),
        "candidate": _policy_numbers(result, stratum, CANDIDATE_PASS_RATE, CANDIDATE_COST, CANDIDATE_LATENCY),
        "pass_rate_change": _interval(result, PASS_RATE_CHANGE, stratum),
        "cost_per_request_change_usd": _interval(result, COST_CHANGE, stratum),
        "cost_relative_change": _interval(result, COST_RELATIVE_CHANGE, stratum),
        "latency_p95_change_ms": _interval(result, LATENCY_CHANGE, stratum),
        "failures": [],
    }


def _check_row(row: dict, admission: Admission, verdict: dict | None = None) -> None:
    level = confidence_level(admission.confidence)
    change = row["pass_rate_change"]
    # The slack keeps a change of exactly minus the tolerance (e.g. -1 of 100) from failing on rounding.
    if change["low"] is not None and change["low"] < -row["tolerance"] - TOLERANCE_SLACK:
        tolerance = given(row["tolerance"], "points").lstrip("+")
        row["failures"].append({"check": NON_INFERIORITY, "message": (
            f"the pass rate may have dropped by more than the tolerance of {tolerance}: change "
            f"{points(change['estimate'])}, {level} interval "
            f"{against(change['low'], -row['tolerance'], 'points', slack=TOLERANCE_SLACK)} to "
            f"{points(change['high'])}")})
    if row.get("too_few_requests"):
        row["undecided"] = (f"too few requests ({row['requests']}) for an interval: the pass-rate change cannot be "
                            "bounded")
    rate = row["candidate"]["pass_rate"]
    if rate is not None:
        verdict = verdict or judge(round(rate * row["requests"]), row["requests"], row["bar"], admission)
        row["bar_verdict"] = verdict["state"]
        if verdict["state"] != MEETS:
            # The words say what was judged: the observed rate under the point rule, else the interval.
            shown = pct_against(rate, row["bar"])
            ends = f"{pct_against(verdict['low'], row['bar'])} to {pct_against(verdict['high'], row['bar'])}"
            judged = (f"observed pass rate {shown} (its {level} interval {ends} is not judged)"
                      if admission.rule == "point" else f"pass rate {shown} ({level} interval {ends})")
            row["failures"].append({"check": BAR, "message": (
                f"the candidate's {judged} {'is below' if verdict['state'] == 'fails' else 'does not clear'} "
                f"the bar {given(row['bar'])}: {verdict['state']}")})


def _check_budgets(row: dict, options: GateOptions) -> None:
    level = confidence_level(options.admission.confidence)
    if options.max_cost_increase is not None:
        relative = row["cost_relative_change"]
        # The budget as given (+18.83%), and the interval's upper end on its side of it (+18.84%).
        budget = given(options.max_cost_increase, "signed_pct")
        if relative["high"] is not None:
            if relative["high"] > options.max_cost_increase:
                row["failures"].append({"check": COST_BUDGET, "message": (
                    f"cost per request may rise by more than the budget of {budget}: change "
                    f"{signed_pct(relative['estimate'])}, {level} interval {signed_pct(relative['low'])} to "
                    f"{against(relative['high'], options.max_cost_increase, 'signed_pct')}")})
        elif row["candidate"]["cost_per_request_usd"] > row["baseline"]["cost_per_request_usd"]:
            row["failures"].append({"check": COST_BUDGET, "message": (
                "the baseline cost nothing, so any cost is above the relative budget: candidate "
                f"{usd(row['candidate']['cost_per_request_usd'])} per request")})
    if options.max_p95_increase_ms is not None:
        latency = row["latency_p95_change_ms"]
        if latency["high"] is not None and latency["high"] > options.max_p95_increase_ms:
            row["failures"].append({"check": LATENCY_BUDGET, "message": (
                f"p95 latency may rise by more than the budget of {given(options.max_p95_increase_ms, 'signed_ms')}: "
                f"change {signed_ms(latency['estimate'])}, {level} interval {signed_ms(latency['low'])} to "
                f"{against(latency['high'], options.max_p95_increase_ms, 'signed_ms')}")})


def _aligned(baseline: GateSide, candidate: GateSide, by_session: bool = False) -> pl.DataFrame:
    """One row per request with both policies' results (and its `session_id`, `by_session`); raises unless
    both replayed the same requests."""
    frames = []
    for side in (baseline, candidate):
        missing = [column for column in DECISION_COLUMNS if column not in side.decisions.columns]
        if missing:
            raise RoutesimError(f"the decisions of '{side.name}' lack the column(s) {', '.join(missing)}",
                                where=side.source or side.name, fix="pass the decisions of a replay")
        if by_session and "session_id" not in side.decisions.columns:
            raise RoutesimError(f"--resample session needs sessions, and the decisions of '{side.name}' have no "
                                "session_id", where=side.source or side.name,
                                fix="replay traffic that carries session_id, or leave out --resample session")
        frames.append(side.decisions.select(*DECISION_COLUMNS, *(["session_id"] if by_session else [])))
    base, cand = frames
    if base["request_id"].equals(cand["request_id"]):
        # Replays of the same data list the requests in the same order: paired by position, no join.
        paired = pl.concat([base, cand.drop("request_id").rename(lambda name: f"{name}_candidate")],
                           how="horizontal")
    else:
        paired = _joined(baseline, candidate, base, cand)
    moved = paired.filter(pl.col("slice") != pl.col("slice_candidate"))
    if moved.height:
        raise RoutesimError(f"the two replays put {counted(moved.height, 'request')} in different slices "
                            f"(e.g. {moved['request_id'].min()})", fix="gate scenarios replayed on the same data")
    return paired


def _joined(baseline: GateSide, candidate: GateSide, base: pl.DataFrame, cand: pl.DataFrame) -> pl.DataFrame:
    """The two policies' decisions joined on request_id; raises unless they hold the same requests."""
    only_base = base.join(cand, on="request_id", how="anti")
    only_cand = cand.join(base, on="request_id", how="anti")
    if only_base.height or only_cand.height:
        def examples(frame: pl.DataFrame) -> str:
            return ", ".join(frame["request_id"].sort().head(EXAMPLES).to_list()) or "none"
        raise RoutesimError(
            f"the baseline and the candidate replayed different requests: {base.height:,} against "
            f"{cand.height:,}; {only_base.height:,} only in the baseline (e.g. {examples(only_base)}), "
            f"{only_cand.height:,} only in the candidate (e.g. {examples(only_cand)})",
            where=f"baseline {baseline.source or baseline.name}, candidate {candidate.source or candidate.name}",
            fix="gate scenarios on the same data, window and sample; with on_missing: skip, both must be able to "
                "replay the same requests")
    for side, frame in ((baseline, base), (candidate, cand)):
        if frame["request_id"].n_unique() < frame.height:
            repeated = frame.filter(pl.col("request_id").is_duplicated())["request_id"].min()
            raise RoutesimError(f"the decisions of '{side.name}' list request '{repeated}' more than once",
                                where=side.source or side.name, fix="pass the decisions of one replay")
    return base.join(cand, on="request_id", how="inner", suffix="_candidate")


def gate_result(baseline: GateSide, candidate: GateSide, options: GateOptions | None = None) -> dict:
    """The gate's verdict and every number behind it, as plain JSON-ready data. Pure: no files, no printing.

    `passed` is the verdict; `overall` and `slices` hold, per scope, both policies' pass rate, cost per
    request and p95 latency, the changes with their intervals (estimate, low, high), the bar, the tolerance
    and the failures; `failures` lists every failure with its scope.
    """
    options = (options or GateOptions()).settled()
    options.check()
    paired = _aligned(baseline, candidate, options.resample == "session")
    slices = sorted(paired["slice"].unique().to_list())
    unknown = sorted(set(options.slice_tolerances) - set(slices))
    if unknown:
        raise RoutesimError(f"--tolerance-slice names a slice that is not in the replay: '{unknown[0]}'."
                            f"{did_you_mean(unknown[0], slices)}", where="--tolerance-slice",
                            fix=f"slices: {', '.join(slices)}")

    def outcomes(suffix: str) -> PolicyOutcomes:
        return PolicyOutcomes(paired[f"passed{suffix}"].to_numpy(), paired[f"cost_nano_usd{suffix}"].to_numpy(),
                              paired[f"latency_ms{suffix}"].to_numpy())

    base, cand = outcomes(""), outcomes("_candidate")
    codes = paired["slice"].cast(pl.Enum(slices)).to_physical().to_numpy().astype(np.int64)  # index in `slices`
    # The resampling unit: the request, or with --resample session the session (its requests move
    # together; a request without one is its own unit).
    keys = (paired.select(pl.coalesce("session_id", "request_id"))["session_id"] if options.resample == "session"
            else paired["request_id"])
    # Requests of one slice and one key (a session's turns) are laid out by request id, whatever their order.
    sample = PairedSample(base, cand, codes, quantile=LATENCY_QUANTILE, keys=keys, tiebreak=paired["request_id"])
    slice_boot, overall_boot = paired_bootstraps(sample, resamples=options.resamples, seed=options.seed,
                                                 confidence=options.admission.confidence)
    differs = paired["passed"].to_numpy() != paired["passed_candidate"].to_numpy()
    changed = dict(zip(slices, np.bincount(codes[differs], minlength=len(slices)).tolist()))
    bar = candidate.quality_bar
    overall = _row(overall_boot, 0, name=None, bar=bar.default, tolerance=options.tolerance,
                   changed=int(sum(changed.values())))
    _check_row(overall, options.admission)
    _check_budgets(overall, options)
    rows = []
    for code, name in enumerate(slices):
        row = _row(slice_boot, code, name=name, bar=bar.for_slice(name),
                   tolerance=options.slice_tolerances.get(name, options.tolerance), changed=int(changed[name]))
        _check_row(row, options.admission)
        rows.append(row)
    failures = [{"slice": row["slice"], **failure} for row in [overall, *rows] for failure in row["failures"]]
    notes = [] if candidate.bar_stated else [default_bar_note(candidate.name)]
    if baseline.quality_bar != candidate.quality_bar:
        notes.append("the two scenarios have different quality bars; the candidate's are applied")
    if baseline.prices_fingerprint != candidate.prices_fingerprint:
        notes.append("the two scenarios are priced by different price sheets: cost changes include the price change")
    return {
        "baseline": {"name": baseline.name, "description": baseline.description, "source": baseline.source},
        "candidate": {"name": candidate.name, "description": candidate.description, "source": candidate.source},
        "passed": not failures,
        "requests": paired.height,
        "confidence": options.admission.confidence,
        "rule": options.admission.rule,  # how the bar check judges the candidate's pass rate
        "meets_when": options.admission.describe(),
        "resamples": options.resamples,
        "resample": options.resample,
        "seed": options.seed,
        "latency_quantile": LATENCY_QUANTILE,
        "tolerance": options.tolerance,
        "slice_tolerances": dict(sorted(options.slice_tolerances.items())),
        "budgets": {"max_cost_increase": options.max_cost_increase,
                    "max_p95_increase_ms": options.max_p95_increase_ms},
        "overall": overall,
        "slices": rows,
        "failures": failures,
        # Scopes whose checks could not be decided (too few requests for an interval); null is overall.
        "undecided": [row["slice"] for row in [overall, *rows] if row.get("undecided")],
        "notes": notes,
    }


def recheck(result: dict, options: GateOptions, verdicts: dict) -> dict:
    """The failures and the verdict of a gate result computed again after its numbers were replaced by
    estimates (simulator.analyses.estimates.weigh_gate). `verdicts` maps a slice (None: overall) to the
    candidate's bar verdict there (simulator.core.verdict.judge_estimate), used instead of a Wilson one."""
    rows = [result["overall"], *result["slices"]]
    for row in rows:
        row["failures"] = []
        _check_row(row, options.admission, verdicts.get(row["slice"]))
    _check_budgets(result["overall"], options)
    result["failures"] = [{"slice": row["slice"], **failure} for row in rows for failure in row["failures"]]
    result["passed"] = not result["failures"]
    return result


def side_from_saved(saved) -> GateSide:
    """A GateSide from a saved result (simulator.core.results.SavedResult), e.g. for the HTML report."""
    summary = saved.summary
    bar = QualityBar(default=summary["quality_bar"], slices=summary.get("slice_bars", {}))
    return GateSide(name=summary["scenario"], decisions=saved.decisions, quality_bar=bar,
                    bar_stated=summary.get("quality_bar_stated", True),
                    description=summary.get("description", ""),
                    prices_fingerprint=summary.get("provenance", {}).get("prices_fingerprint"))


def _same_requests(baseline: Scenario, candidate: Scenario, paths: tuple[Path, Path], fingerprints: tuple[str, str]):
    where = f"baseline {paths[0]}, candidate {paths[1]}"
    fix = "gate two scenarios that differ only in their policy: same data, window and sample"
    if fingerprints[0] != fingerprints[1]:
        raise RoutesimError(f"the baseline and the candidate replay different data ({baseline.data} against "
                            f"{candidate.data})", where=where, fix=fix)
    for key in ("window", "sample"):
        ours, theirs = getattr(baseline, key), getattr(candidate, key)
        if ours != theirs:
            def shown(value):
                return value.model_dump(mode="json") if value is not None else "none"
            raise RoutesimError(f"the baseline and the candidate have different '{key}': {shown(ours)} against "
                                f"{shown(theirs)}", where=where, fix=fix)


def run_gate(baseline_path: Path, candidate_path: Path, options: GateOptions | None = None, *,
             shards: Path | None = None, runner: str = "local") -> dict:
    """Loads and replays both scenarios on the same requests, then returns `gate_result`.

    With `shards` (simulator.core.sharded), each scenario replays on those shards of its data folder with
    `runner`; the shards' decisions, one frame per policy, give the result the whole folder gives, byte for
    byte: the comparison pairs requests by id and lays them out by slice and key, not by arrival."""
    from simulator.core.contract import fingerprint
    from simulator.core.engine import replay
    from simulator.core.runner import Inputs

    paths = (Path(baseline_path), Path(candidate_path))
    scenarios = [load_scenario(path) for path in paths]
    options = (options or GateOptions()).settled([(s.name, s.admission) for s in scenarios])
    options.check()
    inputs = Inputs()
    datasets = [inputs.data(scenario) for scenario in scenarios]
    _same_requests(*scenarios, paths, (datasets[0].fingerprint, datasets[1].fingerprint))
    # The bootstrap's compiled loops load (most of a second, mostly numba's start-up, in Python) while the
    # replays run. Meanwhile the interpreter switches threads every 0.2 ms instead of every 5: a replay
    # coming back from polars or numpy waits that long for the loader to hand over.
    switching = sys.getswitchinterval()
    sys.setswitchinterval(LOADING_SWITCH_INTERVAL)
    loader = threading.Thread(target=_load_compiled_loops, daemon=True)
    loader.start()
    try:
        if shards is None:
            decisions = [replay(scenario, data, inputs.prices(scenario)).decisions
                         for scenario, data in zip(scenarios, datasets)]
        else:
            decisions = _sharded_decisions(scenarios, inputs, shards, runner)
    finally:
        loader.join()
        sys.setswitchinterval(switching)
    sides = []
    for path, scenario, frame in zip(paths, scenarios, decisions):
        sheet = inputs.prices(scenario)
        sides.append(GateSide(name=scenario.name, decisions=frame, quality_bar=scenario.quality_bar,
                              bar_stated=scenario.quality_bar_stated,
                              description=scenario.description, source=str(path),
                              prices_fingerprint=fingerprint([Path(sheet.source)]) if sheet else None))
    return gate_result(*sides, options)


def _load_compiled_loops() -> None:
    try:
        from simulator.core import resample

        resample.load()
    except Exception:  # noqa: BLE001 - only a head start: the bootstrap loads them again and reports any error
        pass


def _sharded_decisions(scenarios: list[Scenario], inputs, shards: Path, runner: str) -> list[pl.DataFrame]:
    """Each scenario's decisions (the columns the gate reads) from its replays on the shards, all of them
    run by one pool or one Ray session."""
    from functools import partial

    from simulator.core.sharded import decisions_of_shard, map_tasks, merged_decisions, shard_tasks

    tasks = [shard_tasks(scenario, inputs, shards, runner) for scenario in scenarios]
    results = map_tasks(partial(decisions_of_shard, columns=(*DECISION_COLUMNS, "session_id")),
                        [task for each in tasks for task in each], runner)
    split = len(tasks[0])
    return [merged_decisions(scenario, part) for scenario, part in zip(scenarios, (results[:split], results[split:]))]
