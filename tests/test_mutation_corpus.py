"""A corpus of generated bad inputs, run in-process through the CLI's entry point.

Seeded mutations of the shipped kinds of input: Parquet data folders, scenario and price-sheet YAML,
predicates, command-line options and import files. Whatever the input, routesim must end with exit 0
(the input was valid after all) or 2 (bad input, with a message), never a traceback, an internal error
or any other exit code, and never change a file it read.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.conftest import TINY_PRICES, tiny_outcomes, tiny_traffic

SEED = 14
IMPORTS = Path(__file__).parent / "fixtures" / "imports"

SCENARIO = {
    "name": "base", "description": "every construct", "data": "../../base/data", "prices": "../../base/prices.yaml",
    "window": {"start": dt.date(2026, 11, 16), "end": dt.date(2026, 11, 17)},
    "quality_bar": {"default": 0.5, "slices": {"faq": 0.5}},
    "on_missing": "skip",
    "policy": {
        "rules": [{"name": "pro", "when": "tier = 'pro' AND input_tokens > 10", "use": "big"}],
        "default": {"cascade": [{"model": "small", "accept": "confidence >= 0.7",
                                 "checker": {"name": "judge", "cost_usd": 0.001, "latency_ms": 5}},
                                {"model": "big"}]},
        "retry": {"when": "NOT hard_check_ok", "to": ["big"], "max_attempts": 1},
    },
}

# Words predicates are built from: columns of both files, operators, odd literals and forbidden forms.
COLUMNS = ["input_tokens", "slice", "tier", "ts", "request_id", "confidence", "passed", "hard_check_ok", "score",
           "latency_ms", "cost_usd", "grader", "nope", "__rid", '"slice"', "tags"]
LITERALS = ["0", "-1", "0.7", "'faq'", "'pro'", "NULL", "TRUE", "1e400", "9223372036854775808", "''", "'2026-02-30'",
            "CAST('x' AS INT)", "CAST(slice AS DOUBLE)", "CAST(ts AS DATE)", "'\u200bfaq'", "'%'", "x'00'", "[1, 2]"]
OPERATORS = ["=", "<>", "<", ">=", "+", "-", "*", "/", "%", "AND", "OR", "LIKE", "ILIKE", "||", "IS", "IN", "::"]
FORMS = ["read_csv('/etc/passwd') IS NULL", "(SELECT 1) = 1", "now() > ts", "random() < 0.5", "sqrt(score) > 1",
         "slice IN ('faq', 'contract')", "input_tokens BETWEEN 1 AND 10", "CASE WHEN passed THEN 1 ELSE 0 END = 1",
         "coalesce(score, 0) > 0.5", "lower(slice) = 'faq'", "length(request_id) > 0", "abs(-1) = 1",
         "score IS NOT NULL", "1; DROP TABLE t", "input_tokens > 1 --", "/* */ TRUE", "x.slice = 'faq'",
         "EXISTS (SELECT 1)", "passed = 'yes'", "ts > '2026-11-16'", "ts > CAST('2026-11-16' AS TIMESTAMP)"]
ODD_VALUES = [".nan", ".inf", "-.inf", "-1", "1e400", "'2026-02-30'", "[]", "{}", "null", "''", "0", "2026-13-01",
              "!!binary aGk=", "!!python/object/apply:os.system ['true']", "&a [*a]", "\"\\ufeffsmall\"",
              "99999999999999999999999", "true", "'small '", "*undefined"]
OPTION_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e308", "1e999", "abc", "", "2026-02-30", "-", "/dev/null",
                 "0.5", "3"]


@dataclass
class Mutation:
    """One generated input: files to write into its own folder, and the command to run there."""

    label: str
    args: list[str]
    files: dict[str, bytes] = field(default_factory=dict)


def parquet_bytes(table: pa.Table | pl.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table.to_arrow() if isinstance(table, pl.DataFrame) else table, sink)
    return sink.getvalue().to_pybytes()


def data_mutations(rng: random.Random) -> list[Mutation]:
    traffic, outcomes = tiny_traffic(), tiny_outcomes()
    variants: list[tuple[str, bytes | pl.DataFrame, bytes | pl.DataFrame]] = []
    for name, frame in (("traffic", traffic), ("outcomes", outcomes)):
        for column in frame.columns:
            changed = {
                "dropped": frame.drop(column),
                "as text": frame.with_columns(pl.col(column).cast(pl.String)),
                "null": frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None)
                                           .otherwise(pl.col(column)).alias(column)),
                "as list": frame.with_columns(pl.concat_list(pl.col(column).cast(pl.String)).alias(column)),
            }
            if frame.schema[column].is_numeric():
                for value in (-1, float("nan"), float("inf"), 1e300, 2**62):
                    changed[f"= {value}"] = frame.with_columns(
                        pl.lit(value).cast(pl.Float64 if isinstance(value, float) else pl.Int64).alias(column))
            for how, mutated in changed.items():
                pair = (mutated, outcomes) if name == "traffic" else (traffic, mutated)
                variants.append((f"{name}.{column} {how}", *pair))
    for zone in ("+05:30", "-03:00", "Asia/Kolkata", "America/St_Johns", "Mars/Olympus"):
        table = traffic.to_arrow()
        index = table.schema.get_field_index("ts")
        table = table.set_column(index, "ts", table["ts"].cast(pa.timestamp("us", "UTC")).cast(pa.timestamp("us", zone)))
        variants.append((f"ts in {zone}", parquet_bytes(table), outcomes))
    variants += [
        ("ts naive", traffic.with_columns(pl.col("ts").dt.replace_time_zone(None)), outcomes),
        ("ts as date", traffic.with_columns(pl.col("ts").dt.date()), outcomes),
        ("ts year 9999", traffic.with_columns(pl.lit(dt.datetime(9999, 12, 31, tzinfo=dt.UTC)).alias("ts")), outcomes),
        ("ts in ns", traffic.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC"))), outcomes),
        ("duplicate requests", pl.concat([traffic, traffic]), outcomes),
        ("duplicate outcomes", traffic, pl.concat([outcomes, outcomes])),
        ("orphan outcome", traffic.head(2), outcomes),
        ("no requests", traffic.clear(), outcomes.clear()),
        ("no outcomes", traffic, outcomes.clear()),
        ("reserved column", traffic.with_columns(pl.lit(1).alias("__rid")), outcomes),
        ("struct column", traffic.with_columns(pl.struct(pl.col("tier")).alias("tier")), outcomes),
        ("categorical ids", traffic.with_columns(pl.col("request_id").cast(pl.Categorical)), outcomes),
        ("binary slice", traffic.with_columns(pl.col("slice").cast(pl.Binary)), outcomes),
        ("bom column", traffic.rename({"slice": "\ufeffslice"}), outcomes),
    ]
    good = parquet_bytes(outcomes)
    for _ in range(12):  # damaged bytes: truncated, overwritten, or not Parquet at all
        cut = rng.randrange(1, len(good))
        damage = rng.choice(["truncate", "flip", "zero"])
        if damage == "truncate":
            broken = good[:cut]
        else:
            size = rng.randrange(1, 64)
            broken = good[:cut] + (bytes(rng.randrange(256) for _ in range(size)) if damage == "flip"
                                   else bytes(size)) + good[cut + size:]
        variants.append((f"outcomes {damage} at {cut}", traffic, broken))
    variants += [("empty file", traffic, b""), ("text file", traffic, b"request_id,model\nr1,small\n")]
    mutations = []
    for index, (label, traffic_variant, outcomes_variant) in enumerate(variants):
        files = {"data/traffic.parquet": _bytes(traffic_variant), "data/outcomes.parquet": _bytes(outcomes_variant)}
        scenario = yaml.safe_dump(SCENARIO | {"data": "data"}).encode()
        command = ["validate", "data"] if index % 3 else ["replay", "s.yaml"]
        mutations.append(Mutation(f"data: {label}", command, files | {"s.yaml": scenario}))
    return mutations


def _bytes(value: bytes | pl.DataFrame) -> bytes:
    return value if isinstance(value, bytes) else parquet_bytes(value)


def _yaml_variants(text: str, rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    lines = text.splitlines()
    variants: list[tuple[str, bytes]] = []
    for index in range(len(lines)):
        variants.append((f"line {index + 1} deleted", "\n".join(lines[:index] + lines[index + 1:]).encode()))
        variants.append((f"line {index + 1} twice", "\n".join(lines[:index + 1] + lines[index:]).encode()))
    valued = [index for index, line in enumerate(lines) if ":" in line and not line.rstrip().endswith(":")]
    for _ in range(count):
        index, value = rng.choice(valued), rng.choice(ODD_VALUES)
        key = lines[index].split(":", 1)[0]
        variants.append((f"line {index + 1} = {value}",
                         "\n".join(lines[:index] + [f"{key}: {value}"] + lines[index + 1:]).encode()))
    variants += [
        ("bom", b"\xef\xbb\xbf" + text.encode()),
        ("not utf-8", text.encode().replace(b"e", b"\xff", 3)),
        ("nul byte", text.encode().replace(b"\n", b"\x00\n", 1)),
        ("tab indent", text.replace("  ", "\t", 2).encode()),
        ("two documents", (text + "\n---\n" + text).encode()),
        ("a list", b"- a\n- b\n"),
        ("empty", b""),
        ("deep", ("x: " + "[" * 100 + "]" * 100 + "\n" + text).encode()),
        ("long line", (text + "\ndescription2: " + "x" * 100_000 + "\n").encode()),
        ("recursive alias", (text + "\nloop: &loop [*loop]\n").encode()),
        ("alias bomb", (text + "\n" + "\n".join(
            [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}' if i else 'x'] * 9)}]" for i in range(9)]) + "\n").encode()),
        ("merge key", (text + "\nbase: &base {a: 1}\nother: {<<: *base, a: 2}\n").encode()),
    ]
    return variants


def scenario_mutations(rng: random.Random) -> list[Mutation]:
    text = yaml.safe_dump(SCENARIO, sort_keys=False)
    return [Mutation(f"scenario: {label}", ["replay", "s.yaml"] + (["--json"] if index % 4 == 0 else []),
                     {"s.yaml": content})
            for index, (label, content) in enumerate(_yaml_variants(text, rng, 90))]


def price_mutations(rng: random.Random) -> list[Mutation]:
    text = yaml.safe_dump(TINY_PRICES | {"models": {**TINY_PRICES["models"], "big": [
        {"effective_from": dt.date(2026, 11, 1), "input": 10.0, "cached_input": 5.0, "output": 20.0,
         "per_request": 0.001}]}}, sort_keys=False)
    scenario = yaml.safe_dump(SCENARIO | {"prices": "p.yaml"}).encode()
    return [Mutation(f"prices: {label}", ["replay", "s.yaml"] if index % 2 else ["validate", "p.yaml"],
                     {"p.yaml": content, "s.yaml": scenario})
            for index, (label, content) in enumerate(_yaml_variants(text, rng, 20))]


def random_predicate(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if roll < 0.25 or depth > 3:
        return rng.choice(FORMS)
    if roll < 0.45:
        return f"{rng.choice(COLUMNS)} {rng.choice(OPERATORS)} {rng.choice(LITERALS)}"
    if roll < 0.6:
        return f"NOT ({random_predicate(rng, depth + 1)})"
    if roll < 0.8:
        return f"({random_predicate(rng, depth + 1)}) {rng.choice(['AND', 'OR'])} ({random_predicate(rng, depth + 1)})"
    if roll < 0.9:
        tokens = COLUMNS + LITERALS + OPERATORS + ["(", ")", ",", "CASE", "WHEN", "THEN", "END", "'", ";"]
        return " ".join(rng.choice(tokens) for _ in range(rng.randrange(1, 9)))
    return rng.choice(["(" * 40 + "TRUE" + ")" * 40, " OR ".join(["input_tokens > 1"] * 800), "", "   ",
                       "\u200bslice = 'faq'", "slice = 'faq'\n", "ts"])


def predicate_mutations(rng: random.Random) -> list[Mutation]:
    mutations = []
    for index in range(130):
        predicate = random_predicate(rng)
        policy = json.loads(json.dumps(SCENARIO["policy"], default=str))
        place = index % 3
        if place == 0:
            policy["rules"][0]["when"] = predicate
        elif place == 1:
            policy["default"]["cascade"][0]["accept"] = predicate
        else:
            policy["retry"]["when"] = predicate
        content = yaml.safe_dump(SCENARIO | {"policy": policy}).encode()
        mutations.append(Mutation(f"predicate in {('rule', 'accept', 'retry')[place]}: {predicate[:60]!r}",
                                  ["replay", "s.yaml"], {"s.yaml": content}))
    return mutations


def option_mutations(rng: random.Random) -> list[Mutation]:
    scenario = yaml.safe_dump(SCENARIO).encode()
    other = yaml.safe_dump(SCENARIO | {"name": "other", "policy": {"default": {"use": "big"}}}).encode()
    files = {"s.yaml": scenario, "o.yaml": other}
    shapes = [
        lambda v: ["gate", "--baseline", "s.yaml", "--candidate", "o.yaml", "--confidence", v],
        lambda v: ["gate", "--baseline", "s.yaml", "--candidate", "o.yaml", "--tolerance", v, "--resamples", "50"],
        lambda v: ["gate", "--baseline", "s.yaml", "--candidate", "o.yaml", "--resamples", v],
        lambda v: ["gate", "--baseline", "s.yaml", "--candidate", "o.yaml", "--tolerance-slice", f"faq={v}",
                   "--resamples", "50"],
        lambda v: ["gate", "--baseline", "s.yaml", "--candidate", "o.yaml", "--max-cost-increase", v,
                   "--resamples", "50", "--markdown", v or "x.md"],
        lambda v: ["sweep", "s.yaml", "--points", v],
        lambda v: ["sweep", "s.yaml", "--target-pass-rate", v],
        lambda v: ["sweep", "s.yaml", "--budget", v, "-o", f"points{v}.csv"],
        lambda v: ["whatif", "s.yaml", "--scale", f"big={v}"],
        lambda v: ["whatif", "s.yaml", "--at", v],
        lambda v: ["drift", "s.yaml", "--min-rise", v],
        lambda v: ["drift", "s.yaml", "--every", v],
        lambda v: ["drift", "s.yaml", "--false-alarm", v],
        lambda v: ["lanes", "../../base/data", "--prices", "../../base/prices.yaml", "--bar", v],
        lambda v: ["lanes", "../../base/data", "--prices", "../../base/prices.yaml", "--confidence", v],
        lambda v: ["lanes", "../../base/data", "--fit-until", v],
        lambda v: ["replay", "s.yaml", "--decisions", v or "d.parquet"],
        lambda v: ["replay", "s.yaml", "--save", v or "saved"],
        lambda v: ["generate", "g", "--requests", v, "--days", "1"],
        lambda v: ["report", "--from", v or "nothing", "-o", "r.html"],
        # Options new on main since the corpus was written: worker processes, runners, shards, streamed decisions.
        lambda v: ["replay", "s.yaml", "--workers", v],
        lambda v: ["replay", "s.yaml", "--runner", v or "local"],
        lambda v: ["replay", "s.yaml", "--shards", v or "nothing"],
        lambda v: ["replay", "s.yaml", "--decisions", "-", "--save", v or "saved"],
        lambda v: ["replay", "s.yaml", "o.yaml", "--decisions", "-", "--workers", v, "--rule", "point"],
        lambda v: ["replay", "s.yaml", "--decisions", "-", "--json", "--confidence", v],
        lambda v: ["shard", "../../base/data", "--shards", v, "-o", "sh"],
    ]
    mutations = []
    for shape in shapes:
        for value in rng.sample(OPTION_VALUES, 4):
            args = shape(value)
            mutations.append(Mutation(f"options: {' '.join(args)}", args, dict(files)))
    return mutations


TINY_DATA = {"data/traffic.parquet": parquet_bytes(tiny_traffic()), "data/outcomes.parquet": parquet_bytes(tiny_outcomes())}


@functools.cache
def shards_of_tiny_world() -> dict[str, bytes]:
    """The files `routesim shard` writes for TINY_DATA in 2 shards, by path under the shards' folder."""
    import tempfile

    from simulator.core.shards import write_shards

    with tempfile.TemporaryDirectory() as scratch:
        for name, content in TINY_DATA.items():
            (Path(scratch) / name).parent.mkdir(exist_ok=True)
            (Path(scratch) / name).write_bytes(content)
        write_shards(Path(scratch) / "data", 2, Path(scratch) / "sh")
        return {str(path.relative_to(Path(scratch) / "sh")): path.read_bytes()
                for path in sorted((Path(scratch) / "sh").rglob("*")) if path.is_file()}


