"""Bringing a shadow sample's answers back: the re-runs of a `routesim plan-shadow` plan, added to the
served log they were drawn from, with the plan's inclusion probabilities.

An imported answer joins the folder when its request id and model are a re-run of the plan's manifest:
the model as written, else the longest plan model it begins with (the Batch API returns the snapshot,
`gpt-4o-mini-2024-07-18` for `gpt-4o-mini`), else without its provider path. It becomes that model's
answer number 0 to the request; the first answer per pair is kept. Every answer of the plan's (request,
model) pairs, the served ones included, then carries `inclusion_probability` from the manifest. Answers
that match no re-run are dropped and counted.

A batch records no serving latency (the importer assumes one, `latency_source = assumed`). Such an answer
takes the median latency of the same model's answers in the served log for the request's slice
(`latency_source = served_median`); where the log has none, it keeps the assumed value marked
`latency_source = unavailable`, and latency estimates over it say they are unavailable.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from simulator.core.contract import scan_parquet
from simulator.core.errors import RoutesimError
from simulator.importers.merge import model_key
from simulator.importers.rows import ImportLog

MANIFEST = "manifest.parquet"


def read_manifest(plan: Path) -> pl.DataFrame:
    path = Path(plan) / MANIFEST
    if not path.is_file():
        raise RoutesimError(f"no {MANIFEST} in {plan}", where="--plan", fix="give the folder 'routesim plan-shadow' wrote")
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


SERVED_MEDIAN, UNAVAILABLE = "served_median", "unavailable"


def _served_latency(traffic: pl.DataFrame, outcomes: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Answers with an assumed latency take their model's median served latency in the request's slice."""
    if "latency_source" not in new.columns:
        return new
    slices = traffic.select("request_id", "slice")
    served = (outcomes.join(slices, on="request_id").group_by("model", "slice")
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
    """The folder's outcomes plus the plan's re-run answers, every plan pair with its inclusion probability."""
    matched = _plan_model(imported, manifest)
    unmatched = matched.filter(pl.col("plan_model").is_null())
    if unmatched.height:
        log.drop_many("not a re-run of the plan (request and model)",
                      [f"request {r}, model {m}" for r, m in unmatched.select("request_id", "model").head(3).iter_rows()],
                      unmatched.height)
    new = (matched.filter(pl.col("plan_model").is_not_null()).sort("request_id", "plan_model", "sample")
           .unique(["request_id", "plan_model"], keep="first", maintain_order=True)
           .with_columns(pl.col("plan_model").alias("model"), pl.lit(0, dtype=pl.Int64).alias("sample"))
           .drop("plan_model")
           .join(outcomes.select("request_id", "model").unique(), on=["request_id", "model"], how="anti"))
    new = _served_latency(traffic, outcomes, new)
    if "inclusion_probability" in outcomes.columns:
        outcomes = outcomes.drop("inclusion_probability")
    merged = pl.concat([outcomes, new], how="diagonal_relaxed").join(
        manifest.select("request_id", "model", "inclusion_probability"), on=["request_id", "model"], how="left")
    missing = manifest.filter("rerun").join(new.select("request_id", "model"), on=["request_id", "model"], how="anti")
    log.summary |= {"shadow_answers_added": new.height, "shadow_reruns_missing": missing.height}
    log.note(f"added {new.height:,} shadow answer(s) with the plan's inclusion probabilities"
             + (f"; {missing.height:,} planned re-run(s) have no answer yet" if missing.height else ""))
    return traffic, merged.sort("request_id", "model", "sample")
