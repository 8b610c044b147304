"""README "Reliability": outputs never touch inputs, every failure is typed, every size is bounded, numbers
are numbers and inputs are read as written. Each rule of that section has a test here."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import zipfile

import polars as pl
import pytest
import yaml

from simulator.core import limits
from simulator.core.errors import RoutesimError
from simulator.core.outputs import MARKER
from tests.conftest import tiny_outcomes, tiny_traffic

BAD_INPUT = 2


def assert_bad_input(result, *fragments: str) -> None:
    assert result.code == BAD_INPUT, (result.code, result.out, result.err)
    assert "Traceback" not in result.out + result.err and "internal error" not in result.err
    for fragment in fragments:
        assert fragment in result.err, f"{fragment!r} not in:\n{result.err}"


def snapshot(*paths) -> dict:
    found = {}
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        found |= {str(file): file.read_bytes() for file in files if file.is_file()}
    return found


# Outputs never touch inputs.

def test_a_report_written_over_its_scenario_is_refused(cli, world):
    scenario = world.scenario()
    before = snapshot(world.folder)
    assert_bad_input(cli("report", scenario, "-o", scenario), f"the output {scenario} is an input of this run")
    assert snapshot(world.folder) == before


def test_a_report_rendered_into_the_results_it_reads_is_refused(cli, world, tmp_path):
    results = tmp_path / "results"
    assert cli("replay", world.scenario(), "--save", results).code == 0
    before = snapshot(results)
    assert_bad_input(cli("report", "--from", results, "-o", results), "is an input of this run")
    assert_bad_input(cli("report", "--from", results, "-o", results / "r.html"), "lies inside an input")
    assert snapshot(results) == before


def test_an_output_folder_that_contains_an_input_is_refused(cli, tmp_path):
    export = tmp_path / "logs" / "spend.csv"
    export.parent.mkdir()
    export.write_text("request_id,model\nr1,small\n")
    assert_bad_input(cli("import", "litellm", export, "-o", tmp_path / "logs", "--force"), "contains an input")
    assert export.read_text() == "request_id,model\nr1,small\n"


def test_a_symlink_destination_is_refused_and_left_a_link(cli, world, tmp_path):
    target = tmp_path / "kept.parquet"
    target.write_bytes(b"mine")
    link = tmp_path / "link.parquet"
    link.symlink_to(target)
    assert_bad_input(cli("replay", world.scenario(), "--decisions", link), "is a symbolic link", "never replaces")
    assert link.is_symlink() and target.read_bytes() == b"mine"


def test_special_files_are_never_replaced(cli, world, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_bad_input(cli("replay", world.scenario(), "--decisions", fifo), "is a FIFO")
    assert fifo.exists() and not fifo.is_file()
    # Run as root, replacing /dev/null with a regular file would break the machine.
    assert_bad_input(cli("replay", world.scenario(), "--decisions", "/dev/null"), "is a character device")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_a_price_sheet_written_over_the_price_list_it_reads_is_refused(cli, tmp_path):
    prices = tmp_path / "litellm.json"
    prices.write_text(json.dumps({"m": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}))
    before = snapshot(tmp_path)
    assert_bad_input(cli("prices", "import-litellm", prices, "--as-of", "2026-11-01", "--models", "m", "-o", prices),
                     f"the output {prices} is an input of this run")
    assert snapshot(tmp_path) == before


def test_dash_writes_a_text_output_to_stdout(cli, tmp_path):
    prices = tmp_path / "litellm.json"
    prices.write_text(json.dumps({"m": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}))
    result = cli("prices", "import-litellm", prices, "--as-of", "2026-11-01", "--models", "m", "-o", "-")
    assert result.code == 0, result.err
    assert yaml.safe_load(result.out)["models"]["m"][0]["output"] == 2.0
    assert not (tmp_path / "-").exists()


def test_decisions_to_dash_stream_json_lines_to_stdout_and_the_table_to_stderr(cli, world, monkeypatch):
    monkeypatch.chdir(world.folder)
    result = cli("replay", world.scenario(), world.scenario("other", policy={"default": {"use": "big"}}),
                 "--decisions", "-")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in result.out.splitlines()]  # stdout holds the decisions and nothing else
    assert [(row["scenario"], row["request_id"]) for row in rows] == [
        (name, request) for name in ("tiny", "other") for request in sorted(tiny_traffic()["request_id"])]
    assert {row["final_model"] for row in rows if row["scenario"] == "other"} == {"big"}
    assert "rid" not in rows[0]  # the engine's internal row key stays internal
    assert "policy" in result.err  # the comparison table went to stderr
    assert not (world.folder / "-").exists()
    assert_bad_input(cli("replay", world.scenario(), "--decisions", "-", "--json"), "both write to stdout")


def test_dash_for_a_binary_output_is_refused_not_a_file_named_dash(cli, world, monkeypatch):
    monkeypatch.chdir(world.folder)
    assert_bad_input(cli("replay", world.scenario(), "--save", "-"), "'-' (stdout) is taken only by text")
    assert not (world.folder / "-").exists()


def test_a_folder_is_replaced_only_when_routesim_wrote_it_or_with_force(cli, world, tmp_path):
    results = tmp_path / "results"
    assert cli("replay", world.scenario(), "--save", results).code == 0
    assert (results / "tiny" / MARKER).is_file()
    assert cli("replay", world.scenario(), "--save", results).code == 0  # routesim's own: replaced
    foreign = tmp_path / "foreign"
    (foreign / "tiny").mkdir(parents=True)
    (foreign / "tiny" / "notes.txt").write_text("mine")
    assert_bad_input(cli("replay", world.scenario(), "--save", foreign), "routesim did not write", "--force")
    assert (foreign / "tiny" / "notes.txt").read_text() == "mine"
    assert cli("replay", world.scenario(), "--save", foreign, "--force").code == 0
    assert not (foreign / "tiny" / "notes.txt").exists()


def user_results(folder):
    """A folder of someone's own files, named as a report names its files."""
    folder.mkdir()
    files = {"report.json": '{"mine": true}', "coverage.json": "notes", "gates.json": "mine", "baselines.json": "b"}
    for name, text in files.items():
        (folder / name).write_text(text)
    return snapshot(folder)


