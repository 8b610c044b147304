"""Threshold sweeps of a cascade gate, and calibration of its threshold, in one pass over the requests.

What is swept. One step of one plan (`Gate`): its accept predicate is replaced by `OVER >= t`, so the
step's answer is final when `hard_check_ok AND OVER >= t` (a null OVER is never accepted, as a NULL
predicate counts as false). Everything else in the scenario stays as it is.

How, in one pass. The engine replays the scenario twice: A with that step's accept set to `TRUE` (its
answer is final whenever its hard check passes) and B with `FALSE` (it always escalates). Each request is
routed independently of the others, so at threshold t a request's whole outcome (calls, latency, answer,
retries) is A's when it reached the step, its answer there passed the hard check and OVER >= t
("switchable" with value OVER), and B's otherwise; requests that never reach the step, or whose answer
there fails the hard check or has a null OVER, take B's outcome at every threshold. Counts and sums at
every threshold are then B's totals plus a cumulative sum of the A-minus-B differences over the
switchable requests sorted by value. Latency percentiles are exact order statistics of the mixed
latencies, found for all thresholds at once (`mixed_quantiles`).

Cost is the one figure that reads another request: a turn of a session loses its prompt cache on the
calls whose model its previous turn did not call (simulator.core.sessions), and that turn takes A's or B's
outcome by its own value. So a turn's cost is one of four, c[prev][own] with prev, own in {A, B}, and at
threshold t it is c[B][B] + [v >= t](c[B][A] - c[B][B]) + [v_prev >= t](c[A][B] - c[B][B])
+ [min(v, v_prev) >= t](c[A][A] - c[A][B] - c[B][A] + c[B][B]) (a side that never switches never takes A):
the frame's A cost is c[B][A], and the last two terms are two more cumulative sums over sorted values
(`cache_loss_costs`), all int64.

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

from simulator.core.chunks import Chunk
from simulator.core.contract import Dataset
from simulator.core.engine import (
    ACCEPTS,
    CALL_COLUMNS,
    ESCALATES,
    ForkedReplay,
    Replay,
    by_rid,
    crossed_losses,
    replay_forked,
    sort_calls,
)
from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.metrics import P95, aggregate
from simulator.core.money import usd_per
from simulator.core.partials import SCALE, exact_mean, score_sums
from simulator.core.prices import CACHE_LOSS, NANO_PER_USD, PriceSheet, usd
from simulator.core.results import grades_read
from simulator.core.scenario import Scenario, with_step_accept
from simulator.core.stats import wilson_interval
from simulator.core.verdict import DEFAULT_ADMISSION, Admission

DEFAULT_POINTS = 200
LATENCY_QUANTILE = P95
# Thresholds processed together when finding latency quantiles: at most THRESHOLD_BLOCK, and at most
# THRESHOLD_CELLS cells of a (threshold, bucket) table, which bounds memory to a few tens of MB per block.
THRESHOLD_BLOCK = 4096
THRESHOLD_CELLS = 1 << 21
ACCEPT_ALL, ACCEPT_NONE = "TRUE", "FALSE"
GATE_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*>=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")

TARGET_PASS_RATE = "pass_rate"
TARGET_ESCALATION_RATE = "escalation_rate"
TARGET_BUDGET = "budget"


@dataclass(frozen=True)
class Gate:
    """The swept gate: step `step` (0-based) of plan `plan_index`, accepting when `over >= t`. `grades`: the
    grade columns the swept policy reads (`over` among them when it is a grade): when any, every point of
    the sweep is a bound, what no deployable gate can beat on these answers, never a threshold to ship."""

    plan_index: int
    plan: str
    step: int
    over: str
    models: tuple[str, ...]
    grades: tuple[str, ...] = ()

    @property
    def deployable(self) -> bool:
        return not self.grades


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
    # the policy as the sweep runs it: this step's accept a threshold on `over`
    swept = with_step_accept(scenario, plan_index, step, gate_predicate(over, 0.0))
    return Gate(plan_index=plan_index, plan=label, step=step, over=over, models=tuple(s.calls[-1] for s in steps),
                grades=tuple(grades_read(swept, data)))


def with_accept(scenario: Scenario, gate: Gate, accept: str) -> Scenario:
    """The scenario with the gate's accept predicate replaced by `accept` (core.scenario.with_step_accept)."""
    return with_step_accept(scenario, gate.plan_index, gate.step, accept)


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


