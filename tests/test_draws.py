"""Counter-based draws (simulator/core/draws.py): a function of (seed, purpose, id) alone, checked against a
one-id-at-a-time implementation in Python integers (tests/reference.py), and the scenario sample built on
them."""

from __future__ import annotations

import numpy as np
import polars as pl

from simulator.core.draws import keyed_uniform
from simulator.core.engine import sample_rows
from tests.reference import keyed_draw

IDS = ["r1", "r2", "", "héllo", "a" * 300, "q0000017", "日本語", "r1 "] + [f"req-{i}" for i in range(200)]


def test_vectorised_draws_equal_the_python_reference_bit_for_bit():
    for seed, purpose in [(0, "sample"), (7, "sample"), (2**40 + 3, "bootstrap"), (7, "judge")]:
        expected = [keyed_draw(seed, purpose, key) for key in IDS]
        assert keyed_uniform(seed, purpose, IDS).tolist() == expected


def test_both_ways_of_hashing_ids_equal_the_python_reference(monkeypatch):
    """Ids are hashed by Horner's rule over a padded table when their lengths are close, else by summed
    weighted bytes (simulator.core.draws.PADDED_BYTES): each way, every id of mixed lengths (the empty one,
    multi-byte characters, one of 300 bytes) and ids of one length get the reference's draw."""
    import simulator.core.draws as draws

    same_width = [f"q{i:07d}" for i in range(50)]
    for padded in (0, 10**6):
        monkeypatch.setattr(draws, "PADDED_BYTES", padded)
        for ids in (IDS, same_width, IDS[8:]):
            assert keyed_uniform(7, "sample", ids).tolist() == [keyed_draw(7, "sample", key) for key in ids]


def test_a_draw_depends_on_its_id_not_on_order_chunks_or_company():
    whole = keyed_uniform(5, "sample", pl.Series(IDS))
    shuffled = np.random.default_rng(1).permutation(len(IDS))
    assert keyed_uniform(5, "sample", [IDS[i] for i in shuffled]).tolist() == whole[shuffled].tolist()
    chunked = pl.concat([pl.Series(IDS[:3]), pl.Series(IDS[3:50]), pl.Series(IDS[50:])], rechunk=False)
    assert chunked.n_chunks() == 3
    assert keyed_uniform(5, "sample", chunked).tolist() == whole.tolist()
    assert keyed_uniform(5, "sample", pl.Series(IDS).slice(40, 10)).tolist() == whole[40:50].tolist()


def test_seeds_and_purposes_give_separate_streams():
    base = keyed_uniform(5, "sample", IDS)
    assert not np.array_equal(base, keyed_uniform(6, "sample", IDS))
    assert not np.array_equal(base, keyed_uniform(5, "bootstrap", IDS))


def test_draws_are_uniform():
    # 100,000 ids: each decile holds 10,000 +- a few hundred (chi-square, 9 degrees of freedom, far below
    # its 0.1% critical value of 27.9), and the draws are uncorrelated with the id's position.
    draws = keyed_uniform(2026, "sample", [f"q{i:07d}" for i in range(100_000)])
    counts = np.bincount((draws * 10).astype(int), minlength=10)
    assert ((counts - 10_000) ** 2 / 10_000).sum() < 27.9
    assert abs(np.corrcoef(draws, np.arange(draws.size))[0, 1]) < 0.01
    assert draws.min() >= 0 and draws.max() < 1


def test_sample_is_nested_and_independent_of_row_order():
    ids = pl.Series("request_id", [f"r{i:04d}" for i in range(500)])
    small, large = sample_rows(ids, 30, seed=7), sample_rows(ids, 120, seed=7)
    assert len(small) == 30 and len(set(small)) == 30
    assert set(ids[small]) <= set(ids[large])
    reversed_ids = ids.reverse()
    assert set(reversed_ids[sample_rows(reversed_ids, 30, seed=7)]) == set(ids[small])
    assert list(small) == sorted(small)  # positions come back in the frame's own order


# The design-weighted bootstrap (analyses/estimates.py) and the public data's arrival order (datasets/
# public_sources.py) are keyed by request id too: a request's draws do not move with its row.

