"""From imported rows to a data folder: building the two tables, merging grades, writing atomically.

Modelling rules (the README's "Importing logs" states them for users):
- Rows that share a request id are answers to the same request: the earliest call gives the traffic row
  (its time, slice, input tokens and named columns); every call is an outcome. Several models under one id
  are candidates (shadow traffic, A/B tests); repeated calls of one model are its samples 0, 1, ... in
  time order, or in the source's own order where it numbers them (inspect-ai's epochs), renumbered without
  gaps when some were dropped. Rows equal in every field but their position are one row exported twice.
- `hard_check_ok` is the call's status (errors, truncated or filtered answers are false). Traffic logs
  carry no grade, so `passed` is either assumed from the status (--assume-passed, kept as
  `passed_source = assumed_from_status` and flagged in the report) or merged from an eval tool's grades.
- Extra outcome columns: `passed_source` and `latency_source`; the optional contract columns
  `cache_write_input_tokens`, `cache_write_1h_input_tokens`, `reasoning_output_tokens`, `service_tier` and
  `error_type` are written as the source gives them (null where it does not).
- A successful call with no tokens and a positive recorded cost is flagged: its usage was missing, not
  zero (a stream without usage), and price_calls prices such a call at its recorded cost.
- A folder is written to a temporary sibling and renamed into place, so an import either completes or
  leaves the folder as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from simulator.core.contract import (
    OUTCOMES_FILE,
    TRAFFIC_FILE,
    scan_parquet,
    validate_folder,
)
from simulator.core.errors import RoutesimError
from simulator.core.outputs import MARKER
from simulator.importers.rows import ImportLog, Row

REPORT_FILE = "import-report.json"
ASSUMED = "assumed_from_status"
GRADED = "graded"

ROW_SCHEMA = {
    "where": pl.String, "request_id": pl.String, "ts": pl.Datetime("us", "UTC"), "model": pl.String,
    "sample": pl.Int64, "slice": pl.String, "input_tokens": pl.Int64, "cached_input_tokens": pl.Int64,
    "cache_write_tokens": pl.Int64, "cache_write_1h_tokens": pl.Int64, "output_tokens": pl.Int64,
    "reasoning_tokens": pl.Int64, "total_tokens": pl.Int64, "error_type": pl.String, "service_tier": pl.String,
    "latency_ms": pl.Float64, "ttft_ms": pl.Float64,
    "cost_usd": pl.Float64, "ok": pl.Boolean, "passed": pl.Boolean, "score": pl.Float64,
    "confidence": pl.Float64, "checker_score": pl.Float64, "grader": pl.String, "latency_source": pl.String,
    "usage_style": pl.String,
}
# What a call needs to become an outcome, checked in this order; the first one missing drops the row.
REQUIRED = (("request_id", "no request id"), ("model", "no model name"), ("ts", "no timestamp"),
            ("input_tokens", "no input token count"), ("output_tokens", "no output token count"),
            ("latency_ms", "no latency"))


def rows_frame(rows: list[Row], columns: list[str]) -> pl.DataFrame:
    """The rows as one frame in input order (`order`), with the user's named columns as strings."""
    data = {name: [getattr(row, name) for row in rows] for name in ROW_SCHEMA}
    data |= {name: [row.columns.get(name) for row in rows] for name in columns}
    schema = ROW_SCHEMA | {name: pl.String for name in columns}
    return pl.DataFrame(data, schema=schema).with_row_index("order")


def drop_missing(frame: pl.DataFrame, log: ImportLog, required=REQUIRED) -> pl.DataFrame:
    for column, reason in required:
        missing = frame.filter(pl.col(column).is_null())
        if missing.height:
            log.drop_many(reason, missing["where"].head(3).to_list(), missing.height)
            frame = frame.filter(pl.col(column).is_not_null())
    return frame


def drop_duplicates(frame: pl.DataFrame, log: ImportLog) -> pl.DataFrame:
    """Rows equal in every field but where they were read: the same call exported twice."""
    content = [name for name in frame.columns if name not in ("where", "order")]
    repeated = ~pl.struct(content).is_first_distinct()
    duplicates = frame.filter(repeated)
    if duplicates.height:
        log.drop_many("duplicate of an earlier row (overlapping exports?)", duplicates["where"].head(3).to_list(),
                      duplicates.height)
    return frame.filter(~repeated)


