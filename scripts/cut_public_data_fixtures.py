"""Cuts the small excerpts of the upstream public data that tests/test_public_data.py converts.

    python scripts/cut_public_data_fixtures.py [--source ../shared/public-data] [--out tests/fixtures/public-data]

Reads the shared public-data folder (never writes to it) and rewrites `--out` from scratch: the same
folder layout and file formats as upstream, only the files `simulator/public_data.build_all` reads, each
cut to a few dozen rows by the fixed rules below, plus the upstream licence texts and a README. Rows are
upstream rows, unchanged: CSV rows are re-serialised with the csv module (which reproduces the upstream
files byte for byte) and checked to occur verbatim upstream; JSONL lines are copied as they are; the
LLMPerf record lists are re-dumped with the indentation of the upstream files. Standard library only, so
the excerpts do not depend on the converter they test. Running it again gives the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TITLE = "# Excerpts of the shared public data, for tests/test_public_data.py"
csv.field_size_limit(1 << 30)

# RouterBench (routerbench-0shot-subset/*.csv): the first rows of each file (MBPP rows are ~10 kB, so
# fewer), and both copies of three of the 14 sample_ids listed twice (one pair across the test and train
# files, one pair within each file), so that the merge of duplicated ids is exercised.
ROUTERBENCH_FIRST_ROWS = {"arc_challenge_test.csv": 6, "arc_challenge_train.csv": 6, "mbpp_test.csv": 2,
                          "mbpp_train.csv": 2, "winograde_test.csv": 6, "winograde_train.csv": 6}
ROUTERBENCH_DUPLICATED_IDS = ("arc-challenge.val.136", "arc-challenge.val.172", "arc-challenge.val.208")

# RouteLLM (routellm-evals/evals/): the first rows of three MMLU subjects (machine_learning's row 0 and
# high_school_european_history's row 4 are contaminated) and of GSM8K (rows 0, 1, 2 and 18 are);
# MT-Bench: the question with the shortest judgements in four categories (writing 89, roleplay 99,
# reasoning 108, extraction 131), two that Mixtral fails (math 117, mean judge score 7.5, just under the
# pass score of 8; extraction 140, mean 5), and the two contaminated questions with the shortest
# judgements (92, 104); all judgements of those questions. The contaminated_prompts.jsonl lists are
# copied whole.
MMLU_FIRST_ROWS = {"abstract_algebra": 10, "high_school_european_history": 10, "machine_learning": 10}
GSM8K_FIRST_ROWS = 20
MT_BENCH_QUESTIONS = (89, 92, 99, 104, 108, 117, 131, 140)

# RouterArena (routerarena-cached/): every 50th prompt in file order, and positions 492-495 (METEOR
# scores, one of them the only negative score, which the converter clips); the same prompts from both
# models' files.
ROUTERARENA_FILES = ("claude-3-haiku-20240307.jsonl", "gemini-2.0-flash-001.jsonl")
ROUTERARENA_POSITIONS = sorted({*range(0, 809, 50), 492, 493, 494, 495})

# LLMPerf (llmperf-leaderboard/individual/): the first 12 requests of three providers that ran all three
# sizes (lepton's requests 10 and 11 are errors) and of two that did not (bedrock 13b/70b, with errors;
# groq 70b), so that the latency fit's filter on providers is exercised (the failed requests record one
# output token and are left out by its filter on output length as well as by the one on errors).
LLMPERF_FILES = ("anyscale_7b", "anyscale_13b", "anyscale_70b", "fireworks_7b", "fireworks_13b", "fireworks_70b",
                 "lepton_7b", "lepton_13b", "lepton_70b", "bedrock_13b", "bedrock_70b", "groq_70b")
LLMPERF_FIRST_REQUESTS = 12

# litellm 1.110.2 price sheet: the two entries the RouteLLM price sheet is derived from.
LITELLM_SHEET = "price-sheets/litellm-1.110.2/model_prices_and_context_window_backup.json"
LITELLM_KEYS = ("gpt-4-1106-preview", "anyscale/mistralai/Mixtral-8x7B-Instruct-v0.1")

LICENCES = ("routerbench-0shot-subset/LICENSE.routerbench-MIT.txt", "routellm-evals/LICENSE.upstream-Apache-2.0.txt",
            "routerarena-cached/LICENSE.upstream-Apache-2.0.txt", "llmperf-leaderboard/LICENSE.upstream-Apache-2.0.txt",
            "price-sheets/litellm-1.110.2/LICENSE.upstream.txt")


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def cut_csv(source: Path, out: Path, keep) -> int:
    """Writes the header and the rows for which keep(index, row) holds; returns how many."""
    upstream = source.read_text(encoding="utf-8")
    header, *rows = csv.reader(io.StringIO(upstream, newline=""))
    kept = [row for index, row in enumerate(rows) if keep(index, dict(zip(header, row)))]
    for row in kept:
        assert csv_text([row]) in upstream, f"a row of {source} does not re-serialise verbatim"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(csv_text([header, *kept]), encoding="utf-8", newline="")
    return len(kept)


def cut_lines(source: Path, out: Path, keep) -> int:
    """Copies the JSONL lines for which keep(index, record) holds, unchanged; returns how many."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for index, line in enumerate(lines) if line.strip() and keep(index, json.loads(line))]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(kept), encoding="utf-8", newline="")
    return len(kept)


