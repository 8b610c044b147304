"""Scenarios that run but do not do what they say are warned about, naming the rule; and the replay's time
series (`over_time`) says when the bar was missed at the end."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from tests.conftest import OUTCOME_SCHEMA, outcome_row, tiny_outcomes, tiny_traffic
from tests.report_helpers import build


def _replayed(cli, path) -> dict:
    result = cli("replay", path, "--json", "--rule", "point")
    assert result.code == 0, result.err
    return json.loads(result.out)[0]


def test_a_rule_whose_requests_earlier_rules_take_is_named(cli, world):
    # c is the only contract request, and it is on the pro tier: the first rule takes it.
    path = world.scenario("shadowed", policy={"rules": [{"name": "pro", "when": "tier = 'pro'", "use": "big"},
                                                        {"name": "contracts", "when": "slice = 'contract'", "use": "small"}],
                                              "default": {"use": "small"}})
    warnings = _replayed(cli, path)["warnings"]
    assert [(w["rule"], w["kind"]) for w in warnings] == [("policy.rules[1]", "rule_shadowed")]
    assert "contracts" in warnings[0]["message"]
    assert "warning, shadowed: rule 'contracts'" in cli("replay", path, "--rule", "point").out


def test_a_literal_that_never_occurs_gets_a_did_you_mean(cli, world):
    path = world.scenario("typo", policy={"rules": [{"name": "contracts", "when": "slice = 'contrac'", "use": "big"}],
                                          "default": {"use": "small"}})
    kinds = {w["kind"]: w for w in _replayed(cli, path)["warnings"]}
    assert set(kinds) == {"rule_matches_nothing", "unknown_literal"}
    assert "'contrac'" in kinds["unknown_literal"]["message"] and "'contract'" in kinds["unknown_literal"]["message"]
    assert kinds["unknown_literal"]["rule"] == "policy.rules[0].when"


def test_a_retry_without_a_further_sample_is_warned_about(cli, world):
    # b's small answer has confidence 0.5, but small has no sample 1 for it: the retry cannot run.
    path = world.scenario("stuck", policy={"default": {"use": "small"},
                                           "retry": {"when": "confidence < 0.7", "to": ["small"]}})
    summary = _replayed(cli, path)
    assert (summary["retry_rate"], summary["retry_exhausted"]) == (0.0, 1)
    (warning,) = summary["warnings"]
    assert (warning["rule"], warning["kind"]) == ("policy.retry", "retry_could_not_run")
    assert warning["message"].startswith("1 request matched the retry's when (confidence < 0.7)")


def test_the_latest_buckets_that_miss_the_bar_are_named_in_json_and_the_headline(world, tmp_path):
    """Three requests 20 minutes apart (under two hours: 5-minute buckets); small passes a, fails b and c.
    Against a bar of 0.3 (point rule), a's bucket meets it and the last two buckets fail it."""
    minutes = (0, 20, 40)
    traffic = tiny_traffic().with_columns(
        pl.Series("ts", [dt.datetime(2026, 11, 16, 1, minute, tzinfo=dt.UTC) for minute in minutes]))
    outcomes = tiny_outcomes().filter(pl.col("model") == "big")
    small = [outcome_row("a", "small"), outcome_row("b", "small", passed=False),
             outcome_row("c", "small", passed=False)]
    world.write_data(traffic, pl.concat([outcomes, pl.DataFrame(small, schema=OUTCOME_SCHEMA)]))
    path = world.scenario("small-everywhere", policy={"default": {"use": "small"}}, admission={"rule": "point"},
                          quality_bar={"default": 0.3, "slices": {"contract": 0.0}})
    results = build([path], tmp_path / "report.html")
    summary = json.loads((results / "small-everywhere" / "summary.json").read_text())
    over_time = summary["over_time"]
    assert over_time["bucket"] == "5 minutes"
    assert [(row["start"], row["requests"], row["state"]) for row in over_time["rows"]] == [
        ("2026-11-16T01:00:00Z", 1, "meets"), ("2026-11-16T01:20:00Z", 1, "fails"), ("2026-11-16T01:40:00Z", 1, "fails")]
    assert [row["start"] for row in over_time["late_misses"]] == ["2026-11-16T01:20:00Z", "2026-11-16T01:40:00Z"]
    html = (tmp_path / "report.html").read_text()
    assert "The bar was missed on the latest 2 5-minute buckets: 2026-11-16 01:20 0.0%" in html


