"""The public datasets: the conversion's numbers are the sources' numbers, and the shipped data validates.

The conversion (`simulator/public_data.build_all`) is tested on every clone on small excerpts of the
upstream files, committed in tests/fixtures/public-data (its README says how they were cut, by
scripts/cut_public_data_fixtures.py): they are converted into a temporary folder, and every expected number
is computed from the same excerpts with the standard library (csv, json), independently of
simulator/datasets/public_data.py. The shipped data/ folders are checked where they are (they validate, carry their
licences, have the full sources' sizes); that they equal a full rebuild from the upstream files is checked
where those sit beside the clone, in ../shared/public-data (as in CI), and reported as skipped elsewhere.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from simulator.core.contract import validate_folder
from simulator.core.prices import load_prices

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "public-data"  # the full upstream files, beside the clone (in CI)
FIXTURES = ROOT / "tests" / "fixtures" / "public-data"  # excerpts of them, committed
DATA = ROOT / "data"
SCENARIOS = ROOT / "scenarios"
DATASETS = ("routerbench", "routellm", "routerarena")
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"  # RouteLLM's models
csv.field_size_limit(1 << 30)


def replay(cli, *paths: Path) -> dict[str, dict]:
    result = cli("replay", "--json", *paths)
    assert result.code == 0, result.err
    return {summary["scenario"]: summary for summary in json.loads(result.out)}


def outcomes(name: str) -> pl.DataFrame:
    """The shipped outcomes of a dataset."""
    return pl.read_parquet(DATA / name / "outcomes.parquet")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The excerpts converted by build_all into `data/`, beside copies of the datasets' scenarios (which
    name their data as ../../data/<dataset>), so that the shipped scenarios replay the converted excerpts."""
    from simulator.datasets.public_data import build_all

    root = tmp_path_factory.mktemp("converted")
    build_all(FIXTURES, root / "data")
    for name in DATASETS:
        shutil.copytree(SCENARIOS / name, root / "scenarios" / name)
    return root