def _side(strong: str) -> list[pl.Expr]:
    """SIDE_COLUMNS but `present`, from a replay's decision columns (README "Decisions")."""
    return [
        pl.col("cost_nano_usd"),
        pl.col("latency_ms"),
        pl.col("passed"),
        pl.col("score"),
        pl.col("escalated") & pl.col("multi_step"),
        pl.col("multi_step"),
        (pl.col("retry_attempts") > 0).alias("retried"),
        pl.col("models_called").list.contains(strong).alias("strong"),
    ]


@dataclass(frozen=True)
class SweepData:
    """Both branches, and one row per request present in either with its A and B outcome.

    `frame` columns: rid, ts, switchable, value, and `a_<x>` / `b_<x>` for each x in SIDE_COLUMNS; for a
    request that is not switchable its A columns are a copy of its B columns (it takes B's outcome at every
    threshold). Its costs are those with its previous turn on B; `previous_value` (the previous turn's
    value, null when it never takes A), `cost_previous_a` (c[A][B] - c[B][B]) and `cost_both_a`
    (c[A][A] - c[A][B] - c[B][A] + c[B][B]) give the rest (module doc). `at_step`: per selected request in
    rid order, whether it reached the gate with an answer (`reached`), and that answer's hard_check_ok and
    OVER (`value`). `branches`: the forked replay, or A's and B's replays, whose decisions and calls
    `accept_all`/`accept_none` give; None on shards, which keep no per-request decisions. `cache_loss`:
    with sessions, the prompt-cache losses of both branches for either branch of the previous turn
    (simulator.core.engine.crossed_losses), for `decisions_at` and `calls_at`.
    """

    scenario: Scenario
    gate: Gate
    frame: pl.DataFrame
    requests_selected: int
    at_step: pl.DataFrame | None = None
    branches: ForkedReplay | tuple[Replay, Replay] | None = None
    cache_loss: pl.DataFrame | None = None

    @property
    def accept_all(self) -> Replay | None:
        """Replay A: the gate accepts every answer that passes its hard check."""
        return self._branch(0, ACCEPTS)

    @property
    def accept_none(self) -> Replay | None:
        """Replay B: the gate accepts no answer."""
        return self._branch(1, ESCALATES)

    def _branch(self, position: int, branch: int) -> Replay | None:
        if isinstance(self.branches, ForkedReplay):
            return self.branches.replay(branch)
        return None if self.branches is None else self.branches[position]


def prepare(scenario: Scenario, data: Dataset, sheet: PriceSheet | None, gate: Gate, *, part: bool = False,
            chunk: Chunk | None = None) -> SweepData:
    """Replays A (gate accepts all) and B (gate accepts none) in one forked replay
    (simulator.core.engine.replay_forked: the work up to the gate is shared) and lines up each request's two
    outcomes. With `part`, `data` is a shard of the data the gate was resolved on, or with `chunk` a chunk
    of it (engine.replay)."""
    accept_all = with_accept(scenario, gate, ACCEPT_ALL).model_copy(update={"on_missing": "skip"})
    forked = replay_forked(accept_all, data, sheet, gate.plan_index, gate.step, gate.over, part=part, chunk=chunk)
    columns = [pl.col("ts"), *_side(gate.models[-1])]
    return _lined_up(scenario, gate, forked.outcomes(ACCEPTS, columns), forked.outcomes(ESCALATES, columns),
                     forked.at_step(), forked.requests_selected, forked, forked.cache_losses)


def line_up(prepared: SweepData, accept_all: Replay, accept_none: Replay) -> SweepData:
    """`prepared`'s requests and gate with A's and B's outcomes taken from these replays of the same
    requests (the branches repriced, say: simulator.analyses.whatif)."""
    columns = [pl.col("ts"), *_side(prepared.gate.models[-1])]

    def outcomes(replayed: Replay) -> pl.DataFrame:
        found = replayed.decisions.select(pl.col("rid").alias("__rid"), pl.lit(True).alias("present"), *columns)
        return by_rid(found, prepared.requests_selected).with_columns(pl.col("present").fill_null(False))

    states = {ACCEPTS: accept_all.cache_state(), ESCALATES: accept_none.cache_state()}
    losses = None if accept_all.turns is None else crossed_losses(accept_all.turns, states)
    return _lined_up(prepared.scenario, prepared.gate, outcomes(accept_all), outcomes(accept_none), prepared.at_step,
                     prepared.requests_selected, (accept_all, accept_none), losses)