def test_many_rules_that_match_nothing_are_one_warning_naming_the_count_and_the_first(cli, world):
    # The shared case F03 has 10,000 generated rules; one line each would bury the table.
    rules = [{"when": f"input_tokens = {-index - 1}", "use": "big"} for index in range(40)]
    path = world.scenario("many", policy={"rules": rules, "default": {"use": "small"}})
    (warning,) = _replayed(cli, path)["warnings"]
    assert (warning["kind"], warning["count"], len(warning["rules"])) == ("rule_matches_nothing", 40, 40)
    assert warning["message"].startswith("40 rules match none of the replayed requests; the first 5: "
                                         "'rule 1' (input_tokens = -1);")
    assert "and 35 more" in warning["message"]
    assert cli("replay", path, "--rule", "point").out.count("warning, many:") == 1


def test_ten_thousand_unknown_literals_are_one_warning_with_the_count_and_a_few_examples(cli, world):
    # A generated policy comparing a text column with 10,000 values the data never holds: one warning per
    # literal would print 10,000 lines, as unmatched rules did. Read without a parse (simple comparisons).
    rules = [{"when": f"slice = 'gen-{index}'", "use": "big"} for index in range(10_000)]
    rules.append({"when": "slice IN ('contrac', 'faq')", "use": "big"})  # parsed: an IN list, one value unseen
    path = world.scenario("literals", policy={"rules": rules, "default": {"use": "small"}})
    warnings = {w["kind"]: w for w in _replayed(cli, path)["warnings"]}
    literal = warnings["unknown_literal"]
    assert (literal["count"], len(literal["rules"]), literal["rule"]) == (10_001, 10_001, "policy.rules")
    assert literal["rules"][:2] == ["policy.rules[0].when", "policy.rules[1].when"]
    assert literal["rules"][-1] == "policy.rules[10000].when"
    assert literal["message"].startswith("10,001 predicates compare a column with a value that never occurs in it "
                                         "among the replayed requests, so those comparisons never hold; the first "
                                         "5: 'gen-0' in slice (policy.rules[0].when); 'gen-1' in slice")
    assert "and 9,996 more" in literal["message"]
    few = world.scenario("few", policy={"rules": rules[:6], "default": {"use": "small"}})
    assert cli("replay", few, "--rule", "point").out.count("never occurs") == 1


def test_a_rule_matching_only_requests_left_out_for_a_missing_answer_matches_nothing(cli, world):
    # c, the only contract request, has no answer from big; with on_missing: skip it is left out, so the rule
    # holds for none of the replayed requests (the warnings count over what was replayed, not what was selected).
    outcomes = tiny_outcomes().filter(~((pl.col("request_id") == "c") & (pl.col("model") == "big")))
    world.write_data(tiny_traffic(), outcomes)
    path = world.scenario("left-out", on_missing="skip",
                          policy={"rules": [{"name": "contracts", "when": "slice = 'contract'", "use": "big"},
                                            {"name": "pro", "when": "tier = 'pro'", "use": "small"}],
                                  "default": {"use": "small"}})
    summary = _replayed(cli, path)
    assert summary["coverage"]["requests_replayed"] == 2
    # 'contract' occurs in no replayed request either (the literal check reads the same requests).
    assert [(w["rule"], w["kind"]) for w in summary["warnings"]] == [("policy.rules[0]", "rule_matches_nothing"),
                                                                     ("policy.rules[0].when", "unknown_literal")]
    assert "rule 'pro'" not in " ".join(w["message"] for w in summary["warnings"])  # b is pro and replayed
