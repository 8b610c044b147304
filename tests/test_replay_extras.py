"""What a replay computes besides its decisions, each once: the summary's part (counters, score sums and
latency histograms per group, the per-minute load, the requests' columns) is built one time, and capacity
and the controls read it. Each figure is checked against the plain computation it replaces."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from simulator.analyses.capacity import capacity_of
from simulator.analyses.controls import controls_of, router_of, set_beside
from simulator.core import engine, results
from simulator.core.calls import model_calls, per_minute, with_layout_rows
from simulator.core.money import usd_of
from simulator.core.partials import BUCKET_SHIFT, COUNTERS, HALF, parts_of
from simulator.core.runner import Inputs, run_scenario
from simulator.core.scenario import load_scenario
from tests.conftest import OUTCOME_SCHEMA, outcome_row

IDS = [f"r{index}" for index in range(8)]


@pytest.fixture
def replayed(world):
    """Eight requests over three minutes; small answers each twice, big once, mid all but r5 (so the
    controls leave it out); input tokens differ by answer. Pro requests go
    through a small-then-big cascade, the others to small, and small's failed answers are retried on small."""
    traffic = pl.DataFrame({"request_id": IDS, "slice": ["faq", "code"] * 4, "input_tokens": [1000] * 8,
                            "tier": ["pro", "free"] * 4,
                            "ts": [dt.datetime(2026, 11, 16, 1, index // 3, 7 * index, tzinfo=dt.UTC)
                                   for index in range(8)]})
    rows = []
    for index, name in enumerate(IDS):
        rows += [outcome_row(name, "small", sample=sample, confidence=0.5 + 0.06 * index, passed=index % 3 != 0,
                             input_tokens=900 + index + 7 * sample,
                             output_tokens=100 + 10 * index + sample, latency_ms=100.0 + index)
                 for sample in (0, 1)]
        rows.append(outcome_row(name, "big", output_tokens=50 + index, latency_ms=900.0 - index))
        if name != "r5":
            rows.append(outcome_row(name, "mid", output_tokens=70 + index, passed=index % 2 == 0))
    world.write_data(traffic, pl.DataFrame(rows, schema=OUTCOME_SCHEMA))
    scenario = load_scenario(world.scenario(policy={
        "rules": [{"when": "tier = 'pro'", "cascade": [{"model": "small", "accept": "confidence >= 0.7"},
                                                       {"model": "big"}]}],
        "default": {"use": "small"},
        "retry": {"when": "NOT passed", "to": ["small"]}}))
    world.prices.write_text(__import__("yaml").safe_dump(
        {"models": {name: [{"effective_from": dt.date(2026, 11, 1), "input": 1.0 + k, "output": 2.0 + k}]
                    for k, name in enumerate(["small", "mid", "big"])}}))
    return scenario, Inputs()


def test_capacity_and_controls_read_the_part_the_summary_was_built_from(replayed, monkeypatch):
    scenario, inputs = replayed
    built, read = [], []
    real_part, real_load = results.replay_part, results.per_minute
    monkeypatch.setattr(results, "replay_part", lambda *args: built.append(args) or real_part(*args))
    monkeypatch.setattr(results, "per_minute", lambda *args: read.append(args) or real_load(*args))
    outcome = run_scenario(scenario, inputs)
    data, sheet = inputs.data(scenario), inputs.prices(scenario)
    set_beside(outcome.summary, outcome.replay, data, sheet)
    # the summary's part, read again by capacity and the controls: the per-minute load is counted once
    assert len(built) == 1 and len(read) == 1
    monkeypatch.undo()
    replay = outcome.replay
    positioned = with_layout_rows(replay.decisions, replay.layout_rows)
    assert outcome.summary["capacity"] == capacity_of(scenario, per_minute(replay.calls, replay.decisions), 1.0, data)
    assert outcome.summary["controls"] == controls_of(scenario, positioned, router_of(replay.calls), data, sheet)
    assert outcome.summary["controls"]["left_out"] == ["mid"]


def test_the_per_minute_load_is_each_models_calls_and_their_answers_tokens(replayed):
    """The call records carry the input and output tokens of the answer each call read: the load counted from
    them is the load of the answers read again from the outcomes."""
    scenario, inputs = replayed
    replay, data = run_scenario(scenario, inputs).replay, inputs.data(scenario)
    requests = replay.decisions.select("rid", "request_id", pl.col("ts").dt.truncate("1m").alias("minute"))
    called = model_calls(replay.calls, requests, data, ["input_tokens", "output_tokens"])
    assert called["sample"].max() == 1  # a retry read small's second answer
    expected = (called.group_by("model", "minute")
                .agg(pl.len().cast(pl.Int64).alias("calls"),
                     (pl.col("input_tokens") + pl.col("output_tokens_right")).sum().cast(pl.Int64).alias("tokens"))
                .sort("model", "minute"))
    assert_frame_equal(per_minute(replay.calls, replay.decisions), expected)
    assert_frame_equal(per_minute(replay.call_records, replay.decisions), expected)
    # every model call names the input tokens of the answer it read
    assert replay.calls.filter(pl.col("kind").is_in(["step", "retry"]))["input_tokens"].null_count() == 0


def _plain_parts(frame: pl.DataFrame, key: pl.Expr, quantiled: bool) -> dict[str, pl.DataFrame]:
    """One scope's part computed the plain way, a group-by per frame over every row."""
    keyed = frame.select(key.alias("key"), *frame.columns)
    counts = (keyed.group_by("key").agg(*(counter().cast(pl.Int64).alias(name) for name, counter in COUNTERS.items()))
              .sort("key", nulls_last=True))
    scored = keyed.filter(pl.col("score").is_not_null())
    mantissa, exponent = np.frexp(scored["score"].to_numpy())
    whole = np.ldexp(mantissa, 53).astype(np.int64)
    scores = (pl.DataFrame({"key": scored["key"], "exp": (exponent - 53).astype(np.int64), "hi": whole >> HALF,
                            "lo": whole & ((1 << HALF) - 1)})
              .group_by("key", "exp").agg(pl.col("hi").sum(), pl.col("lo").sum()))
    frames = {"counts": counts, "scores": scores}
    if quantiled:
        timed = keyed.filter(pl.col("latency_ms").is_not_null())
        buckets = (timed["latency_ms"].to_numpy() + 0.0).view(np.int64) >> BUCKET_SHIFT
        frames["histogram"] = (pl.DataFrame({"key": timed["key"], "bucket": buckets})
                               .group_by("key", "bucket").agg(pl.len().cast(pl.Int64).alias("n")))
    return frames


def test_parts_counted_once_per_group_are_the_plain_group_bys_with_null_keys_of_every_kind():
    rng = np.random.default_rng(7)
    n = 3000

    def nulled(values, share, dtype):
        return pl.Series([None if drop else value for drop, value in zip(rng.random(n) < share, values)], dtype=dtype)

    frame = pl.DataFrame({
        "slice": nulled([f"s{v}" for v in rng.integers(0, 6, n)], 0.1, pl.String),
        "ts": pl.Series([dt.datetime(2026, 11, 16, tzinfo=dt.UTC) + dt.timedelta(seconds=int(v))
                         for v in rng.integers(0, 3 * 86_400, n)], dtype=pl.Datetime("us", "UTC")),
        "flag": nulled((rng.random(n) < 0.5).tolist(), 0.2, pl.Boolean),
        "tenth": rng.random(n).round(1),
        "cost_nano_usd": nulled(rng.integers(0, 10**15, n).tolist(), 0.05, pl.Int64),
        "passed": rng.random(n) < 0.8,
        # tiny, zero, subnormal and negative scores beside plain ones (each float's mantissa and exponent)
        "score": nulled(np.where(rng.random(n) < 0.1, rng.choice([1e-300, 0.0, -0.0, 5e-324, 1e-310, -0.75], n),
                                 rng.random(n) ** 3).tolist(), 0.3, pl.Float64),
        "multi_step": rng.random(n) < 0.5, "escalated": rng.random(n) < 0.3,
        "retry_attempts": rng.integers(0, 3, n).astype(np.int32), "retry_exhausted": rng.random(n) < 0.1,
        "latency_ms": nulled((rng.random(n) * 10.0 ** rng.integers(0, 6, n)).tolist(), 0.2, pl.Float64),
    })
    scopes = {"all": pl.lit(""), "slice": pl.col("slice"), "day": pl.col("ts").dt.date(),
              "5 minutes": pl.col("ts").dt.truncate("5m"), "flag": pl.col("flag"), "tenth": pl.col("tenth")}
    quantiled = ("all", "slice", "day", "flag")
    for rows in (frame, frame.sort("ts")):  # in any order, and in arrival order (keys of time in order)
        parts = parts_of(rows, scopes, quantiled)
        for name, key in scopes.items():
            plain = _plain_parts(rows, key, name in quantiled)
            assert parts.scopes[name].keys() == plain.keys()
            assert_frame_equal(parts.scopes[name]["counts"], plain["counts"])
            for kind in set(plain) - {"counts"}:  # row order is no part of these
                assert_frame_equal(parts.scopes[name][kind].sort(pl.all(), nulls_last=True),
                                   plain[kind].sort(pl.all(), nulls_last=True))


def test_the_calls_are_sorted_only_when_a_table_asks_for_them(replayed, monkeypatch):
    """The summary (and capacity, the controls) read the call records in the order the stages made them;
    `Replay.calls` sorts them once, into (rid, seq, kind) order, for the tables written out."""
    scenario, inputs = replayed
    sorts = []
    real = engine.sort_calls
    monkeypatch.setattr(engine, "sort_calls", lambda frame: sorts.append(frame.height) or real(frame))
    outcome = run_scenario(scenario, inputs)
    set_beside(outcome.summary, outcome.replay, inputs.data(scenario), inputs.prices(scenario))
    assert sorts == []
    replay = outcome.replay
    records = replay.call_records
    # the retries of the first requests were made after every request's first step: the records are out of order
    assert records["rid"].to_list() != sorted(records["rid"].to_list())
    # the records name models by an Enum of the policy's names and leave the cost in USD to the table
    assert isinstance(records.schema["model"], pl.Enum) and "cost_usd" not in records.columns
    ordered = replay.calls
    assert replay.calls is ordered and sorts == [records.height]
    assert ordered.columns == engine.CALL_COLUMNS and ordered.schema["model"] == pl.String
    by_key = records.sort("rid", "seq", "kind", maintain_order=True)
    assert_frame_equal(ordered.drop("cost_usd"), by_key.with_columns(pl.col("model").cast(pl.String)),
                       check_column_order=False)
    assert ordered["cost_usd"].to_list() == [usd_of(nano) for nano in by_key["cost_nano_usd"].to_list()]


@pytest.mark.parametrize("seq_range", [(-3, 4), (-(1 << 30), 1 << 30)])  # one 64-bit key; the columns' fallback
def test_sort_calls_is_a_stable_sort_by_rid_seq_and_kind(seq_range):
    generator = np.random.default_rng(7)
    size = 500
    calls_frame = pl.DataFrame({
        "rid": pl.Series(generator.integers(0, 40, size), dtype=pl.UInt32),
        "seq": pl.Series(generator.integers(*seq_range, size), dtype=pl.Int32),
        "kind": pl.Series(generator.choice(["step", "retry", "checker", "router"], size), dtype=engine.CALL_KIND),
        "order": np.arange(size)})
    assert_frame_equal(engine.sort_calls(calls_frame), calls_frame.sort("rid", "seq", "kind", maintain_order=True))
