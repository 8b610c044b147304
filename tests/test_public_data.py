"""The shipped public datasets: they validate, and their numbers are the sources' numbers.

Every expected number here is computed from the upstream files in shared/public-data with the standard
library (csv, json), independently of simulator/public_data.py. In CI a copy of shared/ sits beside the
clone, as it does here.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from simulator.core.contract import validate_folder
from simulator.core.prices import load_prices

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "public-data"
DATA = ROOT / "data"
SCENARIOS = ROOT / "scenarios"
DATASETS = ("routerbench", "routellm", "routerarena")
csv.field_size_limit(1 << 30)


def replay(cli, *paths: Path) -> dict[str, dict]:
    result = cli("replay", "--json", *paths)
    assert result.code == 0, result.err
    return {summary["scenario"]: summary for summary in json.loads(result.out)}


def outcomes(name: str) -> pl.DataFrame:
    return pl.read_parquet(DATA / name / "outcomes.parquet")


@pytest.mark.parametrize("name", DATASETS)
def test_each_shipped_dataset_validates_and_carries_its_licences(name):
    folder = DATA / name
    assert validate_folder(folder).ok, validate_folder(folder).problems
    files = {path.name for path in folder.iterdir()}
    assert {"traffic.parquet", "outcomes.parquet", "README.md", "LICENSE.llmperf-Apache-2.0.txt"} <= files
    assert any(file.startswith("LICENSE.") and "llmperf" not in file for file in files)
    assert sum(path.stat().st_size for path in folder.iterdir()) < 1_000_000


def test_the_conversion_reproduces_the_shipped_data(tmp_path):
    from simulator.datasets.public_data import build_all

    build_all(SOURCE, tmp_path)
    for name in DATASETS:
        for table in ("traffic.parquet", "outcomes.parquet"):
            assert pl.read_parquet(tmp_path / name / table).equals(pl.read_parquet(DATA / name / table)), (name, table)
        texts = [path for path in (DATA / name).iterdir() if path.suffix != ".parquet"]
        assert sorted(path.name for path in texts) == sorted(
            path.name for path in (tmp_path / name).iterdir() if path.suffix != ".parquet")
        for path in texts:  # README, licences, price sheet
            assert (tmp_path / name / path.name).read_text() == path.read_text(), path


# RouterBench ---------------------------------------------------------------------------------------

def routerbench_source() -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], dict[str, str]]:
    """score[model][sample_id], cost[model][sample_id] and slice[sample_id] from the CSVs. A sample id
    listed twice is one prompt: each model's score from the copy that has it, costs from the copy with
    the most scores (the README of data/routerbench explains why)."""
    copies: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(glob.glob(str(SOURCE / "routerbench-0shot-subset" / "*.csv"))):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                copies[row["sample_id"]].append(row)
    models = [key for key in next(iter(copies.values()))[0] if key and "|" not in key
              and key not in ("sample_id", "prompt", "eval_name", "oracle_model_to_route_to")]
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    costs: dict[str, dict[str, float]] = defaultdict(dict)
    slices = {}
    for sample_id, rows in copies.items():
        fullest = max(rows, key=lambda row: sum(row[model] != "" for model in models))
        slices[sample_id] = fullest["eval_name"]
        for model in models:
            (scores[model][sample_id],) = {float(row[model]) for row in rows if row[model] != ""}
            costs[model][sample_id] = float(fullest[f"{model}|total_cost"])
    return scores, costs, slices


def test_routerbench_has_every_prompt_once_with_all_eleven_models():
    scores, _, slices = routerbench_source()
    assert len(slices) == 3164 and len(scores) == 11
    table = outcomes("routerbench")
    assert table.height == 3164 * 11 and table["request_id"].n_unique() == 3164


def test_routerbench_pass_rates_and_recorded_costs_are_the_sources(cli):
    scores, costs, _ = routerbench_source()
    table = outcomes("routerbench").group_by("model").agg(pl.col("passed").mean(), pl.col("cost_usd").sum())
    for model, passed, cost in table.iter_rows():
        assert passed == pytest.approx(statistics.fmean(score == 1.0 for score in scores[model].values()), abs=1e-12)
        assert cost == pytest.approx(math.fsum(costs[model].values()), rel=1e-12)
    summaries = replay(cli, *sorted((SCENARIOS / "routerbench").glob("*.yaml")))
    for scenario, model in (("routerbench-gpt-4", "gpt-4-1106-preview"), ("routerbench-gpt-3.5", "gpt-3.5-turbo-1106"),
                            ("routerbench-mixtral", "mistralai/mixtral-8x7b-chat"),
                            ("routerbench-mistral-7b", "mistralai/mistral-7b-chat")):
        summary = summaries[scenario]
        assert summary["requests"] == 3164
        assert summary["pass_rate"] == pytest.approx(statistics.fmean(s == 1.0 for s in scores[model].values()))
        assert summary["total_cost_usd"] == pytest.approx(math.fsum(costs[model].values()), rel=1e-9)
        assert summary["provenance"]["price_sources"] == {model: "recorded"}


def test_routerbench_oracle_cascade_escalates_exactly_the_failures(cli):
    scores, costs, _ = routerbench_source()
    small, big = scores["mistralai/mixtral-8x7b-chat"], scores["gpt-4-1106-preview"]
    failing = [sample for sample, score in small.items() if score != 1.0]
    summary = replay(cli, SCENARIOS / "routerbench" / "cascade-oracle.yaml")["routerbench-cascade-oracle"]
    assert summary["escalation_rate"] == pytest.approx(len(failing) / 3164)
    assert summary["pass_rate"] == pytest.approx((3164 - len(failing) + sum(big[s] == 1.0 for s in failing)) / 3164)
    expected_cost = math.fsum(costs["mistralai/mixtral-8x7b-chat"].values()) + math.fsum(
        costs["gpt-4-1106-preview"][sample] for sample in failing)
    assert summary["total_cost_usd"] == pytest.approx(expected_cost, rel=1e-9)


@pytest.mark.parametrize("name", DATASETS)
def test_the_noisy_gate_disagrees_with_passed_about_one_time_in_ten(name):
    table = outcomes(name)
    wrong = (table["noisy_gate_pass"] != table["passed"]).mean()
    spread = 3 * math.sqrt(0.1 * 0.9 / table.height)  # three standard errors of a 10% rate
    assert abs(wrong - 0.10) < spread


# RouteLLM ------------------------------------------------------------------------------------------

WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def contaminated(benchmark: str) -> set[str]:
    with open(SOURCE / "routellm-evals" / "evals" / benchmark / "contaminated_prompts.jsonl", encoding="utf-8") as f:
        return {json.loads(line)["eval_prompt"] for line in f if line.strip()}


def mt_bench_turn_scores() -> dict[tuple[str, int], list[float]]:
    """The judge's turn scores per (model, question) of the questions kept after decontamination."""
    evals = SOURCE / "routellm-evals" / "evals" / "mt_bench"
    dirty = contaminated("mt_bench")
    with open(evals / "question.jsonl", encoding="utf-8") as handle:
        kept = {q["question_id"] for q in map(json.loads, handle) if q["turns"][0] not in dirty}
    turn_scores = defaultdict(list)
    with open(evals / "judgements.jsonl", encoding="utf-8") as handle:
        for judgement in map(json.loads, handle):
            if judgement["question_id"] in kept:
                turn_scores[judgement["model"], judgement["question_id"]].append(judgement["score"])
    return turn_scores


