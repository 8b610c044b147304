"""The outcome each call of a replay read, for analyses that need more of it than the replay keeps.

The k-th call of a model for one request read that model's outcome with `sample` = k (the engine's rule),
so a call's tokens and answer are found again by joining (request, model, k) to the outcomes.
"""

from __future__ import annotations

import polars as pl

from simulator.core.contract import Dataset


def model_calls(calls: pl.DataFrame, requests: pl.DataFrame, data: Dataset, columns: list[str | pl.Expr]) -> pl.DataFrame:
    """Every model call (checker and router-overhead calls left out) with `requests`' columns and the outcome `columns` it read.

    `calls` has the replay's call columns (`rid`, `seq`, `model`, `kind`, ...); `requests` has `rid` and
    `request_id` (and whatever else should come along, such as `ts`). Adds `sample`; keeps call order.
    """
    models = calls.filter(pl.col("kind").is_in(["step", "retry"])).with_columns(
        (pl.col("seq").rank("ordinal").over("rid", "model") - 1).cast(pl.Int64).alias("sample"))
    outcomes = data.outcomes.select("request_id", "model", pl.col("sample").cast(pl.Int64), *columns)
    return (models.join(requests, on="rid", how="left").lazy()
            .join(outcomes, on=["request_id", "model", "sample"], how="left", maintain_order="left").collect())


MINUTE = "1m"


def per_minute(calls: pl.DataFrame, decisions: pl.DataFrame, data: Dataset) -> pl.DataFrame:
    """Calls and tokens per model and UTC minute of the request's arrival: `model`, `minute`, `calls`,
    `tokens` (input + output), sorted. Integer sums, so the load of parts of a replay (shards, chunks)
    adds up to the whole's (`merge_per_minute`)."""
    requests = decisions.select("rid", "request_id", pl.col("ts").dt.truncate(MINUTE).alias("minute"))
    called = model_calls(calls, requests, data, ["input_tokens", "output_tokens"])
    return merge_per_minute([called.group_by("model", "minute").agg(
        pl.len().cast(pl.Int64).alias("calls"),
        (pl.col("input_tokens") + pl.col("output_tokens")).sum().cast(pl.Int64).alias("tokens"))])


def merge_per_minute(many: list[pl.DataFrame]) -> pl.DataFrame:
    """The per-minute load of the whole from its parts' (`per_minute`)."""
    return (pl.concat(many, how="vertical_relaxed").group_by("model", "minute")
            .agg(pl.col("calls").sum().cast(pl.Int64), pl.col("tokens").sum().cast(pl.Int64))
            .sort("model", "minute"))
