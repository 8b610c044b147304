"""Served-only production logs, generated with the truth kept aside.

A real production log holds one answer per request: the one from the model that served it. This module
turns a generated full-matrix week (every candidate's answer to every request, `generate.generate_week`)
into such a log, with the full matrix written beside it (OUT-truth) as the truth that estimates are checked against.

- **Served-only.** A logging router picks one model per request from a known distribution (its
  propensities) and only that model's first answer is kept. Loggers: `uniform` (every model equally
  likely), `skewed` (easy slices mostly to the small models, hard ones mostly to the big ones, every model
  possible everywhere) and `by-slice` (deterministic: easy slices to `small`, hard ones to `flagship`).
  The traffic gains `served_model`, `logging_propensity` (the served model's probability) and one
  `propensity_<model>` column per candidate (the router's whole distribution, for the support check).
- **Shadow sample.** On top of that, a stratified sample of the requests (by slice, simple random sampling
  without replacement at a known rate) was re-run on every candidate: those requests carry every
  candidate's first answer, each with `inclusion_probability` = n_h / N_h of its slice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from simulator.core.contract import PROPENSITY_PREFIX, write_folder
from simulator.core.errors import RoutesimError
from simulator.core.draws import keyed_uniform
from simulator.core.outputs import check_destination
from simulator.core.sampling import stratified_sample
from simulator.datasets.generate import MODELS, SLICE_NAMES, generate_week

LOGGERS = ("uniform", "skewed", "by-slice")
EASY_SLICES = frozenset(SLICE_NAMES[:4])
# The skewed router's probabilities, in MODELS order (small, medium, large, flagship).
SKEWED_EASY = (0.55, 0.25, 0.15, 0.05)
SKEWED_HARD = (0.05, 0.15, 0.25, 0.55)
TRUTH_SUFFIX = "-truth"  # the truth goes beside the log, so rewriting the log (an import) never touches it
# Purposes of the keyed draws under one seed (simulator.core.draws): a request's router choice and shadow key
# are functions of (seed, purpose, request id), so they do not depend on the order of the requests.
_LOGGER_PURPOSE, _SHADOW_PURPOSE = "served-router", "served-shadow"


def logging_distribution(logger: str, slices: pl.Series, models: tuple[str, ...] = MODELS) -> np.ndarray:
    """The logging router's probability of each model (columns, in `models` order) for each request (rows)."""
    easy = slices.is_in(list(EASY_SLICES)).to_numpy()
    if logger == "uniform":
        return np.full((len(slices), len(models)), 1.0 / len(models))
    if logger == "skewed":
        return np.where(easy[:, None], np.array(SKEWED_EASY), np.array(SKEWED_HARD))
    if logger == "by-slice":
        chosen = np.where(easy, models.index("small"), models.index("flagship"))
        return (np.arange(len(models))[None, :] == chosen[:, None]).astype(np.float64)
    raise RoutesimError(f"unknown logging router '{logger}'", where="--served",
                        fix=f"use one of {', '.join(LOGGERS)}")


