"""Money is whole nano-dollars: each call rounded half to even once when priced (simulator/core/prices.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from simulator.core.errors import RoutesimError
from simulator.core.prices import price_calls, round_half_even, usd
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