def test_a_report_refuses_a_results_folder_routesim_did_not_write_before_writing_anything(cli, world, tmp_path):
    # The report wrote its report.json, coverage.json and baselines.json over a user's files of those names and
    # deleted their gates.json, with exit 0: only each scenario's own folder was checked.
    for extra in ([], ["--save", tmp_path / "mine"]):
        page = tmp_path / "page.html"
        results = extra[-1] if extra else tmp_path / "page-results"
        before = user_results(results)
        assert_bad_input(cli("report", world.scenario(), "-o", page, *extra),
                         f"{results} is a folder routesim did not write", "--force", f"where: {results}")
        assert snapshot(results) == before
        assert not page.exists()  # nor the HTML
        assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # nor a staging file
        assert cli("report", world.scenario(), "-o", page, *extra, "--force").code == 0  # replaced when asked
        assert json.loads((results / "report.json").read_text()) == {"scenarios": ["tiny"]}
        assert not (results / "gates.json").exists() and page.is_file()
        page.unlink()


def test_a_results_folder_routesim_wrote_is_written_again_and_one_forced_stays_the_users(cli, world, tmp_path):
    page, results = tmp_path / "page.html", tmp_path / "page-results"
    assert cli("report", world.scenario(), world.scenario("other"), "-o", page).code == 0
    assert (results / MARKER).is_file()
    (results / "notes.txt").write_text("kept")  # a routesim folder is written into, not emptied
    assert cli("report", world.scenario(), "-o", page).code == 0  # a rerun: no --force needed
    assert json.loads((results / "report.json").read_text()) == {"scenarios": ["tiny"]}
    assert not (results / "other").exists()  # the stale scenario's result is dropped
    assert (results / "notes.txt").read_text() == "kept"
    # A folder --force let through is written into but not marked: the next run needs --force again.
    forced = tmp_path / "forced"
    user_results(forced)
    (forced / "diary.txt").write_text("mine")
    assert cli("report", world.scenario(), "-o", page, "--save", forced, "--force").code == 0
    assert not (forced / MARKER).exists() and (forced / "diary.txt").read_text() == "mine"
    assert_bad_input(cli("report", world.scenario(), "-o", page, "--save", forced), "routesim did not write")



