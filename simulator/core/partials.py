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
    """Each score as (binary exponent, integer mantissa halves hi and lo): score = (hi 2^HALF + lo) 2^exp,
    the mantissa and exponent numpy's frexp gives (scaled to 53 bits), read from the IEEE 754 bits."""
    values = scores.cast(pl.Float64).to_numpy()
    raw = values.view(np.int64)
    # A normal float is +-(2^52 + its 52 fraction bits) 2^(biased exponent - 1075): 4x less time than frexp.
    # Worked in place, three arrays in all: a fresh array's pages cost more to fault in than the arithmetic.
    exponent = raw >> 52
    exponent &= 0x7FF
    odd = np.flatnonzero((exponent == 0) | (exponent == 0x7FF))  # zeros and subnormals (and what is not a number)
    exponent -= 1075
    whole = raw & ((1 << 52) - 1)
    whole |= 1 << 52
    np.negative(whole, out=whole, where=raw < 0)
    if odd.size:
        mantissa, power = np.frexp(values[odd])
        whole[odd] = np.ldexp(mantissa, 53).astype(np.int64)  # exact: a float64 has 53 mantissa bits
        exponent[odd] = power - 53
    hi = whole >> HALF
    whole &= (1 << HALF) - 1
    return exponent, hi, whole


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


