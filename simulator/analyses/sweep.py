"""Threshold sweeps of a cascade gate, and calibration of its threshold, in one pass over the requests.

What is swept. One step of one plan (`Gate`): its accept predicate is replaced by `OVER >= t`, so the
step's answer is final when `hard_check_ok AND OVER >= t` (a null OVER is never accepted, as a NULL
predicate counts as false). Everything else in the scenario stays as it is.

How, in one pass. The engine replays the scenario twice: A with that step's accept set to `TRUE` (its
answer is final whenever its hard check passes) and B with `FALSE` (it always escalates). Requests are
independent of one another in the replay, so at threshold t a request's whole outcome (calls, cost,
latency, answer, retries) is A's when it reached the step, its answer there passed the hard check and
OVER >= t ("switchable" with value OVER), and B's otherwise; requests that never reach the step, or whose
answer there fails the hard check or has a null OVER, take B's outcome at every threshold. Counts and sums
at every threshold are then B's totals plus a cumulative sum of the A-minus-B differences over the
switchable requests sorted by value. Latency percentiles are exact order statistics of the mixed
latencies, found for all thresholds at once (`mixed_quantiles`).

Missing outcomes. A and B are replayed with on_missing=skip, so each request is present in A, in B, in
both or in neither; a request counts at threshold t when it is present in the replay it takes there, as
a separate replay at t with on_missing=skip would count it. When the scenario says on_missing=error, a
threshold at which some request would need a missing outcome is left out of the sweep (a separate replay
would fail there) and counted in `left_out`.

Thresholds. Every distinct value of OVER among the switchable requests when there are at most `points`
of them, else `points - 1` of those values at evenly spaced ranks; plus the scenario's own threshold when
its accept predicate reads `OVER >= NUMBER`, and one threshold just above the largest value (nothing is
accepted: every request that reaches the step escalates). Each threshold is a value the data takes, so
each point is a policy a user can write down.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl

from simulator.core.contract import Dataset
from simulator.core.engine import Replay, replay
from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.metrics import P95, aggregate
from simulator.core.partials import SCALE, exact_mean, score_sums
from simulator.core.prices import NANO_PER_USD, PriceSheet
from simulator.core.scenario import Scenario
from simulator.core.stats import wilson_interval
from simulator.core.verdict import DEFAULT_ADMISSION, Admission

DEFAULT_POINTS = 200
LATENCY_QUANTILE = P95
# Thresholds processed together when finding latency quantiles; bounds memory to a few MB per block.
THRESHOLD_BLOCK = 256
ACCEPT_ALL, ACCEPT_NONE = "TRUE", "FALSE"
GATE_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*>=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")

TARGET_PASS_RATE = "pass_rate"
TARGET_ESCALATION_RATE = "escalation_rate"
TARGET_BUDGET = "budget"


@dataclass(frozen=True)
class Gate:
    """The swept gate: step `step` (0-based) of plan `plan_index`, accepting when `over >= t`."""

    plan_index: int
    plan: str
    step: int
    over: str
    models: tuple[str, ...]


# --------------------------------------------------------------------------------------------------
# Choosing the gate


def resolve_plan(scenario: Scenario, plan: str | None) -> int:
    """The plan to sweep: `default`, a rule's name, its label `rule N`, or its 1-based number N.

    Without `plan`: the default plan when it has several steps, else the only multi-step plan.
    """
    plans = scenario.policy.plans()
    labels = [label for label, _ in plans]
    where = f"scenario '{scenario.name}', --plan"
    if plan is None:
        multi = [index for index, (_, steps) in enumerate(plans) if len(steps) > 1]
        if len(plans[-1][1]) > 1:
            return len(plans) - 1
        if len(multi) == 1:
            return multi[0]
        if not multi:
            raise RoutesimError("the policy has no multi-step plan, so there is no gate to sweep", where=where,
                                fix="sweep a scenario with a cascade")
        raise RoutesimError("several plans have a gate; say which to sweep",
                            where=where, fix=f"--plan one of: {', '.join(labels[i] for i in multi)}")
    if plan in labels:
        return labels.index(plan)
    if plan.isdigit() and 1 <= int(plan) <= len(scenario.policy.rules):
        return int(plan) - 1
    raise RoutesimError(f"no plan '{plan}' in the policy.{did_you_mean(plan, labels)}", where=where,
                        fix=f"plans: {', '.join(labels)} (or a rule's number, from 1)")


def numeric_columns(data: Dataset) -> list[str]:
    """Columns a gate can compare with a number: numeric outcome or traffic columns."""
    found = {name for name, dtype in data.outcomes.collect_schema().items() if dtype.is_numeric()}
    found |= {name for name, dtype in data.traffic.collect_schema().items() if dtype.is_numeric()}
    return sorted(found - {"sample"})


def read_column(accept: str | None, numeric: list[str]) -> str | None:
    """The one numeric column an accept predicate reads (besides hard_check_ok), or None."""
    if accept is None:
        return None
    from simulator.core.predicates import parse_predicate

    read = parse_predicate(accept, key="accept", steps=None).columns - {"hard_check_ok"}
    candidates = sorted(read & set(numeric))
    return candidates[0] if len(candidates) == 1 and len(read) == 1 else None


def resolve_gate(scenario: Scenario, data: Dataset, *, step: int = 0, over: str | None = None,
                 plan: str | None = None) -> Gate:
    plan_index = resolve_plan(scenario, plan)
    label, steps = scenario.policy.plans()[plan_index]
    where = f"scenario '{scenario.name}', plan '{label}'"
    if not 0 <= step < len(steps):
        raise RoutesimError(f"plan '{label}' has {len(steps)} step(s); there is no step {step}", where=where,
                            fix=f"--step counts from 0; the gates are steps 0 to {len(steps) - 2}"
                            if len(steps) > 1 else "pick a multi-step plan with --plan")
    if step == len(steps) - 1:
        raise RoutesimError(f"step {step} ({steps[step].label}) is the last step of plan '{label}': its answer "
                            "is always final, so it has no gate to sweep", where=where,
                            fix=f"--step counts from 0; the gates are steps 0 to {len(steps) - 2}"
                            if len(steps) > 1 else "pick a multi-step plan with --plan")
    if scenario.policy.sticky == "session":
        raise RoutesimError("the policy keeps sessions sticky: a later turn follows its first turn's escalation, "
                            "so moving the gate changes other requests' plans, which a sweep does not follow",
                            where=where, fix="sweep the policy without 'sticky', or replay each threshold as its own "
                                             "scenario")
    if len(steps[step].calls) > 1:
        raise RoutesimError(f"step {step} of plan '{label}' makes {len(steps[step].calls)} calls ({steps[step].label}): "
                            "its gate reads the answer it kept, which a sweep does not follow", where=where,
                            fix="sweep a gate on a one-call step, or replay each threshold as its own scenario")
    numeric = numeric_columns(data)
    if over is None:
        over = read_column(steps[step].accept, numeric)
        if over is None:
            raise RoutesimError(f"cannot tell which column the gate of step {step} reads "
                                f"({steps[step].accept!r})", where=where,
                                fix=f"say it with --over, one of: {', '.join(numeric)}")
    if over not in numeric:
        raise RoutesimError(f"--over {over!r} is not a numeric column of the data.{did_you_mean(over, numeric)}",
                            where=where, fix=f"numeric columns: {', '.join(numeric)}")
    return Gate(plan_index=plan_index, plan=label, step=step, over=over, models=tuple(s.calls[-1] for s in steps))


def with_accept(scenario: Scenario, gate: Gate, accept: str) -> Scenario:
    """The scenario with the gate's accept predicate replaced by `accept` (and on_missing as given)."""
    policy = scenario.policy
    rules = list(policy.rules)
    spec = rules[gate.plan_index] if gate.plan_index < len(rules) else policy.default
    steps = list(spec.steps)
    steps[gate.step] = steps[gate.step].model_copy(update={"accept": accept})
    spec = spec.model_copy(update={"cascade": tuple(steps), "use": None})
    if gate.plan_index < len(rules):
        rules[gate.plan_index] = spec
        policy = policy.model_copy(update={"rules": tuple(rules)})
    else:
        policy = policy.model_copy(update={"default": spec})
    return scenario.model_copy(update={"policy": policy})