def test_a_results_folder_an_earlier_routesim_wrote_is_still_routesims(cli, world, tmp_path):
    # Before results folders were marked, only their scenario folders were: such a folder (the demo's, after
    # an upgrade) is written again, and marked; the same with one file of the user's beside them is not.
    from simulator.core.outputs import EARLIER_RESULT_FILES
    from simulator.report import build

    assert {build.BASELINES_FILE, build.MANIFEST_FILE, build.GATES_FILE, build.PRICE_CHECKS_FILE,
            build.COVERAGE_FILE} == EARLIER_RESULT_FILES
    page, results = tmp_path / "page.html", tmp_path / "page-results"
    assert cli("report", world.scenario(), "-o", page).code == 0
    (results / MARKER).unlink()  # as an earlier version left it (without the marker and the saved order)
    (results / "order.json").unlink()
    assert cli("report", world.scenario(), "-o", page).code == 0 and (results / MARKER).is_file()
    (results / MARKER).unlink()
    (results / "diary.txt").write_text("mine")
    assert_bad_input(cli("report", world.scenario(), "-o", page), "routesim did not write")
    assert (results / "diary.txt").read_text() == "mine"

def test_replay_save_follows_the_same_rule_for_its_results_folder(cli, world, tmp_path):
    # `replay --save` checked only the scenario's folder in DIR, so a report could later take DIR for its own.
    foreign = tmp_path / "foreign"
    before = user_results(foreign)
    decisions = tmp_path / "d.parquet"
    assert_bad_input(cli("replay", world.scenario(), "--save", foreign, "--decisions", decisions),
                     "foreign is a folder routesim did not write", "--force")
    assert snapshot(foreign) == before and not decisions.exists()
    saved = tmp_path / "saved"
    assert cli("replay", world.scenario(), "--save", saved, "--decisions", saved / "d.parquet").code == 0
    assert (saved / MARKER).is_file() and (saved / "d.parquet").is_file()
    assert cli("replay", world.scenario("other"), "--save", saved).code == 0  # routesim's: written into again
    assert sorted(path.parent.name for path in saved.glob("*/summary.json")) == ["other", "tiny"]
    assert cli("report", "--from", saved, "-o", tmp_path / "r.html").code == 0


