"""Hand-worked tiny worlds: one behaviour each, 2-4 requests and 2 models, expected numbers worked out in
the comments and asserted as literals.

Token counts and prices are chosen so every call's cost is a short decimal that the spec's formula
((uncached * input + cached * cached_input + output * output_price) / 1_000_000 + per_request) hits
exactly in floats; where a total is not a short decimal in floats it is written as the sum it is.
Each test also checks that the reference replay (tests/reference.py) agrees with the engine, so the
parity test's reference is itself pinned to these hand-worked numbers.

The last section holds the engine disagreements the parity test found, each as its smallest world.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from simulator.core.engine import Replay
from simulator.core.errors import RoutesimError
from simulator.core.metrics import METRIC_NAMES
from simulator.core.prices import PriceSheet
from simulator.core.scenario import Scenario
from tests.reference import DECISION_KEYS, MissingOutcomes, Unpriceable, reference_replay
from tests.worlds import (
    outcome_frame,
    replay_frames,
    scenario_of,
    sheet_of,
    traffic_frame,
)

DAY = dt.datetime(2026, 3, 2)


def at(hours: float = 0, days: int = 0) -> dt.datetime:
    """A naive timestamp (the contract takes it as UTC) on 2026-03-02 plus days and hours."""
    return DAY + dt.timedelta(days=days, hours=hours)


@dataclass
class Tiny:
    scenario: Scenario
    traffic: pl.DataFrame
    outcomes: pl.DataFrame
    sheet: PriceSheet | None
    replay: Replay
    summary: dict

    @property
    def rows(self) -> dict[str, dict]:
        """Engine decisions by request_id."""
        return {row["request_id"]: row for row in self.replay.decisions.iter_rows(named=True)}

    def column(self, name: str) -> list:
        return self.replay.decisions[name].to_list()

    def assert_reference_agrees(self) -> None:
        decisions, summary = reference_replay(self.scenario, self.traffic, self.outcomes, self.sheet)
        engine = [{key: row[key] for key in DECISION_KEYS} for row in self.replay.decisions.iter_rows(named=True)]
        assert engine == decisions
        assert {name: self.summary[name] for name in METRIC_NAMES} == {name: summary[name] for name in METRIC_NAMES}


def run(tmp_path: Path, policy: dict, traffic: list[dict], outcomes: list[dict], sheet: dict | None = None,
        **settings) -> Tiny:
    scenario = scenario_of(policy, data=tmp_path, **settings)
    traffic_df, outcomes_df = traffic_frame(traffic), outcome_frame(outcomes)
    price_sheet = sheet_of(sheet) if sheet is not None else None
    result, summary = replay_frames(tmp_path, scenario, traffic_df, outcomes_df, price_sheet)
    return Tiny(scenario, traffic_df, outcomes_df, price_sheet, result, summary)


def reference(policy: dict, traffic: list[dict], outcomes: list[dict], sheet: dict | None = None,
              **settings) -> tuple[list[dict], dict]:
    """The reference replay of a tiny world (decisions, summary)."""
    return reference_replay(scenario_of(policy, **settings), traffic_frame(traffic), outcome_frame(outcomes),
                            sheet_of(sheet) if sheet is not None else None)


def req(request_id: str, ts: dt.datetime, slice: str = "faq", input_tokens: int = 1000, **extra) -> dict:
    return {"request_id": request_id, "ts": ts, "slice": slice, "input_tokens": input_tokens, **extra}


def ans(request_id: str, model: str, sample: int = 0, *, input_tokens: int = 1000, output_tokens: int = 100,
        latency_ms: float = 100.0, passed: bool = True, **extra) -> dict:
    return {"request_id": request_id, "model": model, "sample": sample, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "latency_ms": latency_ms, "passed": passed, **extra}


# Recorded costs are used wherever no sheet is given: small 0.001 and large 0.01 per call.
SMALL, LARGE = 0.001, 0.01
CASCADE = {"cascade": [{"model": "small", "accept": "confidence >= 0.7"}, {"model": "large"}]}


# --------------------------------------------------------------------------------------------------
# Pricing


def test_single_model_cost_from_sheet_with_cached_tokens(tmp_path):
    # small: input 2.0, cached_input 0.5, output 8.0 USD per million tokens.
    # r1: 2000 input of which 400 cached, 100 output:
    #     (1600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6 = (3200 + 200 + 800) / 1e6 = 0.0042
    # r2: 1000 input, cached null (counts as 0), 250 output:
    #     (1000 * 2.0 + 0 * 0.5 + 250 * 8.0) / 1e6 = 4000 / 1e6 = 0.004
    # The recorded cost_usd (0.5) is ignored: the sheet lists small.
    sheet = {"small": [{"effective_from": "2026-01-01", "input": 2.0, "cached_input": 0.5, "output": 8.0}],
             "large": [{"effective_from": "2026-01-01", "input": 10.0, "output": 30.0}]}
    tiny = run(tmp_path, {"default": {"use": "small"}},
               [req("r1", at(10)), req("r2", at(11))],
               [ans("r1", "small", input_tokens=2000, cached_input_tokens=400, output_tokens=100, cost_usd=0.5),
                ans("r2", "small", input_tokens=1000, output_tokens=250, cost_usd=0.5),
                ans("r1", "large"), ans("r2", "large")], sheet)
    assert tiny.column("cost_usd") == [0.0042, 0.004]
    assert tiny.summary["total_cost_usd"] == 0.0082  # exact: 8,200,000 nano-dollars
    assert tiny.replay.price_sources == {"small": "sheet"}
    tiny.assert_reference_agrees()


def test_price_change_mid_world_priced_at_each_request_ts(tmp_path):
    # small costs input 2.0 / output 8.0 until 2026-03-03 00:00 UTC, then input 1.0 / output 4.0 plus
    # 0.0005 per request. Every call: 1000 input, 100 output.
    # r1 at 03-02 23:59:59 (old): (1000 * 2.0 + 100 * 8.0) / 1e6 = 2800 / 1e6 = 0.0028
    # r2 at 03-03 00:00:00 (new, exactly at the change): (1000 * 1.0 + 100 * 4.0) / 1e6 + 0.0005 = 0.0019
    # r3 at 03-03 12:00 (new): 0.0019
    sheet = {"small": [{"effective_from": "2026-03-03", "input": 1.0, "output": 4.0, "per_request": 0.0005},
                       {"effective_from": "2026-02-01", "input": 2.0, "output": 8.0}]}
    tiny = run(tmp_path, {"default": {"use": "small"}},
               [req("r1", at(days=1) - dt.timedelta(seconds=1)), req("r2", at(days=1)), req("r3", at(12, days=1))],
               [*(ans(r, "small") for r in ("r1", "r2", "r3")), ans("r1", "large", cost_usd=LARGE)], sheet)
    assert tiny.column("request_id") == ["r1", "r2", "r3"]
    assert tiny.column("cost_usd") == [0.0028, 0.0019, 0.0019]
    assert tiny.summary["total_cost_usd"] == 0.0066
    tiny.assert_reference_agrees()


def test_recorded_cost_used_for_model_not_in_sheet(tmp_path):
    # The sheet lists only small. Legal requests go to large, which is priced by its recorded cost_usd.
    # r1 (faq, small):  (1000 * 2.0 + 100 * 8.0) / 1e6 = 0.0028 (its recorded 0.9 is ignored)
    # r2 (legal, large): recorded 0.025
    sheet = {"small": [{"effective_from": "2026-01-01", "input": 2.0, "output": 8.0}]}
    tiny = run(tmp_path, {"rules": [{"when": "slice = 'legal'", "use": "large"}], "default": {"use": "small"}},
               [req("r1", at(1)), req("r2", at(2), slice="legal")],
               [ans("r1", "small", cost_usd=0.9), ans("r2", "small", cost_usd=0.9),
                ans("r1", "large", cost_usd=0.7), ans("r2", "large", cost_usd=0.025)], sheet)
    assert tiny.column("final_model") == ["small", "large"]
    assert tiny.column("cost_usd") == [0.0028, 0.025]
    assert tiny.replay.price_sources == {"large": "recorded", "small": "sheet"}
    assert tiny.replay.calls["price_source"].to_list() == ["sheet", "recorded"]
    tiny.assert_reference_agrees()


# --------------------------------------------------------------------------------------------------
# Cascades


def test_cascade_escalates_on_low_confidence_and_pays_for_both_calls(tmp_path):
    # small -> large when confidence < 0.7 (NULL confidence: the accept predicate is NULL, i.e. false).
    # small: 0.001 and 400 ms per call; large: 0.01 and 1500 ms.
    # r1 conf 0.9  -> small only: 0.001, 400 ms
    # r2 conf 0.4  -> small, large: 0.0 + 0.001 + 0.01 = 0.011, 400 + 1500 = 1900 ms
    # r3 conf 0.7  -> accepted (>=): 0.001, 400 ms
    # r4 conf NULL -> small, large: 0.011, 1900 ms
    traffic = [req(f"r{i}", at(i)) for i in range(1, 5)]
    outcomes = [ans(f"r{i}", "small", confidence=c, cost_usd=SMALL, latency_ms=400.0)
                for i, c in zip(range(1, 5), (0.9, 0.4, 0.7, None), strict=True)]
    outcomes += [ans(f"r{i}", "large", cost_usd=LARGE, latency_ms=1500.0) for i in range(1, 5)]
    tiny = run(tmp_path, {"default": CASCADE}, traffic, outcomes)
    assert tiny.column("models_called") == [["small"], ["small", "large"], ["small"], ["small", "large"]]
    assert tiny.column("final_model") == ["small", "large", "small", "large"]
    assert tiny.column("steps_taken") == [1, 2, 1, 2]
    assert tiny.column("escalated") == [False, True, False, True]
    assert tiny.column("cost_usd") == [0.001, 0.011, 0.001, 0.011]
    assert tiny.column("latency_ms") == [400.0, 1900.0, 400.0, 1900.0]
    # Latency percentiles, linear between order statistics of [400, 400, 1900, 1900]:
    # p50 at rank 1.5 -> 400 + 0.5 * 1500 = 1150; p95 at rank 2.85 -> 1900.
    assert tiny.summary["latency_p50_ms"] == 1150.0
    assert tiny.summary["latency_p95_ms"] == 1900.0
    assert tiny.summary["escalation_rate"] == 0.5
    tiny.assert_reference_agrees()


def test_cascade_escalates_when_hard_check_fails_even_if_confident(tmp_path):
    # Both small answers are confident (0.95); r1's hard check failed, so it goes on to large.
    # r1: small + large = 0.0 + 0.001 + 0.01 = 0.011; r2: small only, 0.001.
    tiny = run(tmp_path, {"default": CASCADE},
               [req("r1", at(1)), req("r2", at(2))],
               [ans("r1", "small", confidence=0.95, hard_check_ok=False, cost_usd=SMALL),
                ans("r2", "small", confidence=0.95, hard_check_ok=True, cost_usd=SMALL),
                ans("r1", "large", cost_usd=LARGE), ans("r2", "large", cost_usd=LARGE)])
    assert tiny.column("final_model") == ["large", "small"]
    assert tiny.column("escalated") == [True, False]
    assert tiny.column("cost_usd") == [0.011, 0.001]
    tiny.assert_reference_agrees()


# --------------------------------------------------------------------------------------------------
# Rules


def test_first_matching_rule_wins(tmp_path):
    # Rule 1 (named) sends faq to small; rule 2 (unnamed, labelled "rule 2") sends pro to large;
    # the default sends the rest to small.
    # r1 faq + pro -> both rules match, the first wins: small, plan "faq to small"
    # r2 billing + pro -> rule 2: large; r3 billing + free -> default: small
    policy = {"rules": [{"name": "faq to small", "when": "slice = 'faq'", "use": "small"},
                        {"when": "tier = 'pro'", "use": "large"}],
              "default": {"use": "small"}}
    tiny = run(tmp_path, policy,
               [req("r1", at(1), tier="pro"), req("r2", at(2), slice="billing", tier="pro"),
                req("r3", at(3), slice="billing", tier="free")],
               [ans(r, m, cost_usd=c) for r in ("r1", "r2", "r3") for m, c in (("small", SMALL), ("large", LARGE))])
    assert tiny.column("plan") == ["faq to small", "rule 2", "default"]
    assert tiny.column("final_model") == ["small", "large", "small"]
    assert tiny.column("cost_usd") == [0.001, 0.01, 0.001]
    tiny.assert_reference_agrees()


# --------------------------------------------------------------------------------------------------
# Retries


def test_retry_on_failed_hard_check_to_stronger_model(tmp_path):
    # small for everything; a failed hard check is resent to large once.
    # r1: small fails its hard check -> retry to large (ok): 1 attempt, final large,
    #     cost 0.0 + 0.001 + 0.01 = 0.011, latency 400 + 1500 = 1900 ms; not "escalated" (one plan step)
    # r2: small ok -> no retry: 0.001, 400 ms
    tiny = run(tmp_path, {"default": {"use": "small"}, "retry": {"when": "NOT hard_check_ok", "to": ["large"]}},
               [req("r1", at(1)), req("r2", at(2))],
               [ans("r1", "small", hard_check_ok=False, cost_usd=SMALL, latency_ms=400.0),
                ans("r2", "small", cost_usd=SMALL, latency_ms=400.0),
                ans("r1", "large", cost_usd=LARGE, latency_ms=1500.0),
                ans("r2", "large", cost_usd=LARGE, latency_ms=1500.0)])
    assert tiny.column("models_called") == [["small", "large"], ["small"]]
    assert tiny.column("final_model") == ["large", "small"]
    assert tiny.column("retry_attempts") == [1, 0]
    assert tiny.column("retry_exhausted") == [False, False]
    assert tiny.column("escalated") == [False, False]
    assert tiny.column("cost_usd") == [0.011, 0.001]
    assert tiny.column("latency_ms") == [1900.0, 400.0]
    assert tiny.summary["retry_rate"] == 0.5
    assert tiny.replay.calls.filter(pl.col("kind") == "retry").select("rid", "seq", "model").rows() == [(0, 1, "large")]
    tiny.assert_reference_agrees()


def test_retry_to_already_called_model_uses_sample_1_or_is_skipped(tmp_path):
    # Retry to small, which the plan already called once: the retry uses small's sample 1.
    # r1: small#0 fails its hard check, small#1 is ok -> 1 attempt, final_sample 1, cost 0.001 + 0.002
    # r2: small#0 fails, there is no small#1 -> the target is skipped: 0 attempts, still failing,
    #     retry_exhausted; cost 0.001
    tiny = run(tmp_path, {"default": {"use": "small"}, "retry": {"when": "NOT hard_check_ok", "to": ["small"]}},
               [req("r1", at(1)), req("r2", at(2))],
               [ans("r1", "small", 0, hard_check_ok=False, cost_usd=0.001),
                ans("r1", "small", 1, hard_check_ok=True, cost_usd=0.002),
                ans("r2", "small", 0, hard_check_ok=False, cost_usd=0.001),
                ans("r1", "large", cost_usd=LARGE), ans("r2", "large", cost_usd=LARGE)])
    assert tiny.column("models_called") == [["small", "small"], ["small"]]
    assert tiny.column("final_sample") == [1, 0]
    assert tiny.column("retry_attempts") == [1, 0]
    assert tiny.column("retry_exhausted") == [False, True]
    assert tiny.column("cost_usd") == [0.003, 0.001]
    assert tiny.summary["retry_exhausted"] == 1
    assert tiny.summary["retry_rate"] == 0.5
    tiny.assert_reference_agrees()


def test_max_attempts_caps_retry_attempts(tmp_path):
    # Retry to [large, large]: large#0 fails its hard check too, large#1 would pass.
    # With max_attempts 1 only large#0 is tried: 1 attempt, exhausted, cost 0.001 + 0.01 = 0.011.
    # Without max_attempts (default: len(to) = 2) large#1 is tried as well: 2 attempts, final_sample 1,
    # cost 0.0 + 0.001 + 0.01 + 0.02.
    traffic = [req("r1", at(1)), req("r2", at(2))]
    outcomes = [ans("r1", "small", hard_check_ok=False, cost_usd=SMALL),
                ans("r1", "large", 0, hard_check_ok=False, cost_usd=LARGE),
                ans("r1", "large", 1, hard_check_ok=True, cost_usd=0.02),
                ans("r2", "small", cost_usd=SMALL), ans("r2", "large", cost_usd=LARGE)]
    retry = {"when": "NOT hard_check_ok", "to": ["large", "large"]}
    capped = run(tmp_path / "capped", {"default": {"use": "small"}, "retry": {**retry, "max_attempts": 1}},
                 traffic, outcomes)
    assert capped.column("retry_attempts") == [1, 0]
    assert capped.column("models_called") == [["small", "large"], ["small"]]
    assert capped.column("final_sample") == [0, 0]
    assert capped.column("retry_exhausted") == [True, False]
    assert capped.column("cost_usd") == [0.011, 0.001]
    assert capped.summary["retry_exhausted"] == 1
    capped.assert_reference_agrees()

    uncapped = run(tmp_path / "uncapped", {"default": {"use": "small"}, "retry": retry}, traffic, outcomes)
    assert uncapped.column("retry_attempts") == [2, 0]
    assert uncapped.column("models_called") == [["small", "large", "large"], ["small"]]
    assert uncapped.column("retry_exhausted") == [False, False]
    assert uncapped.column("cost_usd") == [0.031, 0.001]
    uncapped.assert_reference_agrees()


# --------------------------------------------------------------------------------------------------
# Checkers


def test_checker_adds_cost_and_latency_to_each_gated_call(tmp_path):
    # small's step is gated by the checker "judge" (0.0005 USD, 120 ms per checked call).
    # r1: checker_score 0.8 -> accepted: cost 0.001 + 0.0005 = 0.0015, latency 400 + 120 = 520 ms
    # r2: checker_score 0.2 -> escalates: (0.001 + 0.0005) + 0.01 = 0.0115, 520 + 1500 = 2020 ms
    # The judge appears in the calls as its own model, once per checked call: 2 calls, 0.001 USD.
    policy = {"default": {"cascade": [
        {"model": "small", "accept": "checker_score >= 0.5",
         "checker": {"name": "judge", "cost_usd": 0.0005, "latency_ms": 120}},
        {"model": "large"}]}}
    tiny = run(tmp_path, policy, [req("r1", at(1)), req("r2", at(2))],
               [ans("r1", "small", checker_score=0.8, cost_usd=SMALL, latency_ms=400.0),
                ans("r2", "small", checker_score=0.2, cost_usd=SMALL, latency_ms=400.0),
                ans("r1", "large", cost_usd=LARGE, latency_ms=1500.0),
                ans("r2", "large", cost_usd=LARGE, latency_ms=1500.0)])
    assert tiny.column("cost_usd") == [0.0015, 0.0115]
    assert tiny.column("latency_ms") == [520.0, 2020.0]
    assert tiny.column("models_called") == [["small"], ["small", "large"]]  # the checker is not a model call
    calls = tiny.replay.calls.select("rid", "model", "kind", "cost_usd", "latency_ms").rows()
    assert calls == [(0, "small", "step", 0.001, 400.0), (0, "judge", "checker", 0.0005, 120.0),
                     (1, "small", "step", 0.001, 400.0), (1, "judge", "checker", 0.0005, 120.0),
                     (1, "large", "step", 0.01, 1500.0)]
    assert tiny.replay.price_sources == {"judge": "checker", "large": "recorded", "small": "recorded"}
    judge = next(row for row in tiny.summary["by_model"] if row["model"] == "judge")
    assert (judge["calls"], judge["call_cost_usd"], judge["price_source"]) == (2, 0.001, "checker")
    tiny.assert_reference_agrees()


# --------------------------------------------------------------------------------------------------
# Missing outcomes


MISSING_WORLD = {
    "policy": {"default": CASCADE},
    "traffic": [req("r1", at(1)), req("r2", at(2)), req("r3", at(3))],
    # r1 is accepted by small; r2 and r3 escalate; r3 has no large outcome.
    "outcomes": [ans("r1", "small", confidence=0.9, cost_usd=SMALL),
                 ans("r2", "small", confidence=0.1, cost_usd=SMALL),
                 ans("r3", "small", confidence=0.1, cost_usd=SMALL),
                 ans("r1", "large", cost_usd=LARGE), ans("r2", "large", cost_usd=LARGE)],
}


def test_missing_outcome_raises_with_count_per_model(tmp_path):
    with pytest.raises(RoutesimError, match=r"requests per model: large: 1;"):
        run(tmp_path, **MISSING_WORLD)
    with pytest.raises(MissingOutcomes) as missing:
        reference(**MISSING_WORLD)
    assert missing.value.by_model == {"large": 1}


def test_missing_outcome_skipped_and_reported_in_coverage(tmp_path):
    # on_missing: skip -> r3 is left out; coverage: 2 of the 3 requests, large missing for 1.
    # Its small call is not in the calls either: r1 0.001, r2 0.011 -> total 0.001 + 0.011.
    tiny = run(tmp_path, **MISSING_WORLD, on_missing="skip")
    assert tiny.column("request_id") == ["r1", "r2"]
    coverage = tiny.replay.coverage
    assert (coverage.requests_in_window, coverage.requests_replayed) == (3, 2)
    assert coverage.missing_by_model == {"large": 1}
    assert coverage.share == 2 / 3
    assert tiny.summary["requests"] == 2
    assert tiny.summary["total_cost_usd"] == 0.001 + 0.011
    assert tiny.replay.calls["rid"].unique().sort().to_list() == [0, 1]
    tiny.assert_reference_agrees()


# --------------------------------------------------------------------------------------------------
# Metrics and selection


def test_escalation_rate_counts_only_multi_step_requests(tmp_path):
    # faq goes to small alone (one step); the rest to the small -> large cascade.
    # r1, r2 faq: single-step; r3 billing conf 0.9: stays; r4 billing conf 0.2: escalates.
    # escalation_rate = 1 escalated / 2 multi-step requests = 0.5 (not 1 / 4).
    policy = {"rules": [{"when": "slice = 'faq'", "use": "small"}], "default": CASCADE}
    tiny = run(tmp_path, policy,
               [req("r1", at(1)), req("r2", at(2)), req("r3", at(3), slice="billing"),
                req("r4", at(4), slice="billing")],
               [*(ans(f"r{i}", "small", confidence=c, cost_usd=SMALL)
                  for i, c in zip(range(1, 5), (0.1, 0.1, 0.9, 0.2), strict=True)),
                *(ans(f"r{i}", "large", cost_usd=LARGE) for i in range(1, 5))])
    assert tiny.column("multi_step") == [False, False, True, True]
    assert tiny.column("escalated") == [False, False, False, True]
    assert tiny.summary["escalation_rate"] == 0.5
    tiny.assert_reference_agrees()


def test_window_excludes_requests_outside_start_end(tmp_path):
    # Window [2026-03-02, 2026-03-03) at 00:00 UTC: 03-01 23:59:59 and 03-03 00:00:00 are out,
    # 03-02 00:00:00 (the start itself) and 03-02 23:59:59 are in.
    second = dt.timedelta(seconds=1)
    tiny = run(tmp_path, {"default": {"use": "small"}},
               [req("r1", at() - second), req("r2", at()), req("r3", at(days=1) - second), req("r4", at(days=1))],
               [ans(f"r{i}", m, cost_usd=SMALL) for i in range(1, 5) for m in ("small", "large")],
               window={"start": "2026-03-02", "end": "2026-03-03"})
    assert tiny.column("request_id") == ["r2", "r3"]
    assert tiny.replay.coverage.requests_in_window == 2
    assert tiny.summary["requests"] == 2
    tiny.assert_reference_agrees()


def test_passed_requires_passed_and_hard_check_ok(tmp_path):
    # r1 passed but its hard check failed -> not passed; r2 both -> passed; r3 hard check ok, not passed.
    # pass_rate = 1 / 3.
    tiny = run(tmp_path, {"default": {"use": "small"}},
               [req("r1", at(1)), req("r2", at(2)), req("r3", at(3))],
               [ans("r1", "small", passed=True, hard_check_ok=False, cost_usd=SMALL),
                ans("r2", "small", passed=True, hard_check_ok=True, cost_usd=SMALL),
                ans("r3", "small", passed=False, hard_check_ok=True, cost_usd=SMALL),
                *(ans(f"r{i}", "large", cost_usd=LARGE) for i in range(1, 4))])
    assert tiny.column("passed") == [False, True, False]
    assert tiny.column("hard_check_ok") == [False, True, True]
    assert tiny.summary["pass_rate"] == 1 / 3
    tiny.assert_reference_agrees()


# --------------------------------------------------------------------------------------------------
# Engine disagreements found by the parity test (each its smallest world; these fail until fixed)


# r1 logged 1000 prompt tokens; small was billed 2000 (the outcome's input_tokens: its own tokenizer).
# A rule that reads the traffic's input_tokens must not change which input_tokens the answer has.
SHADOW_SHEET = {"small": [{"effective_from": "2026-01-01", "input": 1.0, "output": 0.0}]}
SHADOW_TRAFFIC = [req("r1", at(1), input_tokens=1000)]
SHADOW_OUTCOMES = [ans("r1", "small", input_tokens=2000, output_tokens=0),
                   ans("r1", "large", input_tokens=2000, output_tokens=0, cost_usd=LARGE)]


def test_rule_reading_input_tokens_does_not_change_billed_tokens(tmp_path):
    # small costs input 1.0 per million: 2000 * 1.0 / 1e6 = 0.002, with or without a rule that reads
    # input_tokens (and routes exactly like the default). The engine prices the ruled replay at the
    # traffic's 1000 tokens: 0.001.
    ruled_policy = {"rules": [{"when": "input_tokens >= 0", "use": "small"}], "default": {"use": "small"}}
    expected, _ = reference(ruled_policy, SHADOW_TRAFFIC, SHADOW_OUTCOMES, SHADOW_SHEET)
    assert [row["cost_usd"] for row in expected] == [0.002]
    plain = run(tmp_path / "plain", {"default": {"use": "small"}}, SHADOW_TRAFFIC, SHADOW_OUTCOMES, SHADOW_SHEET)
    assert plain.column("cost_usd") == [0.002]
    ruled = run(tmp_path / "ruled", ruled_policy, SHADOW_TRAFFIC, SHADOW_OUTCOMES, SHADOW_SHEET)
    assert ruled.column("cost_usd") == [0.002]


def test_rule_reading_input_tokens_does_not_change_what_accept_reads(tmp_path):
    # small's answer has input_tokens 2000, so "input_tokens >= 1500" accepts it: final small.
    # With a rule reading input_tokens, the engine's accept reads the traffic's 1000 and escalates.
    plan = {"cascade": [{"model": "small", "accept": "input_tokens >= 1500"}, {"model": "large"}]}
    ruled_policy = {"rules": [{"when": "input_tokens >= 0", **plan}], "default": plan}
    expected, _ = reference(ruled_policy, SHADOW_TRAFFIC, SHADOW_OUTCOMES, SHADOW_SHEET)
    assert [row["final_model"] for row in expected] == ["small"]
    plain = run(tmp_path / "plain", {"default": plan}, SHADOW_TRAFFIC, SHADOW_OUTCOMES, SHADOW_SHEET)
    assert plain.column("final_model") == ["small"]
    ruled = run(tmp_path / "ruled", ruled_policy, SHADOW_TRAFFIC, SHADOW_OUTCOMES, SHADOW_SHEET)
    assert ruled.column("final_model") == ["small"]


def test_sheet_price_does_not_depend_on_how_many_calls_are_priced_together(tmp_path):
    # small: input 0.4 per million. Each of the 3 requests: 1000 input tokens, no output.
    # Spec: (1000 * 0.4) / 1_000_000 = 400.0 / 1e6 = 0.0004 exactly (an IEEE division).
    # Priced alone (a window holding only r1) the engine gets 0.0004; priced in one batch with the
    # other two it gets 0.00039999999999999996 = 400.0 * (1 / 1e6) for each of them.
    sheet = {"small": [{"effective_from": "2026-01-01", "input": 0.4, "output": 0.0}]}
    traffic = [req("r1", at(1)), req("r2", at(25)), req("r3", at(26))]
    outcomes = [ans(r, m, input_tokens=1000, output_tokens=0, cost_usd=LARGE)
                for r in ("r1", "r2", "r3") for m in ("small", "large")]
    expected, _ = reference({"default": {"use": "small"}}, traffic, outcomes, sheet)
    assert [row["cost_usd"] for row in expected] == [0.0004, 0.0004, 0.0004]
    alone = run(tmp_path / "alone", {"default": {"use": "small"}}, traffic, outcomes, sheet,
                window={"start": "2026-03-02", "end": "2026-03-03"})
    assert alone.column("cost_usd") == [0.0004]
    together = run(tmp_path / "together", {"default": {"use": "small"}}, traffic, outcomes, sheet)
    assert together.column("cost_usd") == [0.0004, 0.0004, 0.0004]


def test_cascade_sample_that_no_request_has_is_reported_missing(tmp_path):
    # small -> small: the second step needs small's sample 1, which no request has. r1 is accepted at
    # step 1; r2 escalates and is missing small#1. With on_missing: skip, r1 is replayed and coverage
    # reports small: 1 (with error: RoutesimError naming small: 1), not a polars ColumnNotFoundError.
    policy = {"default": {"cascade": [{"model": "small", "accept": "confidence >= 0.7"}, {"model": "small"}]}}
    traffic = [req("r1", at(1)), req("r2", at(2))]
    outcomes = [ans("r1", "small", confidence=0.9, cost_usd=SMALL), ans("r2", "small", confidence=0.1, cost_usd=SMALL),
                ans("r1", "large", cost_usd=LARGE)]
    expected, summary = reference(policy, traffic, outcomes, on_missing="skip")
    assert [row["request_id"] for row in expected] == ["r1"]
    assert summary["coverage"].missing_by_model == {"small": 1}
    tiny = run(tmp_path, policy, traffic, outcomes, on_missing="skip")
    assert tiny.column("request_id") == ["r1"]
    assert tiny.replay.coverage.missing_by_model == {"small": 1}


def test_retry_target_whose_next_sample_no_request_has_is_skipped(tmp_path):
    # Retry to small after small answered: small#1 does not exist for any request, so the target is
    # skipped (no attempt) and r1 is left failing: retry_exhausted, cost 0.001 (a polars
    # ColumnNotFoundError instead).
    policy = {"default": {"use": "small"}, "retry": {"when": "NOT hard_check_ok", "to": ["small"]}}
    traffic = [req("r1", at(1)), req("r2", at(2))]
    outcomes = [ans("r1", "small", hard_check_ok=False, cost_usd=SMALL), ans("r2", "small", cost_usd=SMALL),
                ans("r1", "large", cost_usd=LARGE)]
    expected, _ = reference(policy, traffic, outcomes)
    assert [(row["retry_attempts"], row["retry_exhausted"], row["cost_usd"]) for row in expected] == [
        (0, True, 0.001), (0, False, 0.001)]
    tiny = run(tmp_path, policy, traffic, outcomes)
    assert tiny.column("retry_attempts") == [0, 0]
    assert tiny.column("retry_exhausted") == [True, False]
    assert tiny.column("cost_usd") == [0.001, 0.001]


def test_cost_usd_in_a_predicate_reads_the_recorded_cost(tmp_path):
    # The spec evaluates accept/retry predicates on the outcome row, where cost_usd is "the cost recorded
    # when the call ran". r1's small answer recorded 0.5, so "cost_usd < 0.01" fails and r1 escalates;
    # r2's recorded 0.0001 passes. The sheet prices both small calls at 2000 * 1.0 / 1e6 = 0.002, and the
    # engine's predicate reads that sheet price instead, so neither escalates.
    # (A spec question as much as a bug: if predicates are meant to see the sheet price, the spec and
    # the reference should say so.)
    sheet = {"small": [{"effective_from": "2026-01-01", "input": 1.0, "output": 0.0}]}
    policy = {"default": {"cascade": [{"model": "small", "accept": "cost_usd < 0.01"}, {"model": "large"}]}}
    traffic = [req("r1", at(1)), req("r2", at(2))]
    outcomes = [ans("r1", "small", input_tokens=2000, output_tokens=0, cost_usd=0.5),
                ans("r2", "small", input_tokens=2000, output_tokens=0, cost_usd=0.0001),
                ans("r1", "large", cost_usd=LARGE), ans("r2", "large", cost_usd=LARGE)]
    expected, _ = reference(policy, traffic, outcomes, sheet)
    assert [row["models_called"] for row in expected] == [["small", "large"], ["small"]]
    tiny = run(tmp_path, policy, traffic, outcomes, sheet)
    assert tiny.column("models_called") == [["small", "large"], ["small"]]


# --------------------------------------------------------------------------------------------------
# Router overhead


def test_policy_overhead_is_paid_by_every_request_and_shown_under_its_name(tmp_path):
    # A fixed router: $0.0002 and 30 ms per request. r1 small accepted (0.001), r2 escalated (0.011).
    # Costs 0.0002 + 0.001 = 0.0012 and 0.0002 + 0.011 = 0.0112; latency 130 and 30 + 100 + 100 = 230 ms.
    tiny = run(tmp_path, {"default": CASCADE, "overhead": {"name": "router", "cost_usd": 0.0002, "latency_ms": 30}},
               [req("r1", at(10)), req("r2", at(11))],
               [ans("r1", "small", confidence=0.9, cost_usd=SMALL), ans("r2", "small", confidence=0.2, cost_usd=SMALL),
                ans("r1", "large", cost_usd=LARGE), ans("r2", "large", cost_usd=LARGE)])
    assert tiny.column("cost_usd") == [0.0012, 0.0112]
    assert tiny.column("latency_ms") == [130.0, 230.0]
    assert tiny.column("models_called") == [["small"], ["small", "large"]]
    router = next(row for row in tiny.summary["by_model"] if row["model"] == "router")
    assert (router["calls"], router["call_cost_usd"], router["price_source"]) == (2, 0.0004, "fixed")
    tiny.assert_reference_agrees()


def test_classifier_overhead_is_priced_from_the_request_tokens(tmp_path):
    # The classifier is priced as 'tiny-clf' in the sheet: input 0.1, output 0.4 USD per million tokens.
    # r1 has 3,000 input tokens, r2 500; it writes 2 tokens: (3000 * 0.1 + 2 * 0.4) / 1e6 = 0.0003008 and
    # (500 * 0.1 + 2 * 0.4) / 1e6 = 0.0000508, plus its fixed $0.0001. small costs its recorded 0.001.
    sheet = {"tiny-clf": [{"effective_from": "2026-01-01", "input": 0.1, "output": 0.4}]}
    tiny = run(tmp_path, {"default": {"use": "small"},
                          "overhead": {"name": "classifier", "model": "tiny-clf", "output_tokens": 2, "cost_usd": 0.0001}},
               [req("r1", at(10), input_tokens=3000), req("r2", at(11), input_tokens=500)],
               [ans("r1", "small", cost_usd=SMALL), ans("r2", "small", cost_usd=SMALL)], sheet)
    assert tiny.column("cost_nano_usd") == [300_800 + 100_000 + 1_000_000, 50_800 + 100_000 + 1_000_000]
    assert tiny.replay.price_sources == {"classifier": "sheet", "small": "recorded"}
    tiny.assert_reference_agrees()


def test_rule_overhead_is_paid_by_the_requests_the_rule_is_evaluated_for(tmp_path):
    # Rule 1 (free tier -> small) stands for a $0.0005 classifier; rule 2 (long inputs -> large) for a
    # $0.0003 one. r1 (free) matches rule 1 and pays 0.0005; r2 (pro, long) reaches rule 2 and pays both;
    # r3 (pro, short) reaches the default after both rules and pays both.
    policy = {"rules": [{"when": "tier = 'free'", "use": "small", "overhead": {"name": "tier-clf", "cost_usd": 0.0005}},
                        {"when": "input_tokens > 2000", "use": "large",
                         "overhead": {"name": "length-clf", "cost_usd": 0.0003}}],
              "default": {"use": "small"}}
    tiny = run(tmp_path, policy,
               [req("r1", at(10), tier="free"), req("r2", at(11), input_tokens=3000, tier="pro"),
                req("r3", at(12), tier="pro")],
               [ans(r, m, cost_usd=c) for r in ("r1", "r2", "r3") for m, c in (("small", SMALL), ("large", LARGE))])
    assert tiny.column("cost_nano_usd") == [500_000 + 1_000_000, 800_000 + 10_000_000, 800_000 + 1_000_000]
    calls = tiny.replay.calls.filter(pl.col("kind") == "router")
    assert calls.group_by("model").len().sort("model").rows() == [("length-clf", 2), ("tier-clf", 3)]
    tiny.assert_reference_agrees()


def test_an_unpriced_classifier_is_an_error_in_both(tmp_path):
    policy = {"default": {"use": "small"}, "overhead": {"model": "nowhere"}}
    traffic, outcomes = [req("r1", at(10))], [ans("r1", "small", cost_usd=SMALL)]
    with pytest.raises(RoutesimError, match="cannot be priced"):
        run(tmp_path, policy, traffic, outcomes)
    with pytest.raises(Unpriceable):
        reference(policy, traffic, outcomes)


# --------------------------------------------------------------------------------------------------
# Best-of-n: samples of one model at once


def _three_samples(request_id: str, confidence, checker, hard=(True, True, True), latency=(100.0, 300.0, 200.0),
                   passed=(False, True, True)) -> list[dict]:
    return [ans(request_id, "small", sample, confidence=confidence[sample], checker_score=checker[sample],
                hard_check_ok=hard[sample], latency_ms=latency[sample], passed=passed[sample], cost_usd=SMALL)
            for sample in range(3)]


def test_best_of_n_keeps_the_highest_and_bills_every_sample_at_the_slowest_latency(tmp_path):
    # r1: confidences 0.4, 0.9, 0.9: sample 1 is kept (the tie goes to the earlier sample). Three calls
    # of small: 3 x 0.001; they run at once, so the latency is the slowest, 300 ms. A null confidence
    # counts lowest: r2 keeps sample 2 (0.3 beats null and 0.1).
    policy = {"default": {"cascade": [{"model": "small", "samples": 3, "select": {"highest": "confidence"}}]}}
    tiny = run(tmp_path, policy, [req("r1", at(10)), req("r2", at(11))],
               _three_samples("r1", (0.4, 0.9, 0.9), (None,) * 3)
               + _three_samples("r2", (None, 0.1, 0.3), (None,) * 3, passed=(True, True, False)))
    assert tiny.column("final_sample") == [1, 2]
    assert tiny.column("cost_usd") == [0.003, 0.003] and tiny.column("latency_ms") == [300.0, 300.0]
    assert tiny.column("models_called") == [["small"] * 3, ["small"] * 3]
    assert tiny.column("passed") == [True, False]
    tiny.assert_reference_agrees()


def test_best_of_n_first_passing_then_escalation_reads_the_kept_answer(tmp_path):
    # select the first sample whose hard check passes with checker_score >= 0.8: r1's sample 1 scores 0.9
    # but fails its hard check, so sample 2 (0.85) is kept; its confidence 0.9 is accepted. r2 has no such
    # sample: the last is kept (confidence 0.2), so r2 escalates to large, whose sample 0 answers.
    policy = {"default": {"cascade": [
        {"model": "small", "samples": 3, "select": {"first": "checker_score >= 0.8"}, "accept": "confidence >= 0.7"},
        {"model": "large"}]}}
    tiny = run(tmp_path, policy, [req("r1", at(10)), req("r2", at(11))],
               _three_samples("r1", (0.1, 0.9, 0.9), (0.5, 0.9, 0.85), hard=(True, False, True))
               + _three_samples("r2", (0.9, 0.9, 0.2), (0.1, 0.2, 0.3))
               + [ans(r, "large", cost_usd=LARGE, latency_ms=1000.0) for r in ("r1", "r2")])
    assert tiny.column("final_model") == ["small", "large"] and tiny.column("final_sample") == [2, 0]
    assert tiny.column("latency_ms") == [300.0, 1300.0]
    assert tiny.column("cost_nano_usd") == [3_000_000, 13_000_000]
    tiny.assert_reference_agrees()


def test_best_of_n_missing_a_sample_skips_the_request(tmp_path):
    policy = {"default": {"cascade": [{"model": "small", "samples": 3, "select": {"highest": "confidence"}}]}}
    outcomes = (_three_samples("r1", (0.4, 0.9, 0.9), (None,) * 3)
                + _three_samples("r2", (0.4, 0.9, 0.9), (None,) * 3)[:2])
    tiny = run(tmp_path, policy, [req("r1", at(10)), req("r2", at(11))], outcomes, on_missing="skip")
    assert tiny.column("request_id") == ["r1"]
    assert tiny.replay.coverage.missing_by_model == {"small": 1}
    tiny.assert_reference_agrees()


# --------------------------------------------------------------------------------------------------
# Fan-out and race: several models called at once


def test_fan_out_keeps_the_highest_column_bills_every_call_and_waits_for_the_slowest(tmp_path):
    # parallel [small, large], keep the higher checker_score. r1: small 0.9 (400 ms), large 0.6 (1000 ms):
    # small's answer is kept, yet both are billed (0.001 + 0.01) and the step lasts as long as the slowest,
    # 1000 ms. r2: small's checker_score is null (lowest), so large (0.5) is kept.
    policy = {"default": {"cascade": [{"parallel": ["small", "large"], "select": {"highest": "checker_score"}}]}}
    tiny = run(tmp_path, policy, [req("r1", at(10)), req("r2", at(11))],
               [ans("r1", "small", checker_score=0.9, latency_ms=400.0, cost_usd=SMALL),
                ans("r1", "large", checker_score=0.6, latency_ms=1000.0, cost_usd=LARGE, passed=False),
                ans("r2", "small", checker_score=None, latency_ms=50.0, cost_usd=SMALL, passed=False),
                ans("r2", "large", checker_score=0.5, latency_ms=700.0, cost_usd=LARGE)])
    assert tiny.column("final_model") == ["small", "large"]
    assert tiny.column("cost_nano_usd") == [11_000_000, 11_000_000]
    assert tiny.column("latency_ms") == [1000.0, 700.0]
    assert tiny.column("models_called") == [["small", "large"], ["small", "large"]]
    assert tiny.column("passed") == [True, True]
    tiny.assert_reference_agrees()


def test_fan_out_first_passing_in_list_order_else_the_last(tmp_path):
    # parallel [small, large, small]: small is listed twice, so the third call reads small's sample 1.
    # Keep the first, in list order, whose hard check passes and confidence >= 0.8. r1: small sample 0 has
    # 0.5, large 0.9: large is kept. r2: none reaches 0.8: the last listed call (small, sample 1) is kept.
    # Cost: 0.001 + 0.01 + 0.001 = 0.012 each; latency: the slowest of 100, 900, 300 = 900 ms.
    policy = {"default": {"cascade": [{"parallel": ["small", "large", "small"],
                                       "select": {"first": "confidence >= 0.8"}}]}}
    rows = []
    for request_id, confidences in (("r1", (0.5, 0.9, 0.95)), ("r2", (0.1, 0.2, 0.3))):
        rows += [ans(request_id, "small", 0, confidence=confidences[0], latency_ms=100.0, cost_usd=SMALL),
                 ans(request_id, "large", 0, confidence=confidences[1], latency_ms=900.0, cost_usd=LARGE),
                 ans(request_id, "small", 1, confidence=confidences[2], latency_ms=300.0, cost_usd=SMALL)]
    tiny = run(tmp_path, policy, [req("r1", at(10)), req("r2", at(11))], rows)
    assert tiny.column("final_model") == ["large", "small"] and tiny.column("final_sample") == [0, 1]
    assert tiny.column("cost_nano_usd") == [12_000_000, 12_000_000]
    assert tiny.column("latency_ms") == [900.0, 900.0]
    tiny.assert_reference_agrees()


def test_race_first_passing_answer_in_latency_order_wins_at_its_latency(tmp_path):
    # race [large, small], accept an answer whose hard check passes with confidence >= 0.7.
    # r1: small answers first (200 ms) and passes: small wins at 200 ms, though large (800 ms) is billed too.
    # r2: small answers first but fails its hard check; large (800 ms) passes: large wins at 800 ms.
    # r3: neither passes: the last model in list order (small) answers, at the slowest latency, 800 ms.
    # Every call started is billed in full: 0.01 + 0.001 = 0.011 a request.
    policy = {"default": {"cascade": [{"race": ["large", "small"], "select": {"first": "confidence >= 0.7"}}]}}
    rows = []
    for request_id, small_ok, large_confidence in (("r1", True, 0.9), ("r2", False, 0.9), ("r3", True, 0.1)):
        rows += [ans(request_id, "large", confidence=large_confidence, latency_ms=800.0, cost_usd=LARGE),
                 ans(request_id, "small", confidence=0.8 if request_id != "r3" else 0.2, hard_check_ok=small_ok,
                     latency_ms=200.0, cost_usd=SMALL)]
    tiny = run(tmp_path, policy, [req("r1", at(10)), req("r2", at(11)), req("r3", at(12))], rows)
    assert tiny.column("final_model") == ["small", "large", "small"]
    assert tiny.column("latency_ms") == [200.0, 800.0, 800.0]
    assert tiny.column("cost_nano_usd") == [11_000_000] * 3
    assert tiny.column("models_called") == [["large", "small"]] * 3
    tiny.assert_reference_agrees()


def test_race_ties_in_latency_go_to_list_order_and_a_checker_times_every_call(tmp_path):
    # race [large, small], both at 300 ms and both passing: large (first listed) wins. A checker of
    # 0.0005 USD and 50 ms runs on each call: cost 0.01 + 0.001 + 2 x 0.0005 = 0.012, latency 350 ms.
    policy = {"default": {"cascade": [{"race": ["large", "small"], "select": {"first": "confidence >= 0.7"},
                                       "checker": {"name": "judge", "cost_usd": 0.0005, "latency_ms": 50.0}}]}}
    tiny = run(tmp_path, policy, [req("r1", at(10))],
               [ans("r1", "large", confidence=0.9, latency_ms=300.0, cost_usd=LARGE),
                ans("r1", "small", confidence=0.9, latency_ms=300.0, cost_usd=SMALL)])
    assert tiny.column("final_model") == ["large"] and tiny.column("latency_ms") == [350.0]
    assert tiny.column("cost_nano_usd") == [12_000_000]
    tiny.assert_reference_agrees()


def test_fan_out_missing_an_answer_is_missing_for_the_first_such_model(tmp_path):
    # r2 has no answer from large: with on_missing=skip it is left out, counted against large.
    policy = {"default": {"cascade": [{"parallel": ["small", "large"], "select": {"highest": "confidence"}}]}}
    tiny = run(tmp_path, policy, [req("r1", at(10)), req("r2", at(11))],
               [ans("r1", "small", cost_usd=SMALL), ans("r1", "large", cost_usd=LARGE),
                ans("r2", "small", cost_usd=SMALL)], on_missing="skip")
    assert tiny.column("request_id") == ["r1"]
    assert tiny.replay.coverage.missing_by_model == {"large": 1}
    tiny.assert_reference_agrees()


@pytest.mark.parametrize("step, message", [
    ({"race": ["small", "large"], "select": {"highest": "confidence"}}, "a race keeps the first answer"),
    ({"parallel": ["small", "large"]}, "needs 'select'"),
    ({"model": "small", "parallel": ["small", "large"], "select": {"highest": "confidence"}}, "exactly one of"),
    ({"parallel": ["small", "large"], "samples": 2, "select": {"highest": "confidence"}}, "'samples' draws"),
    ({"race": ["small", "large"], "select": {"first": "confidence > 0.5"}, "service_tier": "batch"}, "batch"),
])
def test_fan_out_and_race_shapes_are_checked(step, message):
    with pytest.raises(ValueError, match=message):
        scenario_of({"default": {"cascade": [step]}})


# --------------------------------------------------------------------------------------------------
# Named steps: agreement gates and final: best


def _run_with_keys(tmp_path: Path, policy: dict, traffic: list[dict], outcomes: list[dict], keys: list) -> Tiny:
    """A tiny world whose outcomes carry `answer_key` (one per outcome row, in order)."""
    scenario = scenario_of(policy, data=tmp_path)
    traffic_df = traffic_frame(traffic)
    outcomes_df = outcome_frame(outcomes).with_columns(pl.Series("answer_key", keys, dtype=pl.String))
    result, summary = replay_frames(tmp_path, scenario, traffic_df, outcomes_df)
    return Tiny(scenario, traffic_df, outcomes_df, None, result, summary)


def test_agreement_gate_accepts_when_two_cheap_answers_agree(tmp_path):
    # Ask small, then medium; accept medium's answer when its answer_key equals small's (two cheap models
    # agree), else escalate to large. r1: both say k1: final at medium, 0.001 + 0.002. r2: k1 against k2:
    # escalate, 0.001 + 0.002 + 0.01. r3: small's key is null: null = k1 is not true, so it escalates.
    policy = {"default": {"cascade": [
        {"name": "cheap", "model": "small", "accept": "confidence >= 0.99"},
        {"model": "medium", "accept": "answer_key = cheap.answer_key"},
        {"model": "large"}]}}
    outcomes, keys = [], []
    for request_id, (small_key, medium_key) in (("r1", ("k1", "k1")), ("r2", ("k1", "k2")), ("r3", (None, "k1"))):
        outcomes += [ans(request_id, "small", confidence=0.5, cost_usd=SMALL),
                     ans(request_id, "medium", cost_usd=0.002), ans(request_id, "large", cost_usd=LARGE)]
        keys += [small_key, medium_key, "k1"]
    tiny = _run_with_keys(tmp_path, policy, [req("r1", at(10)), req("r2", at(11)), req("r3", at(12))], outcomes, keys)
    assert tiny.column("final_model") == ["medium", "large", "large"]
    assert tiny.column("cost_nano_usd") == [3_000_000, 13_000_000, 13_000_000]
    tiny.assert_reference_agrees()


def test_final_best_keeps_the_highest_answer_among_the_steps_called(tmp_path):
    # final: best by confidence. r1: small says 0.8 (below 0.9: go on), large says 0.5 (below small's 0.8,
    # which its accept reads as cheap.confidence: go on), small's sample 1 says 0.6 (the last step). Three
    # steps called; the best is small's first answer (0.8), which fails. The cost is every call:
    # 0.001 + 0.01 + 0.001. r2: small 0.3, then large 0.7 is accepted (0.7 >= 0.3) and is also the best.
    policy = {"default": {"final": "best", "best_by": "confidence", "cascade": [
        {"name": "cheap", "model": "small", "accept": "confidence >= 0.9"},
        {"model": "large", "accept": "confidence >= cheap.confidence"},
        {"model": "small"}]}}
    tiny = run(tmp_path, policy, [req("r1", at(10)), req("r2", at(11))],
               [ans("r1", "small", confidence=0.8, passed=False, cost_usd=SMALL),
                ans("r1", "large", confidence=0.5, cost_usd=LARGE),
                ans("r1", "small", 1, confidence=0.6, cost_usd=SMALL),
                ans("r2", "small", confidence=0.3, cost_usd=SMALL), ans("r2", "large", confidence=0.7, cost_usd=LARGE)])
    assert tiny.column("final_model") == ["small", "large"] and tiny.column("final_sample") == [0, 0]
    assert tiny.column("steps_taken") == [3, 2] and tiny.column("passed") == [False, True]
    assert tiny.column("cost_nano_usd") == [12_000_000, 11_000_000]
    tiny.assert_reference_agrees()


@pytest.mark.parametrize("plan, message", [
    ({"cascade": [{"model": "small", "accept": "confidence > later.confidence"}, {"name": "later", "model": "large"}]},
     "no earlier named step"),
    ({"final": "best", "cascade": [{"model": "small"}]}, "needs 'best_by"),
    ({"final": "best", "best_by": "confidence", "use": "small"}, "chooses among a cascade"),
    ({"cascade": [{"name": "a", "model": "small", "accept": "confidence > 0.5"}, {"name": "a", "model": "large"}]},
     "two steps of one cascade are named 'a'"),
])
def test_named_step_shapes_are_checked(tmp_path, plan, message):
    with pytest.raises((ValueError, RoutesimError), match=message):
        run(tmp_path, {"default": plan}, [req("r1", at(10))],
            [ans("r1", "small", confidence=0.5, cost_usd=SMALL), ans("r1", "large", cost_usd=LARGE)])


# --------------------------------------------------------------------------------------------------
# Sticky sessions


def _run_sessions(tmp_path: Path, policy: dict, traffic: list[dict], outcomes: list[dict], sessions: list,
                  turns: list, sheet: dict | None = None, **settings) -> Tiny:
    """A tiny world whose traffic carries session_id and turn (one each per traffic row, in order)."""
    scenario = scenario_of(policy, data=tmp_path, **settings)
    traffic_df = traffic_frame(traffic).with_columns(pl.Series("session_id", sessions, dtype=pl.String),
                                                     pl.Series("turn", turns, dtype=pl.Int64))
    outcomes_df = outcome_frame(outcomes)
    price_sheet = sheet_of(sheet) if sheet is not None else None
    result, summary = replay_frames(tmp_path, scenario, traffic_df, outcomes_df, price_sheet)
    return Tiny(scenario, traffic_df, outcomes_df, price_sheet, result, summary)


def test_sticky_session_keeps_later_turns_on_the_model_the_first_turn_escalated_to(tmp_path):
    # Session A: turn 0 (a1) is unsure on small (0.5) and escalates to large; turns 1 and 2 go straight to
    # large (plan "sticky: large"), though small would have been confident on them. Session B: turn 0 (b1)
    # is accepted on small; turn 1 (b2) takes the same cascade and is accepted on small too. c1 is on its
    # own. Costs: a1 0.011, a2 and a3 0.01, b1 b2 c1 0.001.
    policy = {"sticky": "session", "default": CASCADE}
    traffic = [req("a1", at(1)), req("b1", at(2)), req("a2", at(3)), req("c1", at(4)), req("b2", at(5)),
               req("a3", at(6))]
    # small answers in 0 ms, so latency percentiles fall on whole values (no interpolation rounding).
    outcomes = [ans("a1", "small", confidence=0.5, latency_ms=0.0, cost_usd=SMALL), ans("a1", "large", cost_usd=LARGE)]
    outcomes += [ans(r, "small", confidence=0.9, latency_ms=0.0, cost_usd=SMALL) for r in ("b1", "a2", "c1", "b2", "a3")]
    outcomes += [ans(r, "large", cost_usd=LARGE) for r in ("a2", "a3")]
    tiny = _run_sessions(tmp_path, policy, traffic, outcomes, ["A", "B", "A", None, "B", "A"], [0, 0, 1, None, 1, 2])
    assert tiny.column("plan") == ["default", "default", "sticky: large", "default", "default", "sticky: large"]
    assert tiny.column("final_model") == ["large", "small", "large", "small", "small", "large"]
    assert tiny.column("cost_nano_usd") == [11_000_000, 1_000_000, 10_000_000, 1_000_000, 1_000_000, 10_000_000]
    tiny.assert_reference_agrees()


def test_sticky_session_first_turn_is_by_turn_number_and_later_turns_skip_the_rules(tmp_path):
    # The rule sends slice 'legal' to large. Session S: turn 0 is s2 (logged later than s1, whose turn is
    # 1), a faq request: its cascade is accepted on small, so s1 (legal) takes the same cascade instead of
    # the legal rule, and pays no rule overhead (the rule is not evaluated for it): s2 pays the rule's
    # 0.0005 (it was evaluated and did not match), s1 does not.
    policy = {"sticky": "session", "rules": [{"when": "slice = 'legal'", "use": "large",
                                              "overhead": {"name": "classifier", "cost_usd": 0.0005}}],
              "default": CASCADE}
    traffic = [req("s1", at(1), slice="legal"), req("s2", at(2))]
    outcomes = [ans(r, "small", confidence=0.9, cost_usd=SMALL) for r in ("s1", "s2")]
    outcomes += [ans(r, "large", cost_usd=LARGE) for r in ("s1", "s2")]  # the rule's model, never called
    tiny = _run_sessions(tmp_path, policy, traffic, outcomes, ["S", "S"], [1, 0])
    assert tiny.column("plan") == ["default", "default"]
    assert tiny.column("cost_nano_usd") == [1_000_000, 1_500_000]
    tiny.assert_reference_agrees()


# --------------------------------------------------------------------------------------------------
# Prompt-cache loss: a session switched to a model its previous turn did not call

# Every call reads 1,000 input tokens, 400 of them from the prompt cache, and writes 100:
#   small:      (600 x 2.0 + 400 x 0.5 + 100 x 8.0) / 1e6 = 0.0022; losing the cache: 400 x 1.5 / 1e6 = 0.0006
#   small flex: (600 x 1.0 + 400 x 0.25 + 100 x 4.0) / 1e6 = 0.0011; losing the cache: 400 x 0.75 / 1e6 = 0.0003
#   large:      (600 x 10 + 400 x 2.5 + 100 x 30) / 1e6 = 0.01; losing the cache: 400 x 7.5 / 1e6 = 0.003
CACHE_SHEET = {"small": [{"effective_from": "2026-01-01", "input": 2.0, "cached_input": 0.5, "output": 8.0,
                          "flex": {"input": 1.0, "cached_input": 0.25, "output": 4.0}}],
               "large": [{"effective_from": "2026-01-01", "input": 10.0, "cached_input": 2.5, "output": 30.0}]}


def cached(request_id: str, model: str, **extra) -> dict:
    return ans(request_id, model, cached_input_tokens=400, **extra)


def loss_rows(tiny: Tiny) -> list[tuple]:
    """(rid, seq, model, cost_nano_usd, latency_ms) of the replay's prompt-cache loss calls."""
    return tiny.replay.calls.filter(pl.col("kind") == "cache_loss").select(
        "rid", "seq", "model", "cost_nano_usd", "latency_ms").rows()


