"""Money is whole nano-dollars: each call rounded half to even once when priced (simulator/core/prices.py)."""

from __future__ import annotations

import datetime as dt
import json
from fractions import Fraction

import numpy as np
import polars as pl
import pytest

from simulator.analyses import tables
from simulator.core.contract import load_data
from simulator.core.engine import replay
from simulator.core.errors import RoutesimError
from simulator.core.money import usd_per, usd_per_array
from simulator.core.prices import load_prices, price_calls, round_half_even, usd
from simulator.core.scenario import load_scenario
from tests.conftest import OUTCOME_SCHEMA, outcome_row
from tests.worlds import sheet_of

AT = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def calls(tokens: list[tuple[int, int]], recorded: list[float | None] | None = None, model: str = "m") -> pl.DataFrame:
    """Calls of `model` at AT with (input_tokens, output_tokens), none cached."""
    return pl.DataFrame({"model": [model] * len(tokens), "ts": [AT] * len(tokens),
                         "request_id": [f"r{i}" for i in range(len(tokens))],
                         "input_tokens": [i for i, _ in tokens], "cached_input_tokens": [None] * len(tokens),
                         "output_tokens": [o for _, o in tokens],
                         "recorded_cost_usd": recorded or [None] * len(tokens)},
                        schema_overrides={"cached_input_tokens": pl.Int64, "recorded_cost_usd": pl.Float64})


def test_each_call_is_rounded_half_to_even_once():
    # $0.0005 per million input tokens is 0.5 nano-dollars a token: 1, 3, 5 and 6 tokens cost 0.5, 1.5,
    # 2.5 and 3.0 nano-dollars, rounded half to even to 0, 2, 2 and 3. Output at $0.15 per million is
    # exactly 150 nano-dollars a token (not 150.00000000000003, as 0.15 * 1000 is in floats).
    sheet = sheet_of({"m": [{"effective_from": "2026-01-01", "input": 0.0005, "output": 0.15}]})
    priced = price_calls(calls([(1, 0), (3, 0), (5, 0), (6, 0), (0, 7)]), sheet)
    assert priced["cost_nano_usd"].dtype == pl.Int64
    assert priced["cost_nano_usd"].to_list() == [0, 2, 2, 3, 1050]


def test_round_half_even_takes_ties_to_the_even_neighbour_at_every_magnitude():
    """Against the rule written out (floor, then up past a half or at a half from an odd floor) and numpy's
    rint (IEEE 754 roundTiesToEven): halves and quarters, negatives, large costs, the float just below
    a half, and a null."""
    generator = np.random.default_rng(3)
    values = np.concatenate([np.arange(-40, 41) / 4, np.round(generator.normal(0, 1e12, 2_000)) + 0.5,
                             generator.normal(0, 1e9, 2_000),
                             [2.0**52 - 0.5, 2.0**52 + 1, 2.0**53 - 1, -(2.0**52) + 0.5, 0.49999999999999994, -0.0]])
    rounded = pl.DataFrame({"v": [*values.tolist(), None]}).select(round_half_even(pl.col("v"))).to_series()
    floor = np.floor(values)
    fraction = values - floor
    up = (fraction > 0.5) | ((fraction == 0.5) & (np.mod(floor, 2) == 1))
    assert rounded.to_list() == [*(floor + up).astype(np.int64).tolist(), None]
    assert rounded.to_list()[:-1] == np.rint(values).astype(np.int64).tolist()
    assert rounded.to_list()[:10] == [-10, -10, -10, -9, -9, -9, -8, -8, -8, -8]  # -10, -9.75, -9.5 ... -8


def test_recorded_costs_become_whole_nano_dollars_and_dollars_come_back_exactly():
    # 0.0042 USD is 4,200,000 nano-dollars, and back in dollars exactly 0.0042 (polars' own division by a
    # constant would give 0.004200000000000001).
    priced = price_calls(calls([(1, 1), (1, 1)], recorded=[0.0042, 0.0000000016]), None)
    assert priced["cost_nano_usd"].to_list() == [4_200_000, 2]
    assert priced.select(usd(pl.col("cost_nano_usd")))["cost_nano_usd"].to_list() == [0.0042, 2e-9]


def test_a_call_too_costly_to_count_exactly_is_refused():
    sheet = sheet_of({"m": [{"effective_from": "2026-01-01", "input": 1e30, "output": 1.0}]})
    with pytest.raises(RoutesimError, match="9 million USD or more"):
        price_calls(calls([(10, 5)]), sheet)


def test_a_checker_too_costly_to_count_exactly_is_refused():
    from pydantic import ValidationError

    from simulator.core.scenario import Checker

    assert Checker(cost_usd=8_999_999.0, latency_ms=0).cost_usd == 8_999_999.0
    with pytest.raises(ValidationError, match="less than 9000000"):
        Checker(cost_usd=9_000_000.0, latency_ms=0)