def gate_predicate(over: str, threshold: float) -> str:
    """The accept predicate of a sweep point; repr() round-trips the float exactly."""
    return f"{over} >= {float(threshold)!r}"


def current_threshold(accept: str | None, over: str) -> float | None:
    """The scenario's own threshold when its accept predicate is exactly `OVER >= NUMBER`."""
    match = GATE_PATTERN.match(accept or "")
    return float(match.group(2)) if match and match.group(1) == over else None


# --------------------------------------------------------------------------------------------------
# The per-request frame: A's and B's outcome of every request


SIDE_COLUMNS = ["present", "cost_nano_usd", "latency_ms", "passed", "score", "escalated", "multi_step", "retried",
                "strong"]


@dataclass(frozen=True)
class SweepData:
    """Both replays, and one row per request present in either with its A and B outcome.

    `frame` columns: rid, ts, switchable, value, and `a_<x>` / `b_<x>` for each x in SIDE_COLUMNS; for a
    request that is not switchable its A columns are a copy of its B columns (it takes B's outcome at every
    threshold).
    """

    scenario: Scenario
    gate: Gate
    accept_all: Replay | None  # None on shards: no per-request decisions are kept
    accept_none: Replay | None
    frame: pl.DataFrame
    requests_selected: int


def _side(decisions: pl.DataFrame, prefix: str, strong: str) -> pl.DataFrame:
    return decisions.select(
        "rid", "ts", "plan", "steps_taken", "request_id",
        pl.lit(True).alias(f"{prefix}present"),
        pl.col("cost_nano_usd").alias(f"{prefix}cost_nano_usd"),
        pl.col("latency_ms").alias(f"{prefix}latency_ms"),
        pl.col("passed").alias(f"{prefix}passed"),
        pl.col("score").alias(f"{prefix}score"),
        (pl.col("escalated") & pl.col("multi_step")).alias(f"{prefix}escalated"),
        pl.col("multi_step").alias(f"{prefix}multi_step"),
        (pl.col("retry_attempts") > 0).alias(f"{prefix}retried"),
        pl.col("models_called").list.contains(strong).alias(f"{prefix}strong"),
    )


