"""Real public routing data in the data contract: RouterBench, RouteLLM and RouterArena, converted from
the upstream files (simulator.datasets.public_data.build_all writes them out).

What is recorded and what is derived, for every dataset (each README adds its own rules):
- grades (`passed`, `score`) are the upstream ones; where upstream gives only a score, the README states
  the pass threshold;
- `ts` is synthetic: no source has timestamps, so requests are spaced one second apart in a random order
  from 00:00 UTC of the dataset's publication date, the order of the keyed draws u(ARRIVAL_SEED, "arrival",
  request_id) (traffic column `position` keeps the source order);
- tokens are recorded where the source has them (RouterArena), else estimated as ceil(characters / 4)
  of the prompt and of the answer (outcomes column `token_source`);
- latency is modelled, since no source records it (`latency_source`): time to first token plus
  (output tokens - 1) x time per token, the medians of the successful LLMPerf requests of the model's
  size class (Llama-2 7b, 13b or 70b, December 2023, on the five hosted providers that ran all three
  sizes, so that the classes differ by size and not by provider mix). Closed models are put
  in a class by assumption (see SIZE_CLASSES); the input length is not modelled (LLMPerf sent ~550
  tokens every time);
- `noisy_gate_pass` (an extra outcome column) is the verdict of a simulated judge with a stated error
  rate: `passed` flipped with probability JUDGE_ERROR_RATE, by a keyed draw (simulator.core.draws) per
  outcome: u(JUDGE_SEED, "judge/MODEL/SAMPLE", request_id), so an answer's verdict depends on nothing else. A cascade step with `accept: "noisy_gate_pass"`
  is the noisy gate, as RouterBench simulates an imperfect judge; `accept: "passed"` is the oracle gate.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from simulator.core.draws import key_hashes, keyed_bits, keyed_uniform, to_unit
from simulator.core.errors import RoutesimError

CHARS_PER_TOKEN = 4
JUDGE_ERROR_RATE = 0.10
JUDGE_SEED = 2024
ROUTELLM_PASS_SCORE = 8.0  # MT-Bench judge score (1-10, mean of the two turns) counted as passed
ROUTERARENA_PASS_SCORE = 0.5

# Size class of each model for the latency model. Open models by their parameter count (nearest measured
# size on a log scale; Mixtral by its 12.9B active parameters); closed models by assumption: the fast
# tiers (gpt-3.5, claude-instant, claude-3-haiku, gemini-flash) as 13b, the frontier ones as 70b.
SIZE_CLASSES = {
    "mistralai/mistral-7b-chat": "7b",
    "WizardLM/WizardLM-13B-V1.2": "13b",
    "mistralai/mixtral-8x7b-chat": "13b",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "13b",
    "meta/code-llama-instruct-34b-chat": "70b",
    "zero-one-ai/Yi-34B-Chat": "70b",
    "meta/llama-2-70b-chat": "70b",
    "gpt-3.5-turbo-1106": "13b",
    "claude-instant-v1": "13b",
    "claude-3-haiku-20240307": "13b",
    "gemini-2.0-flash-001": "13b",
    "gpt-4-1106-preview": "70b",
    "claude-v1": "70b",
    "claude-v2": "70b",
}

LLMPERF_LICENCE = ("llmperf-leaderboard/LICENSE.upstream-Apache-2.0.txt", "LICENSE.llmperf-Apache-2.0.txt")


@dataclass(frozen=True)
class LatencyClass:
    size: str
    ttft_ms: float
    per_token_ms: float
    requests: int
    providers: str


@dataclass(frozen=True)
class Converted:
    name: str
    traffic: pl.DataFrame
    outcomes: pl.DataFrame
    files: dict[str, str]


def need_file(path: Path) -> Path:
    if not path.exists():
        raise RoutesimError(f"public data file not found: {path}",
                            fix="point --source at the public-data folder (it holds routerbench-0shot-subset/, ...)")
    return path


def estimated_tokens(text: pl.Expr) -> pl.Expr:
    return ((text.fill_null("").str.len_chars() + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN).cast(pl.Int64)


ARRIVAL_SEED = 2024
ARRIVAL_PURPOSE = "arrival"


def synthetic_ts(start: dt.date, request_ids: pl.Series) -> pl.Series:
    """`ts` of each request: one second apart from 00:00 UTC of `start`, in the order of their keyed draws
    u(ARRIVAL_SEED, "arrival", request_id) (simulator.core.draws; ties, which a 53-bit draw all but never
    gives, by request id). A request's draw depends on its id alone, so the arrival order does not depend on
    the order the source lists the requests in.

    The sources list their prompts benchmark by benchmark; arriving in that order would show a change of
    benchmark as a change over time (a drift alarm where nothing drifted), so arrival order is shuffled.
    """
    origin = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    draws = pl.DataFrame({"u": keyed_uniform(ARRIVAL_SEED, ARRIVAL_PURPOSE, request_ids), "id": request_ids})
    order = draws.select(pl.arg_sort_by("u", "id")).to_series().to_numpy()
    seconds = np.empty(len(order), dtype=np.int64)
    seconds[order] = np.arange(len(order), dtype=np.int64)
    return (pl.Series("ts", seconds * 1_000_000, dtype=pl.Int64).cast(pl.Duration("us"))
            + origin).cast(pl.Datetime("us", "UTC"))


def fit_latency(source: Path) -> dict[str, LatencyClass]:
    """Median time to first token and time per further token per size class, over the successful requests
    of the providers that ran every size, so that classes differ by size and not by provider mix."""
    rows = []
    for path in sorted(need_file(source / "llmperf-leaderboard" / "individual").glob("*.json")):
        provider, size = path.stem.rsplit("_", 1)
        for record in json.loads(path.read_text(encoding="utf-8")):
            rows.append({"provider": provider, "size": size, "error": record.get("error_code"),
                         "ttft_s": record.get("ttft_s"), "latency_s": record.get("end_to_end_latency_s"),
                         "output": record.get("number_output_tokens")})
    requests = pl.DataFrame(rows, schema={"provider": pl.String, "size": pl.String, "error": pl.Int64,
                                          "ttft_s": pl.Float64, "latency_s": pl.Float64, "output": pl.Int64})
    sizes = requests["size"].n_unique()
    ok = requests.filter(pl.col("error").is_null() & pl.col("ttft_s").is_not_null() & (pl.col("output") > 1)
                         & (pl.col("size").n_unique().over("provider") == sizes))
    fitted = ok.group_by("size").agg(
        (pl.col("ttft_s").median() * 1000).alias("ttft_ms"),
        ((pl.col("latency_s") - pl.col("ttft_s")) / (pl.col("output") - 1)).median().mul(1000).alias("per_token_ms"),
        pl.len().alias("requests"),
        pl.col("provider").unique().sort().str.join(", ").alias("providers")).sort("size")
    return {row["size"]: LatencyClass(**row) for row in fitted.iter_rows(named=True)}


def modelled_latency(outcomes: pl.DataFrame, latency: dict[str, LatencyClass], *,
                     calls: pl.Expr = pl.lit(1)) -> pl.DataFrame:
    """latency_ms and ttft_ms from the model's size class; `calls` answers per outcome (MT-Bench has two
    turns, each with its own first token)."""
    unknown = sorted(set(outcomes["model"].unique()) - set(SIZE_CLASSES))
    if unknown:
        raise RoutesimError(f"no size class for model(s) {', '.join(unknown)}", fix="add them to SIZE_CLASSES")
    sizes = pl.col("model").replace_strict(SIZE_CLASSES, return_dtype=pl.String)
    ttft = sizes.replace_strict({size: c.ttft_ms for size, c in latency.items()}, return_dtype=pl.Float64)
    per_token = sizes.replace_strict({size: c.per_token_ms for size, c in latency.items()}, return_dtype=pl.Float64)
    decoded = (pl.col("output_tokens") - calls).clip(lower_bound=0)
    return outcomes.with_columns(
        (ttft * calls + per_token * decoded).alias("latency_ms"),
        ttft.alias("ttft_ms"),
        pl.format("modelled: LLMPerf {} class", sizes).alias("latency_source"))


def simulated_judge(outcomes: pl.DataFrame) -> pl.DataFrame:
    """`noisy_gate_pass`: `passed` flipped where u(JUDGE_SEED, "judge/MODEL/SAMPLE", request_id) <
    JUDGE_ERROR_RATE (simulator.core.draws): each answer's flip is its own, whatever the other rows, their
    order or how the data is split. Rows come back sorted by (request_id, model, sample)."""
    ordered = outcomes.sort("request_id", "model", "sample")
    answers = ordered.select(pl.format("judge/{}/{}", "model", "sample").alias("purpose"))["purpose"]
    purposes = answers.unique(maintain_order=True)
    labels = answers.replace_strict(purposes, pl.int_range(purposes.len(), eager=True), return_dtype=pl.Int64)
    bits = keyed_bits(JUDGE_SEED, purposes.to_list(), key_hashes(ordered["request_id"]), labels.to_numpy())
    flips = to_unit(bits) < JUDGE_ERROR_RATE
    return ordered.with_columns((pl.col("passed") ^ pl.Series(flips)).alias("noisy_gate_pass"))


def contract_outcomes(frame: pl.DataFrame, *, token_source: str, cost_source: str) -> pl.DataFrame:
    """The outcome columns in contract order, then the provenance columns."""
    return simulated_judge(frame.with_columns(
        pl.lit(0, pl.Int64).alias("sample"), pl.lit(None, pl.Int64).alias("cached_input_tokens"),
        pl.lit(None, pl.Float64).alias("confidence"), pl.lit(None, pl.Float64).alias("checker_score"),
        pl.lit(True).alias("hard_check_ok"),
    )).select(
        "request_id", "model", "sample", "input_tokens", "cached_input_tokens", "output_tokens", "latency_ms",
        "ttft_ms", "passed", "score", "confidence", "checker_score", "hard_check_ok",
        pl.col("cost_usd").cast(pl.Float64), "grader", "noisy_gate_pass", "latency_source",
        pl.lit(token_source).alias("token_source"), pl.lit(cost_source).alias("cost_source"))


def _text(value: str | None) -> str:
    """RouterBench keeps prompts and answers as the repr of a list of strings."""
    if value is None:
        return ""
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return "\n".join(map(str, parsed)) if isinstance(parsed, list) else str(parsed)


# RouterBench ----------------------------------------------------------------------------------------

ROUTERBENCH_DATE = dt.date(2024, 3, 18)  # arXiv 2403.12031
ROUTERBENCH_FIXED = {"", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to", "file"}


def routerbench_wide(source: Path) -> tuple[pl.DataFrame, list[str]]:
    folder = need_file(source / "routerbench-0shot-subset")
    frames = [pl.read_csv(path, infer_schema=False).with_columns(pl.lit(path.stem).alias("file"))
              for path in sorted(folder.glob("*.csv"))]
    wide = pl.concat(frames, how="vertical")
    models = [column for column in wide.columns if "|" not in column and column not in ROUTERBENCH_FIXED]
    return wide.with_row_index("row"), models


def routerbench(source: Path, latency: dict[str, LatencyClass]) -> Converted:
    """3,164 prompts x 11 models with recorded costs. 14 ARC ids appear twice (see the README): the copy
    with the scores of 10 models is the request, and gpt-3.5-turbo-1106's score, found only in the other
    copy, is taken from there; costs all come from the request's copy."""
    wide, models = routerbench_wide(source)
    wide = wide.with_columns(pl.sum_horizontal(pl.col(models).is_not_null()).alias("scored"))
    primary = (wide.sort("sample_id", "scored", "row", descending=[False, True, False])
               .unique("sample_id", keep="first", maintain_order=True).sort("row")
               .with_row_index("position").select("sample_id", "row", "position"))
    long = pl.concat([wide.select("sample_id", "row", pl.lit(model).alias("model"),
                                  pl.col(model).cast(pl.Float64).alias("score"),
                                  pl.col(f"{model}|model_response").alias("response"),
                                  pl.col(f"{model}|total_cost").cast(pl.Float64).alias("cost_usd"))
                      for model in models], how="vertical")
    long = long.join(primary.select("sample_id", pl.col("row").alias("primary_row")), on="sample_id")
    is_primary = pl.col("row") == pl.col("primary_row")
    answers = long.sort("sample_id", "model", is_primary.not_(), "row").group_by("sample_id", "model").agg(
        pl.col("score").drop_nulls().first(),
        pl.col("response").filter(pl.col("score").is_not_null()).first(),
        pl.col("cost_usd").filter(is_primary).first())
    if answers["score"].null_count() or not answers["score"].is_in([0.0, 1.0]).all():
        raise RoutesimError("RouterBench scores are not all 0/1 after merging the duplicated ids",
                            where=str(source / "routerbench-0shot-subset"))
    requests = primary.join(wide, on="row").sort("position")
    prompts = [_text(value) for value in requests["prompt"]]
    traffic = requests.select(
        pl.col("sample_id").alias("request_id"), synthetic_ts(ROUTERBENCH_DATE, requests["sample_id"]),
        pl.col("eval_name").alias("slice"), estimated_tokens(pl.Series(prompts)).alias("input_tokens"),
        pl.col("file").str.extract(r"_(train|test)$").alias("routerdc_split"), "position")
    outcomes = answers.rename({"sample_id": "request_id"}).join(traffic.select("request_id", "input_tokens"),
                                                                 on="request_id")
    outcomes = outcomes.with_columns(
        estimated_tokens(pl.Series([_text(value) for value in outcomes["response"]])).alias("output_tokens"),
        (pl.col("score") == 1.0).alias("passed"), pl.lit("deterministic").alias("grader"))
    outcomes = contract_outcomes(modelled_latency(outcomes, latency), token_source="estimated",
                                 cost_source="recorded")
    return Converted("routerbench", traffic, outcomes, {})


