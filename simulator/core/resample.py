"""Keyed Poisson bootstrap weights and the compiled loops that use them (numba).

A resample gives request i the weight w(b, i) ~ Poisson(1), a function of (seed, resample b, the request's
key) alone: the key is the 64-bit hash of its request id (or session id) from simulator.core.draws, mixed
once with the seed's bootstrap stream (`mixed_keys`). Resamples come in pairs: the splitmix64 finaliser of
(mixed key XOR the pair's stream) gives 64 bits, whose low 32 bits are resample 2p's uniform and whose high
32 bits are resample 2p+1's. A uniform u (0 .. 2^32-1) becomes a Poisson(1) count by inverting its
cumulative distribution: w = the number of thresholds t_j = round(2^32 P(W <= j-1)) at or below u, so each
P(W >= j) is exact to within 2^-32. The compiled loops count the thresholds by comparisons alone, in 32-bit
integers (u - 2^31 against t_j - 2^31, signed, which SIMD units compare natively): no table, no branch, so
they vectorise; the six lowest thresholds are compared always and the others (u at or above the seventh,
one draw in 12,000) only for a block of requests that holds such a draw.

Because a weight depends on nothing but (seed, b, key), the resampled sums and quantiles do not depend on
the order of the requests, on how they are chunked or sharded, or on the number of threads; each resample
is summed by one thread in one fixed order (the layout of `simulator.core.stats.PairedSample`), in integers
wherever the values are integers.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from simulator.core.draws import SPLITMIX_GOLDEN, SPLITMIX_MIX1, SPLITMIX_MIX2, key_hashes, splitmix64, stream

PURPOSE = "bootstrap"
_BITS = 32


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
LARGEST_WEIGHT = len(THRESHOLDS)  # 12: a u at or above every threshold
# The thresholds less 2^31, as signed 32-bit integers: u >= t exactly when u - 2^31 >= t - 2^31. Tuples are
# constants to numba, so the comparisons unroll. The first HEAD are compared for every draw; the rest only
# in a block whose largest draw reaches the first of them.
HEAD = 6
_SIGNED = tuple(np.int32(int(t) - 2**31) for t in THRESHOLDS)
_HEAD, _TAIL = _SIGNED[:HEAD], _SIGNED[HEAD:]
_TAIL_START = _TAIL[0]


def poisson_weights(uniforms: np.ndarray) -> np.ndarray:
    """Poisson(1) counts of 32-bit uniforms (uint32 or uint64 below 2^32), in numpy: the reference the
    compiled loops agree with."""
    u = np.asarray(uniforms, dtype=np.uint64)
    return np.searchsorted(THRESHOLDS, u, side="right").astype(np.int64)


def mixed_keys(ids_or_hashes, seed: int) -> np.ndarray:
    """Each request's key mixed with the seed's bootstrap stream: splitmix64(hash(id) XOR stream)."""
    hashes = ids_or_hashes if isinstance(ids_or_hashes, np.ndarray) and ids_or_hashes.dtype == np.uint64 \
        else key_hashes(ids_or_hashes)
    mixed = np.empty(len(hashes), dtype=np.uint64)
    _mix_all(np.ascontiguousarray(hashes), np.uint64(stream(seed, PURPOSE)), mixed)
    return mixed


def pair_streams(pairs: int) -> np.ndarray:
    """The stream of each pair of resamples: splitmix64 of the pair's index (its own, whatever the count)."""
    return splitmix64(np.arange(pairs, dtype=np.uint64) * np.uint64(0x632BE59BD9B4E019))