def test_a_rule_that_switches_a_session_bills_the_next_turns_cached_tokens_at_the_input_rate(tmp_path):
    # Session S: s1 (turn 0) takes the default, large: 0.01, its first turn bills as logged. s2 (turn 1)
    # matches the rule: small on flex, which s1 did not call: 0.0011 + 0.0003 (its 400 cached tokens at
    # flex's input rate) = 0.0014, one loss call of its own under small's name, with no latency: s2 takes
    # 100 ms as before. solo has no session: large, 0.01.
    policy = {"rules": [{"when": "turn >= 1", "use": "small", "service_tier": "flex"}], "default": {"use": "large"}}
    traffic = [req("s1", at(1)), req("s2", at(2)), req("solo", at(3))]
    outcomes = [cached(r, model) for r in ("s1", "s2", "solo") for model in ("small", "large")]
    tiny = _run_sessions(tmp_path, policy, traffic, outcomes, ["S", "S", None], [0, 1, None], CACHE_SHEET)
    assert tiny.column("final_model") == ["large", "small", "large"]
    assert tiny.column("cost_nano_usd") == [10_000_000, 1_400_000, 10_000_000]
    assert tiny.column("latency_ms") == [100.0, 100.0, 100.0]
    assert loss_rows(tiny) == [(1, 0, "small", 300_000, None)]
    assert tiny.replay.calls.filter(pl.col("rid") == 1)["kind"].to_list() == ["step", "cache_loss"]
    [line] = [row for row in tiny.summary["by_model"] if row["model"] == "prompt-cache loss"]
    assert (line["calls"], line["call_cost_usd"], line["call_share"]) == (1, 0.0003, None)
    assert [row["call_share"] for row in tiny.summary["by_model"] if row["model"] != "prompt-cache loss"] == [2 / 3, 1 / 3]
    assert tiny.replay.price_sources == {"large": "sheet", "prompt-cache loss": "sheet", "small": "sheet"}
    tiny.assert_reference_agrees()


