"""The frontier's envelope, distances, AIQ and CPT on points worked by hand, and in the report's tables."""

from __future__ import annotations

import pytest

from simulator.analyses import frontier
from simulator.report.build import load_report_inputs
from tests.conftest import World
from tests.report_helpers import build, tiny_world

A, B_LOW, B_HIGH, C, D = (0.001, 0.60), (0.004, 0.70), (0.004, 0.80), (0.010, 0.95), (0.012, 0.90)


def test_envelope_of_three_points_drops_the_one_below_the_hull():
    """On the segment A-C, at cost 0.004 the pass rate is 0.60 + 0.35 x 3/9 = 0.7167 > 0.70: B_LOW is
    inside; B_HIGH (0.80) is above it and is a vertex. D costs more than C for less: dominated."""
    assert frontier.envelope([C, A, B_LOW]) == [A, C]
    assert frontier.envelope([C, A, B_HIGH, D]) == [A, B_HIGH, C]
    assert frontier.envelope([A, (0.001, 0.5)]) == [A]


def test_distance_from_the_frontier_by_hand():
    """B_LOW against [A, C]: the frontier reaches 0.71667 at its cost (gap 0.016667) and reaches 0.70 at
    0.001 + 0.009 x 0.10 / 0.35 = 0.0035714 (excess 0.0004286 per request, 10.7% of its cost)."""
    hull = frontier.envelope([A, C, B_LOW])
    found = frontier.distance(hull, *B_LOW)
    assert found["quality_gap"] == pytest.approx(0.35 * 3 / 9 - 0.10)
    assert found["excess_cost_usd"] == pytest.approx(0.004 - (0.001 + 0.009 * 0.10 / 0.35))
    assert found["excess_cost_share"] == pytest.approx(found["excess_cost_usd"] / 0.004)
    on = frontier.distance(hull, *C)
    assert on["quality_gap"] == 0.0 and on["excess_cost_usd"] == 0.0
    assert frontier.quality_at(hull, 0.02) == 0.95  # beyond the last vertex it stays flat
    assert frontier.quality_at(hull, 0.0005) is None and frontier.cost_for(hull, 0.99) is None


def test_aiq_is_the_mean_pass_rate_under_the_envelope():
    """[A, C] over [0.001, 0.010]: (0.60 + 0.95) / 2 = 0.775. With B_HIGH: (0.003 x 0.70 + 0.006 x 0.875)
    / 0.009 = 0.81667. A point inside the hull adds nothing."""
    assert frontier.aiq([], [A, C], 0.001, 0.010) == pytest.approx(0.775)
    assert frontier.aiq([B_HIGH], [A, C], 0.001, 0.010) == pytest.approx((0.003 * 0.70 + 0.006 * 0.875) / 0.009)
    assert frontier.aiq([B_LOW], [A, C], 0.001, 0.010) == pytest.approx(0.775)
    assert frontier.aiq([B_HIGH], [A, C], 0.010, 0.010) is None


def test_cpt_interpolates_between_the_bracketing_sweep_points():
    """weak 0.60, strong 0.95 (gap 0.35): PGR of 0.70, 0.80, 0.90, 0.95 is 0.29, 0.57, 0.86, 1.0.
    50% is a pass rate of 0.775, between (0.70, 0.1) and (0.80, 0.3): 0.1 + 0.2 x 0.075 / 0.1 = 0.25.
    80% is 0.88, between (0.80, 0.3) and (0.90, 0.6): 0.3 + 0.3 x 0.08 / 0.1 = 0.54 (RouteLLM interpolates)."""
    points = [{"pass_rate": q, "strong_call_share": s} for q, s in ((0.70, 0.1), (0.80, 0.3), (0.90, 0.6), (0.95, 1.0))]
    assert frontier.cpt(points, 0.60, 0.95, 0.5) == pytest.approx(0.25)
    assert frontier.cpt(points, 0.60, 0.95, 0.8) == pytest.approx(0.54)
    assert frontier.cpt(points, 0.60, 0.95, 1.0) == 1.0  # reached exactly at a point
    assert frontier.cpt(points[:1], 0.60, 0.95, 0.8) is None
    assert frontier.cpt(points, 0.95, 0.60, 0.5) is None  # the strong model is not better


