"""The metrics registry: every number routesim reports is defined here once.

Each metric is an aggregation over the per-request decisions of a replay, so the same definition serves
the whole replay, each slice and each day. The CLI table, the JSON output, the report and the README are
all driven by `METRICS` (a test fails when the README misses one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import polars as pl

from simulator.core.money import usd_of, usd_per
from simulator.core.partials import (
    Parts,
    exact_mean,
    exact_sums,
    fetch_local,
    kept_latencies,
    parts_of,
    scope_keys,
    quantiles,
)
from simulator.core.prices import CACHE_LOSS_LINE, cost_line, price_sources_from


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    unit: str
    definition: str  # what it measures and the modelling assumption behind it
    value: Callable[[dict], object]  # from a group's merged counters (simulator.core.partials)
    higher_is_better: bool | None = None
    integer: bool = False


def _ratio(top: str, bottom: str) -> Callable[[dict], float | None]:
    """Share `top` / `bottom` of a group's counters; null when `bottom` is 0."""
    return lambda counts: counts[top] / counts[bottom] if counts[bottom] else None


P95 = 0.95  # the tail latency every comparison (gate, lanes, sweeps) reports
LATENCY_QUANTILES = (0.50, P95, 0.99)


def _latency(q: float) -> Callable[[dict], float | None]:
    return lambda counts: counts["latency"].get(q)


METRICS: tuple[Metric, ...] = (
    Metric("requests", "Requests", "requests",
           "requests replayed (after the window, the sample and any skipped for missing outcomes)",
           lambda counts: counts["requests"], integer=True),
    Metric("total_cost_usd", "Cost", "USD",
           "sum over every call made (plan steps, escalations, retries, checker calls, router overheads) and "
           "every prompt-cache loss, each priced at its request's timestamp, each rounded half to even to a whole "
           "nano-dollar and added exactly as integers",
           lambda counts: usd_of(counts["cost_nano"]), higher_is_better=False),
    Metric("cost_per_request_usd", "$/request", "USD per request",
           "total cost divided by requests: the exact nano-dollar sum over the requests, correctly rounded once",
           lambda counts: usd_per(counts["cost_nano"], counts["requests"]), higher_is_better=False),
    Metric("pass_rate", "Pass", "share of requests",
           "share of requests whose final answer has passed and hard_check_ok both true",
           _ratio("passes", "requests"), higher_is_better=True),
    Metric("mean_score", "Score", "score 0..1",
           "mean graded score of the final answers that carry one (nulls ignored); the exact sum, correctly "
           "rounded once", lambda counts: exact_mean(counts["score_sum"], counts["scored"]), higher_is_better=True),
    Metric("latency_p50_ms", "p50", "ms",
           "median of per-request latency; a request's latency is the sum of its calls' latency_ms, since "
           "escalations and retries run one after another; percentiles interpolate linearly between order "
           "statistics", _latency(0.50), higher_is_better=False),
    Metric("latency_p95_ms", "p95", "ms", "95th percentile of per-request latency, as p50",
           _latency(P95), higher_is_better=False),
    Metric("latency_p99_ms", "p99", "ms", "99th percentile of per-request latency, as p50",
           _latency(0.99), higher_is_better=False),
    Metric("escalation_rate", "Escalated", "share of requests in multi-step plans",
           "share of the requests routed to a multi-step plan that went past their first step; null when no "
           "request had a multi-step plan", _ratio("escalated", "multi")),
    Metric("retry_rate", "Retried", "share of requests",
           "share of all requests that made at least one retry attempt", _ratio("retried", "requests")),
    Metric("retry_exhausted", "Left failing", "requests",
           "requests whose final answer still matched the retry predicate when no attempt was left",
           lambda counts: counts["exhausted"], integer=True),
)

METRIC_NAMES = tuple(metric.name for metric in METRICS)
BY_NAME = {metric.name: metric for metric in METRICS}

