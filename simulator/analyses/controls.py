"""Honest controls: what a policy must beat before its routing earns credit.

Two controls are set beside every policy, both built from single models' first answers (`sample` 0) to the
policy's own requests, priced like a replay prices a call (integer nano-dollars):

- **Random control at equal cost** (the random router of the routing literature): each request goes to
  the most expensive single model with probability w and to the cheapest otherwise, with
  w = (c - c_lo) / (c_hi - c_lo) clipped to 0..1, so its expected cost per request equals the policy's c
  (c_lo, c_hi: the cheapest and most expensive models' cost per request). A request goes to the expensive
  model when its keyed draw u (simulator.core.draws, purpose "random-control", keyed by request id) is
  below w: the same request gets the same draw at any thread count and in any window.
- **Best fixed split**: one single model per slice, the cheapest such assignment whose pass rate reaches
  the policy's own pass rate, fitted on the first half of the window (requests before the midpoint of the
  first and last request's time) and scored on the second half. The fit is exact (a dynamic programme
  over passes, the multiple-choice knapsack, on integer nano-dollar costs); a slice first seen in the
  second half goes to the model with the highest pass rate in the first half.

Only models that answered every replayed request take part. The policy's pass rate is judged against each
control's through the run's admission rule (simulator.core.verdict.judge, the control's pass rate as the
bar): the policy beats a control when it *meets* that bar and its pass rate is above the control's. A
policy that calls more than one model is flagged (`no_better_than`) when it does not beat the random
control, or when the fixed split costs no more per request on the second half and the policy does not
beat its second-half pass rate.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from simulator.analyses.tables import priced_answers
from simulator.core.contract import Dataset
from simulator.core.draws import keyed_uniform
from simulator.core.engine import Replay
from simulator.core.money import usd_per_request_of
from simulator.core.prices import PriceSheet
from simulator.core.scenario import Scenario
from simulator.core.verdict import DEFAULT_ADMISSION, MEETS, Admission, judge

SEED = 0
PURPOSE = "random-control"
# The controls price every model's first answer to every replayed request, several times the replay's own
# work: above this many replayed requests they are left out (`skipped`), whole or split alike.
CONTROL_REQUESTS = 2_000_000


def _complete_models(answers: pl.DataFrame, requests: int) -> tuple[list[str], list[str]]:
    counts = dict(answers.group_by("model").len().iter_rows())
    complete = sorted(model for model, count in counts.items() if count == requests)
    return complete, sorted(set(counts) - set(complete))


def _rates(frame: pl.DataFrame, passed: str = "ok") -> dict:
    """Requests, cost per request (from the integer nano-dollar sum) and pass rate of `frame`."""
    if not frame.height:
        return {"requests": 0, "cost_per_request_usd": None, "pass_rate": None, "passes": 0}
    passes = int(frame[passed].sum())
    return {"requests": frame.height, "cost_per_request_usd": usd_per_request_of(int(frame["cost_nano_usd"].sum()),
                                                                              frame.height), "pass_rate": passes / frame.height, "passes": passes}


def random_control(answers: pl.DataFrame, models: list[str], cost_per_request: float, seed: int = SEED) -> dict:
    """The keyed cheapest/most-expensive mixture whose expected cost per request is `cost_per_request` (USD).

    `answers`: `priced_answers` rows (`request_id`, `rid`, `model`, `ok`, `cost_nano_usd`) of `models`."""
    totals = dict(answers.group_by("model").agg(pl.col("cost_nano_usd").sum(), pl.len().alias("n"))
                  .select("model", pl.struct("cost_nano_usd", "n")).iter_rows())
    costs = {model: usd_per_request_of(totals[model]["cost_nano_usd"], totals[model]["n"]) for model in models}
    low = min(models, key=lambda model: (costs[model], model))
    high = max(models, key=lambda model: (costs[model], model))
    spread = costs[high] - costs[low]
    weight = 0.0 if spread <= 0 else min(1.0, max(0.0, (cost_per_request - costs[low]) / spread))
    requests = answers.select("rid", "request_id").unique("rid").sort("rid")
    draws = keyed_uniform(seed, PURPOSE, requests["request_id"])
    picks = requests.select("rid", pl.Series("model", np.where(draws < weight, high, low)))
    mixed = answers.join(picks, on=["rid", "model"], how="semi").sort("rid")
    return {"cheapest": low, "most_expensive": high, "weight": weight, "seed": seed} | _rates(mixed)


def _fit_split(fit: pl.DataFrame, models: list[str], target: float) -> tuple[dict[str, str], bool]:
    """Per slice the model of the cheapest assignment reaching `target` pass rate on `fit` (exact DP over
    integer nano-dollar costs `cost_nano_usd`)."""
    table = fit.group_by("slice", "model").agg(pl.col("ok").sum().cast(pl.Int64).alias("passes"),
                                               pl.col("cost_nano_usd").sum().alias("cost")).sort("slice", "model")
    slices = table["slice"].unique().sort().to_list()
    need = math.ceil(target * fit["rid"].n_unique() - 1e-9)
    unreachable = np.iinfo(np.int64).max // 4  # above any sum of costs; stays above after adding one more
    best = np.full(need + 1, unreachable, dtype=np.int64)
    best[0] = 0
    choices = []
    for name in slices:
        rows = table.filter(pl.col("slice") == name)
        candidates, previous = [], []
        for passes, cost in rows.select("passes", "cost").iter_rows():
            reached = np.full(need + 1, unreachable, dtype=np.int64)
            came_from = np.full(need + 1, -1)
            low = max(need - passes, 0)  # every count from `low` on reaches `need` with this model
            if passes < need:
                reached[passes:need] = np.minimum(best[:need - passes] + cost, unreachable)
                came_from[passes:need] = np.arange(0, need - passes)
            tail = int(np.argmin(best[low:])) + low
            reached[need], came_from[need] = min(best[tail] + cost, unreachable), tail
            candidates.append(reached)
            previous.append(came_from)
        stacked = np.vstack(candidates)
        pick = np.argmin(stacked, axis=0)  # ties: the first model by name
        best = stacked[pick, np.arange(need + 1)]
        choices.append((rows["model"].to_list(), pick, np.vstack(previous)[pick, np.arange(need + 1)]))
    reachable = bool(best[need] < unreachable)
    if not reachable:  # nothing reaches the target: the most passing model of each slice
        by_slice = table.sort("slice", "passes", "cost", "model", descending=[False, True, False, False])
        return dict(by_slice.unique("slice", keep="first", maintain_order=True).select("slice", "model").iter_rows()), False
    assignment, at = {}, need
    for name, (names, pick, came_from) in zip(reversed(slices), reversed(choices)):
        assignment[name] = names[pick[at]]
        at = came_from[at]
    return dict(sorted(assignment.items())), reachable


def fixed_split(answers: pl.DataFrame, decisions: pl.DataFrame, models: list[str]) -> dict:
    """The best fixed per-slice split fitted on the first half of the window, scored on the second."""
    ts = decisions["ts"]
    midpoint = ts.min() + (ts.max() - ts.min()) / 2
    first = pl.col("ts") < midpoint
    policy_fit, policy_test = decisions.filter(first), decisions.filter(~first)
    fit = answers.filter(first & pl.col("model").is_in(models))
    test = answers.filter(~first & pl.col("model").is_in(models))
    if policy_fit.is_empty() or policy_test.is_empty():
        return {"midpoint": midpoint.isoformat(), "assignment": {}, "reachable": False, "scored": None,
                "policy": None}
    target = policy_fit["passed"].cast(pl.Float64).mean()
    assignment, reachable = _fit_split(fit, models, target)
    fallback = (fit.group_by("model").agg(pl.col("ok").mean().alias("rate")).sort("rate", "model",
                                                                                  descending=[True, False])["model"][0])
    routed = test.filter(pl.col("model") == pl.col("slice").replace_strict(assignment, default=fallback))
    return {"midpoint": midpoint.isoformat(), "target_pass_rate": target, "assignment": assignment,
            "unseen_slices_to": fallback, "reachable": reachable, "scored": _rates(routed.sort("rid")),
            "policy": _rates(policy_test, "passed")}


def beats(policy: dict, control: dict, admission: Admission) -> bool:
    """Whether `policy` (`passes`, `requests`, `pass_rate`) beats `control`'s pass rate by the admission rule:
    it meets the control's pass rate as a bar, and is above it."""
    verdict = judge(policy["passes"], policy["requests"], control["pass_rate"], admission)
    return verdict["state"] == MEETS and policy["pass_rate"] > control["pass_rate"]


