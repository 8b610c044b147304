"""Coverage of the served-only estimators: on hundreds of seeded served-only worlds, the 95% intervals of the
design-weighted, SNIPS and DR estimates of pass rate and cost per request cover each world's truth (its
full-matrix figure) at a rate inside the 99.9% binomial acceptance band around 0.95, and the mean error is
within three Monte Carlo standard errors of zero. `routesim bench --coverage` runs the same with 2,000 worlds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from simulator.analyses.coverage_study import design_weighted_world, off_policy_world

WORLDS = 200
NOMINAL = 0.95


def acceptance_band(worlds: int, nominal: float = NOMINAL, level: float = 0.999) -> tuple[float, float]:
    """Coverage rates a correct 95% interval reaches with probability `level` over `worlds` worlds."""
    tail = (1 - level) / 2
    return binom.ppf(tail, worlds, nominal) / worlds, binom.isf(tail, worlds, nominal) / worlds


def check(rows: list[tuple[float, float, float, float]]) -> None:
    truth, value, low, high = (np.array(column, dtype=np.float64) for column in zip(*rows))
    assert len(truth) >= WORLDS
    covered = float(((low <= truth) & (truth <= high)).mean())
    lower, upper = acceptance_band(len(truth))
    assert lower <= covered <= upper, f"coverage {covered:.3f} outside [{lower:.3f}, {upper:.3f}]"
    error = value - truth
    standard_error = error.std(ddof=1) / np.sqrt(len(error))
    assert abs(error.mean()) <= 3 * standard_error, f"mean error {error.mean():.3g}, 3 SE = {3 * standard_error:.3g}"


def test_the_acceptance_band_holds_99_9_percent_of_a_correct_intervals_coverage():
    # Summed from the binomial probabilities themselves: a correct 95% interval covers between `low` and
    # `high` of 200 worlds with probability at least 99.9%, and the band is no wider than it must be.
    low, high = (round(bound * 200) for bound in acceptance_band(200))

    def probability(k: int) -> float:
        return math.comb(200, k) * NOMINAL ** k * (1 - NOMINAL) ** (200 - k)

    assert sum(probability(k) for k in range(low)) <= 0.0005
    assert sum(probability(k) for k in range(low + 1)) > 0.0005
    assert sum(probability(k) for k in range(high + 1, 201)) <= 0.0005
    assert sum(probability(k) for k in range(high, 201)) > 0.0005


@pytest.fixture(scope="module")
def design_rows():
    return [row for seed in range(WORLDS) for row in design_weighted_world(seed)]


@pytest.fixture(scope="module")
def off_policy_rows():
    return [row for seed in range(WORLDS) for row in off_policy_world(seed)]


@pytest.mark.parametrize("metric", ["pass_rate", "cost_per_request_usd"])
def test_design_weighted_intervals_cover_the_full_matrix_figure(design_rows, metric):
    check([row[1:] for row in design_rows if row[0] == metric])


@pytest.mark.parametrize("estimator", ["SNIPS", "DR", "IPS"])
@pytest.mark.parametrize("metric", ["pass_rate", "cost_per_request_usd"])
def test_off_policy_intervals_cover_the_full_matrix_figure(off_policy_rows, estimator, metric):
    check([row[2:] for row in off_policy_rows if row[0] == estimator and row[1] == metric])
