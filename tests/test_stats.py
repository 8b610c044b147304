"""Wilson intervals and the paired bootstrap: hand-worked values, exactness, determinism and coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.core import resample, stats
from simulator.core.errors import RoutesimError
from simulator.core.money import NANO_PER_USD
from simulator.core.stats import (
    BASELINE_COST,
    BASELINE_LATENCY,
    BASELINE_PASS_RATE,
    CANDIDATE_COST,
    CANDIDATE_LATENCY,
    CANDIDATE_PASS_RATE,
    COST_CHANGE,
    COST_RELATIVE_CHANGE,
    LATENCY_CHANGE,
    PASS_RATE_CHANGE,
    PairedSample,
    PolicyOutcomes,
    bench_bootstrap,
    paired_bootstrap,
    wilson_interval,
    z_score,
)

# Wilson: (2k + z² ± z·sqrt(z² + 4k(n-k)/n)) / 2(n + z²), z = 1.959964, z² = 3.841459.

def test_wilson_eight_of_ten_by_hand():
    # centre 16 + 3.841459 = 19.841459; spread 1.959964 x sqrt(3.841459 + 6.4) = 6.272332; over 27.682918
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(13.569127 / 27.682918, abs=1e-6)  # 0.490163
    assert high == pytest.approx(26.113791 / 27.682918, abs=1e-6)  # 0.943318


def test_forty_of_forty_cannot_prove_a_95_percent_pass_rate():
    # k = n: the lower bound is n / (n + z²) = 40 / 43.841459 = 0.912378
    low, high = wilson_interval(40, 40)
    assert low == pytest.approx(40 / 43.841459, abs=1e-6)
    assert high == 1.0
    assert low < 0.95


def test_wilson_edges():
    assert wilson_interval(0, 10) == (0.0, pytest.approx(3.841459 / 13.841459, abs=1e-6))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert z_score(0.95) == pytest.approx(1.959964, abs=1e-6)
    low_99, high_99 = wilson_interval(8, 10, 0.99)
    low_95, high_95 = wilson_interval(8, 10, 0.95)
    assert low_99 < low_95 and high_99 > high_95


def test_wilson_is_vectorised():
    successes, trials = np.array([8, 40, 0, 0, 37]), np.array([10, 40, 10, 0, 50])
    low, high = wilson_interval(successes, trials)
    for k, n, lo, hi in zip(successes, trials, low, high):
        assert (lo, hi) == wilson_interval(int(k), int(n))


@pytest.mark.parametrize("successes, trials, confidence", [(11, 10, 0.95), (-1, 10, 0.95), (5, 10, 1.0),
                                                            (5, 10, 0.0)])
def test_wilson_rejects_impossible_input(successes, trials, confidence):
    with pytest.raises(RoutesimError):
        wilson_interval(successes, trials, confidence)


@pytest.mark.parametrize("trials, rate", [(200, 0.90), (500, 0.95), (150, 0.80)])
def test_wilson_95_percent_intervals_cover_the_true_rate_93_to_97_percent_of_the_time(trials, rate):
    repetitions = 20_000
    passes = np.random.default_rng(11).binomial(trials, rate, size=repetitions)
    low, high = wilson_interval(passes, np.full(repetitions, trials))
    coverage = np.mean((low <= rate) & (rate <= high))
    assert 0.93 <= coverage <= 0.97, coverage


def paired_world(n: int, strata: int, seed: int, *, untimed: float = 0.0
                 ) -> tuple[PolicyOutcomes, PolicyOutcomes, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Rounded latencies make ties, the hard case for order statistics; `untimed` of the requests have no
    # latency (batch answers). Costs in whole nano-dollars (about $0.0025 and $0.0009 per request).
    def latency():
        return np.where(rng.random(n) < untimed, np.nan, np.round(rng.lognormal(6, 1, n), -1))

    baseline = PolicyOutcomes(rng.random(n) < 0.9, np.rint(rng.lognormal(-6, 1, n) * 1e9), latency())
    candidate = PolicyOutcomes(rng.random(n) < 0.8, np.rint(rng.lognormal(-7, 1, n) * 1e9), latency())
    return baseline, candidate, rng.integers(0, strata, n)


def reference_weights(sample: PairedSample, resamples: int, seed: int) -> np.ndarray:
    """(resamples, requests in layout order): each request's Poisson weight from its key, in numpy."""
    keys = resample.mixed_keys(sample.hashes[sample.layout], seed)
    return np.stack([resample.weights(keys, b) for b in range(resamples)])