CALL_METRICS: tuple[Metric, ...] = (
    Metric("calls", "Calls", "calls", "(by_model) calls made to the model (checker calls under the checker's name; "
           "the calls that lost their prompt cache under prompt-cache loss)",
           lambda counts: counts["calls"], integer=True),
    Metric("call_cost_usd", "Call cost", "USD", "(by_model) cost of the calls made to the model",
           lambda counts: usd_of(counts["cost_nano"])),
    Metric("output_tokens", "Output tokens", "tokens",
           "(by_model) output tokens of the calls made to the model, reasoning included (0 for a checker)",
           lambda counts: counts["output_tokens"], integer=True),
    Metric("reasoning_output_tokens", "Reasoning tokens", "tokens",
           "(by_model) the part of output_tokens that was reasoning (a null count is 0)",
           lambda counts: counts["reasoning_output_tokens"], integer=True),
)


SESSION_METRICS: tuple[Metric, ...] = (
    Metric("sessions", "Sessions", "sessions",
           "(sessions) conversations among the replayed requests: distinct non-null session_id values",
           lambda counts: counts["sessions"], integer=True),
    Metric("turns_per_session", "Turns", "requests per session",
           "(sessions) replayed requests with a session_id divided by sessions",
           _ratio("turns", "sessions")),
    Metric("session_success_rate", "Session pass", "share of sessions",
           "(sessions) share of sessions in which every replayed turn passed (passed and hard_check_ok)",
           _ratio("successes", "sessions"), higher_is_better=True),
    Metric("cost_per_session_usd", "$/session", "USD per session",
           "(sessions) cost of the sessions' turns, added exactly in nano-dollars, divided by sessions and "
           "correctly rounded once", lambda counts: usd_per(counts["cost_nano"], counts["sessions"]),
           higher_is_better=False),
    Metric("session_latency_p50_ms", "Session p50", "ms",
           "(sessions) median of a session's latency, the sum of its turns' latencies (the time its user "
           "waited, turns taken one after another), over the sessions whose every turn has a latency",
           _latency(0.50), higher_is_better=False),
    Metric("session_latency_p95_ms", "Session p95", "ms",
           "(sessions) 95th percentile of a session's latency, as session_latency_p50_ms",
           _latency(P95), higher_is_better=False),
    Metric("session_escalation_rate", "Sessions escalated", "share of sessions",
           "(sessions) share of sessions with at least one turn that went past the first step of a "
           "multi-step plan", _ratio("escalated", "sessions")),
)
# Per-request columns the session metrics read (`escalated`: escalated within a multi-step plan).
SESSION_READS = ("session_id", "request_id", "ts", "passed", "cost_nano_usd", "latency_ms", "escalated")


@dataclass(frozen=True)
class SessionTerms:
    """What the session metrics need from a part of a replay that holds its sessions whole (chunks and
    shards split traffic by session, simulator.core.chunks and simulator.core.shards): counts, which add
    across parts, and `latencies`, one float64 (ms) per session whose every turn has a latency, which
    concatenate. A session split across parts would be counted once in each."""

    sessions: int
    turns: int
    successes: int
    cost_nano: int
    escalated: int
    latencies: np.ndarray


def session_terms(requests: pl.DataFrame) -> SessionTerms:
    """The SessionTerms of one row per replayed request (`SESSION_READS`), in any row order.

    Turns are added in (session_id, ts, request_id) order, sequentially (numpy's reduceat), so a session's
    latency is the same float whichever shards or chunks its session was replayed in; costs are integer
    sums. Requests without a session_id are left out."""
    turns = (requests.filter(pl.col("session_id").is_not_null()).sort("session_id", "ts", "request_id")
             .select("session_id", "passed", "cost_nano_usd", "latency_ms", "escalated"))
    if turns.is_empty():
        return SessionTerms(0, 0, 0, 0, 0, np.empty(0, dtype=np.float64))
    starts = turns.select((pl.col("session_id") != pl.col("session_id").shift(1)).fill_null(True)
                          .arg_true())["session_id"].to_numpy()
    latency = np.add.reduceat(turns["latency_ms"].cast(pl.Float64).to_numpy().astype(np.float64), starts)  # null -> nan
    sizes = np.diff(np.append(starts, turns.height))
    passes = np.add.reduceat(turns["passed"].cast(pl.Int64).to_numpy(), starts)
    escalated = np.add.reduceat(turns["escalated"].cast(pl.Int64).to_numpy(), starts)
    return SessionTerms(sessions=len(starts), turns=turns.height, successes=int((passes == sizes).sum()),
                        cost_nano=int(turns["cost_nano_usd"].sum()), escalated=int((escalated > 0).sum()),
                        latencies=latency[~np.isnan(latency)])


