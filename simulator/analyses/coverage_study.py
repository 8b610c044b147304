"""A coverage study of the served-only estimators: tiny seeded worlds whose truth is known.

Used by the coverage tests (200 worlds per estimator) and `routesim bench --coverage` (2,000 or more).

A world is a full matrix (every model's answer to every request) from a small latent-ability model: its
truth is the policy's figure on every request. Each world is then logged as production would log it: a
stratified shadow sample (design-weighted) or one model per request picked by a randomising router
(off-policy). Everything is numpy, a few hundred requests per world, so hundreds of worlds take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from simulator.analyses.estimates import StratifiedSample, sample_estimates
from simulator.analyses.offpolicy import Logged, cross_fit, estimate
from simulator.core.sampling import stratified_sample

MODELS = 3
SLICES = 3
ABILITY = np.array([0.0, 1.2, 2.4])
PRICE = np.array([1e-6, 4e-6, 1.5e-5])  # USD per output token
SLICE_DIFFICULTY = np.array([-2.0, -0.5, 1.0])
SLICE_SHARE = np.array([0.5, 0.3, 0.2])
# The skewed router: per slice, the probability of each model (every model possible everywhere).
SKEWED = np.array([[0.6, 0.3, 0.1], [0.3, 0.4, 0.3], [0.1, 0.3, 0.6]])
# The one-call target policy: the model each slice is sent to.
TARGET = np.array([0, 1, 2])
METRICS = ("pass_rate", "cost_per_request_usd")


@dataclass(frozen=True)
class World:
    slice_code: np.ndarray
    log_tokens: np.ndarray  # a traffic feature (log input tokens)
    passed: np.ndarray  # requests x models
    output_tokens: np.ndarray  # requests x models
    confidence: np.ndarray  # requests x models

    @property
    def cost(self) -> np.ndarray:
        return self.output_tokens * PRICE[None, :]

    def features(self) -> np.ndarray:
        return np.hstack([(self.slice_code[:, None] == np.arange(SLICES)[None, :]).astype(np.float64),
                          self.log_tokens[:, None]])


def make_world(seed: int, requests: int) -> World:
    rng = np.random.default_rng([seed, 2026])
    slice_code = rng.choice(SLICES, size=requests, p=SLICE_SHARE)
    log_tokens = rng.normal(5.0 + slice_code, 0.5)
    difficulty = SLICE_DIFFICULTY[slice_code] + 0.6 * (log_tokens - 5.0 - slice_code) + rng.normal(0, 1.0, requests)
    margin = ABILITY[None, :] - difficulty[:, None] + rng.logistic(0, 0.5, (requests, MODELS))
    output = np.rint(np.exp(rng.normal(4.0 + 0.5 * slice_code[:, None] + 0.2 * np.arange(MODELS)[None, :], 0.5)))
    confidence = 1 / (1 + np.exp(-(0.8 * margin + rng.normal(0, 1.0, (requests, MODELS)))))
    return World(slice_code, log_tokens, margin > 0, output, confidence)


def cascade_truth(world: World) -> dict[str, np.ndarray]:
    """Per request, the figures of 'small first, accept at confidence >= 0.5, else the largest model'."""
    accepted = world.confidence[:, 0] >= 0.5
    passed = np.where(accepted, world.passed[:, 0], world.passed[:, -1])
    cost = world.cost[:, 0] + np.where(accepted, 0.0, world.cost[:, -1])
    return {"passed": passed.astype(np.float64), "cost_usd": cost,
            "escalated": (~accepted).astype(np.float64), "multi_step": np.ones(len(accepted))}


def design_weighted_world(seed: int, requests: int = 800, rate: float = 0.25, resamples: int = 300,
                          confidence: float = 0.95) -> list[tuple[str, float, float, float, float]]:
    """(metric, truth, estimate, low, high) of the cascade on a stratified shadow sample of one world."""
    world = make_world(seed, requests)
    figures = cascade_truth(world)
    population = np.bincount(world.slice_code, minlength=SLICES)
    sizes = np.maximum(2, np.rint(rate * population)).astype(np.int64)
    drawn, probability = stratified_sample(world.slice_code, sizes, np.random.default_rng([seed, 1]).random(requests))
    sample = StratifiedSample(world.slice_code[drawn], 1.0 / probability[drawn], population,
                              {name: values[drawn] for name, values in figures.items()},
                              keys=np.flatnonzero(drawn).astype(np.uint64))  # a request's index is its key
    truth = {"pass_rate": figures["passed"].mean(), "cost_per_request_usd": figures["cost_usd"].mean()}
    return [(e.metric, truth[e.metric], e.value, e.low, e.high)
            for e in sample_estimates(sample, resamples=resamples, seed=seed, confidence=confidence)
            if e.metric in truth]


def off_policy_world(seed: int, requests: int = 400, router: np.ndarray = SKEWED, confidence: float = 0.95
                     ) -> list[tuple[str, str, float, float, float, float]]:
    """(estimator, metric, truth, estimate, low, high) of the one-call target policy from one world's served log."""
    world = make_world(seed, requests)
    rows = np.arange(requests)
    target = TARGET[world.slice_code]
    distribution = router[world.slice_code]
    u = np.random.default_rng([seed, 3]).random(requests)
    served = np.minimum((u[:, None] >= np.cumsum(distribution, axis=1)).sum(axis=1), MODELS - 1)
    passed = world.passed[rows, served].astype(np.float64)
    tokens = world.output_tokens[rows, served]
    features = world.features()
    ids = [f"r{row}" for row in rows]
    m_pass = cross_fit(features, served, target, passed, classifier=True, ids=ids, seed=seed)
    m_tokens = cross_fit(features, served, target, tokens, classifier=False, ids=ids, seed=seed)
    logged = Logged(matched=served == target, target_propensity=distribution[rows, target],
                    y={"pass_rate": passed, "cost_per_request_usd": tokens * PRICE[served]},
                    dm={"pass_rate": m_pass, "cost_per_request_usd": m_tokens * PRICE[target]})
    truth = {"pass_rate": world.passed[rows, target].mean(), "cost_per_request_usd": world.cost[rows, target].mean()}
    return [(e.kind, e.metric, truth[e.metric], e.value, e.low, e.high)
            for metric in METRICS for e in estimate(logged, metric, confidence=confidence)]


