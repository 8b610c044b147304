"""Seeded stratified sampling: the draw behind shadow-sample plans and the generator's shadow mode.

Modelling assumption: within each stratum the sample is a simple random sample without replacement, so
every request of stratum h is drawn with the same inclusion probability n_h / N_h (Cochran, Sampling
Techniques, 3rd ed., ch. 5). The draw is a seeded random permutation within each stratum, vectorised over
all strata at once: one uniform key per request, ranked within its stratum; a request is drawn when its
rank is below the stratum's sample size.
"""

from __future__ import annotations

import numpy as np

from simulator.core.errors import RoutesimError


def draw_stream(seed: int, purpose: int) -> np.random.Generator:
    """The random stream of one purpose under one seed: the same (seed, purpose) gives the same draws."""
    return np.random.default_rng([seed, purpose])


def stratified_sample(strata: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(drawn, inclusion_probability) per request for a stratified simple random sample without replacement.

    `strata` holds a code 0..S-1 per request; `sizes[h]` is how many requests to draw from stratum h (clipped
    to the stratum's size). Returns a boolean mask and each request's inclusion probability n_h / N_h.
    """
    strata = np.asarray(strata, dtype=np.int64)
    population = np.bincount(strata, minlength=len(sizes))
    sizes = np.asarray(sizes, dtype=np.int64)
    if np.any(sizes < 0):
        raise RoutesimError("a stratum's sample size cannot be negative", fix="give sizes >= 0")
    taken = np.minimum(sizes, population)
    keys = rng.random(len(strata))
    order = np.lexsort((keys, strata))
    first = np.cumsum(population) - population
    rank = np.empty(len(strata), dtype=np.int64)
    rank[order] = np.arange(len(strata)) - np.repeat(first, population)
    drawn = rank < taken[strata]
    probability = np.where(population > 0, taken / np.maximum(population, 1), 0.0)[strata]
    return drawn, probability
