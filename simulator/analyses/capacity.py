"""Capacity: each model's peak per-minute load under a policy, and the minutes over its rate limits.

Modelling assumptions:
- Every call a request makes (plan steps, escalations, retries) counts in the UTC minute the request
  arrived: a replay has no clock inside a request, and most requests finish within their minute. Checker
  calls are not calls to a model and do not count.
- A call's tokens are its outcome's `input_tokens + output_tokens`, as LiteLLM counts them against a
  deployment's `tpm`; calls count against `rpm`.
- The load is that of the replayed requests: a scenario replayed on a `sample` of its window shows the
  sample's load, which `requests_share` (replayed of the window's requests) makes plain.
"""

from __future__ import annotations

import polars as pl

from simulator.core.contract import Dataset
from simulator.core.engine import Replay, data_values
from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.results import part_of
from simulator.core.scenario import Scenario

SHOWN_MINUTES = 10  # flagged minutes listed per model; all of them are counted


def _peak(load: pl.DataFrame, column: str) -> tuple[int, str | None]:
    if load.is_empty():
        return 0, None
    row = load.sort(column, "minute", descending=[True, False]).row(0, named=True)
    return row[column], row["minute"].isoformat()


def capacity(result: Replay, data: Dataset) -> dict:
    """`capacity_of` one replay in one piece, from the per-minute load of its part (the one its summary was
    built from: simulator.core.results.part_of)."""
    coverage = result.coverage
    share = coverage.requests_replayed / coverage.requests_in_window if coverage.requests_in_window else 0.0
    return capacity_of(result.scenario, part_of(result, data).load, share, data)


def capacity_of(scenario: Scenario, load: pl.DataFrame, requests_share: float, data: Dataset) -> dict:
    """Per model the policy calls or the scenario limits: peak calls and tokens per minute (and when),
    its `rpm`/`tpm` limits, how many minutes exceed each, and the first flagged minutes. `load` is
    simulator.core.calls.per_minute of the replay (or merged from its shards' or chunks'); `requests_share`
    is replayed of the window's requests.

    Raises RoutesimError when `capacity:` names a model the data does not have.
    """
    known = data_values(data.outcomes, "model") if scenario.capacity else []
    for model in scenario.capacity:
        if model not in known:
            raise RoutesimError(f"capacity names model '{model}', which has no outcomes in the data."
                                f"{did_you_mean(model, known)}",
                                where=f"scenario '{scenario.name}', key 'capacity.{model}'",
                                fix=f"models in the data: {', '.join(known)}")
    models = sorted(set(load["model"].unique().to_list()) | set(scenario.capacity))
    rows, flagged_minutes = [], 0
    for model in models:
        mine = load.filter(pl.col("model") == model)
        limit = scenario.capacity.get(model)
        rpm, tpm = (limit.rpm, limit.tpm) if limit else (None, None)
        over = mine.filter((pl.col("calls") > (rpm or float("inf"))) | (pl.col("tokens") > (tpm or float("inf"))))
        peak_calls, peak_calls_at = _peak(mine, "calls")
        peak_tokens, peak_tokens_at = _peak(mine, "tokens")
        flagged_minutes += over.height
        rows.append({
            "model": model, "rpm": rpm, "tpm": tpm,
            "peak_calls_per_minute": peak_calls, "peak_calls_at": peak_calls_at,
            "peak_tokens_per_minute": peak_tokens, "peak_tokens_at": peak_tokens_at,
            "minutes_over_rpm": mine.filter(pl.col("calls") > rpm).height if rpm else 0,
            "minutes_over_tpm": mine.filter(pl.col("tokens") > tpm).height if tpm else 0,
            "minutes_over": over.height,
            "over": [{"minute": minute.isoformat(), "calls": calls, "tokens": tokens}
                     for minute, calls, tokens in over.head(SHOWN_MINUTES).select("minute", "calls", "tokens")
                     .iter_rows()],
        })
    return {"models": rows, "minutes_over": flagged_minutes, "within_limits": flagged_minutes == 0,
            "requests_share": requests_share}
