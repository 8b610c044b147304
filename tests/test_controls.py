"""Honest controls: the random control at equal cost and the best fixed split, checked by hand."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import polars as pl
import pytest

from simulator.analyses.controls import _fit_split, controls
from simulator.core.runner import Inputs, run_scenario
from simulator.core.scenario import load_scenario
from tests.conftest import OUTCOME_SCHEMA, outcome_row

SMALL, BIG = 0.0012, 0.012  # 1,000 input and 100 output tokens at the tiny world's prices


def _replay(world, **overrides):
    scenario = load_scenario(world.scenario(**overrides))
    inputs = Inputs()
    outcome = run_scenario(scenario, inputs)
    return controls(outcome.replay, inputs.data(scenario.data), inputs.prices(scenario.prices)), outcome.summary


@pytest.fixture
def unhelpful_cascade(world):
    """Four faq requests an hour apart. small fails every one; big passes every one. The cascade keeps
    small's confident (and wrong) answers on a and b and escalates c and d."""
    traffic = pl.DataFrame({"request_id": list("abcd"), "slice": ["faq"] * 4, "input_tokens": [1000] * 4,
                            "ts": [dt.datetime(2026, 11, 16, hour, tzinfo=dt.UTC) for hour in (1, 2, 3, 4)]})
    rows = [outcome_row(r, "small", passed=False, confidence=0.9 if r in "ab" else 0.5) for r in "abcd"]
    rows += [outcome_row(r, "big") for r in "abcd"]
    world.write_data(traffic, pl.DataFrame(rows, schema=OUTCOME_SCHEMA))
    return world


def test_random_control_at_equal_cost_matches_a_policy_that_routes_no_better(unhelpful_cascade):
    """The cascade costs (2 x 0.0012 + 2 x 0.0132) / 4 = 0.0072 a request and passes c and d: 50%.
    w = (0.0072 - 0.0012) / (0.012 - 0.0012) = 5/9, so round(5/9 x 4) = 2 requests go to big: 50% too."""
    found, summary = _replay(unhelpful_cascade)
    assert summary["cost_per_request_usd"] == pytest.approx(0.0072) and summary["pass_rate"] == 0.5
    random = found["random"]
    assert (random["cheapest"], random["most_expensive"]) == ("small", "big")
    assert random["weight"] == pytest.approx(5 / 9)
    assert random["pass_rate"] == 0.5 and random["cost_per_request_usd"] == pytest.approx((2 * SMALL + 2 * BIG) / 4)
    assert found["router"] and found["no_better_than"] == ["random"]


def test_fixed_split_is_fitted_on_the_first_half_and_scored_on_the_second(unhelpful_cascade):
    """Midpoint 02:30: the cascade passes neither a nor b, so the target is 0% and small (cheapest) is the
    split. Scored on c and d: small passes none at 0.0012; the cascade passes both at 0.0132."""
    split = _replay(unhelpful_cascade)[0]["fixed_split"]
    assert split["midpoint"] == "2026-11-16T02:30:00+00:00" and split["target_pass_rate"] == 0
    assert split["assignment"] == {"faq": "small"}
    assert split["scored"] == {"requests": 2, "cost_per_request_usd": pytest.approx(SMALL), "pass_rate": 0.0}
    assert split["policy"] == {"requests": 2, "cost_per_request_usd": pytest.approx(SMALL + BIG), "pass_rate": 1.0}


def test_a_single_model_policy_is_not_flagged(unhelpful_cascade):
    found, _ = _replay(unhelpful_cascade, policy={"default": {"use": "small"}})
    assert not found["router"] and found["no_better_than"] == []
    assert found["random"]["weight"] == 0 and found["random"]["pass_rate"] == 0


def test_fixed_split_spends_where_passes_are_cheapest():
    """Target 3 of 4 passes. faq: cheap passes 1 of 2 at $1, dear passes 2 at $10. code: cheap passes 0 at
    $1, dear passes 2 at $4. Dear on code and cheap on faq reaches 3 passes for $5; the other ways cost
    more ($14 for dear everywhere) or fall short."""
    rows = [(0, "faq", "cheap", True, 0.5), (1, "faq", "cheap", False, 0.5), (0, "faq", "dear", True, 5.0),
            (1, "faq", "dear", True, 5.0), (2, "code", "cheap", False, 0.5), (3, "code", "cheap", False, 0.5),
            (2, "code", "dear", True, 2.0), (3, "code", "dear", True, 2.0)]
    fit = pl.DataFrame(rows, schema=["rid", "slice", "model", "ok", "cost_usd"], orient="row")
    assert _fit_split(fit, ["cheap", "dear"], 0.75) == ({"code": "dear", "faq": "cheap"}, True)
    assert _fit_split(fit, ["cheap", "dear"], 1.0) == ({"code": "dear", "faq": "dear"}, True)


def test_fixed_split_is_the_cheapest_assignment_on_random_tables():
    """The dynamic programme against every assignment, on 60 seeded random tables."""
    rng = np.random.default_rng(7)
    for _ in range(60):
        slices, models = [f"s{i}" for i in range(rng.integers(1, 4))], [f"m{i}" for i in range(rng.integers(1, 4))]
        rows, rid = [], 0
        for name in slices:
            for _ in range(rng.integers(1, 5)):
                rows += [(rid, name, model, bool(rng.random() < 0.3 + 0.2 * k), float(rng.integers(1, 5) * (k + 1)))
                         for k, model in enumerate(models)]
                rid += 1
        fit = pl.DataFrame(rows, schema=["rid", "slice", "model", "ok", "cost_usd"], orient="row")
        target = float(rng.random())
        need = math.ceil(target * rid - 1e-9)

        def totals(assignment):
            chosen = fit.filter(pl.col("model") == pl.col("slice").replace_strict(assignment))
            return chosen["ok"].sum(), chosen["cost_usd"].sum()

        feasible = [cost for combo in itertools.product(models, repeat=len(slices))
                    for passes, cost in [totals(dict(zip(slices, combo)))] if passes >= need]
        assignment, reachable = _fit_split(fit, models, target)
        assert reachable == bool(feasible)
        if feasible:
            passes, cost = totals(assignment)
            assert passes >= need and cost == pytest.approx(min(feasible))


def test_replay_prints_and_returns_the_controls(cli, unhelpful_cascade):
    path = unhelpful_cascade.scenario()
    result = cli("replay", path)
    assert result.code == 0, result.err
    assert "Honest controls" in result.out and "no: random" in result.out
