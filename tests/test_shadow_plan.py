"""`routesim plan-shadow` and bringing the shadow answers back with `import ... --plan`."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest
import yaml

from simulator.analyses.shadow_plan import required_size, wilson_halfwidth
from simulator.core.stats import wilson_interval, z_score
from tests.conftest import OUTCOME_SCHEMA, TINY_PRICES, outcome_row

Z = z_score(0.95)


@pytest.mark.parametrize("rate", [0.5, 0.9, 0.1])
def test_the_size_is_the_smallest_whose_wilson_interval_is_narrow_enough(rate):
    n = int(required_size(np.array([rate]), 0.05, Z, np.array([100_000]))[0])

    def half(trials):
        low, high = wilson_interval(rate * trials, trials)
        return (high - low) / 2

    assert half(n) <= 0.05 < half(n - 1)
    assert wilson_halfwidth(n, rate, Z) == pytest.approx(half(n))


def test_a_stratum_never_asks_for_more_than_it_has():
    assert required_size(np.array([0.5, 0.5]), 0.01, Z, np.array([30, 5])).tolist() == [30, 5]


MESSAGES = json.dumps([{"role": "user", "content": "secret <b>prompt</b> & more"}])


@pytest.fixture
def served(world):
    """12 faq requests and 4 contract requests; small served them all; each logs its messages."""
    ids = [f"r{i:02d}" for i in range(16)]
    traffic = pl.DataFrame({
        "request_id": ids,
        "ts": [dt.datetime(2026, 11, 16, 0, i, tzinfo=dt.UTC) for i in range(16)],
        "slice": ["faq"] * 12 + ["contract"] * 4, "input_tokens": [1000] * 16, "messages": [MESSAGES] * 16})
    outcomes = pl.DataFrame([outcome_row(i, "small", passed=int(i[1:]) % 4 != 0) for i in ids], schema=OUTCOME_SCHEMA)
    world.write_data(traffic, outcomes)
    world.prices.write_text(yaml.safe_dump(TINY_PRICES))
    return world


def _plan(cli, world, *extra):
    out = world.folder / "plan"
    result = cli("plan-shadow", world.data, "--models", "small,big", "--halfwidth", "0.3", "--seed", "3",
                 "-o", out, "--prices", world.prices, *extra)
    assert result.code == 0, result.err
    return out


def test_a_plan_draws_each_slice_at_its_stated_probability(cli, served):
    out = _plan(cli, served)
    manifest = pl.read_parquet(out / "manifest.parquet")
    plan = json.loads((out / "plan.json").read_text())
    strata = {row["slice"]: row for row in plan["strata"]}
    # big has no graded answers anywhere (0.5 expected). Wilson's half-width at p = 0.5, z = 1.96:
    # n = 6: 1.96 sqrt(0.25/6 + 3.8415/144) / (1 + 3.8415/6) = 0.312; n = 7: 0.2976 <= 0.3. So faq draws
    # 7 of 12 and contract all 4 of its 4.
    assert (strata["faq"]["drawn"], strata["contract"]["drawn"]) == (7, 4)
    per_request = manifest.group_by("request_id", "stratum").agg(pl.col("inclusion_probability").first(),
                                                                  pl.col("model").sort())
    assert per_request.filter(pl.col("stratum") == "faq")["inclusion_probability"].unique().to_list() == [7 / 12]
    assert per_request.filter(pl.col("stratum") == "contract")["inclusion_probability"].unique().to_list() == [1.0]
    assert per_request["model"].to_list() == [["big", "small"]] * 11
    # The served answers exist: only big is re-run.
    assert manifest.filter("rerun")["model"].unique().to_list() == ["big"]
    # 11 re-runs of big: 1000 input tokens at $10/M plus the slice's mean 100 output tokens at $20/M.
    assert plan["expected_cost_usd"] == pytest.approx(11 * (1000 * 10 + 100 * 20) / 1e6)


def test_a_budget_scales_every_slice_down(cli, served):
    plan = json.loads((_plan(cli, served, "--budget", "0.07") / "plan.json").read_text())
    drawn = {row["slice"]: row["drawn"] for row in plan["strata"]}
    # $0.132 planned over a $0.07 budget: each slice keeps floor(size x 0.07 / 0.132): 7 -> 3, 4 -> 2.
    assert drawn == {"faq": 3, "contract": 2}
    assert plan["expected_cost_usd"] <= 0.07


def test_batch_files_hold_the_messages_and_nothing_else_does(cli, served):
    out = _plan(cli, served)
    files = sorted((out / "batch").iterdir())
    assert [f.name for f in files] == ["big-001.jsonl"]
    lines = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(lines) == 11
    assert lines[0] | {"custom_id": None} == {"custom_id": None, "method": "POST", "url": "/v1/chat/completions",
                                             "body": {"model": "big", "messages": json.loads(MESSAGES)}}
    for path in (out / "manifest.parquet", out / "plan.json"):
        assert b"secret" not in path.read_bytes()


def test_batch_files_split_at_the_line_limit(served):
    from simulator.analyses.shadow_plan import batch_files, plan_shadow
    from simulator.core.contract import load_data

    from simulator.core.prices import load_prices

    data = load_data(served.data)  # big never answered: the sheet names it
    plan = plan_shadow(data, ["small", "big"], 0.3, 3, sheet=load_prices(served.prices))
    files = batch_files(plan, data, max_lines=5)
    assert {name: len(lines) for name, lines in files.items()} == {"big-001.jsonl": 5, "big-002.jsonl": 5,
                                                                   "big-003.jsonl": 1}


def test_shadow_answers_come_back_with_their_inclusion_probabilities(cli, served, tmp_path):
    out = _plan(cli, served)
    manifest = pl.read_parquet(out / "manifest.parquet").filter("rerun")
    rows = [{"request_id": r, "model": "big-2026-01-01", "ts": "2026-11-16T00:00:00Z", "input_tokens": 1000,
             "output_tokens": 90, "latency_ms": 0, "passed": "true"} for r in manifest["request_id"]]
    rows.append({**rows[0], "request_id": "r99"})  # not in the plan
    pl.DataFrame(rows).write_csv(tmp_path / "answers.csv")
    result = cli("import", "csv", tmp_path / "answers.csv", "-o", served.data, "--plan", out)
    assert result.code == 0, result.err + result.out
    outcomes = pl.read_parquet(served.data / "outcomes.parquet")
    big = outcomes.filter(pl.col("model") == "big")
    assert big.height == 11 and big["inclusion_probability"].null_count() == 0
    drawn = manifest.select("request_id", "inclusion_probability")
    served_rows = outcomes.filter(pl.col("model") == "small").join(drawn, on="request_id", suffix="_plan")
    assert served_rows["inclusion_probability"].equals(served_rows["inclusion_probability_plan"], check_names=False)
    assert outcomes.filter(pl.col("model") == "small")["inclusion_probability"].null_count() == 16 - 11
    assert "not a re-run of the plan" in result.out
    assert b"secret" not in (served.data / "outcomes.parquet").read_bytes()
    # The sample is now replayable design-weighted.
    scenario = served.scenario("big", policy={"default": {"use": "big"}})
    estimated = cli("estimate", scenario, "--json")
    assert estimated.code == 0, estimated.err
    assert json.loads(estimated.out)[0]["sampled"] == 11


def _batch_output(path, ids, model="big-2026-01-01"):
    """An OpenAI Batch output file answering `ids` (chat completions, created 2026-11-16 00:00 UTC)."""
    lines = [json.dumps({"id": f"batch_req_{r}", "custom_id": r, "error": None, "response": {
        "status_code": 200, "body": {"object": "chat.completion", "created": 1794787200, "model": model,
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."},
                                                  "finish_reason": "stop"}],
                                     "usage": {"prompt_tokens": 1000, "completion_tokens": 90}}}}) for r in ids]
    path.write_text("\n".join(lines) + "\n")


def test_batch_answers_take_their_models_served_latency_or_say_it_is_unavailable(cli, served, tmp_path):
    out = _plan(cli, served)
    reruns = pl.read_parquet(out / "manifest.parquet").filter("rerun")["request_id"].to_list()
    _batch_output(tmp_path / "output.jsonl", reruns)
    result = cli("import", "openai-batch", tmp_path / "output.jsonl", "-o", served.data, "--plan", out,
                 "--assume-latency-ms", "0", "--assume-passed")
    assert result.code == 0, result.err + result.out
    big = pl.read_parquet(served.data / "outcomes.parquet").filter(pl.col("model") == "big")
    # The served log has no answer of big: nothing stands in for the batch's missing latency.
    assert big["latency_source"].unique().to_list() == ["unavailable"]
    scenario = served.scenario("big", policy={"default": {"use": "big"}})
    found = json.loads(cli("estimate", scenario, "--json").out)[0]
    assert "latency_p95_ms" not in {e["metric"] for e in found["estimates"]}
    assert found["diagnostics"]["latency"].startswith("unavailable: 11 batch answer(s)")


def test_batch_answers_of_a_served_model_take_its_median_served_latency(cli, served, tmp_path):
    out = _plan(cli, served)
    reruns = pl.read_parquet(out / "manifest.parquet").filter("rerun")["request_id"].to_list()
    # Serve one undrawn faq request by big, at 300 ms: the faq batch answers of big take it.
    traffic = pl.read_parquet(served.data / "traffic.parquet")
    outcomes = pl.read_parquet(served.data / "outcomes.parquet")
    undrawn = traffic.filter((pl.col("slice") == "faq") & ~pl.col("request_id").is_in(reruns))["request_id"][0]
    outcomes = pl.concat([outcomes,
                          pl.DataFrame([outcome_row(undrawn, "big", latency_ms=300.0)], schema=OUTCOME_SCHEMA)])
    served.write_data(traffic, outcomes)
    _batch_output(tmp_path / "output.jsonl", reruns)
    assert cli("import", "openai-batch", tmp_path / "output.jsonl", "-o", served.data, "--plan", out,
               "--assume-latency-ms", "0", "--assume-passed").code == 0
    big = (pl.read_parquet(served.data / "outcomes.parquet").filter(pl.col("model") == "big")
           .join(traffic.select("request_id", "slice"), on="request_id"))
    faq = big.filter((pl.col("slice") == "faq") & (pl.col("request_id") != undrawn))
    assert faq["latency_ms"].unique().to_list() == [300.0]
    assert faq["latency_source"].unique().to_list() == ["served_median"]
    assert big.filter(pl.col("slice") == "contract")["latency_source"].unique().to_list() == ["unavailable"]


def test_a_plan_replaces_its_own_earlier_folder_but_not_a_folder_routesim_did_not_write(cli, served):
    from tests.test_reliability import assert_bad_input

    out = _plan(cli, served)
    assert (out / ".routesim-output").is_file()
    (out / "stale.txt").write_text("from the earlier plan")
    again = _plan(cli, served, "--seed", "4")  # no --force: routesim wrote it
    assert again == out and not (out / "stale.txt").exists()
    foreign = served.folder / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    args = ["plan-shadow", served.data, "--models", "small,big", "--halfwidth", "0.3", "--seed", "3", "-o", foreign,
            "--prices", served.prices]
    assert_bad_input(cli(*args), "routesim did not write", "--force")
    assert (foreign / "mine.txt").read_text() == "keep me"
    assert cli(*args, "--force").code == 0 and (foreign / ".routesim-output").is_file()


def test_a_candidate_the_data_never_answered_is_refused_without_a_price_sheet(world, cli, tmp_path):
    # Without --prices the data's answers name the models there are; a typo is refused with a suggestion
    # rather than planned as re-runs on a model that does not exist.
    result = cli("plan-shadow", world.data, "--models", "small,bgi", "--halfwidth", "0.3", "--seed", "3",
                 "-o", tmp_path / "plan")
    assert result.code == 2 and "'bgi' has no answer in the data folder" in result.err
    assert "Did you mean 'big'?" in result.err and "--prices" in result.err
    assert not (tmp_path / "plan").exists()


# Importing a plan's answers twice, or a file that repeats one: a hand-built served log and plan. small served
# r1..r4 (faq r1, r2, r4; contract r3); the plan re-runs big on r1 and r2 (2 of faq's 3: 2/3) and on r3 (1).
PLANNED = {"r1": 2 / 3, "r2": 2 / 3, "r3": 1.0}


@pytest.fixture
def planned(world):
    ids = ["r1", "r2", "r3", "r4"]
    traffic = pl.DataFrame({"request_id": ids, "ts": [dt.datetime(2026, 11, 16, 0, i, tzinfo=dt.UTC) for i in range(4)],
                            "slice": ["faq", "faq", "contract", "faq"], "input_tokens": [1000] * 4})
    world.write_data(traffic, pl.DataFrame([outcome_row(r, "small") for r in ids], schema=OUTCOME_SCHEMA))
    plan = world.folder / "plan"
    plan.mkdir()
    pl.DataFrame([{"request_id": r, "model": m, "stratum": "contract" if r == "r3" else "faq",
                   "inclusion_probability": p, "rerun": m == "big"}
                  for r, p in PLANNED.items() for m in ("small", "big")]).write_parquet(plan / "manifest.parquet")
    world.plan = plan
    return world


def _answers(path, *rows, **columns):
    """A CSV of big's answers, one per (request, output tokens, latency ms), graded passed, with `columns` added
    as constant columns."""
    frame = pl.DataFrame([{"request_id": r, "model": "big", "ts": "2026-11-16T01:00:00Z", "input_tokens": 1000,
                           "output_tokens": out, "latency_ms": ms, "passed": "true"} for r, out, ms in rows])
    frame.with_columns(pl.lit(value).alias(name) for name, value in columns.items()).write_csv(path)
    return path


def _import(cli, world, path, *extra):
    return cli("import", "csv", path, "-o", world.data, "--plan", world.plan, *extra)


def _big(world) -> dict:
    """request -> (output tokens, latency ms, passed, inclusion probability) of big's answers in the folder."""
    big = pl.read_parquet(world.data / "outcomes.parquet").filter(pl.col("model") == "big").sort("request_id")
    assert big["sample"].to_list() == [0] * big.height
    return {row[0]: row[1:] for row in big.select("request_id", "output_tokens", "latency_ms", "passed",
                                                   "inclusion_probability").iter_rows()}