def copy(source: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out)


def cut(source: Path, out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}

    bench = "routerbench-0shot-subset"
    for name, first in ROUTERBENCH_FIRST_ROWS.items():
        counts[f"{bench}/{name}"] = cut_csv(
            source / bench / name, out / bench / name,
            lambda index, row, first=first: index < first or row["sample_id"] in ROUTERBENCH_DUPLICATED_IDS)

    evals = "routellm-evals/evals"
    for subject, first in MMLU_FIRST_ROWS.items():
        name = f"{evals}/mmlu/responses/mmlu_{subject}.csv"
        counts[name] = cut_csv(source / name, out / name, lambda index, row, first=first: index < first)
    name = f"{evals}/gsm8k/gsm8k_responses.csv"
    counts[name] = cut_csv(source / name, out / name, lambda index, row: index < GSM8K_FIRST_ROWS)
    for name in ("question.jsonl", "judgements.jsonl"):
        path = f"{evals}/mt_bench/{name}"
        counts[path] = cut_lines(source / path, out / path,
                                 lambda index, record: record["question_id"] in MT_BENCH_QUESTIONS)
    for benchmark in ("mmlu", "gsm8k", "mt_bench"):
        copy(source / evals / benchmark / "contaminated_prompts.jsonl",
             out / evals / benchmark / "contaminated_prompts.jsonl")

    arena = "routerarena-cached"
    first_file = (source / arena / ROUTERARENA_FILES[0]).read_text(encoding="utf-8").splitlines()
    prompts = {json.loads(first_file[position])["global_index"] for position in ROUTERARENA_POSITIONS}
    for name in ROUTERARENA_FILES:
        counts[f"{arena}/{name}"] = cut_lines(source / arena / name, out / arena / name,
                                             lambda index, record: record["global_index"] in prompts)
        assert counts[f"{arena}/{name}"] == len(prompts), f"{name} lacks some of the prompts"

    for run in LLMPERF_FILES:
        name = f"llmperf-leaderboard/individual/{run}.json"
        requests = json.loads((source / name).read_text(encoding="utf-8"))[:LLMPERF_FIRST_REQUESTS]
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(json.dumps(requests, indent=4), encoding="utf-8")
        counts[name] = len(requests)

    sheet = json.loads((source / LITELLM_SHEET).read_text(encoding="utf-8"))
    (out / LITELLM_SHEET).parent.mkdir(parents=True, exist_ok=True)
    (out / LITELLM_SHEET).write_text(json.dumps({key: sheet[key] for key in LITELLM_KEYS}, indent=4) + "\n",
                                     encoding="utf-8")
    counts[LITELLM_SHEET] = len(LITELLM_KEYS)

    for name in LICENCES:
        copy(source / name, out / name)
    (out / "README.md").write_text(readme(counts), encoding="utf-8")
    return counts