ESTIMATORS = ("design-weighted", "IPS", "SNIPS", "DR")


def run_worlds(worlds: int, first_seed: int = 0) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """Per estimator, (metric, truth, estimate, low, high) per world and metric. Off-policy estimators share
    their worlds (one served log each, all three estimators on it)."""
    seeds = range(first_seed, first_seed + worlds)
    rows: dict[str, list] = {name: [] for name in ESTIMATORS}
    rows["design-weighted"] = [row for seed in seeds for row in design_weighted_world(seed)]
    for seed in seeds:
        for row in off_policy_world(seed):
            rows[row[0]].append(row[1:])
    return rows


def summarise(rows: list[tuple[str, float, float, float, float]]) -> list[dict]:
    """Per metric: worlds, coverage, mean error, its Monte Carlo standard error and the error in those units."""
    out = []
    for metric in METRICS:
        picked = [row[1:] for row in rows if row[0] == metric]
        if not picked:
            continue
        truth, value, low, high = (np.array(column, dtype=np.float64) for column in zip(*picked))
        error = value - truth
        standard_error = float(error.std(ddof=1) / np.sqrt(len(error)))
        out.append({"metric": metric, "worlds": len(truth),
                    "coverage": float(((low <= truth) & (truth <= high)).mean()),
                    "mean_error": float(error.mean()), "mc_standard_error": standard_error,
                    "bias_in_se": float(error.mean() / standard_error) if standard_error > 0 else 0.0,
                    "mean_width": float((high - low).mean())})
    return out


def coverage_band(worlds: int, nominal: float = 0.95, level: float = 0.999) -> tuple[float, float]:
    """Normal approximation of the coverage rates a correct interval reaches with probability `level`."""
    half = NormalDist().inv_cdf(0.5 + level / 2) * float(np.sqrt(nominal * (1 - nominal) / worlds))
    return max(0.0, nominal - half), min(1.0, nominal + half)
