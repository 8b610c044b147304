"""Honest controls: the random control at equal cost and the best fixed split, checked by hand."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math

import numpy as np
import polars as pl
import pytest
import yaml

from simulator.analyses.controls import _fit_split, beats, controls
from simulator.core.draws import keyed_uniform
from simulator.core.runner import Inputs, run_scenario
from simulator.core.scenario import load_scenario
from simulator.core.verdict import Admission
from tests.conftest import OUTCOME_SCHEMA, outcome_row

SMALL, BIG = 0.0012, 0.012  # 1,000 input and 100 output tokens at the tiny world's prices


def _replay(world, **overrides):
    scenario = load_scenario(world.scenario(**overrides))
    inputs = Inputs()
    outcome = run_scenario(scenario, inputs)
    return controls(outcome.replay, inputs.data(scenario), inputs.prices(scenario)), outcome.summary


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
    w = (0.0072 - 0.0012) / (0.012 - 0.0012) = 5/9: a request goes to big when its keyed draw is below w.
    big passes every request and small none, so the control passes exactly the requests sent to big."""
    found, summary = _replay(unhelpful_cascade)
    assert summary["cost_per_request_usd"] == pytest.approx(0.0072) and summary["pass_rate"] == 0.5
    random = found["random"]
    assert (random["cheapest"], random["most_expensive"]) == ("small", "big")
    assert random["weight"] == pytest.approx(5 / 9)
    to_big = int((keyed_uniform(0, "random-control", list("abcd")) < 5 / 9).sum())
    assert random["pass_rate"] == to_big / 4
    assert random["cost_per_request_usd"] == pytest.approx((to_big * BIG + (4 - to_big) * SMALL) / 4)
    # Four requests: the cascade's 50% cannot be told apart from the control by the Wilson lower bound.
    assert found["router"] and found["no_better_than"] == ["random"]


def test_a_policy_on_one_service_tier_has_its_controls_priced_on_that_tier(unhelpful_cascade, cli):
    """The same cascade on batch, whose prices are a quarter of standard here: small 0.0003 and big 0.003 a
    request, so the cascade costs (2 x 0.0003 + 2 x 0.0033) / 4 = 0.0018 and w = (0.0018 - 0.0003) /
    (0.003 - 0.0003) = 5/9, as on standard. At standard prices the controls would cost four times the policy."""
    prices = yaml.safe_load(unhelpful_cascade.prices.read_text())
    for entries in prices["models"].values():
        for entry in entries:
            entry["batch"] = {"input": entry["input"] / 4, "output": entry["output"] / 4}
    unhelpful_cascade.prices.write_text(yaml.safe_dump(prices))
    policy = {"default": {"service_tier": "batch", "cascade": [{"model": "small", "accept": "confidence >= 0.7"},
                                                               {"model": "big"}]}}
    found, summary = _replay(unhelpful_cascade, policy=policy)
    assert summary["cost_per_request_usd"] == pytest.approx(0.0018)
    assert (found["service_tier"], found["policy_service_tiers"]) == ("batch", ["batch"])
    random = found["random"]
    assert random["weight"] == pytest.approx(5 / 9)
    to_big = int((keyed_uniform(0, "random-control", list("abcd")) < 5 / 9).sum())
    assert random["cost_per_request_usd"] == pytest.approx((to_big * BIG + (4 - to_big) * SMALL) / 16)
    # a policy mixing tiers has its controls priced on standard, and says which tiers it mixes
    mixed = {"default": {"cascade": [{"model": "small", "accept": "confidence >= 0.7", "service_tier": "batch"},
                                     {"model": "big"}]}}
    found, _ = _replay(unhelpful_cascade, policy=mixed)
    assert (found["service_tier"], found["policy_service_tiers"]) == ("standard", ["batch", "standard"])
    assert found["random"]["cheapest"] == "small"
    shown = cli("replay", unhelpful_cascade.scenario("mixed", policy=mixed), "--rule", "point")
    assert "mixed: controls priced on standard (the policy mixes batch, standard)" in shown.out