def readme(counts: dict[str, int]) -> str:
    table = "\n".join(f"| `{name}` | {count} |" for name, count in counts.items())
    rules = [
        "RouterBench: the first rows of each file ("
        + ", ".join(f"{first} of {name}" for name, first in ROUTERBENCH_FIRST_ROWS.items())
        + "), and both copies of three of the 14 duplicated sample_ids ("
        + ", ".join(ROUTERBENCH_DUPLICATED_IDS) + ").",
        "RouteLLM: the first rows of MMLU "
        + ", ".join(f"{subject} ({first})" for subject, first in MMLU_FIRST_ROWS.items())
        + f" and the first {GSM8K_FIRST_ROWS} of GSM8K, which include contaminated prompts; MT-Bench questions "
        + ", ".join(map(str, MT_BENCH_QUESTIONS))
        + " (92 and 104 contaminated) with all their judgements; the contaminated-prompt lists whole.",
        "RouterArena: every 50th prompt and positions 492-495 (METEOR scores, one of them the only negative "
        "score), the same prompts from both models' files.",
        f"LLMPerf: the first {LLMPERF_FIRST_REQUESTS} requests of " + ", ".join(LLMPERF_FILES)
        + " (anyscale, fireworks and lepton ran all three sizes, bedrock and groq did not; some requests are"
        " errors).",
        "litellm 1.110.2 price sheet: the entries " + ", ".join(LITELLM_KEYS) + ".",
    ]
    rules = "\n".join(textwrap.fill(rule, 105, initial_indent="- ", subsequent_indent="  ",
                                    break_on_hyphens=False) for rule in rules)
    return f"""{TITLE}

Small excerpts of the upstream files in the shared `public-data` folder (`../shared/public-data` beside
the clone; its README and the README of each of its folders say where each file came from). They are the
files `simulator/public_data.build_all` reads, in the same folder layout and formats, so that
`tests/test_public_data.py` converts them on every clone and checks the converted numbers against the
same files read with the standard library. The full conversion (the shipped `data/` folders) is checked
against the shared folder itself where it exists (in CI).

Rows are upstream rows, unchanged; only their number is cut. Each upstream folder keeps its licence
text (`LICENSE.*`): RouterBench MIT, RouteLLM Apache-2.0, RouterArena Apache-2.0, LLMPerf leaderboard
Apache-2.0, litellm MIT.

## How they were cut

`scripts/cut_public_data_fixtures.py` (standard library only) writes this whole folder, this README
included, from the shared folder:

```sh
python scripts/cut_public_data_fixtures.py --source ../shared/public-data --out tests/fixtures/public-data
```

The rules (the constants at the top of the script):

{rules}

## Rows kept

| file | rows |
|---|---:|
{table}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "public-data")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "public-data")
    args = parser.parse_args()
    if not (args.source / "routerbench-0shot-subset").is_dir():
        parser.error(f"{args.source} is not the shared public-data folder")
    if args.out.exists():
        marker = args.out / "README.md"
        if not (marker.is_file() and marker.read_text(encoding="utf-8").startswith(TITLE)):
            parser.error(f"{args.out} exists and is not a folder this script wrote; not replacing it")
        shutil.rmtree(args.out)
    counts = cut(args.source, args.out)
    size = sum(path.stat().st_size for path in args.out.rglob("*") if path.is_file())
    print(f"wrote {sum(counts.values())} rows in {len(counts)} files to {args.out} ({size:,} bytes in all)")


if __name__ == "__main__":
    main()
