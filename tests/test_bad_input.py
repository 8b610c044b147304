"""Bad input gets a clear message (what, where, how to fix), exit code 2, no traceback, no partial output."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from tests.conftest import tiny_outcomes, tiny_traffic

BAD_INPUT = 2


def assert_bad_input(result, *fragments: str) -> None:
    assert result.code == BAD_INPUT, (result.code, result.out, result.err)
    assert "Traceback" not in result.err + result.out
    for fragment in fragments:
        assert fragment in result.err, f"{fragment!r} not in:\n{result.err}"


def test_missing_scenario_file(cli, tmp_path):
    assert_bad_input(cli("replay", tmp_path / "nope.yaml"), "file not found", f"where: {tmp_path / 'nope.yaml'}")
    assert_bad_input(cli("replay", tmp_path / "no" / "such.yaml"), f"the folder {tmp_path / 'no'} does not exist")


def test_invalid_yaml_names_the_line(cli, world):
    path = world.folder / "broken.yaml"
    path.write_text("name: broken\npolicy:\n  default: [use: small\n")
    assert_bad_input(cli("replay", path), "not valid YAML", "broken.yaml, line")


def test_unknown_top_level_key_suggests_the_right_one(cli, world):
    path = world.scenario()
    path.write_text(path.read_text().replace("policy:", "polcy:"))
    assert_bad_input(cli("replay", path), "unknown key 'polcy'", "Did you mean 'policy'?", "missing key 'policy'")


def test_unknown_nested_key_names_its_path(cli, world):
    path = world.scenario(policy={"default": {"cascade": [{"model": "small", "acept": "confidence > 0.5"},
                                                          {"model": "big"}]}})
    assert_bad_input(cli("replay", path), "unknown key 'policy.default.cascade[0].acept'", "Did you mean 'accept'?")


def test_unknown_model_suggests_a_known_one(cli, world):
    path = world.scenario(policy={"default": {"use": "smal"}})
    assert_bad_input(cli("replay", path), "model 'smal'", "Did you mean 'small'?", "models in the data: big, small")


def test_predicate_with_table_function_is_rejected(cli, world):
    path = world.scenario(policy={"rules": [{"when": "read_csv('/etc/passwd') IS NOT NULL", "use": "big"}],
                                  "default": {"use": "small"}})
    assert_bad_input(cli("replay", path), "read_csv()", "not allowed", "policy.rules[0].when")


def test_predicate_with_subquery_is_rejected(cli, world):
    path = world.scenario(policy={"rules": [{"when": "(SELECT 1) = 1", "use": "big"}],
                                  "default": {"use": "small"}})
    assert_bad_input(cli("replay", path), "a subquery", "not allowed")


def test_predicate_with_two_statements_is_rejected(cli, world):
    path = world.scenario(policy={"rules": [{"when": "input_tokens > 1; DROP TABLE x", "use": "big"}],
                                  "default": {"use": "small"}})
    assert_bad_input(cli("replay", path), "single expression")


def test_predicate_on_unknown_column_suggests_one(cli, world):
    path = world.scenario(policy={"default": {"cascade": [{"model": "small", "accept": "confidnce >= 0.7"},
                                                          {"model": "big"}]}})
    assert_bad_input(cli("replay", path), "column 'confidnce'", "Did you mean 'confidence'?",
                     "policy.default.cascade[0].accept")


def test_rule_cannot_read_outcome_columns(cli, world):
    path = world.scenario(policy={"rules": [{"when": "confidence > 0.5", "use": "big"}],
                                  "default": {"use": "small"}})
    assert_bad_input(cli("replay", path), "column 'confidence'", "policy.rules[0].when")


def test_cascade_step_without_accept(cli, world):
    path = world.scenario(policy={"default": {"cascade": [{"model": "small"}, {"model": "big"}]}})
    assert_bad_input(cli("replay", path), "cascade step 0 (small) needs 'accept'")


def test_window_that_ends_before_it_starts(cli, world):
    path = world.scenario(window={"start": "2026-11-20", "end": "2026-11-16"})
    assert_bad_input(cli("replay", path), "key 'window'", "must be after start")


def test_a_rejected_value_is_shown_as_the_yaml_wrote_it(cli, world):
    path = world.scenario(window={"start": dt.date(2026, 11, 20), "end": dt.date(2026, 11, 16)})
    result = cli("replay", path)
    assert_bad_input(result, "(got {start: 2026-11-20, end: 2026-11-16})")
    assert "datetime" not in result.err


@pytest.mark.parametrize("command", ["replay", "validate"])  # validate reports what the replay would meet
def test_window_without_requests(cli, world, command):
    path = world.scenario(window={"start": "2027-01-01", "end": "2027-01-02"})
    assert_bad_input(cli(command, path), "no requests to replay between 2027-01-01 and 2027-01-02",
                     "where: scenario 'tiny', key 'window'", "fix: widen the window")


def test_data_without_requests_names_the_data_not_a_window(cli, world):
    # A served log whose traffic has no rows, and a scenario without a window: the data is what to fix. (Its
    # propensity column makes small a candidate, which no answer would.)
    traffic = tiny_traffic().head(0).with_columns(pl.lit(None, pl.String).alias("served_model"),
                                                  pl.lit(None, pl.Float64).alias("logging_propensity"),
                                                  pl.lit(None, pl.Float64).alias("propensity_small"))
    world.write_data(traffic, tiny_outcomes().head(0))
    path = world.scenario(policy={"default": {"use": "small"}})
    result = cli("estimate", path, "--method", "off-policy")
    assert_bad_input(result, "no requests to replay: the data holds none", "where: scenario 'tiny', data ",
                     "fix: point 'data' at a folder whose traffic holds requests")
    assert str(world.data.resolve()) in result.err
    assert "key 'window'" not in result.err and "widen the window" not in result.err


def test_missing_data_folder(cli, world):
    path = world.scenario(data="nowhere")
    assert_bad_input(cli("replay", path), "data folder not found", "nowhere")


def _dangling(folder):
    (folder / "gone").symlink_to(folder / "deleted")
    return "gone"


# A scenario key that names an unusable path, as a builder of that path in the world's folder, and what is wrong.
PATH_FAULTS = {
    "data names a file": ("data", lambda folder: (folder / "notes.txt").touch() or "notes.txt",
                          "notes.txt is a file, but a data folder is expected here"),
    "data names an empty folder": ("data", lambda folder: (folder / "empty").mkdir() or "empty",
                                   "missing traffic.parquet in the data folder"),
    "data names a dangling link": ("data", _dangling, "gone (a symbolic link to"),
    "prices names a missing file": ("prices", lambda folder: "prices-2027.yaml", "price sheet not found"),
    "prices names a dangling link": ("prices", _dangling, "gone (a symbolic link to"),
    "prices names a data file": ("prices", lambda folder: "data/traffic.parquet",
                                 "is not a price sheet: traffic.parquet is a data file"),
    "prices names a scenario": ("prices", lambda folder: "misplaced.yaml", "is not a price sheet: a price sheet must"),
}


@pytest.mark.parametrize("fault", list(PATH_FAULTS))
def test_an_unusable_data_or_prices_path_names_the_scenario_key_that_gave_it(cli, world, fault):
    key, build, what = PATH_FAULTS[fault]
    path = world.scenario("misplaced", **{key: build(world.folder)})
    assert_bad_input(cli("replay", path), what, f"where: {path}, key '{key}'", f"fix: point '{key}' in misplaced.yaml")


def test_a_key_left_without_a_value_is_named_as_such(cli, world):
    path = world.scenario("valueless", data=None)  # `data:` with nothing after it
    assert_bad_input(cli("replay", path), "key 'data' has no value: write one after the colon", f"where: {path}")


@pytest.mark.parametrize("command", ["sweep", "gate", "report", "validate"])
def test_every_command_that_loads_a_scenarios_data_names_the_key(cli, world, command, tmp_path):
    path = world.scenario("misplaced", data="nowhere")
    arguments = {"sweep": [path], "gate": ["--baseline", world.scenario(), "--candidate", path],
                 "report": [path, "-o", tmp_path / "report.html"], "validate": [path]}[command]
    assert_bad_input(cli(command, *arguments), "data folder not found", f"where: {path}, key 'data'")


def test_traffic_missing_a_column_is_named_with_a_suggestion(cli, world):
    world.write_data(tiny_traffic().rename({"slice": "slise"}), tiny_outcomes())
    assert_bad_input(cli("replay", world.scenario()), "missing required column 'slice'", "Did you mean 'slise'?")


def test_a_missing_column_is_not_taken_for_a_typo_of_another_column_of_the_contract(cli, world):
    world.write_data(tiny_traffic(), tiny_outcomes().drop("cached_input_tokens"))
    result = cli("replay", world.scenario())
    assert_bad_input(result, "missing required column 'cached_input_tokens'")
    assert "Did you mean" not in result.err  # 'input_tokens' is there, as a column of its own


def test_mistyped_column(cli, world):
    world.write_data(tiny_traffic().with_columns(pl.col("input_tokens").cast(pl.String)), tiny_outcomes())
    assert_bad_input(cli("validate", world.data), "traffic.parquet, column 'input_tokens'", "must be integer")


def test_duplicate_request_ids_show_examples(cli, world):
    world.write_data(tiny_traffic().with_columns(pl.lit("a").alias("request_id")), tiny_outcomes())
    assert_bad_input(cli("validate", world.data), "2 duplicate row(s): request_id must be unique",
                     "request_id='a' (3 rows)")


def test_duplicate_outcome_keys_show_examples(cli, world):
    world.write_data(tiny_traffic(), pl.concat([tiny_outcomes(), tiny_outcomes().head(1)]))
    assert_bad_input(cli("validate", world.data), "1 duplicate row(s): (request_id, model, sample) must be unique",
                     "request_id='a', model='small' (2 rows")


def test_negative_tokens(cli, world):
    outcomes = tiny_outcomes().with_columns(pl.when(pl.col("request_id") == "b").then(-5)
                                            .otherwise(pl.col("output_tokens")).alias("output_tokens"))
    world.write_data(tiny_traffic(), outcomes)
    assert_bad_input(cli("validate", world.data), "column 'output_tokens'", "negative or not finite value(s)",
                     "request_id='b'")


def test_score_outside_unit_interval(cli, world):
    world.write_data(tiny_traffic(), tiny_outcomes().with_columns(pl.lit(1.5).alias("confidence")))
    assert_bad_input(cli("validate", world.data), "column 'confidence'", "outside 0..1")


def test_outcomes_for_unknown_requests(cli, world):
    outcomes = tiny_outcomes().with_columns(pl.col("request_id").replace({"c": "zzz"}))
    world.write_data(tiny_traffic(), outcomes)
    assert_bad_input(cli("validate", world.data), "for requests not in", "request_id='zzz'")


def test_samples_with_gaps(cli, world):
    world.write_data(tiny_traffic(), tiny_outcomes().with_columns(
        pl.when(pl.col("request_id") == "a").then(2).otherwise(0).alias("sample")))
    assert_bad_input(cli("validate", world.data), "samples do not run 0, 1, 2")


def test_key_checks_in_buckets_report_exactly_what_one_pass_reports(monkeypatch):
    from simulator.core import contract
    from tests.worlds import random_world

    world = random_world(7)
    ids = world.traffic["request_id"]
    traffic = pl.concat([world.traffic, world.traffic.head(4)])  # four duplicate request ids
    outcomes = pl.concat([world.outcomes,
                          world.outcomes.head(3),  # repeated keys
                          world.outcomes.tail(5).with_columns(pl.col("sample") + 3),  # gaps in the numbering
                          world.outcomes.head(6).with_columns((pl.lit("orphan-") + pl.col("request_id")).alias("request_id"))])
    whole = contract.validate_frames(traffic, outcomes).problems
    monkeypatch.setattr(contract, "KEY_CHECK_ROWS", 7)
    split = contract.validate_frames(traffic, outcomes).problems
    assert split == whole and len(whole) == 4 and ids.len() > 20
    assert "6 outcome row(s) for requests not in" in whole[3] and "request_id='orphan-" in whole[3]


def test_validate_reports_every_problem_at_once(cli, world):
    world.write_data(tiny_traffic().with_columns(pl.lit(-1).alias("input_tokens")),
                     tiny_outcomes().with_columns(pl.lit(2.0).alias("score")))
    result = cli("validate", world.data)
    assert_bad_input(result, "column 'input_tokens'", "column 'score'", "2 problem(s)")


def test_unreadable_parquet(cli, world):
    (world.data / "outcomes.parquet").write_text("not parquet")
    assert_bad_input(cli("validate", world.data), "cannot read", "outcomes.parquet")


def test_price_sheet_with_unknown_key_and_negative_price(cli, world):
    world.prices.write_text("models:\n  small:\n    - effective_from: 2026-11-01\n      input: -1\n"
                            "      outptu: 2\n")
    result = cli("validate", world.prices)
    assert_bad_input(result, "key 'models.small[0].input' must be at least 0 (got -1)",
                     "unknown key 'models.small[0].outptu'", "Did you mean 'output'?")


def test_model_priced_by_neither_sheet_nor_record(cli, world):
    world.prices.write_text("models:\n  small:\n    - {effective_from: 2026-11-01, input: 1, output: 2}\n")
    assert_bad_input(cli("replay", world.scenario()), "cannot be priced",
                     "model 'big'", "not in the price sheet and no recorded cost_usd",
                     "fix: add the model to the price sheet, or record cost_usd")


@pytest.mark.parametrize("command", ["replay", "validate"])
def test_call_before_the_first_price_entry(cli, world, command):
    world.prices.write_text("models:\n  small:\n    - {effective_from: 2026-12-01, input: 1, output: 2}\n"
                            "  big:\n    - {effective_from: 2026-11-01, input: 1, output: 2}\n")
    assert_bad_input(cli(command, world.scenario()), "model 'small'",
                     "no price entry in force at 2026-11-16 01:00 UTC", "effective_from 2026-12-01",
                     "fix: add an entry in force at those calls' dates")


def test_missing_outcomes_are_counted_per_model(cli, world):
    world.write_data(tiny_traffic(), tiny_outcomes().filter(~((pl.col("model") == "big")
                                                             & (pl.col("request_id") == "b"))))
    assert_bad_input(cli("replay", world.scenario()), "missing from the data (requests per model: big: 1;",
                     "e.g. request b has no answer from big",
                     "on_missing: skip")


def test_unknown_slice_in_quality_bar(cli, world):
    path = world.scenario(quality_bar={"default": 0.9, "slices": {"contrakt": 0.5}})
    assert_bad_input(cli("validate", path), "quality_bar.slices.contrakt", "Did you mean 'contract'?")


def test_quality_bar_outside_unit_interval(cli, world):
    assert_bad_input(cli("replay", world.scenario(quality_bar=1.5)),
                     "key 'quality_bar.default' must be at most 1 (got 1.5)")


@pytest.mark.parametrize("overrides, problem", [
    ({"policy": {"default": {"use": "small"}, "retry": {"when": "NOT hard_check_ok", "to": []}}},
     "key 'policy.retry.to' must hold at least one item (got [])"),
    ({"admission": {"confidence": 1.0}}, "key 'admission.confidence' must be below 1 (got 1.0)"),
    ({"sample": {"requests": 2.5}}, "key 'sample.requests' must be a whole number (got 2.5)"),
    ({"on_missing": "maybe"}, "key 'on_missing' must be 'error' or 'skip' (got 'maybe')"),
    ({"quality_bar": "high"}, "key 'quality_bar' must be a pass rate such as 0.9, or {default: 0.9, slices: "
                              "{SLICE: 0.8}} (got 'high')"),
])
def test_scenario_schema_errors_are_plain_and_point_at_the_scenario_reference(cli, world, overrides, problem):
    path = world.scenario("plain", **overrides)
    result = cli("replay", path)
    assert_bad_input(result, f"{path} is not valid:", problem, f"where: {path}",
                     "fix: correct the key above; 'Scenario reference' in the README lists every key")
    assert "Input should" not in result.err and "after validation" not in result.err
    assert "Price sheets" not in result.err


def test_a_price_sheet_schema_error_points_at_the_price_sheets_section(cli, world):
    world.prices.write_text("models:\n  small:\n"
                            "    - {effective_from: 2026-11-01, input: 1, output: 2, discount: 1.5}\n")
    assert_bad_input(cli("validate", world.prices), "key 'models.small[0].discount' must be below 1 (got 1.5)",
                     "fix: correct the key above; 'Price sheets' in the README lists every key")


def test_two_scenarios_with_one_name(cli, world):
    first, second = world.scenario("same"), world.folder / "copy.yaml"
    second.write_text(first.read_text())
    assert_bad_input(cli("replay", first, second), "two scenarios share the name 'same'")


def test_failed_replay_writes_no_decisions_file(cli, world):
    out = world.folder / "out" / "decisions.parquet"
    path = world.scenario(policy={"default": {"use": "smal"}})
    assert_bad_input(cli("replay", path, "--decisions", out), "model 'smal'")
    assert not out.exists()


@pytest.mark.parametrize("command", [("generate", "OUT", "--requests", "0")])
def test_usage_errors_exit_2_without_traceback(cli, tmp_path, command):
    result = cli(*[tmp_path / "out" if part == "OUT" else part for part in command])
    assert result.code == BAD_INPUT
    assert "Traceback" not in result.err
    assert "--requests" in result.err
    assert not (tmp_path / "out" / "traffic.parquet").exists()


def test_input_files_are_never_modified(cli, world):
    before = {path: path.read_bytes() for path in [*world.data.iterdir(), world.prices]}
    scenario = world.scenario()
    assert cli("replay", scenario, "--decisions", world.folder / "d.parquet").code == 0
    assert cli("validate", world.data, world.prices, scenario).code == 0
    assert {path: path.read_bytes() for path in before} == before


def test_timestamps_without_time_zone_are_taken_as_utc(cli, world):
    world.write_data(tiny_traffic().with_columns(pl.col("ts").dt.replace_time_zone(None)), tiny_outcomes())
    path = world.scenario(window={"start": dt.date(2026, 11, 16), "end": dt.date(2026, 11, 17)})
    result = cli("replay", path, "--json")
    assert result.code == 0, result.err
    assert '"requests": 3' in result.out


def test_price_sheet_that_is_a_list(cli, world):
    world.prices.write_text("- small\n- big\n")
    assert_bad_input(cli("replay", world.scenario()), "a price sheet must be a YAML mapping", "prices.yaml")


def test_scenario_name_that_is_not_a_safe_folder_name(cli, world):
    # said in words, not as the regular expression
    assert_bad_input(cli("replay", world.scenario(name="../escape")),
                     "key 'name' must be letters, digits, '.', '_' and '-', starting with a letter or digit "
                     "(got '../escape')")


def test_predicate_comparing_text_with_a_number(cli, world):
    path = world.scenario(policy={"rules": [{"when": "tier > 5", "use": "big"}], "default": {"use": "small"}})
    assert_bad_input(cli("replay", path), "predicate 'tier > 5' cannot be evaluated", "policy.rules[0].when",
                     "tier is String")


def test_predicate_that_is_not_a_condition(cli, world):
    path = world.scenario(policy={"default": {"cascade": [{"model": "small", "accept": "confidence"},
                                                          {"model": "big"}]}})
    assert_bad_input(cli("replay", path), "gives Float64 values, not true or false")


def test_column_with_the_engines_prefix(cli, world):
    world.write_data(tiny_traffic().with_columns(pl.lit("x").alias("__plan")), tiny_outcomes())
    assert_bad_input(cli("validate", world.data), "column '__plan' starts with '__'")


def test_latency_that_is_not_a_number(cli, world):
    world.write_data(tiny_traffic(), tiny_outcomes().with_columns(pl.lit(float("nan")).alias("latency_ms")))
    assert_bad_input(cli("validate", world.data), "column 'latency_ms'", "negative or not finite")


def test_every_request_skipped(cli, world):
    path = world.scenario(on_missing="skip", policy={"default": {"use": "big"}})
    world.write_data(tiny_traffic(), tiny_outcomes().filter(pl.col("model") == "small"))
    assert_bad_input(cli("replay", path), "model 'big' is used by the policy but has no outcomes")
    world.write_data(tiny_traffic(), tiny_outcomes().with_columns(
        pl.when(pl.col("model") == "big").then(pl.lit("small")).otherwise(pl.col("model")).alias("model"),
        pl.when(pl.col("model") == "big").then(1).otherwise(0).alias("sample")))
    path = world.scenario(on_missing="skip", policy={"default": {"cascade": [
        {"model": "small", "accept": "FALSE"}, {"model": "small", "accept": "FALSE"}, {"model": "small"}]}})
    assert_bad_input(cli("replay", path), "every request was skipped for missing outcomes (small: 3)")


def test_more_attempts_than_retry_targets(cli, world):
    path = world.scenario(policy={"default": {"use": "small"},
                                  "retry": {"when": "NOT passed", "to": ["big"], "max_attempts": 2}})
    assert_bad_input(cli("replay", path), "max_attempts (2) is more than the 1 model(s) in 'to'")


def test_checker_named_like_a_model(cli, world):
    path = world.scenario(policy={"default": {"cascade": [
        {"model": "small", "accept": "confidence > 0.5", "checker": {"name": "big", "cost_usd": 0.001,
                                                                      "latency_ms": 10}},
        {"model": "big"}]}})
    assert_bad_input(cli("replay", path), "checker 'big' has the name of a model in the data")


def test_unknown_slice_in_quality_bar_fails_the_replay_too(cli, world):
    path = world.scenario(quality_bar={"default": 0.5, "slices": {"contrakt": 0.5}})
    assert_bad_input(cli("replay", path), "quality_bar.slices names 'contrakt'", "Did you mean 'contract'?")


def test_validate_of_a_data_file_says_a_data_folder_is_expected_as_other_commands_do(cli, world):
    assert_bad_input(cli("validate", world.data / "traffic.parquet"), "is a file, but a data folder is expected",
                     "fix: give the folder that holds traffic.parquet")


def test_validate_refuses_a_cache_folder_inside_the_data_folder_as_replay_does(cli, world):
    assert_bad_input(cli("--cache-dir", world.data / "c", "validate", world.data),
                     "is inside the data folder", "fix: point --cache-dir")


def test_validate_of_a_missing_path_says_how_to_fix_it(cli, tmp_path):
    assert_bad_input(cli("validate", tmp_path / "nonexist"), "no such file or folder", "where:", "fix: give an existing")


def test_validate_of_a_shard_root_points_at_its_shards(cli, world, tmp_path):
    assert cli("shard", world.data, "--shards", "2", "-o", tmp_path / "sh").code == 0
    assert_bad_input(cli("validate", tmp_path / "sh"), "holds 2 shard(s)",
                     f"fix: validate the shards themselves: routesim validate {tmp_path / 'sh' / 'shard=0'}")
    assert cli("validate", tmp_path / "sh" / "shard=0").code == 0


def test_error_type_may_be_absent_but_must_be_known_when_present(cli, world):
    outcomes = tiny_outcomes().with_columns(
        pl.when(pl.col("request_id") == "b").then(pl.lit("rate_limit")).otherwise(None).alias("error_type"))
    world.write_data(tiny_traffic(), outcomes)
    assert cli("validate", world.data).code == 0
    world.write_data(tiny_traffic(), outcomes.with_columns(pl.col("error_type").replace("rate_limit", "429")))
    assert_bad_input(cli("validate", world.data), "column 'error_type'", "unknown value", "error_type='429'",
                     "rate_limit, timeout, context_window, content_filter, other")


def test_decisions_named_as_another_format_are_refused(cli, world, tmp_path):
    # Decisions were written as Parquet into d.csv: a file no CSV reader can open, under a name that says CSV.
    assert_bad_input(cli("replay", world.scenario(), "--decisions", tmp_path / "d.csv"),
                     "--decisions writes Parquet, but d.csv is named as another format", "name it d.parquet")
    assert not (tmp_path / "d.csv").exists()


def test_a_null_in_a_required_column_says_how_to_fix_it(cli, world):
    traffic = tiny_traffic().with_columns(pl.when(pl.col("request_id") == "b").then(None).otherwise(pl.col("ts"))
                                          .alias("ts"))
    world.write_data(traffic, tiny_outcomes())
    assert_bad_input(cli("validate", world.data), "column 'ts': 1 null value(s)", "request_id='b'",
                     "fix: set ts in every row, or drop the rows without one")


def test_a_sample_larger_than_the_window_is_warned_about(cli, world):
    import json

    found = json.loads(cli("replay", world.scenario(sample={"requests": 100_000_000}), "--json").out)
    [summary] = found
    assert summary["requests"] == 3
    assert [w["message"] for w in summary["warnings"] if w["kind"] == "sample_larger_than_window"] == [
        "sample asks for 100,000,000 requests, but the window holds 3: all of them are replayed, none drawn"]
    [drawn] = json.loads(cli("replay", world.scenario(sample={"requests": 2}), "--json").out)
    assert drawn["requests"] == 2 and not [w for w in drawn["warnings"] if w["kind"] == "sample_larger_than_window"]


def test_a_newline_in_a_name_never_starts_a_line_of_an_error(cli, world):
    # The slice 'ref\nund' is named in the error's first line, its did-you-mean and its fix: each shows the
    # newline as \u000a, and the message keeps its three lines (what, where, fix).
    world.write_data(tiny_traffic().with_columns(pl.col("slice").replace("contract", "ref\nund")), tiny_outcomes())
    result = cli("replay", world.scenario(quality_bar={"default": 0.5, "slices": {"ref\nundx": 0.5}}))
    assert result.code == 2
    lines = result.err.strip().split("\n")
    assert len(lines) == 3 and lines[1].startswith("  where: ") and lines[2].startswith("  fix: "), result.err
    assert "'ref\\u000aundx', which is no slice" in lines[0] and "Did you mean 'ref\\u000aund'?" in lines[0]


def test_validate_on_a_log_file_says_it_is_one_and_points_at_import(cli, tmp_path):
    spend = tmp_path / "spend.csv"
    spend.write_text("request_id,model\nr1,small\n")
    assert_bad_input(cli("validate", spend), "spend.csv is a CSV file, not a data folder, price sheet or scenario",
                     "routesim import FORMAT FILE -o DIR")


@pytest.mark.parametrize(("declared", "message"), [
    (["passed"], "declares the grade(s) passed known at serving time"),
    (["confidence", "nonexistent"], "declares nonexistent, which outcomes.parquet does not have"),
])
def test_columns_json_may_declare_only_outcome_columns_that_are_no_grade(cli, world, declared, message):
    # a gate reading a declared grade would pass as deployable; a name the outcomes lack declares nothing
    (world.data / "columns.json").write_text(json.dumps({"serving_time": declared}))
    for command in (["validate", world.data], ["replay", world.scenario()]):
        assert_bad_input(cli(*command), message, "columns.json")


def test_a_data_folder_whose_columns_json_breaks_the_contract_builds_no_layout(cli, world, tmp_path):
    """The README ("The layout cache"): data that breaks the contract builds nothing, columns.json included."""
    (world.data / "columns.json").write_text(json.dumps({"serving_time": ["passed"]}))
    cache = tmp_path / "cache"
    assert_bad_input(cli("--cache-dir", cache, "replay", world.scenario()), "known at serving time")
    assert (cache / "layouts").is_dir() and not list((cache / "layouts").glob("*-v*"))


@pytest.mark.parametrize(("arguments", "message", "where"), [
    (["gate", "--baseline", "a.yaml", "--candidate", "b.yaml", "--seed", "-1"], "--seed must be at least 0 (got -1)",
     "where: --seed"),
    (["replay", "x.yaml", "--workers", "many"], "--workers must be a whole number (got many)", "where: --workers"),
    (["replay", "x.yaml", "--confidence", "nan"], "Invalid value for '--confidence': nan is not a finite number",
     "where: --confidence"),
    (["replay", "--nope"], "No such option: --nope", "where: routesim replay"),
    (["replay"], "Missing argument 'SCENARIO'", "where: routesim replay"),
    (["nosuch"], "No such command 'nosuch'", "where: routesim"),
])
def test_a_value_the_parser_refuses_is_said_as_every_error_is(cli, arguments, message, where):
    """What, where and how to fix it (README "CLI"), not only click's usage banner."""
    result = cli(*arguments)
    assert_bad_input(result, f"error: {message}", where, "fix: see 'routesim")
    assert "Usage:" not in result.err