def test_money_per_unit_is_the_exact_quotient_correctly_rounded_once():
    # 2,436,000 nano-dollars over 5 requests is exactly 487,200 nano-dollars, $0.0004872. Turning the sum
    # into dollars first and then dividing rounds twice: 0.00048719999999999997.
    assert usd_per(2_436_000, 5) == 0.0004872 != 2_436_000 / 1e9 / 5
    assert usd_per(2_436_000, 5, per=1000) == 0.4872 != 2_436_000 / 1e9 / 5 * 1000
    assert usd_per(-21_924_000, 5) == -0.0043848 != 0.0004872 - 0.004872
    assert usd_per(1, 3) == float(Fraction(1, 3 * 10**9)) and usd_per(7, 0) is None
    nano, counts = np.array([2_436_000.0, -21_924_000.0, 1.0]), np.array([5.0, 5.0, 3.0])
    assert usd_per_array(nano, counts).tolist() == [0.0004872, -0.0043848, usd_per(1, 3)]
    assert usd_per_array(nano, counts, 1000).tolist() == [0.4872, -4.3848, usd_per(1, 3, 1000)]


def five_requests(world) -> None:
    """5 requests, each its own session, small costing 1,000 nano-dollars per input token and 200,000 for
    its 100 output tokens (TINY_PRICES): 300, 300, 300, 300 and 236 input tokens cost 500,000 x 4 + 436,000
    = 2,436,000 nano-dollars; big costs ten times as much, 24,360,000."""
    ids = [f"r{i}" for i in range(5)]
    tokens = [300, 300, 300, 300, 236]
    hours = [dt.datetime(2026, 11, 16, hour, tzinfo=dt.UTC) for hour in range(5)]
    traffic = pl.DataFrame({"request_id": ids, "ts": hours, "slice": ["faq"] * 5, "input_tokens": tokens,
                            "session_id": [f"s{i}" for i in range(5)]})
    rows = [outcome_row(rid, model, input_tokens=count)
            for rid, count in zip(ids, tokens) for model in ("small", "big")]
    world.write_data(traffic, pl.DataFrame(rows, schema=OUTCOME_SCHEMA))


def test_every_output_shows_money_per_unit_as_the_correctly_rounded_quotient(world, cli):
    five_requests(world)
    small, big = world.scenario("small", policy={"default": {"use": "small"}}), world.scenario(
        "big", policy={"default": {"use": "big"}})
    replayed = cli("replay", small, "--json")
    assert replayed.code == 0, replayed.err
    (summary,) = json.loads(replayed.out)
    assert summary["cost_per_request_usd"] == summary["by_slice"][0]["cost_per_request_usd"] == 0.0004872
    assert summary["by_model"][0]["cost_per_request_usd"] == summary["by_day"][0]["cost_per_request_usd"] == 0.0004872
    assert summary["sessions"]["cost_per_session_usd"] == 0.0004872

    gated = cli("gate", "--baseline", big, "--candidate", small, "--json")
    assert gated.code in (0, 1), gated.err
    overall = json.loads(gated.out)["overall"]
    assert overall["baseline"]["cost_per_request_usd"] == 0.004872
    assert overall["candidate"]["cost_per_request_usd"] == 0.0004872
    assert overall["cost_per_request_change_usd"]["estimate"] == -0.0043848  # -21,924,000 / 5e9

    lanes = cli("lanes", world.data, "--prices", world.prices, "--bar", "0.5", "--json")
    assert lanes.code == 0, lanes.err
    (group,) = json.loads(lanes.out)["groups"]
    assert {m["model"]: m["cost_per_request_usd"] for m in group["models"]} == {"small": 0.0004872, "big": 0.004872}

    scenario = load_scenario(small)
    found = tables.baselines(scenario, load_data(world.data), load_prices(world.prices))
    by_model = {m["model"]: m for m in found["models"]}
    assert (by_model["small"]["cost_per_request_usd"], by_model["small"]["cost_per_1k_usd"]) == (0.0004872, 0.4872)
    assert (found["oracle"]["cost_per_request_usd"], found["oracle"]["cost_per_1k_usd"]) == (0.0004872, 0.4872)
    replay_of = replay(scenario, load_data(world.data), load_prices(world.prices))
    breakdown = tables.cost_breakdown(replay_of.decisions, replay_of.calls)
    assert breakdown["by_slice"][0]["cost_per_1k_usd"] == breakdown["by_model"][0]["cost_per_1k_usd"] == 0.4872
    straight = tables.straight_cost(load_data(world.data), load_prices(world.prices))  # e*'s cost of the last step
    assert straight(replay_of.decisions, "small") == 0.0004872
