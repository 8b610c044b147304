"""Every price shape a sheet can express, each checked on a tiny world worked out by hand (USD per million
tokens in the sheets; a cost is the sum of tokens x price / 1e6), and against the reference replay."""

from __future__ import annotations

import pytest
import yaml

from simulator.core.prices import PriceSheet
from tests.reference import reference_replay
from tests.test_tiny_worlds import ans, at, req, run
from tests.worlds import outcome_frame, replay_frames, scenario_of, traffic_frame

SONNET = {"effective_from": "2026-01-01", "input": 3.0, "cached_input": 0.3, "cache_write_input": 3.75,
          "cache_write_1h_input": 6.0, "output": 15.0}
LONG = {"above_input_tokens": 200_000, "input": 6.0, "cached_input": 0.6, "output": 22.5}


def costs(tiny) -> list[float]:
    return tiny.column("cost_usd")


def test_cache_reads_and_both_cache_writes_each_at_their_rate(tmp_path):
    """20,000 input = 1,000 fresh + 5,000 read + 12,304 written (5-minute) + 1,696 written (1-hour), 500
    out: 1,000 x 3 + 5,000 x 0.3 + 12,304 x 3.75 + 1,696 x 6 + 500 x 15 = 68,316 per million = $0.068316.
    Priced as fresh input the writes would cost 14,000 x 3: $0.050616, 26% less."""
    tiny = run(tmp_path, {"default": {"use": "sonnet"}}, [req("r1", at(1), input_tokens=20_000)],
               [ans("r1", "sonnet", input_tokens=20_000, cached_input_tokens=5_000, cache_write_input_tokens=12_304,
                    cache_write_1h_input_tokens=1_696, output_tokens=500)], {"sonnet": [SONNET]})
    assert costs(tiny) == [0.068316]
    tiny.assert_reference_agrees()


def test_a_call_above_the_tier_bills_every_token_at_the_tier_rates(tmp_path):
    """200,000 input is not above 200k: 200,000 x 3 + 100 x 15 = $0.6015. 200,001 input with 1 cached:
    200,000 x 6 + 1 x 0.6 + 100 x 22.5 = $1.2022506 (every token at the tier's rates)."""
    tiny = run(tmp_path, {"default": {"use": "sonnet"}},
               [req("r1", at(1), input_tokens=200_000), req("r2", at(2), input_tokens=200_001)],
               [ans("r1", "sonnet", input_tokens=200_000, output_tokens=100),
                ans("r2", "sonnet", input_tokens=200_001, cached_input_tokens=1, output_tokens=100)],
               {"sonnet": [{**SONNET, "tiers": [LONG]}]})
    assert costs(tiny) == [0.6015, 1.2022506]
    tiny.assert_reference_agrees()


def test_reasoning_at_its_own_price_else_at_the_output_price(tmp_path):
    """1,000 output of which 400 reasoning, no input: 600 x 15 + 400 x 20 = $0.017 with a reasoning price;
    1,000 x 15 = $0.015 without one."""
    outcomes = [ans("r1", "sonnet", input_tokens=0, output_tokens=1_000, reasoning_output_tokens=400, cost_usd=1.0)]
    priced = run(tmp_path / "own", {"default": {"use": "sonnet"}}, [req("r1", at(1))], outcomes,
                 {"sonnet": [{**SONNET, "reasoning_output": 20.0}]})
    assert costs(priced) == [0.017]
    plain = run(tmp_path / "plain", {"default": {"use": "sonnet"}}, [req("r1", at(1))], outcomes, {"sonnet": [SONNET]})
    assert costs(plain) == [0.015]
    priced.assert_reference_agrees()


