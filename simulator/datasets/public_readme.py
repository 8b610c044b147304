"""The README of each converted public dataset: source, licence, what is recorded, what is derived, and
the numbers of the converted tables (so they cannot drift from the data)."""

from __future__ import annotations

import polars as pl
import yaml

from simulator.core.prices import PriceSheet, price_expr, round_half_even, usd
from simulator.datasets.public_sources import (
    ARRIVAL_SEED,
    CHARS_PER_TOKEN,
    JUDGE_ERROR_RATE,
    JUDGE_SEED,
    ROUTELLM_PASS_SCORE,
    ROUTELLM_PRICE_KEYS,
    ROUTERARENA_PASS_SCORE,
    SIZE_CLASSES,
    Converted,
    LatencyClass,
)

REGENERATE = """## Regenerating

```sh
routesim public-data            # reads ../shared/public-data next to the repository, writes data/
routesim public-data --source PATH/TO/public-data --out data
```

The conversion is `simulator/datasets/public_data.py`; every folder is written to a temporary folder and renamed
into place. The same sources and library versions give the same files."""


def _cost(dataset: Converted) -> pl.Expr:
    if "prices.yaml" not in dataset.files:
        return pl.col("cost_usd")
    sheet = PriceSheet.model_validate(yaml.safe_load(dataset.files["prices.yaml"]))
    return usd(round_half_even(price_expr(sheet)))


