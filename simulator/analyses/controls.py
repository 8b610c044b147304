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
from dataclasses import dataclass

import numpy as np
import polars as pl

from simulator.analyses.tables import priced_by_model
from simulator.core.contract import Dataset
from simulator.core.draws import keyed_uniform
from simulator.core.engine import LAYOUT_ROW, MODEL_CALLS, Replay
from simulator.core.formats import counted
from simulator.core.money import usd_per
from simulator.core.prices import SERVICE_STANDARD, PriceSheet
from simulator.core.results import CONTROL_REQUESTS, EXACT, PARTIAL, ReplayPart, part_of
from simulator.core.scenario import Scenario
from simulator.core.verdict import DEFAULT_ADMISSION, MEETS, Admission, judge

SEED = 0
PURPOSE = "random-control"


@dataclass(frozen=True)
class Singles:
    """The complete models' first answers to the policy's requests, aligned with them (in `rid` order):
    `ok[m, i]` (passed and hard_check_ok) and `cost[m, i]` (Int64 nano-dollars) of model `models[m]` on
    request i."""

    models: list[str]
    ok: np.ndarray
    cost: np.ndarray

    def totals(self, model: int, rows: np.ndarray | None = None) -> tuple[int, int]:
        """(cost in nano-dollars, passes) of model index `model` on the requests at `rows` (all: None)."""
        cost, ok = (self.cost[model], self.ok[model]) if rows is None else (self.cost[model, rows], self.ok[model, rows])
        return int(cost.sum()), int(ok.sum())


def _singles(priced: list[tuple[str, pl.DataFrame]], requests: int) -> tuple[Singles, list[str]]:
    """The models (of `priced`, simulator.analyses.tables.priced_by_model) that answered all `requests`,
    and those left out for answering only some."""
    complete = [(model, part) for model, part in priced if part.height == requests]
    left_out = sorted(model for model, part in priced if part.height != requests)
    if not complete:
        return Singles([], np.zeros((0, requests), bool), np.zeros((0, requests), np.int64)), left_out
    return Singles([model for model, _ in complete], np.vstack([part["ok"].to_numpy() for _, part in complete]),
                   np.vstack([part["cost_nano_usd"].to_numpy() for _, part in complete])), left_out


def _rates_of(requests: int, cost_nano: int, passes: int) -> dict:
    """Requests, cost per request (from the integer nano-dollar sum) and pass rate."""
    if not requests:
        return {"requests": 0, "cost_per_request_usd": None, "pass_rate": None, "passes": 0}
    return {"requests": requests, "cost_per_request_usd": usd_per(cost_nano, requests),
            "pass_rate": passes / requests, "passes": passes}


def _rates(frame: pl.DataFrame, passed: str = "ok") -> dict:
    """`_rates_of` the rows of `frame` (`cost_nano_usd` and the boolean `passed`)."""
    if not frame.height:
        return _rates_of(0, 0, 0)
    return _rates_of(frame.height, int(frame["cost_nano_usd"].sum()), int(frame[passed].sum()))


def random_control(singles: Singles, request_ids: pl.Series, cost_per_request: float, seed: int = SEED) -> dict:
    """The keyed cheapest/most-expensive mixture whose expected cost per request is `cost_per_request` (USD).

    `request_ids`: the requests' ids, aligned with `singles`."""
    requests = len(request_ids)
    costs = {model: usd_per(singles.totals(index)[0], requests) for index, model in enumerate(singles.models)}
    low = min(singles.models, key=lambda model: (costs[model], model))
    high = max(singles.models, key=lambda model: (costs[model], model))
    spread = costs[high] - costs[low]
    weight = 0.0 if spread <= 0 else min(1.0, max(0.0, (cost_per_request - costs[low]) / spread))
    to_high = keyed_uniform(seed, PURPOSE, request_ids) < weight
    at_low, at_high = singles.models.index(low), singles.models.index(high)
    cost = int(np.where(to_high, singles.cost[at_high], singles.cost[at_low]).sum())
    passes = int(np.where(to_high, singles.ok[at_high], singles.ok[at_low]).sum())
    return {"cheapest": low, "most_expensive": high, "weight": weight, "seed": seed} | _rates_of(requests, cost, passes)