def test_by_model_shows_the_reasoning_tokens_apart_from_the_output(tmp_path):
    """small answers r1 (1,000 output, 400 of it reasoning; confidence 0.9, accepted) and r2 (300 output,
    reasoning null = 0; confidence 0.1, escalated); large answers r2 with 200 output, 150 of it reasoning.
    small: 1,300 output of which 400 reasoning; large: 200 of which 150."""
    tiny = run(tmp_path, {"default": {"cascade": [{"model": "small", "accept": "confidence >= 0.7"},
                                                  {"model": "large"}]}},
               [req("r1", at(1)), req("r2", at(2))],
               [ans("r1", "small", output_tokens=1_000, reasoning_output_tokens=400, confidence=0.9, cost_usd=0.001),
                ans("r2", "small", output_tokens=300, reasoning_output_tokens=None, confidence=0.1, cost_usd=0.001),
                ans("r2", "large", output_tokens=200, reasoning_output_tokens=150, confidence=0.9, cost_usd=0.01)])
    tokens = {row["model"]: (row["calls"], row["output_tokens"], row["reasoning_output_tokens"])
              for row in tiny.summary["by_model"]}
    assert tokens == {"small": (2, 1_300, 400), "large": (1, 200, 150)}


def test_service_tiers_are_absolute_prices_and_batch_has_no_latency(tmp_path):
    """Each call 10,000 input of which 4,000 cached, 1,000 output. Batch step: 6,000 x 1.5 + 4,000 x 0.15
    + 1,000 x 7.5 = $0.0171 (the cache-read discount differs from the input one); then the priority step:
    6,000 x 6 + 4,000 x 0.5 + 1,000 x 30 = $0.068. r2 is accepted on batch; r1 escalates. Latency: r1's
    batch call has none, so r1 has none; r2 neither; only a standard request keeps a latency. r1 costs
    $0.0171 + $0.068 = $0.0851."""
    entry = {**SONNET, "batch": {"input": 1.5, "cached_input": 0.15, "output": 7.5},
             "priority": {"input": 6.0, "cached_input": 0.5, "output": 30.0}}
    call = {"input_tokens": 10_000, "cached_input_tokens": 4_000, "output_tokens": 1_000}
    policy = {"rules": [{"when": "slice = 'chat'", "use": "sonnet"}],
              "default": {"cascade": [{"model": "sonnet", "accept": "confidence >= 0.7", "service_tier": "batch"},
                                      {"model": "sonnet", "service_tier": "priority"}]}}
    tiny = run(tmp_path, policy, [req("r1", at(1)), req("r2", at(2)), req("r3", at(3), slice="chat")],
               [ans("r1", "sonnet", confidence=0.1, **call), ans("r1", "sonnet", sample=1, **call),
                ans("r2", "sonnet", confidence=0.9, **call), ans("r3", "sonnet", **call)], {"sonnet": [entry]})
    rows = tiny.rows
    assert rows["r1"]["cost_usd"] == 0.0851
    assert rows["r2"]["cost_usd"] == 0.0171
    assert rows["r3"]["cost_usd"] == 0.0342  # standard: 6,000 x 3 + 4,000 x 0.3 + 1,000 x 15
    assert [rows[r]["latency_ms"] for r in ("r1", "r2", "r3")] == [None, None, 100.0]
    assert tiny.summary["latency_p50_ms"] == 100.0
    tiny.assert_reference_agrees()


def test_the_comparison_says_batch_requests_are_left_out_of_the_latency_figures(cli, world):
    path = world.scenario(policy={"default": {"use": "small", "service_tier": "batch"}})
    prices = yaml.safe_load(world.prices.read_text())
    for entry in prices["models"]["small"]:
        entry["batch"] = {"input": entry["input"] / 2, "output": entry["output"] / 2}
    world.prices.write_text(yaml.safe_dump(prices))
    result = cli("replay", path)
    assert result.code == 0, result.err
    assert "3 request(s) ran a step on batch" in result.out and "latency figures leave them out" in result.out


@pytest.mark.parametrize("command", ["replay", "validate"])  # validate reports what the replay would meet
def test_a_service_tier_the_sheet_does_not_price_is_an_error(cli, world, command):
    """The error names the model's entry that lacks the tier and the scenario key that asked for it, and its
    fix is the one for a missing service tier, not for a model missing from the sheet."""
    path = world.scenario(policy={"default": {"use": "small", "service_tier": "flex"}})
    result = cli(command, path)
    assert result.code == 2
    assert ("model 'small': 3 call(s), run on flex by policy.default.service_tier, but its price entry in force "
            "(effective_from 2026-11-01) has no flex prices; e.g. request a") in result.err
    assert f"where: {world.prices}, key 'models.small'; {path}, key 'policy.default.service_tier'\n" in result.err
    assert ("fix: add flex prices (a 'flex:' key with input and output) to small's entry from 2026-11-01 in "
            "prices.yaml, or set policy.default.service_tier to a tier it prices (standard)") in result.err


