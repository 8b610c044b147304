"""The data contract: what `traffic.parquet` and `outcomes.parquet` must hold, checked on every load.

A data folder holds two Parquet files:

- `traffic.parquet`: one row per logged request. Required columns are in `TRAFFIC_COLUMNS`; any further
  column (feature, customer_tier, ...) is kept and usable by rules.
- `outcomes.parquet`: one row per request x candidate model x sample, with the columns in
  `OUTCOME_COLUMNS`. `sample` numbers repeated answers of the same model from 0 upwards.

`validate_data` reports every problem at once; `load_data` raises on the first report with problems.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import polars as pl

from simulator.core.errors import Origin, RoutesimError, did_you_mean
from simulator.core.layout import Layout, content_fingerprint, open_layout, split_by_bucket
from simulator.core.outputs import atomic_folder, note_input

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
    probability: bool = False  # values must lie in 0 < p <= 1 (a probability something did happen)
    values: tuple[str, ...] = ()  # the allowed values of a string column (nulls aside)
    grade: bool = False  # known only once the answer is graded, never when the call returns


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
    Column("passed", BOOLEAN, False, "the grader's verdict against the slice's bar", grade=True),
    Column("score", FLOAT, True, "graded quality", unit_interval=True, grade=True),
    Column("confidence", FLOAT, True, "the model's own confidence signal", unit_interval=True),
    Column("checker_score", FLOAT, True, "a separate cheap checker's score of the answer",
           unit_interval=True),
    Column("hard_check_ok", BOOLEAN, False, "well-formed output, tool call succeeded, grounding not empty"),
    Column("cost_usd", FLOAT, True, "the cost recorded when the call ran", non_negative=True),
    Column("grader", STRING, True, "deterministic, llm_judge or human", grade=True),
)

# Outcome columns known when the call returns (so a deployable policy may read them): the contract's
# columns that are not grades, and the token counts importers add. Any other outcome column is a grade
# unless the data folder's manifest (SIGNALS_FILE) declares it a serving-time signal.
SERVING_TIME_COLUMNS = frozenset([column.name for column in OUTCOME_COLUMNS if not column.grade]
                                 + ["cache_write_input_tokens", "answer_key"])
SIGNALS_FILE = "columns.json"

GRADERS = ("deterministic", "llm_judge", "human")
GOLD_GRADERS = ("human", "deterministic")

# Optional columns for served-only production logs: absent is fine, present means typed and in range.
OPTIONAL_TRAFFIC_COLUMNS: tuple[Column, ...] = (
    Column("served_model", STRING, True, "the model the logging router sent the request to"),
    Column("logging_propensity", FLOAT, True, "probability the logging router gave served_model",
           probability=True),
    Column("messages", STRING, True, "the request's chat messages as JSON text (private: only written to "
           "OpenAI Batch files)"),
    Column("session_id", STRING, True, "the conversation the request is a turn of; null: a request on its own"),
    Column("turn", INTEGER, True, "the request's turn in its session, 0 first", non_negative=True),
)
# `propensity_<model>`: the logging router's probability of each candidate model, for the support check.
PROPENSITY_PREFIX = "propensity_"
# How far apart two records of one probability may be: 1e-6 of the larger. Logging systems often hold a
# propensity in float32 somewhere on the way (a model server's softmax: 6e-8 relative) or print it with 7
# significant digits (5e-7); a real mismatch (another model's column, a probability written before a
# fallback changed the served model) is far wider. Relative, with no absolute floor: a weight is 1 / p, so
# an estimate feels p's relative error (1e-13 against 2e-13 doubles a weight), and 1e-6 of a weight moves
# an estimate by 1e-6 of itself. The propensity columns of one request may add up to 1 + this.
PROPENSITY_TOLERANCE = 1e-6
SERVICE_TIERS = ("standard", "batch", "flex", "priority")
ERROR_TYPES = ("rate_limit", "timeout", "context_window", "content_filter", "other")
OPTIONAL_OUTCOME_COLUMNS: tuple[Column, ...] = (
    Column("cache_write_input_tokens", INTEGER, True, "part of input_tokens written to the prompt cache at the "
           "standard rate (Anthropic's 5-minute cache)", non_negative=True),
    Column("cache_write_1h_input_tokens", INTEGER, True, "part of input_tokens written to the prompt cache at the "
           "1-hour rate", non_negative=True),
    Column("reasoning_output_tokens", INTEGER, True, "part of output_tokens that was reasoning", non_negative=True),
    Column("service_tier", STRING, True, "the service tier the logged call ran on: standard, batch, flex or priority",
           values=SERVICE_TIERS),
    Column("error_type", STRING, True, "why a failed call failed: rate_limit, timeout, context_window, "
           "content_filter or other", values=ERROR_TYPES),
    Column("answer_key", STRING, True, "a hash of the normalised answer: equal keys, equal answers (what "
           "agreement gates compare)"),
    Column("inclusion_probability", FLOAT, True, "probability this request was drawn into the shadow sample",
           probability=True),
    Column("gold_passed", BOOLEAN, True, "a reference grade (human or deterministic) beside the judge's passed"),
    Column("gold_grader", STRING, True, "who gave gold_passed: human or deterministic"),
    Column("gold_inclusion_probability", FLOAT, True, "probability this answer was drawn for gold grading",
           probability=True),
)

# How many example rows a problem shows.
EXAMPLES = 3
KEY_CHECK_ROWS = 8_000_000  # outcome rows per bucket of the key checks, which group by request id
FILE_ROW = "__file_row"  # an outcome row's position in its file, to show the first offending rows
# in Int64: top + 1 in the column's own type would wrap (an Int8 sample numbered up to 127)
_GAPPED = pl.col("top").cast(pl.Int64) + 1 != pl.col("distinct")


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


def _examples(frame: pl.LazyFrame, condition: pl.Expr, columns: list[str]) -> str:
    rows = frame.filter(condition).select(columns).head(EXAMPLES).collect().to_dicts()
    return "; ".join(", ".join(f"{k}={v!r}" for k, v in row.items()) for row in rows)


RESERVED_PREFIX = "__"  # the engine's working columns; a user column may not start with it


def present_optional(schema: pl.Schema, optional: tuple[Column, ...]) -> tuple[Column, ...]:
    """The optional columns `schema` holds, plus a `propensity_<model>` probability column for each it has."""
    named = {column.name: column for column in optional}
    found = [named[name] for name in schema.names() if name in named]
    if any(column.name == "logging_propensity" for column in optional):
        found += [Column(name, FLOAT, True, "the logging router's probability of this model", unit_interval=True)
                  for name in schema.names() if name.startswith(PROPENSITY_PREFIX)]
    return tuple(found)


def _check_columns(report: Report, file: str, schema: pl.Schema, columns: tuple[Column, ...]) -> set[str]:
    """Presence and types (optional columns only when present). Returns the columns present with a usable
    type, which the value checks read."""
    usable = set()
    for name in schema.names():
        if name.startswith(RESERVED_PREFIX):
            report.add(file, f"column '{name}' starts with '{RESERVED_PREFIX}', which routesim keeps for its own "
                       "working columns", column=name, fix=f"rename it, e.g. to '{name.lstrip('_')}'")
    # A missing column's near-misses are the file's columns that are not already another column of the
    # contract: 'input_tokens' is no typo of a missing 'cached_input_tokens'.
    known = {column.name for column in columns}
    for column in columns:
        if column.name not in schema:
            hint = did_you_mean(column.name, [name for name in schema.names() if name not in known])
            report.add(file, f"missing required column '{column.name}' ({column.kind}: {column.meaning}).{hint}",
                       fix=f"add the column '{column.name}'")
            continue
        actual = _kind_of(schema[column.name])
        if not _accepts(column.kind, actual):
            report.add(file, f"has type {schema[column.name]} but must be {column.kind}", column=column.name,
                       fix=f"cast '{column.name}' to {column.kind}")
            continue
        usable.add(column.name)
    return usable


@dataclass(frozen=True)
class RowCheck:
    """A condition no row may meet, with how to report the rows that do."""

    column: str
    condition: pl.Expr
    what: str  # formatted with the count of offending rows
    shown: tuple[str, ...] = ()
    fix: str = ""
    columns: str = ""  # the columns the report names, when the check reads more than `column`


def _row_checks(columns: tuple[Column, ...]) -> list[RowCheck]:
    checks = []
    for column in columns:
        values = pl.col(column.name)
        if not column.nullable:
            checks.append(RowCheck(column.name, values.is_null(),
                                   "{} null value(s) in a column that must always be set",
                                   fix=f"set {column.name} in every row, or drop the rows without one"))
        if column.non_negative:
            not_finite = (values.is_nan() | values.is_infinite()) if column.kind == FLOAT else pl.lit(False)
            checks.append(RowCheck(column.name, (values < 0) | not_finite, "{} negative or not finite value(s)",
                                   (column.name,), "counts, durations and costs are finite numbers >= 0"))
        if column.unit_interval:
            checks.append(RowCheck(column.name, (values < 0) | (values > 1) | values.is_nan(),
                                   "{} value(s) outside 0..1", (column.name,), "scale scores to 0..1"))
        if column.values:
            checks.append(RowCheck(column.name, values.is_not_null() & ~values.cast(pl.String).is_in(column.values),
                                   "{} row(s) with an unknown value", (column.name,),
                                   f"use one of {', '.join(column.values)} or leave it null"))
        if column.probability:
            checks.append(RowCheck(column.name, (values <= 0) | (values > 1) | values.is_nan(),
                                   "{} value(s) outside 0 < p <= 1", (column.name,),
                                   "a probability that something did happen lies in (0, 1]"))
    return checks


OUTCOME_ROW_CHECKS = (
    RowCheck("cached_input_tokens", pl.col("cached_input_tokens") > pl.col("input_tokens"),
             "{} row(s) with more cached than total input tokens", ("input_tokens", "cached_input_tokens"),
             "cached_input_tokens counts the cached part of input_tokens"),
    RowCheck("grader", pl.col("grader").is_not_null() & ~pl.col("grader").is_in(GRADERS),
             "{} row(s) with an unknown grader", ("grader",), f"use one of {', '.join(GRADERS)} or leave it null"),
)
def usage_row_checks(schema: pl.Schema) -> list[RowCheck]:
    """Checks on the optional token columns a file has: the cache's parts within the input, reasoning
    within the output."""
    checks = []
    parts = [name for name in ("cached_input_tokens", "cache_write_input_tokens", "cache_write_1h_input_tokens")
             if name in schema]
    if len(parts) > 1:
        cache = pl.sum_horizontal(pl.col(name).fill_null(0) for name in parts)
        checks.append(RowCheck(parts[1], cache > pl.col("input_tokens"),
                               "{} row(s) whose cache reads and writes add up to more than input_tokens",
                               ("input_tokens", *parts), "cache reads and writes are parts of input_tokens"))
    if "reasoning_output_tokens" in schema:
        checks.append(RowCheck("reasoning_output_tokens", pl.col("reasoning_output_tokens") > pl.col("output_tokens"),
                               "{} row(s) with more reasoning than output tokens",
                               ("output_tokens", "reasoning_output_tokens"),
                               "output_tokens includes reasoning: add the reasoning tokens to it"))
    return checks


def propensity_row_checks(schema: pl.Schema) -> list[RowCheck]:
    """Checks that a served log's propensities describe one logging router (README, "Served-only production
    logs"): on a request served by model m, `propensity_m` is above 0 (the router did pick m) and equals
    `logging_propensity` (both are its probability of m) within PROPENSITY_TOLERANCE of the larger; and a
    request's `propensity_<model>` columns, the router's distribution over the models, add up to at most
    1 + PROPENSITY_TOLERANCE (less than 1 when some candidates have no column). A served model without a
    column, and nulls, are not checked: nothing is recorded to compare. NaN is left to the range checks."""
    columns = [name for name in schema.names() if name.startswith(PROPENSITY_PREFIX)]
    checks = []
    logged = pl.col("logging_propensity")
    for column in columns if "served_model" in schema else []:
        model = column.removeprefix(PROPENSITY_PREFIX)
        shown = model.replace("{", "{{").replace("}", "}}")  # `what` is a format string
        p = pl.col(column)
        served = (pl.col("served_model").cast(pl.String) == model) & p.is_not_nan()
        checks.append(RowCheck(
            column, served & (p == 0),
            f"{{}} request(s) served by '{shown}' (served_model) with {column} = 0: the logging router picked "
            "that model, so its probability there is above 0", ("served_model", column),
            f"write the router's probability of the served model in {column} (the request's logging_propensity), "
            "or correct served_model", columns=f"served_model, {column}"))
        if "logging_propensity" in schema:
            apart = (p - logged).abs() > PROPENSITY_TOLERANCE * pl.max_horizontal(p, logged)
            checks.append(RowCheck(
                column, served & (p != 0) & logged.is_not_nan() & apart,
                f"{{}} request(s) served by '{shown}' (served_model) whose {column} differs from logging_propensity "
                f"by more than {PROPENSITY_TOLERANCE:g} of the larger: both are the router's probability of the "
                "served model (estimates weigh answers by logging_propensity)",
                ("served_model", "logging_propensity", column),
                f"write the same probability in {column} and logging_propensity, or correct served_model",
                columns=f"served_model, logging_propensity, {column}"))
    if len(columns) > 1:
        total = pl.sum_horizontal(pl.col(columns).cast(pl.Float64))  # float32 columns would add up in float32
        checks.append(RowCheck(
            columns[0], total.is_not_nan() & (total > 1 + PROPENSITY_TOLERANCE),
            f"{{}} request(s) whose {PROPENSITY_PREFIX}<model> columns add up to more than 1 (by more than "
            f"{PROPENSITY_TOLERANCE:g}): they are the logging router's distribution over the models",
            tuple(columns), "write each request's probabilities of the candidates, which add up to 1 at most "
            "(models without a column take the rest): e.g. divide them by their sum", columns=", ".join(columns)))
    return checks


GOLD_ROW_CHECKS = (
    RowCheck("gold_grader", pl.col("gold_grader").is_not_null() & ~pl.col("gold_grader").is_in(GOLD_GRADERS),
             "{} row(s) with an unknown gold grader", ("gold_grader",),
             f"use one of {', '.join(GOLD_GRADERS)} or leave it null"),
    RowCheck("gold_passed", pl.col("gold_passed").is_not_null() & pl.col("gold_grader").is_null(),
             "{} gold grade(s) without gold_grader", ("gold_passed",), "say who gave each gold grade"),
)


def _run_row_checks(report: Report, file: str, frame: pl.LazyFrame, checks: list[RowCheck],
                    key: list[str], usable: set[str]) -> None:
    """One pass counts every check's offending rows; examples are fetched only for checks that fail.

    Checks reading a column that is missing or of the wrong type are left out (that problem is reported
    already); every other check still runs, so one pass reports every problem it can see.
    """
    checks = [check for check in checks if {check.column, *check.shown} <= usable]
    if not checks:
        return
    shown_key = [name for name in key if name in usable]
    counts = frame.select(check.condition.fill_null(False).sum().alias(str(index))
                          for index, check in enumerate(checks)).collect(engine="streaming").row(0)
    for check, count in zip(checks, counts):
        if count:
            columns = list(dict.fromkeys([*shown_key, *check.shown]))
            report.add(file, check.what.format(count), column=check.columns or check.column, fix=check.fix,
                       examples=_examples(frame, check.condition.fill_null(False), columns))


def _check_keys(report: Report, traffic_file: str, traffic: pl.LazyFrame, outcomes_file: str,
                outcomes: pl.LazyFrame, traffic_usable: set[str], outcomes_usable: set[str]) -> None:
    """Unique request ids, sample numbering and orphan outcomes.

    Every row of one request falls in one bucket of hashed request_id, so each check holds one bucket at
    a time: data of more than KEY_CHECK_ROWS outcome rows is first split into buckets of about that many
    (`split_by_bucket`, one streaming pass of the key columns into a temporary folder). The counts add up
    over the buckets and the examples are the first of all, so the report is the same as in one piece.
    """
    unique = "request_id" in traffic_usable
    samples = {"request_id", "model", "sample"} <= outcomes_usable
    orphans = unique and "request_id" in outcomes_usable
    if not (unique or samples or orphans):
        return
    rows = outcomes.select(pl.len()).collect().item()
    buckets = max(1, -(-rows // KEY_CHECK_ROWS))
    traffic_keys = traffic.select("request_id") if unique else None
    outcome_keys = (outcomes.select(name for name in ("request_id", "model", "sample") if name in outcomes_usable)
                    .with_row_index(FILE_ROW) if "request_id" in outcomes_usable else None)
    counts: dict[str, int] = {}
    shown: dict[str, list[pl.DataFrame]] = {}

    def add(check: str, count: int, examples: Callable[[], pl.DataFrame]) -> None:
        counts[check] = counts.get(check, 0) + count
        if count:
            shown.setdefault(check, []).append(examples())

    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="routesim-keys-"))) if buckets > 1 else None
        traffic_of = split_by_bucket(traffic_keys, scratch and scratch / "traffic", buckets) if unique else None
        outcomes_of = (split_by_bucket(outcome_keys, scratch and scratch / "outcomes", buckets)
                       if outcome_keys is not None else None)
        for bucket in range(buckets):
            if unique:
                these = traffic_of(bucket)
                total, distinct = these.select(pl.len(), pl.col("request_id").n_unique()).collect().row(0)
                add("unique", total - distinct, lambda: these.group_by("request_id").agg(pl.len().alias("rows"))
                    .filter(pl.col("rows") > 1).sort("request_id").head(EXAMPLES).collect())
            if samples:
                pairs = outcomes_of(bucket).group_by("request_id", "model").agg(
                    pl.len().alias("rows"), pl.col("sample").n_unique().alias("distinct"),
                    pl.col("sample").max().alias("top"))
                repeated, gapped = pairs.select((pl.col("rows") - pl.col("distinct")).sum(), _GAPPED.sum()
                                                ).collect(engine="streaming").row(0)
                for check, count, condition in (("repeated", repeated, pl.col("rows") > pl.col("distinct")),
                                                ("gapped", gapped, _GAPPED)):
                    add(check, count, lambda condition=condition: pairs.filter(condition).sort(
                        "request_id", "model").head(EXAMPLES).collect())
            if orphans:
                lost = outcomes_of(bucket).join(traffic_of(bucket), on="request_id", how="anti")
                add("orphans", lost.select(pl.len()).collect(engine="streaming").item(),
                    lambda: lost.sort(FILE_ROW).head(EXAMPLES).collect())

    def first(check: str, *by: str) -> list[tuple]:
        return pl.concat(shown[check]).sort(*by).head(EXAMPLES).iter_rows()

    if counts.get("unique"):
        report.add(traffic_file, f"{counts['unique']} duplicate row(s): request_id must be unique",
                   column="request_id", fix="keep one row per request",
                   examples="; ".join(f"request_id={r!r} ({n} rows)" for r, n in first("unique", "request_id")))
    for check, what, fix in (
            ("repeated", "{} duplicate row(s): (request_id, model, sample) must be unique",
             "keep one row per key, or number repeated answers with 'sample'"),
            ("gapped", "{} request x model pair(s) whose samples do not run 0, 1, 2, ...",
             "number the answers of one model to one request from 0 without gaps")):
        if counts.get(check):
            report.add(outcomes_file, what.format(counts[check]), column="request_id, model, sample", fix=fix,
                       examples="; ".join(f"request_id={r!r}, model={m!r} ({n} rows, samples up to {t})"
                                          for r, m, n, _, t in first(check, "request_id", "model")))
    if counts.get("orphans"):
        report.add(outcomes_file, f"{counts['orphans']} outcome row(s) for requests not in {traffic_file}",
                   column="request_id", fix="drop outcomes of unknown requests or add the requests to the traffic",
                   examples="; ".join(", ".join(f"{k}={v!r}" for k, v in row.items())
                                      for row in pl.concat(shown["orphans"]).sort(FILE_ROW).head(EXAMPLES)
                                      .drop(FILE_ROW).to_dicts()))


def validate_frames(traffic: pl.DataFrame | pl.LazyFrame, outcomes: pl.DataFrame | pl.LazyFrame, *,
                    traffic_file: str = TRAFFIC_FILE, outcomes_file: str = OUTCOMES_FILE, keys: bool = True) -> Report:
    """Every contract problem of a traffic/outcomes pair; with `keys` false, all but the key checks (unique
    request ids, sample numbering, orphan outcomes), which the layout build settles on row ids.

    Works on lazy scans, so a 10M-request folder is checked in a few streaming passes without being
    loaded whole.
    """
    traffic, outcomes = traffic.lazy(), outcomes.lazy()
    report = Report()
    traffic, outcomes = _string_ids(traffic), _string_ids(outcomes)
    traffic_schema, outcome_schema = traffic.collect_schema(), outcomes.collect_schema()
    traffic_columns = (*TRAFFIC_COLUMNS, *present_optional(traffic_schema, OPTIONAL_TRAFFIC_COLUMNS))
    outcome_columns = (*OUTCOME_COLUMNS, *present_optional(outcome_schema, OPTIONAL_OUTCOME_COLUMNS))
    traffic_usable = _check_columns(report, traffic_file, traffic_schema, traffic_columns)
    outcomes_usable = _check_columns(report, outcomes_file, outcome_schema, outcome_columns)
    _run_row_checks(report, traffic_file, traffic,
                    [*_row_checks(traffic_columns), *propensity_row_checks(traffic_schema)], ["request_id"],
                    traffic_usable)
    gold = [check for check in GOLD_ROW_CHECKS if check.column in outcome_schema and "gold_grader" in outcome_schema]
    _run_row_checks(report, outcomes_file, outcomes, [*_row_checks(outcome_columns), *OUTCOME_ROW_CHECKS, *gold,
                     *usage_row_checks(outcome_schema)],
                    ["request_id", "model", "sample"], outcomes_usable)
    if keys:
        _check_keys(report, traffic_file, traffic, outcomes_file, outcomes, traffic_usable, outcomes_usable)
    return report


@dataclass(frozen=True)
class Dataset:
    """A validated data folder, held as lazy scans so the engine can push projections and filters down."""

    folder: Path
    traffic: pl.LazyFrame
    outcomes: pl.LazyFrame
    fingerprint: str
    layout: Layout | None = None  # the compiled layout in the cache; None when the cache is not writable
    serving_signals: frozenset[str] = frozenset()  # outcome columns the manifest declares serving-time


# Grades the contract names: known only once the answer is graded, so no data folder can declare them
# serving-time signals (a gate reading one would pass as deployable).
CONTRACT_GRADES = frozenset([column.name for column in OUTCOME_COLUMNS if column.grade]
                            + ["gold_passed", "gold_grader"])


def serving_signals(folder: Path, outcome_names: list[str] | None = None) -> frozenset[str]:
    """Outcome columns a data folder declares known at serving time, in `columns.json`:
    `{"serving_time": ["noisy_gate_pass"]}`. No file declares none. Raises RoutesimError for a file that is
    not that shape, that declares one of the contract's grades (CONTRACT_GRADES), or (given the outcomes'
    `outcome_names`) a column the outcomes do not have."""
    import json

    path = Path(folder) / SIGNALS_FILE
    if not path.is_file():
        return frozenset()
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RoutesimError(f"cannot read {SIGNALS_FILE}: {error}", where=str(path),
                            fix='write {"serving_time": ["COLUMN", ...]}') from None
    names = content.get("serving_time") if isinstance(content, dict) else None
    unknown = sorted(set(content) - {"serving_time"}) if isinstance(content, dict) else []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names) or unknown:
        raise RoutesimError(f"{SIGNALS_FILE} must hold one key, serving_time: a list of outcome column names",
                            where=str(path), fix='write {"serving_time": ["COLUMN", ...]}')
    grades = sorted(set(names) & CONTRACT_GRADES)
    if grades:
        raise RoutesimError(f"{SIGNALS_FILE} declares the grade(s) {', '.join(grades)} known at serving time; a "
                            "grade is known only once the answer is graded", where=str(path),
                            fix="list only columns a router sees when the call returns (a confidence, a checker's "
                                "output)")
    absent = sorted(set(names) - set(outcome_names)) if outcome_names is not None else []
    if absent:
        raise RoutesimError(f"{SIGNALS_FILE} declares {', '.join(absent)}, which outcomes.parquet does not have",
                            where=str(path), fix="list outcome columns of this folder, or remove the others")
    return frozenset(names)


def grade_columns(read: set[str] | frozenset[str], outcome_columns: list[str], signals: frozenset[str]) -> list[str]:
    """The columns of `read` that are grades: outcome columns neither in the contract's serving-time
    columns nor declared serving-time by the data folder. Sorted."""
    return sorted(name for name in read
                  if name in outcome_columns and name not in SERVING_TIME_COLUMNS and name not in signals)


def data_files(folder: Path, origin: Origin | None = None) -> tuple[Path, Path]:
    """The two files of a data folder; the folder becomes an input of the run, which no output may touch.

    Raises RoutesimError when `folder` is a file, missing, or lacks either file. With `origin` (the scenario
    key that names the folder) the error says where to fix it: that key, not the folder it resolved to.
    """
    folder = Path(folder)
    holding = f"{TRAFFIC_FILE} and {OUTCOMES_FILE}"

    def refuse(what: str, where: str | None, fix: str, also: str = "") -> NoReturn:
        # Named by a scenario, the mistake is its key (a path relative to the scenario's folder): fixed there.
        if origin is not None:
            raise origin.error(what, f"a folder holding {holding}{also}")
        raise RoutesimError(what, where=where, fix=fix)

    if folder.is_file():
        refuse(f"{folder} is a file, but a data folder is expected here", str(folder),
               f"give the folder that holds {holding}")
    if not folder.is_dir():
        refuse(f"data folder not found: {origin.shown(folder) if origin else folder}", None,
               f"point 'data' at a folder holding {holding}")
    note_input(folder)
    traffic_path, outcomes_path = folder / TRAFFIC_FILE, folder / OUTCOMES_FILE
    for path in (traffic_path, outcomes_path):
        if not path.is_file():
            refuse(f"missing {path.name} in the data folder" + (f" {folder}" if origin else ""), str(folder),
                   f"a data folder holds {holding}", also=", or import logs into this one (routesim import)")
    return traffic_path, outcomes_path


def scan_parquet(path: Path) -> pl.LazyFrame:
    """A lazy scan of a Parquet file, failing now (not at first use) when the file is not Parquet.

    Timestamps with a time zone are converted to UTC: an IANA zone (Europe/Paris) by polars, a fixed
    offset (+05:30), which polars cannot name as a zone, by reading the file with pyarrow, whose
    timestamps are instants whatever zone they are labelled with.
    """
    import pyarrow.parquet as pq

    try:
        arrow_schema = pq.read_schema(path)
    except Exception as error:  # pyarrow raises several types for unreadable files
        raise _unreadable(path, error) from None
    zones = {field.name: field.type.tz for field in arrow_schema
             if _is_timestamp(field.type) and field.type.tz not in (None, "UTC")}
    try:
        if any(not _polars_zone(zone) for zone in zones.values()):
            scan = pl.from_arrow(_arrow_in_utc(pq.read_table(path))).lazy()
        else:
            scan = pl.scan_parquet(path)
            scan.collect_schema()
    except (RoutesimError, KeyboardInterrupt):
        raise
    except BaseException as error:  # polars raises several types, and panics, for unreadable files
        raise _unreadable(path, error) from None
    if zones:
        scan = scan.with_columns(pl.col(name).dt.convert_time_zone("UTC") for name in zones)
    return scan


def _unreadable(path: Path, error: BaseException) -> RoutesimError:
    reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
    return RoutesimError(f"cannot read {path} as Parquet: {reason}", where=str(path),
                         fix="the file may be corrupt or not Parquet: write it again with a Parquet writer "
                             "(polars, pyarrow, duckdb)")


def _is_timestamp(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_timestamp(arrow_type)


def _polars_zone(zone: str) -> bool:
    """Whether polars takes `zone` as a time zone: IANA names do, fixed offsets such as +05:30 do not."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return False
    return True


