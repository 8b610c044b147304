"""Capacity: peak calls and tokens per minute per model, and the minutes over each rate limit, by hand."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from simulator.analyses.capacity import capacity
from simulator.core.errors import RoutesimError
from simulator.core.runner import Inputs, run_scenario
from simulator.core.scenario import load_scenario
from tests.conftest import tiny_outcomes


@pytest.fixture
def crowded(world):
    """The tiny world with a and b in the same minute (01:00) and c in the next (01:01). The cascade
    accepts small's answers to a and c and escalates b to big. Every call is 1,000 + 100 = 1,100 tokens."""
    at = [dt.datetime(2026, 11, 16, 1, 0, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 16, 1, 0, 50, tzinfo=dt.UTC),
          dt.datetime(2026, 11, 16, 1, 1, 5, tzinfo=dt.UTC)]
    traffic = pl.DataFrame({"request_id": list("abc"), "ts": at, "slice": ["faq", "faq", "contract"],
                            "input_tokens": [1000] * 3})
    world.write_data(traffic, tiny_outcomes())
    return world


def _capacity(world, limits):
    scenario = load_scenario(world.scenario(capacity=limits))
    inputs = Inputs()
    return capacity(run_scenario(scenario, inputs).replay, inputs.data(scenario))


def test_peaks_and_minutes_over_each_limit(crowded):
    """small: 2 calls and 2,200 tokens at 01:00, 1 and 1,100 at 01:01; big: 1 call, 1,100 tokens at 01:00.
    small's rpm 1 and tpm 2,000 are both broken at 01:00 only; big's tpm 1,000 at 01:00."""
    found = _capacity(crowded, {"small": {"rpm": 1, "tpm": 2000}, "big": {"tpm": 1000}})
    big, small = found["models"]
    assert small | {"over": None} == {
        "model": "small", "rpm": 1, "tpm": 2000, "peak_calls_per_minute": 2, "peak_calls_at": "2026-11-16T01:00:00+00:00",
        "peak_tokens_per_minute": 2200, "peak_tokens_at": "2026-11-16T01:00:00+00:00", "minutes_over_rpm": 1,
        "minutes_over_tpm": 1, "minutes_over": 1, "over": None}
    assert small["over"] == [{"minute": "2026-11-16T01:00:00+00:00", "calls": 2, "tokens": 2200}]
    assert (big["peak_calls_per_minute"], big["peak_tokens_per_minute"], big["minutes_over_tpm"]) == (1, 1100, 1)
    assert found["minutes_over"] == 2 and not found["within_limits"]


def test_limits_at_the_peak_are_not_exceeded(crowded):
    found = _capacity(crowded, {"small": {"rpm": 2, "tpm": 2200}})
    assert found["within_limits"] and [row["minutes_over"] for row in found["models"]] == [0, 0]


def test_a_retry_counts_against_its_model(crowded):
    """Retrying every answer of small that fails (b) on big: big's load is unchanged from the cascade's,
    while a use-small policy with that retry calls big once, at 01:00."""
    scenario = load_scenario(crowded.scenario(policy={"default": {"use": "small"},
                                                      "retry": {"when": "NOT passed", "to": ["big"]}}))
    inputs = Inputs()
    found = capacity(run_scenario(scenario, inputs).replay, inputs.data(scenario))
    big = next(row for row in found["models"] if row["model"] == "big")
    assert (big["peak_calls_per_minute"], big["peak_calls_at"]) == (1, "2026-11-16T01:00:00+00:00")


def test_unknown_model_in_capacity_is_named(crowded):
    with pytest.raises(RoutesimError, match="capacity names model 'smal'.*Did you mean 'small'"):
        _capacity(crowded, {"smal": {"rpm": 1}})


def test_a_limit_needs_rpm_or_tpm(cli, crowded):
    result = cli("replay", crowded.scenario(capacity={"small": {}}))
    assert result.code == 2 and "give 'rpm'" in result.err


def test_replay_flags_the_minutes_over_a_limit(cli, crowded):
    path = crowded.scenario(capacity={"small": {"rpm": 1}})
    result = cli("replay", path)
    assert result.code == 0, result.err
    assert "Capacity" in result.out and "2026-11-16T01:00:00+00:00" in result.out
    [summary] = json.loads(cli("replay", path, "--json").out)
    assert summary["capacity"]["minutes_over"] == 1