def weights(keys: np.ndarray, resample: int) -> np.ndarray:
    """The Poisson(1) weights of one resample for every mixed key, in numpy (module doc)."""
    bits = splitmix64(keys ^ pair_streams(resample // 2 + 1)[resample // 2])
    half = bits >> np.uint64(32) if resample % 2 else bits & np.uint64(0xFFFFFFFF)
    return poisson_weights(half)


_LOW = np.uint64(0xFFFFFFFF)
_S30, _S27, _S31, _S32 = (np.uint64(n) for n in (30, 27, 31, 32))
_I32 = np.int32


@numba.njit(inline="always")
def _mix(z):
    z = z + SPLITMIX_GOLDEN
    z = (z ^ (z >> _S30)) * SPLITMIX_MIX1
    z = (z ^ (z >> _S27)) * SPLITMIX_MIX2
    return z ^ (z >> _S31)


@numba.njit(cache=True)
def _mix_all(hashes, mixing, out):
    """out = splitmix64(hashes XOR mixing), compiled: numpy's version makes a temporary of every step."""
    for i in range(hashes.size):
        out[i] = _mix(hashes[i] ^ mixing)


@numba.njit(inline="always")
def _below(signed, thresholds):
    """How many of `thresholds` lie at or below `signed` (u - 2^31), in int32 (numba would widen a sum of
    int32 to int64, and halve the SIMD lanes)."""
    w = _I32(0)
    for t in thresholds:
        w = _I32(w + _I32(signed >= t))
    return w


@numba.njit(inline="always")
def _signed(u):
    """A 32-bit uniform (in a uint64) as u - 2^31 in int32: the same order, compared signed."""
    return _I32(np.int64(u) - 2**31)


@numba.njit
def count(u):
    """The Poisson(1) count of one 32-bit uniform u (module doc): the loops' inversion, one value at a time."""
    return _below(_signed(np.uint64(u)), _SIGNED)


@numba.njit(inline="always")
def _draw(keys, first, size, r, low, high):
    """The weights of resamples 2p (`low`) and 2p+1 (`high`) for keys[first:first + size], r the pair's
    stream. Three loops, each of which vectorises: mix, compare with the head thresholds, and (only when
    some draw of the block reaches the tail) the tail thresholds."""
    for k in range(size):
        bits = _mix(keys[first + k] ^ r)
        low[k] = _signed(bits & _LOW)
        high[k] = _signed(bits >> _S32)
    largest = _I32(-2**31)
    for k in range(size):
        largest = max(largest, max(low[k], high[k]))
    if largest >= _TAIL_START:
        for k in range(size):
            low[k] = _I32(_below(low[k], _HEAD) + _below(low[k], _TAIL))
            high[k] = _I32(_below(high[k], _HEAD) + _below(high[k], _TAIL))
    else:
        for k in range(size):
            low[k] = _below(low[k], _HEAD)
            high[k] = _below(high[k], _HEAD)


BLOCK = 256  # requests whose weights are drawn together, then summed column by column
TILE = 8  # pairs of resamples that one thread draws for a block in turn, while the block's columns stay cached
# A block's sum of weight x flag fits in 16 bits (BLOCK x LARGEST_WEIGHT < 2^15), so two flags share an int32.
FLAG_BITS = 16
assert BLOCK * LARGEST_WEIGHT < 2 ** (FLAG_BITS - 1)


@numba.njit(parallel=True, cache=True)
def resampled_sums(keys, segments, flags, costs, floats, streams, out_count, out_flags, out_costs, out_floats):
    """Sums over the requests i of each segment s of w(b, i), and of w(b, i) times each column at i, for
    b < out_count.shape[0]: out_count[b, s] the weight; out_flags[b, s, 2j] and [b, s, 2j + 1] the two flags
    packed in flags[j]; out_costs[b, s, j] for costs[j], j = 0, 1; out_floats[b, s, j] for floats[j].

    keys: mixed keys in layout order; segments: start of each segment, then the end (S + 1 entries);
    flags: (1 or more, n) int32, two 0/1 flags each, the second shifted by FLAG_BITS: within a block the
    products add up without carrying from one into the other; costs: (2, n) int32 or int64, summed exactly
    in int64 (int32 columns multiply in SIMD lanes, int32 x int32 -> int64); floats: (columns, n) float64,
    summed one request after another in layout order, so their rounding is the same on any machine. A
    thread takes TILE pairs of resamples and walks the blocks once for all of them; each resample's sums
    are added in one fixed order whatever the threads. The weight, the first flags and both costs are
    summed in one loop over a block's weights: a loop per column would read them once a column."""
    resamples = out_count.shape[0]
    pairs = (resamples + 1) // 2
    for group in numba.prange((pairs + TILE - 1) // TILE):
        low = np.empty(BLOCK, dtype=np.int32)
        high = np.empty(BLOCK, dtype=np.int32)
        for s in range(segments.size - 1):
            for first in range(segments[s], segments[s + 1], BLOCK):
                size = min(BLOCK, segments[s + 1] - first)
                flag, cost_b, cost_c = flags[0, first:first + size], costs[0, first:first + size], \
                    costs[1, first:first + size]
                for pair in range(group * TILE, min(pairs, (group + 1) * TILE)):
                    both = 2 * pair + 1 < resamples
                    _draw(keys, first, size, streams[pair], low, high)
                    count_low, count_high, flag_low, flag_high = _I32(0), _I32(0), _I32(0), _I32(0)
                    b_low, b_high, c_low, c_high = np.int64(0), np.int64(0), np.int64(0), np.int64(0)
                    for k in range(size):
                        w_low, w_high = low[k], high[k]
                        count_low = _I32(count_low + w_low)
                        count_high = _I32(count_high + w_high)
                        flag_low = _I32(flag_low + _I32(w_low * flag[k]))
                        flag_high = _I32(flag_high + _I32(w_high * flag[k]))
                        b_low += np.int64(w_low) * np.int64(cost_b[k])
                        b_high += np.int64(w_high) * np.int64(cost_b[k])
                        c_low += np.int64(w_low) * np.int64(cost_c[k])
                        c_high += np.int64(w_high) * np.int64(cost_c[k])
                    _add(out_count, out_flags, out_costs, 2 * pair, s, count_low, flag_low, b_low, c_low)
                    if both:
                        _add(out_count, out_flags, out_costs, 2 * pair + 1, s, count_high, flag_high, b_high, c_high)
                    for j in range(1, flags.shape[0]):
                        flag_low, flag_high = _I32(0), _I32(0)
                        for k in range(size):
                            value = flags[j, first + k]
                            flag_low = _I32(flag_low + _I32(low[k] * value))
                            flag_high = _I32(flag_high + _I32(high[k] * value))
                        out_flags[2 * pair, s, 2 * j] += flag_low & 0xFFFF
                        out_flags[2 * pair, s, 2 * j + 1] += flag_low >> FLAG_BITS
                        if both:
                            out_flags[2 * pair + 1, s, 2 * j] += flag_high & 0xFFFF
                            out_flags[2 * pair + 1, s, 2 * j + 1] += flag_high >> FLAG_BITS
                    for j in range(floats.shape[0]):
                        float_low = out_floats[2 * pair, s, j]
                        float_high = out_floats[2 * pair + 1, s, j] if both else 0.0
                        for k in range(size):
                            value = floats[j, first + k]
                            float_low += low[k] * value
                            float_high += high[k] * value
                        out_floats[2 * pair, s, j] = float_low
                        if both:
                            out_floats[2 * pair + 1, s, j] = float_high


@numba.njit(inline="always")
def _add(out_count, out_flags, out_costs, b, s, count, flag, cost_b, cost_c):
    """Adds one block's sums of resample b to segment s's."""
    out_count[b, s] += count
    out_flags[b, s, 0] += flag & 0xFFFF
    out_flags[b, s, 1] += flag >> FLAG_BITS
    out_costs[b, s, 0] += cost_b
    out_costs[b, s, 1] += cost_c


CHUNK = 64  # requests of a quantile walk whose weights are drawn together


@numba.njit(parallel=True, cache=True)
def resampled_quantiles(keys, latency, segments, totals, quantile, streams, todo, out, missing):
    """out[b, s] = the linearly interpolated `quantile` of segment s's latencies, each counted w(b, i)
    times (numpy's method "linear" on the expanded resample), where todo[b, s]. keys and latency are in
    descending latency order within each segment (segments: starts, then the end), the slowest of the
    segment's requests or all of them; totals[b, s] is the resample's weight in the whole segment (nan out
    where it is 0). missing[b, s] is set where the segment's requests ran out before the walk found its
    order statistics (only where it holds the slowest requests alone).

    In descending order, ascending rank k (from 0, of N) is the element at which the running weight first
    exceeds N - 1 - k. Each thread walks a pair of resamples down each segment together, CHUNK requests at a
    time: it draws the chunk's weights for both (vectorised), adds up each resample's, and looks inside the
    chunk, one request at a time, only for a resample whose running weight passes a rank it seeks there."""
    resamples = out.shape[0]
    for pair in numba.prange((resamples + 1) // 2):
        r = streams[pair]
        weights = np.empty((2, CHUNK), dtype=np.int32)
        need = np.zeros((2, 2), dtype=np.int64)  # [resample of the pair, upper / lower]: the running weight to pass
        fraction = np.zeros(2)
        found = np.zeros((2, 2))  # the latencies of the upper and lower order statistic
        state = np.zeros(2, dtype=np.int64)  # 0: seeks the upper, 1: the lower, 2: done
        running = np.zeros(2, dtype=np.int64)
        for s in range(segments.size - 1):
            for half in range(2):
                b = 2 * pair + half
                running[half] = 0
                state[half] = 2
                if b >= resamples or not todo[b, s]:
                    continue
                n = totals[b, s]
                if n <= 0:
                    out[b, s] = np.nan
                    continue
                virtual = quantile * (n - 1)
                lower = math.floor(virtual)
                upper = min(lower + 1, n - 1)
                fraction[half] = virtual - lower
                need[half, 0] = n - 1 - upper
                need[half, 1] = n - 1 - lower
                state[half] = 0
            for first in range(segments[s], segments[s + 1], CHUNK):
                if state[0] == 2 and state[1] == 2:
                    break
                size = min(CHUNK, segments[s + 1] - first)
                low = weights[0]
                high = weights[1]
                _draw(keys, first, size, r, low, high)
                for half in range(2):
                    if state[half] == 2:
                        continue
                    drawn = weights[half]
                    chunk = np.int64(0)
                    for k in range(size):
                        chunk += drawn[k]
                    if running[half] + chunk <= need[half, state[half]]:
                        running[half] += chunk
                        continue
                    for k in range(size):
                        running[half] += drawn[k]
                        while state[half] < 2 and running[half] > need[half, state[half]]:
                            found[half, state[half]] = latency[first + k]
                            state[half] += 1
                        if state[half] == 2:
                            break
            for half in range(2):
                b = 2 * pair + half
                if b >= resamples or not todo[b, s] or totals[b, s] <= 0:
                    continue
                if state[half] != 2:
                    missing[b, s] = True
                    continue
                found_upper, found_lower = found[half, 0], found[half, 1]
                difference = found_upper - found_lower
                # numpy's own lerp, so a resample of all-ones weights agrees with numpy.quantile to the bit.
                if fraction[half] >= 0.5:
                    out[b, s] = found_upper - difference * (1 - fraction[half])
                else:
                    out[b, s] = found_lower + difference * fraction[half]


def load() -> None:
    """Loads the compiled loops (from numba's cache, or compiles them) for the argument types the bootstrap
    passes, without running them: numba's start-up and the loading take most of a second, which a caller
    can spend while it does other work (the gate, while it replays). Running a parallel loop here would
    start a team of threads for this thread alone, spinning beside the caller's work."""
    keys = mixed_keys(np.arange(4, dtype=np.uint64), 0)
    vector, matrix, cube = np.zeros(1), np.zeros((1, 1)), np.zeros((1, 1, 1))
    sums = (keys, keys.astype(np.int64), matrix.astype(np.int32), matrix.astype(np.int32), matrix, keys,
            matrix.astype(np.int64), cube.astype(np.int64), cube.astype(np.int64), cube)
    walks = (keys, vector, keys.astype(np.int64), matrix.astype(np.int64), 0.5, keys, matrix.astype(bool), matrix,
             matrix.astype(bool))
    for loop, arguments in ((resampled_sums, sums), (resampled_quantiles, walks)):
        loop.compile(tuple(numba.typeof(argument) for argument in arguments))