def _fit_split(fit: pl.DataFrame, models: list[str], target: float) -> tuple[dict[str, str], bool]:
    """Per slice the model of the cheapest assignment reaching `target` pass rate on `fit` (rows `rid`,
    `slice`, `model`, `ok`, `cost_nano_usd`): `_fit_table` of its sums per slice and model."""
    table = fit.group_by("slice", "model").agg(pl.col("ok").sum().cast(pl.Int64).alias("passes"),
                                               pl.col("cost_nano_usd").sum().alias("cost")).sort("slice", "model")
    return _fit_table(table, fit["rid"].n_unique(), target)


def _fit_table(table: pl.DataFrame, requests: int, target: float) -> tuple[dict[str, str], bool]:
    """Per slice the model of the cheapest assignment reaching `target` pass rate on `requests` requests
    (exact DP over integer nano-dollar costs). `table`: `slice`, `model`, `passes`, `cost` (the sums of a
    model's answers to the slice's requests), sorted by slice and model."""
    slices = table["slice"].unique().sort().to_list()
    need = math.ceil(target * requests - 1e-9)
    unreachable = np.iinfo(np.int64).max // 4  # above any sum of costs; stays above after adding one more
    best = np.full(need + 1, unreachable, dtype=np.int64)
    best[0] = 0
    choices = []
    for name in slices:
        rows = table.filter(pl.col("slice") == name)
        gains, tails = rows["passes"].to_list(), []
        # The cheapest cost of each count after this slice, and the model (index) reaching it: models are
        # taken in name order and replace the cheapest only when strictly cheaper, so ties go to the first.
        cheapest = np.full(need + 1, unreachable, dtype=np.int64)
        pick = np.zeros(need + 1, dtype=np.int64)
        for model, (passes, cost) in enumerate(zip(gains, rows["cost"].to_list())):
            # count j reached with this model: from j - passes below `need`; `need` (passes counted up to it)
            # from the cheapest count `tail` at or above need - passes
            if passes < need:
                reached = np.minimum(best[:need - passes] + cost, unreachable)
                cheaper = reached < cheapest[passes:need]
                cheapest[passes:need][cheaper] = reached[cheaper]
                pick[passes:need][cheaper] = model
            low = max(need - passes, 0)
            tail = int(np.argmin(best[low:])) + low
            if min(best[tail] + cost, unreachable) < cheapest[need]:
                cheapest[need], pick[need] = min(best[tail] + cost, unreachable), model
            tails.append(tail)
        best = cheapest
        choices.append((rows["model"].to_list(), pick, gains, tails))
    reachable = bool(best[need] < unreachable)
    if not reachable:  # nothing reaches the target: the most passing model of each slice
        by_slice = table.sort("slice", "passes", "cost", "model", descending=[False, True, False, False])
        return dict(by_slice.unique("slice", keep="first", maintain_order=True).select("slice", "model").iter_rows()), False
    assignment, at = {}, need
    for name, (names, pick, gains, tails) in zip(reversed(slices), reversed(choices)):
        chosen = pick[at]
        assignment[name] = names[chosen]
        at = tails[chosen] if at == need else at - gains[chosen]
    return dict(sorted(assignment.items())), reachable


