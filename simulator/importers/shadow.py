"""Bringing a shadow sample's answers back: the re-runs of a `routesim plan-shadow` plan, added to the
served log they were drawn from, with the plan's inclusion probabilities.

An imported answer joins the folder when its request id and model are a re-run of the plan's manifest:
the model as written, else the longest plan model it begins with (the Batch API returns the snapshot,
`gpt-4o-mini-2024-07-18` for `gpt-4o-mini`), else without its provider path. It becomes that model's
answer number 0 to the request. Every answer of the plan's (request, model) pairs, the served ones
included, then carries `inclusion_probability` from the manifest. An answer is dropped and counted when it:
- matches no re-run of the plan;
- repeats a re-run another answer of the file already answers: the lowest sample is kept, and among
  answers that claim the same sample the one whose fields sort first, a fixed choice so that importing the
  same file twice keeps the same answer;
- answers a re-run the folder already holds (an earlier import of the same answers), when it recorded the
  same as the folder's answer: tokens, cost, time to first token and service tier where both record them,
  whether the call failed and how, its latency where both were measured and its grade where both were
  graded (an import assumes latency and grade, a later --merge replaces the grade). One that recorded
  something else is refused (exit 2, nothing written): the folder cannot hold two answers number 0 to one
  re-run, and which run is right is the user's call, not the importer's.
Planned re-runs that still have no answer are counted against the folder as written, earlier imports
included, so that importing the same answers again never asks for them again.

A batch records no serving latency (the importer assumes one, `latency_source = assumed`). Such an answer
takes the median measured latency of the same model's answers in the served log for the request's slice
(`latency_source = served_median`); where the log has none, it keeps the assumed value marked
`latency_source = unavailable`, and latency estimates over it say they are unavailable. Latencies this
module put in place (or kept as assumed) never count as measured, so a second import's medians are those
of the served log alone.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from simulator.core.contract import scan_parquet
from simulator.core.errors import RoutesimError
from simulator.importers.folder import ASSUMED
from simulator.importers.merge import model_key
from simulator.importers.rows import ImportLog

MANIFEST = "manifest.parquet"
SERVED_MEDIAN, UNAVAILABLE = "served_median", "unavailable"
# Latency sources that are no measurement: the importer's assumption and what this module put in its place.
NOT_MEASURED = ["assumed", SERVED_MEDIAN, UNAVAILABLE]
# What an answer recorded when it was made, compared with the folder's answer to the same re-run where both
# record it: a file that leaves a field out (a CSV has no service tier, a batch no cost) does not contradict
# one that has it. A null error_type is a record too: the call succeeded.
RECORDED = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens",
            "cache_write_input_tokens", "cache_write_1h_input_tokens", "cost_usd", "ttft_ms", "service_tier")
GRADE = ("passed", "score")
REPEAT = "a repeat of an answer already in this file (one answer per re-run is kept)"
ALREADY = "already in the data folder (an earlier import holds the same answer)"


def read_manifest(plan: Path) -> pl.DataFrame:
    path = Path(plan) / MANIFEST
    if not path.is_file():
        raise RoutesimError(f"no {MANIFEST} in {plan}", where="--plan",
                            fix="give the folder 'routesim plan-shadow' wrote")
    return scan_parquet(path).select("request_id", "model", "inclusion_probability", "rerun").collect()


def _plan_model(answers: pl.DataFrame, manifest: pl.DataFrame) -> pl.DataFrame:
    """answers with `plan_model`: the manifest model each answer is a re-run of (null when none)."""
    pairs = manifest.filter("rerun").select("request_id", pl.col("model").alias("plan_model"))
    candidates = answers.with_row_index("_row").join(pairs, on="request_id", how="inner").filter(
        (pl.col("model") == pl.col("plan_model"))
        | pl.col("model").str.starts_with(pl.col("plan_model") + "-")
        | (model_key("model") == model_key("plan_model")))
    best = (candidates.sort("_row", pl.col("plan_model").str.len_chars(), descending=[False, True])
            .group_by("_row", maintain_order=True).first().select("_row", "plan_model"))
    return answers.with_row_index("_row").join(best, on="_row", how="left").drop("_row")


def _first_answers(matched: pl.DataFrame, log: ImportLog) -> pl.DataFrame:
    """Each re-run's first answer among `matched` (answers with their `plan_model`); the others are dropped
    and counted. The import does not keep the file's order, so answers claiming the same sample are ordered
    by their fields: the same file keeps the same answer at every import."""
    fields = [name for name in matched.columns if name not in ("request_id", "plan_model", "sample")]
    ordered = matched.sort("request_id", "plan_model", "sample", *fields, nulls_last=True, maintain_order=True)
    repeat = pl.int_range(pl.len()).over("request_id", "plan_model") > 0
    repeats = ordered.filter(repeat)
    if repeats.height:
        log.drop_many(REPEAT, [f"request {r}, model {m}, sample {s}" for r, m, s in
                               repeats.select("request_id", "model", "sample").head(3).iter_rows()], repeats.height)
    return ordered.filter(~repeat)


def _measured(frame: pl.DataFrame) -> pl.Expr:
    """Whether each answer's latency was measured (a folder without `latency_source` measured them all)."""
    if "latency_source" not in frame.columns:
        return pl.lit(True)
    return ~pl.col("latency_source").is_in(NOT_MEASURED).fill_null(False)


