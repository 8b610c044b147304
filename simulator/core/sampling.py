"""Seeded stratified sampling: the draw behind shadow-sample plans and the generator's shadow mode.

Modelling assumption: within each stratum the sample is a simple random sample without replacement, so
every request of stratum h is drawn with the same inclusion probability n_h / N_h (Cochran, Sampling
Techniques, 3rd ed., ch. 5). The draw is a seeded random permutation within each stratum, vectorised over
all strata at once: one uniform key per request, ranked within its stratum; a request is drawn when its
rank is below the stratum's sample size.

The keys are counter-based draws (simulator.core.draws.keyed_uniform): a request's key is a function of
(seed, purpose, request id) only, so whether a request is drawn depends on its own id and its stratum's
other requests, never on the order the requests are listed in.
"""

from __future__ import annotations

import numpy as np

from simulator.core.errors import RoutesimError


def stratified_sample(strata: np.ndarray, sizes: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(drawn, inclusion_probability) per request for a stratified simple random sample without replacement.

    `strata` holds a code 0..S-1 per request; `sizes[h]` is how many requests to draw from stratum h (clipped
    to the stratum's size); `keys` holds one uniform draw per request (simulator.core.draws.keyed_uniform): the requests of a
    stratum with the smallest keys are drawn (ties, which a 53-bit draw all but never gives, by position).
    Returns a boolean mask and each request's inclusion probability n_h / N_h.
    """
    strata = np.asarray(strata, dtype=np.int64)
    keys = np.asarray(keys, dtype=np.float64)
    if keys.shape != strata.shape:
        raise RoutesimError(f"{len(keys)} keys for {len(strata)} requests", fix="give one key per request")
    population = np.bincount(strata, minlength=len(sizes))
    sizes = np.asarray(sizes, dtype=np.int64)
    if np.any(sizes < 0):
        raise RoutesimError("a stratum's sample size cannot be negative", fix="give sizes >= 0")
    taken = np.minimum(sizes, population)
    order = np.lexsort((keys, strata))
    first = np.cumsum(population) - population
    rank = np.empty(len(strata), dtype=np.int64)
    rank[order] = np.arange(len(strata)) - np.repeat(first, population)
    drawn = rank < taken[strata]
    probability = np.where(population > 0, taken / np.maximum(population, 1), 0.0)[strata]
    return drawn, probability