def test_random_control_draws_are_keyed_by_request_id(unhelpful_cascade):
    """Each request's draw is its own: a request keeps its model whatever else is in the window."""
    draws = keyed_uniform(0, "random-control", list("abcd"))
    assert list(keyed_uniform(0, "random-control", ["c", "a"])) == [draws[2], draws[0]]


def test_beating_a_control_goes_through_the_admission_rule():
    """9 of 10 against a control at 80%: the 95% Wilson interval of 9/10 is about [0.60, 0.98], so by the
    lower bound the policy does not beat it; by the point rule (0.9 >= 0.8, and above) it does. 95 of 100
    has a lower bound of about 0.89 and beats it either way; a tie never beats."""
    lower_bound, point = Admission(), Admission(rule="point")
    control = {"pass_rate": 0.8}
    ninety = {"passes": 9, "requests": 10, "pass_rate": 0.9}
    assert not beats(ninety, control, lower_bound) and beats(ninety, control, point)
    many = {"passes": 95, "requests": 100, "pass_rate": 0.95}
    assert beats(many, control, lower_bound) and beats(many, control, point)
    assert not beats({"passes": 8, "requests": 10, "pass_rate": 0.8}, control, point)


def test_fixed_split_is_fitted_on_the_first_half_and_scored_on_the_second(unhelpful_cascade):
    """Midpoint 02:30: the cascade passes neither a nor b, so the target is 0% and small (cheapest) is the
    split. Scored on c and d: small passes none at 0.0012; the cascade passes both at 0.0132."""
    split = _replay(unhelpful_cascade)[0]["fixed_split"]
    assert split["midpoint"] == "2026-11-16T02:30:00+00:00" and split["target_pass_rate"] == 0
    assert split["assignment"] == {"faq": "small"}
    assert split["scored"] == {"requests": 2, "cost_per_request_usd": pytest.approx(SMALL), "pass_rate": 0.0,
                               "passes": 0}
    assert split["policy"] == {"requests": 2, "cost_per_request_usd": pytest.approx(SMALL + BIG), "pass_rate": 1.0,
                               "passes": 2}


def test_a_single_model_policy_is_not_flagged(unhelpful_cascade):
    found, _ = _replay(unhelpful_cascade, policy={"default": {"use": "small"}})
    assert not found["router"] and found["no_better_than"] == []
    assert found["random"]["weight"] == 0 and found["random"]["pass_rate"] == 0


def test_fixed_split_spends_where_passes_are_cheapest():
    """Target 3 of 4 passes (costs in nano-dollars). faq: cheap passes 1 of 2 for 10, dear passes 2 for
    100. code: cheap passes 0 for 10, dear passes 2 for 40. Dear on code and cheap on faq reaches 3 passes
    for 50; the other ways cost more (140 for dear everywhere) or fall short."""
    rows = [(0, "faq", "cheap", True, 5), (1, "faq", "cheap", False, 5), (0, "faq", "dear", True, 50),
            (1, "faq", "dear", True, 50), (2, "code", "cheap", False, 5), (3, "code", "cheap", False, 5),
            (2, "code", "dear", True, 20), (3, "code", "dear", True, 20)]
    fit = pl.DataFrame(rows, schema=["rid", "slice", "model", "ok", "cost_nano_usd"], orient="row")
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
                rows += [(rid, name, model, bool(rng.random() < 0.3 + 0.2 * k), int(rng.integers(1, 5) * (k + 1)))
                         for k, model in enumerate(models)]
                rid += 1
        fit = pl.DataFrame(rows, schema=["rid", "slice", "model", "ok", "cost_nano_usd"], orient="row")
        target = float(rng.random())
        need = math.ceil(target * rid - 1e-9)

        def totals(assignment):
            chosen = fit.filter(pl.col("model") == pl.col("slice").replace_strict(assignment))
            return chosen["ok"].sum(), chosen["cost_nano_usd"].sum()

        feasible = [cost for combo in itertools.product(models, repeat=len(slices))
                    for passes, cost in [totals(dict(zip(slices, combo)))] if passes >= need]
        assignment, reachable = _fit_split(fit, models, target)
        assert reachable == bool(feasible)
        if feasible:
            passes, cost = totals(assignment)
            assert passes >= need and cost == min(feasible)