LOSS_PAIRS = {"aa": (ACCEPTS, ACCEPTS), "ab": (ACCEPTS, ESCALATES), "ba": (ESCALATES, ACCEPTS),
              "bb": (ESCALATES, ESCALATES)}  # name -> (previous turn's branch, own branch)


def _loss_columns(losses: pl.DataFrame | None, rows: int) -> dict[str, np.ndarray]:
    """Per selected request (rid order), `previous` (its previous turn's rid, -1 when it has no loss in any
    branch) and `loss_<xy>`: its prompt-cache losses in branch y with its previous turn in branch x
    (LOSS_PAIRS), 0 where none."""
    found = {name: np.zeros(rows, np.int64) for name in LOSS_PAIRS}
    found["previous"] = np.full(rows, -1, np.int64)
    if losses is None or losses.is_empty():
        return found
    sums = losses.group_by("rid", "previous", "previous_branch", "branch").agg(pl.col("cost_nano_usd").sum())
    found["previous"][sums["rid"].to_numpy()] = sums["previous"].to_numpy()
    for name, (previous_branch, branch) in LOSS_PAIRS.items():
        pair = sums.filter((pl.col("previous_branch") == previous_branch) & (pl.col("branch") == branch))
        found[name][pair["rid"].to_numpy()] = pair["cost_nano_usd"].to_numpy()
    return found


def _lined_up(scenario: Scenario, gate: Gate, a: pl.DataFrame, b: pl.DataFrame, at_step: pl.DataFrame,
              requests_selected: int, branches, losses: pl.DataFrame | None = None) -> SweepData:
    """The SweepData of A's and B's outcomes `a`, `b` (`ts` and SIDE_COLUMNS), the answers at the gate
    `at_step`, each one row per selected request in rid order (so lined up by position, without a join),
    and with sessions the prompt-cache `losses` of both branches (engine.crossed_losses)."""
    # polars orders NaN above every number (`NaN >= t` holds), so the sweep does too, as the engine would.
    value = pl.when(pl.col("value").is_nan()).then(float("inf")).otherwise(pl.col("value")).alias("value")
    both = pl.DataFrame([*a.drop("ts").rename(lambda name: f"a_{name}").get_columns(),
                         *b.drop("ts").rename(lambda name: f"b_{name}").get_columns()]).with_columns(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("rid"), a["ts"].fill_null(b["ts"]),
        (at_step["reached"] & at_step["hard_check_ok"].fill_null(False) & at_step["value"].is_not_null())
        .alias("switchable"), at_step.select(value)["value"])
    loss = _loss_columns(losses, both.height)
    # The previous turn's value where it can take A's outcome; the costs with it on A, as differences.
    takes = both.select(pl.when("switchable").then(pl.col("value")))["value"].to_numpy()
    previous = loss["previous"]
    a_present, b_present = (both[f"{side}_present"].fill_null(False).to_numpy() for side in "ab")
    previous_a = np.where(b_present, loss["ab"] - loss["bb"], 0)
    both = both.with_columns(
        (pl.col("a_cost_nano_usd") + pl.Series(loss["ba"] - loss["aa"])).alias("a_cost_nano_usd"),  # c[B][A]
        pl.Series("previous_value", np.where(previous >= 0, takes[np.maximum(previous, 0)], np.nan),
                  nan_to_null=True).fill_nan(None),
        pl.Series("cost_previous_a", previous_a),
        pl.Series("cost_both_a", np.where(a_present, loss["aa"] - loss["ba"], 0) - previous_a))
    switchable = pl.col("switchable")
    frame = both.filter(pl.col("a_present") | pl.col("b_present")).select(
        "rid", "ts", "switchable", pl.when(switchable).then(pl.col("value")).alias("value"),
        *[pl.when(switchable).then(pl.col(f"a_{name}")).otherwise(pl.col(f"b_{name}")).alias(f"a_{name}")
          for name in SIDE_COLUMNS],
        *[f"b_{name}" for name in SIDE_COLUMNS],
        "previous_value", "cost_previous_a", "cost_both_a",
    )
    return SweepData(scenario=scenario, gate=gate, frame=frame, requests_selected=requests_selected, at_step=at_step,
                     branches=branches, cache_loss=losses)