@pytest.mark.parametrize("policy, model, tier, key", [
    ({"default": {"cascade": [{"model": "small", "accept": "confidence >= 0.7", "service_tier": "flex"},
                              {"model": "big"}]}}, "small", "flex", "policy.default.cascade[0].service_tier"),
    ({"default": {"use": "big"}, "retry": {"when": "confidence < 1", "to": ["small"], "service_tier": "priority"}},
     "small", "priority", "policy.retry.service_tier"),
    ({"rules": [{"when": "tier = 'pro'", "service_tier": "batch", "cascade": [
        {"model": "small", "accept": "confidence >= 0.7", "service_tier": "standard"}, {"model": "big"}]}],
      "default": {"use": "small"}}, "big", "batch", "policy.rules[0].service_tier"),
])
def test_an_unpriced_service_tier_names_the_key_that_asked_for_it(cli, world, policy, model, tier, key):
    path = world.scenario(policy=policy)
    result = cli("replay", path)
    assert result.code == 2 and "Traceback" not in result.err
    assert f"model '{model}': " in result.err and f"run on {tier} by {key}, but its price entry" in result.err
    assert f"where: {world.prices}, key 'models.{model}'; {path}, key '{key}'\n" in result.err
    assert f"or set {key} to a tier it prices (standard)" in result.err


def test_negotiated_discounts_per_entry_else_for_the_sheet(tmp_path):
    """1,000 input, 100 output, $0.001 per request: sonnet 1,000 x 3 + 100 x 15 = $0.0045 + $0.001, 20% off
    (its own discount): $0.0044; haiku 1,000 x 1 + 100 x 5 = $0.0015, 10% off (the sheet's): $0.00135."""
    sheet = PriceSheet.model_validate({"discount": 0.1, "models": {
        "sonnet": [{**SONNET, "per_request": 0.001, "discount": 0.2}],
        "haiku": [{"effective_from": "2026-01-01", "input": 1.0, "output": 5.0}]}})
    scenario = scenario_of({"rules": [{"when": "slice = 'chat'", "use": "haiku"}], "default": {"use": "sonnet"}},
                           data=tmp_path)
    traffic = traffic_frame([req("r1", at(1)), req("r2", at(2), slice="chat")])
    outcomes = outcome_frame([ans("r1", "sonnet"), ans("r2", "haiku")])
    result, _ = replay_frames(tmp_path, scenario, traffic, outcomes, sheet)
    assert result.decisions["cost_usd"].to_list() == [0.0044,
                                                      0.00135]
    decisions, _ = reference_replay(scenario, traffic, outcomes, sheet)
    assert [row["cost_usd"] for row in decisions] == result.decisions["cost_usd"].to_list()


def test_a_call_with_zero_tokens_and_a_recorded_cost_keeps_its_recorded_cost(tmp_path):
    """r1 has no usage (0 / 0 tokens) and $0.00002 recorded: priced at $0.00002, not $0; r2 by the sheet:
    30 x 0.5 + 12 x 1.5 = $0.000033. The model's source is 'mixed', its calls being priced both ways."""
    tiny = run(tmp_path, {"default": {"use": "turbo"}}, [req("r1", at(1)), req("r2", at(2))],
               [ans("r1", "turbo", input_tokens=0, output_tokens=0, cost_usd=0.00002),
                ans("r2", "turbo", input_tokens=30, output_tokens=12, cost_usd=0.000033)],
               {"turbo": [{"effective_from": "2024-01-01", "input": 0.5, "output": 1.5}]})
    assert costs(tiny) == [0.00002, 0.000033]
    assert tiny.replay.price_sources == {"turbo": "mixed"}
    assert tiny.replay.calls["price_source"].to_list() == ["recorded", "sheet"]
    tiny.assert_reference_agrees()