def merge_session_terms(many: list[SessionTerms]) -> SessionTerms:
    """The SessionTerms of a whole replay from those of its parts (each holding its sessions whole)."""
    return SessionTerms(*(sum(getattr(terms, name) for terms in many)
                          for name in ("sessions", "turns", "successes", "cost_nano", "escalated")),
                        latencies=np.concatenate([terms.latencies for terms in many]))


def session_metrics(terms: SessionTerms) -> dict:
    """Every SESSION_METRICS metric from a replay's (merged) SessionTerms; latency quantiles are linear
    (Hyndman and Fan's type 7), of the multiset of sessions' latencies, so the order of parts cannot matter."""
    timed = pl.Series(terms.latencies, dtype=pl.Float64)
    counts = {"sessions": terms.sessions, "turns": terms.turns, "successes": terms.successes,
              "cost_nano": terms.cost_nano, "escalated": terms.escalated,
              "latency": {q: timed.quantile(q, interpolation="linear") for q in LATENCY_QUANTILES}
              if timed.len() else {}}
    return {metric.name: metric.value(counts) for metric in SESSION_METRICS}


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


DAY = "day"
OVER_TIME_SCOPE = "5 minutes"
# The groups a summary reports, each a scope of the partials; 5-minute steps serve the pass rate over time
# (per 5 minutes, hour or day, each a whole number of steps).
QUANTILED_SCOPES = ("all", "slice", "day", "model")


def summary_scopes() -> dict[str, pl.Expr]:
    """The scopes' group keys. A day is keyed by its date, written as text only in the summary (`by_day`),
    which spares writing every request's date as text."""
    return {"all": pl.lit(""), "slice": pl.col("slice"), "day": pl.col("ts").dt.date(),
            "model": pl.col("final_model"), OVER_TIME_SCOPE: pl.col("ts").dt.truncate("5m")}


def decision_parts(decisions: pl.DataFrame, scopes: dict[str, pl.Expr],
                   quantiled: tuple[str, ...]) -> tuple[Parts, pl.DataFrame]:
    """A part of a replay: the decisions' counters per scope, and the latencies kept for pass 2 (each
    scope's keys computed once for both)."""
    keys = scope_keys(decisions, scopes)
    return parts_of(decisions, scopes, quantiled, keys), kept_latencies(decisions, scopes, quantiled, keys)


def metric_rows(parts: Parts, latencies: dict, scope: str) -> list[dict]:
    """Every metric per group of `scope`, from merged parts and the scope's exact latency quantiles."""
    frames = parts.scopes[scope]
    sums = exact_sums(frames["scores"])
    rows = []
    for counts in frames["counts"].iter_rows(named=True):
        key = counts.pop("key")
        counts |= {"score_sum": sums.get(key, Fraction(0)), "latency": latencies.get(scope, {}).get(key, {})}
        rows.append({"key": key, **{metric.name: metric.value(counts) for metric in METRICS}})
    return rows


CALL_TOKENS = ("output_tokens", "reasoning_output_tokens")  # summed per model (null = 0)


def call_parts(calls: pl.DataFrame) -> pl.DataFrame:
    """A part of a replay's calls: per model (cost line: prompt-cache losses under one line of their own,
    simulator.core.prices.cost_line) and price source, the calls and their nano-dollars."""
    # Grouped by the columns as they are first (a replay's records name models by an Enum of codes), then
    # by cost line over the few groups: integer sums, the same in either order.
    sums = [pl.col("calls"), pl.col("cost_nano"), *(pl.col(name) for name in CALL_TOKENS)]
    return (calls.group_by("kind", "model", "price_source")
            .agg(pl.len().cast(pl.Int64).alias("calls"), pl.col("cost_nano_usd").sum().cast(pl.Int64).alias("cost_nano"),
                 *(pl.col(name).sum().cast(pl.Int64) for name in CALL_TOKENS))
            .with_columns(pl.col("model", "price_source").cast(pl.String))
            .group_by(cost_line().alias("model"), "price_source").agg(expr.sum() for expr in sums)
            .sort("model", "price_source"))


def merge_call_parts(many: list[pl.DataFrame]) -> pl.DataFrame:
    return (pl.concat(many, how="vertical_relaxed").group_by("model", "price_source")
            .agg(pl.col("calls", "cost_nano", *CALL_TOKENS).sum()).sort("model", "price_source"))