def fixed_split(singles: Singles, decisions: pl.DataFrame) -> dict:
    """The best fixed per-slice split fitted on the first half of the window, scored on the second.
    `decisions`: the policy's requests (`ts`, `slice`, `passed`, `cost_nano_usd`), aligned with `singles`."""
    ts = decisions["ts"]
    midpoint = ts.min() + (ts.max() - ts.min()) / 2
    first = (ts < midpoint).to_numpy()
    policy_fit, policy_test = decisions.filter(first), decisions.filter(~first)
    if policy_fit.is_empty() or policy_test.is_empty():
        return {"midpoint": midpoint.isoformat(), "assignment": {}, "reachable": False, "scored": None,
                "policy": None}
    target = policy_fit["passed"].cast(pl.Float64).mean()
    fit_rows, test_rows = np.flatnonzero(first), np.flatnonzero(~first)
    models = singles.models
    sums = (pl.DataFrame({"slice": policy_fit["slice"],
                          **{f"passes.{m}": singles.ok[m, fit_rows] for m in range(len(models))},
                          **{f"cost.{m}": singles.cost[m, fit_rows] for m in range(len(models))}})
            .group_by("slice").agg(pl.all().sum().cast(pl.Int64)).sort("slice"))
    table = pl.concat([sums.select("slice", pl.lit(model).alias("model"), pl.col(f"passes.{m}").alias("passes"),
                                   pl.col(f"cost.{m}").alias("cost")) for m, model in enumerate(models)]
                      ).sort("slice", "model")
    assignment, reachable = _fit_table(table, len(fit_rows), target)
    # ties: the first model by name; every model answered the same requests, so passes rank as pass rates do
    fallback = min(range(len(models)), key=lambda m: (-int(singles.ok[m, fit_rows].sum()), models[m]))
    chosen = policy_test["slice"].replace_strict({name: models.index(model) for name, model in assignment.items()},
                                                 default=fallback, return_dtype=pl.Int64).to_numpy()
    cost = int(singles.cost[chosen, test_rows].sum())
    passes = int(singles.ok[chosen, test_rows].sum())
    return {"midpoint": midpoint.isoformat(), "target_pass_rate": target, "assignment": assignment,
            "unseen_slices_to": models[fallback], "reachable": reachable,
            "scored": _rates_of(len(test_rows), cost, passes), "policy": _rates(policy_test, "passed")}


def beats(policy: dict, control: dict, admission: Admission) -> bool:
    """Whether `policy` (`passes`, `requests`, `pass_rate`) beats `control`'s pass rate by the admission rule:
    it meets the control's pass rate as a bar, and is above it."""
    verdict = judge(policy["passes"], policy["requests"], control["pass_rate"], admission)
    return verdict["state"] == MEETS and policy["pass_rate"] > control["pass_rate"]


def controls(result: Replay, data: Dataset, sheet: PriceSheet | None, seed: int = SEED) -> dict | None:
    """`controls_of` one replay in one piece, from the requests' columns of its part (the one its summary was
    built from: simulator.core.results.part_of)."""
    return controls_of_part(result.scenario, part_of(result, data), data, sheet, seed)


def controls_of_part(scenario: Scenario, part: ReplayPart, data: Dataset, sheet: PriceSheet | None,
                     seed: int = SEED) -> dict | None:
    """`controls_of` a replay's (merged) part; `skipped` when it holds more than CONTROL_REQUESTS replayed
    requests, whose columns it then does not keep."""
    requests = part.requests_on(data)
    if requests is None:
        return _skipped(part.replayed)
    return controls_of(scenario, requests, len(part.routed_to) > 1, data, sheet, seed, called=part.routed_to)


def _skipped(replayed: int) -> dict:
    return {"skipped": f"{counted(replayed, 'request')} replayed: the controls are computed up to "
                       f"{CONTROL_REQUESTS:,}; replay a window or a sample for them"}


def router_of(calls: pl.DataFrame) -> bool:
    """Whether a replay's plan and retry calls (`calls`) went to more than one model."""
    return calls.filter(pl.col("kind").is_in(MODEL_CALLS))["model"].n_unique() > 1


