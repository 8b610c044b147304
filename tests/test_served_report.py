"""A shadow-sampled week in `replay` and `report`: its figures are design-weighted estimates, labelled so,
its verdicts judge the estimates' intervals by the one admission rule, and the report's headline says how
wide they are and its provenance holds the coverage table."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
import yaml

from simulator.core.paths import PROJECT
from simulator.core.verdict import Admission, estimated_verdict, judge_estimate, recommend

PRICES = PROJECT / "data" / "prices" / "support.yaml"
CASCADE = {"default": {"cascade": [{"model": "small", "accept": "confidence >= 0.7"}, {"model": "flagship"}]}}


def test_an_estimate_is_judged_by_the_same_rule_on_its_own_interval():
    # Bar 0.90: an interval above it meets, one below fails, one across it is undecided.
    assert judge_estimate(0.93, 0.91, 0.95, 200, 0.90)["state"] == "meets"
    assert judge_estimate(0.85, 0.82, 0.89, 200, 0.90)["state"] == "fails"
    straddling = judge_estimate(0.905, 0.89, 0.92, 200, 0.90)
    assert (straddling["state"], straddling["to_settle"]) == ("undecided", None)
    assert judge_estimate(0.905, 0.89, 0.92, 200, 0.90, Admission(rule="point"))["state"] == "meets"
    verdict = estimated_verdict({"pass_rate": 0.93, "low": 0.91, "high": 0.95, "sampled": 300},
                                [{"slice": "faq", "pass_rate": 0.97, "low": 0.95, "high": 0.99, "sampled": 150},
                                 {"slice": "hard", "pass_rate": 0.80, "low": 0.70, "high": 0.86, "sampled": 150}],
                                0.90, lambda name: 0.90)
    assert verdict["state"] == "fails" and [s["state"] for s in verdict["slices"]] == ["meets", "fails"]


def _summary(name: str, kind: str) -> dict:
    verdict = {"state": "meets", "overall": {}, "slices": []}
    return {"scenario": name, "verdict": verdict, "deployable": True, "cost_per_request_usd": 0.01,
            "requests": 100, "requests_fingerprint": "f", "provenance": {"data_fingerprint": "d"}, "kind": kind}


def test_ranking_policies_of_different_kinds_says_so():
    assert recommend([_summary("a", "exact"), _summary("b", "exact")])["mixed_kinds"] is None
    mixed = recommend([_summary("a", "exact"), _summary("b", "design-weighted")])["mixed_kinds"]
    assert mixed == {"a": "exact", "b": "design-weighted"}


def test_the_terminal_warns_when_it_ranks_policies_of_different_kinds():
    from simulator.cli.views import kind_lines

    summaries = [_summary("a", "exact"), _summary("b", "design-weighted")]
    lines = kind_lines([_summary("a", "exact")], recommend(summaries))
    assert lines == ["  warning: policies ranked together have figures of different kinds: a (exact), "
                     "b (design-weighted)"]


@pytest.fixture(scope="module")
def shadowed(tmp_path_factory):
    from simulator.datasets.served import write_served_week

    root = tmp_path_factory.mktemp("shadowed")
    write_served_week(root / "week", 3000, 2, 11, "skewed", shadow_rate=0.2)
    return root


def _scenario(path, data, name="cascade"):
    path.write_text(yaml.safe_dump({"name": name, "data": str(data), "prices": str(PRICES), "policy": CASCADE,
                                    "quality_bar": {"default": 0.85}}))
    return path


def test_a_shadowed_weeks_replay_gives_labelled_estimates_whose_verdict_judges_their_intervals(cli, shadowed, tmp_path):
    path = _scenario(tmp_path / "cascade.yaml", shadowed / "week")
    result = cli("replay", path, "--json", "--confidence", "0.99")
    assert result.code == 0, result.err
    found = json.loads(result.out)[0]
    assert found["kind"] == "design-weighted" and found["sampled"] < found["requests"] == 3000
    figures = {e["metric"]: e for e in found["estimates"]["figures"]}
    overall = found["verdict"]["overall"]
    assert (overall["low"], overall["high"]) == (figures["pass_rate"]["low"], figures["pass_rate"]["high"])
    assert found["pass_rate"] == figures["pass_rate"]["value"]
    assert found["total_cost_usd"] == pytest.approx(figures["cost_per_request_usd"]["value"] * 3000)
    truth = json.loads(cli("replay", _scenario(tmp_path / "truth.yaml", shadowed / "week-truth", "truth"),
                           "--json").out)[0]
    assert truth["kind"] == "exact"
    for name in ("pass_rate", "cost_per_request_usd"):
        assert figures[name]["low"] <= truth[name] <= figures[name]["high"], name
    # Each slice's verdict judges its own estimate's interval.
    strata = {row["slice"]: row for row in found["estimates"]["strata"]}
    for scope in found["verdict"]["slices"]:
        assert (scope["low"], scope["high"]) == (strata[scope["slice"]]["low"], strata[scope["slice"]]["high"])
    table = cli("replay", path)
    assert "cascade ≈" in table.out and "design-weighted estimates for all 3,000 requests" in table.out


def test_the_report_of_a_shadowed_week_says_its_figures_are_estimates_and_how_wide(cli, shadowed, tmp_path):
    path = _scenario(tmp_path / "cascade.yaml", shadowed / "week")
    result = cli("report", path, "-o", tmp_path / "r.html")
    assert result.code == 0, result.err
    page = (tmp_path / "r.html").read_text()
    block = page[page.index('data-field="estimates"'):]
    text = re.sub(r"<[^>]+>", "", block[:block.index("</div>")])
    assert "These figures are estimates, not an exact replay" in text
    summary = json.loads((tmp_path / "r-results" / "cascade" / "summary.json").read_text())
    low, high = next((e["low"], e["high"]) for e in summary["estimates"]["figures"] if e["metric"] == "pass_rate")
    assert f"{(high - low) * 100:.1f} pts wide" in text
    assert f"shadow sample of {summary['sampled']:,}" in text
    # The coverage table is in the provenance: the served log's answers per slice x model.
    assert page.count('class="coverage-table"') == 1
    held = json.loads((tmp_path / "r-results" / "coverage.json").read_text())["data"][0]
    assert held["data"] == "week" and {row["model"] for row in held["answers"]} == {"small", "medium", "large",
                                                                                     "flagship"}


FLAGSHIP = {"default": {"use": "flagship"}}


def _policy(path, data, name, policy):
    path.write_text(yaml.safe_dump({"name": name, "data": str(data), "prices": str(PRICES), "policy": policy,
                                    "quality_bar": {"default": 0.85}}))
    return path


def test_the_gate_of_a_shadowed_week_weighs_the_window_and_judges_the_estimates(cli, shadowed, tmp_path):
    base = _policy(tmp_path / "flagship.yaml", shadowed / "week", "flagship", FLAGSHIP)
    cand = _scenario(tmp_path / "cascade.yaml", shadowed / "week")
    result = cli("gate", "--baseline", base, "--candidate", cand, "--tolerance", "0.2", "--confidence", "0.99",
                 "--json")
    assert result.code in (0, 1), result.err
    gate = json.loads(result.out)
    overall = gate["overall"]
    assert gate["kind"] == "design-weighted" and overall["requests"] == 3000 and overall["sampled"] == gate["requests"]
    # The candidate's bar verdicts are its estimated verdicts (design-weighted intervals), not Wilson's.
    estimated = json.loads(cli("replay", cand, "--json", "--confidence", "0.99").out)[0]
    assert overall["bar_verdict"] == estimated["verdict"]["overall"]["state"]
    assert overall["candidate"]["pass_rate"] == pytest.approx(estimated["pass_rate"])
    # The overall change's interval contains the full matrix's change.
    truth = {}
    for name, policy in (("flagship", FLAGSHIP), ("cascade", CASCADE)):
        path = _policy(tmp_path / f"{name}-truth.yaml", shadowed / "week-truth", name, policy)
        truth[name] = json.loads(cli("replay", path, "--json").out)[0]
    for key, metric in (("pass_rate_change", "pass_rate"), ("cost_per_request_change_usd", "cost_per_request_usd")):
        change = truth["cascade"][metric] - truth["flagship"][metric]
        assert overall[key]["low"] <= change <= overall[key]["high"], (key, overall[key], change)
    # An exact policy against a design-weighted one is refused: a gate compares one kind of figure.
    exact = _policy(tmp_path / "exact.yaml", shadowed / "week-truth", "flagship", FLAGSHIP)
    mixed = cli("gate", "--baseline", exact, "--candidate", cand)
    assert mixed.code == 2 and "a gate compares figures of one kind" in mixed.err


def test_the_reports_gate_on_a_shadowed_week_weighs_it_at_the_runs_confidence(cli, shadowed, tmp_path):
    # The report builds its gate options from the run's admission alone; the design-weighted intervals read
    # their confidence from it (an options' own confidence left unset had crashed the report).
    base = _policy(tmp_path / "flagship.yaml", shadowed / "week", "flagship", FLAGSHIP)
    cand = _scenario(tmp_path / "cascade.yaml", shadowed / "week")
    report = cli("report", base, cand, "--baseline", base, "-o", tmp_path / "r.html", "--confidence", "0.99")
    assert report.code == 0, report.err
    [gate] = json.loads((tmp_path / "r-results" / "gates.json").read_text())["gates"]
    assert gate["kind"] == "design-weighted" and gate["confidence"] == 0.99


def test_lanes_on_a_shadowed_week_are_fitted_on_the_drawn_requests_and_weigh_the_later_window(cli, shadowed,
                                                                                                tmp_path):
    emitted = tmp_path / "lanes.yaml"
    result = cli("lanes", shadowed / "week", "--prices", PRICES, "--bar", "0.85", "--fit-until", "2026-11-17",
                 "--json", "--emit", emitted)
    assert result.code == 0, result.err
    found = json.loads(result.out)
    drawn = pl.read_parquet(shadowed / "week" / "outcomes.parquet").filter(
        pl.col("inclusion_probability").is_not_null())["request_id"].n_unique()
    traffic = pl.read_parquet(shadowed / "week" / "traffic.parquet")
    assert found["fit"]["shadow_sample"] and found["fit"]["requests"] < drawn
    # Every model's answers in a slice are those of the slice's drawn requests: the same count for each model.
    for group in found["groups"]:
        assert len({model["requests"] for model in group["models"]}) == 1
    check = found["out_of_sample"]
    later = traffic.filter(pl.col("ts") >= pl.datetime(2026, 11, 17, time_zone="UTC"))
    shares = {name: n / later.height for name, n in later.group_by("slice").len().iter_rows()}
    assert check["requests"] == later.height and check["drawn"] < later.height
    assert check["pass_rate"] == pytest.approx(sum(shares[g["group"]] * g["pass_rate"] for g in check["groups"]))
    # Its verdicts judge the design-weighted estimates a replay of the emitted lanes makes, to the last bit.
    from simulator.analyses.estimates import design_weighted
    from simulator.core.contract import load_data
    from simulator.core.prices import load_prices
    from simulator.core.scenario import load_scenario

    scenario = load_scenario(emitted)
    weighted = design_weighted(scenario, load_data(scenario.data), load_prices(scenario.prices))
    overall = next(e for e in weighted.estimates if e.metric == "pass_rate")
    assert (check["pass_rate"], check["pass_rate_low"], check["pass_rate_high"]) == (overall.value, overall.low,
                                                                                     overall.high)
    assert [(g["group"], g["pass_rate"], g["pass_rate_low"], g["pass_rate_high"]) for g in check["groups"]] == [
        (s["slice"], s["pass_rate"], s["low"], s["high"]) for s in weighted.strata]
    assert {g["group"]: g["state"] for g in check["groups"]} == {
        s["slice"]: judge_estimate(s["pass_rate"], s["low"], s["high"], s["drawn"], 0.85)["state"]
        for s in weighted.strata}
    # As a user checks it: `replay` of the emitted lanes weighs the window's own share of the shadow sample
    # (a windowed scenario counted the whole week's drawn requests, looked unweighable and was refused).
    replayed = cli("replay", emitted, "--json")
    assert replayed.code == 0, replayed.err
    [summary] = json.loads(replayed.out)
    assert summary["kind"] == "design-weighted" and summary["coverage"]["sampled"] == check["drawn"]
    assert summary["verdict"]["overall"]["state"] == check["state"]
    assert {s["slice"]: s["state"] for s in summary["verdict"]["slices"]} == {
        g["group"]: g["state"] for g in check["groups"]}
    refused = cli("lanes", shadowed / "week", "--prices", PRICES, "--bar", "0.85", "--by", "feature")
    assert refused.code == 2 and "fitted per slice" in refused.err


def test_design_weighted_figures_are_the_same_bytes_at_one_and_eight_threads(shadowed, tmp_path):
    import os
    import subprocess
    import sys

    path = _scenario(tmp_path / "cascade.yaml", shadowed / "week")
    outputs = []
    for threads in (1, 8):
        env = {**os.environ, "POLARS_MAX_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
               "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        done = subprocess.run([sys.executable, "-c", "from simulator.cli import main; main()", "replay", str(path),
                               "--json"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and '"design-weighted"' in outputs[0]
