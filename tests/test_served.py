"""Served-only production logs: the generator's served and shadow modes, the contract's optional columns,
`routesim coverage`, and design-weighted and off-policy estimates on worlds small enough to check by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from simulator.analyses.estimates import StratifiedSample, sample_estimates
from simulator.analyses.offpolicy import Logged, diagnostics, estimate
from simulator.core.contract import validate_frames
from simulator.core.paths import PROJECT
from simulator.core.sampling import stratified_sample
from simulator.datasets.generate import MODELS, generate_week
from simulator.datasets.served import SKEWED_EASY, SKEWED_HARD, served_week
from tests.conftest import OUTCOME_SCHEMA, outcome_row, tiny_outcomes, tiny_traffic

REQUESTS = 2000


@pytest.fixture(scope="module")
def skewed_shadow():
    return served_week(REQUESTS, 2, 5, "skewed", shadow_rate=0.2)


def test_a_served_log_keeps_only_the_served_models_first_answer(skewed_shadow):
    (traffic, _), _ = skewed_shadow
    (_, outcomes), (full_traffic, full_outcomes) = served_week(REQUESTS, 2, 5, "skewed")
    assert outcomes.height == traffic.height == REQUESTS
    served = outcomes.join(traffic.select("request_id", "served_model"), on="request_id")
    assert (served["model"] == served["served_model"]).all() and (served["sample"] == 0).all()
    # The kept answers are the full matrix's answers, unchanged; the truth is the generated week itself.
    truth = full_outcomes.join(served.select("request_id", "model"), on=["request_id", "model"], how="semi")
    assert truth.filter(pl.col("sample") == 0).sort("request_id").equals(outcomes.sort("request_id"))
    chunks = list(generate_week(REQUESTS, 2, 5))
    assert full_outcomes.equals(pl.concat([o for _, o in chunks]))


def test_the_skewed_router_records_its_whole_distribution(skewed_shadow):
    (traffic, _), _ = skewed_shadow
    columns = [f"propensity_{model}" for model in MODELS]
    easy = traffic.filter(pl.col("slice") == "faq").select(columns).unique().rows()
    hard = traffic.filter(pl.col("slice") == "contract_analysis").select(columns).unique().rows()
    assert easy == [SKEWED_EASY] and hard == [SKEWED_HARD]
    chosen = traffic.select(pl.concat_list(columns).list.get(
        pl.col("served_model").replace_strict(list(MODELS), list(range(len(MODELS))))).alias("p"), "logging_propensity")
    assert chosen["p"].equals(chosen["logging_propensity"], check_names=False)


def test_a_deterministic_router_sends_each_slice_to_one_model():
    (traffic, _), _ = served_week(500, 1, 3, "by-slice")
    assert (traffic["logging_propensity"] == 1.0).all()
    assert traffic.group_by("slice").agg(pl.col("served_model").n_unique().alias("n"))["n"].max() == 1


def test_a_shadow_sample_draws_each_slice_at_its_known_rate(skewed_shadow):
    (traffic, outcomes), _ = skewed_shadow
    drawn = outcomes.filter(pl.col("inclusion_probability").is_not_null())
    per_request = drawn.group_by("request_id").agg(pl.col("model").n_unique().alias("models"),
                                                   pl.col("inclusion_probability").first().alias("pi"))
    assert (per_request["models"] == len(MODELS)).all()
    per_slice = (traffic.join(per_request, on="request_id", how="left").group_by("slice")
                 .agg(pl.len().alias("N"), pl.col("pi").count().alias("n"), pl.col("pi").drop_nulls().unique().alias("pi")))
    for slice_name, population, n, probabilities in per_slice.iter_rows():
        assert n == max(1, round(0.2 * population)), slice_name
        assert probabilities == [n / population]
    assert validate_frames(traffic, outcomes).ok


def test_stratified_sample_takes_exactly_the_asked_sizes():
    strata = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2])
    drawn, probability = stratified_sample(strata, np.array([2, 3, 5]), np.random.default_rng(0).random(len(strata)))
    assert np.bincount(strata[drawn]).tolist() == [2, 3, 1]
    assert probability.tolist() == [0.5] * 4 + [0.5] * 6 + [1.0]


def test_a_requests_router_choice_and_shadow_draw_do_not_depend_on_the_order_of_the_requests():
    from simulator.datasets.served import serve, shadow

    traffic, outcomes = next(generate_week(600, 1, 8))
    forward = shadow(*serve(traffic, outcomes, "skewed", 8), 0.2, 8)
    reversed_traffic, reversed_answers = serve(traffic.reverse(), outcomes.reverse(), "skewed", 8)
    backward = shadow(reversed_traffic, reversed_answers, 0.2, 8)
    keys = ["request_id", "model", "sample"]
    assert forward.sort(keys).equals(backward.sort(keys))
    # A request's draws depend on its own id: leaving other requests out does not change its router choice.
    part, _ = serve(traffic.head(100), outcomes, "skewed", 8)
    whole, _ = serve(traffic, outcomes, "skewed", 8)
    assert part["served_model"].equals(whole.head(100)["served_model"])


@pytest.mark.parametrize("column, value, message", [
    ("logging_propensity", 0.0, "outside 0 < p <= 1"),
    ("logging_propensity", 1.5, "outside 0 < p <= 1"),
])
def test_contract_checks_logging_propensities(column, value, message):
    traffic = tiny_traffic().with_columns(pl.lit("small").alias("served_model"), pl.lit(value).alias(column))
    report = validate_frames(traffic, tiny_outcomes())
    assert any(message in problem and column in problem for problem in report.problems)


def test_contract_checks_inclusion_probabilities_and_gold_graders():
    outcomes = tiny_outcomes().with_columns(
        pl.Series("inclusion_probability", [0.5, 0.0, None, None, None, None]),
        pl.Series("gold_passed", [True, None, None, None, None, False]),
        pl.Series("gold_grader", ["human", None, None, None, None, "llm_judge"]))
    problems = validate_frames(tiny_traffic(), outcomes).problems
    assert any("inclusion_probability" in p and "outside 0 < p <= 1" in p for p in problems)
    assert any("unknown gold grader" in p for p in problems)
    fine = outcomes.with_columns(pl.lit(0.5).alias("inclusion_probability"), pl.lit("human").alias("gold_grader"))
    assert validate_frames(tiny_traffic(), fine).ok


def test_design_weighted_mean_by_hand():
    # Stratum 0: 4 requests, 2 drawn (passes 1, 0). Stratum 1: 6 requests, 3 drawn, all passing.
    # Estimate = 4/10 x 0.5 + 6/10 x 1 = 0.8.
    sample = StratifiedSample(np.array([0, 0, 1, 1, 1]), np.array([2.0, 2, 2, 2, 2]), np.array([4.0, 6.0]),
                              {"passed": np.array([1.0, 0, 1, 1, 1]), "cost_usd": np.array([1.0, 3, 2, 2, 2])},
                              keys=["a", "b", "c", "d", "e"])
    estimates = {e.metric: e for e in sample_estimates(sample, resamples=200, seed=1)}
    assert estimates["pass_rate"].value == pytest.approx(0.8)
    assert estimates["cost_per_request_usd"].value == pytest.approx(0.4 * 2 + 0.6 * 2)
    assert estimates["pass_rate"].kind == "design-weighted"
    assert estimates["pass_rate"].low < 0.8 < estimates["pass_rate"].high


def test_a_census_has_no_sampling_uncertainty():
    # Every request drawn (f_h = 1): the rescaled bootstrap leaves nothing to vary.
    sample = StratifiedSample(np.array([0, 0, 1]), np.ones(3), np.array([2.0, 1.0]),
                              {"passed": np.array([1.0, 0, 1]), "cost_usd": np.array([1.0, 2, 3])}, keys=["a", "b", "c"])
    pass_rate = next(e for e in sample_estimates(sample, resamples=50) if e.metric == "pass_rate")
    assert pass_rate.value == pass_rate.low == pass_rate.high == pytest.approx(2 / 3)


def test_ips_snips_and_diagnostics_by_hand():
    # 4 requests; the target's choice was served on 0, 2, 3 with propensities 0.5, 0.25, 0.5 (weights 2, 4, 2).
    logged = Logged(matched=np.array([True, False, True, True]),
                    target_propensity=np.array([0.5, 0.5, 0.25, 0.5]),
                    y={"pass_rate": np.array([1.0, 1.0, 1.0, 0.0])}, dm={})
    values = {e.kind: e.value for e in estimate(logged, "pass_rate")}
    assert values["IPS"] == pytest.approx((2 + 4 + 0) / 4)
    assert values["SNIPS"] == pytest.approx(6 / 8)
    found = diagnostics(logged)
    assert found["effective_sample_size"] == pytest.approx(8 ** 2 / (4 + 16 + 4))
    assert found["max_weight"] == 4.0 and found["no_support_share"] == 0.0


def test_dr_with_a_perfect_reward_model_has_no_error():
    truth = np.array([1.0, 0.0, 1.0, 1.0])
    logged = Logged(matched=np.array([True, False, False, True]), target_propensity=np.full(4, 0.5),
                    y={"pass_rate": truth}, dm={"pass_rate": truth})
    dr = next(e for e in estimate(logged, "pass_rate") if e.kind == "DR")
    assert dr.value == dr.low == dr.high == pytest.approx(0.75)


# The command line, on generated weeks and their truth.

def _scenario(path, data, policy, name):
    path.write_text(yaml.safe_dump({"name": name, "data": str(data), "prices": str(PRICES), "policy": policy}))
    return path


PRICES = PROJECT / "data" / "prices" / "support.yaml"
ONE_CALL = {"rules": [{"when": "slice IN ('contract_analysis', 'research_synthesis', 'refund_dispute', "
                               "'renewal_email')", "use": "large"}], "default": {"use": "medium"}}
CASCADE = {"default": {"cascade": [{"model": "small", "accept": "confidence >= 0.7"}, {"model": "flagship"}]}}


@pytest.fixture(scope="module")
def weeks(tmp_path_factory):
    from simulator.datasets.served import write_served_week

    root = tmp_path_factory.mktemp("served")
    for logger, rate in (("skewed", 0.2), ("by-slice", None)):
        write_served_week(root / logger, 3000, 2, 12, logger, shadow_rate=rate)
    return root


def _truth(cli, tmp_path, weeks, logger, policy):
    path = _scenario(tmp_path / "truth.yaml", weeks / f"{logger}-truth", policy, "truth")
    result = cli("replay", path, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)[0]


def test_design_weighted_estimates_contain_the_full_matrix_figures(cli, tmp_path, weeks):
    path = _scenario(tmp_path / "cascade.yaml", weeks / "skewed", CASCADE, "cascade")
    result = cli("estimate", path, "--confidence", "0.99", "--resamples", "400", "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)[0]
    assert found["kind"] == "design-weighted" and found["sampled"] < found["requests"] == 3000
    truth = _truth(cli, tmp_path, weeks, "skewed", CASCADE)
    for e in found["estimates"]:
        if e["metric"] in ("pass_rate", "cost_per_request_usd", "escalation_rate"):
            assert e["low"] <= truth[e["metric"]] <= e["high"], e


def test_off_policy_reports_an_ess_that_matches_the_weights(cli, tmp_path, weeks):
    path = _scenario(tmp_path / "one-call.yaml", weeks / "skewed", ONE_CALL, "one-call")
    result = cli("estimate", path, "--method", "off-policy", "--confidence", "0.99", "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)[0]
    traffic = pl.read_parquet(weeks / "skewed" / "traffic.parquet")
    hard = ["contract_analysis", "research_synthesis", "refund_dispute", "renewal_email"]
    target = pl.when(pl.col("slice").is_in(hard)).then(pl.lit("large")).otherwise(pl.lit("medium"))
    w = traffic.select(pl.when(pl.col("served_model") == target).then(1 / pl.col("logging_propensity"))
                       .otherwise(0.0))["literal"].to_numpy()
    assert found["diagnostics"]["effective_sample_size"] == pytest.approx(w.sum() ** 2 / (w ** 2).sum())
    assert found["diagnostics"]["max_weight"] == pytest.approx(w.max())
    assert {e["kind"] for e in found["estimates"]} == {"IPS", "SNIPS", "DR"}
    truth = _truth(cli, tmp_path, weeks, "skewed", ONE_CALL)
    for e in found["estimates"]:
        if e["kind"] in ("SNIPS", "DR"):
            assert e["low"] <= truth[e["metric"]] <= e["high"], e


def test_a_deterministic_router_is_refused_with_the_support_message(cli, tmp_path, weeks):
    path = _scenario(tmp_path / "one-call.yaml", weeks / "by-slice", ONE_CALL, "one-call")
    result = cli("estimate", path, "--method", "off-policy")
    assert result.code == 2
    assert "deterministic" in result.err and "no support" in result.err and "plan-shadow" in result.err


def test_a_cascade_is_refused_off_policy(cli, tmp_path, weeks):
    path = _scenario(tmp_path / "cascade.yaml", weeks / "skewed", CASCADE, "cascade")
    result = cli("estimate", path, "--method", "off-policy")
    assert result.code == 2 and "one call per request" in result.err


def _partial_support(world):
    """Slice faq: the router always serves small; slice contract: small or big, half and half."""
    traffic = tiny_traffic().with_columns(
        pl.Series("served_model", ["small", "small", "big"]), pl.Series("logging_propensity", [1.0, 1.0, 0.5]),
        pl.Series("propensity_small", [1.0, 1.0, 0.5]), pl.Series("propensity_big", [0.0, 0.0, 0.5]))
    outcomes = pl.DataFrame([outcome_row("a", "small"), outcome_row("b", "small", passed=False),
                             outcome_row("c", "big")], schema=OUTCOME_SCHEMA)
    world.write_data(traffic, outcomes)
    return world.scenario(policy={"default": {"use": "big"}})


def test_requests_without_support_are_refused_then_filled_on_request(cli, world):
    path = _partial_support(world)
    refused = cli("estimate", path, "--method", "off-policy")
    assert refused.code == 2 and "66.7% of the requests" in refused.err and "plan-shadow" in refused.err
    filled = cli("estimate", path, "--method", "off-policy", "--unsupported", "dm", "--json")
    assert filled.code == 0, filled.err
    found = json.loads(filled.out)[0]
    assert {e["kind"] for e in found["estimates"]} == {"DR+DM"}
    assert found["diagnostics"]["no_support_share"] == pytest.approx(2 / 3)


def test_coverage_counts_answers_grades_and_what_each_scenario_can_replay(cli, world):
    outcomes = tiny_outcomes().filter(~((pl.col("request_id") == "c") & (pl.col("model") == "big"))).with_columns(
        pl.Series("passed_source", ["recorded", "assumed_from_status", "recorded", "recorded", "recorded"]),
        pl.Series("grader", ["human", None, "deterministic", "human", "human"]))
    world.write_data(tiny_traffic(), outcomes)
    small_only = world.scenario("small-only", policy={"default": {"use": "small"}})
    cascade = world.scenario("cascade")
    result = cli("coverage", world.data, small_only, cascade, "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    cells = {(row["slice"], row["model"]): row for row in found["answers"]}
    assert (cells["faq", "small"]["requests"], cells["faq", "small"]["answered"], cells["faq", "small"]["graded"],
            cells["faq", "small"]["assumed"], cells["faq", "small"]["grader:human"]) == (2, 2, 1, 1, 1)
    assert (cells["contract", "big"]["answered"], cells["contract", "small"]["grader:deterministic"]) == (0, 1)
    scenarios = {row["scenario"]: row for row in found["scenarios"]}
    assert scenarios["small-only"]["kind"] == "exact" and scenarios["small-only"]["share"] == 1.0
    # The cascade escalates b (confidence 0.5) to big, answered; c (0.8) is accepted: all three replay.
    assert scenarios["cascade"]["kind"] == "exact"
    escalating = world.scenario("escalating", policy={"default": {"cascade": [
        {"model": "small", "accept": "confidence >= 0.95"}, {"model": "big"}]}})
    partial = json.loads(cli("coverage", world.data, escalating, "--json").out)["scenarios"][0]
    assert (partial["kind"], partial["replayable"], partial["missing_by_model"]) == ("partial", 2, {"big": 1})


def test_generate_served_writes_the_truth_aside(cli, tmp_path):
    result = cli("generate", tmp_path / "week", "--requests", "300", "--days", "1", "--served", "uniform")
    assert result.code == 0, result.err
    assert pl.read_parquet(tmp_path / "week" / "outcomes.parquet").height == 300
    assert pl.read_parquet(tmp_path / "week-truth" / "outcomes.parquet")["model"].n_unique() == 4
    assert cli("validate", tmp_path / "week").code == 0
    bad = cli("generate", tmp_path / "other", "--requests", "300", "--served", "sometimes")
    assert bad.code == 2 and "unknown logging router" in bad.err
    assert cli("generate", tmp_path / "x", "--shadow-rate", "0.1").code == 2


def test_generate_served_refused_for_its_truth_folder_writes_neither_folder(cli, tmp_path):
    # The truth folder was checked only when written, after the log: a refusal of OUT-truth came with OUT
    # written (an earlier week there already replaced).
    truth = tmp_path / "week-truth"
    truth.mkdir()
    (truth / "mine.txt").write_text("precious")
    arguments = ("generate", tmp_path / "week", "--requests", "100", "--days", "1", "--seed", "1", "--served",
                 "uniform")
    result = cli(*arguments)
    assert result.code == 2 and "week-truth is a folder routesim did not write" in result.err, result.err
    assert "Traceback" not in result.err and "--force" in result.err and "give another OUT" in result.err
    assert not (tmp_path / "week").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["week-truth"]  # nor a staging folder
    assert [path.name for path in truth.iterdir()] == ["mine.txt"]
    assert (truth / "mine.txt").read_text() == "precious"
    # An earlier week routesim wrote at OUT stays as it was.
    assert cli("generate", tmp_path / "week", "--requests", "40", "--days", "1", "--seed", "2").code == 0
    before = (tmp_path / "week" / "traffic.parquet").read_bytes()
    assert cli(*arguments).code == 2
    assert (tmp_path / "week" / "traffic.parquet").read_bytes() == before
    assert cli(*arguments, "--force").code == 0
    assert pl.read_parquet(truth / "outcomes.parquet")["model"].n_unique() == 4 and not (truth / "mine.txt").exists()



def test_estimate_diagnostics_write_counts_and_sums_with_thousands_separators():
    from simulator.cli.served import _diagnostic

    shown = {key: _diagnostic(key, value) for key, value in {
        "weight_sum": 6000.0, "population": 6000, "requests": 6000, "matched": 3303, "max_weight": 12.345678,
        "seed": 12345, "latency": "logged"}.items()}
    assert shown == {"weight_sum": "6,000", "population": "6,000", "requests": "6,000", "matched": "3,303",
                     "max_weight": "12.35", "seed": "12345", "latency": "logged"}


def test_estimate_refuses_too_few_resamples_for_its_interval(cli):
    # As the gate: a percentile interval needs a resample beyond each end, 2 / (1 - 0.95) = 40 at 95%.
    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "served" / "cascade.yaml"
    result = cli("estimate", scenario, "--resamples", "5")
    assert result.code == 2 and "5 resamples are too few for a 95% interval" in result.err
    assert "at least 40" in result.err and "Traceback" not in result.err


def test_coverage_of_a_folder_without_answers_says_so(cli, world):
    world.write_data(tiny_traffic().clear(), tiny_outcomes().clear())
    result = cli("coverage", world.data)
    assert result.code == 0 and "holds no answers (its outcomes have no rows)" in result.out


def test_coverage_names_the_argument_of_a_scenario_file_not_found(cli, world):
    result = cli("coverage", world.data, world.folder / "nosuch.yaml")
    assert result.code == 2 and "scenario file not found" in result.err, result.err
    assert "where: SCENARIO (argument 2:" in result.err and "nosuch.yaml" in result.err


def test_a_stratum_pass_rate_is_its_exact_ratio_correctly_rounded():
    """208 passes of 210 drawn (each weighted 2,121/210 = 10.1) is 208/210 = 0.9904761904761905, computed once; a sum
    of 208 float weights over a sum of 210 gave 0.9904761904761902. Likewise 164/210."""
    for passes in (208, 164):
        passed = np.array([1.0] * passes + [0.0] * (210 - passes))
        sample = StratifiedSample(strata=np.zeros(210, dtype=np.int64), weights=np.full(210, 2121 / 210),
                                  population=np.array([2121.0]), columns={"passed": passed},
                                  keys=[f"r{i:03d}" for i in range(210)])
        boot = sample.draw_counts(50, 0)
        [(point, _, _)] = sample.stratum_intervals("passed", boot, 0.95)
        assert point == passes / 210
        assert sample.mean("passed", boot)[0] == passes / 210