def _report(world) -> dict:
    return json.loads((world.data / "import-report.json").read_text())["imports"][-1]


def test_a_repeated_answer_in_the_file_is_dropped_and_counted(cli, planned, tmp_path):
    # r1 answered twice as sample 0, 1 ms apart: the file contradicts itself, so the import keeps a fixed one
    # (the answer whose fields sort first: 500 ms) and counts the other, in either order of the rows.
    rows = [("r1", 90, 501.0), ("r1", 90, 500.0), ("r2", 80, 400.0), ("r3", 70, 300.0)]
    result = _import(cli, planned, _answers(tmp_path / "answers.csv", *rows, sample=0))
    assert result.code == 0, result.err + result.out
    assert "a repeat of an answer already in this file (one answer per re-run is kept): 1" in result.out
    report = _report(planned)
    assert (report["rows_read"], report["shadow_answers_added"], report["shadow_reruns_missing"]) == (4, 3, 0)
    assert report["dropped"]["a repeat of an answer already in this file (one answer per re-run is kept)"]["rows"] == 1
    assert _big(planned) == {"r1": (90, 500.0, True, 2 / 3), "r2": (80, 400.0, True, 2 / 3),
                             "r3": (70, 300.0, True, 1.0)}
    # The same rows in the other order keep the same answer: a second import must find it the same.
    planned.write_data(pl.read_parquet(planned.data / "traffic.parquet"),
                       pl.read_parquet(planned.data / "outcomes.parquet").filter(pl.col("model") == "small"))
    assert _import(cli, planned, _answers(tmp_path / "reversed.csv", *rows[::-1], sample=0)).code == 0
    assert _big(planned)["r1"] == (90, 500.0, True, 2 / 3)