def shard_mutations(rng: random.Random) -> list[Mutation]:
    """A shards' folder (`replay --shards`, new since the corpus was first written) with a file missing,
    damaged or swapped, a manifest that lies, and runners and worker counts of every kind."""
    good, data = shards_of_tiny_world(), TINY_DATA
    scenario = {"s.yaml": yaml.safe_dump(SCENARIO | {"data": "data"}).encode()}
    manifest = json.loads(good["shards.json"])
    variants: list[tuple[str, dict[str, bytes]]] = [("as written", dict(good))]
    for name in good:
        variants.append((f"{name} missing", {key: value for key, value in good.items() if key != name}))
    for name in [key for key in good if key.endswith(".parquet")]:
        cut = rng.randrange(1, len(good[name]))
        variants.append((f"{name} truncated at {cut}", good | {name: good[name][:cut]}))
        variants.append((f"{name} not parquet", good | {name: b"request_id\nr1\n"}))
    variants += [
        ("traffic of shard 0 in both", good | {"shard=1/traffic.parquet": good["shard=0/traffic.parquet"]}),
        ("shards swapped", good | {"shard=0/traffic.parquet": good["shard=1/traffic.parquet"],
                                   "shard=1/traffic.parquet": good["shard=0/traffic.parquet"]}),
        ("an extra shard", good | {f"shard=2/{key.split('/')[1]}": value for key, value in good.items()
                                   if key.startswith("shard=0/")}),
        ("manifest of 3 shards", good | {"shards.json": json.dumps(manifest | {"shards": 3}).encode()}),
        ("manifest of another folder", good | {"shards.json": json.dumps(
            manifest | {"source_fingerprint": "0" * 16}).encode()}),
        ("manifest empty", good | {"shards.json": b""}),
        ("manifest a list", good | {"shards.json": b"[1, 2]"}),
        ("manifest NaN shards", good | {"shards.json": json.dumps(manifest | {"shards": float("nan")}).encode()}),
        ("manifest with a BOM", good | {"shards.json": b"\xef\xbb\xbf" + good["shards.json"]}),
        ("only the marker", {".routesim-output": good.get(".routesim-output", b"")}),
    ]
    mutations = []
    for index, (label, files) in enumerate(variants):
        runner = ["--runner", "ray"] if label.startswith("manifest") and index % 2 else []  # refused before Ray starts
        shards = {f"sh/{name}": content for name, content in files.items()}
        mutations.append(Mutation(f"shards: {label}", ["replay", "s.yaml", "--shards", "sh", *runner],
                                  data | scenario | shards))
    for args in (["replay", "s.yaml", "--shards", "s.yaml"], ["replay", "s.yaml", "--shards", "data"],
                 ["replay", "s.yaml", "--shards", "sh"], ["replay", "s.yaml", "--runner", "ray"],
                 ["replay", "s.yaml", "--shards", "sh", "--workers", "2"],
                 ["replay", "s.yaml", "--shards", "sh", "--decisions", "d.parquet"],
                 ["shard", "data", "--shards", "2", "-o", "data/sh"], ["shard", "data", "--shards", "2", "-o", "s.yaml"],
                 ["shard", "s.yaml", "--shards", "2", "-o", "sh"], ["shard", "data", "--shards", "2", "-o", "-"]):
        mutations.append(Mutation(f"shards: {' '.join(args)}", args, data | scenario))
    return mutations