def _step_values(scenario: Scenario, data: Dataset, gate: Gate, request_ids: pl.DataFrame) -> pl.DataFrame:
    """OVER and hard_check_ok of the gate step's answer, for the requests that reached the step."""
    steps = scenario.policy.plans()[gate.plan_index][1]
    model = steps[gate.step].model
    sample = sum(earlier.calls.count(model) for earlier in steps[:gate.step])  # the k-th call reads sample k
    outcome_names = data.outcomes.collect_schema().names()
    answers = (data.outcomes.filter((pl.col("model") == model) & (pl.col("sample") == sample))
               .select("request_id", "hard_check_ok", *([gate.over] if gate.over in outcome_names else [])))
    if gate.over not in outcome_names:  # a traffic column, as the accept predicate would read it
        answers = answers.join(data.traffic.select("request_id", gate.over), on="request_id", how="left")
    found = request_ids.lazy().join(answers, on="request_id", how="left").collect()
    return found.select("rid", "hard_check_ok", pl.col(gate.over).cast(pl.Float64).alias("value"))


def prepare(scenario: Scenario, data: Dataset, sheet: PriceSheet | None, gate: Gate, *, part: bool = False) -> SweepData:
    """Replays A (gate accepts all) and B (gate accepts none) and lines up each request's two outcomes.
    With `part`, `data` is a shard of the data the gate was resolved on (simulator.core.engine.replay)."""
    skip = {"on_missing": "skip"}
    accept_all = replay(with_accept(scenario, gate, ACCEPT_ALL).model_copy(update=skip), data, sheet, part=part)
    accept_none = replay(with_accept(scenario, gate, ACCEPT_NONE).model_copy(update=skip), data, sheet, part=part)
    return line_up(scenario, data, gate, accept_all, accept_none)


def sweep_shard(task, gate: Gate):
    """One shard's lined-up frame and its selected requests (`SweepData.frame`, `requests_selected`) for
    simulator.core.sharded.map_tasks; (None, 0) for a shard with no request in the window, (ShardFailure,
    0) for bad input."""
    from simulator.core.sharded import ShardFailure, task_inputs

    try:
        found = task_inputs(task)
        if found is None:
            return None, 0
        prepared = prepare(task.scenario, *found, gate, part=True)
        return prepared.frame, prepared.requests_selected
    except RoutesimError as error:
        return ShardFailure(error.what, error.where, error.fix), 0


def prepare_sharded(scenario: Scenario, inputs, gate: Gate, shards: Path, runner: str = "local") -> SweepData:
    """`prepare` on the shards in `shards` of the scenario's data folder (simulator.core.sharded): each shard
    replays A and B and lines them up; the frames are stacked. Every figure of the curve is an integer sum,
    an exact rational sum or an order statistic, none depending on the order of the rows, so the sweep is
    the whole folder's, byte for byte. No per-request decisions are kept (`accept_all`/`accept_none` None)."""
    from functools import partial

    from simulator.core.engine import no_requests
    from simulator.core.sharded import map_tasks, raise_failures, shard_tasks

    results = map_tasks(partial(sweep_shard, gate=gate), shard_tasks(scenario, inputs, shards, runner), runner)
    raise_failures([frame for frame, _ in results])
    frames = [frame for frame, _ in results if frame is not None]
    if not frames:
        raise no_requests(scenario)
    return SweepData(scenario=scenario, gate=gate, accept_all=None, accept_none=None,
                     frame=pl.concat(frames, how="vertical_relaxed"),
                     requests_selected=sum(selected for _, selected in results))


