"""A served log's propensities describe one logging router: the served model's own `propensity_<model>` is
above 0 and equals `logging_propensity`, a request's propensities add up to at most 1, and an off-policy
estimate names the requests that lack a served model or its propensity."""

from __future__ import annotations

import polars as pl
import pytest

from simulator.core.contract import PROPENSITY_TOLERANCE, validate_frames
from tests.conftest import OUTCOME_SCHEMA, outcome_row, tiny_traffic

SERVED = ["small", "small", "big"]  # requests a, b, c


def served_traffic(**columns) -> pl.DataFrame:
    """The tiny world's three requests as a served log: a and b served by small, c by big, each with the
    router's probability 1/2 of it; `columns` replace or add columns (a list per column, a value per request)."""
    traffic = tiny_traffic().with_columns(
        pl.Series("served_model", SERVED), pl.Series("logging_propensity", [0.5, 0.5, 0.5]),
        pl.Series("propensity_small", [0.5, 0.5, 0.5]), pl.Series("propensity_big", [0.5, 0.5, 0.5]))
    return traffic.with_columns(pl.Series(name, values) for name, values in columns.items())


def served_outcomes() -> pl.DataFrame:
    """The served model's first answer to each request, and nothing else."""
    return pl.DataFrame([outcome_row(request, model) for request, model in zip("abc", SERVED)], schema=OUTCOME_SCHEMA)


def problems_of(traffic: pl.DataFrame) -> list[str]:
    return validate_frames(traffic, served_outcomes()).problems


def test_a_consistent_served_log_passes():
    assert problems_of(served_traffic()) == []


def test_a_served_model_with_propensity_zero_is_refused_naming_columns_count_and_request():
    # The router served small on a and b, so small's probability there cannot be 0.
    [problem] = problems_of(served_traffic(propensity_small=[0.0, 0.0, 0.5], propensity_big=[1.0, 1.0, 0.5]))
    assert "traffic.parquet, column 'served_model, propensity_small'" in problem
    assert "2 request(s) served by 'small'" in problem and "propensity_small = 0" in problem
    assert "request_id='a'" in problem and "request_id='c'" not in problem
    assert "\n    fix: " in problem


def test_a_zero_propensity_of_a_model_that_did_not_serve_is_fine():
    # propensity 0 = the router never picks that model there: true of big on a and b, which small served.
    assert problems_of(served_traffic(propensity_small=[1.0, 1.0, 0.5], propensity_big=[0.0, 0.0, 0.5],
                                      logging_propensity=[1.0, 1.0, 0.5])) == []


def test_a_served_models_propensity_that_disagrees_with_logging_propensity_is_refused():
    [problem] = problems_of(served_traffic(propensity_big=[0.5, 0.5, 0.25], propensity_small=[0.5, 0.5, 0.75]))
    assert "column 'served_model, logging_propensity, propensity_big'" in problem
    assert "1 request(s) served by 'big'" in problem and "differs from logging_propensity" in problem
    assert "request_id='c'" in problem and "logging_propensity=0.5" in problem and "propensity_big=0.25" in problem
    assert "\n    fix: " in problem


def test_propensities_agree_within_float32_rounding_but_not_beyond_the_tolerance():
    third = 1 / 3
    rounded = served_traffic(logging_propensity=[third] * 3, propensity_small=[third] * 3,
                             propensity_big=[third] * 3).with_columns(pl.col("propensity_small").cast(pl.Float32))
    assert abs(rounded["propensity_small"][0] - third) > 0  # float32 did round it
    assert problems_of(rounded) == []
    apart = third * (1 + 10 * PROPENSITY_TOLERANCE)
    [problem] = problems_of(served_traffic(logging_propensity=[third] * 3, propensity_small=[apart, third, third],
                                           propensity_big=[third] * 3))
    assert "1 request(s) served by 'small'" in problem and "request_id='a'" in problem


def test_tiny_propensities_are_compared_relatively():
    # Weights are 1 / p: 1e-13 against 2e-13 halves a weight, whatever an absolute tolerance would say.
    [problem] = problems_of(served_traffic(logging_propensity=[1e-13, 0.5, 0.5], propensity_small=[2e-13, 0.5, 0.5]))
    assert "differs from logging_propensity" in problem and "request_id='a'" in problem


def test_propensities_of_one_request_add_up_to_at_most_one():
    [problem] = problems_of(served_traffic(propensity_big=[0.5, 0.75, 0.5]))
    assert "column 'propensity_small, propensity_big'" in problem
    assert "1 request(s) whose propensity_<model> columns add up to more than 1" in problem
    assert "request_id='b'" in problem and "\n    fix: " in problem
    # Less than 1 is fine (a candidate without a column takes the rest), and so is 1 up to rounding: three
    # thirds a router wrote in float32 add up to 1 + 3e-8.
    assert problems_of(served_traffic(propensity_big=[0.25, 0.25, 0.5])) == []
    third = [1 / 3] * 3
    thirds = served_traffic(logging_propensity=third, propensity_small=third, propensity_big=third,
                            propensity_other=third).with_columns(pl.col("^propensity_.*$").cast(pl.Float32))
    assert thirds.select(pl.sum_horizontal(pl.col("^propensity_.*$").cast(pl.Float64)) > 1)[:, 0].all()
    assert problems_of(thirds) == []


def test_what_is_not_recorded_is_not_compared():
    # Nulls, and a served model without a propensity column, leave nothing to compare.
    assert problems_of(served_traffic(propensity_small=[None, 0.5, 0.5], logging_propensity=[0.5, None, 0.5])) == []
    assert problems_of(served_traffic().drop("propensity_big")) == []


def _served_world(world, **columns):
    world.write_data(served_traffic(**columns), served_outcomes())
    return world.scenario(policy={"default": {"use": "small"}})


@pytest.mark.parametrize("command", [["validate", "DATA"], ["validate", "SCENARIO"],
                                     ["estimate", "SCENARIO", "--method", "off-policy"]])
def test_every_command_that_validates_refuses_inconsistent_propensities(cli, world, command):
    # estimate is the folder's first use: it validates before it builds the layout.
    scenario = _served_world(world, propensity_small=[0.0, 0.5, 0.5], propensity_big=[1.0, 0.5, 0.25])
    arguments = [{"DATA": world.data, "SCENARIO": scenario}.get(argument, argument) for argument in command]
    result = cli(*arguments)
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert str(world.data / "traffic.parquet") in result.err
    assert "1 request(s) served by 'small' (served_model) with propensity_small = 0" in result.err
    assert "1 request(s) served by 'big' (served_model) whose propensity_big differs" in result.err
    assert "request_id='a'" in result.err and "request_id='c'" in result.err


def test_an_off_policy_estimate_counts_and_names_requests_without_served_model_or_propensity(cli, world):
    # Nulls are allowed by the contract (a request the router did not route), not by an off-policy estimate.
    scenario = _served_world(world, served_model=["small", None, None], logging_propensity=[0.5, 0.5, None])
    result = cli("estimate", scenario, "--method", "off-policy")
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert "of the window's 3 requests, 2 have no served_model and 1 has no logging_propensity" in result.err
    assert "columns 'served_model' and 'logging_propensity'" in result.err
    assert "request b (served_model null)" in result.err and "request c (logging_propensity null)" in result.err
    assert str(world.data / "traffic.parquet") in result.err and "fix: " in result.err