def expanded_statistics(sample: PairedSample, baseline, candidate, weights: np.ndarray, stratum: int) -> dict:
    """The statistics of one resample the slow way: repeat each request as often as its weight says."""
    layout = sample.layout
    mask = sample.position_stratum == stratum
    repeat = weights[mask]

    def expand(values):
        return np.repeat(np.asarray(values, dtype=np.float64)[layout][mask], repeat)

    def p95(values):
        timed = expand(values)
        timed = timed[np.isfinite(timed)]  # requests without a latency are left out
        return np.quantile(timed, 0.95) if timed.size else np.nan

    return {BASELINE_PASS_RATE: expand(baseline.passed).mean(), CANDIDATE_PASS_RATE: expand(candidate.passed).mean(),
            BASELINE_COST: expand(baseline.cost_nano_usd).mean() / 1e9,
            CANDIDATE_COST: expand(candidate.cost_nano_usd).mean() / 1e9,
            BASELINE_LATENCY: p95(baseline.latency_ms), CANDIDATE_LATENCY: p95(candidate.latency_ms)}


@pytest.mark.parametrize("strata, untimed, dollars", [(1, 0.1, 1), (4, 0.1, 1), (4, 0.0, 1), (3, 0.0, 1000)])
def test_resampled_statistics_equal_the_expanded_resample(strata, untimed, dollars):
    # With and without requests lacking a latency (flags summed two to an int32, with or without the
    # timed ones), and costs of dollars rather than cents per request (above 2^31 nano-dollars: summed in
    # int64, not int32).
    baseline, candidate, codes = paired_world(600, strata, seed=3, untimed=untimed)
    baseline = PolicyOutcomes(baseline.passed, baseline.cost_nano_usd * dollars, baseline.latency_ms)
    assert (baseline.cost_nano_usd.max() >= 2**31) == (dollars > 1)
    sample = PairedSample(baseline, candidate, codes)
    resamples = 25
    by_stratum, overall = stats.resampled(sample, resamples, seed=7)
    weights = reference_weights(sample, resamples, seed=7)
    assert weights.min() == 0 and weights.max() >= 4 and abs(weights.mean() - 1) < 0.02  # Poisson(1) counts
    for row in range(resamples):
        for stratum in range(sample.strata):
            expected = expanded_statistics(sample, baseline, candidate, weights[row], stratum)
            for name in (BASELINE_LATENCY, CANDIDATE_LATENCY):
                assert by_stratum[name][row, stratum] == expected[name]  # exact, to the bit
            for name in (BASELINE_PASS_RATE, CANDIDATE_PASS_RATE, BASELINE_COST, CANDIDATE_COST):
                assert by_stratum[name][row, stratum] == pytest.approx(expected[name], rel=1e-12)
        whole = expanded_statistics(PairedSample(baseline, candidate), baseline, candidate,
                                    weights[row][np.argsort(sample.layout)][PairedSample(baseline, candidate).layout], 0)
        assert overall[BASELINE_LATENCY][row, 0] == whole[BASELINE_LATENCY]
        assert overall[CANDIDATE_PASS_RATE][row, 0] == pytest.approx(whole[CANDIDATE_PASS_RATE], rel=1e-12)


def test_poisson_counts_by_comparison_equal_the_inverse_distribution():
    # Every threshold and its neighbours, the edges of the 32-bit range and of the signed halves.
    edges = [0, 2**31 - 1, 2**31, 2**32 - 1, *(int(t) + d for t in resample.THRESHOLDS for d in (-1, 0, 1)),
             *(b << 16 for b in range(0, 2**16, 97)), *((b << 16) - 1 for b in range(1, 2**16, 89))]
    found = [resample.count(u) for u in edges]
    assert found == resample.poisson_weights(np.array(edges, dtype=np.uint64)).tolist()
    assert max(found) == len(resample.THRESHOLDS)  # the top of the range walks all the way up
    # P(W >= j) from the thresholds is the Poisson(1) tail to within 2^-32.
    tail = [1 - sum(math.exp(-1) / math.factorial(k) for k in range(j)) for j in range(1, 8)]
    shares = [(2**32 - int(t)) / 2**32 for t in resample.THRESHOLDS[:7]]
    assert shares == pytest.approx(tail, abs=2**-31)