# RouteLLM -------------------------------------------------------------------------------------------

ROUTELLM_DATE = dt.date(2024, 6, 26)  # arXiv 2406.18665
ROUTELLM_STRONG, ROUTELLM_WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
# Price-sheet keys in litellm 1.110.2 for the two models; the weak one as RouteLLM's own default
# (anyscale/mistralai/Mixtral-8x7B-Instruct-v0.1 in its README's examples).
ROUTELLM_PRICE_KEYS = {ROUTELLM_STRONG: "gpt-4-1106-preview",
                       ROUTELLM_WEAK: "anyscale/mistralai/Mixtral-8x7B-Instruct-v0.1"}


def _contaminated(path: Path) -> list[str]:
    return [json.loads(line)["eval_prompt"] for line in need_file(path).read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _answers(requests: pl.DataFrame, output_tokens, grader: str) -> pl.DataFrame:
    """One answer per request and RouteLLM model from the authors' boolean correctness columns."""
    return pl.concat([requests.select(
        "request_id", pl.lit(model).alias("model"), pl.col(model).alias("passed"),
        pl.col(model).cast(pl.Float64).alias("score"), output_tokens(model).alias("output_tokens"),
        pl.lit(grader).alias("grader"), pl.lit(1).alias("calls")) for model in (ROUTELLM_WEAK, ROUTELLM_STRONG)],
        how="vertical")


def routellm_tables(source: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Requests (before timestamps) and per-model answers of MMLU, GSM8K and MT-Bench, contaminated
    prompts left out as the authors did (by prompt text; for MT-Bench, by the first turn)."""
    evals = need_file(source / "routellm-evals" / "evals")
    subjects = sorted((evals / "mmlu" / "responses").glob("*.csv"))
    mmlu = (pl.concat([pl.read_csv(path).with_row_index("index")
                       .with_columns(pl.lit(path.stem.removeprefix("mmlu_")).alias("subject")) for path in subjects],
                      how="vertical")
            .filter(~pl.col("prompt").is_in(_contaminated(evals / "mmlu" / "contaminated_prompts.jsonl")))
            .with_columns(pl.format("mmlu/{}/{}", "subject", "index").alias("request_id"),
                          pl.lit("mmlu").alias("slice")))
    gsm8k = (pl.read_csv(evals / "gsm8k" / "gsm8k_responses.csv").with_row_index("index")
             .filter(~pl.col("prompt").is_in(_contaminated(evals / "gsm8k" / "contaminated_prompts.jsonl")))
             .with_columns(pl.format("gsm8k/{}", "index").alias("request_id"), pl.lit("gsm8k").alias("slice"),
                           pl.lit(None, pl.String).alias("subject")))
    mt_bench, mt_answers = routellm_mt_bench(evals / "mt_bench")
    requests = pl.concat([
        *[frame.select("request_id", "slice", estimated_tokens(pl.col("prompt")).alias("input_tokens"), "subject")
          for frame in (mmlu, gsm8k)], mt_bench], how="vertical").with_row_index("position")
    answers = pl.concat([
        _answers(mmlu, lambda model: pl.lit(1, pl.Int64), "deterministic"),  # MMLU keeps no answers: one letter
        _answers(gsm8k, lambda model: estimated_tokens(pl.col(f"{model}_response")), "deterministic"),
        mt_answers], how="diagonal_relaxed")
    return requests, answers


def routellm_mt_bench(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One request per question (both turns, routed as one conversation). The answers' text is read
    from the judge prompts: turn 1's between the answer markers, turn 2's after the last assistant
    header of the conversation."""
    questions = (pl.read_ndjson(need_file(folder / "question.jsonl"))
                 .filter(~pl.col("turns").list.first().is_in(_contaminated(folder / "contaminated_prompts.jsonl")))
                 .with_columns(pl.format("mt_bench/{}", "question_id").alias("request_id"),
                               pl.col("turns").list.get(0).alias("q1"), pl.col("turns").list.get(1).alias("q2")))
    first_answer = r"(?s)\[The Start of Assistant's Answer\]\n(.*)\n\[The End of Assistant's Answer\]"
    second_answer = r"(?s).*### Assistant A:\n(.*?)\n\n<\|The End of Assistant A's Conversation"
    judgements = pl.read_ndjson(need_file(folder / "judgements.jsonl")).with_columns(
        pl.when(pl.col("turn") == 1).then(pl.col("user_prompt").str.extract(first_answer))
        .otherwise(pl.col("user_prompt").str.extract(second_answer)).alias("answer"))
    if judgements["answer"].null_count():
        raise RoutesimError("could not read an MT-Bench answer out of its judge prompt", where=str(folder))
    per_model = (judgements.group_by("question_id", "model")
                 .agg(pl.col("score").mean().alias("judge_score"), pl.len().alias("turns"),
                      pl.col("answer").sort_by("turn").first().alias("a1"),
                      pl.col("answer").sort_by("turn").last().alias("a2"))
                 .join(questions, on="question_id"))
    if not (per_model["turns"] == 2).all():
        raise RoutesimError("an MT-Bench question lacks a judgement of one of its two turns", where=str(folder))
    answers = per_model.select(
        "request_id", "model", (pl.col("judge_score") >= ROUTELLM_PASS_SCORE).alias("passed"),
        (pl.col("judge_score") / 10).alias("score"),
        (estimated_tokens(pl.col("a1")) + estimated_tokens(pl.col("a2"))).alias("output_tokens"),
        pl.lit("llm_judge").alias("grader"), pl.lit(2).alias("calls"),
        # The second turn resends the conversation: the model's own first answer adds to its input.
        estimated_tokens(pl.col("a1")).alias("resent_tokens"))
    requests = questions.sort("question_id").select(
        "request_id", pl.lit("mt_bench").alias("slice"),
        (2 * estimated_tokens(pl.col("q1")) + estimated_tokens(pl.col("q2"))).alias("input_tokens"),
        pl.col("category").alias("subject"))
    return requests, answers


def routellm(source: Path, latency: dict[str, LatencyClass]) -> Converted:
    requests, answers = routellm_tables(source)
    traffic = requests.select("request_id", synthetic_ts(ROUTELLM_DATE, requests["request_id"]), "slice", "input_tokens", "subject", "position")
    outcomes = answers.join(traffic.select("request_id", "input_tokens"), on="request_id").with_columns(
        (pl.col("input_tokens") + pl.col("resent_tokens").fill_null(0)).alias("input_tokens"),
        pl.lit(None, pl.Float64).alias("cost_usd"))
    outcomes = modelled_latency(outcomes, latency, calls=pl.col("calls"))
    outcomes = contract_outcomes(outcomes, token_source="estimated", cost_source="price sheet prices.yaml")
    return Converted("routellm", traffic, outcomes, {"prices.yaml": routellm_prices(source)})


def routellm_prices(source: Path) -> str:
    path = source / "price-sheets" / "litellm-1.110.2" / "model_prices_and_context_window_backup.json"
    sheet = json.loads(need_file(path).read_text(encoding="utf-8"))
    lines = ["# Derived price sheet for data/routellm (see its README): litellm 1.110.2 list prices (USD per",
             "# million tokens), entered as in force from the traffic's synthetic date. They are today's list",
             "# prices of these models, not the prices paid in 2024.", "models:"]
    for model, key in ROUTELLM_PRICE_KEYS.items():
        entry = sheet[key]
        lines += [f"  {model}:  # litellm key {key}",
                  f"    - effective_from: {ROUTELLM_DATE.isoformat()}",
                  f"      input: {entry['input_cost_per_token'] * 1e6:.4g}",
                  f"      output: {entry['output_cost_per_token'] * 1e6:.4g}"]
    return "\n".join(lines) + "\n"


# RouterArena ----------------------------------------------------------------------------------------

ROUTERARENA_DATE = dt.date(2025, 11, 12)  # commit 4714a9a of RouteWorks/RouterArena
ROUTERARENA_FILES = ("claude-3-haiku-20240307.jsonl", "gemini-2.0-flash-001.jsonl")


def routerarena_long(source: Path) -> pl.DataFrame:
    rows = []
    for name in ROUTERARENA_FILES:
        for line in need_file(source / "routerarena-cached" / name).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            result, usage = record["evaluation_result"], record["token_usage"]
            rows.append({"request_id": record["global_index"], "model": record["llm_selected"],
                         "input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
                         "raw_score": result["score"], "metric": result["metric"], "cost_usd": result["inference_cost"],
                         "success": record["success"]})
    return pl.DataFrame(rows)


def routerarena(source: Path, latency: dict[str, LatencyClass]) -> Converted:
    """809 prompts x 2 models with recorded tokens and costs. Scores are 0/1 except METEOR (translation),
    which is continuous and once slightly negative (clipped to 0); passed = score >= 0.5."""
    long = routerarena_long(source)
    if not long["success"].all():
        raise RoutesimError("a RouterArena answer failed upstream; decide how to map it",
                            where=str(source / "routerarena-cached"))
    order = long.filter(pl.col("model") == long["model"].min()).with_row_index("position")
    traffic = order.select(
        "request_id", synthetic_ts(ROUTERARENA_DATE, order["request_id"]),
        pl.col("request_id").str.extract(r"^([^_-]+)").alias("slice"),
        "input_tokens",
        pl.col("request_id").str.replace(r"_[^_]*$", "").alias("benchmark"), "metric", "position")
    outcomes = long.with_columns(
        pl.col("raw_score").clip(0.0, 1.0).alias("score"),
        (pl.col("raw_score").clip(0.0, 1.0) >= ROUTERARENA_PASS_SCORE).alias("passed"),
        pl.lit("deterministic").alias("grader"))
    outcomes = contract_outcomes(modelled_latency(outcomes, latency), token_source="recorded", cost_source="recorded")
    return Converted("routerarena", traffic, outcomes, {})