def test_a_file_in_the_way_of_an_output_folder_is_bad_input(cli, world, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert_bad_input(cli("replay", world.scenario(), "--decisions", blocker / "d.parquet"), "cannot write")
    assert blocker.read_text() == "x"


# Every failure typed.

def test_results_of_another_schema_version_name_the_rebuild_command(cli, world, tmp_path):
    results = tmp_path / "results"
    assert cli("replay", world.scenario(), "--save", results).code == 0
    summary_path = results / "tiny" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["provenance"]["schema_version"] = 1
    summary_path.write_text(json.dumps(summary))
    assert_bad_input(cli("report", "--from", results, "-o", tmp_path / "r.html"), "schema version 1",
                     "an older one", "routesim report SCENARIO... -o FILE --save DIR")
    summary_path.write_text("{not json")
    assert_bad_input(cli("report", "--from", results, "-o", tmp_path / "r.html"), "cannot read the saved summary")


def test_a_ts_in_an_iana_zone_is_converted_to_utc(cli, world):
    traffic = tiny_traffic().with_columns(pl.col("ts").dt.convert_time_zone("Asia/Kolkata"))
    world.write_data(traffic, tiny_outcomes())
    result = cli("replay", world.scenario(), "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)[0]["provenance"]["first_request"] == "2026-11-16T01:00:00+00:00"


def test_validation_reports_every_problem_in_one_pass(cli, world):
    traffic = pl.concat([tiny_traffic(), tiny_traffic().head(1)]).drop("slice")
    outcomes = tiny_outcomes().with_columns(pl.when(pl.col("request_id") == "c").then(-1).otherwise(pl.col("sample"))
                                            .alias("sample")).drop("grader")
    world.write_data(traffic, outcomes)
    result = cli("validate", world.data)
    assert_bad_input(result, "missing required column 'slice'", "missing required column 'grader'",
                     "1 duplicate row(s): request_id must be unique", "column 'sample': 2 negative")


def test_a_polars_panic_is_bad_input_and_a_real_bug_is_exit_3(cli, world, monkeypatch):
    """PanicException derives from BaseException, so it is caught by name at the command boundary."""
    import simulator.core.runner as runner

    class PanicException(BaseException):
        pass

    def panic(*args, **kwargs):
        raise PanicException("called `Option::unwrap()` on a `None` value")

    monkeypatch.setattr(runner, "replay", panic)
    assert_bad_input(cli("replay", world.scenario()), "the data cannot be processed", "Option::unwrap",
                     "where: routesim replay")  # the command as typed, not its click object

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(runner, "replay", bug)
    result = cli("replay", world.scenario())
    assert result.code == 3 and "internal error: ZeroDivisionError" in result.err and "Traceback" not in result.err


# Bounded resources.

def test_a_predicate_beyond_the_size_limit_is_refused(cli, world):
    long = " OR ".join(f"input_tokens = {i}" for i in range(1000))
    assert len(long) > limits.MAX_PREDICATE_CHARS
    path = world.scenario(policy={"rules": [{"when": long, "use": "big"}], "default": {"use": "small"}})
    assert_bad_input(cli("replay", path), "longer than the limit of 10,000", "policy.rules[0].when")


def test_yaml_aliases_that_expand_beyond_the_limit_are_refused(cli, world):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path = world.folder / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nname: bomb\n")
    assert_bad_input(cli("replay", path), "expands to more than 1,000,000 values", "bomb.yaml, line")


def test_a_duplicate_yaml_key_names_the_key_and_both_lines(cli, world):
    path = world.scenario()
    path.write_text(path.read_text() + "name: again\n")
    first = path.read_text().splitlines().index("name: tiny") + 1
    last = len(path.read_text().splitlines())
    assert_bad_input(cli("replay", path), f"has the key 'name' twice, on lines {first} and {last}")


def test_a_json_lines_row_longer_than_the_limit_is_dropped_and_counted(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_LINE_BYTES", 400)
    row = {"request_id": "c1", "call_type": "acompletion", "spend": 0.001, "total_tokens": 15, "prompt_tokens": 10,
           "completion_tokens": 5, "startTime": "2026-11-16T09:00:00Z", "endTime": "2026-11-16T09:00:01Z",
           "model": "gpt-4o", "metadata": {}}
    export = tmp_path / "spend.jsonl"
    export.write_text(json.dumps(row) + "\n" + json.dumps(row | {"request_id": "c2", "pad": "x" * 1000}) + "\n")
    result = cli("import", "litellm", export, "-o", tmp_path / "out", "--assume-passed")
    assert result.code == 0, result.err
    assert "line too long: 1" in result.out and "spend.jsonl, line 2" in result.out


def test_an_archive_that_expands_too_far_is_refused_before_decompressing(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MIN_ARCHIVE_ALLOWANCE", 1000)
    archive = tmp_path / "run.eval"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("header.json", json.dumps({"eval": {"model": "m"}}))
        handle.writestr("samples/1.json", " " * 2_000_000)  # expands about 1,000x
    assert_bad_input(cli("import", "inspect-ai", archive, "-o", tmp_path / "out"),
                     "more than 100x its size", "run.eval")


@pytest.mark.parametrize("args, fragment", [(["--resamples", str(limits.MAX_RESAMPLES + 1)], "--resamples"),
                                            (["--confidence", "nan"], "not a finite number"),
                                            (["--tolerance", "inf"], "not a finite number")])
def test_gate_options_out_of_bounds_are_usage_errors(cli, world, args, fragment):
    result = cli("gate", "--baseline", world.scenario(), "--candidate", world.scenario("other"), *args)
    assert result.code == BAD_INPUT and fragment in result.err


def test_sweep_points_beyond_the_limit_are_refused(cli, world):
    result = cli("sweep", world.scenario(), "--points", str(limits.MAX_SWEEP_POINTS + 1))
    assert result.code == BAD_INPUT and "--points" in result.err


@pytest.mark.parametrize("option, value", [("--requests", limits.MAX_GENERATE_REQUESTS + 1),
                                           ("--requests", 10**20), ("--days", limits.MAX_GENERATE_DAYS + 1)])
def test_generate_sizes_beyond_the_limits_are_refused_before_anything_is_written(cli, tmp_path, option, value):
    result = cli("generate", tmp_path / "week", option, str(value))
    assert result.code == BAD_INPUT and option in result.err
    assert not (tmp_path / "week").exists()


@pytest.mark.parametrize("seed", ["-3", str(limits.MAX_SEED + 1)])
def test_seeds_outside_the_keyed_draws_range_are_usage_errors(cli, world, tmp_path, seed):
    """-3 and 2^64 - 3 would key the same draws; every command refuses both rather than alias them."""
    result = cli("gate", "--baseline", world.scenario(), "--candidate", world.scenario("other"), "--seed", seed)
    assert result.code == BAD_INPUT and "--seed" in result.err
    result = cli("generate", tmp_path / "week", "--seed", seed)
    assert result.code == BAD_INPUT and "--seed" in result.err and not (tmp_path / "week").exists()


# Numbers that are numbers.

@pytest.mark.parametrize("override, key", [
    ({"quality_bar": float("nan")}, "quality_bar"),
    ({"policy": {"default": {"cascade": [{"model": "small", "accept": "confidence >= 0.7",
                                          "checker": {"cost_usd": float("inf"), "latency_ms": 1}},
                                         {"model": "big"}]}}}, "checker.cost_usd"),
    ({"sample": {"requests": 2, "seed": -1}}, "sample.seed"),
])
def test_nan_infinite_and_negative_numbers_in_a_scenario_are_refused(cli, world, override, key):
    assert_bad_input(cli("replay", world.scenario(**override)), key)


def test_nan_and_infinite_prices_are_refused_in_sheets_and_litellm_imports(cli, world, tmp_path):
    world.prices.write_text(world.prices.read_text().replace("input: 10.0", "input: .inf"))
    assert_bad_input(cli("replay", world.scenario()), "models.big[0].input", "finite number")
    litellm = tmp_path / "litellm.json"
    litellm.write_text('{"m": {"input_cost_per_token": NaN, "output_cost_per_token": 1e-06}}')
    result = cli("prices", "import-litellm", litellm, "--as-of", "2026-11-01", "--models", "m")
    assert_bad_input(result, "NaN is not a price")


def test_json_output_has_no_nan(cli, world):
    outcomes = tiny_outcomes().with_columns(pl.lit(None, pl.Float64).alias("score"))
    world.write_data(tiny_traffic(), outcomes)
    result = cli("replay", world.scenario(), "--json")
    assert result.code == 0, result.err
    json.loads(result.out, parse_constant=lambda word: pytest.fail(f"{word} in --json output"))


# Inputs read as written.

def test_a_yaml_file_with_a_byte_order_mark_is_read(cli, world):
    path = world.scenario()
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert cli("replay", path).code == 0


def test_a_folder_given_for_a_file_and_a_file_for_a_folder_say_so(cli, world, tmp_path):
    assert_bad_input(cli("replay", world.data), "is a folder, but a YAML file is expected")
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("x")
    path = world.scenario(data="data.txt")
    assert_bad_input(cli("replay", path), "is a file, but a data folder is expected")
    assert_bad_input(cli("import", "litellm", world.data, "-o", tmp_path / "out"), "is a folder, but an exported file")


def test_did_you_mean_escapes_invisible_characters():
    from simulator.core.errors import did_you_mean

    assert did_you_mean("slice", ["\u200bslice"]) == " Did you mean '\\u200bslice'?"


def test_a_byte_order_mark_in_a_csv_header_is_not_part_of_the_first_column(cli, tmp_path):
    grades = tmp_path / "grades.csv"
    grades.write_bytes("\ufeffid,model,ts,correct\nr1,small,2026-11-16T00:00:00Z,yes\n".encode())
    result = cli("import", "csv", grades, "-o", tmp_path / "out", "--map", "request_id=id",
                 "--map", "passed=correct", "--assume-latency-ms", "1")
    assert "\ufeff" not in result.out + result.err and "no column 'id'" not in result.err


def test_invisible_characters_in_a_message_are_shown_escaped(cli, world):
    path = world.scenario(window={"start": dt.date(2026, 11, 16), "end": dt.date(2026, 11, 17)},
                          policy={"default": {"use": "sm\u200ball"}})
    result = cli("replay", path)
    assert_bad_input(result, "\\u200b")
    assert "\u200b" not in result.err


# Strings from data are escaped in every output format.

def test_a_newline_or_bar_in_a_slice_name_cannot_break_the_gate_tables(cli, world, tmp_path):
    odd = "con|tract\nnext *line*"
    world.write_data(tiny_traffic().with_columns(pl.col("slice").replace("contract", odd)), tiny_outcomes())
    markdown = tmp_path / "gate.md"
    result = cli("gate", "--baseline", world.scenario(), "--candidate", world.scenario("other", policy={
        "default": {"use": "big"}}), "--resamples", "50", "--markdown", markdown)
    assert result.code in (0, 1), result.err
    rows = [line for line in markdown.read_text().splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 3  # header, rule, overall and the two slices: no row was split
    assert all(line.count("|") - line.count("\\|") == rows[0].count("|") for line in rows)
    assert "con\\|tract\\\\u000anext \\*line\\*" in markdown.read_text()
    assert "con|tract\\u000anext *line*" in result.out


def test_csv_text_cells_that_a_spreadsheet_would_run_are_written_as_text(tmp_path):
    from simulator.cli.views import write_table

    cells = ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)", "\tq", "\r=1", "plain", "a=b", None]
    write_table(pl.DataFrame({"slice": cells, "change": [-0.5] * len(cells)}), tmp_path / "t.csv")
    back = pl.read_csv(tmp_path / "t.csv")
    assert back["slice"].to_list() == [*("'" + cell for cell in cells[:6]), "plain", "a=b", None]
    assert back["change"].to_list() == [-0.5] * len(cells)  # numbers stay numbers


# Prompt text stays where it was.

def test_prompt_text_columns_are_never_copied_into_outputs(cli, world, tmp_path):
    secret = "PROMPT-TEXT-7f3a"
    traffic = tiny_traffic().with_columns(pl.lit(secret).alias("prompt"), pl.lit(secret).alias("messages"))
    world.write_data(traffic, tiny_outcomes().with_columns(pl.lit(secret).alias("completion")))
    scenario = world.scenario()
    assert cli("replay", scenario, "--decisions", tmp_path / "d.parquet", "--save", tmp_path / "saved").code == 0
    assert cli("sweep", scenario, "-o", tmp_path / "points.csv").code == 0
    written = [tmp_path / "d.parquet", tmp_path / "points.csv", *(tmp_path / "saved").rglob("*.*")]
    assert len(written) > 3 and not [path for path in written if secret.encode() in path.read_bytes()]


def test_yaml_is_read_alike_by_the_fast_and_the_python_loader_and_within_the_same_limits(tmp_path):
    # read_yaml takes libyaml's loader when a prescan bounds the block nesting (a 10,000-rule scenario
    # reads about six times faster); it must read every shipped file as the Python loader does and refuse
    # the same inputs, here one that passes the prescan (20 block levels) but nests 80 deep with flow lists.
    import yaml

    from simulator.core import validation
    from simulator.core.paths import PROJECT

    for path in sorted(PROJECT.glob("scenarios/**/*.yaml")) + sorted(PROJECT.glob("data/**/*.yaml")):
        text = path.read_text(encoding="utf-8-sig")
        assert validation._shallow(text)
        assert yaml.load(text, Loader=validation._FastLoader) == yaml.load(text, Loader=validation._Loader), path
    nested = "".join(" " * level + f"k{level}:\n" for level in range(20)) + " " * 20 + "v: " + "[" * 60 + "]" * 60
    path = tmp_path / "nested.yaml"
    path.write_text(nested + "\n")
    assert validation._shallow(nested)
    with pytest.raises(RoutesimError, match="nested more than 64 levels deep"):
        validation.read_yaml(path)


def test_a_newline_in_a_slice_name_is_escaped_in_the_replay_verdict_reasons(cli, world):
    # The reasons under the comparison name the slices that fall short; like the gate's text, they show a
    # newline in a name as \u000a, so no reason is split over two lines.
    odd = "con|tract\nnext *line*"
    world.write_data(tiny_traffic().with_columns(pl.col("slice").replace("contract", odd)), tiny_outcomes())
    result = cli("replay", world.scenario(quality_bar=0.99),
                 world.scenario("other", quality_bar=0.99, policy={"default": {"use": "big"}}))
    assert result.code == 0, result.err
    assert "con|tract\\u000anext *line*" in result.out
    assert not any(line.startswith("next *line*") for line in result.out.splitlines())
    # The report's comparison writes the same reason, escaped the same way, in its cell.
    page = world.folder / "report.html"
    assert cli("report", world.scenario(quality_bar=0.99), world.scenario("other", quality_bar=0.99, policy={
        "default": {"use": "big"}}), "-o", page).code == 0
    cells = re.findall(r'data-metric="reasons">(.*?)</td>', page.read_text())
    assert any("con|tract\\u000anext *line*" in cell for cell in cells)
    assert not any("\n" in cell for cell in cells)


def test_generate_over_its_own_earlier_folder_replaces_it_whole(cli, tmp_path):
    # The week was streamed into the folder in place: an earlier folder's other files (a README describing
    # another week) stayed beside the new one.
    week = tmp_path / "week"
    assert cli("generate", week, "--requests", "40", "--days", "1", "--seed", "1").code == 0
    (week / "README.md").write_text("50,000 requests")
    assert cli("generate", week, "--requests", "30", "--days", "1", "--seed", "2").code == 0
    assert sorted(path.name for path in week.iterdir()) == [".routesim-output", "outcomes.parquet", "traffic.parquet"]
    assert pl.read_parquet(week / "traffic.parquet").height == 30
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging folder left


def test_a_failed_write_names_the_destination_not_its_temporary_file(tmp_path):
    # A full disk surfaced as 'where: .../.d.parquet.x1y2.tmp', a file the user never named.
    from simulator.core.errors import RoutesimError
    from simulator.core.outputs import atomic_file

    destination = tmp_path / "d.parquet"
    with pytest.raises(RoutesimError) as failed, atomic_file(destination) as temporary:
        raise OSError(28, "No space left on device", str(temporary))
    assert failed.value.where == str(destination) and "No space left on device" in str(failed.value)
    assert list(tmp_path.iterdir()) == []  # neither the destination nor the temporary file is left