def test_a_block_of_weights_compares_the_tail_thresholds_only_where_a_draw_reaches_them():
    # The compiled loops draw a block's two resamples at once, with the six lowest thresholds, and compare
    # the others only in a block where some draw reaches the seventh: both kinds of block give the numpy
    # weights.
    keys = resample.mixed_keys(np.arange(resample.BLOCK * 40, dtype=np.uint64), seed=5)
    streams = resample.pair_streams(3)
    low, high = np.empty(resample.BLOCK, dtype=np.int32), np.empty(resample.BLOCK, dtype=np.int32)
    largest = []
    for pair in range(3):
        expected = [resample.weights(keys, 2 * pair), resample.weights(keys, 2 * pair + 1)]
        for first in range(0, keys.size, resample.BLOCK):
            resample._draw(keys, first, resample.BLOCK, streams[pair], low, high)
            block = slice(first, first + resample.BLOCK)
            assert low.tolist() == expected[0][block].tolist() and high.tolist() == expected[1][block].tolist()
            largest.append(max(low.max(), high.max()))
    assert min(largest) <= resample.HEAD < max(largest)


def test_a_walk_that_runs_out_of_the_slowest_requests_walks_the_whole_stratum(monkeypatch):
    # The p95 walks keep a stratum's slowest requests only: about twice the share above the p95. Kept to
    # just what the sample's own p95 needs, about half the resamples' walks run out and walk the whole
    # stratum again, with the same replicates.
    baseline, candidate, codes = paired_world(2000, 3, seed=12, untimed=0.1)
    expected = stats.resampled(PairedSample(baseline, candidate, codes), 40, seed=2)
    walked, walk = [], stats._walk

    def spy(*arguments):
        walked.append(arguments[4])  # whole
        return walk(*arguments)

    monkeypatch.setattr(stats, "walk_length", lambda size, q: min(size, math.ceil((1 - q) * (size - 1)) + 2))
    monkeypatch.setattr(stats, "_walk", spy)
    found = stats.resampled(PairedSample(baseline, candidate, codes), 40, seed=2)
    assert walked == [False, True]
    for part, same in zip(expected, found):
        for name in part:
            np.testing.assert_array_equal(part[name], same[name])


def test_weighted_p95_by_hand():
    # Four requests; find the resample whose weights are 2, 0, 1, 3: the resample is then 100, 100, 300,
    # 400, 400, 400 ms, whose median (q = 0.5) interpolates halfway between the 3rd and 4th: 350 ms, and
    # whose pass rate is (2 + 1) / 6 with passes on the first and third requests.
    latency = np.array([100.0, 200.0, 300.0, 400.0])
    side = PolicyOutcomes(np.array([True, False, True, False]), np.ones(4), latency)
    sample = PairedSample(side, side, quantile=0.5, keys=["a", "b", "c", "d"])
    weights = reference_weights(sample, 20_000, seed=1)
    by_key = weights[:, np.argsort(sample.layout)]  # columns back in a, b, c, d order
    row = int(np.flatnonzero((by_key == [2, 0, 1, 3]).all(axis=1))[0])
    by_stratum, _ = stats.resampled(sample, row + 1, seed=1)
    assert by_stratum[BASELINE_LATENCY][row, 0] == 350.0
    assert by_stratum[BASELINE_PASS_RATE][row, 0] == 3 / 6


def test_estimates_are_the_statistics_of_the_sample_itself():
    baseline, candidate, codes = paired_world(500, 3, seed=8, untimed=0.2)
    estimates = PairedSample(baseline, candidate, codes).estimates()
    for stratum in range(3):
        mask = codes == stratum
        timed = baseline.latency_ms[mask]
        assert estimates[BASELINE_LATENCY][stratum] == np.quantile(timed[np.isfinite(timed)], 0.95)
        assert estimates[PASS_RATE_CHANGE][stratum] == pytest.approx(
            candidate.passed[mask].mean() - baseline.passed[mask].mean(), abs=1e-12)
        assert estimates[COST_RELATIVE_CHANGE][stratum] == pytest.approx(
            candidate.cost_nano_usd[mask].sum() / baseline.cost_nano_usd[mask].sum() - 1, rel=1e-12)