def _arrow_in_utc(table):
    import pyarrow as pa

    fields = [pa.field(field.name, pa.timestamp(field.type.unit, "UTC"), field.nullable)
              if _is_timestamp(field.type) and field.type.tz is not None else field for field in table.schema]
    try:
        return table.cast(pa.schema(fields))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise RoutesimError(f"a timestamp's time zone is not known: {error}", where="a timestamp column",
                            fix="label timestamps with an IANA zone (Asia/Kolkata), an offset (+05:30) or UTC",
                            ) from None


fingerprint = content_fingerprint  # identifies the data a result came from by content


def validate_folder(folder: Path, keys: bool = True) -> Report:
    """Every contract problem of a data folder, including a file that cannot be decoded (`keys`: as in
    `validate_frames`)."""
    traffic_path, outcomes_path = data_files(folder)
    try:
        return validate_frames(scan_parquet(traffic_path), scan_parquet(outcomes_path),
                               traffic_file=str(traffic_path), outcomes_file=str(outcomes_path), keys=keys)
    except (pl.exceptions.ComputeError, OSError, BaseException) as error:
        if isinstance(error, (RoutesimError, KeyboardInterrupt, SystemExit)):
            raise
        report = _undecodable(traffic_path, outcomes_path)
        if report.ok:  # both files decode: not a problem of the files
            raise
        return report