def converted_outcomes(root: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(root / "data" / name / "outcomes.parquet")


# The shipped data ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DATASETS)
def test_each_shipped_dataset_validates_and_carries_its_licences(name):
    folder = DATA / name
    assert validate_folder(folder).ok, validate_folder(folder).problems
    files = {path.name for path in folder.iterdir()}
    assert {"traffic.parquet", "outcomes.parquet", "README.md", "LICENSE.llmperf-Apache-2.0.txt"} <= files
    assert any(file.startswith("LICENSE.") and "llmperf" not in file for file in files)
    assert sum(path.stat().st_size for path in folder.iterdir()) < 1_000_000


def test_the_shipped_datasets_have_the_full_sources_sizes():
    """The counts the shared README reports for the full upstream files, after deduplication (RouterBench)
    and decontamination (RouteLLM)."""
    routerbench = outcomes("routerbench")
    assert routerbench.height == 3164 * 11 and routerbench["request_id"].n_unique() == 3164
    routellm = outcomes("routellm")
    prompts = routellm["request_id"].unique().str.extract(r"^([a-z0-9_]+)/").value_counts()
    assert dict(prompts.iter_rows()) == {"mmlu": 14037, "gsm8k": 1307, "mt_bench": 72}
    assert routellm.height == 2 * (14037 + 1307 + 72)
    mt_bench = routellm.filter(pl.col("request_id").str.starts_with("mt_bench/"))
    means = dict(mt_bench.group_by("model").agg(pl.col("score").mean() * 10).iter_rows())
    assert (round(means[STRONG], 3), round(means[WEAK], 3)) == (9.212, 8.281)  # as the shared README reports
    routerarena = outcomes("routerarena")
    assert routerarena.height == 809 * 2 and routerarena["request_id"].n_unique() == 809


@pytest.mark.parametrize("name", DATASETS)
def test_the_noisy_gate_disagrees_with_passed_about_one_time_in_ten(name):
    table = outcomes(name)
    wrong = (table["noisy_gate_pass"] != table["passed"]).mean()
    spread = 3 * math.sqrt(0.1 * 0.9 / table.height)  # three standard errors of a 10% rate
    assert abs(wrong - 0.10) < spread


def test_the_conversion_reproduces_the_shipped_data(tmp_path):
    if not SOURCE.is_dir():
        pytest.skip(f"shared public data not found at {SOURCE}: the check that data/ equals a full rebuild "
                    "from the upstream files runs only where ../shared/public-data sits beside the clone "
                    "(as in CI); the conversion itself is tested here on the excerpts in tests/fixtures/public-data")
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


# The converted excerpts ------------------------------------------------------------------------------

# Each converted folder's licence files and the upstream licence text each must be.
LICENCE_TEXTS = {
    "routerbench": {"LICENSE.routerbench-MIT.txt": "routerbench-0shot-subset/LICENSE.routerbench-MIT.txt"},
    "routellm": {"LICENSE.routellm-Apache-2.0.txt": "routellm-evals/LICENSE.upstream-Apache-2.0.txt",
                 "LICENSE.litellm-MIT.txt": "price-sheets/litellm-1.110.2/LICENSE.upstream.txt"},
    "routerarena": {"LICENSE.routerarena-Apache-2.0.txt": "routerarena-cached/LICENSE.upstream-Apache-2.0.txt"},
}


@pytest.mark.parametrize("name", DATASETS)
def test_the_converted_excerpts_validate_and_carry_the_upstream_licences(converted, name):
    folder = converted / "data" / name
    assert validate_folder(folder).ok, validate_folder(folder).problems
    llmperf = {"LICENSE.llmperf-Apache-2.0.txt": "llmperf-leaderboard/LICENSE.upstream-Apache-2.0.txt"}
    licences = LICENCE_TEXTS[name] | llmperf
    assert {path.name for path in folder.glob("LICENSE.*")} == set(licences)
    for file, upstream in licences.items():
        assert (folder / file).read_text(encoding="utf-8") == (FIXTURES / upstream).read_text(encoding="utf-8")
    assert (folder / "README.md").is_file()


# RouterBench ---------------------------------------------------------------------------------------

def routerbench_source() -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], dict[str, str]]:
    """score[model][sample_id], cost[model][sample_id] and slice[sample_id] from the CSVs. A sample id
    listed twice is one prompt: each model's score from the copy that has it, costs from the copy with
    the most scores (the README of data/routerbench explains why)."""
    copies: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(glob.glob(str(FIXTURES / "routerbench-0shot-subset" / "*.csv"))):
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


def routerbench_copies() -> int:
    """How many sample ids the excerpt lists more than once."""
    ids = []
    for path in sorted(glob.glob(str(FIXTURES / "routerbench-0shot-subset" / "*.csv"))):
        with open(path, newline="", encoding="utf-8") as handle:
            ids += [row["sample_id"] for row in csv.DictReader(handle)]
    return len(ids) - len(set(ids))


def test_routerbench_has_every_prompt_once_with_all_eleven_models_and_the_sources_answers(converted):
    scores, costs, slices = routerbench_source()
    assert len(slices) == 31 and len(scores) == 11
    assert routerbench_copies() == 3  # the excerpt holds duplicated ids, so their merge is exercised
    table = converted_outcomes(converted, "routerbench")
    assert table.height == 31 * 11 and table["request_id"].n_unique() == 31
    for request_id, model, score, cost in table.select("request_id", "model", "score", "cost_usd").iter_rows():
        assert (score, cost) == (scores[model][request_id], costs[model][request_id]), (request_id, model)
    traffic = pl.read_parquet(converted / "data" / "routerbench" / "traffic.parquet")
    assert dict(traffic.select("request_id", "slice").iter_rows()) == slices


def test_routerbench_pass_rates_and_recorded_costs_are_the_sources(cli, converted):
    scores, costs, slices = routerbench_source()
    table = converted_outcomes(converted, "routerbench").group_by("model").agg(
        pl.col("passed").mean(), pl.col("cost_usd").sum())
    assert table.height == 11
    for model, passed, cost in table.iter_rows():
        assert passed == pytest.approx(statistics.fmean(score == 1.0 for score in scores[model].values()), abs=1e-12)
        assert cost == pytest.approx(math.fsum(costs[model].values()), rel=1e-12)
    summaries = replay(cli, *sorted((converted / "scenarios" / "routerbench").glob("*.yaml")))
    for scenario, model in (("routerbench-gpt-4", "gpt-4-1106-preview"), ("routerbench-gpt-3.5", "gpt-3.5-turbo-1106"),
                            ("routerbench-mixtral", "mistralai/mixtral-8x7b-chat"),
                            ("routerbench-mistral-7b", "mistralai/mistral-7b-chat")):
        summary = summaries[scenario]
        assert summary["requests"] == len(slices)
        assert summary["pass_rate"] == pytest.approx(statistics.fmean(s == 1.0 for s in scores[model].values()))
        assert summary["total_cost_usd"] == pytest.approx(math.fsum(costs[model].values()), rel=1e-9)
        assert summary["provenance"]["price_sources"] == {model: "recorded"}