def controls(result: Replay, data: Dataset, sheet: PriceSheet | None, seed: int = SEED) -> dict | None:
    """`controls_of` one replay in one piece."""
    return controls_of(result.scenario, result.decisions, router_of(result.calls), data, sheet, seed)


def router_of(calls: pl.DataFrame) -> bool:
    """Whether a replay's plan and retry calls (`calls`) went to more than one model."""
    return calls.filter(pl.col("kind").is_in(["step", "retry"]))["model"].n_unique() > 1


def controls_of(scenario: Scenario, decisions: pl.DataFrame, router: bool, data: Dataset, sheet: PriceSheet | None,
                seed: int = SEED) -> dict | None:
    """Both controls for a policy's replayed requests and whether the policy beats them; None when no single
    model answered every replayed request. Judged by the scenario's admission rule (default: the Wilson
    lower bound).

    `decisions`: one row per replayed request with `request_id`, `rid` (any unique key), `ts`, `slice`,
    `passed` and `cost_nano_usd` (a replay's decisions, or those columns gathered from its shards or
    chunks); `router`: whether the policy called more than one model (`router_of`). Above CONTROL_REQUESTS
    replayed requests: only `skipped`, saying why."""
    if decisions.height > CONTROL_REQUESTS:
        return {"skipped": f"{decisions.height:,} requests replayed: the controls are computed up to "
                           f"{CONTROL_REQUESTS:,}; replay a window or a sample for them"}
    answers, _ = priced_answers(decisions.select("request_id", "rid", "ts", "slice"), data, sheet)
    models, left_out = _complete_models(answers, decisions.height)
    if not models:
        return None
    admission = scenario.admission or DEFAULT_ADMISSION
    answers = answers.filter(pl.col("model").is_in(models))
    mine = _rates(decisions, "passed")
    random = random_control(answers, models, mine["cost_per_request_usd"], seed)
    split = fixed_split(answers, decisions, models)
    beaten_by = []
    if router and not beats(mine, random, admission):
        beaten_by.append("random")
    scored, second_half = split["scored"], split["policy"]
    if (router and scored and scored["requests"]
            and scored["cost_per_request_usd"] <= second_half["cost_per_request_usd"]
            and not beats(second_half, scored, admission)):
        beaten_by.append("fixed_split")
    return {"models": models, "left_out": left_out, "router": router, "rule": admission.rule,
            "confidence": admission.confidence, "random": random, "fixed_split": split, "no_better_than": beaten_by}


def set_beside(summary: dict, replay: Replay | None, data: Dataset, sheet: PriceSheet | None) -> None:
    """Adds `capacity` (simulator.analyses.capacity) and `controls` to an exact or partial `summary` of
    `replay`; a design-weighted estimate from a shadow sample gets neither (both need the whole window's
    answers)."""
    from simulator.analyses.capacity import capacity
    from simulator.analyses.estimates import DESIGN_WEIGHTED

    if summary.get("kind") == DESIGN_WEIGHTED or replay is None:
        return
    summary["capacity"] = capacity(replay, data)
    summary["controls"] = controls(replay, data, sheet)