def model_table(dataset: Converted) -> str:
    calls = dataset.outcomes.join(dataset.traffic.select("request_id", "ts"), on="request_id")
    rows = (calls.with_columns(_cost(dataset).alias("cost"))
            .group_by("model").agg(pl.len().alias("requests"), pl.col("passed").mean().alias("pass_rate"),
                                   pl.col("score").mean().alias("mean_score"), pl.col("cost").sum().alias("cost"),
                                   pl.col("latency_ms").median().alias("latency"))
            .sort("model"))
    lines = ["| model | size class | requests | pass rate | mean score | total cost (USD) | median latency (ms, modelled) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in rows.iter_rows(named=True):
        lines.append(f"| `{row['model']}` | {SIZE_CLASSES[row['model']]} | {row['requests']:,} | {row['pass_rate']:.4f} | "
                     f"{row['mean_score']:.4f} | {row['cost']:.4f} | {row['latency']:,.0f} |")
    return "\n".join(lines)


def slice_table(dataset: Converted) -> str:
    by_slice = (dataset.outcomes.join(dataset.traffic.select("request_id", "slice"), on="request_id")
                .group_by("slice", "model").agg(pl.col("passed").mean()).sort("slice", "model")
                .pivot(on="model", index="slice", values="passed"))
    models = by_slice.columns[1:]
    counts = dict(dataset.traffic.group_by("slice").len().iter_rows())
    lines = ["| slice | requests | " + " | ".join(f"`{model}`" for model in models) + " |",
             "|---|---:|" + "---:|" * len(models)]
    for row in by_slice.iter_rows(named=True):
        lines.append(f"| {row['slice']} | {counts[row['slice']]:,} | "
                     + " | ".join(f"{row[model]:.3f}" for model in models) + " |")
    return "\n".join(lines)


def mt_bench_scores(dataset: Converted) -> str:
    means = (dataset.outcomes.join(dataset.traffic.filter(pl.col("slice") == "mt_bench").select("request_id"),
                                   on="request_id")
             .group_by("model").agg((pl.col("score").mean() * 10).alias("mean")).sort("model"))
    return ", ".join(f"`{model}` {mean:.3f}" for model, mean in means.iter_rows())


def latency_section(dataset: Converted, latency: dict[str, LatencyClass]) -> str:
    used = sorted({SIZE_CLASSES[model] for model in dataset.outcomes["model"].unique()}, key=lambda s: int(s[:-1]))
    lines = ["| size class | time to first token (ms) | time per further token (ms) | LLMPerf requests |",
             "|---|---:|---:|---:|"]
    lines += [f"| {size} | {latency[size].ttft_ms:.1f} | {latency[size].per_token_ms:.2f} | {latency[size].requests} |"
              for size in used]
    providers = latency[used[0]].providers
    return f"""## Latency: modelled, not measured

No latency is recorded upstream. Every answer's `latency_ms` is
`ttft_ms + (output_tokens - 1) x per_token_ms` of its model's size class, where both are medians over
the successful requests of the LLMPerf leaderboard runs (Llama-2 chat 7b/13b/70b, December 2023, ~550
input and ~150 output tokens, concurrency 5) on the providers that ran all three sizes ({providers}), so
that classes differ by size and not by provider mix. `ttft_ms` is the class's time to first token.
Outcomes column `latency_source` says `modelled: LLMPerf <class> class`. Open models are classed by
parameter count (Mixtral by its 12.9B active parameters); closed models by assumption: fast tiers as
13b, frontier models as 70b. The input length is not modelled (LLMPerf always sent about 550 tokens), nor
queueing or provider differences, so latency percentiles here compare output lengths and size classes
only.

{chr(10).join(lines)}

The parameters come from `llmperf-leaderboard` (Apache-2.0, LICENSE.llmperf-Apache-2.0.txt)."""


def judge_section() -> str:
    return f"""## The simulated judge (`noisy_gate_pass`)

RouterBench simulates cascades with an imperfect judge; so does this data. Outcomes column
`noisy_gate_pass` is the verdict of a judge that is wrong with probability {JUDGE_ERROR_RATE:.0%}: equal to `passed`
except where its keyed draw u({JUDGE_SEED}, "judge/MODEL/SAMPLE", request_id) (routesim's counter-based
generator, `simulator/core/draws.py`) falls below {JUDGE_ERROR_RATE}, which flips it: each answer's flip depends
on nothing but the seed, its model, sample and request id. A cascade step with `accept: "noisy_gate_pass"` is
the noisy gate; `accept: "passed"` is the oracle gate. The judge's cost and latency are not modelled
(add a `checker` to the step to charge them)."""


def routerbench(dataset: Converted, latency: dict[str, LatencyClass]) -> str:
    return f"""# routerbench: RouterBench 0-shot subset (ARC-Challenge, MBPP, Winogrande)

{dataset.traffic.height:,} prompts x {dataset.outcomes['model'].n_unique()} models = {dataset.outcomes.height:,} graded answers with the
USD cost RouterBench recorded for each call. Slices are the benchmarks.

## Source and licence

- RouterBench (Hu et al., arXiv 2403.12031), `routerbench_0shot.pkl` of the Hugging Face dataset
  withmartian/routerbench, as re-split into train/test CSVs by RouterDC (GitHub shuhao02/RouterDC,
  commit 0e63989, `datasets/routerbench_zs/`); copied in the shared `public-data/routerbench-0shot-subset`.
- Licence: RouterBench's MIT licence, text in `LICENSE.routerbench-MIT.txt`. The RouterDC repository has
  no licence of its own; redistribution relies on RouterBench's.

## Recorded

- `passed` (`score` = 1.0) or failed (0.0): RouterBench's 0/1 correctness of each model's answer
  (`grader` = deterministic: answers checked against the reference).
- `cost_usd`: RouterBench's `total_cost` of the call (`cost_source` = recorded).
- `request_id` is RouterBench's `sample_id`; `slice` its `eval_name`; traffic column `routerdc_split`
  says which RouterDC file (train or test) the prompt came from; `position` is the source order.

## Derived

- `input_tokens` and `output_tokens`: estimated as ceil(characters / {CHARS_PER_TOKEN}) of the prompt and of the model's
  answer (`token_source` = estimated); RouterBench keeps no token counts. The estimate does not enter
  the cost, which is recorded.
- `ts`: synthetic, one second apart in the order of the keyed draws u({ARRIVAL_SEED}, "arrival", request_id) (source order is kept in `position`) from 2024-03-18 00:00 UTC (RouterBench's arXiv date).
- `latency_ms`, `ttft_ms`: modelled (below). `noisy_gate_pass`: the simulated judge (below).

## The 14 duplicated ARC ids

14 ARC-Challenge `sample_id`s (`arc-challenge.val.*`) appear twice across the CSVs. The copies are not a
full row and an empty one: one copy has the scores of 10 models and lacks gpt-3.5-turbo-1106's; the other
has only gpt-3.5-turbo-1106's score. Their prompts have the same length but differ, and every cost of
the second copy is 1.99x the first copy's (it prices about twice the input: not the cost of one call).
Each id becomes one request: the first copy's prompt and costs, the 10 models' scores from it, and
gpt-3.5-turbo-1106's score (and its answer, identical in both copies) from the second copy. So every one
of the 3,164 prompts has an answer from all 11 models.

## Numbers of this data

{model_table(dataset)}

Pass rate by slice:

{slice_table(dataset)}

{latency_section(dataset, latency)}

{judge_section()}

## Scenarios

`scenarios/routerbench/`: single models (`gpt-4`, `gpt-3.5`, `mixtral`, `mistral-7b`), a cascade from
Mixtral to GPT-4 behind the oracle gate and behind the noisy gate.

{REGENERATE}
"""


def routellm(dataset: Converted, latency: dict[str, LatencyClass]) -> str:
    prices = "\n".join(f"- `{model}`: litellm key `{key}`" for model, key in ROUTELLM_PRICE_KEYS.items())
    return f"""# routellm: RouteLLM's GPT-4 vs Mixtral evaluations (MMLU, GSM8K, MT-Bench)

{dataset.traffic.height:,} prompts x 2 models (`gpt-4-1106-preview`, the strong model, and
`mistralai/Mixtral-8x7B-Instruct-v0.1`, the weak one) = {dataset.outcomes.height:,} graded answers. Slices are
the benchmarks: mmlu, gsm8k, mt_bench.

## Source and licence

- RouteLLM (Ong et al., arXiv 2406.18665), GitHub lm-sys/RouteLLM commit 0b64fda (2024-08-09),
  `routellm/evals/**`; copied in the shared `public-data/routellm-evals`. Licence Apache-2.0, text in
  `LICENSE.routellm-Apache-2.0.txt`. Question sets: MMLU (MIT), GSM8K (MIT), MT-Bench (Apache-2.0).
- Prices: litellm 1.110.2's `model_prices_and_context_window_backup.json` (MIT, `LICENSE.litellm-MIT.txt`).

## Recorded

- MMLU and GSM8K: `passed` = the authors' per-question correctness of each model (`score` 1.0/0.0,
  `grader` = deterministic). MMLU subjects are kept as traffic column `subject`.
- MT-Bench: GPT-4's 1-10 judgement of each of the two turns (`grader` = llm_judge). One request is one
  question with both turns (routed as one conversation); `score` = mean of the two turn scores / 10,
  `passed` = that mean >= {ROUTELLM_PASS_SCORE:g} (this threshold is ours; MT-Bench itself reports only the mean).
  Traffic column `subject` holds the MT-Bench category.
- The authors' contaminated prompts are left out, as in the paper: matched by prompt text (MMLU 5,
  GSM8K 12) and by the first turn (MT-Bench 8 questions).

## Derived

- Tokens: estimated as ceil(characters / {CHARS_PER_TOKEN}) (`token_source` = estimated). Input: the prompt; for MT-Bench
  both questions plus the first question again and the model's own first answer (the second turn resends
  the conversation), so it differs by model. Output: the answer text for GSM8K and MT-Bench (both turns;
  MT-Bench answers are read out of the judge prompts); MMLU records no answers, so 1 token (the letter).
- `cost_usd` is null: costs are derived by the replay from `prices.yaml` (`cost_source` = price sheet
  prices.yaml), a dated price sheet built from litellm 1.110.2 list prices:
{prices}
  (the Anyscale endpoint is RouteLLM's own default for the weak model). They are today's list prices
  entered as in force from the traffic's date, not the prices paid in 2024. Scenarios use
  `prices: ../../data/routellm/prices.yaml`.
- `ts`: synthetic, one second apart in the order of the keyed draws u({ARRIVAL_SEED}, "arrival", request_id) (source order is kept in `position`) (MMLU by subject, GSM8K, MT-Bench) from 2024-06-26
  00:00 UTC (RouteLLM's arXiv date).
- `latency_ms`, `ttft_ms`: modelled (below; MT-Bench answers count two first tokens).
  `noisy_gate_pass`: the simulated judge (below).

## Numbers of this data

Costs are derived from `prices.yaml` and the estimated tokens.

{model_table(dataset)}

Pass rate by slice:

{slice_table(dataset)}

MT-Bench mean judge score (1-10, both turns of the 72 questions): {mt_bench_scores(dataset)}.

{latency_section(dataset, latency)}

{judge_section()}

## Scenarios

`scenarios/routellm/`: each model alone, and Mixtral first escalating to GPT-4 behind the oracle gate and
behind the noisy gate.

{REGENERATE}
"""


def routerarena(dataset: Converted, latency: dict[str, LatencyClass]) -> str:
    return f"""# routerarena: RouterArena cached results (claude-3-haiku, gemini-2.0-flash)

{dataset.traffic.height:,} prompts x 2 models = {dataset.outcomes.height:,} graded answers with recorded token counts and USD costs.
The prompts are RouterArena's `sub_10` split, drawn from about 60 benchmarks.

## Source and licence

- RouterArena, GitHub RouteWorks/RouterArena commit 4714a9a (2025-11-12), `cached_results/*.jsonl`;
  copied in the shared `public-data/routerarena-cached`. Licence Apache-2.0, text in
  `LICENSE.routerarena-Apache-2.0.txt`.

## Recorded

- `input_tokens`, `output_tokens` (`token_usage`, `token_source` = recorded) and `cost_usd`
  (`evaluation_result.inference_cost`, `cost_source` = recorded).
- `score`: RouterArena's `evaluation_result.score`, 0/1 for every metric but METEOR (translation, WMT19),
  which is continuous; one METEOR score is slightly negative (-0.033) and is clipped to 0.
  `passed` = score >= {ROUTERARENA_PASS_SCORE:g} (our threshold: on 0/1 metrics it is the metric itself).
  `grader` = deterministic (RouterArena's metrics are computed).
- `request_id` is RouterArena's `global_index`; `slice` the benchmark family (its leading name: MMLUPro,
  OpenTDB, QANTA, WMT19, SuperGLUE, ...); traffic columns `benchmark` (the full benchmark, e.g.
  `MMLUPro_computer science`) and `metric`.
- The traffic row's `input_tokens` is claude-3-haiku's count of the prompt; each outcome keeps its own
  model's count (the tokenizers differ).

## Derived

- `ts`: synthetic, one second apart in the order of the keyed draws u({ARRIVAL_SEED}, "arrival", request_id) (source order is kept in `position`) from 2025-11-12 00:00 UTC (the commit's date).
- `latency_ms`, `ttft_ms`: modelled (below). `noisy_gate_pass`: the simulated judge (below).

## Numbers of this data

{model_table(dataset)}

Pass rate by slice:

{slice_table(dataset)}

{latency_section(dataset, latency)}

{judge_section()}

## Scenarios

`scenarios/routerarena/`: each model alone, and gemini-2.0-flash (cheaper and better on average) first,
escalating to claude-3-haiku behind the oracle gate and behind the noisy gate.

{REGENERATE}
"""


WRITERS = {"routerbench": routerbench, "routellm": routellm, "routerarena": routerarena}


def readme(dataset: Converted, latency: dict[str, LatencyClass]) -> str:
    return WRITERS[dataset.name](dataset, latency)