def test_of_two_answers_to_one_re_run_the_earlier_is_kept(cli, planned, tmp_path):
    # Without a sample column, calls of one model to one request are its samples in time order: the earlier
    # (12:00, 700 ms) is answer 0, the later (13:00, 300 ms) a repeat.
    path = _answers(tmp_path / "answers.csv", ("r1", 60, 300.0), ("r1", 90, 700.0), ("r2", 80, 400.0))
    pl.read_csv(path).with_columns(ts=pl.Series(["2026-11-16T13:00:00Z", "2026-11-16T12:00:00Z",
                                                 "2026-11-16T12:00:00Z"])).write_csv(path)
    result = _import(cli, planned, path)
    assert result.code == 0, result.err + result.out
    assert _big(planned) == {"r1": (90, 700.0, True, 2 / 3), "r2": (80, 400.0, True, 2 / 3)}
    assert "1 planned re-run(s) have no answer yet" in result.out  # r3


def test_importing_the_same_answers_again_adds_nothing_and_says_they_are_there(cli, planned, tmp_path):
    path = _answers(tmp_path / "answers.csv", ("r1", 90, 500.0), ("r2", 80, 400.0), ("r3", 70, 300.0))
    assert _import(cli, planned, path).code == 0
    first = pl.read_parquet(planned.data / "outcomes.parquet")
    again = _import(cli, planned, path)
    assert again.code == 0, again.err + again.out
    assert "already in the data folder (an earlier import holds the same answer): 3" in again.out
    assert "have no answer yet" not in again.out  # the folder answers every re-run: nothing to pay for again
    report = _report(planned)
    assert (report["rows_read"], report["shadow_answers_added"], report["shadow_reruns_missing"]) == (3, 0, 0)
    assert pl.read_parquet(planned.data / "outcomes.parquet").equals(first)


