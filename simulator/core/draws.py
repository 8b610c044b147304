"""Counter-based random draws: every draw is a function of (seed, purpose, key), nothing else.

A request's (or session's) draw depends only on the seed, what the draw is for, and the request's own id,
never on how many requests there are, in which order they arrive, or how the work is split into threads,
chunks or shards. The generator is a keyed hash, the standard counter-based construction (Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011):

- the key: h = sum(byte_i * P^(L-1-i)) mod 2^64 over the id's UTF-8 bytes (P = 0x100000001b3, the
  64-bit FNV prime): a polynomial hash, computed for all ids at once from the Arrow string buffers;
- the stream: s = splitmix64(seed) XOR splitmix64(hash of the purpose's UTF-8 text, the same way);
- the draw: u = (splitmix64(h XOR s) >> 11) * 2^-53, uniform on [0, 1) with 53 random bits, where
  splitmix64 is the finaliser of Steele, Lea and Flood, "Fast splittable pseudorandom number
  generators" (OOPSLA 2014), as in java.util.SplittableRandom.

Two ids with the same polynomial hash share their draws; that changes nothing but the chance of ties.

Other distributions are transformed from those bits, so they too are functions of (seed, purpose, id):
a standard normal by the Box-Muller transform of the two 32-bit halves of one draw's 64 bits, a logistic
by the logit of a uniform, a categorical by the inverse of its cumulative distribution. One key can carry
several independent draws for one purpose (e.g. one per model that answered a request) by appending a
label to the purpose: `keyed_bits(seed, [f"{purpose}/{label}" ...], hashes, label_of_each_row)`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FNV_PRIME = np.uint64(0x100000001B3)
# splitmix64's constants (Steele, Lea and Flood 2014); core/resample.py's compiled loops use the same.
SPLITMIX_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
SPLITMIX_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
SPLITMIX_MIX2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of each uint64 (wrapping arithmetic), as an array."""
    z = np.asarray(values, dtype=np.uint64) + SPLITMIX_GOLDEN
    z = (z ^ (z >> np.uint64(30))) * SPLITMIX_MIX1
    z = (z ^ (z >> np.uint64(27))) * SPLITMIX_MIX2
    return z ^ (z >> np.uint64(31))


def key_hashes(ids) -> np.ndarray:
    """The 64-bit polynomial hash of each id's UTF-8 bytes (module doc), vectorised over all ids.

    `ids`: a polars or pyarrow string column, or a sequence of str. Nulls hash as the empty string.
    """
    array = _arrow_strings(ids)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    data = array.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    start, end = offsets[0], offsets[-1]
    raw = raw[start:end]
    lengths = np.diff(offsets)
    if raw.size == 0:
        return np.zeros(len(lengths), dtype=np.uint64)
    width = int(lengths.max())
    if len(lengths) * width <= PADDED_BYTES * raw.size:  # ids of about one length, as ids usually are
        return _horner(raw, offsets - start, lengths, width)
    raw = raw.astype(np.uint64)
    # Byte i of an id of length L is weighted P^(L-1-i): its distance from the id's last byte.
    owner = np.repeat(np.arange(len(lengths)), lengths)
    from_end = (offsets[1:][owner] - start) - 1 - np.arange(raw.size, dtype=np.int64)
    weighted = raw * _powers(width)[from_end]
    hashes = np.zeros(len(lengths), dtype=np.uint64)
    filled = lengths > 0  # reduceat sums each id's bytes: from its start to the next non-empty id's start
    hashes[filled] = np.add.reduceat(weighted, (offsets[:-1] - start)[filled])  # wrapping, exact
    return hashes


# Ids are hashed by Horner's rule over a table of them padded to one width while that table holds at most
# this many bytes per byte of the ids; else by summing weighted bytes.
PADDED_BYTES = 4