def _two_sessions_of_a_cascade(tmp_path, policy: dict, confident: dict[str, float]):
    """Sessions A (a1, a2, a3) and B (b1, b2), interleaved one minute apart, replayed under `policy` on
    CACHE_SHEET: small answers with the given confidence, large answers, all with cached input tokens."""
    traffic = [req(r, at(minute)) for minute, r in enumerate(["a1", "b1", "a2", "b2", "a3"], start=1)]
    outcomes = [cached(r, "small", confidence=c) for r, c in confident.items()]
    outcomes += [cached(r, "large") for r in confident]
    return _run_sessions(tmp_path, policy, traffic, outcomes, ["A", "B", "A", "B", "A"], [0, 0, 1, 1, 2],
                         CACHE_SHEET)


def test_a_cascade_loses_the_cache_only_on_a_model_the_previous_turn_did_not_call(tmp_path):
    # Session A escalates small -> large on a1 and a2: a2 calls what a1 called, no loss (0.0022 + 0.01 each);
    # a3 is accepted on small, which a2 called: 0.0022. Session B: b1 is accepted on small (0.0022); b2
    # escalates, and large was not called by b1: 0.0022 + 0.01 + 0.003 = 0.0152.
    tiny = _two_sessions_of_a_cascade(tmp_path, {"default": CASCADE}, {"a1": 0.1, "b1": 0.9, "a2": 0.1, "b2": 0.1, "a3": 0.9})
    assert tiny.column("models_called") == [["small", "large"], ["small"], ["small", "large"], ["small", "large"],
                                            ["small"]]
    assert tiny.column("cost_nano_usd") == [12_200_000, 2_200_000, 12_200_000, 15_200_000, 2_200_000]
    assert loss_rows(tiny) == [(3, 1, "large", 3_000_000, None)]
    tiny.assert_reference_agrees()