def test_identical_policies_have_intervals_of_zero_width():
    baseline, _, codes = paired_world(400, 2, seed=1)
    result = paired_bootstrap(PairedSample(baseline, baseline, codes), resamples=200, seed=0)
    for name in (PASS_RATE_CHANGE, COST_CHANGE, COST_RELATIVE_CHANGE, LATENCY_CHANGE):
        assert (result.low[name] == 0).all() and (result.high[name] == 0).all(), name


def test_a_constant_shift_is_recovered_exactly_in_every_resample():
    # The candidate costs $0.001 more and answers 100 ms later on every request, with the same verdicts:
    # every resample's change is exactly that, so the interval is a single point.
    baseline, _, _ = paired_world(300, 1, seed=2)
    shifted = PolicyOutcomes(baseline.passed, baseline.cost_nano_usd + 1_000_000, baseline.latency_ms + 100)
    result = paired_bootstrap(PairedSample(baseline, shifted), resamples=100, seed=4)
    assert result.interval(COST_CHANGE) == pytest.approx((0.001, 0.001, 0.001), abs=1e-12)
    assert result.interval(LATENCY_CHANGE) == pytest.approx((100, 100, 100), abs=1e-9)
    assert result.interval(PASS_RATE_CHANGE) == (0.0, 0.0, 0.0)


def test_one_flipped_request_of_two_by_hand():
    # Baseline passes [yes, no], candidate [yes, yes]: the change is w2 / (w1 + w2) for Poisson(1) weights.
    # No weight at all (probability e^-2 = 0.135) says nothing and is left out; of the rest, the change is
    # 0 with probability e^-1 (1 - e^-1) / (1 - e^-2) = 0.269, 1 likewise, 0.5 with probability
    # e^-2 (I0(2) - 1) / (1 - e^-2) = 0.200, so the 95% interval spans [0, 1].
    baseline = PolicyOutcomes(np.array([True, False]), np.ones(2), np.ones(2))
    candidate = PolicyOutcomes(np.array([True, True]), np.ones(2), np.ones(2))
    result = paired_bootstrap(PairedSample(baseline, candidate), resamples=4000, seed=0)
    empty = result.replicates[stats.RESAMPLED_REQUESTS][:, 0] == 0
    changes = result.replicates[PASS_RATE_CHANGE][~empty, 0]
    assert np.mean(empty) == pytest.approx(math.exp(-2), abs=0.02)
    assert np.mean(changes == 0) == pytest.approx(0.269, abs=0.025)
    assert np.mean(changes == 0.5) == pytest.approx(0.200, abs=0.025)
    assert result.interval(PASS_RATE_CHANGE) == (0.5, 0.0, 1.0)


def test_same_result_whatever_the_order_of_the_requests_or_the_threads():
    baseline, candidate, codes = paired_world(1000, 3, seed=6, untimed=0.05)
    ids = [f"req-{i}" for i in range(1000)]
    first = paired_bootstrap(PairedSample(baseline, candidate, codes, keys=ids), resamples=64, seed=9, workers=1)
    shuffled = np.random.default_rng(0).permutation(1000)

    def moved(side: PolicyOutcomes) -> PolicyOutcomes:
        return PolicyOutcomes(side.passed[shuffled], side.cost_nano_usd[shuffled], side.latency_ms[shuffled])

    second = paired_bootstrap(PairedSample(moved(baseline), moved(candidate), codes[shuffled],
                                           keys=[ids[i] for i in shuffled]), resamples=64, seed=9, workers=2)
    for name in first.replicates:
        np.testing.assert_array_equal(first.replicates[name], second.replicates[name])
    more = paired_bootstrap(PairedSample(baseline, candidate, codes, keys=ids), resamples=80, seed=9)
    np.testing.assert_array_equal(more.replicates[PASS_RATE_CHANGE][:64], first.replicates[PASS_RATE_CHANGE])
    other = paired_bootstrap(PairedSample(baseline, candidate, codes, keys=ids), resamples=64, seed=10)
    assert not np.array_equal(first.replicates[PASS_RATE_CHANGE], other.replicates[PASS_RATE_CHANGE])


