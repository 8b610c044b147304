"""Mergeable partial aggregates of per-request decisions: what a shard or a chunk of a replay hands back.

Every figure of a summary is computed from partials, also for a replay in one piece (one partial), so a
replay split into any number of shards or chunks gives the same bytes as the whole:

- counts and money are integers (Int64 sums of exact nano-dollars), merged by adding;
- a mean of floats (`mean_score`) is the correctly rounded quotient of an exact sum: each float is split
  into an integer mantissa and a power of two, mantissas are added as integers per exponent, and the
  merged sum is one exact rational number (`exact_sums`), so the order of addition cannot matter;
- a quantile is exact, found in two passes: pass 1 merges per-part histograms of latencies, bucketed by the top bits
  of their IEEE 754 representation (monotone for non-negative floats), and finds the bucket holding each
  wanted order statistic; pass 2 gathers only those buckets' values from the parts kept per-request
  latencies (`values_in`) and selects the order statistics exactly. The value is then interpolated as
  polars' and numpy's linear quantile does (Hyndman and Fan's type 7): h = q (n - 1),
  v = x[floor h] + (x[floor h + 1] - x[floor h]) (h - floor h).

A `Parts` maps a scope name to three small frames keyed by `key` (the scope's group: a slice, a day, a
model, or "" for the whole replay): `counts` (one Int64 column per counter), `scores` (exact score sums
per binary exponent) and `histogram` (latency bucket counts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import polars as pl

# Counters per group, each an Int64 sum over the group's decisions.
COUNTERS: dict[str, Callable[[], pl.Expr]] = {
    "requests": lambda: pl.len(),
    "cost_nano": lambda: pl.col("cost_nano_usd").sum(),
    "passes": lambda: pl.col("passed").sum(),
    "scored": lambda: pl.col("score").count(),
    "multi": lambda: pl.col("multi_step").sum(),
    "escalated": lambda: (pl.col("escalated") & pl.col("multi_step")).sum(),
    "retried": lambda: (pl.col("retry_attempts") > 0).sum(),
    "exhausted": lambda: pl.col("retry_exhausted").sum(),
    "timed": lambda: pl.col("latency_ms").count(),
}
# A latency's bucket keeps the sign, the 11 exponent bits and the top 8 mantissa bits: 256 buckets per
# power of two, so a bucket holds well under 1% of the requests of any group.
BUCKET_SHIFT = 44
# Mantissas (53 bits) are added as two 26/27-bit halves, so 2^36 values add up without overflowing int64.
HALF = 26
# Every float64 is mantissa x 2^exponent with exponent >= -1126 (subnormals included); scaling sums by
# 2^SCALE makes every term an integer.
SCALE = 1126


@dataclass
class Parts:
    """Per scope: `counts`, `scores` and `histogram` frames (see the module docstring)."""

    scopes: dict[str, dict[str, pl.DataFrame]] = field(default_factory=dict)


def _score_terms(frame: pl.DataFrame) -> pl.DataFrame:
    """`key`, binary exponent `exp` and the integer mantissa halves `hi`, `lo` of every non-null score."""
    scored = frame.filter(pl.col("score").is_not_null())
    mantissa, exponent = np.frexp(scored["score"].to_numpy().astype(np.float64))
    whole = np.ldexp(mantissa, 53).astype(np.int64)  # exact: a float64 has 53 mantissa bits
    return pl.DataFrame({"key": scored["key"], "exp": (exponent - 53).astype(np.int64),
                         "hi": whole >> HALF, "lo": whole & ((1 << HALF) - 1)})


def _buckets(latency: pl.Series) -> np.ndarray:
    values = latency.to_numpy().astype(np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0
    return values.view(np.int64) >> BUCKET_SHIFT


def parts_of(decisions: pl.DataFrame, scopes: dict[str, pl.Expr], quantiled: tuple[str, ...]) -> Parts:
    """The counters of `decisions` per group of each scope (`scopes`: name -> the group key expression),
    with score sums, and latency histograms for the scopes in `quantiled`."""
    parts = Parts()
    for name, key in scopes.items():
        keyed = decisions.select(key.alias("key"), "cost_nano_usd", "passed", "score", "multi_step", "escalated",
                                 "retry_attempts", "retry_exhausted", "latency_ms")
        counts = (keyed.group_by("key").agg(*(expr().cast(pl.Int64).alias(name) for name, expr in COUNTERS.items()))
                  .sort("key", nulls_last=True))
        scores = _score_terms(keyed).group_by("key", "exp").agg(pl.col("hi").sum(), pl.col("lo").sum())
        frames = {"counts": counts, "scores": scores}
        if name in quantiled:
            timed = keyed.filter(pl.col("latency_ms").is_not_null())
            frames["histogram"] = (pl.DataFrame({"key": timed["key"], "bucket": _buckets(timed["latency_ms"])})
                                   .group_by("key", "bucket").agg(pl.len().cast(pl.Int64).alias("n")))
        parts.scopes[name] = frames
    return parts


def kept_latencies(decisions: pl.DataFrame, scopes: dict[str, pl.Expr], quantiled: tuple[str, ...]) -> pl.DataFrame:
    """What a part keeps for the second pass of its quantiles: each timed request's latency and its group
    key in every quantiled scope (one column per scope)."""
    return decisions.filter(pl.col("latency_ms").is_not_null()).select(
        *(scopes[name].alias(name) for name in quantiled), pl.col("latency_ms").cast(pl.Float64))


def merge_parts(many: list[Parts]) -> Parts:
    """One Parts from many: counters, score terms and histogram counts added per group (exact integers)."""
    merged = Parts()
    for name in many[0].scopes:
        frames = {}
        for kind, keys in (("counts", ["key"]), ("scores", ["key", "exp"]), ("histogram", ["key", "bucket"])):
            if kind not in many[0].scopes[name]:
                continue
            stacked = pl.concat([part.scopes[name][kind] for part in many], how="vertical_relaxed")
            values = [column for column in stacked.columns if column not in keys]
            frames[kind] = stacked.group_by(keys).agg(pl.col(values).sum()).sort(keys, nulls_last=True)
        merged.scopes[name] = frames
    return merged


def scaled_sums(scores: pl.DataFrame) -> dict[object, int]:
    """Per key, the exact sum of its scores times 2^SCALE, an integer (from the merged score terms)."""
    sums: dict = {}
    for key, exp, hi, lo in scores.sort("key", "exp", nulls_last=True).iter_rows():
        term = ((hi << HALF) + lo) << (exp + SCALE)
        sums[key] = sums.get(key, 0) + term
    return sums


def exact_sums(scores: pl.DataFrame) -> dict:
    """Per key, the exact sum of its scores as a Fraction (from the merged score terms)."""
    return {key: Fraction(total, 1 << SCALE) for key, total in scaled_sums(scores).items()}


def score_sums(keys: np.ndarray, scores: pl.Series) -> dict[object, int]:
    """Per key, the exact sum of the scores given with it (null: no score), times 2^SCALE (`scaled_sums`)."""
    frame = pl.DataFrame({"key": keys, "score": scores.cast(pl.Float64)})
    terms = _score_terms(frame).group_by("key", "exp").agg(pl.col("hi").sum(), pl.col("lo").sum())
    return scaled_sums(terms)


def exact_mean(total: Fraction, count: int) -> float | None:
    """The correctly rounded mean of `count` values summing exactly to `total` (None for no values)."""
    return float(total / count) if count else None


def _ranks(n: int, q: float) -> tuple[int, int, float]:
    """The two order statistics (0-based) and the fraction a linear q-quantile of n values interpolates."""
    h = q * (n - 1)
    low = math.floor(h)
    return low, min(low + 1, n - 1), h - low


Fetch = Callable[[dict[str, pl.DataFrame]], list[dict[str, pl.DataFrame]]]


def values_in(kept: pl.DataFrame, wanted: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Pass 2 on one part: per scope, the kept latencies of the wanted (`key`, `bucket`) pairs."""
    found = {}
    for name, pairs in wanted.items():
        mine = pl.DataFrame({"key": kept[name], "bucket": _buckets(kept["latency_ms"]),
                             "latency_ms": kept["latency_ms"]})
        found[name] = mine.join(pairs, on=["key", "bucket"], how="semi")
    return found


