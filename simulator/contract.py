"""The data contract: what `traffic.parquet` and `outcomes.parquet` must hold, checked on every load.

A data folder holds two Parquet files:

- `traffic.parquet`: one row per logged request. Required columns are in `TRAFFIC_COLUMNS`; any further
  column (feature, customer_tier, ...) is kept and usable by rules.
- `outcomes.parquet`: one row per request x candidate model x sample, with the columns in
  `OUTCOME_COLUMNS`. `sample` numbers repeated answers of the same model from 0 upwards.

`validate_data` reports every problem at once; `load_data` raises on the first report with problems.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from simulator.errors import RoutesimError, did_you_mean

TRAFFIC_FILE = "traffic.parquet"
OUTCOMES_FILE = "outcomes.parquet"

INTEGER = "integer"
FLOAT = "number"
STRING = "string"
BOOLEAN = "boolean"
TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    nullable: bool
    meaning: str
    unit_interval: bool = False  # values must lie in 0..1
    non_negative: bool = False


TRAFFIC_COLUMNS: tuple[Column, ...] = (
    Column("request_id", STRING, False, "unique id of the logged request"),
    Column("ts", TIMESTAMP, False, "when the request arrived (UTC)"),
    Column("slice", STRING, False, "the request type that evals and quality bars are defined on"),
    Column("input_tokens", INTEGER, False, "prompt tokens of the request", non_negative=True),
)

OUTCOME_COLUMNS: tuple[Column, ...] = (
    Column("request_id", STRING, False, "the request this answer belongs to"),
    Column("model", STRING, False, "the candidate model that answered"),
    Column("sample", INTEGER, False, "0 for the first answer of this model, 1 for a repeat, ...",
           non_negative=True),
    Column("input_tokens", INTEGER, False, "prompt tokens billed for this call", non_negative=True),
    Column("cached_input_tokens", INTEGER, True, "part of input_tokens served from the prompt cache",
           non_negative=True),
    Column("output_tokens", INTEGER, False, "completion tokens", non_negative=True),
    Column("latency_ms", FLOAT, False, "end-to-end latency of the call", non_negative=True),
    Column("ttft_ms", FLOAT, True, "time to first token", non_negative=True),
    Column("passed", BOOLEAN, False, "the grader's verdict against the slice's bar"),
    Column("score", FLOAT, True, "graded quality", unit_interval=True),
    Column("confidence", FLOAT, True, "the model's own confidence signal", unit_interval=True),
    Column("checker_score", FLOAT, True, "a separate cheap checker's score of the answer",
           unit_interval=True),
    Column("hard_check_ok", BOOLEAN, False, "well-formed output, tool call succeeded, grounding not empty"),
    Column("cost_usd", FLOAT, True, "the cost recorded when the call ran", non_negative=True),
    Column("grader", STRING, True, "deterministic, llm_judge or human"),
)

GRADERS = ("deterministic", "llm_judge", "human")

# How many example rows a problem shows.
EXAMPLES = 3


def _kind_of(dtype: pl.DataType) -> str | None:
    if dtype.is_integer():
        return INTEGER
    if dtype.is_float():
        return FLOAT
    if dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum:
        return STRING
    if dtype == pl.Boolean:
        return BOOLEAN
    if isinstance(dtype, pl.Datetime):
        return TIMESTAMP
    if dtype == pl.Null:
        return "null"
    return None


def _accepts(expected: str, actual: str | None) -> bool:
    # An all-integer column is a fine number; an all-null column fits any nullable column.
    return actual == expected or (expected == FLOAT and actual == INTEGER) or actual == "null"


@dataclass
class Report:
    """Problems found in one input, each naming the file, column and example rows."""

    problems: list[str] = field(default_factory=list)

    def add(self, file: str, what: str, *, column: str | None = None, examples: str = "",
            fix: str = "") -> None:
        where = f"{file}" + (f", column '{column}'" if column else "")
        text = f"{where}: {what}"
        if examples:
            text += f"\n    e.g. {examples}"
        if fix:
            text += f"\n    fix: {fix}"
        self.problems.append(text)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_problems(self, subject: str) -> None:
        if self.problems:
            count = len(self.problems)
            raise RoutesimError(
                f"{subject} breaks the data contract ({count} problem{'s' if count > 1 else ''}):\n  - "
                + "\n  - ".join(p.replace("\n", "\n    ") for p in self.problems),
                fix="see 'Data contract' in the README; run 'routesim validate' to list every problem",
            )


def _examples(frame: pl.DataFrame, columns: list[str]) -> str:
    rows = frame.select(columns).head(EXAMPLES).to_dicts()
    return "; ".join(", ".join(f"{k}={v!r}" for k, v in row.items()) for row in rows)


def _check_columns(report: Report, file: str, schema: pl.Schema, columns: tuple[Column, ...]) -> bool:
    """Presence and types. Returns False when a later value check could not run."""
    usable = True
    for column in columns:
        if column.name not in schema:
            hint = did_you_mean(column.name, schema.names())
            report.add(file, f"missing required column '{column.name}' ({column.kind}: {column.meaning}).{hint}",
                       fix=f"add the column '{column.name}'")
            usable = False
            continue
        actual = _kind_of(schema[column.name])
        if not _accepts(column.kind, actual):
            report.add(file, f"has type {schema[column.name]} but must be {column.kind}", column=column.name,
                       fix=f"cast '{column.name}' to {column.kind}")
            usable = False
    return usable


def _check_values(report: Report, file: str, frame: pl.DataFrame, columns: tuple[Column, ...],
                  key: list[str]) -> None:
    for column in columns:
        values = pl.col(column.name)
        if not column.nullable:
            bad = frame.filter(values.is_null())
            if bad.height:
                report.add(file, f"{bad.height} null value(s) in a column that must always be set",
                           column=column.name, examples=_examples(bad, key))
        if column.non_negative:
            bad = frame.filter(values < 0)
            if bad.height:
                report.add(file, f"{bad.height} negative value(s)", column=column.name,
                           examples=_examples(bad, [*key, column.name]), fix="counts and durations are >= 0")
        if column.unit_interval:
            bad = frame.filter((values < 0) | (values > 1) | values.is_nan())
            if bad.height:
                report.add(file, f"{bad.height} value(s) outside 0..1", column=column.name,
                           examples=_examples(bad, [*key, column.name]), fix="scale scores to 0..1")


def _check_unique(report: Report, file: str, frame: pl.DataFrame, key: list[str]) -> None:
    duplicated = frame.filter(pl.struct(key).is_duplicated())
    if duplicated.height:
        report.add(file, f"{duplicated.height} rows share a key ({', '.join(key)}) that must be unique",
                   column=", ".join(key), examples=_examples(duplicated.sort(key), key),
                   fix="keep one row per key, or number repeated answers with 'sample'")


def validate_frames(traffic: pl.DataFrame, outcomes: pl.DataFrame, *, traffic_file: str = TRAFFIC_FILE,
                    outcomes_file: str = OUTCOMES_FILE) -> Report:
    """Every contract problem of a traffic/outcomes pair."""
    report = Report()
    traffic_usable = _check_columns(report, traffic_file, traffic.schema, TRAFFIC_COLUMNS)
    outcomes_usable = _check_columns(report, outcomes_file, outcomes.schema, OUTCOME_COLUMNS)
    if traffic_usable:
        _check_values(report, traffic_file, traffic, TRAFFIC_COLUMNS, ["request_id"])
        _check_unique(report, traffic_file, traffic, ["request_id"])
    if outcomes_usable:
        key = ["request_id", "model", "sample"]
        _check_values(report, outcomes_file, outcomes, OUTCOME_COLUMNS, key)
        _check_unique(report, outcomes_file, outcomes, key)
        cached_over = outcomes.filter(pl.col("cached_input_tokens") > pl.col("input_tokens"))
        if cached_over.height:
            report.add(outcomes_file, f"{cached_over.height} row(s) with more cached than total input tokens",
                       column="cached_input_tokens",
                       examples=_examples(cached_over, [*key, "input_tokens", "cached_input_tokens"]),
                       fix="cached_input_tokens counts the cached part of input_tokens")
        unknown_grader = outcomes.filter(pl.col("grader").is_not_null() & ~pl.col("grader").is_in(GRADERS))
        if unknown_grader.height:
            report.add(outcomes_file, f"{unknown_grader.height} row(s) with an unknown grader", column="grader",
                       examples=_examples(unknown_grader, [*key, "grader"]),
                       fix=f"use one of {', '.join(GRADERS)} or leave it null")
        gaps = (outcomes.group_by("request_id", "model")
                .agg(pl.col("sample").max().alias("max_sample"), pl.len().alias("samples"))
                .filter(pl.col("max_sample") + 1 != pl.col("samples")))
        if gaps.height:
            report.add(outcomes_file, f"{gaps.height} request x model pair(s) whose samples do not run 0, 1, 2, ...",
                       column="sample", examples=_examples(gaps.sort("request_id", "model"),
                                                           ["request_id", "model", "max_sample", "samples"]),
                       fix="number the answers of one model to one request from 0 without gaps")
    if traffic_usable and outcomes_usable:
        orphans = outcomes.join(traffic.select("request_id"), on="request_id", how="anti")
        if orphans.height:
            report.add(outcomes_file, f"{orphans.height} outcome row(s) for requests not in {traffic_file}",
                       column="request_id", examples=_examples(orphans.sort(key), key),
                       fix="drop outcomes of unknown requests or add the requests to the traffic")
    return report


@dataclass(frozen=True)
class Dataset:
    """A validated data folder, held as lazy scans so the engine can push projections and filters down."""

    folder: Path
    traffic: pl.LazyFrame
    outcomes: pl.LazyFrame
    fingerprint: str


def data_files(folder: Path) -> tuple[Path, Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise RoutesimError(f"data folder not found: {folder}",
                            fix=f"point 'data' at a folder holding {TRAFFIC_FILE} and {OUTCOMES_FILE}")
    traffic_path, outcomes_path = folder / TRAFFIC_FILE, folder / OUTCOMES_FILE
    for path in (traffic_path, outcomes_path):
        if not path.is_file():
            raise RoutesimError(f"missing {path.name} in the data folder", where=str(folder),
                                fix=f"a data folder holds {TRAFFIC_FILE} and {OUTCOMES_FILE}")
    return traffic_path, outcomes_path


def read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as error:  # polars raises several types for unreadable files
        raise RoutesimError(f"cannot read {path} as Parquet: {error}".splitlines()[0], where=str(path),
                            fix="write the file with a Parquet writer (polars, pyarrow, duckdb)") from None


def fingerprint(paths: list[Path]) -> str:
    """Identifies the data a result came from by content, so a fresh clone gives the same fingerprint."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def validate_folder(folder: Path) -> Report:
    traffic_path, outcomes_path = data_files(folder)
    return validate_frames(read_parquet(traffic_path), read_parquet(outcomes_path),
                           traffic_file=str(traffic_path), outcomes_file=str(outcomes_path))


def load_data(folder: Path) -> Dataset:
    """Validate a data folder and open it lazily. Raises RoutesimError listing every problem."""
    traffic_path, outcomes_path = data_files(folder)
    validate_folder(folder).raise_if_problems(f"data folder {folder}")
    return Dataset(folder=Path(folder), traffic=pl.scan_parquet(traffic_path),
                   outcomes=pl.scan_parquet(outcomes_path),
                   fingerprint=fingerprint([traffic_path, outcomes_path]))