def test_paired_bootstrap_rejects_bad_settings():
    baseline, candidate, _ = paired_world(10, 1, seed=0)
    with pytest.raises(RoutesimError):
        paired_bootstrap(PairedSample(baseline, candidate), resamples=0)
    with pytest.raises(RoutesimError):
        paired_bootstrap(PairedSample(baseline, candidate), confidence=1.5)


def test_paired_bootstrap_95_percent_intervals_cover_the_true_change_93_to_97_percent_of_the_time():
    # 2,000 synthetic worlds of 200 paired requests, bootstrapped together as 2,000 strata (each stratum is
    # resampled within itself, so every world gets its own bootstrap) with 500 resamples each. The baseline
    # passes with probability 0.85; the candidate copies the baseline's verdict half the time and otherwise
    # passes with probability 0.6, so the true change is 0.5 x 0.85 + 0.5 x 0.6 - 0.85 = -0.125.
    # Over many seeds the coverage of this set-up averages 94.8%; 2,000 worlds put the Monte Carlo standard
    # error at 0.5 points, so 93%..97% is more than three standard errors either side.
    worlds, size = 2000, 200
    rng = np.random.default_rng(2026)
    total = worlds * size
    baseline_passed = rng.random(total) < 0.85
    candidate_passed = np.where(rng.random(total) < 0.5, baseline_passed, rng.random(total) < 0.6)
    true_change = 0.5 * 0.85 + 0.5 * 0.6 - 0.85
    latency = rng.random(total)
    sample = PairedSample(PolicyOutcomes(baseline_passed, np.ones(total), latency),
                          PolicyOutcomes(candidate_passed, np.ones(total), latency),
                          np.repeat(np.arange(worlds), size))
    result = paired_bootstrap(sample, resamples=500, seed=0)
    covered = (result.low[PASS_RATE_CHANGE] <= true_change) & (true_change <= result.high[PASS_RATE_CHANGE])
    assert 0.93 <= covered.mean() <= 0.97, covered.mean()


def test_bench_bootstrap_times_a_run():
    assert bench_bootstrap(requests=5_000, resamples=10, seed=0) > 0


def test_cost_change_intervals_are_studentized_and_cover_skewed_costs():
    # 2,000 worlds of 200 paired requests (each its own stratum, 500 resamples). Baseline costs are
    # log-normal (sigma 1.2, heavily skewed, as token-priced calls are); the candidate halves the cost of a
    # random half of the requests, so the true change in mean cost is -0.25 x E[cost] = -0.25 exp(mu + s²/2).
    # The percentile interval of these replicates covers too rarely; the studentized one holds 93%..97%.
    worlds, size, mu, sigma = 2000, 200, math.log(2_000_000), 1.0  # a median call of $0.002, in nano-dollars
    rng = np.random.default_rng(7)
    total = worlds * size
    baseline_cost = np.round(rng.lognormal(mu, sigma, total))
    candidate_cost = np.where(rng.random(total) < 0.5, np.round(0.5 * baseline_cost), baseline_cost)
    true_change = -0.25 * np.exp(mu + sigma ** 2 / 2) / NANO_PER_USD  # rounding moves it by under a nano-dollar
    passed, latency = np.ones(total, dtype=bool), rng.random(total)
    sample = PairedSample(PolicyOutcomes(passed, baseline_cost, latency), PolicyOutcomes(passed, candidate_cost, latency),
                          np.repeat(np.arange(worlds), size))
    result = paired_bootstrap(sample, resamples=500, seed=0)
    covered = (result.low[COST_CHANGE] <= true_change) & (true_change <= result.high[COST_CHANGE])
    percentile = np.quantile(result.replicates[COST_CHANGE], [0.025, 0.975], axis=0)
    percentile_covered = (percentile[0] <= true_change) & (true_change <= percentile[1])
    assert 0.93 <= covered.mean() <= 0.97, covered.mean()
    assert percentile_covered.mean() < covered.mean(), (percentile_covered.mean(), covered.mean())
