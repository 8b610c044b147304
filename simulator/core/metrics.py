"""The metrics registry: every number routesim reports is defined here once.

Each metric is an aggregation over the per-request decisions of a replay, so the same definition serves
the whole replay, each slice and each day. The CLI table, the JSON output, the report and the README are
all driven by `METRICS` (a test fails when the README misses one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from simulator.core.prices import usd


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    unit: str
    definition: str  # what it measures and the modelling assumption behind it
    aggregate: Callable[[], pl.Expr]
    higher_is_better: bool | None = None


def _share(flag: str, among: pl.Expr | None = None) -> pl.Expr:
    """Share of requests with `flag`, among those where `among` holds; null when there are none."""
    if among is None:
        return pl.col(flag).cast(pl.Float64).mean()
    eligible = among.sum()
    return pl.when(eligible > 0).then((pl.col(flag) & among).sum() / eligible).otherwise(None)


P95 = 0.95  # the tail latency every comparison (gate, lanes, sweeps) reports


def _latency_quantile(q: float) -> Callable[[], pl.Expr]:
    return lambda: pl.col("latency_ms").quantile(q, interpolation="linear")


METRICS: tuple[Metric, ...] = (
    Metric("requests", "Requests", "requests",
           "requests replayed (after the window, the sample and any skipped for missing outcomes)",
           lambda: pl.len().cast(pl.Int64)),
    Metric("total_cost_usd", "Cost", "USD",
           "sum over every call made (plan steps, escalations, retries, checker calls), each priced at its "
           "request's timestamp, each rounded half to even to a whole nano-dollar and added exactly as integers",
           lambda: usd(pl.col("cost_nano_usd").sum()), higher_is_better=False),
    Metric("cost_per_request_usd", "$/request", "USD per request",
           "total cost divided by requests", lambda: usd(pl.col("cost_nano_usd").sum()) / pl.len(),
           higher_is_better=False),
    Metric("pass_rate", "Pass", "share of requests",
           "share of requests whose final answer has passed and hard_check_ok both true",
           lambda: pl.col("passed").cast(pl.Float64).mean(), higher_is_better=True),
    Metric("mean_score", "Score", "score 0..1",
           "mean graded score of the final answers that carry one (nulls ignored)",
           lambda: pl.col("score").mean(), higher_is_better=True),
    Metric("latency_p50_ms", "p50", "ms",
           "median of per-request latency; a request's latency is the sum of its calls' latency_ms, since "
           "escalations and retries run one after another; percentiles interpolate linearly between order "
           "statistics", _latency_quantile(0.50), higher_is_better=False),
    Metric("latency_p95_ms", "p95", "ms", "95th percentile of per-request latency, as p50",
           _latency_quantile(P95), higher_is_better=False),
    Metric("latency_p99_ms", "p99", "ms", "99th percentile of per-request latency, as p50",
           _latency_quantile(0.99), higher_is_better=False),
    Metric("escalation_rate", "Escalated", "share of requests in multi-step plans",
           "share of the requests routed to a multi-step plan that went past their first step; null when no "
           "request had a multi-step plan", lambda: _share("escalated", pl.col("multi_step"))),
    Metric("retry_rate", "Retried", "share of requests",
           "share of all requests that made at least one retry attempt",
           lambda: (pl.col("retry_attempts") > 0).cast(pl.Float64).mean()),
    Metric("retry_exhausted", "Left failing", "requests",
           "requests whose final answer still matched the retry predicate when no attempt was left",
           lambda: pl.col("retry_exhausted").sum().cast(pl.Int64)),
)

METRIC_NAMES = tuple(metric.name for metric in METRICS)
BY_NAME = {metric.name: metric for metric in METRICS}

CALL_METRICS: tuple[Metric, ...] = (
    Metric("calls", "Calls", "calls", "(by_model) calls made to the model (checker calls under the checker's name)",
           lambda: pl.len().cast(pl.Int64)),
    Metric("call_cost_usd", "Call cost", "USD", "(by_model) cost of the calls made to the model",
           lambda: usd(pl.col("cost_nano_usd").sum())),
    Metric("output_tokens", "Output tokens", "tokens",
           "(by_model) output tokens of the calls made to the model, reasoning included (0 for a checker)",
           lambda: pl.col("output_tokens").sum().cast(pl.Int64)),
    Metric("reasoning_output_tokens", "Reasoning tokens", "tokens",
           "(by_model) the part of output_tokens that was reasoning (a null count is 0)",
           lambda: pl.col("reasoning_output_tokens").sum().cast(pl.Int64)),
)


def grouped(frame: pl.DataFrame, by: str | pl.Expr | list[str], aggregations: list[pl.Expr]) -> pl.DataFrame:
    """`aggregations` per group of `by`, sorted by the group key, with every sum taken in row order.

    polars' group_by adds a group's floats in an order its threads race over, so identical runs could
    differ in the last bits of a cost; aggregating each partition on its own keeps sums reproducible.
    Meant for a modest number of groups (slices, models, days, time buckets).
    """
    if isinstance(by, pl.Expr):
        key = by.meta.output_name()
        return grouped(frame.with_columns(by), key, aggregations)
    keys = [by] if isinstance(by, str) else list(by)
    if frame.is_empty():
        return frame.group_by(keys).agg(aggregations)
    parts = [part.select(pl.col(keys).first(), *aggregations)
             for part in frame.partition_by(keys, maintain_order=True)]
    return pl.concat(parts, how="vertical_relaxed").sort(keys, nulls_last=True)


def aggregate(decisions: pl.DataFrame, by: str | pl.Expr | None = None) -> pl.DataFrame:
    """Every metric, overall (`by=None`) or per group, sorted by the group key."""
    expressions = [metric.aggregate().alias(metric.name) for metric in METRICS]
    if by is None:
        return decisions.select(expressions)
    return grouped(decisions, by, expressions)


def by_model(decisions: pl.DataFrame, calls: pl.DataFrame, price_sources: dict[str, str]) -> pl.DataFrame:
    """Per model: metrics of the requests it answered last, plus the calls made to it and their cost."""
    answered = aggregate(decisions.rename({"final_model": "model"}), "model")
    made = grouped(calls, "model", [metric.aggregate().alias(metric.name) for metric in CALL_METRICS])
    merged = made.join(answered, on="model", how="left").with_columns(
        pl.col("requests").fill_null(0),
        (pl.col("calls") / pl.col("calls").sum()).alias("call_share"),
        pl.col("model").replace_strict(price_sources, default=None).alias("price_source"),
    )
    return merged.sort("model")


def summarise(decisions: pl.DataFrame, calls: pl.DataFrame, price_sources: dict[str, str]) -> dict:
    """The flat summary plus `by_slice`, `by_day` and `by_model` lists of the same keys."""
    summary = aggregate(decisions).to_dicts()[0]
    summary["by_slice"] = aggregate(decisions, "slice").to_dicts()
    day = pl.col("ts").dt.date().cast(pl.String).alias("day")
    summary["by_day"] = aggregate(decisions.with_columns(day), "day").to_dicts()
    summary["by_model"] = by_model(decisions, calls, price_sources).to_dicts()
    return summary