def aggregate(decisions: pl.DataFrame, by: str | pl.Expr | None = None) -> pl.DataFrame:
    """Every metric, overall (`by=None`) or per group, sorted by the group key."""
    key = pl.lit("") if by is None else pl.col(by) if isinstance(by, str) else by
    parts, kept = decision_parts(decisions, {"by": key}, ("by",))
    rows = metric_rows(parts, quantiles(parts, ("by",), LATENCY_QUANTILES, fetch_local([kept])), "by")
    schema = {metric.name: pl.Int64 if metric.integer else pl.Float64 for metric in METRICS}
    if by is not None:
        name = by if isinstance(by, str) else by.meta.output_name()
        schema = {name: decisions.select(key).dtypes[0], **schema}
        return pl.DataFrame([{name: row.pop("key"), **row} for row in rows], schema=schema)
    return pl.DataFrame([{k: v for k, v in row.items() if k != "key"} for row in rows], schema=schema)


def by_model(answered: list[dict], made: pl.DataFrame, price_sources: dict[str, str]) -> list[dict]:
    """Per model called: the calls made to it and their cost (`made`, merged call parts), then the metrics
    of the requests it answered last (`answered`, rows of the `model` scope; requests 0 and the rest null
    for a model that answered none), its share of the calls and its price source. Prompt-cache losses are
    one line of their own (simulator.core.prices.CACHE_LOSS_LINE): the calls that lost the cache and what
    the loss cost."""
    answers = {row["key"]: row for row in answered}
    per_model: dict[str, dict] = {}
    for row in made.iter_rows(named=True):
        counts = per_model.setdefault(row["model"], dict.fromkeys(("calls", "cost_nano", *CALL_TOKENS), 0))
        for name in counts:
            counts[name] += row[name]
    # A prompt-cache loss is billed on a call, not made: its line has no share of the calls.
    total = sum(counts["calls"] for model, counts in per_model.items() if model != CACHE_LOSS_LINE)
    rows = []
    for model, counts in sorted(per_model.items()):
        row = {"model": model, **{metric.name: metric.value(counts) for metric in CALL_METRICS}}
        answer = answers.get(model)
        row |= {metric.name: answer[metric.name] if answer else None for metric in METRICS}
        row["requests"] = row["requests"] or 0
        share = None if model == CACHE_LOSS_LINE else counts["calls"] / total
        rows.append(row | {"call_share": share, "price_source": price_sources.get(model)})
    return rows


def price_sources_of_parts(made: pl.DataFrame) -> dict[str, str]:
    """Model -> the source that priced its calls (`made`: merged call parts)."""
    return price_sources_from(made.select("model", "price_source").iter_rows())


def summary_counts(parts: Parts) -> dict:
    """The whole replay's counters (the `all` scope)."""
    return parts.scopes["all"]["counts"].row(0, named=True)


def summary_metrics(parts: Parts, made: pl.DataFrame, latencies: dict) -> dict:
    """The flat metrics plus `by_slice`, `by_day` and `by_model` lists of the same keys, from merged parts."""
    summary = {key: value for key, value in metric_rows(parts, latencies, "all")[0].items() if key != "key"}
    summary["by_slice"] = [{"slice": row.pop("key"), **row} for row in metric_rows(parts, latencies, "slice")]
    days = metric_rows(parts, latencies, "day")
    texts = pl.Series([row.pop("key") for row in days], dtype=pl.Date).cast(pl.String).to_list()
    summary["by_day"] = [{DAY: text, **row} for text, row in zip(texts, days)]
    summary["by_model"] = by_model(metric_rows(parts, latencies, "model"), made, price_sources_of_parts(made))
    return summary


def summarise(decisions: pl.DataFrame, calls: pl.DataFrame) -> dict:
    """The flat summary plus `by_slice`, `by_day` and `by_model` of one replay in one piece."""
    scopes = summary_scopes()
    parts, kept = decision_parts(decisions, scopes, QUANTILED_SCOPES)
    latencies = quantiles(parts, QUANTILED_SCOPES, LATENCY_QUANTILES, fetch_local([kept]))
    return summary_metrics(parts, call_parts(calls), latencies)