def test_sticky_sessions_keep_the_cache_until_a_later_turn_escalates(tmp_path):
    # Session A: a1 escalates to large, so a2 and a3 go straight to large (sticky: large), which the turn
    # before each called: no loss (0.0122, then 0.01 each). Session B: b1 is accepted on small, b2 takes
    # the same cascade and escalates: its large call loses the cache, 0.0022 + 0.01 + 0.003 = 0.0152.
    tiny = _two_sessions_of_a_cascade(tmp_path, {"sticky": "session", "default": CASCADE}, {"a1": 0.1, "b1": 0.9, "a2": 0.9, "b2": 0.1, "a3": 0.9})
    assert tiny.column("plan") == ["default", "default", "sticky: large", "default", "sticky: large"]
    assert tiny.column("cost_nano_usd") == [12_200_000, 2_200_000, 10_000_000, 15_200_000, 10_000_000]
    assert loss_rows(tiny) == [(3, 1, "large", 3_000_000, None)]
    tiny.assert_reference_agrees()


def test_a_turn_after_one_left_out_for_missing_outcomes_bills_as_logged(tmp_path):
    # t0 goes to large, which has no answer for it: left out (on_missing: skip). t1 (the rule: small) follows
    # a turn the replay knows nothing of: 0.0022 as logged. t2 (large) follows t1, which called small: its
    # large call loses the cache, 0.01 + 0.003.
    policy = {"rules": [{"when": "turn = 1", "use": "small"}], "default": {"use": "large"}}
    traffic = [req("t0", at(1)), req("t1", at(2)), req("t2", at(3))]
    outcomes = [cached(r, "small") for r in ("t0", "t1", "t2")] + [cached(r, "large") for r in ("t1", "t2")]
    tiny = _run_sessions(tmp_path, policy, traffic, outcomes, ["S", "S", "S"], [0, 1, 2], CACHE_SHEET,
                         on_missing="skip")
    assert tiny.column("request_id") == ["t1", "t2"]
    assert tiny.column("cost_nano_usd") == [2_200_000, 13_000_000]
    assert loss_rows(tiny) == [(2, 0, "large", 3_000_000, None)]
    tiny.assert_reference_agrees()


def test_a_model_priced_at_its_recorded_cost_loses_no_billed_cache(tmp_path):
    # The sheet lists large only; small is priced at its recorded 0.001, which cannot be split into input
    # and cached rates: t1's switch to small bills nothing more (the replay counts it), t2's switch back to
    # large does: 0.01 + 0.003.
    policy = {"rules": [{"when": "turn = 1", "use": "small"}], "default": {"use": "large"}}
    traffic = [req("t0", at(1)), req("t1", at(2)), req("t2", at(3))]
    outcomes = [cached(r, "small", cost_usd=SMALL) for r in ("t0", "t1", "t2")]
    outcomes += [cached(r, "large") for r in ("t0", "t1", "t2")]
    tiny = _run_sessions(tmp_path, policy, traffic, outcomes, ["S", "S", "S"], [0, 1, 2],
                         {"large": CACHE_SHEET["large"]})
    assert tiny.column("cost_nano_usd") == [10_000_000, 1_000_000, 13_000_000]
    assert loss_rows(tiny) == [(2, 0, "large", 3_000_000, None)]
    assert tiny.replay.cache_loss_unbilled == {"small": 1}
    tiny.assert_reference_agrees()
