"""Honest controls: what a policy must beat before its routing earns credit.

Two controls are set beside every policy, both built from single models' first answers (`sample` 0) to the
policy's own requests, priced like a replay prices a call:

- **Random control at equal cost** (the random router of the routing literature): every request goes to
  the most expensive single model with probability w and to the cheapest otherwise, with
  w = (c − c_lo) / (c_hi − c_lo) clipped to 0..1, so its expected cost per request equals the policy's c
  (c_lo, c_hi: the cheapest and most expensive models' cost per request). The draw is seeded: exactly
  round(w × n) of the n requests, chosen by a seeded permutation, go to the expensive model.
- **Best fixed split**: one single model per slice, the cheapest such assignment whose pass rate reaches
  the policy's own pass rate, fitted on the first half of the window (requests before the midpoint of the
  first and last request's time) and scored on the second half. The fit is exact (a dynamic programme
  over passes, the multiple-choice knapsack); a slice first seen in the second half goes to the model with
  the highest pass rate in the first half.

Only models that answered every replayed request take part. A policy that calls more than one model is
flagged when a control does at least as well: the random control's pass rate reaches the policy's, or
the fixed split reaches the policy's second-half pass rate at no more cost per request. The comparison
is of observed rates, without an interval.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from simulator.analyses.tables import priced_answers
from simulator.core.contract import Dataset
from simulator.core.engine import Replay
from simulator.core.prices import PriceSheet

SEED = 0


def _complete_models(answers: pl.DataFrame, requests: int) -> tuple[list[str], list[str]]:
    counts = dict(answers.group_by("model").len().iter_rows())
    complete = sorted(model for model, count in counts.items() if count == requests)
    return complete, sorted(set(counts) - set(complete))


def _rates(frame: pl.DataFrame) -> dict:
    return {"requests": frame.height, "cost_per_request_usd": frame["cost_usd"].mean() if frame.height else None,
            "pass_rate": frame["ok"].cast(pl.Float64).mean() if frame.height else None}


def random_control(answers: pl.DataFrame, models: list[str], cost_per_request: float, seed: int = SEED) -> dict:
    """The seeded cheapest/most-expensive mixture whose expected cost per request is `cost_per_request`."""
    costs = {model: answers.filter(pl.col("model") == model)["cost_usd"].mean() for model in models}
    low = min(models, key=lambda model: (costs[model], model))
    high = max(models, key=lambda model: (costs[model], model))
    spread = costs[high] - costs[low]
    weight = 0.0 if spread <= 0 else min(1.0, max(0.0, (cost_per_request - costs[low]) / spread))
    rids = answers["rid"].unique().sort().to_numpy()
    chosen = np.zeros(rids.size, dtype=bool)
    chosen[np.random.default_rng(seed).permutation(rids.size)[:round(weight * rids.size)]] = True
    picks = pl.DataFrame({"rid": rids, "model": np.where(chosen, high, low)})
    mixed = answers.join(picks, on=["rid", "model"], how="semi").sort("rid")
    return {"cheapest": low, "most_expensive": high, "weight": weight, "seed": seed} | _rates(mixed)


def _fit_split(fit: pl.DataFrame, models: list[str], target: float) -> tuple[dict[str, str], bool]:
    """Per slice the model of the cheapest assignment reaching `target` pass rate on `fit` (exact DP)."""
    table = fit.group_by("slice", "model").agg(pl.col("ok").sum().cast(pl.Int64).alias("passes"),
                                               pl.col("cost_usd").sum().alias("cost")).sort("slice", "model")
    slices = table["slice"].unique().sort().to_list()
    need = math.ceil(target * fit["rid"].n_unique() - 1e-9)
    best = np.full(need + 1, np.inf)
    best[0] = 0.0
    choices = []
    for name in slices:
        rows = table.filter(pl.col("slice") == name)
        candidates, previous = [], []
        for passes, cost in rows.select("passes", "cost").iter_rows():
            reached = np.full(need + 1, np.inf)
            came_from = np.full(need + 1, -1)
            low = max(need - passes, 0)  # every count from `low` on reaches `need` with this model
            reached[passes:need] = best[:need - passes] + cost if passes < need else reached[passes:need]
            came_from[passes:need] = np.arange(0, max(need - passes, 0))
            tail = int(np.argmin(best[low:])) + low
            reached[need], came_from[need] = best[tail] + cost, tail
            candidates.append(reached)
            previous.append(came_from)
        stacked = np.vstack(candidates)
        pick = np.argmin(stacked, axis=0)  # ties: the first model by name
        best = stacked[pick, np.arange(need + 1)]
        choices.append((rows["model"].to_list(), pick, np.vstack(previous)[pick, np.arange(need + 1)]))
    reachable = bool(np.isfinite(best[need]))
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
    policy = {"requests": policy_test.height, "cost_per_request_usd": policy_test["cost_usd"].mean(),
              "pass_rate": policy_test["passed"].cast(pl.Float64).mean()}
    return {"midpoint": midpoint.isoformat(), "target_pass_rate": target, "assignment": assignment,
            "unseen_slices_to": fallback, "reachable": reachable, "scored": _rates(routed.sort("rid")),
            "policy": policy}


def controls(result: Replay, data: Dataset, sheet: PriceSheet | None, seed: int = SEED) -> dict | None:
    """Both controls for one replay and whether the policy beats them; None when no single model answered
    every replayed request."""
    decisions = result.decisions
    answers, _ = priced_answers(decisions.select("request_id", "rid", "ts", "slice"), data, sheet)
    models, left_out = _complete_models(answers, decisions.height)
    if not models:
        return None
    answers = answers.filter(pl.col("model").is_in(models))
    cost, pass_rate = decisions["cost_usd"].mean(), decisions["passed"].cast(pl.Float64).mean()
    random = random_control(answers, models, cost, seed)
    split = fixed_split(answers, decisions, models)
    router = result.calls.filter(pl.col("kind").is_in(["step", "retry"]))["model"].n_unique() > 1
    beaten_by = []
    if router and random["pass_rate"] >= pass_rate:
        beaten_by.append("random")
    scored, mine = split["scored"], split["policy"]
    if router and scored and scored["requests"] and (scored["pass_rate"] >= mine["pass_rate"]
                                                     and scored["cost_per_request_usd"] <= mine["cost_per_request_usd"]):
        beaten_by.append("fixed_split")
    return {"models": models, "left_out": left_out, "router": router, "random": random, "fixed_split": split,
            "no_better_than": beaten_by}
