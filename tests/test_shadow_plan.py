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
    outcomes = pl.concat([outcomes, pl.DataFrame([outcome_row(undrawn, "big", latency_ms=300.0)], schema=OUTCOME_SCHEMA)])
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