def line_up(scenario: Scenario, data: Dataset, gate: Gate, accept_all: Replay, accept_none: Replay) -> SweepData:
    strong = gate.models[-1]
    a = _side(accept_all.decisions, "a_", strong)
    b = _side(accept_none.decisions, "b_", strong)
    keys = ["rid", "ts", "plan", "steps_taken", "request_id"]
    both = a.join(b, on="rid", how="full", coalesce=True, suffix="_b")
    both = both.with_columns(
        pl.coalesce("ts", "ts_b").alias("ts"), pl.coalesce("request_id", "request_id_b").alias("request_id"),
        # Steps before the gate are the same in A and B, so either tells whether the request reached it.
        ((pl.coalesce("plan", "plan_b") == gate.plan) & (pl.coalesce("steps_taken", "steps_taken_b") > gate.step))
        .alias("reached"),
    ).drop([f"{key}_b" for key in keys if key != "rid"], "plan", "steps_taken")
    reached = both.filter("reached").select("rid", "request_id")
    values = _step_values(scenario, data, gate, reached)
    # polars orders NaN above every number (`NaN >= t` holds), so the sweep does too, as the engine would.
    values = values.with_columns(pl.when(pl.col("value").is_nan()).then(float("inf")).otherwise(pl.col("value"))
                                 .alias("value"))
    both = both.join(values, on="rid", how="left").with_columns(
        (pl.col("reached") & pl.col("hard_check_ok").fill_null(False) & pl.col("value").is_not_null())
        .alias("switchable"))
    b_columns = [f"b_{name}" for name in SIDE_COLUMNS]
    both = both.with_columns(pl.col("a_present").fill_null(False), pl.col("b_present").fill_null(False))
    switchable = pl.col("switchable")
    frame = both.select(
        "rid", "ts", "switchable", pl.when(switchable).then(pl.col("value")).alias("value"),
        *[pl.when(switchable).then(pl.col(f"a_{name}")).otherwise(pl.col(f"b_{name}")).alias(f"a_{name}")
          for name in SIDE_COLUMNS],
        *b_columns,
    ).sort("rid")
    return SweepData(scenario=scenario, gate=gate, accept_all=accept_all, accept_none=accept_none, frame=frame,
                     requests_selected=accept_all.coverage.requests_selected)


# --------------------------------------------------------------------------------------------------
# Thresholds and the curve


def thresholds_for(values: np.ndarray, points: int, extra: list[float] = ()) -> np.ndarray:
    """Distinct values (or `points - 1` of them at evenly spaced ranks), extras, and one above the largest."""
    if points < 2:
        raise RoutesimError(f"--points must be at least 2, got {points}", where="--points",
                            fix="e.g. --points 200")
    distinct = np.unique(values[np.isfinite(values)])
    if distinct.size > points - 1:
        distinct = np.unique(distinct[np.round(np.linspace(0, distinct.size - 1, points - 1)).astype(np.int64)])
    top = np.nextafter(distinct[-1], np.inf) if distinct.size else np.float64(1.0)
    return np.unique(np.concatenate([distinct, np.asarray(list(extra), dtype=np.float64), [top]]))


