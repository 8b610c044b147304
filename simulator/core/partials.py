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


def _mantissas(scores: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each score as (binary exponent, integer mantissa halves hi and lo): score = (hi 2^HALF + lo) 2^exp."""
    mantissa, exponent = np.frexp(scores.cast(pl.Float64).to_numpy())
    whole = np.ldexp(mantissa, 53).astype(np.int64)  # exact: a float64 has 53 mantissa bits
    return (exponent - 53).astype(np.int64), whole >> HALF, whole & ((1 << HALF) - 1)


def _buckets(latency: pl.Series) -> np.ndarray:
    values = latency.to_numpy().astype(np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0
    return values.view(np.int64) >> BUCKET_SHIFT


def scope_keys(decisions: pl.DataFrame, scopes: dict[str, pl.Expr]) -> pl.DataFrame:
    """Each decision's group key in every scope, one column per scope, computed once for `parts_of` and
    `kept_latencies`. A constant key (the whole replay's) has a row per decision too."""
    aliases = {f"__scope{index}": name for index, name in enumerate(scopes)}
    return (decisions.with_columns(key.alias(alias) for alias, key in zip(aliases, scopes.values()))
            .select(pl.col(alias).alias(name) for alias, name in aliases.items()))


def _groups(key: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Each row's group number (0, 1, ...) and the groups' keys in key order, nulls last (as sorting the
    keys orders them): group g holds the rows whose key is keys[g]."""
    if key.null_count() == 0 and key.dtype == pl.String:
        keys = key.unique().sort()
        return key.cast(pl.Enum(keys)).to_physical().to_numpy().astype(np.int64), keys
    if key.null_count() == 0 and (key.dtype.is_integer() or key.dtype.is_temporal()):
        # ordered as their physical integers
        physical = key.to_physical()
        raw = physical.to_numpy()
        if bool((np.diff(raw) >= 0).all()):  # already in order (a day or a time bucket of requests in arrival order)
            first = np.r_[True, raw[1:] != raw[:-1]] if raw.size else np.zeros(0, bool)
            values, number = raw[first], np.cumsum(first) - 1
        else:
            values, number = np.unique(raw, return_inverse=True)
        return number.ravel().astype(np.int64), pl.Series(key.name, values, dtype=physical.dtype).cast(key.dtype)
    ranks = key.rank("dense")  # 1, 2, ... in key order; null for a null key
    ranks = ranks.fill_null((ranks.max() or 0) + 1).to_numpy()
    _, first, number = np.unique(ranks, return_index=True, return_inverse=True)
    return number.ravel().astype(np.int64), key.gather(first)


# Sums by a combined group number are counted in a table of this many slots per row at most (np.bincount);
# beyond it, the numbers are sorted instead.
TABLE_SLOTS_PER_ROW = 4
# np.bincount adds in float64, exact while every sum stays below 2^53: at most this many mantissa halves
# (each below 2^27) per table.
EXACT_FLOAT_TERMS = 1 << 26


def _sums_by(combined: np.ndarray, size: int, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """The distinct values of `combined` (ascending; each in 0..size-1), and per distinct value the exact
    integer sum of each of `values` (the count of rows when none is given)."""
    if size <= TABLE_SLOTS_PER_ROW * combined.size + 1024 and combined.size <= EXACT_FLOAT_TERMS:
        counts = np.bincount(combined, minlength=size)
        found = np.flatnonzero(counts)
        if not values:
            return found, counts[found].astype(np.int64)
        return found, *(np.bincount(combined, weights=value, minlength=size)[found].astype(np.int64) for value in values)
    order = np.argsort(combined)
    ordered = combined[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if ordered.size else np.zeros(0, np.int64)
    if not values:
        return ordered[starts], np.diff(np.r_[starts, ordered.size]).astype(np.int64)
    return ordered[starts], *(np.add.reduceat(value[order], starts) if starts.size else value[:0] for value in values)


def parts_of(decisions: pl.DataFrame, scopes: dict[str, pl.Expr], quantiled: tuple[str, ...],
             keys: pl.DataFrame | None = None) -> Parts:
    """The counters of `decisions` per group of each scope (`scopes`: name -> the group key expression),
    with score sums, and latency histograms for the scopes in `quantiled`. `keys`: `scope_keys`, when
    already computed.

    Each scope's groups are numbered once (`_groups`). The counters are taken once per cell (the requests
    sharing their group in every scope) and added up per group, as parts merge; the scores' mantissas and
    the latencies' buckets are computed once, and summed per (group, exponent) and counted per (group,
    bucket), all as integers."""
    keys = scope_keys(decisions, scopes) if keys is None else keys
    grouped = {name: _groups(keys[name]) for name in scopes}
    cells = _cell_counts(decisions, [number for number, _ in grouped.values()],
                         [values.len() for _, values in grouped.values()])
    scored = np.flatnonzero(decisions["score"].is_not_null().to_numpy())
    exponent, hi, lo = _mantissas(decisions["score"].gather(scored))
    timed = np.flatnonzero(decisions["latency_ms"].is_not_null().to_numpy())
    buckets = _buckets(decisions["latency_ms"].gather(timed))
    low_bucket = int(buckets.min()) if buckets.size else 0
    bucket_span = int(buckets.max()) - low_bucket + 1 if buckets.size else 1
    parts = Parts()
    for index, (name, (number, values)) in enumerate(grouped.items()):
        counts = (cells.group_by(f"__group{index}").agg(pl.col(*COUNTERS).sum()).sort(f"__group{index}"))
        counts = counts.select(values.gather(counts[f"__group{index}"].to_numpy()).alias("key"), *COUNTERS)
        groups = values.len()
        group, exp, hi_sums, lo_sums = _score_terms(number[scored], groups, exponent, hi, lo)
        scores = pl.DataFrame({"key": values.gather(group), "exp": exp, "hi": hi_sums, "lo": lo_sums})
        frames = {"counts": counts, "scores": scores}
        if name in quantiled:
            at, n = _sums_by(number[timed] * bucket_span + (buckets - low_bucket), groups * bucket_span)
            frames["histogram"] = pl.DataFrame({"key": values.gather(at // bucket_span),
                                                "bucket": at % bucket_span + low_bucket, "n": n})
        parts.scopes[name] = frames
    return parts


def _score_terms(number: np.ndarray, groups: int, exponent: np.ndarray, hi: np.ndarray,
                 lo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (group, exponent) present, in that order: the group (`number`: each score's, below `groups`), the
    binary exponent and the exact sums of the mantissa halves `hi` and `lo` (`_mantissas`), by `_sums_by`."""
    low_exp = int(exponent.min()) if exponent.size else 0
    exp_span = int(exponent.max()) - low_exp + 1 if exponent.size else 1
    at, hi_sums, lo_sums = _sums_by(number * exp_span + (exponent - low_exp), groups * exp_span, hi, lo)
    return at // exp_span, at % exp_span + low_exp, hi_sums, lo_sums


def _cell_counts(decisions: pl.DataFrame, numbers: list[np.ndarray], sizes: list[int]) -> pl.DataFrame:
    """The COUNTERS of `decisions` per cell, the rows that share their group number in every scope
    (`numbers`, each below its `sizes`), with each scope's group number as `__group0`, `__group1`, ...
    One aggregation over the rows, where one per scope would read them all again."""
    inputs = decisions.select("cost_nano_usd", "passed", "score", "multi_step", "escalated", "retry_attempts",
                              "retry_exhausted", "latency_ms")
    aggregations = [expr().cast(pl.Int64).alias(name) for name, expr in COUNTERS.items()]
    groups = [f"__group{index}" for index in range(len(numbers))]
    if math.prod(sizes) >= 2**62:  # too many cells to number in an int64: grouped by every scope's number
        return inputs.with_columns(pl.Series(name, number) for name, number in zip(groups, numbers)) \
            .group_by(groups).agg(*aggregations)
    cell = np.zeros(decisions.height, dtype=np.int64)
    for number, size in zip(numbers, sizes):
        cell = cell * size + number
    counts = inputs.with_columns(pl.Series("__cell", cell)).group_by("__cell").agg(*aggregations)
    cell = counts["__cell"].to_numpy()
    found = []
    for size in reversed(sizes):
        found.insert(0, cell % size)
        cell = cell // size
    return counts.drop("__cell").with_columns(pl.Series(name, number) for name, number in zip(groups, found))


def kept_latencies(decisions: pl.DataFrame, scopes: dict[str, pl.Expr], quantiled: tuple[str, ...],
                   keys: pl.DataFrame | None = None) -> pl.DataFrame:
    """What a part keeps for the second pass of its quantiles: each timed request's latency and its group
    key in every quantiled scope (one column per scope). `keys`: `scope_keys`, when already computed."""
    timed = decisions["latency_ms"].is_not_null()
    if keys is None:
        return decisions.filter(timed).select(*(scopes[name].alias(name) for name in quantiled),
                                              pl.col("latency_ms").cast(pl.Float64))
    return pl.concat([keys.select(quantiled), decisions.select(pl.col("latency_ms").cast(pl.Float64))],
                     how="horizontal").filter(timed)


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


def score_sums(keys: np.ndarray, scores: pl.Series) -> dict[int, int]:
    """Per key (`keys`: non-negative integers, one per score), the exact sum of the scores given with it
    (null: no score), times 2^SCALE (`scaled_sums`): mantissa halves summed per (key, exponent) as parts_of
    sums them (`_score_terms`)."""
    scored = np.flatnonzero(scores.is_not_null().to_numpy())
    exponent, hi, lo = _mantissas(scores.gather(scored))
    if not exponent.size:
        return {}
    keyed = np.asarray(keys, dtype=np.int64)[scored]
    key, exp, hi_sums, lo_sums = _score_terms(keyed, int(keyed.max()) + 1, exponent, hi, lo)
    return scaled_sums(pl.DataFrame({"key": key, "exp": exp, "hi": hi_sums, "lo": lo_sums}))


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
    buckets = pl.Series("bucket", _buckets(kept["latency_ms"]))
    for name, pairs in wanted.items():
        # the few wanted buckets first (a lookup of integers), then their (key, bucket) pairs
        near = buckets.is_in(pairs["bucket"].unique()).to_numpy()
        mine = pl.DataFrame([kept[name].filter(near).alias("key"), buckets.filter(near), kept["latency_ms"].filter(near)])
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


def fetch_local(kept: list[pl.DataFrame | str]) -> Fetch:
    """Pass 2 over parts held in this process, or written by their workers to Arrow IPC files (paths),
    read back one at a time."""
    return lambda wanted: [values_in(pl.read_ipc(part) if isinstance(part, str) else part, wanted)
                           for part in kept]