def _stratified(order: np.ndarray):
    from simulator.analyses.estimates import StratifiedSample

    ids = np.array([f"req-{i}" for i in range(60)])
    strata = np.arange(60) % 3
    strata[59] = 3  # a stratum of one drawn request
    passed = (np.arange(60) % 4 != 0).astype(np.float64)
    cost = 1.0 + (np.arange(60) % 7)
    return StratifiedSample(strata[order], np.full(60, 3.0), np.array([60.0, 60.0, 60.0, 3.0]),
                            {"passed": passed[order], "cost_usd": cost[order]}, keys=list(ids[order]))


def test_bootstrap_counts_follow_the_request_not_its_row():
    from simulator.analyses.estimates import sample_estimates

    order = np.random.default_rng(3).permutation(60)
    whole, shuffled = _stratified(np.arange(60)), _stratified(order)
    counts = whole.draw_counts(200, seed=9)
    assert np.array_equal(shuffled.draw_counts(200, seed=9), counts[:, order])
    assert sample_estimates(whole, resamples=200, seed=9) == sample_estimates(shuffled, resamples=200, seed=9)
    # A request's counts are the same whoever else was drawn: the first 30 rows alone give them too.
    from simulator.analyses.estimates import keyed_counts
    first = keyed_counts(whole.keys[:30], 200, 9, "stratified-bootstrap")
    assert np.array_equal(first, keyed_counts(whole.keys, 200, 9, "stratified-bootstrap")[:, :30])


def test_bootstrap_counts_are_the_gates_keyed_poisson_weights_and_never_empty_a_stratum():
    from simulator.analyses.estimates import keyed_counts
    from simulator.core.draws import splitmix64, stream
    from simulator.core.resample import weights

    sample = _stratified(np.arange(60))
    mixed = splitmix64(sample.keys ^ stream(9, "stratified-bootstrap"))
    first = keyed_counts(sample.keys, 7, 9, "stratified-bootstrap")
    assert all(np.array_equal(first[b], weights(mixed, b)) for b in range(7))
    counts = sample.draw_counts(400, seed=9)
    # The lone request of stratum 3 gets no count in about e^-1 of the first draws; redrawn, never.
    assert (first[:, 59] == 0).any() and (counts[:, 59] > 0).all()
    assert (np.stack([counts[:, sample.strata == h].sum(axis=1) for h in range(4)]) > 0).all()
    # Strata that were not empty keep their first draw.
    full = keyed_counts(sample.keys, 400, 9, "stratified-bootstrap")
    assert np.array_equal(counts[:, :59], full[:, :59])


def test_public_data_arrival_follows_the_request_not_the_source_order():
    import datetime as dt

    from simulator.datasets.public_sources import synthetic_ts

    ids = pl.Series(IDS[8:])
    order = np.random.default_rng(4).permutation(len(ids))
    whole = dict(zip(ids, synthetic_ts(dt.date(2024, 3, 18), ids)))
    shuffled = dict(zip(ids.gather(order), synthetic_ts(dt.date(2024, 3, 18), ids.gather(order))))
    assert whole == shuffled
    seconds = sorted(int((ts - dt.datetime(2024, 3, 18, tzinfo=dt.UTC)).total_seconds()) for ts in whole.values())
    assert seconds == list(range(len(ids)))
    # The order is that of the keyed draws u(2024, "arrival", id).
    draws = dict(zip(ids, keyed_uniform(2024, "arrival", ids)))
    assert sorted(ids, key=whole.get) == sorted(ids, key=draws.get)


def test_cross_fit_folds_follow_the_request_not_its_row():
    """DR's reward model: a request's fold is keyed by its id, so reordering the log moves no prediction
    (beyond the last bits of a refit on the same rows in another order)."""
    from simulator.analyses.offpolicy import cross_fit

    rng = np.random.default_rng(5)
    n = 300
    features = rng.normal(size=(n, 3))
    served = rng.integers(0, 2, n)
    target = rng.integers(0, 2, n)
    passed = (features[:, 0] + rng.normal(size=n) > 0).astype(np.float64)
    ids = [f"req-{i}" for i in range(n)]
    order = rng.permutation(n)
    whole = cross_fit(features, served, target, passed, classifier=True, ids=ids, seed=3)
    shuffled = cross_fit(features[order], served[order], target[order], passed[order], classifier=True,
                         ids=[ids[i] for i in order], seed=3)
    np.testing.assert_allclose(shuffled, whole[order], rtol=1e-9, atol=1e-12)
    other_seed = cross_fit(features, served, target, passed, classifier=True, ids=ids, seed=4)
    assert not np.allclose(other_seed, whole)  # the folds do depend on the seed