def _sums_by(combined: np.ndarray, size: int, *values: np.ndarray, table: bool = True) -> tuple[np.ndarray, ...]:
    """The distinct values of `combined` (ascending; each in 0..size-1), and per distinct value the exact
    integer sum of each of `values` (the count of rows when none is given). `table=False` for values that
    may not be added exactly in float64 (sums of sums)."""
    if table and size <= TABLE_SLOTS_PER_ROW * combined.size + 1024 and combined.size <= EXACT_FLOAT_TERMS:
        counts = np.bincount(combined, minlength=size)
        found = np.flatnonzero(counts)
        if not values:
            return found, counts[found].astype(np.int64)
        return found, *(np.bincount(combined, weights=value, minlength=size)[found].astype(np.int64)
                        for value in values)
    order = np.argsort(combined)
    ordered = combined[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if ordered.size else np.zeros(0, np.int64)
    if not values:
        return ordered[starts], np.diff(np.r_[starts, ordered.size]).astype(np.int64)
    return ordered[starts], *(np.add.reduceat(value[order], starts) if starts.size else value[:0] for value in values)


def _cells(decisions: pl.DataFrame, keys: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """The cells of `decisions`: the rows sharing their key in every scope (`keys`, one column per scope).
    Returns one row per cell, with its key in every scope and the COUNTERS of its rows, and each row's cell
    number (its row in that frame). One group-by over the rows, where one per scope would read them all again."""
    inputs = decisions.select("cost_nano_usd", "passed", "score", "multi_step", "escalated", "retry_attempts",
                              "retry_exhausted", "latency_ms")
    aliases = [f"__scope{index}" for index in range(keys.width)]  # apart from the counters' names
    cells = (pl.concat([keys.rename(dict(zip(keys.columns, aliases))), inputs], how="horizontal")
             .with_row_index("__row")
             .group_by(aliases).agg(*(expr().cast(pl.Int64).alias(name) for name, expr in COUNTERS.items()),
                                    pl.col("__row")))
    number = np.empty(decisions.height, dtype=np.int64)
    rows = cells["__row"]
    number[rows.explode().to_numpy()] = np.repeat(np.arange(cells.height), rows.list.len().to_numpy())
    return cells.drop("__row").rename(dict(zip(aliases, keys.columns))), number


def parts_of(decisions: pl.DataFrame, scopes: dict[str, pl.Expr], quantiled: tuple[str, ...],
             keys: pl.DataFrame | None = None) -> Parts:
    """The counters of `decisions` per group of each scope (`scopes`: name -> the group key expression),
    with score sums, and latency histograms for the scopes in `quantiled`. `keys`: `scope_keys`, when
    already computed.

    The rows are grouped once, into cells (`_cells`: the rows sharing their group in every scope); the
    counters, the scores' mantissas summed per binary exponent and the latencies' histogram buckets are
    taken per cell, and each scope's groups add up their cells, all as integers. Each scope numbers its
    groups over the cells (`_groups`), a few thousand keys where the rows are millions."""
    keys = scope_keys(decisions, scopes) if keys is None else keys
    cells, cell = _cells(decisions, keys)
    grouped = {name: _groups(cells[name]) for name in scopes}  # each cell's group, and the groups' keys
    scored = np.flatnonzero(decisions["score"].is_not_null().to_numpy())
    exponent, hi, lo = _mantissas(decisions["score"].gather(scored))
    score_cell, score_exp, hi_sums, lo_sums = _score_terms(cell[scored], cells.height, exponent, hi, lo)
    histograms = _cell_histograms(decisions["latency_ms"], cell, [grouped[name] for name in quantiled])
    parts = Parts()
    for name, (number, values) in grouped.items():
        counts = (cells.select(*COUNTERS).with_columns(pl.Series("__group", number))
                  .group_by("__group").agg(pl.col(*COUNTERS).sum()).sort("__group"))
        counts = counts.select(values.gather(counts["__group"].to_numpy()).alias("key"), *COUNTERS)
        group, exp, group_hi, group_lo = _score_terms(number[score_cell], values.len(), score_exp, hi_sums, lo_sums,
                                                      table=False)
        scores = pl.DataFrame({"key": values.gather(group), "exp": exp, "hi": group_hi, "lo": group_lo})
        frames = {"counts": counts, "scores": scores}
        if name in quantiled:
            at, bucket, n = histograms[quantiled.index(name)]
            frames["histogram"] = pl.DataFrame({"key": values.gather(at), "bucket": bucket, "n": n})
        parts.scopes[name] = frames
    return parts


def _score_terms(number: np.ndarray, groups: int, exponent: np.ndarray, hi: np.ndarray,
                 lo: np.ndarray, table: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (group, exponent) present, in that order: the group (`number`: each score's, below `groups`), the
    binary exponent and the exact sums of the mantissa halves `hi` and `lo` (`_mantissas`), by `_sums_by`."""
    low_exp = int(exponent.min()) if exponent.size else 0
    exp_span = int(exponent.max()) - low_exp + 1 if exponent.size else 1
    combined = number * exp_span  # then added to in place: each fresh array of millions costs its page faults
    combined += exponent
    combined -= low_exp
    at, hi_sums, lo_sums = _sums_by(combined, groups * exp_span, hi, lo, table=table)
    return at // exp_span, at % exp_span + low_exp, hi_sums, lo_sums


def _cell_histograms(latency: pl.Series, cell: np.ndarray,
                     grouped: list[tuple[np.ndarray, pl.Series]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per scope (`grouped`: `_groups` of the cells' keys in it), the histogram of the latencies (one per row,
    in cell `cell`) as (group, bucket, count) triples in that order. The timed rows are counted once, per
    bucket of the combinations of groups that occur among the cells, which each scope then adds up."""
    timed = np.flatnonzero(latency.is_not_null().to_numpy())
    buckets = _buckets(latency.gather(timed))
    if not grouped:
        return []
    low_bucket = int(buckets.min()) if buckets.size else 0
    span = int(buckets.max()) - low_bucket + 1 if buckets.size else 1
    combos, combo_of_cell = np.unique(np.stack([number for number, _ in grouped], axis=1), axis=0,
                                      return_inverse=True)
    at, n = _sums_by(combo_of_cell.ravel()[cell[timed]] * span + (buckets - low_bucket), len(combos) * span)
    found = []
    for column, (_, values) in enumerate(grouped):
        group_at, group_n = _sums_by(combos[at // span, column] * span + at % span, values.len() * span, n,
                                     table=False)
        found.append((group_at // span, group_at % span + low_bucket, group_n))
    return found


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
        mine = pl.DataFrame([kept[name].filter(near).alias("key"), buckets.filter(near),
                             kept["latency_ms"].filter(near)])
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