def test_routerbench_oracle_cascade_escalates_exactly_the_failures(cli, converted):
    scores, costs, slices = routerbench_source()
    small, big = scores["mistralai/mixtral-8x7b-chat"], scores["gpt-4-1106-preview"]
    failing = [sample for sample, score in small.items() if score != 1.0]
    assert 0 < len(failing) < len(slices)
    summary = replay(cli, converted / "scenarios" / "routerbench" / "cascade-oracle.yaml")["routerbench-cascade-oracle"]
    assert summary["escalation_rate"] == pytest.approx(len(failing) / len(slices))
    assert summary["pass_rate"] == pytest.approx(
        (len(slices) - len(failing) + sum(big[s] == 1.0 for s in failing)) / len(slices))
    expected_cost = math.fsum(costs["mistralai/mixtral-8x7b-chat"].values()) + math.fsum(
        costs["gpt-4-1106-preview"][sample] for sample in failing)
    assert summary["total_cost_usd"] == pytest.approx(expected_cost, rel=1e-9)


# RouteLLM ------------------------------------------------------------------------------------------

EVALS = FIXTURES / "routellm-evals" / "evals"


def contaminated(benchmark: str) -> set[str]:
    with open(EVALS / benchmark / "contaminated_prompts.jsonl", encoding="utf-8") as f:
        return {json.loads(line)["eval_prompt"] for line in f if line.strip()}