def test_the_re_runs_still_missing_are_counted_against_the_folder(cli, planned, tmp_path):
    # Two files of answers: the first answers r1, the second r1 again and r3. Only r2 is then missing.
    first = _import(cli, planned, _answers(tmp_path / "one.csv", ("r1", 90, 500.0)))
    assert "added 1 shadow answer(s) with the plan's inclusion probabilities; 2 planned re-run(s) have no answer " \
           "yet" in first.out
    second = _import(cli, planned, _answers(tmp_path / "two.csv", ("r1", 90, 500.0), ("r3", 70, 300.0)))
    assert second.code == 0, second.err + second.out
    assert "added 1 shadow answer(s) with the plan's inclusion probabilities; 1 planned re-run(s) have no answer " \
           "yet" in second.out
    assert _report(planned)["dropped"]["already in the data folder (an earlier import holds the same answer)"] == {
        "rows": 1, "examples": ["request r1, model big"]}
    assert _big(planned) == {"r1": (90, 500.0, True, 2 / 3), "r3": (70, 300.0, True, 1.0)}


def test_an_answer_that_differs_from_the_folders_is_refused_naming_the_fields(cli, planned, tmp_path):
    from tests.test_reliability import assert_bad_input, snapshot

    assert _import(cli, planned, _answers(tmp_path / "answers.csv", ("r1", 90, 500.0), ("r3", 70, 300.0))).code == 0
    before = snapshot(planned.data)
    rerun = _answers(tmp_path / "rerun.csv", ("r1", 95, 500.0), ("r2", 80, 400.0), ("r3", 70, 300.0))
    pl.read_csv(rerun).with_columns(passed=pl.Series(["false", "true", "true"])).write_csv(rerun)
    assert_bad_input(_import(cli, planned, rerun),
                     "1 answer(s) differ from the answer the data folder already holds to the same re-run",
                     "nothing was written",
                     "request r1, model big: output_tokens 90 in the data folder, 95 in the file; "
                     "passed true in the data folder, false in the file",
                     "take these re-runs out of the file")
    assert snapshot(planned.data) == before  # not even r2, which the folder lacked