def build_tables(rows: list[Row], log: ImportLog, *, columns: list[str], default_slice: str,
                 assume_passed: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """traffic and outcomes from imported rows, by the rules in the module docstring."""
    frame = drop_duplicates(drop_missing(rows_frame(rows, columns), log), log)
    if frame.height == 0 and log.rows_read == 0 and log.dropped_total == 0:
        raise RoutesimError("no row could be imported: the input holds no rows (an empty file?)",
                            where=", ".join(log.files), fix="give the export that holds the calls")
    if frame.height == 0:
        raise RoutesimError(f"no row could be imported ({log.rows_read:,} read, {log.dropped_total:,} dropped)",
                            where=", ".join(log.files), fix="see why each row was dropped in the report above")
    ungraded = frame.filter(pl.col("passed").is_null())
    if ungraded.height and not assume_passed:
        raise RoutesimError(
            f"{ungraded.height:,} call(s) carry no grade, and the data contract needs 'passed' on every outcome",
            where=ungraded["where"][0],
            fix="add --assume-passed to take a successful call as passed (flagged in the report and in the "
                "outcomes column passed_source), then merge real grades with "
                "'routesim import inspect-ai|promptfoo|csv FILE -o DATA_DIR --merge'")
    if ungraded.height:
        log.note(f"passed = the call succeeded, for {ungraded.height:,} ungraded call(s) (--assume-passed); "
                 f"outcomes column passed_source = '{ASSUMED}'")
    log.usage.update(dict(frame.group_by("usage_style").len().drop_nulls().iter_rows()))
    failed = frame.filter(~pl.col("ok")).height
    if failed:
        log.note(f"hard_check_ok = false for {failed:,} call(s) that failed or returned a truncated/filtered answer")
        log.summary["error_types"] = dict(frame.filter(~pl.col("ok")).group_by(pl.col("error_type").fill_null("other"))
                                          .len().sort("error_type").iter_rows())
    flag_missing_usage(frame, log)
    flag_unexplained_totals(frame, log)

    frame = number_samples(frame, log).sort("request_id", "ts", "order").with_columns(
        pl.when(pl.col("passed").is_null()).then(pl.lit(ASSUMED)).otherwise(pl.lit(GRADED)).alias("passed_source"),
        pl.coalesce("passed", "ok").alias("passed"),
    )
    outcomes = frame.select(
        "request_id", "model", "sample", "input_tokens", "cached_input_tokens", "output_tokens", "latency_ms",
        "ttft_ms", "passed", "score", "confidence", "checker_score", pl.col("ok").alias("hard_check_ok"),
        "cost_usd", "grader", "passed_source", "latency_source",
        pl.col("cache_write_tokens").alias("cache_write_input_tokens"),
        pl.col("cache_write_1h_tokens").alias("cache_write_1h_input_tokens"),
        pl.col("reasoning_tokens").alias("reasoning_output_tokens"), "service_tier",
        pl.when(pl.col("ok")).then(None).otherwise(pl.col("error_type").fill_null("other")).alias("error_type"),
    ).sort("request_id", "model", "sample")

    conflicting = (frame.group_by("request_id").agg(pl.col("slice").drop_nulls().n_unique().alias("slices"))
                   .filter(pl.col("slices") > 1).height)
    if conflicting:
        log.note(f"{conflicting:,} request(s) have calls tagged with different slices: the earliest call's is used")
    traffic = (frame.group_by("request_id", maintain_order=True).first()
               .select("request_id", "ts", "slice", "input_tokens", *columns))
    unsliced = traffic.filter(pl.col("slice").is_null()).height
    log.default(f"slice -> '{default_slice}' (no slice key on the request)", unsliced)
    for name in columns:
        log.default(f"column {name}: null (no such key on the request)", traffic[name].null_count())
    traffic = traffic.with_columns(pl.col("slice").fill_null(default_slice)).sort("ts", "request_id")
    log.summary |= summarise(traffic, outcomes)
    return traffic, outcomes


def number_samples(frame: pl.DataFrame, log: ImportLog) -> pl.DataFrame:
    """`sample` 0, 1, ... for the calls of each request x model: in the order of the sample numbers the
    source gave (inspect-ai's epochs), else in time order. A source's numbers with a gap (a call dropped
    above) or not starting at 0 are renumbered so, and the renumbered pairs are listed in the report: the
    contract has no gaps, and one dropped answer must not cost the import."""
    pair = ("request_id", "model")
    # Dense over the distinct numbers the source gave: two calls claiming one number are a repeat of one
    # answer (left to the contract, or to a shadow plan's import, to settle), not two samples.
    numbered = frame.sort(*pair, "sample", "ts", "order", nulls_last=True).with_columns(
        pl.when(pl.col("sample").is_null()).then(pl.int_range(pl.len()).over(*pair))
        .otherwise(pl.col("sample").rank("dense").over(*pair).cast(pl.Int64) - 1).alias("_dense"))
    moved = (numbered.filter(pl.col("sample").is_not_null() & (pl.col("sample") != pl.col("_dense")))
             .select(pair).unique(maintain_order=True))
    if moved.height:
        shown = (numbered.join(moved.head(SHOWN_ROWS), on=pair, how="semi").group_by(pair, maintain_order=True)
                 .agg("sample", "_dense"))
        log.note(f"{moved.height:,} request x model pair(s) had their sample numbers renumbered 0, 1, ... in "
                 "the source's order, as answers of theirs were dropped above or the numbers did not start at 0 "
                 "(see samples_renumbered)")
        log.summary["samples_renumbered"] = [
            f"request {request}, {model}: samples {', '.join(map(str, read))} as read -> {', '.join(map(str, dense))}"
            for request, model, read, dense in shown.iter_rows()]
    return numbered.with_columns(pl.col("_dense").alias("sample")).drop("_dense")


def flag_missing_usage(frame: pl.DataFrame, log: ImportLog) -> None:
    """A successful call with zero tokens and a positive recorded cost had its usage lost, not zero tokens."""
    lost = frame.filter(pl.col("ok") & (pl.col("input_tokens") == 0) & (pl.col("output_tokens") == 0)
                        & (pl.col("cost_usd") > 0))
    if lost.height:
        log.note(f"{lost.height:,} successful call(s) with zero tokens but a recorded cost > 0 (usage missing, not "
                 f"zero; e.g. {lost['where'][0]}): every replay prices them at their recorded cost_usd "
                 "(price source 'recorded')")
        log.summary["calls_without_usage"] = lost.height


SHOWN_ROWS = 20


def flag_unexplained_totals(frame: pl.DataFrame, log: ImportLog) -> None:
    """Rows whose reported total still exceeds input + output as imported (cache and reasoning counted in
    wherever the importer found them on top), listed row by row: tokens under a name the importer does not
    read, or a reasoning count that is not what the total left over."""
    over = frame.filter(pl.col("total_tokens") > pl.col("input_tokens") + pl.col("output_tokens"))
    if over.height:
        log.note(f"{over.height:,} call(s) report a total above input + output as imported: tokens billed but "
                 "not imported (see total_above_input_and_output)")
        log.summary["total_above_input_and_output"] = [
            f"{where}: total {total:,} > input {inp:,} + output {out:,}"
            for where, total, inp, out in over.head(SHOWN_ROWS).select("where", "total_tokens", "input_tokens",
                                                                       "output_tokens").iter_rows()]


def summarise(traffic: pl.DataFrame, outcomes: pl.DataFrame) -> dict:
    models = outcomes.group_by("model").len().sort("model")
    return {
        "requests": traffic.height,
        "calls": outcomes.height,
        "models": ", ".join(f"{model} ({count:,})" for model, count in models.iter_rows()),
        "slices": traffic["slice"].n_unique(),
        "first_request": traffic["ts"].min().isoformat() if traffic.height else None,
        "last_request": traffic["ts"].max().isoformat() if traffic.height else None,
    }


def check_target(out: Path, *, force: bool) -> None:
    """Refuses to overwrite a folder that holds data unless asked, before any file is read."""
    if out.exists() and not out.is_dir():
        raise RoutesimError(f"{out} exists and is not a folder", fix="choose another -o DATA_DIR")
    # A folder routesim wrote (its marker file) is replaced as every other output is (README, Reliability);
    # only a folder of someone else's files needs --force.
    if out.is_dir() and any(out.iterdir()) and not force and not (out / MARKER).is_file():
        raise RoutesimError(f"{out} already holds files routesim did not write (it has no {MARKER} file)",
                            where=str(out),
                            fix="choose a new -o DATA_DIR, add --force to replace it, or --merge to add grades to it")


def report_file(reports: list[dict]) -> dict[str, str]:
    return {REPORT_FILE: json.dumps({"imports": reports}, indent=2) + "\n"}


def read_reports(folder: Path) -> list[dict]:
    path = Path(folder) / REPORT_FILE
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text(encoding="utf-8"))["imports"]
    except (ValueError, KeyError, TypeError):
        raise RoutesimError(f"{REPORT_FILE} is not a report routesim wrote", where=str(path),
                            fix=f"move {REPORT_FILE} out of the folder and merge again") from None


def read_folder(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A data folder to merge grades onto; it must already satisfy the contract."""
    folder = Path(folder)
    validate_folder(folder).raise_if_problems(f"data folder {folder}")
    return scan_parquet(folder / TRAFFIC_FILE).collect(), scan_parquet(folder / OUTCOMES_FILE).collect()