def serve(traffic: pl.DataFrame, outcomes: pl.DataFrame, logger: str, seed: int
          ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(traffic with the router's columns, every model's first answer with a `__served` flag).

    The router draws one model per request from `logging_distribution`; the draw is seeded by `seed`.
    """
    distribution = logging_distribution(logger, traffic["slice"])
    cdf = np.cumsum(distribution, axis=1)
    u = keyed_uniform(seed, _LOGGER_PURPOSE, traffic["request_id"])
    chosen = np.minimum((u[:, None] >= cdf).sum(axis=1), len(MODELS) - 1)
    served = pl.Series("served_model", MODELS, dtype=pl.String).gather(chosen)
    traffic = traffic.with_columns(
        served,
        pl.Series("logging_propensity", distribution[np.arange(traffic.height), chosen]),
        *(pl.Series(f"{PROPENSITY_PREFIX}{model}", distribution[:, index]) for index, model in enumerate(MODELS)),
    )
    first = outcomes.filter(pl.col("sample") == 0).join(
        traffic.select("request_id", "served_model"), on="request_id", how="left", maintain_order="left")
    first = first.with_columns((pl.col("model") == pl.col("served_model")).alias("__served")).drop("served_model")
    return traffic, first


def shadow(traffic: pl.DataFrame, answers: pl.DataFrame, rate: float, seed: int) -> pl.DataFrame:
    """The served answers plus every candidate's answer to a stratified sample of the requests.

    Each slice draws round(rate x its requests) requests (at least one), without replacement; their
    answers carry `inclusion_probability`, the served answers of the other requests leave it null.
    """
    if not 0 < rate <= 1:
        raise RoutesimError(f"the shadow rate must lie in (0, 1], got {rate}", where="--shadow-rate",
                            fix="e.g. --shadow-rate 0.1 re-runs a tenth of each slice on every candidate")
    codes = traffic["slice"].cast(pl.Enum(sorted(set(traffic["slice"])))).to_physical().to_numpy()
    population = np.bincount(codes)
    sizes = np.maximum(1, np.rint(rate * population)).astype(np.int64)
    drawn, probability = stratified_sample(codes, sizes, keyed_uniform(seed, _SHADOW_PURPOSE, traffic["request_id"]))
    sample = traffic.select("request_id").with_columns(
        pl.Series("__drawn", drawn), pl.Series("inclusion_probability", probability))
    joined = answers.join(sample, on="request_id", how="left", maintain_order="left")
    return joined.filter(pl.col("__served") | pl.col("__drawn")).with_columns(
        pl.when("__drawn").then("inclusion_probability").alias("inclusion_probability"),
    ).drop("__drawn")


def served_week(requests: int, days: int, seed: int, logger: str, *, shadow_rate: float | None = None,
                mix_shift: bool = True, gold_rate: float | None = None
                ) -> tuple[tuple[pl.DataFrame, pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]]:
    """((traffic, outcomes) of the served log, (traffic, outcomes) of the full matrix: the truth).

    With `gold_rate` both hold the judge's grades and the same gold subset (generate.with_gold)."""
    if logger not in LOGGERS:
        raise RoutesimError(f"unknown logging router '{logger}'", where="--served",
                            fix=f"use one of {', '.join(LOGGERS)}")
    chunks = list(generate_week(requests, days, seed, mix_shift=mix_shift, gold_rate=gold_rate))
    traffic = pl.concat([t for t, _ in chunks])
    outcomes = pl.concat([o for _, o in chunks])
    logged, answers = serve(traffic, outcomes, logger, seed)
    if shadow_rate is None:
        kept = answers.filter("__served").drop("__served")
    else:
        kept = shadow(logged, answers, shadow_rate, seed).drop("__served")
    return (logged, kept), (traffic, outcomes)


def write_served_week(out: Path, requests: int, days: int, seed: int, logger: str, *,
                      shadow_rate: float | None = None, mix_shift: bool = True, gold_rate: float | None = None,
                      progress: Callable[[str], None] | None = None) -> Path:
    """Writes the served log to `out` and the full matrix to the sibling `out`-truth; returns the truth folder.
    Both destinations are checked before anything is generated: a refusal of either leaves both as they were."""
    out = Path(out)
    truth = out.with_name(out.name + TRUTH_SUFFIX)
    check_destination(out, folder=True)
    try:
        check_destination(truth, folder=True)
    except RoutesimError as error:  # its name follows OUT's: the way around it is another OUT (or --force)
        raise RoutesimError(error.what, where=error.where,
                            fix=f"the truth's folder is named after OUT (OUT{TRUTH_SUFFIX}): give another OUT; "
                                f"else {error.fix}") from None
    (traffic, outcomes), (full_traffic, full_outcomes) = served_week(
        requests, days, seed, logger, shadow_rate=shadow_rate, mix_shift=mix_shift, gold_rate=gold_rate)
    if progress:
        progress("writing")
    write_folder(out, traffic, outcomes, {})
    write_folder(truth, full_traffic, full_outcomes, {})
    return truth