def _undecodable(*paths: Path) -> Report:
    """Reads each file whole with pyarrow to tell which one cannot be decoded (a corrupt page)."""
    import pyarrow.parquet as pq

    report = Report()
    for path in paths:
        try:
            pq.read_table(path)
        except Exception as error:  # pyarrow raises several types for corrupt files
            reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
            report.add(str(path), f"cannot be decoded: {reason}",
                       fix="the file is corrupt; write it again from its source")
    return report


def _string_ids(frame: pl.LazyFrame) -> pl.LazyFrame:
    """request_id as plain strings: a Categorical in one file and a String in the other must still join."""
    schema = frame.collect_schema()
    if "request_id" in schema and schema["request_id"] != pl.String and _kind_of(schema["request_id"]) == STRING:
        return frame.with_columns(pl.col("request_id").cast(pl.String))
    return frame


def load_data(folder: Path, cache_dir: Path | None = None, origin: Origin | None = None) -> Dataset:
    """Validate a data folder and open it lazily. Raises RoutesimError listing every problem; one with the
    folder itself (a file, missing, empty) names `origin`, the scenario key that gave it, when there is one.

    The first use validates the folder and compiles its layout into the cache (`simulator.core.layout`,
    `cache_dir` or the default cache); later uses of unchanged files find it by their cheap key and are
    neither validated nor hashed again.
    """
    traffic_path, outcomes_path = data_files(folder, origin)
    paths = [traffic_path, outcomes_path]

    def validate(keys: bool = True) -> None:
        for path in paths:
            scan_parquet(path)
        report = validate_folder(folder, keys)
        if not keys and not report.ok:  # a broken folder gets the whole report, key problems included
            report = validate_folder(folder)
        report.raise_if_problems(f"data folder {folder}")
        # columns.json too, before a layout is built: a folder that breaks the contract builds nothing.
        serving_signals(folder, scan_parquet(outcomes_path).collect_schema().names())

    layout = open_layout(Path(folder), paths, validate, cache_dir, scan=scan_parquet)
    if layout is None:  # no writable cache: validate and hash on every load
        validate()
    return Dataset(folder=Path(folder), traffic=_string_ids(scan_parquet(traffic_path)),
                   outcomes=_string_ids(scan_parquet(outcomes_path)),
                   fingerprint=layout.fingerprint if layout else fingerprint(paths), layout=layout,
                   serving_signals=serving_signals(folder, scan_parquet(outcomes_path).collect_schema().names()))


def write_folder(out: Path, traffic: pl.DataFrame, outcomes: pl.DataFrame, files: dict[str, str], *,
                 updating: bool = False) -> None:
    """Validates, then writes the tables and `files` (name -> text) to a temporary sibling folder and swaps
    it into place: a failure leaves `out` as it was. `updating`: `out` is the input folder being rewritten
    (grades merged onto it)."""
    validate_frames(traffic, outcomes).raise_if_problems(f"the data for {out}")
    with atomic_folder(Path(out), updating=updating) as staging:
        traffic.write_parquet(staging / TRAFFIC_FILE, compression="zstd")
        outcomes.write_parquet(staging / OUTCOMES_FILE, compression="zstd")
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