def _horner(raw: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """key_hashes by Horner's rule, h = h * P + byte, one byte position at a time over all ids at once.
    Each id is right-aligned in a table `width` bytes wide: the zero bytes padding it on the left leave its
    hash at 0 until its first byte, so every id gets sum(byte_i * P^(L-1-i))."""
    count = len(lengths)
    if (lengths == width).all():
        table = raw.reshape(count, width)
    else:
        table = np.zeros((count, width), dtype=np.uint8)
        # byte k of id i goes to (i, width - L_i + k - offset_i), row-major
        shift = np.arange(1, count + 1, dtype=np.int64) * width - lengths - offsets[:-1]
        table.ravel()[np.arange(raw.size, dtype=np.int64) + np.repeat(shift, lengths)] = raw
    positions = np.ascontiguousarray(table.T)
    hashes = np.zeros(count, dtype=np.uint64)
    for byte in positions:  # wrapping uint64 arithmetic, exact
        hashes *= FNV_PRIME
        hashes += byte
    return hashes


def _powers(count: int) -> np.ndarray:
    """P^0 .. P^(count-1) mod 2^64."""
    powers, value = [], 1
    for _ in range(max(count, 1)):  # in Python integers: numpy warns about (intended) scalar wrap-around
        powers.append(value)
        value = value * int(FNV_PRIME) & _MASK
    return np.array(powers, dtype=np.uint64)


def _arrow_strings(ids) -> pa.LargeStringArray:
    """`ids` as one Arrow large-string array, nulls as empty strings. Through polars, never pa.array or a
    Python scalar: pyarrow imports pandas (seconds) to convert any Python value when pandas is installed,
    and every replay makes keyed draws."""
    import polars as pl

    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = pl.Series(ids)
    elif not hasattr(ids, "to_arrow"):  # a sequence of str
        ids = pl.Series(list(ids), dtype=pl.String)
    array = ids.cast(pl.String).fill_null("").to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    # polars hands over large strings already; a cast, even to the same type, imports pyarrow.compute (0.1 s)
    return array if array.type == pa.large_string() else array.cast(pa.large_string())


def stream(seed: int, purpose: str) -> np.uint64:
    """The stream of one purpose under one seed (module doc)."""
    purpose_hash = key_hashes([purpose])[0]
    mixed = splitmix64(np.array([seed & _MASK], dtype=np.uint64))[0] ^ splitmix64(np.array([purpose_hash]))[0]
    return np.uint64(mixed)


def keyed_uniform(seed: int, purpose: str, ids) -> np.ndarray:
    """One uniform draw on [0, 1) per id: a function of (seed, purpose, id) only (module doc)."""
    return to_unit(splitmix64(key_hashes(ids) ^ stream(seed, purpose)))


def keyed_bits(seed: int, purposes: str | list[str], hashes: np.ndarray, labels: np.ndarray | None = None
               ) -> np.ndarray:
    """64 random bits per key hash (from `key_hashes`): splitmix64(hash XOR stream(seed, purpose)).

    With a list of purposes, row i uses purposes[labels[i]]: several independent draws per id in one call.
    """
    if isinstance(purposes, str):
        return splitmix64(hashes ^ stream(seed, purposes))
    streams = np.array([stream(seed, purpose) for purpose in purposes], dtype=np.uint64)
    return splitmix64(hashes ^ streams[labels])


def open_unit(bits: np.ndarray) -> np.ndarray:
    """The top 53 bits as a float64 strictly inside (0, 1): the midpoint of its 2^-53 cell."""
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def to_normal(bits: np.ndarray) -> np.ndarray:
    """A standard normal per uint64, by Box-Muller on its two 32-bit halves (|z| < 6.7 by construction)."""
    high = ((bits >> np.uint64(32)).astype(np.float64) + 0.5) * 2.0**-32
    low = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32
    return np.sqrt(-2.0 * np.log(high)) * np.cos(2.0 * np.pi * low)


def to_logistic(bits: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A logistic variate (location 0) per uint64: scale * logit(u), u in (0, 1)."""
    u = open_unit(bits)
    return scale * np.log(u / (1.0 - u))


def to_categorical(bits: np.ndarray, weights: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """A category code per uint64 from the weights (one row of weights, or a table with `rows` picking the
    row of each draw): the first category whose cumulative share exceeds the uniform."""
    table = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    cdf = np.cumsum(table / table.sum(axis=1, keepdims=True), axis=1)
    u = to_unit(bits)
    chosen = cdf[np.zeros(len(u), dtype=np.int64) if rows is None else rows]
    return np.minimum((u[:, None] >= chosen).sum(axis=1), table.shape[1] - 1)


def to_unit(bits: np.ndarray) -> np.ndarray:
    """The top 53 bits of each uint64 as a float64 in [0, 1)."""
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
