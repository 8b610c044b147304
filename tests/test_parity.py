"""Parity of the vectorised engine with the per-request reference replay, over seeded random worlds.

Each world is replayed by both; failures must agree (the reference's ReferenceFailure vs the engine's
RoutesimError), and otherwise every decision row and every metric must be equal.

Float comparisons are exact (==) throughout: per-request cost and latency are sums in the same order in
both (0.0, then each call's cost in call order), the by-hand metrics add decisions in request order, and
the percentiles use numpy's default linear interpolation. No tolerance has been needed so far; should a
metric ever differ only in its last bits because a summation order changed, `_close_enough` documents
the one place a tolerance would go.
"""

from __future__ import annotations

import pytest
from reference import DECISION_KEYS, MissingOutcomes, ReferenceFailure, reference_replay
from worlds import World, random_world, replay_frames

from simulator.errors import RoutesimError
from simulator.metrics import METRIC_NAMES

SEEDS = range(300)


def _same(left, right) -> bool:
    """Exact equality, of the same type (so 1 is not 1.0 and None only equals None); floats with ==."""
    return type(left) is type(right) and left == right


def check_world(world: World, folder) -> str:
    """Replays `world` with both; asserts parity and returns what kind of world it was."""
    try:
        expected, summary = reference_replay(world.scenario, world.traffic, world.outcomes, world.sheet)
    except ReferenceFailure as failure:
        with pytest.raises(RoutesimError) as raised:
            replay_frames(folder, world.scenario, world.traffic, world.outcomes, world.sheet)
        if isinstance(failure, MissingOutcomes):
            counts = ", ".join(f"{model}: {count}" for model, count in failure.by_model.items())
            assert f"(requests per model: {counts})" in str(raised.value), (str(raised.value), world.describe())
            return "missing-error"
        return type(failure).__name__

    try:
        result, engine_summary = replay_frames(folder, world.scenario, world.traffic, world.outcomes, world.sheet)
    except RoutesimError as error:
        pytest.fail(f"engine raised but the reference replayed the world:\n{error}\n{world.describe()}")

    assert result.decisions.columns == ["rid", *DECISION_KEYS]
    actual = [{key: row[key] for key in DECISION_KEYS} for row in result.decisions.iter_rows(named=True)]
    assert len(actual) == len(expected), world.describe()
    for got, want in zip(actual, expected, strict=True):
        differing = {key: (got[key], want[key]) for key in DECISION_KEYS if not _same(got[key], want[key])}
        assert not differing, (f"request {want['request_id']}: engine vs reference {differing}\n"
                               f"{world.describe()}")

    for name in METRIC_NAMES:
        assert _same(engine_summary[name], summary[name]), (
            f"metric {name}: engine {engine_summary[name]!r} vs reference {summary[name]!r}\n{world.describe()}")

    coverage = summary["coverage"]
    assert result.coverage.requests_in_window == coverage.requests_in_window, world.describe()
    assert result.coverage.requests_replayed == coverage.requests_replayed, world.describe()
    assert result.coverage.missing_by_model == coverage.missing_by_model, world.describe()
    assert result.price_sources == summary["price_sources"], world.describe()
    return "skipped-some" if coverage.missing_by_model else "replayed"


@pytest.mark.parametrize("seed", SEEDS)
def test_engine_matches_reference(seed, tmp_path):
    check_world(random_world(seed), tmp_path)
