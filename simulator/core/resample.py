"""Keyed Poisson bootstrap weights and the compiled loops that use them (numba).

A resample gives request i the weight w(b, i) ~ Poisson(1), a function of (seed, resample b, the request's
key) alone: the key is the 64-bit hash of its request id (or session id) from simulator.core.draws, mixed
once with the seed's bootstrap stream (`mixed_keys`). Resamples come in pairs: the splitmix64 finaliser of
(mixed key XOR the pair's stream) gives 64 bits, whose low 32 bits are resample 2p's uniform and whose high
32 bits are resample 2p+1's. A uniform u (0 .. 2^32-1) becomes a Poisson(1) count by inverting its
cumulative distribution: w = the number of thresholds t_j = round(2^32 P(W <= j-1)) at or below u, so each
P(W >= j) is exact to within 2^-32. The inversion reads a 4,096-entry table by u's top 12 bits with one
comparison, for the thresholds that lie each alone in a bucket, and compares u with the few top ones (counts
of 8 or more) one by one: no branch, so the compiled loops vectorise.

Because a weight depends on nothing but (seed, b, key), the resampled sums and quantiles do not depend on
the order of the requests, on how they are chunked or sharded, or on the number of threads; each resample
is summed by one thread in one fixed order (the layout of `simulator.core.stats.PairedSample`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from simulator.core.draws import SPLITMIX_GOLDEN, SPLITMIX_MIX1, SPLITMIX_MIX2, key_hashes, splitmix64, stream

PURPOSE = "bootstrap"
_BITS = 32
_BUCKET_SHIFT = 20  # top 12 bits: tables of 4,096 entries (20 KB) stay in the L1 cache


def _thresholds() -> np.ndarray:
    """t_1, t_2, ...: u >= t_j exactly when the Poisson(1) count is >= j (module doc)."""
    found, cdf, term, j = [], 0.0, math.exp(-1.0), 0
    while True:
        cdf += term  # P(W <= j)
        j += 1
        term /= j
        threshold = round(cdf * 2**_BITS)
        if threshold >= 2**_BITS:
            return np.array(found, dtype=np.uint64)
        found.append(threshold)


THRESHOLDS = _thresholds()


def _table_count() -> int:
    """How many of the first thresholds lie each alone in its top-bits bucket: those the table serves."""
    buckets = THRESHOLDS >> np.uint64(_BUCKET_SHIFT)
    shared = np.flatnonzero(buckets[1:] == buckets[:-1])
    return int(shared[0]) + 1 if shared.size else len(THRESHOLDS)


TABLE_THRESHOLDS = _table_count()
EXTRA = THRESHOLDS[TABLE_THRESHOLDS:].copy()  # the top thresholds, compared one by one


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Per top-bits bucket: how many table thresholds lie at or below its start, and the one table threshold
    inside it (2^32, above every u, where none is)."""
    table = THRESHOLDS[:TABLE_THRESHOLDS]
    starts = np.arange(2**(_BITS - _BUCKET_SHIFT), dtype=np.uint64) << np.uint64(_BUCKET_SHIFT)
    at_start = np.searchsorted(table, starts, side="right")
    inside = np.minimum(at_start, len(table) - 1)
    has_one = (at_start < len(table)) & (table[inside] < starts + np.uint64(2**_BUCKET_SHIFT))
    compare = np.where(has_one, table[inside], np.uint64(2**_BITS))
    return at_start.astype(np.uint8), compare.astype(np.uint64)


BASE, COMPARE = _tables()


def poisson_weights(uniforms: np.ndarray) -> np.ndarray:
    """Poisson(1) counts of 32-bit uniforms (uint32 or uint64 below 2^32), in numpy: the reference the
    compiled loops agree with."""
    u = np.asarray(uniforms, dtype=np.uint64)
    return np.searchsorted(THRESHOLDS, u, side="right").astype(np.int64)


def mixed_keys(ids_or_hashes, seed: int) -> np.ndarray:
    """Each request's key mixed with the seed's bootstrap stream: splitmix64(hash(id) XOR stream)."""
    hashes = ids_or_hashes if isinstance(ids_or_hashes, np.ndarray) and ids_or_hashes.dtype == np.uint64 \
        else key_hashes(ids_or_hashes)
    return splitmix64(hashes ^ stream(seed, PURPOSE))


def pair_streams(pairs: int) -> np.ndarray:
    """The stream of each pair of resamples: splitmix64 of the pair's index (its own, whatever the count)."""
    return splitmix64(np.arange(pairs, dtype=np.uint64) * np.uint64(0x632BE59BD9B4E019))