def quantiles(parts: Parts, quantiled: tuple[str, ...], qs: tuple[float, ...], fetch: Fetch) -> dict:
    """Exact linear quantiles of latency: {scope: {key: {q: value}}}, by the two passes of the module
    docstring. `fetch(wanted)` runs `values_in` on every part and returns the results."""
    plans: dict[str, dict] = {}
    wanted: dict[str, pl.DataFrame] = {}
    for name in quantiled:
        histogram = parts.scopes[name]["histogram"]
        plan, rows = {}, []
        for (key,), group in histogram.sort("key", "bucket", nulls_last=True).group_by("key", maintain_order=True):
            buckets, counts = group["bucket"].to_numpy(), group["n"].to_numpy()
            ends = np.cumsum(counts)
            total = int(ends[-1])
            picks = {}
            for q in qs:
                low, high, fraction = _ranks(total, q)
                located = []
                for rank in (low, high):
                    at = int(np.searchsorted(ends, rank, side="right"))
                    located.append((int(buckets[at]), rank - (int(ends[at - 1]) if at else 0)))
                    rows.append((key, int(buckets[at])))
                picks[q] = (located, fraction)
            plan[key] = picks
        plans[name] = plan
        key_type = histogram.schema["key"]
        wanted[name] = pl.DataFrame(rows, schema={"key": key_type, "bucket": pl.Int64}, orient="row").unique()
    gathered = fetch(wanted)
    result: dict[str, dict] = {}
    for name in quantiled:
        values = pl.concat([found[name] for found in gathered], how="vertical_relaxed")
        sorted_values = {(key, bucket): group["latency_ms"].sort().to_numpy()
                         for (key, bucket), group in values.group_by("key", "bucket")}
        result[name] = {}
        for key, picks in plans[name].items():
            chosen = {}
            for q, (located, fraction) in picks.items():
                low, high = (float(sorted_values[key, bucket][rank]) for bucket, rank in located)
                chosen[q] = low + (high - low) * fraction
            result[name][key] = chosen
    return result


def fetch_local(kept: list[pl.DataFrame]) -> Fetch:
    """Pass 2 over parts held in this process."""
    return lambda wanted: [values_in(part, wanted) for part in kept]
