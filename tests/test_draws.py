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