def routellm_source() -> dict[str, dict[str, list[bool]]]:
    """passed[slice][model] lists from the authors' CSVs and judgements, contaminated prompts left out."""
    passed: dict[str, dict[str, list[bool]]] = {"mmlu": defaultdict(list), "gsm8k": defaultdict(list),
                                               "mt_bench": defaultdict(list)}
    evals = SOURCE / "routellm-evals" / "evals"
    for benchmark, paths in (("mmlu", sorted(glob.glob(str(evals / "mmlu" / "responses" / "*.csv")))),
                             ("gsm8k", [str(evals / "gsm8k" / "gsm8k_responses.csv")])):
        dirty = contaminated(benchmark)
        for path in paths:
            with open(path, newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    if row["prompt"] not in dirty:
                        for model in (WEAK, STRONG):
                            passed[benchmark][model].append(row[model] == "True")
    for (model, _), scores in sorted(mt_bench_turn_scores().items()):
        passed["mt_bench"][model].append(statistics.fmean(scores) >= 8.0)
    return passed


def test_routellm_leaves_out_the_contaminated_prompts():
    passed = routellm_source()
    assert {name: len(by_model[STRONG]) for name, by_model in passed.items()} == \
        {"mmlu": 14037, "gsm8k": 1307, "mt_bench": 72}
    assert outcomes("routellm")["request_id"].n_unique() == 14037 + 1307 + 72


def test_routellm_pass_rates_are_the_sources(cli):
    passed = routellm_source()
    summaries = replay(cli, SCENARIOS / "routellm" / "gpt-4.yaml", SCENARIOS / "routellm" / "mixtral.yaml")
    for scenario, model in (("routellm-gpt-4", STRONG), ("routellm-mixtral", WEAK)):
        everything = [verdict for by_model in passed.values() for verdict in by_model[model]]
        summary = summaries[scenario]
        assert summary["pass_rate"] == pytest.approx(statistics.fmean(everything))
        by_slice = {row["slice"]: row["pass_rate"] for row in summary["by_slice"]}
        assert by_slice == pytest.approx({name: statistics.fmean(by_model[model]) for name, by_model in passed.items()})
        assert summary["provenance"]["price_sources"] == {model: "sheet"}


def test_routellm_costs_are_derived_from_its_dated_price_sheet(cli):
    sheet = load_prices(DATA / "routellm" / "prices.yaml")
    table = outcomes("routellm")
    assert table["cost_usd"].null_count() == table.height and set(table["cost_source"]) == {"price sheet prices.yaml"}
    summary = replay(cli, SCENARIOS / "routellm" / "gpt-4.yaml")["routellm-gpt-4"]
    (entry,) = sheet.models[STRONG]
    strong = table.filter(pl.col("model") == STRONG)
    expected = (strong["input_tokens"].sum() * entry.input + strong["output_tokens"].sum() * entry.output) / 1e6
    assert summary["total_cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert (entry.input, entry.output) == (10.0, 30.0)  # litellm 1.110.2's gpt-4-1106-preview


def test_routellm_mt_bench_scores_are_the_judges():
    table = outcomes("routellm").filter(pl.col("request_id").str.starts_with("mt_bench/"))
    means = dict(table.group_by("model").agg(pl.col("score").mean() * 10).iter_rows())
    turns = mt_bench_turn_scores()
    for model in (STRONG, WEAK):
        expected = statistics.fmean(score for (who, _), scores in turns.items() if who == model for score in scores)
        assert means[model] == pytest.approx(expected, abs=1e-12)
    assert (round(means[STRONG], 3), round(means[WEAK], 3)) == (9.212, 8.281)  # as the shared README reports


# RouterArena ---------------------------------------------------------------------------------------

def routerarena_source() -> dict[str, list[dict]]:
    found = {}
    for model in ("claude-3-haiku-20240307", "gemini-2.0-flash-001"):
        with open(SOURCE / "routerarena-cached" / f"{model}.jsonl", encoding="utf-8") as handle:
            found[model] = [json.loads(line) for line in handle if line.strip()]
    return found


def test_routerarena_pass_rates_tokens_and_recorded_costs_are_the_sources(cli):
    source = routerarena_source()
    summaries = replay(cli, SCENARIOS / "routerarena" / "gemini-flash.yaml",
                       SCENARIOS / "routerarena" / "claude-haiku.yaml")
    table = outcomes("routerarena")
    for scenario, model in (("routerarena-gemini-flash", "gemini-2.0-flash-001"),
                            ("routerarena-claude-haiku", "claude-3-haiku-20240307")):
        records = source[model]
        scores = [min(max(record["evaluation_result"]["score"], 0.0), 1.0) for record in records]
        summary = summaries[scenario]
        assert summary["requests"] == len(records) == 809
        assert summary["pass_rate"] == pytest.approx(statistics.fmean(score >= 0.5 for score in scores))
        assert summary["mean_score"] == pytest.approx(statistics.fmean(scores))
        assert summary["total_cost_usd"] == pytest.approx(
            math.fsum(record["evaluation_result"]["inference_cost"] for record in records), rel=1e-9)
        mine = table.filter(pl.col("model") == model)
        assert mine["input_tokens"].sum() == sum(record["token_usage"]["input_tokens"] for record in records)
        assert mine["output_tokens"].sum() == sum(record["token_usage"]["output_tokens"] for record in records)


# Latency -------------------------------------------------------------------------------------------

def test_latency_is_modelled_from_the_llmperf_medians_of_the_size_class():
    requests = defaultdict(list)
    for path in glob.glob(str(SOURCE / "llmperf-leaderboard" / "individual" / "*.json")):
        provider, size = Path(path).stem.rsplit("_", 1)
        requests[provider, size] = json.loads(Path(path).read_text())
    providers = {p for p, _ in requests if all((p, s) in requests for s in ("7b", "13b", "70b"))}
    ok = [r for (p, size), rs in requests.items() if p in providers and size == "13b" for r in rs
          if r["error_code"] is None and r["number_output_tokens"] > 1]
    ttft = statistics.median(r["ttft_s"] for r in ok) * 1000
    per_token = statistics.median((r["end_to_end_latency_s"] - r["ttft_s"]) / (r["number_output_tokens"] - 1)
                                  for r in ok) * 1000
    mixtral = outcomes("routerbench").filter(pl.col("model") == "mistralai/mixtral-8x7b-chat")
    expected = ttft + per_token * (mixtral["output_tokens"] - 1).clip(lower_bound=0)
    assert (mixtral["latency_ms"] - expected).abs().max() < 1e-6
    assert set(mixtral["latency_source"]) == {"modelled: LLMPerf 13b class"}


# Scenarios -----------------------------------------------------------------------------------------

def test_every_dataset_scenario_validates_and_says_its_latency_is_modelled(cli):
    paths = sorted(SCENARIOS.glob("rout*/*.yaml"))
    assert len(paths) == 14
    assert cli("validate", *paths).code == 0
    for summary in replay(cli, *paths).values():
        assert "latency modelled from LLMPerf" in summary["description"]


def test_the_noisy_gate_escalates_where_the_judge_says_fail(cli):
    gate = outcomes("routerbench").filter(pl.col("model") == "mistralai/mixtral-8x7b-chat")["noisy_gate_pass"]
    summary = replay(cli, SCENARIOS / "routerbench" / "cascade-noisy.yaml")["routerbench-cascade-noisy"]
    assert summary["escalation_rate"] == pytest.approx((~gate).mean())


def test_a_wrong_source_folder_is_named_and_nothing_is_written(cli, tmp_path):
    result = cli("public-data", "--source", tmp_path / "nothing", "--out", tmp_path / "out")
    assert result.code == 2 and "public data file not found" in result.err and "--source" in result.err
    assert not (tmp_path / "out").exists()