def mt_bench_questions() -> list[dict]:
    with open(EVALS / "mt_bench" / "question.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def mt_bench_turn_scores() -> dict[tuple[str, int], list[float]]:
    """The judge's turn scores per (model, question) of the questions kept after decontamination."""
    dirty = contaminated("mt_bench")
    kept = {q["question_id"] for q in mt_bench_questions() if q["turns"][0] not in dirty}
    turn_scores = defaultdict(list)
    with open(EVALS / "mt_bench" / "judgements.jsonl", encoding="utf-8") as handle:
        for judgement in map(json.loads, handle):
            if judgement["question_id"] in kept:
                turn_scores[judgement["model"], judgement["question_id"]].append(judgement["score"])
    return turn_scores


def routellm_rows() -> dict[str, list[tuple[str, dict]]]:
    """(request id, CSV row) of every MMLU and GSM8K prompt, contaminated ones included; the id is the
    row's position in its file."""
    rows: dict[str, list[tuple[str, dict]]] = {"mmlu": [], "gsm8k": []}
    for path in sorted(glob.glob(str(EVALS / "mmlu" / "responses" / "*.csv"))):
        subject = Path(path).stem.removeprefix("mmlu_")
        with open(path, newline="", encoding="utf-8") as handle:
            rows["mmlu"] += [(f"mmlu/{subject}/{index}", row) for index, row in enumerate(csv.DictReader(handle))]
    with open(EVALS / "gsm8k" / "gsm8k_responses.csv", newline="", encoding="utf-8") as handle:
        rows["gsm8k"] = [(f"gsm8k/{index}", row) for index, row in enumerate(csv.DictReader(handle))]
    return rows


def routellm_source() -> dict[str, dict[str, list[bool]]]:
    """passed[slice][model] lists from the authors' CSVs and judgements, contaminated prompts left out."""
    passed: dict[str, dict[str, list[bool]]] = {"mmlu": defaultdict(list), "gsm8k": defaultdict(list),
                                               "mt_bench": defaultdict(list)}
    for benchmark, rows in routellm_rows().items():
        dirty = contaminated(benchmark)
        for _, row in rows:
            if row["prompt"] not in dirty:
                for model in (WEAK, STRONG):
                    passed[benchmark][model].append(row[model] == "True")
    for (model, _), scores in sorted(mt_bench_turn_scores().items()):
        passed["mt_bench"][model].append(statistics.fmean(scores) >= 8.0)
    return passed


def test_routellm_leaves_out_the_contaminated_prompts(converted):
    passed = routellm_source()
    kept_per_benchmark = {name: len(by_model[STRONG]) for name, by_model in passed.items()}
    assert kept_per_benchmark == {"mmlu": 28, "gsm8k": 16, "mt_bench": 6}
    rows = routellm_rows()
    kept = {request_id for benchmark in rows for request_id, row in rows[benchmark]
            if row["prompt"] not in contaminated(benchmark)}
    kept |= {f"mt_bench/{question['question_id']}" for question in mt_bench_questions()
             if question["turns"][0] not in contaminated("mt_bench")}
    # the excerpt holds contaminated prompts (MMLU 2, GSM8K 4, MT-Bench 2), so leaving them out is exercised
    assert len(kept) == 28 + 16 + 6 and sum(map(len, rows.values())) + len(mt_bench_questions()) == 30 + 20 + 8
    table = converted_outcomes(converted, "routellm")
    assert set(table["request_id"]) == kept and table.height == 2 * len(kept)


def test_routellm_pass_rates_are_the_sources(cli, converted):
    passed = routellm_source()
    folder = converted / "scenarios" / "routellm"
    summaries = replay(cli, folder / "gpt-4.yaml", folder / "mixtral.yaml")
    for scenario, model in (("routellm-gpt-4", STRONG), ("routellm-mixtral", WEAK)):
        everything = [verdict for by_model in passed.values() for verdict in by_model[model]]
        summary = summaries[scenario]
        assert summary["requests"] == len(everything)
        assert summary["pass_rate"] == pytest.approx(statistics.fmean(everything))
        by_slice = {row["slice"]: row["pass_rate"] for row in summary["by_slice"]}
        assert by_slice == pytest.approx({name: statistics.fmean(by_model[model]) for name, by_model in passed.items()})
        assert summary["provenance"]["price_sources"] == {model: "sheet"}


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def mt_bench_answers() -> dict[tuple[str, int], tuple[str, str]]:
    """Each model's answers to the two turns of each question, read out of the judge prompts: turn 1's
    between the answer markers, turn 2's after the conversation's last assistant header."""
    answers: dict[tuple[str, int], dict[int, str]] = defaultdict(dict)
    with open(EVALS / "mt_bench" / "judgements.jsonl", encoding="utf-8") as handle:
        for judgement in map(json.loads, handle):
            prompt = judgement["user_prompt"]
            if judgement["turn"] == 1:
                answer = prompt.split("[The Start of Assistant's Answer]\n", 1)[1]
                answer = answer.rsplit("\n[The End of Assistant's Answer]", 1)[0]
            else:
                answer = prompt.rsplit("### Assistant A:\n", 1)[1]
                answer = answer.split("\n\n<|The End of Assistant A's Conversation", 1)[0]
            answers[judgement["model"], judgement["question_id"]][judgement["turn"]] = answer
    return {key: (turns[1], turns[2]) for key, turns in answers.items()}


def test_routellm_tokens_are_estimated_from_the_text(converted):
    """ceil(characters / 4): MMLU the prompt and a one-letter answer; GSM8K the prompt and each model's
    answer; MT-Bench both questions plus the first again and the model's first answer (the second turn
    resends the conversation), and the model's answers to both turns."""
    expected = {}
    for benchmark, rows in routellm_rows().items():
        for request_id, row in rows:
            if row["prompt"] not in contaminated(benchmark):
                for model in (WEAK, STRONG):
                    answer = tokens(row[f"{model}_response"]) if benchmark == "gsm8k" else 1
                    expected[request_id, model] = (tokens(row["prompt"]), answer)
    answers = mt_bench_answers()
    for question in mt_bench_questions():
        if question["turns"][0] not in contaminated("mt_bench"):
            first, second = question["turns"]
            for model in (WEAK, STRONG):
                a1, a2 = answers[model, question["question_id"]]
                expected[f"mt_bench/{question['question_id']}", model] = (
                    2 * tokens(first) + tokens(second) + tokens(a1), tokens(a1) + tokens(a2))
    table = converted_outcomes(converted, "routellm")
    found = {(request_id, model): (input_tokens, output_tokens) for request_id, model, input_tokens, output_tokens
             in table.select("request_id", "model", "input_tokens", "output_tokens").iter_rows()}
    assert found == expected


def test_routellm_costs_are_derived_from_its_dated_price_sheet(cli, converted):
    sheet = load_prices(converted / "data" / "routellm" / "prices.yaml")
    with open(FIXTURES / "price-sheets" / "litellm-1.110.2" / "model_prices_and_context_window_backup.json",
              encoding="utf-8") as handle:
        litellm = json.load(handle)
    for model, key in ((STRONG, "gpt-4-1106-preview"), (WEAK, "anyscale/mistralai/Mixtral-8x7B-Instruct-v0.1")):
        (entry,) = sheet.models[model]
        assert (entry.input, entry.output) == pytest.approx(
            (litellm[key]["input_cost_per_token"] * 1e6, litellm[key]["output_cost_per_token"] * 1e6))
    table = converted_outcomes(converted, "routellm")
    assert table["cost_usd"].null_count() == table.height and set(table["cost_source"]) == {"price sheet prices.yaml"}
    summary = replay(cli, converted / "scenarios" / "routellm" / "gpt-4.yaml")["routellm-gpt-4"]
    (entry,) = sheet.models[STRONG]
    strong = table.filter(pl.col("model") == STRONG)
    expected = (strong["input_tokens"].sum() * entry.input + strong["output_tokens"].sum() * entry.output) / 1e6
    assert summary["total_cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert (entry.input, entry.output) == (10.0, 30.0)  # litellm 1.110.2's gpt-4-1106-preview


def test_routellm_mt_bench_scores_are_the_judges(converted):
    table = converted_outcomes(converted, "routellm").filter(pl.col("request_id").str.starts_with("mt_bench/"))
    turns = mt_bench_turn_scores()
    for request_id, model, score, passed in table.select("request_id", "model", "score", "passed").iter_rows():
        judged = turns[model, int(request_id.removeprefix("mt_bench/"))]
        assert len(judged) == 2 and score == pytest.approx(statistics.fmean(judged) / 10, abs=1e-12)
        assert passed == (statistics.fmean(judged) >= 8.0)
    means = dict(table.group_by("model").agg(pl.col("score").mean() * 10).iter_rows())
    for model in (STRONG, WEAK):
        expected = statistics.fmean(score for (who, _), scores in turns.items() if who == model for score in scores)
        assert means[model] == pytest.approx(expected, abs=1e-12)


# RouterArena ---------------------------------------------------------------------------------------

def routerarena_source() -> dict[str, list[dict]]:
    found = {}
    for model in ("claude-3-haiku-20240307", "gemini-2.0-flash-001"):
        with open(FIXTURES / "routerarena-cached" / f"{model}.jsonl", encoding="utf-8") as handle:
            found[model] = [json.loads(line) for line in handle if line.strip()]
    return found


def test_routerarena_pass_rates_tokens_and_recorded_costs_are_the_sources(cli, converted):
    source = routerarena_source()
    assert any(record["evaluation_result"]["score"] < 0 for records in source.values() for record in records)
    folder = converted / "scenarios" / "routerarena"
    summaries = replay(cli, folder / "gemini-flash.yaml", folder / "claude-haiku.yaml")
    table = converted_outcomes(converted, "routerarena")
    for scenario, model in (("routerarena-gemini-flash", "gemini-2.0-flash-001"),
                            ("routerarena-claude-haiku", "claude-3-haiku-20240307")):
        records = source[model]
        scores = [min(max(record["evaluation_result"]["score"], 0.0), 1.0) for record in records]
        summary = summaries[scenario]
        assert summary["requests"] == len(records) == 21
        assert summary["pass_rate"] == pytest.approx(statistics.fmean(score >= 0.5 for score in scores))
        assert summary["mean_score"] == pytest.approx(statistics.fmean(scores))
        assert summary["total_cost_usd"] == pytest.approx(
            math.fsum(record["evaluation_result"]["inference_cost"] for record in records), rel=1e-9)
        mine = table.filter(pl.col("model") == model)
        assert mine["input_tokens"].sum() == sum(record["token_usage"]["input_tokens"] for record in records)
        assert mine["output_tokens"].sum() == sum(record["token_usage"]["output_tokens"] for record in records)
        assert mine["score"].min() >= 0.0


# Latency -------------------------------------------------------------------------------------------

def llmperf_medians(*, same_providers: bool = True) -> dict[str, tuple[float, float]]:
    """(time to first token, time per further token) in ms per size class: medians over the successful
    requests with more than one output token, of the providers that ran every size."""
    requests = defaultdict(list)
    for path in glob.glob(str(FIXTURES / "llmperf-leaderboard" / "individual" / "*.json")):
        provider, size = Path(path).stem.rsplit("_", 1)
        requests[provider, size] = json.loads(Path(path).read_text())
    providers = {p for p, _ in requests if not same_providers or all((p, s) in requests for s in ("7b", "13b", "70b"))}
    medians = {}
    for size in ("7b", "13b", "70b"):
        ok = [r for (p, s), rs in requests.items() if p in providers and s == size for r in rs
              if r["error_code"] is None and r["number_output_tokens"] > 1]
        medians[size] = (statistics.median(r["ttft_s"] for r in ok) * 1000,
                         statistics.median((r["end_to_end_latency_s"] - r["ttft_s"]) / (r["number_output_tokens"] - 1)
                                           for r in ok) * 1000)
    return medians


def test_latency_is_modelled_from_the_llmperf_medians_of_the_size_class(converted):
    medians = llmperf_medians()
    assert medians != llmperf_medians(same_providers=False)  # the excerpt tells the provider filter apart
    table = converted_outcomes(converted, "routerbench")
    for model, size in (("mistralai/mistral-7b-chat", "7b"), ("mistralai/mixtral-8x7b-chat", "13b"),
                        ("meta/llama-2-70b-chat", "70b")):
        ttft, per_token = medians[size]
        mine = table.filter(pl.col("model") == model)
        expected = ttft + per_token * (mine["output_tokens"] - 1).clip(lower_bound=0)
        assert (mine["latency_ms"] - expected).abs().max() < 1e-6, model
        assert (mine["ttft_ms"] - ttft).abs().max() < 1e-9, model
        assert set(mine["latency_source"]) == {f"modelled: LLMPerf {size} class"}


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


def test_routerbench_loop_of_the_benchmark_agrees_with_the_replay(cli):
    """scripts/routerbench_loop.py, the per-row baseline of README "RouterBench's loop", walks the cascade as
    RouterBench's evaluator does; on the shipped data it must reach routesim's totals, or its speed-up means
    nothing."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("routerbench_loop", ROOT / "scripts" / "routerbench_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    by_loop = module.loop(DATA / "routerbench", "dicts")
    summary = replay(cli, SCENARIOS / "routerbench" / "cascade-noisy.yaml")["routerbench-cascade-noisy"]
    assert by_loop["requests"] == summary["requests"]
    assert by_loop["passed"] / by_loop["requests"] == pytest.approx(summary["pass_rate"], abs=1e-12)
    assert by_loop["total_cost_usd"] == pytest.approx(summary["total_cost_usd"], rel=1e-9)


def test_a_refused_destination_leaves_every_dataset_folder_unwritten(cli, tmp_path):
    # routellm's folder holds a file of the user's: nothing is written, not even routerbench before it.
    out = tmp_path / "data"
    (out / "routellm").mkdir(parents=True)
    (out / "routellm" / "mine.txt").write_text("keep")
    refused = cli("public-data", "--source", FIXTURES, "-o", out)
    assert refused.code == 2 and "routellm" in refused.err and "--force" in refused.err
    assert sorted(path.name for path in out.iterdir()) == ["routellm"]
    assert (out / "routellm" / "mine.txt").read_text() == "keep"
    forced = cli("public-data", "--source", FIXTURES, "-o", out, "--force")
    assert forced.code == 0, forced.err
    assert sorted(path.name for path in out.iterdir()) == ["routellm", "routerarena", "routerbench"]
    assert cli("public-data", "--source", FIXTURES, "-o", "-").code == 2