def tiers_called(scenario: Scenario, called: frozenset[str] | None) -> set[str]:
    """The service tiers the policy's calls ran on: the tiers of the steps and the retry whose model the
    replay called (`called`: its plan and retry calls' models). A policy names a tier whose calls never ran
    (a priority retry no request needed): naming it beside the controls would claim a mix that never
    happened. A model the policy puts on two tiers counts for both (the calls do not record which ran). With
    `called` None, every tier the policy names."""
    policy = scenario.policy
    pairs = {(model, step.service_tier) for _, steps in policy.plans() for step in steps for model in step.calls}
    if policy.retry is not None:
        pairs |= {(model, policy.retry.service_tier) for model in policy.retry.to}
    used = {tier for model, tier in pairs if called is None or model in called}
    return used or policy.service_tiers()


def controls_of(scenario: Scenario, decisions: pl.DataFrame, router: bool, data: Dataset, sheet: PriceSheet | None,
                seed: int = SEED, *, called: frozenset[str] | None = None) -> dict | None:
    """Both controls for a policy's replayed requests and whether the policy beats them; None when no single
    model answered every replayed request. Judged by the scenario's admission rule (default: the Wilson
    lower bound).

    `decisions`: one row per replayed request with `request_id`, `rid` (any unique key), `ts`, `slice`,
    `passed` and `cost_nano_usd` (a replay's decisions, or those columns gathered from its shards or
    chunks), and optionally `LAYOUT_ROW`, the request's row id in `data`'s layout, to read the answers by
    position (simulator.core.calls.with_layout_rows); `router`: whether the policy called more than one model (`router_of`). Above CONTROL_REQUESTS
    replayed requests: only `skipped`, saying why. `called`: the models its plan and retry calls went to (the
    part's `routed_to`), which decides the service tiers it ran on (tiers_called)."""
    if decisions.height > CONTROL_REQUESTS:
        return _skipped(decisions.height)
    if not decisions["rid"].is_sorted():
        decisions = decisions.sort("rid")
    # The controls run on the policy's service tier when all its calls share one (a batch policy against batch
    # controls: at standard prices they would cost twice the policy's); a mix is priced on standard. The tiers
    # its calls ran on, not every tier it names (tiers_called).
    tiers = tiers_called(scenario, called)
    tier = next(iter(tiers)) if len(tiers) == 1 else SERVICE_STANDARD
    priced, _, _ = priced_by_model(decisions.select("request_id", "rid", "ts", "slice",
                                                    *([LAYOUT_ROW] if LAYOUT_ROW in decisions.columns else [])),
                                   data, sheet, extras=(), service_tier=tier)  # cost and `ok` only
    singles, left_out = _singles(priced, decisions.height)
    models = singles.models
    if not models:
        return None
    admission = scenario.admission or DEFAULT_ADMISSION
    mine = _rates(decisions, "passed")
    random = random_control(singles, decisions["request_id"], mine["cost_per_request_usd"], seed)
    split = fixed_split(singles, decisions)
    beaten_by = []
    if router and not beats(mine, random, admission):
        beaten_by.append("random")
    scored, second_half = split["scored"], split["policy"]
    if (router and scored and scored["requests"]
            and scored["cost_per_request_usd"] <= second_half["cost_per_request_usd"]
            and not beats(second_half, scored, admission)):
        beaten_by.append("fixed_split")
    return {"models": models, "left_out": left_out, "router": router, "service_tier": tier,
            "policy_service_tiers": sorted(tiers), "rule": admission.rule,
            "confidence": admission.confidence, "random": random, "fixed_split": split, "no_better_than": beaten_by}


def set_beside(summary: dict, replay: Replay | None, data: Dataset, sheet: PriceSheet | None) -> None:
    """Adds `capacity` (simulator.analyses.capacity) and `controls` to an exact or partial `summary` of
    `replay`; a design-weighted estimate from a shadow sample gets neither (both need the whole window's
    answers)."""
    from simulator.analyses.capacity import capacity

    if summary.get("kind") not in (EXACT, PARTIAL) or replay is None:
        return
    summary["capacity"] = capacity(replay, data)
    summary["controls"] = controls(replay, data, sheet)
