"""Session metrics on a hand-worked tiny world, and sessions in the decisions table."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.conftest import OUTCOME_SCHEMA, outcome_row, tiny_traffic


def _session_world(world):
    # a and b are turns of s1, c is s2 alone. Policy (the world's default): small, accepted at confidence
    # >= 0.7, else big. Prices per million tokens: small 1 in / 2 out, big 10 / 20; every call reads 1,000
    # input and writes 100 output tokens.
    #   a: small (0.9) accepted: $0.0012, 100 ms, passes
    #   b: small (0.5) escalates to big, which fails: $0.0012 + $0.012 = $0.0132, 100 + 1,000 = 1,100 ms
    #   c: small (0.8) accepted: $0.0012, 100 ms, passes
    traffic = tiny_traffic().with_columns(pl.Series("session_id", ["s1", "s1", "s2"]),
                                          pl.Series("turn", [0, 1, 0], dtype=pl.Int64))
    rows = [outcome_row("a", "small", confidence=0.9), outcome_row("b", "small", confidence=0.5, passed=False),
            outcome_row("c", "small", confidence=0.8), outcome_row("a", "big", latency_ms=1000.0),
            outcome_row("b", "big", latency_ms=1000.0, passed=False), outcome_row("c", "big", latency_ms=1000.0)]
    world.write_data(traffic, pl.DataFrame(rows, schema=OUTCOME_SCHEMA))


def test_session_metrics_of_a_hand_worked_world(cli, world):
    _session_world(world)
    result = cli("replay", world.scenario(), "--json")
    assert result.code == 0, result.err
    [summary] = json.loads(result.out)
    sessions = summary["sessions"]
    assert sessions["sessions"] == 2
    assert sessions["turns_per_session"] == 1.5
    assert sessions["session_success_rate"] == 0.5  # s1 has a failing turn (b), s2 passes
    assert sessions["cost_per_session_usd"] == pytest.approx((0.0012 + 0.0132 + 0.0012) / 2, abs=1e-15)
    # session latencies: s1 100 + 1,100 = 1,200 ms, s2 100 ms; linear interpolation between them
    assert sessions["session_latency_p50_ms"] == 650.0
    assert sessions["session_latency_p95_ms"] == pytest.approx(100 + 0.95 * 1100, rel=1e-12)
    assert sessions["session_escalation_rate"] == 0.5  # s1's turn b escalated


def test_traffic_without_sessions_has_no_session_block(cli, world):
    result = cli("replay", world.scenario(), "--json")
    assert result.code == 0, result.err
    assert "sessions" not in json.loads(result.out)[0]


def test_decisions_list_each_requests_session_and_turn(cli, world):
    _session_world(world)
    out = world.folder / "decisions.parquet"
    assert cli("replay", world.scenario(), "--decisions", out).code == 0
    decisions = pl.read_parquet(out).sort("request_id")
    assert decisions["session_id"].to_list() == ["s1", "s1", "s2"]
    assert decisions["turn"].to_list() == [0, 1, 0]


def test_the_replay_prints_a_sessions_table(cli, world):
    _session_world(world)
    result = cli("replay", world.scenario())
    assert result.code == 0, result.err
    assert "Sessions" in result.out and "Session pass" in result.out and "50.0%" in result.out