IMPORT_FILES = [
    ("litellm_spend_logs.csv", ["litellm", "--assume-passed"]),
    ("litellm_spend_logs.json", ["litellm", "--assume-passed"]),
    ("otel_spans.jsonl", ["otel", "--assume-passed"]),
    ("langfuse_observations.jsonl", ["langfuse", "--assume-passed"]),
    ("langfuse_observations.csv", ["langfuse", "--assume-passed"]),
    ("openai_batch_output.jsonl", ["openai-batch", "--assume-latency-ms", "100", "--assume-passed"]),
    ("promptfoo_results.json", ["promptfoo"]),
    ("inspect_eval.json", ["inspect-ai"]),
]


def import_mutations(rng: random.Random) -> list[Mutation]:
    mutations = []
    for name, (fmt, *options) in IMPORT_FILES:
        original = (IMPORTS / name).read_bytes()
        for _ in range(11):
            damage = rng.choice(["truncate", "flip", "bom", "number", "line", "twice", "nan"])
            content = bytearray(original)
            cut = rng.randrange(1, len(original))
            if damage == "truncate":
                content = content[:cut]
            elif damage == "flip":
                content[cut] = rng.randrange(256)
            elif damage == "bom":
                content = bytearray(b"\xef\xbb\xbf") + content
            elif damage in ("number", "nan"):
                digits = [index for index, byte in enumerate(content) if chr(byte).isdigit()]
                at = rng.choice(digits)
                content[at:at + 1] = (rng.choice([b"99999999999999999999999999", b"-5", b"1e400"])
                                      if damage == "number" else rng.choice([b"NaN", b"Infinity", b"nan"]))
            else:
                lines = bytes(content).split(b"\n")
                at = rng.randrange(len(lines))
                lines = lines[:at] + ([lines[at]] if damage == "twice" else []) + lines[at:]
                content = bytearray(b"\n".join(lines))
            mutations.append(Mutation(f"import {fmt}: {name} {damage} at {cut}",
                                      ["import", fmt, name, "-o", "out", *options], {name: bytes(content)}))
    return mutations


