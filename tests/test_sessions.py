"""Session metrics on a hand-worked tiny world, sessions in the decisions table, and a session's prompt-cache
loss in the summary, its warning and the terminal, and the loss rule itself on hand-worked turns."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
import yaml

from simulator.core.sessions import EXPOSURE_SCHEMA, CacheState, lost
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


def _switching_world(world):
    # One session of three turns, a (turn 0), b (turn 1), c (turn 2). The rule sends turn 1 to small, every
    # other turn takes big. big is in the sheet (input 10, cached 2.5, output 20 per million); small is not,
    # and is priced at its recorded $0.001. Every call reads 1,000 input tokens, 400 of them cached, and
    # writes 100:
    #   a: big, 600 x 10 + 400 x 2.5 + 100 x 20 = 9,000 -> $0.009, the session's first turn
    #   b: small at its recorded $0.001: it lost a's cache, but a recorded cost has no cached rate to undo
    #   c: big, which b did not call: $0.009 + 400 x (10 - 2.5) = 3,000 more -> $0.012
    traffic = tiny_traffic().with_columns(pl.Series("session_id", ["s1", "s1", "s1"]),
                                          pl.Series("turn", [0, 1, 2], dtype=pl.Int64))
    rows = [outcome_row(request, model, cached_input_tokens=400, cost_usd=0.001)
            for request in "abc" for model in ("small", "big")]
    world.write_data(traffic, pl.DataFrame(rows, schema=OUTCOME_SCHEMA))
    world.prices.write_text(yaml.safe_dump({"models": {"big": [
        {"effective_from": dt.date(2026, 11, 1), "input": 10.0, "cached_input": 2.5, "output": 20.0}]}}))
    return world.scenario(policy={"rules": [{"when": "turn = 1", "use": "small"}], "default": {"use": "big"}})


def test_a_switched_session_shows_its_prompt_cache_loss_as_a_line_and_warns_of_what_it_cannot_bill(cli, world):
    scenario = _switching_world(world)
    result = cli("replay", scenario, "--json")
    assert result.code == 0, result.err
    [summary] = json.loads(result.out)
    assert summary["total_cost_usd"] == pytest.approx(0.009 + 0.001 + 0.012, abs=1e-15)
    lines = {row["model"]: row for row in summary["by_model"]}
    assert (lines["prompt-cache loss"]["calls"], lines["prompt-cache loss"]["call_cost_usd"]) == (1, 0.003)
    assert lines["big"]["call_cost_usd"] == 0.018 and lines["small"]["call_cost_usd"] == 0.001
    assert summary["provenance"]["price_sources"]["prompt-cache loss"] == "sheet"
    [warning] = [w for w in summary["warnings"] if w["kind"] == "cache_loss_unbilled"]
    assert "(small: 1)" in warning["message"]
    printed = cli("replay", scenario, "--wide")
    assert printed.code == 0, printed.err
    assert "Cache lost" in printed.out and "$0.00300" in printed.out


def test_a_checker_or_overhead_may_not_take_the_name_of_the_cache_loss_line(cli, world):
    path = world.scenario(policy={"default": {"use": "big"}, "overhead": {"name": "prompt-cache loss",
                                                                          "cost_usd": 0.001}})
    result = cli("replay", path)
    assert result.code == 2 and "prompt-cache loss line" in result.err, result.err


def _cache_state(called: list[tuple[int, str]], exposure: list[tuple[int, int, str, int]],
                 kept: list[int] | None) -> CacheState:
    return CacheState(
        kept=None if kept is None else pl.DataFrame({"rid": kept}, schema={"rid": pl.UInt32}),
        called=pl.DataFrame(called, schema={"rid": pl.UInt32, "model": pl.String}, orient="row"),
        exposure=pl.DataFrame(exposure, schema=EXPOSURE_SCHEMA, orient="row"), models=("large", "small"))


def test_a_call_loses_the_cache_only_when_its_replayed_previous_turn_called_no_model_of_its_own():
    # Turns: 1 follows 0, 2 follows 1, 4 follows 3. Turn 0 called small; 1 called large; 3 was left out.
    turns = pl.DataFrame({"rid": [1, 2, 4], "previous": [0, 1, 3]}, schema={"rid": pl.UInt32, "previous": pl.UInt32})
    state = _cache_state(called=[(0, "small"), (1, "large"), (2, "small"), (3, "small")],
                         exposure=[(0, 0, "small", 10), (1, 0, "large", 20), (1, 1, "small", 30), (2, 0, "small", 40),
                                   (4, 0, "large", 50)],
                         kept=[0, 1, 2, 4])
    found = lost(turns, state, state)
    # 1's large: 0 called only small (lost); 1's small: 0 called it (kept); 2's small: 1 called only large
    # (lost); 0 has no previous turn; 4's previous turn was left out (bills as logged)
    assert found.rows() == [(1, 0, "large", 20, 0), (2, 0, "small", 40, 1)]
    assert found.columns == ["rid", "seq", "model", "loss", "previous"]
    everyone = _cache_state(called=[(0, "small"), (1, "large"), (2, "small"), (3, "small")],
                            exposure=[(4, 0, "large", 50)], kept=None)
    assert lost(turns, everyone, everyone).rows() == [(4, 0, "large", 50, 3)]
    nothing = _cache_state(called=[], exposure=[], kept=None)
    empty = turns.clear()
    assert lost(empty, nothing, nothing).is_empty()