def test_a_grade_merged_since_or_another_assumed_latency_is_no_difference(cli, planned, tmp_path):
    # A batch's answers come with an assumed latency and grade; a later --merge grades r1 failed. Importing the
    # batch again, with another assumed latency, finds the same answers: the merged grade stays.
    _batch_output(tmp_path / "output.jsonl", ["r1", "r3"])
    batch = ["import", "openai-batch", tmp_path / "output.jsonl", "-o", planned.data, "--plan", planned.plan,
             "--assume-passed"]
    assert cli(*batch, "--assume-latency-ms", "0").code == 0
    grades = tmp_path / "grades.csv"
    pl.DataFrame({"request_id": ["r1"], "model": ["big"], "passed": ["false"]}).write_csv(grades)
    assert cli("import", "csv", grades, "-o", planned.data, "--merge").code == 0
    before = pl.read_parquet(planned.data / "outcomes.parquet")
    again = cli(*batch, "--assume-latency-ms", "50")
    assert again.code == 0, again.err + again.out
    assert "already in the data folder (an earlier import holds the same answer): 2" in again.out
    assert pl.read_parquet(planned.data / "outcomes.parquet").equals(before)
    assert _big(planned)["r1"] == (90, 0.0, False, 2 / 3)


def test_a_grade_the_folders_answer_lacks_is_pointed_to_merge(cli, planned, tmp_path):
    # The batch's answer (1000 in, 90 out, tier batch, latency and grade assumed) comes back as a graded CSV
    # row that records no tier: the same answer, whose grade belongs in --merge.
    _batch_output(tmp_path / "output.jsonl", ["r1"])
    assert cli("import", "openai-batch", tmp_path / "output.jsonl", "-o", planned.data, "--plan", planned.plan,
               "--assume-latency-ms", "0", "--assume-passed").code == 0
    graded = _import(cli, planned, _answers(tmp_path / "graded.csv", ("r1", 90, 500.0)))
    assert graded.code == 0, graded.err + graded.out
    assert "1 answer(s) already in the data folder have a grade in this file that the folder's lack" in graded.out
    assert "--merge" in graded.out