@functools.cache
def corpus() -> list[Mutation]:
    rng = random.Random(SEED)
    return [*data_mutations(rng), *scenario_mutations(rng), *price_mutations(rng), *predicate_mutations(rng),
            *option_mutations(rng), *import_mutations(rng), *shard_mutations(rng)]


def hashes(*folders: Path) -> dict[str, str]:
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_corpus_is_large_and_covers_every_kind():
    mutations = corpus()
    kinds = {mutation.label.split(":")[0].split(" ")[0] for mutation in mutations}
    assert len(mutations) >= 500
    assert kinds == {"data", "scenario", "prices", "predicate", "options", "import", "shards"}


def test_every_mutation_ends_in_exit_0_or_2_with_inputs_unchanged(cli, tmp_path, monkeypatch):
    base = tmp_path / "base"
    (base / "data").mkdir(parents=True)
    tiny_traffic().write_parquet(base / "data" / "traffic.parquet")
    tiny_outcomes().write_parquet(base / "data" / "outcomes.parquet")
    (base / "prices.yaml").write_text(yaml.safe_dump(TINY_PRICES))
    # One core: shards and chunks replay in this process instead of a pool of fresh ones per case (the
    # pools are tested in tests/test_shard_runners.py); the inputs reach the same checks either way.
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    failures = []
    for index, mutation in enumerate(corpus()):
        folder = tmp_path / "cases" / str(index)
        folder.mkdir(parents=True)
        for name, content in mutation.files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(content)
        monkeypatch.chdir(folder)
        before = hashes(base, folder)
        result = cli(*mutation.args)
        after = hashes(base, folder)
        changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
        allowed = (0, 1, 2) if mutation.args[0] == "gate" else (0, 2)  # exit 1: the gate ran and failed
        if result.code not in allowed or "Traceback" in result.out + result.err or changed:
            failures.append(f"{mutation.label} -> exit {result.code}, changed {changed}: {result.err[-300:]}")
        shutil.rmtree(folder)
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures)