def _lerp(low: np.ndarray, high: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    # low + (high - low) * fraction: the formula polars' linear quantile uses, so values agree bit for bit.
    return low + (high - low) * fraction


def mixed_quantiles(base: np.ndarray, a_values: np.ndarray, b_values: np.ndarray, a_switch: np.ndarray,
                    b_switch: np.ndarray, thresholds: int, q: float) -> np.ndarray:
    """The q-quantile (linear interpolation) of a multiset that changes with the threshold index j.

    Elements: `base` is in every multiset; `a_values[i]` is in multisets j < a_switch[i]; `b_values[i]` is in
    multisets j >= b_switch[i]. Returns one quantile per j in 0..thresholds-1 (NaN for an empty multiset).

    Method: all elements sorted once into a pool cut into equal-count buckets; a difference table over
    (threshold, bucket) counts each multiset's elements per bucket, its running sums locate the bucket of
    the wanted order statistic, and a scan of that bucket's few elements finds the element itself. Cost:
    O(P log P) for the sort plus O(T x sqrt(P)) for T thresholds and P elements, all in numpy.
    """
    latency = np.concatenate([base, a_values, b_values]).astype(np.float64)
    kind = np.concatenate([np.zeros(base.size, np.int8), np.ones(a_values.size, np.int8),
                           np.full(b_values.size, 2, np.int8)])
    switch = np.concatenate([np.zeros(base.size, np.int64), a_switch, b_switch]).astype(np.int64)
    order = np.argsort(latency)  # the order among equal latencies does not change any order statistic
    latency, kind, switch = latency[order], kind[order], switch[order]
    pool = latency.size
    result = np.full(thresholds, np.nan)
    if pool == 0 or thresholds == 0:
        return result
    size = max(16, math.isqrt(pool))
    buckets = -(-pool // size)
    bucket = np.arange(pool) // size
    # Events (threshold index at which an element enters or leaves, its bucket, +1/-1).
    starts = np.where(kind == 2, switch, 0)
    event_at = np.concatenate([starts, switch[kind == 1]])
    event_bucket = np.concatenate([bucket, bucket[kind == 1]])
    event_step = np.concatenate([np.ones(pool, np.int64), -np.ones(int((kind == 1).sum()), np.int64)])
    keep = event_at < thresholds
    event_at, event_bucket, event_step = event_at[keep], event_bucket[keep], event_step[keep]
    carry = np.zeros(buckets, np.int64)
    padded_latency = np.concatenate([latency, [np.nan]])
    padded_kind = np.concatenate([kind, [0]])
    padded_switch = np.concatenate([switch, [0]])
    for first in range(0, thresholds, THRESHOLD_BLOCK):
        last = min(first + THRESHOLD_BLOCK, thresholds)
        block = (event_at >= first) & (event_at < last) if thresholds > THRESHOLD_BLOCK else slice(None)
        local = (event_at[block] - first) * buckets + event_bucket[block]
        changes = np.bincount(local, weights=event_step[block], minlength=(last - first) * buckets)
        counts = carry + np.cumsum(changes.reshape(last - first, buckets).astype(np.int64), axis=0)
        carry = counts[-1]
        running = np.cumsum(counts, axis=1)
        n = running[:, -1]
        position = q * (n - 1).astype(np.float64)
        low_rank = np.floor(position).astype(np.int64)
        high_rank = np.minimum(low_rank + 1, n - 1)
        steps = np.arange(first, last)
        values = []
        for rank in (low_rank, high_rank):
            rank = np.maximum(rank, 0)
            which = (running <= rank[:, None]).sum(axis=1)
            which = np.minimum(which, buckets - 1)
            before = np.where(which > 0, running[np.arange(last - first), np.maximum(which - 1, 0)], 0)
            within = rank - before
            slots = which[:, None] * size + np.arange(size)[None, :]
            slots = np.where(slots < pool, slots, pool)
            slot_kind, slot_switch = padded_kind[slots], padded_switch[slots]
            j = steps[:, None]
            active = np.where(slot_kind == 0, True, np.where(slot_kind == 1, j < slot_switch, j >= slot_switch))
            active &= slots < pool
            seen = np.cumsum(active, axis=1)
            found = np.argmax(seen > within[:, None], axis=1)
            values.append(padded_latency[slots[np.arange(last - first), found]])
        fraction = position - low_rank
        quantile = _lerp(values[0], values[1], fraction)
        result[first:last] = np.where(n > 0, quantile, np.nan)
    return result


def _column(frame: pl.DataFrame, name: str, dtype=np.float64) -> np.ndarray:
    return frame[name].fill_null(0).to_numpy().astype(dtype)


def _score_totals(frame: pl.DataFrame, switch: np.ndarray, thresholds: int) -> list[Fraction]:
    """The exact sum of the scores at each threshold j: B's scores of the requests with switch <= j and A's
    of those with switch > j, summed per switch value as exact integers times 2^SCALE
    (simulator.core.partials), so the total does not depend on the order of the requests (or on how they
    were split into shards)."""
    by_side = {}
    for prefix in ("a_", "b_"):
        present = frame[f"{prefix}present"].fill_null(False)
        scores = pl.select(pl.when(present).then(frame[f"{prefix}score"])).to_series()
        by_side[prefix] = score_sums(switch, scores)
    above = [0] * (thresholds + 1)  # above[j]: A's scores of the requests with switch > j
    for j in range(thresholds - 1, -1, -1):
        above[j] = above[j + 1] + by_side["a_"].get(j + 1, 0)
    totals, below = [], 0
    for j in range(thresholds):
        below += by_side["b_"].get(j, 0)
        totals.append(Fraction(below + above[j], 1 << SCALE))
    return totals


def _by_value(frame: pl.DataFrame, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(switchable mask, the switchable requests' values, their row numbers by descending value, and per
    threshold how many of them it accepts: the first accepted[j] of that order). Ties are accepted
    together, so their order does not matter."""
    switchable = frame["switchable"].to_numpy()
    rows = np.flatnonzero(switchable)
    value = frame["value"].fill_null(np.nan).to_numpy()[rows]
    descending = np.argsort(-value)
    accepted = rows.size - np.searchsorted(value[descending[::-1]], thresholds, side="left")
    return switchable, value, rows[descending], accepted


def curve(data: SweepData, thresholds: np.ndarray, rows: pl.Series | None = None) -> pl.DataFrame:
    """Metrics at every threshold (ascending), over all requests or those where `rows` holds.

    Counts and costs are exact (costs are sums of whole nano-dollars), and so are score sums (exact
    rationals, `_score_totals`): no figure depends on the order of the requests.
    """
    frame = data.frame if rows is None else data.frame.filter(rows)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    switchable, value, order, accepted = _by_value(frame, thresholds)

    def side(prefix: str) -> dict[str, np.ndarray]:
        present = _column(frame, f"{prefix}present", bool)
        score = frame[f"{prefix}score"]
        return {
            "requests": present.astype(np.int64),
            "cost": np.where(present, _column(frame, f"{prefix}cost_nano_usd", np.int64), 0),  # exact integers
            "passed": (present & _column(frame, f"{prefix}passed", bool)).astype(np.int64),
            "escalated": (present & _column(frame, f"{prefix}escalated", bool)).astype(np.int64),
            "multi_step": (present & _column(frame, f"{prefix}multi_step", bool)).astype(np.int64),
            "retried": (present & _column(frame, f"{prefix}retried", bool)).astype(np.int64),
            "strong": (present & _column(frame, f"{prefix}strong", bool)).astype(np.int64),
            "scored": (present & score.is_not_null().to_numpy()).astype(np.int64),
        }

    a, b = side("a_"), side("b_")
    totals = {}
    for name in a:
        difference = (a[name] - b[name])[order]
        running = np.concatenate([np.zeros(1, difference.dtype), np.cumsum(difference)])
        totals[name] = b[name].sum() + running[accepted]
    gate_accepted = np.concatenate([[0], np.cumsum(a["requests"][order])])[accepted]

    a_present, b_present = a["requests"].astype(bool), b["requests"].astype(bool)
    # A request takes A's outcome at the thresholds j < switch, B's from switch on.
    switch = np.zeros(frame.height, np.int64)
    switch[switchable] = np.searchsorted(thresholds, value, side="right")
    score_totals = _score_totals(frame, switch, thresholds.size)
    latency_a, latency_b = (frame[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
                            for name in ("a_latency_ms", "b_latency_ms"))
    # A request answered on batch has no latency (null): latency figures leave it out, as the replay's do.
    use_a = switchable & a_present & ~np.isnan(latency_a)
    use_b = b_present & ~np.isnan(latency_b)
    p95 = mixed_quantiles(np.empty(0), latency_a[use_a], latency_b[use_b], switch[use_a], switch[use_b],
                          thresholds.size, LATENCY_QUANTILE)
    requests = totals["requests"]
    total_cost_usd = totals["cost"] / NANO_PER_USD

    def ratio(top, bottom):
        return [None if d == 0 else float(t / d) for t, d in zip(top, bottom)]

    # A separate replay fails under on_missing=error when any request of the window is missing, whichever
    # rows this curve covers, so the count is over the whole frame (over all rows it is `requests`'s).
    if rows is None:
        missing = data.requests_selected - requests
    else:
        everyone = data.frame
        _, _, full_order, full_accepted = _by_value(everyone, thresholds)
        a_full, b_full = _column(everyone, "a_present", np.int64), _column(everyone, "b_present", np.int64)
        shift = np.concatenate([[0], np.cumsum((a_full - b_full)[full_order])])
        missing = data.requests_selected - (b_full.sum() + shift[full_accepted])
    return pl.DataFrame({
        "threshold": thresholds,
        "requests": requests,
        "missing_requests": missing,
        "gate_accepted": gate_accepted,
        "total_cost_usd": total_cost_usd,
        "cost_per_request_usd": ratio(total_cost_usd, requests),
        "passed": totals["passed"],
        "pass_rate": ratio(totals["passed"], requests),
        "mean_score": [exact_mean(total, int(count)) for total, count in zip(score_totals, totals["scored"])],
        "escalated": totals["escalated"],
        "multi_step": totals["multi_step"],
        "escalation_rate": ratio(totals["escalated"], totals["multi_step"]),
        "retry_rate": ratio(totals["retried"], requests),
        "strong_calls": totals["strong"],
        "strong_call_share": ratio(totals["strong"], requests),
        "latency_p95_ms": [None if math.isnan(x) else float(x) for x in p95],
    }, schema_overrides={"cost_per_request_usd": pl.Float64, "pass_rate": pl.Float64, "mean_score": pl.Float64,
                         "escalation_rate": pl.Float64, "retry_rate": pl.Float64,
                         "strong_call_share": pl.Float64, "latency_p95_ms": pl.Float64})


def decisions_at(data: SweepData, threshold: float) -> pl.DataFrame:
    """The per-request decisions a replay with the gate `OVER >= threshold` gives (on_missing=skip)."""
    frame = data.frame
    takes_a = frame.filter(pl.col("switchable") & (pl.col("value") >= threshold)).select("rid")
    from_a = data.accept_all.decisions.join(takes_a, on="rid", how="semi")
    from_b = data.accept_none.decisions.join(takes_a, on="rid", how="anti")
    return pl.concat([from_a, from_b], how="vertical").sort("rid")


def calls_at(data: SweepData, threshold: float) -> pl.DataFrame:
    """The calls a replay with the gate `OVER >= threshold` makes, in the engine's order."""
    takes_a = data.frame.filter(pl.col("switchable") & (pl.col("value") >= threshold)).select("rid")
    return (pl.concat([data.accept_all.calls.join(takes_a, on="rid", how="semi"),
                       data.accept_none.calls.join(takes_a, on="rid", how="anti")], how="vertical")
            .sort("rid", "seq", "kind", maintain_order=True))  # stable, as the engine's: best-of-n samples in order


# --------------------------------------------------------------------------------------------------
# Sweeps as users see them


@dataclass(frozen=True)
class Sweep:
    data: SweepData
    points: pl.DataFrame  # one row per threshold, ascending
    current: float | None  # the scenario's own threshold, when its gate is `OVER >= NUMBER`
    left_out: int  # thresholds left out: they would need missing outcomes under on_missing=error


def sweep(scenario: Scenario, data: Dataset, sheet: PriceSheet | None, gate: Gate, *,
          points: int = DEFAULT_POINTS, rows: pl.Expr | None = None, prepared: SweepData | None = None) -> Sweep:
    """Sweeps `gate` over its thresholds on the scenario's requests (or those where `rows` holds)."""
    prepared = prepared or prepare(scenario, data, sheet, gate)
    steps = scenario.policy.plans()[gate.plan_index][1]
    current = current_threshold(steps[gate.step].accept, gate.over)
    mask = None if rows is None else prepared.frame.select(rows.alias("rows"))["rows"]
    frame = prepared.frame if mask is None else prepared.frame.filter(mask)
    values = frame.filter("switchable")["value"].to_numpy()
    thresholds = thresholds_for(values, points, [current] if current is not None else [])
    table = curve(prepared, thresholds, mask)
    left_out = 0
    if scenario.on_missing == "error":
        complete = table["missing_requests"] == 0
        left_out = int((~complete).sum())
        table = table.filter(complete)
        if table.height == 0:
            raise RoutesimError(
                "at every threshold some requests would need outcomes that are missing from the data",
                where=f"scenario '{scenario.name}', data {scenario.data}",
                fix="add the missing outcomes, or set 'on_missing: skip' to sweep over the requests that have them")
    if table.height == 0 or int(table["requests"].max()) == 0:
        raise RoutesimError("no requests to sweep", where=f"scenario '{scenario.name}'",
                            fix="widen the window, or check --fit-until")
    return Sweep(data=prepared, points=table, current=current, left_out=left_out)


def calibrate(points: pl.DataFrame, target: str, value: float, admission: Admission = DEFAULT_ADMISSION) -> dict | None:
    """The threshold that meets a target, or None when none does.

    - pass_rate: the pass rate meets `value` under the admission rule (simulator.core.verdict: by default
      its Wilson lower bound reaches it) at the least cost per request (ties: higher pass rate, lower
      threshold).
    - escalation_rate: escalation rate <= value (a cap) with the highest pass rate (ties: least cost).
    - budget: cost per request <= value (USD) with the highest pass rate (ties: least cost).
    """
    candidates = points.filter(pl.col("requests") > 0)
    if target == TARGET_PASS_RATE:
        passes = (candidates["pass_rate"] * candidates["requests"]).round().to_numpy()
        low, _ = wilson_interval(passes, candidates["requests"].to_numpy(), admission.confidence)
        measure = candidates["pass_rate"] if admission.rule == "point" else pl.Series(np.atleast_1d(low))
        chosen = candidates.filter(measure >= value).sort(
            ["cost_per_request_usd", "pass_rate", "threshold"], descending=[False, True, False])
    elif target == TARGET_ESCALATION_RATE:
        chosen = candidates.filter(pl.col("escalation_rate") <= value).sort(
            ["pass_rate", "cost_per_request_usd", "threshold"], descending=[True, False, False])
    elif target == TARGET_BUDGET:
        chosen = candidates.filter(pl.col("cost_per_request_usd") <= value).sort(
            ["pass_rate", "cost_per_request_usd", "threshold"], descending=[True, False, False])
    else:
        raise ValueError(target)
    return chosen.to_dicts()[0] if chosen.height else None


def parse_target(pass_rate: float | None, escalation_rate: float | None, budget: float | None) -> tuple[str, float] | None:
    given = [(name, value) for name, value in ((TARGET_PASS_RATE, pass_rate), (TARGET_ESCALATION_RATE, escalation_rate),
                                              (TARGET_BUDGET, budget)) if value is not None]
    if len(given) > 1:
        raise RoutesimError("give one calibration target", where="--target-pass-rate, --target-escalation-rate, --budget",
                            fix="pick one of them")
    if not given:
        return None
    name, value = given[0]
    if name != TARGET_BUDGET and not 0 <= value <= 1:
        raise RoutesimError(f"a target rate must lie in 0..1, got {value}", where=f"--target-{name.replace('_', '-')}",
                            fix="e.g. 0.9 for 90%")
    if name == TARGET_BUDGET and value < 0:
        raise RoutesimError(f"--budget must be >= 0 USD per request, got {value}", where="--budget",
                            fix="e.g. --budget 0.008")
    return name, value


TARGET_WORDS = {TARGET_PASS_RATE: "pass rate at least", TARGET_ESCALATION_RATE: "escalation rate at most",
                TARGET_BUDGET: "cost per request at most"}


@dataclass(frozen=True)
class Holdout:
    """What a threshold calibrated on requests before `until` achieves on the requests from `until` on."""

    until: dt.date
    fit: dict | None  # the calibrated point, on the fitting requests
    later: dict | None  # the same threshold on the later requests (summary metrics)
    later_by_day: list[dict]
    hindsight: dict | None  # the threshold the same target would pick on the later requests themselves


def _starts(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def holdout(scenario: Scenario, data: Dataset, sheet: PriceSheet | None, gate: Gate, target: tuple[str, float],
            until: dt.date, *, points: int = DEFAULT_POINTS, prepared: SweepData | None = None) -> Holdout:
    """Calibrates on requests with ts < until, then measures that threshold on the requests from `until` on."""
    prepared = prepared or prepare(scenario, data, sheet, gate)
    split = _starts(until)
    ts = prepared.frame["ts"]
    if not (ts < split).any() or not (ts >= split).any():
        raise RoutesimError(f"--fit-until {until} leaves no requests on one side (requests run from "
                            f"{ts.min():%Y-%m-%d %H:%M} to {ts.max():%Y-%m-%d %H:%M} UTC)", where="--fit-until",
                            fix="pick a date inside the replayed window")
    fitted = sweep(scenario, data, sheet, gate, points=points, rows=pl.col("ts") < split, prepared=prepared)
    chosen = calibrate(fitted.points, *target, scenario.admission or DEFAULT_ADMISSION)
    later = sweep(scenario, data, sheet, gate, points=points, rows=pl.col("ts") >= split, prepared=prepared)
    hindsight = calibrate(later.points, *target, scenario.admission or DEFAULT_ADMISSION)
    if chosen is None:
        return Holdout(until=until, fit=None, later=None, later_by_day=[], hindsight=hindsight)
    decisions = decisions_at(prepared, chosen["threshold"]).filter(pl.col("ts") >= split)
    summary = aggregate(decisions).to_dicts()[0]
    by_day = aggregate(decisions.with_columns(pl.col("ts").dt.date().cast(pl.String).alias("day")), "day").to_dicts()
    return Holdout(until=until, fit=chosen, later=summary | {"threshold": chosen["threshold"]}, later_by_day=by_day,
                   hindsight=hindsight)


# --------------------------------------------------------------------------------------------------
# The report's sweeps and the benchmark


def report_sweeps(scenario: Scenario, data: Dataset, sheet: PriceSheet | None,
                  points: int = DEFAULT_POINTS) -> list[dict]:
    """The report's sweeps: every multi-step plan's first gate over the numeric column its accept reads.

    Plans whose first accept predicate reads no numeric column, or several, are not swept; nor is a gate
    whose sweep cannot run (every threshold would need missing outcomes, say): the report goes on without it.
    """
    numeric = numeric_columns(data)
    found = []
    for label, steps in scenario.policy.plans():
        if (len(steps) < 2 or read_column(steps[0].accept, numeric) is None or len(steps[0].calls) > 1
                or scenario.policy.sticky == "session"):
            continue
        gate = resolve_gate(scenario, data, step=0, plan=label)
        try:
            result = sweep(scenario, data, sheet, gate, points=points)
        except RoutesimError:
            continue
        at_bar = calibrate(result.points, TARGET_PASS_RATE, scenario.quality_bar.default,
                           scenario.admission or DEFAULT_ADMISSION)
        found.append({"plan": gate.plan, "step": gate.step, "over": gate.over, "models": list(gate.models),
                      "current_threshold": result.current, "left_out": result.left_out,
                      "two_models": len(scenario.policy.models()) == 2,
                      # the cheapest threshold whose pass rate reaches the overall bar (slice bars not checked)
                      "cheapest_at_bar": None if at_bar is None else {key: at_bar[key] for key in (
                          "threshold", "cost_per_request_usd", "pass_rate", "escalation_rate")},
                      "points": result.points.drop("missing_requests").to_dicts()})
    return found
