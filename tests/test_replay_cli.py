"""`routesim replay`, `validate` and `demo` on the shipped scenarios and the embedded week."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from simulator.core.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
FLAT_KEYS = {"scenario", "requests", "total_cost_usd", "cost_per_request_usd", "pass_rate", "mean_score",
             "escalation_rate", "retry_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}


def scenario(name: str) -> Path:
    return ROOT / "scenarios" / f"{name}.yaml"


def test_shipped_inputs_validate(cli):
    result = cli("validate", ROOT / "data" / "support-week", ROOT / "data" / "prices" / "support.yaml", *SCENARIOS)
    assert result.code == 0, result.err
    assert result.out.count("valid") == len(SCENARIOS) + 2


def test_json_has_the_flat_keys_and_breakdowns(cli):
    result = cli("replay", scenario("cascade"), scenario("flagship-everywhere"), "--json")
    assert result.code == 0, result.err
    summaries = json.loads(result.out)
    assert [s["scenario"] for s in summaries] == ["cascade", "flagship-everywhere"]
    for summary in summaries:
        assert FLAT_KEYS <= summary.keys()
        for breakdown, key in (("by_slice", "slice"), ("by_model", "model"), ("by_day", "day")):
            assert summary[breakdown], breakdown
            for row in summary[breakdown]:
                assert {key, *METRIC_NAMES} <= row.keys()
        assert sum(row["requests"] for row in summary["by_slice"]) == summary["requests"]
        assert sum(row["requests"] for row in summary["by_day"]) == summary["requests"]
        assert abs(sum(row["call_cost_usd"] for row in summary["by_model"]) - summary["total_cost_usd"]) < 1e-6


def test_table_marks_the_cheapest_scenario_that_meets_its_bar(cli):
    paths = [scenario(name) for name in ("flagship-everywhere", "small-everywhere", "rules-only", "cascade")]
    summaries = json.loads(cli("replay", *paths, "--json").out)
    meeting = [s for s in summaries if s["meets_bar"]]
    assert meeting, "the shipped week should have at least one policy meeting its bar"
    cheapest = min(meeting, key=lambda s: s["total_cost_usd"])["scenario"]
    table = cli("replay", *paths).out
    assert f"{cheapest} ★" in table
    assert table.count("★") == 2  # the row and the caption


def test_flagship_price_cut_is_priced_at_each_requests_time(cli):
    summary = json.loads(cli("replay", scenario("flagship-everywhere"), "--json").out)[0]
    per_request = {row["day"]: row["cost_per_request_usd"] for row in summary["by_day"]}
    assert summary["provenance"]["price_sources"] == {"flagship": "sheet"}
    assert summary["provenance"]["price_entries"]["flagship"] == ["2026-10-01", "2026-11-19"]
    assert per_request["2026-11-18"] > per_request["2026-11-19"]


def test_routing_drill_escalates_exactly_the_failing_requests(cli, tmp_path):
    decisions_file = tmp_path / "drill.parquet"
    result = cli("replay", scenario("routing-drill"), scenario("routing-drill-flagship"), "--decisions", decisions_file)
    assert result.code == 0, result.err
    decisions = pl.read_parquet(decisions_file)
    assert "rid" not in decisions.columns  # the engine's internal row key stays internal
    drill = decisions.filter(pl.col("scenario") == "routing-drill")
    flagship = decisions.filter(pl.col("scenario") == "routing-drill-flagship")
    assert drill.height == flagship.height == 30
    assert drill["request_id"].to_list() == flagship["request_id"].to_list()
    small = (pl.read_parquet(ROOT / "data" / "support-week" / "outcomes.parquet")
             .filter((pl.col("model") == "small") & (pl.col("sample") == 0))
             .select("request_id", (pl.col("passed") & pl.col("hard_check_ok")).alias("small_passed")))
    checked = drill.join(small, on="request_id")
    assert checked.height == 30
    assert (checked["escalated"] == ~checked["small_passed"]).all()
    assert checked["escalated"].any() and not checked["escalated"].all()


def test_same_inputs_give_identical_results(cli, tmp_path):
    for run in ("first", "second"):
        assert cli("replay", scenario("stacked"), "--save", tmp_path / run,
                   "--decisions", tmp_path / run / "decisions.parquet").code == 0
    for name in ("stacked/summary.json", "stacked/decisions.parquet", "stacked/calls.parquet", "decisions.parquet"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name


def test_demo_replays_every_shipped_scenario(cli):
    result = cli("demo")
    assert result.code == 0, result.err
    for path in SCENARIOS:
        name = path.stem
        assert name in result.out
    # The support week is gated against flagship-everywhere: each bar verdict shows beside its gate verdict.
    week = result.out.split("Replay comparison: routellm")[0]
    rows = {words[0]: (words[1] == "★", " ".join(words[-2:])) for words in map(str.split, week.splitlines())
            if len(words) > 6 and words[0] in {"lanes", "flagship-everywhere"}}
    assert rows == {"lanes": (True, "meets passed"), "flagship-everywhere": (False, "meets baseline")}
    assert "★ lanes: the cheapest deployable policy" in week and "passes the regression gate against" in week
