"""Merging an eval tool's grades onto a data folder imported from traffic logs.

A grade is matched to an outcome row by request id, model and sample:
- the model as written, else the model without its provider path (inspect-ai's `openai/gpt-4o` grades the
  gateway's `gpt-4o`), provided that names one model of the request;
- a grade that names no model grades the request's answer when the request has answers of one model only;
- repeated grades of one request and model grade its samples 0, 1, ... in file order.
A matched row takes the grade's `passed` (and its score, grader, confidence and checker score where the
grade has them), `hard_check_ok` becomes false when the grade saw an error, and `passed_source` becomes
`graded`. Grades matching nothing are dropped and reported; rows left ungraded keep their assumed
`passed`, or are removed with --drop-ungraded (then samples are renumbered and requests left without
answers removed).
"""

from __future__ import annotations

import polars as pl

from simulator.importers.folder import ASSUMED, GRADED, drop_missing, rows_frame
from simulator.importers.rows import ImportLog, Row

GRADE_COLUMNS = ["passed", "score", "grader", "confidence", "checker_score", "ok"]
# The fields a grade brings to the folder, and those that find its answer.
GRADE_FIELDS = {"request_id", "model", "sample", "passed", "score", "grader", "confidence", "checker_score",
                "hard_check_ok"}


def model_key(column: str) -> pl.Expr:
    return pl.col(column).str.split("/").list.last().str.to_lowercase()


def _matches(grades: pl.DataFrame, answers: pl.DataFrame) -> pl.DataFrame:
    """(grade order, answer row) pairs by the rules in the module docstring."""
    named = grades.filter(pl.col("model").is_not_null())
    exact = named.join(answers, on=["request_id", "model", "sample"], how="inner").select("order", "_row")
    by_key = (named.join(exact, on="order", how="anti").with_columns(model_key("model").alias("_key"))
              .join(answers.with_columns(model_key("model").alias("_key")), on=["request_id", "_key", "sample"],
                    how="inner")
              .filter(pl.len().over("order") == 1).select("order", "_row"))
    single_model = answers.filter(pl.col("model").n_unique().over("request_id") == 1)
    unnamed = (grades.filter(pl.col("model").is_null()).select("order", "request_id", "sample")
               .join(single_model, on=["request_id", "sample"], how="inner").select("order", "_row"))
    return pl.concat([exact, by_key, unnamed], how="vertical").sort("order")


def _report_unmatched(unmatched: pl.DataFrame, answers: pl.DataFrame, log: ImportLog) -> None:
    known = answers.select("request_id", pl.col("model").n_unique().over("request_id").alias("_models")).unique()
    explained = unmatched.join(known, on="request_id", how="left").with_columns(
        pl.when(pl.col("_models").is_null()).then(pl.lit("no request with this id in the data folder"))
        .when(pl.col("model").is_null() & (pl.col("_models") > 1))
        .then(pl.lit("the grade names no model and the request has answers of several"))
        .otherwise(pl.lit("no answer of this model and sample for the request")).alias("_reason"))
    for (reason,), part in explained.sort("order").partition_by("_reason", as_dict=True, maintain_order=True).items():
        examples = [f"{row['where']}: request {row['request_id']}" + (f", model {row['model']}" if row["model"] else "")
                    for row in part.head(3).iter_rows(named=True)]
        log.drop_many(reason, examples, part.height)


def merge_grades(traffic: pl.DataFrame, outcomes: pl.DataFrame, rows: list[Row], log: ImportLog, *,
                 drop_ungraded: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    grades = drop_missing(rows_frame(rows, []), log, (("request_id", "no request id"), ("passed", "no grade")))
    grades = grades.with_columns(
        pl.coalesce("sample", pl.int_range(pl.len()).over("request_id", "model")).alias("sample"))
    if "passed_source" not in outcomes.columns:
        outcomes = outcomes.with_columns(pl.lit("recorded").alias("passed_source"))
    answers = outcomes.select("request_id", "model", "sample").with_row_index("_row")

    matches = _matches(grades, answers)
    twice = matches.filter(pl.col("_row").is_duplicated() & ~pl.col("_row").is_first_distinct())
    if twice.height:
        where = grades.join(twice, on="order", how="semi")["where"].head(3).to_list()
        log.drop_many("a second grade for the same answer", where, twice.height)
    matches = matches.filter(pl.col("_row").is_first_distinct())
    _report_unmatched(grades.join(matches, on="order", how="anti").join(twice, on="order", how="anti"), answers, log)

    graded = matches.join(grades.select("order", *GRADE_COLUMNS), on="order").drop("order")
    merged = (outcomes.with_row_index("_row").join(graded, on="_row", how="left", suffix="_grade")
              .with_columns(
                  pl.when(pl.col("passed_grade").is_not_null()).then(pl.lit(GRADED))
                  .otherwise(pl.col("passed_source")).alias("passed_source"),
                  pl.coalesce("passed_grade", "passed").alias("passed"),
                  *[pl.coalesce(f"{name}_grade", name).alias(name) for name in ("score", "confidence", "checker_score")],
                  pl.coalesce("grader_grade", "grader").cast(pl.String).alias("grader"),
                  (pl.col("hard_check_ok") & pl.col("ok").fill_null(True)).alias("hard_check_ok"))
              .drop("_row", "ok", *[f"{name}_grade" for name in GRADE_COLUMNS if name != "ok"]))

    newly = graded.height
    ungraded = merged.filter(pl.col("passed_source") != GRADED)
    log.summary |= {"grades_matched": newly, "answers_without_grade": ungraded.height}
    if drop_ungraded and ungraded.height:
        merged = merged.filter(pl.col("passed_source") == GRADED).with_columns(
            (pl.col("sample").rank("ordinal").over("request_id", "model") - 1).cast(pl.Int64).alias("sample"))
        kept = traffic.join(merged.select("request_id").unique(), on="request_id", how="semi")
        log.note(f"--drop-ungraded removed {ungraded.height:,} ungraded answer(s) and "
                 f"{traffic.height - kept.height:,} request(s) left without answers")
        traffic = kept
    elif ungraded.height:
        assumed = ungraded.filter(pl.col("passed_source") == ASSUMED).height
        log.note(f"{ungraded.height:,} answer(s) have no grade in this file"
                 + (f"; {assumed:,} of them keep passed assumed from their status" if assumed else ""))
    return traffic, merged.sort("request_id", "model", "sample")