def test_replay_prints_and_returns_the_controls(cli, unhelpful_cascade):
    path = unhelpful_cascade.scenario()
    result = cli("replay", path)
    assert result.code == 0, result.err
    assert "Honest controls" in result.out and "no: random" in result.out


def test_the_report_shows_the_controls_and_flags_a_policy_no_better_than_its_random_control(cli, unhelpful_cascade):
    # The cascade is no better than its random control (see the first test): the report's controls table
    # and its frontier both say so.
    path = unhelpful_cascade.scenario()
    flagship = unhelpful_cascade.scenario("big-only", policy={"default": {"use": "big"}})
    out = unhelpful_cascade.folder / "report.html"
    result = cli("report", path, flagship, "-o", out)
    assert result.code == 0, result.err
    html = out.read_text()
    controls_row = html.split('id="controls-table"')[1].split("</table>")[0]
    assert "✗ no better than: random" in controls_row and "– (a single model)" in controls_row
    frontier = html.split('id="frontier-table"')[1].split("</table>")[0]
    assert frontier.count("✗ no better") == 1


def test_controls_above_their_request_limit_are_skipped_and_said_so(cli, unhelpful_cascade, monkeypatch):
    import simulator.analyses.controls as module
    import simulator.core.results as results

    monkeypatch.setattr(module, "CONTROL_REQUESTS", 3)  # the world replays 4 requests
    monkeypatch.setattr(results, "CONTROL_REQUESTS", 3)  # and its part keeps no requests' columns
    found, _ = _replay(unhelpful_cascade)
    assert set(found) == {"skipped"} and "computed up to 3" in found["skipped"]
    result = cli("replay", unhelpful_cascade.scenario(), "--json")
    assert result.code == 0, result.err
    assert "computed up to 3" in json.loads(result.out)[0]["controls"]["skipped"]
    assert cli("replay", unhelpful_cascade.scenario()).code == 0  # the table says it too


def test_the_tiers_judged_are_those_the_policy_s_calls_ran_on(unhelpful_cascade, cli):
    """big on standard, a retry to small on priority when big's hard check fails. No check fails: every call
    ran on standard, and nothing says the policy mixes tiers. Once big fails a's check, the retry runs."""
    prices = yaml.safe_load(unhelpful_cascade.prices.read_text())
    for entries in prices["models"].values():
        for entry in entries:
            entry["priority"] = {"input": entry["input"] * 2, "output": entry["output"] * 2}
    unhelpful_cascade.prices.write_text(yaml.safe_dump(prices))
    policy = {"default": {"use": "big"},
              "retry": {"when": "NOT hard_check_ok", "to": ["small"], "service_tier": "priority"}}
    found, summary = _replay(unhelpful_cascade, policy=policy)
    assert summary["retry_rate"] == 0
    assert (found["service_tier"], found["policy_service_tiers"]) == ("standard", ["standard"])
    shown = cli("replay", unhelpful_cascade.scenario("unretried", policy=policy), "--rule", "point")
    assert shown.code == 0, shown.err
    assert "mixes" not in shown.out and "controls priced on" not in shown.out
    data = unhelpful_cascade.data
    outcomes = pl.read_parquet(data / "outcomes.parquet").with_columns(
        pl.when((pl.col("model") == "big") & (pl.col("request_id") == "a")).then(False)
        .otherwise(pl.col("hard_check_ok")).alias("hard_check_ok"))
    outcomes.write_parquet(data / "outcomes.parquet")
    found, summary = _replay(unhelpful_cascade, policy=policy)
    assert summary["retry_rate"] > 0
    assert (found["service_tier"], found["policy_service_tiers"]) == ("standard", ["priority", "standard"])