def test_a_second_batch_takes_no_latency_the_first_one_assumed(cli, planned, tmp_path):
    # big never served: the first batch's r1 keeps its assumed 0 ms as unavailable. Its faq sibling r2, from a
    # second batch, must not take that 0 ms as big's served median in faq.
    batch = ["-o", planned.data, "--plan", planned.plan, "--assume-latency-ms", "0", "--assume-passed"]
    _batch_output(tmp_path / "one.jsonl", ["r1"])
    assert cli("import", "openai-batch", tmp_path / "one.jsonl", *batch).code == 0
    _batch_output(tmp_path / "two.jsonl", ["r2"])
    assert cli("import", "openai-batch", tmp_path / "two.jsonl", *batch).code == 0
    big = pl.read_parquet(planned.data / "outcomes.parquet").filter(pl.col("model") == "big").sort("request_id")
    assert big["latency_source"].to_list() == ["unavailable", "unavailable"]


def _terminal(cli, world, *extra) -> str:
    out = world.folder / "plan"
    result = cli("plan-shadow", world.data, "--models", "small,big", "--halfwidth", "0.3", "--seed", "3",
                 "-o", out, "--prices", world.prices, *extra)
    assert result.code == 0, result.err
    return " ".join(result.out.split())


def test_the_plan_states_its_target_and_which_slices_their_size_keeps_from_it(cli, served):
    """contract has 4 requests: all drawn, its interval is still wider than ±30 points; faq meets it."""
    text = _terminal(cli, served)
    assert "95% Wilson interval no wider than ±30.0 pts" in text
    assert "too few requests to reach the target, every one drawn: contract" in text and "budget" not in text
    plan = json.loads((served.folder / "plan" / "plan.json").read_text())
    assert {row["slice"]: row["short_of_target"] for row in plan["strata"]} == {"contract": "slice size", "faq": None}


def test_the_plan_says_when_the_budget_keeps_a_slice_from_the_target(cli, served):
    text = _terminal(cli, served, "--budget", "0.07")
    # $0.132 planned over $0.07: every slice cut to 0.07 / 0.132 = 53.0% of its size.
    assert "the budget of $0.0700 cut every slice's sample to 53.0% of what the target needs" in text
    assert "the budget keeps above the target: faq" in text
    assert "too few requests to reach the target, every one drawn: contract" in text


def test_a_half_width_just_over_the_target_does_not_print_as_the_target():
    from types import SimpleNamespace

    from simulator.cli.served_views import plan_table

    strata = pl.DataFrame({"slice": ["a", "b"], "requests": [100, 100], "drawn": [50, 50],
                           "inclusion_probability": [0.5, 0.5], "halfwidth_reached": [0.030003, 0.0299],
                           "short_of_target": ["budget", None]})
    plan = SimpleNamespace(strata=strata, expected_cost_usd=None,
                           settings={"halfwidth": 0.03, "confidence": 0.95, "budget_usd": None, "budget_scale": None})
    table = plan_table(plan)
    assert list(table.columns[-1].cells) == ["±3.0003 pts", "±2.99 pts"]
    assert "no wider than ±3.0 pts" in str(table.caption)


def test_a_half_width_of_zero_is_refused_with_the_plus_minus_sign(cli, served):
    from tests.test_reliability import assert_bad_input

    result = cli("plan-shadow", served.data, "--models", "small,big", "--halfwidth", "0", "--seed", "3",
                 "-o", served.folder / "plan")
    assert_bad_input(result, "--halfwidth", "got 0.0", "±2 percentage points")
    assert "+-" not in result.err