def test_report_holds_sweeps_and_the_frontier(tmp_path):
    """The tiny world: small ($0.0012) passes a and c, big ($0.012) passes all. The cascade's sweep over
    confidence (0.5, 0.8, 0.9, the scenario's 0.7 and just above) reaches 100% from 0.7 on: a and c stop at
    small, b escalates."""
    inputs = load_report_inputs(build(tiny_world(tmp_path), tmp_path / "tiny.html"))
    [swept] = inputs.tables[0]["sweeps"]
    assert (swept["plan"], swept["over"], swept["models"], swept["two_models"]) == (
        "default", "confidence", ["small", "big"], True)
    assert (swept["deployable"], swept["reads_grades"]) == (True, [])  # confidence is known when serving
    assert [p["threshold"] for p in swept["points"]][:4] == [0.5, 0.7, 0.8, 0.9]
    assert inputs.tables[1]["sweeps"] == []
    found = inputs.frontier
    cascade, big = found["policies"]
    # The cascade passes all at (3 x 0.0012 + 0.012) / 3 per request; big-everywhere pays 0.012 for the same.
    assert cascade["quality_gap"] == 0.0 and big["excess_cost_usd"] == pytest.approx(0.012 - (3 * 0.0012 + 0.012) / 3)
    # small alone (or the cascade at 0.5, the same point up to rounding), then the cascade at its own threshold.
    assert [p["pass_rate"] for p in found["frontier"]] == pytest.approx([2 / 3, 1.0])
    assert found["frontier"][-1]["name"] == "cascade"
    # weak small passes 2/3, strong big 3/3. The sweep goes from (strong share 0, pass 2/3) at 0.5 to (1/3, 1)
    # at 0.7; 50% of the gap is a pass rate of 5/6, reached at 1/3 x (1/6) / (1/3) = 1/6 between them, 80%
    # (14/15) at 1/3 x 0.8 = 4/15.
    assert cascade["cpt"]["cpt_50"] == pytest.approx(1 / 6) and cascade["cpt"]["cpt_80"] == pytest.approx(4 / 15)
    page = (tmp_path / "tiny.html").read_text()
    assert 'id="frontier-table"' in page and 'id="sweeps-table"' in page and 'id="chart-frontier"' in page
    assert "a bound, not deployable" not in page


def test_the_report_calls_a_sweep_of_a_gate_on_a_grade_a_bound(tmp_path):
    tiny_world(tmp_path)
    cascade = {"default": {"cascade": [{"model": "small", "accept": "score >= 0.5"}, {"model": "big"}]}}
    graded = World(tmp_path).scenario("graded", admission={"rule": "point"}, policy=cascade)
    inputs = load_report_inputs(build([graded], tmp_path / "graded.html"))
    [swept] = inputs.tables[0]["sweeps"]
    assert (swept["over"], swept["deployable"], swept["reads_grades"]) == ("score", False, ["score"])
    assert "a bound, not deployable: reads the grade score" in (tmp_path / "graded.html").read_text()


def test_cpt_counts_a_point_that_recovers_exactly_the_asked_share():
    from simulator.analyses.frontier import cpt

    # (0.7 - 0.5) / 0.4 is 0.49999999999999994 in floats: the point still recovers half the gap.
    points = [{"pass_rate": 0.7, "strong_call_share": 0.3}, {"pass_rate": 0.9, "strong_call_share": 0.5}]
    assert cpt(points, weak_quality=0.5, strong_quality=0.9, recovered=0.5) == 0.3