def sweep_shard(task, gate: Gate):
    """One shard's lined-up frame and its selected requests (`SweepData.frame`, `requests_selected`) for
    simulator.core.sharded.map_tasks; (None, 0) for a shard with no request in the window, (ShardFailure,
    0) for bad input."""
    from simulator.core.sharded import ShardFailure, task_inputs

    try:
        found = task_inputs(task)
        if found is None:
            return None, 0
        prepared = prepare(task.scenario, *found, gate, part=True, chunk=task.chunk)
        return prepared.frame, prepared.requests_selected
    except RoutesimError as error:
        return ShardFailure(error.what, error.where, error.fix), 0


def prepare_sharded(scenario: Scenario, inputs, gate: Gate, shards: Path, runner: str = "local") -> SweepData:
    """`prepare` on the shards in `shards` of the scenario's data folder (simulator.core.sharded): each shard
    replays A and B and lines them up; the frames are stacked. Every figure of the curve is an integer sum,
    an exact rational sum or an order statistic, none depending on the order of the rows, so the sweep is
    the whole folder's, byte for byte. No per-request decisions are kept (`accept_all`/`accept_none` None)."""
    from simulator.core.sharded import shard_tasks

    return _stacked(scenario, gate, shard_tasks(scenario, inputs, shards, runner), runner)


def prepare_chunked(scenario: Scenario, inputs, gate: Gate, workers: int) -> SweepData | None:
    """`prepare` in chunks of the scenario's data folder (simulator.core.sharded.chunk_tasks), each lined up
    on its own and stacked as shards are (`prepare_sharded`: the curve is the whole's, byte for byte), on
    `workers` processes (one: a chunk at a time in this process), so only one chunk's replay is held at a
    time per process. None when the data is better replayed in one piece (chunk_tasks)."""
    from simulator.core.sharded import chunk_tasks

    tasks = chunk_tasks(scenario, inputs, workers)
    return None if tasks is None else _stacked(scenario, gate, tasks, "local", workers)


def prepare_curve(scenario: Scenario, inputs, gate: Gate) -> SweepData:
    """The lined-up data of a sweep that needs no per-request decisions or calls (its curve and calibration):
    in chunks on large data (`prepare_chunked`, on simulator.core.sharded.default_workers processes), else
    in one piece (`prepare`)."""
    from simulator.core.sharded import default_workers

    return (prepare_chunked(scenario, inputs, gate, default_workers())
            or prepare(scenario, inputs.data(scenario), inputs.prices(scenario), gate))


def _stacked(scenario: Scenario, gate: Gate, tasks: list, runner: str, workers: int | None = None) -> SweepData:
    """The frames of `sweep_shard` on every task, stacked."""
    from functools import partial

    from simulator.core.engine import no_requests
    from simulator.core.sharded import map_tasks, raise_failures

    results = map_tasks(partial(sweep_shard, gate=gate), tasks, runner, workers)
    raise_failures([frame for frame, _ in results])
    frames = [frame for frame, _ in results if frame is not None]
    if not frames:
        raise no_requests(scenario)
    return SweepData(scenario=scenario, gate=gate, frame=pl.concat(frames, how="vertical_relaxed"),
                     requests_selected=sum(selected for _, selected in results))


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


def _taken_and_padded(values: np.ndarray, order: np.ndarray, pad) -> np.ndarray:
    # values[order] with `pad` after it, written once into its final array (a concatenation copies it again)
    taken = np.empty(order.size + 1, values.dtype)
    np.take(values, order, out=taken[:-1])
    taken[-1] = pad
    return taken