def _graded(frame: pl.DataFrame) -> pl.Expr:
    """Whether each answer's `passed` is a grade rather than assumed from its status."""
    if "passed_source" not in frame.columns:
        return pl.lit(True)
    return (pl.col("passed_source") != ASSUMED).fill_null(True)


def _differences(new: pl.DataFrame, held: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """new joined with the folder's answer to the same re-run (columns suffixed `_held`), and one boolean
    column `_differs_<field>` per compared field that both frames have; the list names those fields."""
    new, held = (frame.with_columns(_measured(frame).alias("_measured"), _graded(frame).alias("_graded"))
                 for frame in (new, held))
    paired = new.join(held, on=["request_id", "model"], how="inner", suffix="_held")
    both_measured = pl.col("_measured") & pl.col("_measured_held")
    both_graded = pl.col("_graded") & pl.col("_graded_held")
    compared = {name: pl.col(name) != pl.col(f"{name}_held") for name in (*RECORDED, *GRADE, "latency_ms")}
    compared = {name: differs.fill_null(False) for name, differs in compared.items()}
    compared |= {"error_type": ~pl.col("error_type").eq_missing(pl.col("error_type_held")),
                 "latency_ms": both_measured & compared["latency_ms"]}
    compared |= {name: both_graded & compared[name] for name in GRADE}
    fields = [name for name in compared if name in new.columns and name in held.columns]
    paired = paired.with_columns(compared[name].alias(f"_differs_{name}") for name in fields)
    return paired, fields


def _drop_present(new: pl.DataFrame, outcomes: pl.DataFrame, log: ImportLog) -> pl.DataFrame:
    """new without the answers to re-runs the folder already holds, dropped and counted when they recorded
    the same as the folder's answer; a RoutesimError naming the re-runs and fields when one recorded else."""
    held = outcomes.filter(pl.col("sample") == pl.col("sample").min().over("request_id", "model"))
    paired, fields = _differences(new, held)
    if paired.height == 0:
        return new
    differs = pl.any_horizontal(pl.col(f"_differs_{name}") for name in fields) if fields else pl.lit(False)
    conflicts = paired.filter(differs)
    if conflicts.height:
        def show(value) -> str:
            return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

        examples = [f"  request {row['request_id']}, model {row['model']}: " + "; ".join(
            f"{name} {show(row[f'{name}_held'])} in the data folder, {show(row[name])} in the file"
            for name in fields if row[f"_differs_{name}"]) for row in conflicts.head(3).iter_rows(named=True)]
        raise RoutesimError(
            f"{conflicts.height:,} answer(s) differ from the answer the data folder already holds to the same "
            "re-run (an earlier import): nothing was written\n" + "\n".join(examples),
            where=", ".join(log.files),
            fix="to keep the folder's answers, take these re-runs out of the file; to keep the file's, import it "
                "onto the served log as it was before the earlier --plan import (import-report.json lists each)")
    log.drop_many(ALREADY, [f"request {r}, model {m}"
                            for r, m in paired.select("request_id", "model").head(3).iter_rows()], paired.height)
    regraded = paired.filter(pl.col("_graded") & ~pl.col("_graded_held")).height
    if regraded:
        log.note(f"{regraded:,} answer(s) already in the data folder have a grade in this file that the folder's "
                 "lack: add it with 'routesim import csv|promptfoo|inspect-ai FILE -o DATA_DIR --merge'")
    return new.join(held.select("request_id", "model"), on=["request_id", "model"], how="anti")


def _served_latency(traffic: pl.DataFrame, outcomes: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Answers with an assumed latency take their model's median measured latency in the request's slice."""
    if "latency_source" not in new.columns:
        return new
    slices = traffic.select("request_id", "slice")
    served = (outcomes.filter(_measured(outcomes)).join(slices, on="request_id").group_by("model", "slice")
              .agg(pl.col("latency_ms").median().alias("_served_ms")))
    assumed = (pl.col("latency_source") == "assumed").fill_null(False)
    known = pl.col("_served_ms").is_not_null()
    return (new.join(slices, on="request_id", how="left").join(served, on=["model", "slice"], how="left")
            .with_columns(pl.when(assumed & known).then("_served_ms").otherwise("latency_ms").alias("latency_ms"),
                          pl.when(assumed & known).then(pl.lit(SERVED_MEDIAN)).when(assumed).then(pl.lit(UNAVAILABLE))
                          .otherwise("latency_source").alias("latency_source"))
            .drop("slice", "_served_ms"))


def add_shadow_answers(traffic: pl.DataFrame, outcomes: pl.DataFrame, imported: pl.DataFrame,
                       manifest: pl.DataFrame, log: ImportLog) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The folder's outcomes plus the plan's re-run answers, every plan pair with its inclusion probability.

    Answers that match no re-run, repeat one or are already in the folder are dropped and counted in `log`;
    RoutesimError (nothing to write) when one differs from the folder's answer to its re-run."""
    matched = _plan_model(imported, manifest)
    unmatched = matched.filter(pl.col("plan_model").is_null())
    if unmatched.height:
        log.drop_many("not a re-run of the plan (request and model)",
                      [f"request {r}, model {m}"
                       for r, m in unmatched.select("request_id", "model").head(3).iter_rows()], unmatched.height)
    new = (_first_answers(matched.filter(pl.col("plan_model").is_not_null()), log)
           .with_columns(pl.col("plan_model").alias("model"), pl.lit(0, dtype=pl.Int64).alias("sample"))
           .drop("plan_model"))
    new = _served_latency(traffic, outcomes, _drop_present(new, outcomes, log))
    if "inclusion_probability" in outcomes.columns:
        outcomes = outcomes.drop("inclusion_probability")
    merged = pl.concat([outcomes, new], how="diagonal_relaxed").join(
        manifest.select("request_id", "model", "inclusion_probability"), on=["request_id", "model"], how="left")
    missing = manifest.filter("rerun").join(merged.select("request_id", "model"), on=["request_id", "model"],
                                            how="anti")
    log.summary |= {"shadow_answers_added": new.height, "shadow_reruns_missing": missing.height}
    log.note(f"added {new.height:,} shadow answer(s) with the plan's inclusion probabilities"
             + (f"; {missing.height:,} planned re-run(s) have no answer yet" if missing.height else ""))
    return traffic, merged.sort("request_id", "model", "sample")