def weights(keys: np.ndarray, resample: int) -> np.ndarray:
    """The Poisson(1) weights of one resample for every mixed key, in numpy (module doc)."""
    bits = splitmix64(keys ^ pair_streams(resample // 2 + 1)[resample // 2])
    half = bits >> np.uint64(32) if resample % 2 else bits & np.uint64(0xFFFFFFFF)
    return poisson_weights(half)


_LOW = np.uint64(0xFFFFFFFF)
_S30, _S27, _S31, _S32, _SHIFT = (np.uint64(n) for n in (30, 27, 31, 32, _BUCKET_SHIFT))


@numba.njit(inline="always")
def _mix(z):
    z = z + SPLITMIX_GOLDEN
    z = (z ^ (z >> _S30)) * SPLITMIX_MIX1
    z = (z ^ (z >> _S27)) * SPLITMIX_MIX2
    return z ^ (z >> _S31)


@numba.njit(inline="always")
def _count(u, base, compare, extra):
    """The Poisson(1) count of a 32-bit uniform, without a branch, so that the loops vectorise."""
    bucket = u >> _SHIFT
    w = np.int64(base[bucket]) + (1 if u >= compare[bucket] else 0)
    for e in range(extra.size):
        w += 1 if u >= extra[e] else 0
    return w


BLOCK = 256  # requests whose weights are drawn together, then summed column by column


@numba.njit(parallel=True, cache=True)
def resampled_sums(keys, segments, flags, flag_at, integers, integer_at, floats, streams, base, compare, extra,
                   out_integers, out_floats):
    """Sums over the requests i of each segment s of w(b, i) times each column at i, b < out.shape[0]:
    out_integers[b, s, flag_at[j]] for flags[j], out_integers[b, s, integer_at[j]] for integers[j] and
    out_floats[b, s, j] for floats[j].

    keys: mixed keys in layout order; segments: start of each segment, then the end (S + 1 entries);
    flags: (columns, n) int32 of 0 or 1, summed in int32 within a block of BLOCK requests (at most
    BLOCK x 12, the largest weight) and in int64 across blocks, twice the SIMD lanes of int64; integers:
    (columns, n) int64, summed exactly in int64; floats: (columns, n) float64, summed one request after
    another in layout order, so their rounding is the same on any machine. Each resample is one thread's.
    The keys' bits are mixed in one loop and turned into counts in the next, so both vectorise."""
    resamples = out_integers.shape[0]
    for pair in numba.prange((resamples + 1) // 2):
        r = streams[pair]
        both = 2 * pair + 1 < resamples
        bits = np.empty(BLOCK, dtype=np.uint64)
        low = np.empty(BLOCK, dtype=np.int32)
        high = np.empty(BLOCK, dtype=np.int32)
        for s in range(segments.size - 1):
            for first in range(segments[s], segments[s + 1], BLOCK):
                size = min(BLOCK, segments[s + 1] - first)
                for k in range(size):
                    bits[k] = _mix(keys[first + k] ^ r)
                for k in range(size):
                    u = bits[k] & _LOW
                    v = bits[k] >> _S32
                    low[k] = np.int32(base[u >> _SHIFT]) + (1 if u >= compare[u >> _SHIFT] else 0)
                    high[k] = np.int32(base[v >> _SHIFT]) + (1 if v >= compare[v >> _SHIFT] else 0)
                for e in range(extra.size):
                    threshold = extra[e]
                    for k in range(size):
                        low[k] += 1 if (bits[k] & _LOW) >= threshold else 0
                        high[k] += 1 if (bits[k] >> _S32) >= threshold else 0
                for j in range(flags.shape[0]):
                    flag_low = np.int32(0)
                    flag_high = np.int32(0)
                    for k in range(size):
                        flag = flags[j, first + k]
                        flag_low += low[k] * flag
                        flag_high += high[k] * flag
                    out_integers[2 * pair, s, flag_at[j]] += flag_low
                    if both:
                        out_integers[2 * pair + 1, s, flag_at[j]] += flag_high
                for j in range(integers.shape[0]):
                    sum_low = 0
                    sum_high = 0
                    for k in range(size):
                        value = integers[j, first + k]
                        sum_low += low[k] * value
                        sum_high += high[k] * value
                    out_integers[2 * pair, s, integer_at[j]] += sum_low
                    if both:
                        out_integers[2 * pair + 1, s, integer_at[j]] += sum_high
                for j in range(floats.shape[0]):
                    sum_low = out_floats[2 * pair, s, j]
                    sum_high = out_floats[2 * pair + 1, s, j] if both else 0.0
                    for k in range(size):
                        value = floats[j, first + k]
                        sum_low += low[k] * value
                        sum_high += high[k] * value
                    out_floats[2 * pair, s, j] = sum_low
                    if both:
                        out_floats[2 * pair + 1, s, j] = sum_high


@numba.njit(parallel=True, cache=True)
def resampled_quantiles(keys, latency, segments, totals, quantile, streams, base, compare, extra, out):
    """out[b, s] = the linearly interpolated `quantile` of segment s's latencies, each counted w(b, i)
    times (numpy's method "linear" on the expanded resample). keys and latency are in descending latency
    order within each segment; totals[b, s] is the resample's weight in segment s (nan where it is 0)."""
    resamples = out.shape[0]
    for b in numba.prange(resamples):
        r = streams[b // 2]
        for s in range(segments.size - 1):
            n = totals[b, s]
            if n <= 0:
                out[b, s] = np.nan
                continue
            virtual = quantile * (n - 1)
            lower = math.floor(virtual)
            upper = min(lower + 1, n - 1)
            fraction = virtual - lower
            # In descending order, ascending rank k is the element where the running count first exceeds
            # n - 1 - k.
            need_upper, need_lower = n - 1 - upper, n - 1 - lower
            found_upper = np.nan
            found_lower = np.nan
            running = 0.0
            for i in range(segments[s], segments[s + 1]):
                bits = _mix(keys[i] ^ r)
                w = _count(bits >> _S32 if b % 2 else bits & _LOW, base, compare, extra)
                if w == 0:
                    continue
                running += w
                if np.isnan(found_upper) and running > need_upper:
                    found_upper = latency[i]
                if running > need_lower:
                    found_lower = latency[i]
                    break
            difference = found_upper - found_lower
            # numpy's own lerp, so a resample of all-ones weights agrees with numpy.quantile to the bit.
            if fraction >= 0.5:
                out[b, s] = found_upper - difference * (1 - fraction)
            else:
                out[b, s] = found_lower + difference * fraction


def tables() -> tuple:
    """The arguments base, compare, extra of the compiled loops."""
    return BASE, COMPARE, EXTRA