def mixed_quantiles(base: np.ndarray, a_values: np.ndarray, b_values: np.ndarray, a_switch: np.ndarray,
                    b_switch: np.ndarray, thresholds: int, q: float) -> np.ndarray:
    """The q-quantile (linear interpolation) of a multiset that changes with the threshold index j.

    Elements: `base` is in every multiset; `a_values[i]` is in multisets j < a_switch[i]; `b_values[i]` is in
    multisets j >= b_switch[i]. Returns one quantile per j in 0..thresholds-1 (NaN for an empty multiset).

    Method: each multiset's size n_j comes from counting elements in and out, so the least rank wanted at
    any j, m = min floor(q (n_j - 1)), is known first; the elements below the (m+1)-th smallest value are
    never the order statistic wanted (at most m of them are in any multiset), so they are only counted per
    j. The others are sorted into a pool cut into equal-count buckets; the elements in the multiset at j = 0
    are counted per bucket and those entering or leaving later are events at their threshold index, so
    running sums over (threshold, bucket) locate the bucket of the wanted order statistic, and a scan of
    that bucket's few elements finds the element itself. Cost: O(P log P) for the sort plus O(T x sqrt(P))
    for T thresholds and P elements, all in numpy.
    """
    result = np.full(thresholds, np.nan)
    latency = np.concatenate([base, a_values, b_values], dtype=np.float64)
    if latency.size == 0 or thresholds == 0:
        return result
    # Each element is in the multisets j with enter <= j < leave.
    enter = np.concatenate([np.zeros(base.size + a_values.size, np.int32), b_switch.astype(np.int32)])
    leave = np.concatenate([np.full(base.size, thresholds, np.int32), a_switch.astype(np.int32),
                            np.full(b_values.size, thresholds, np.int32)])

    def sizes(chosen: np.ndarray | slice) -> np.ndarray:  # per j, how many of the chosen elements are in
        moves = np.bincount(enter[chosen], minlength=thresholds + 1) - np.bincount(leave[chosen], minlength=thresholds + 1)
        return np.cumsum(moves[:thresholds])

    # n = sizes(everything), counted from the switches alone: base and A are in from j = 0, B from its switch
    n = (base.size + a_values.size + np.cumsum(np.bincount(b_switch, minlength=thresholds + 1)[:thresholds])
         - np.cumsum(np.bincount(a_switch, minlength=thresholds + 1)[:thresholds]))
    position = q * (n - 1).astype(np.float64)
    low_rank = np.floor(position).astype(np.int64)
    high_rank = np.minimum(low_rank + 1, n - 1)
    if not (n > 0).any():
        return result
    least = int(low_rank[n > 0].min())
    below = np.zeros(thresholds, np.int64)  # per j, the elements under the cut in the multiset
    if least > 0:
        cut = np.partition(latency, least)[least]
        under = latency < cut  # at most `least` elements
        below = sizes(under)
        kept = np.flatnonzero(~under)
        order = kept[np.argsort(latency[kept])]
    else:
        order = np.argsort(latency)  # the order among equal latencies does not change any order statistic
    pool = order.size
    # The pool in latency order, one longer: slot `pool` is a pad that no multiset holds.
    padded_latency, padded_enter, padded_leave = (_taken_and_padded(values, order, pad) for values, pad in (
        (latency, np.nan), (enter, thresholds), (leave, 0)))
    enter, leave = padded_enter[:pool], padded_leave[:pool]
    size = max(16, math.isqrt(pool))
    buckets = -(-pool // size)
    counts_at_zero = np.bincount(np.flatnonzero(enter == 0) // size, minlength=buckets)
    # Elements entering after j = 0, and elements leaving before the last threshold: (threshold index, bucket).
    arrive, depart = np.flatnonzero((enter > 0) & (enter < thresholds)), np.flatnonzero(leave < thresholds)
    events = [(at[positions].astype(np.int64), positions // size) for positions, at in ((arrive, enter), (depart, leave))]
    carry = counts_at_zero.astype(np.int64)
    # Thresholds are taken in blocks so that the (threshold, bucket) and (threshold, slot) tables stay small.
    block = max(1, min(THRESHOLD_BLOCK, THRESHOLD_CELLS // max(buckets, size)))
    for first in range(0, thresholds, block):
        last = min(first + block, thresholds)
        length = last - first
        changes = np.zeros(length * buckets, np.int64)
        for sign, (at, bucket) in zip((1, -1), events):
            if block < thresholds:
                inside = (at >= first) & (at < last)
                at, bucket = at[inside], bucket[inside]
            changes += sign * np.bincount((at - first) * buckets + bucket, minlength=length * buckets)
        counts = carry + np.cumsum(changes.reshape(length, buckets), axis=0)
        carry = counts[-1]
        running = np.cumsum(counts, axis=1)
        j = np.arange(first, last, dtype=np.int32)[:, None]
        rows = np.arange(length)
        values = []
        for rank in (low_rank[first:last], high_rank[first:last]):
            rank = np.maximum(rank - below[first:last], 0)  # the rank among the pool's elements
            which = np.minimum((running <= rank[:, None]).sum(axis=1), buckets - 1)
            before = np.where(which > 0, running[rows, np.maximum(which - 1, 0)], 0)
            slots = np.minimum(which[:, None] * size + np.arange(size)[None, :], pool)
            active = (padded_enter[slots] <= j) & (j < padded_leave[slots])
            found = np.argmax(np.cumsum(active, axis=1, dtype=np.int32) > (rank - before)[:, None], axis=1)
            values.append(padded_latency[slots[rows, found]])
        quantile = _lerp(values[0], values[1], position[first:last] - low_rank[first:last])
        result[first:last] = np.where(n[first:last] > 0, quantile, np.nan)
    return result


# The integer counters of a side of the sweep frame, each an Int64 column of its present requests.
COUNTERS = ("requests", "cost", "passed", "escalated", "multi_step", "retried", "strong", "scored")


def _counters(prefix: str) -> list[pl.Expr]:
    present = pl.col(f"{prefix}present").fill_null(False)

    def counted(name: str) -> pl.Expr:
        return present & pl.col(f"{prefix}{name}").fill_null(False)

    return [expression.cast(pl.Int64) for expression in (
        present, pl.when(present).then(pl.col(f"{prefix}cost_nano_usd")).otherwise(0),  # exact integers
        counted("passed"), counted("escalated"), counted("multi_step"), counted("retried"), counted("strong"),
        present & pl.col(f"{prefix}score").is_not_null())]


@dataclass(frozen=True)
class _Split:
    """A sweep frame split into the switchable requests (`movers`, with `switch`: they take A's outcome at
    the thresholds j < switch, where thresholds[j] <= their value, and B's from switch on) and the others
    (`stayers`, B's outcome at every threshold)."""

    movers: pl.DataFrame
    switch: np.ndarray
    stayers: pl.DataFrame

    @classmethod
    def of(cls, frame: pl.DataFrame, thresholds: np.ndarray) -> _Split:
        movers = frame.filter("switchable")
        switch = np.searchsorted(thresholds, movers["value"].to_numpy(), side="right")
        return cls(movers=movers, switch=switch, stayers=frame.filter(~pl.col("switchable")))


def _totals(split: _Split, thresholds: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per threshold, each counter in `names` (COUNTERS) over the mixture, and `gate_accepted` (the
    requests that take A's outcome there and are present in A): B's totals plus the A-minus-B differences
    of the requests that take A's outcome, summed per switch value and then over the values above j
    (int64 sums, exact)."""
    a_side, b_side = (dict(zip(COUNTERS, _counters(prefix))) for prefix in ("a_", "b_"))
    b_sums = [b_side[name].sum().alias(name) for name in names]
    b_totals = np.asarray(split.movers.select(b_sums).row(0), dtype=np.int64) + split.stayers.select(b_sums).row(0)
    columns = [*names, "gate_accepted"]
    by_switch = (split.movers.with_columns(pl.Series("__switch", split.switch)).group_by("__switch")
                 .agg(*((a_side[name] - b_side[name]).sum().alias(name) for name in names),
                      a_side["requests"].sum().alias("gate_accepted")))
    per_switch = np.zeros((thresholds + 1, len(columns)), np.int64)
    per_switch[by_switch["__switch"].to_numpy()] = by_switch.select(columns).to_numpy()
    # A request takes A's outcome at j < switch: at j, the requests with switch j + 1 and above.
    moved = np.cumsum(per_switch[::-1], axis=0)[::-1][1:]
    totals = {name: b_totals[position] + moved[:, position] for position, name in enumerate(names)}
    totals["gate_accepted"] = moved[:, -1]
    return totals


def cache_loss_costs(frame: pl.DataFrame, thresholds: np.ndarray) -> np.ndarray:
    """Per threshold, what the turns whose previous turn takes A's outcome there add to the cost (module
    doc): `cost_previous_a` when the previous turn's value reaches the threshold, and `cost_both_a` more
    when the turn's own value does too. Two cumulative sums over the switch indices, int64."""
    added = np.zeros(thresholds.size + 1, np.int64)
    turns = frame.filter(pl.col("previous_value").is_not_null())
    if turns.is_empty():
        return added[1:]
    previous = np.searchsorted(thresholds, turns["previous_value"].to_numpy(), side="right")
    own = np.where(turns["switchable"].to_numpy(),
                   np.searchsorted(thresholds, turns["value"].fill_null(-np.inf).to_numpy(), side="right"), 0)
    np.add.at(added, previous, turns["cost_previous_a"].to_numpy())
    np.add.at(added, np.minimum(previous, own), turns["cost_both_a"].to_numpy())
    # A turn adds its share at the thresholds j < its switch index: at j, the shares with switch j + 1 and above.
    return np.cumsum(added[::-1])[::-1][1:]


def _scores(frame: pl.DataFrame, prefix: str) -> pl.Series:
    return frame.select(pl.when(pl.col(f"{prefix}present").fill_null(False)).then(pl.col(f"{prefix}score"))).to_series()


def _score_totals(split: _Split, thresholds: int) -> list[Fraction]:
    """The exact sum of the scores at each threshold j: B's scores of the requests with switch <= j (every
    stayer's among them) and A's of those with switch > j, summed per switch value as exact integers times
    2^SCALE (simulator.core.partials), so the total does not depend on the order of the requests (or on
    how they were split into shards)."""
    a_sums = score_sums(split.switch, _scores(split.movers, "a_"))
    b_sums = score_sums(np.concatenate([split.switch, np.zeros(split.stayers.height, np.int64)]),
                        pl.concat([_scores(split.movers, "b_"), _scores(split.stayers, "b_")]))
    above = [0] * (thresholds + 1)  # above[j]: A's scores of the requests with switch > j
    for j in range(thresholds - 1, -1, -1):
        above[j] = above[j + 1] + a_sums.get(j + 1, 0)
    totals, below = [], 0
    for j in range(thresholds):
        below += b_sums.get(j, 0)
        totals.append(Fraction(below + above[j], 1 << SCALE))
    return totals


def _latencies(frame: pl.DataFrame, prefix: str) -> np.ndarray:
    """Per row, the side's latency, NaN where the side is not present or has none (a request answered on
    batch: latency figures leave it out, as the replay's do)."""
    present = pl.col(f"{prefix}present").fill_null(False)
    latency = pl.when(present).then(pl.col(f"{prefix}latency_ms").cast(pl.Float64)).fill_null(np.nan)
    return frame.select(latency).to_series().to_numpy()


def _p95(split: _Split, thresholds: int) -> np.ndarray:
    """The p95 latency of the mixture at every threshold (mixed_quantiles): a mover's A latency at j < switch,
    its B latency from switch on, a stayer's B latency at every threshold."""
    a, b, base = _latencies(split.movers, "a_"), _latencies(split.movers, "b_"), _latencies(split.stayers, "b_")
    timed_a, timed_b = ~np.isnan(a), ~np.isnan(b)
    return mixed_quantiles(base[~np.isnan(base)], a[timed_a], b[timed_b], split.switch[timed_a],
                           split.switch[timed_b], thresholds, LATENCY_QUANTILE)


def curve(data: SweepData, thresholds: np.ndarray, rows: pl.Series | None = None) -> pl.DataFrame:
    """Metrics at every threshold (ascending), over all requests or those where `rows` holds.

    Counts and costs are exact (costs are sums of whole nano-dollars), and so are score sums (exact
    rationals, `_score_totals`): no figure depends on the order of the requests.
    """
    frame = data.frame if rows is None else data.frame.filter(rows)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    split = _Split.of(frame, thresholds)
    totals = _totals(split, thresholds.size, COUNTERS)
    totals["cost"] = totals["cost"] + cache_loss_costs(frame, thresholds)
    score_totals = _score_totals(split, thresholds.size)
    p95 = _p95(split, thresholds.size)
    requests = totals["requests"]
    total_cost_usd = totals["cost"] / NANO_PER_USD

    def ratio(top, bottom):
        return [None if d == 0 else float(t / d) for t, d in zip(top, bottom)]

    # A separate replay fails under on_missing=error when any request of the window is missing, whichever
    # rows this curve covers, so the count is over the whole frame (over all rows it is `requests`'s).
    if rows is None:
        missing = data.requests_selected - requests
    else:
        everyone = _Split.of(data.frame, thresholds)
        missing = data.requests_selected - _totals(everyone, thresholds.size, ("requests",))["requests"]
    return pl.DataFrame({
        "threshold": thresholds,
        "requests": requests,
        "missing_requests": missing,
        "gate_accepted": totals["gate_accepted"],
        "total_cost_usd": total_cost_usd,
        "cost_per_request_usd": [usd_per(int(cost), int(count)) for cost, count in zip(totals["cost"], requests)],
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


def _takes_a(data: SweepData, threshold: float) -> pl.DataFrame:
    """The `rid`s of the requests that take A's outcome at the threshold."""
    return data.frame.filter(pl.col("switchable") & (pl.col("value") >= threshold)).select("rid")


def decisions_at(data: SweepData, threshold: float) -> pl.DataFrame:
    """The per-request decisions a replay with the gate `OVER >= threshold` gives (on_missing=skip)."""
    takes_a = _takes_a(data, threshold)
    from_a = data.accept_all.decisions.join(takes_a, on="rid", how="semi")
    from_b = data.accept_none.decisions.join(takes_a, on="rid", how="anti")
    decisions = pl.concat([from_a, from_b], how="vertical").sort("rid")
    if data.cache_loss is None:
        return decisions
    # A turn's prompt-cache loss follows its previous turn's branch: its cost is the sum of its calls there.
    costs = calls_at(data, threshold).group_by("rid").agg(pl.col("cost_nano_usd").sum().alias("__cost"))
    return (decisions.join(costs, on="rid", how="left", maintain_order="left")
            .with_columns(pl.col("__cost").alias("cost_nano_usd"), usd(pl.col("__cost")).alias("cost_usd"))
            .drop("__cost"))


def calls_at(data: SweepData, threshold: float) -> pl.DataFrame:
    """The calls a replay with the gate `OVER >= threshold` makes, in the engine's order."""
    takes_a = _takes_a(data, threshold)
    calls = pl.concat([data.accept_all.calls.join(takes_a, on="rid", how="semi"),
                       data.accept_none.calls.join(takes_a, on="rid", how="anti")], how="vertical")
    if data.cache_loss is not None:  # each turn's losses in its branch, with its previous turn's branch
        chosen = takes_a["rid"].implode()
        own = pl.when(pl.col("rid").is_in(chosen)).then(ACCEPTS).otherwise(ESCALATES)
        before = pl.when(pl.col("previous").is_in(chosen)).then(ACCEPTS).otherwise(ESCALATES)
        losses = data.cache_loss.filter((pl.col("branch") == own) & (pl.col("previous_branch") == before))
        calls = pl.concat([calls.filter(pl.col("kind") != CACHE_LOSS), losses.select(CALL_COLUMNS)], how="vertical")
    return sort_calls(calls)


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


def target_words(target: tuple[str, float]) -> str:
    """A calibration target as it was given, in the unit its figures are written in: 'pass rate at least
    90.0%', 'cost per request at most $0.0082364' (not 0.9, 0.0082364)."""
    from simulator.core.formats import given

    return f"{TARGET_WORDS[target[0]]} {given(target[1], 'usd' if target[0] == TARGET_BUDGET else 'pct')}"


@dataclass(frozen=True)
class Holdout:
    """What a threshold calibrated on requests before `until` achieves on the requests from `until` on."""

    until: dt.date
    fit: dict | None  # the calibrated point, on the fitting requests
    later: dict | None  # the same threshold on the later requests (summary metrics)
    later_by_day: list[dict]
    hindsight: dict | None  # the threshold the same target would pick on the later requests themselves
    held: bool | None = None  # whether `later` meets the target under the same rule as the pick (None: no fit)


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
    later_point = summary | {"threshold": chosen["threshold"]}
    return Holdout(until=until, fit=chosen, later=later_point, later_by_day=by_day, hindsight=hindsight,
                   held=meets(later_point, target, scenario.admission or DEFAULT_ADMISSION))


def meets(point: dict, target: tuple[str, float], admission: Admission = DEFAULT_ADMISSION) -> bool:
    """Whether one point (a sweep point's metrics) meets `target` under the rule `calibrate` picks by, so a
    verdict on it never contradicts a pick."""
    return calibrate(pl.DataFrame([point]), *target, admission) is not None


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
                      "deployable": gate.deployable, "reads_grades": list(gate.grades),
                      "current_threshold": result.current, "left_out": result.left_out,
                      "two_models": len(scenario.policy.models()) == 2,
                      # the cheapest threshold whose pass rate reaches the overall bar (slice bars not checked)
                      "cheapest_at_bar": None if at_bar is None else {key: at_bar[key] for key in (
                          "threshold", "cost_per_request_usd", "pass_rate", "escalation_rate")},
                      "points": result.points.drop("missing_requests").to_dicts()})
    return found
