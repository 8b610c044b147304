"""The compiled layout of a data folder: validated once, kept in a cache per content fingerprint.

A data folder is an input and may be read-only, so nothing is ever written into it. On first use the
folder is validated and compiled into `CACHE/layouts/<fingerprint>-v<LAYOUT_VERSION>/`:

- `requests.parquet`: the traffic in (ts, request_id) order, so a request's row id is its row number;
  prompt text (`PROMPT_COLUMNS`) is never stored; for traffic with sessions, `SESSION_FIRST`: the row id of
  the request's session's first turn (its own row id without a session), by which a replay in chunks of
  row ranges keeps each session whole (simulator.core.chunks);
- `slots/<n>.parquet`: one file per (model, sample), the outcome columns aligned with that order (row i is
  request i's answer, null with `__present` false where it has none), integers in the narrowest type that
  holds them (`Layout.slot` restores the source types);
- `meta.json`: the format version, the fingerprint, the slots, the source schema and the validation report.

Later runs find the layout by a cheap key per input file: device, inode, size, `mtime_ns`, `ctime_ns` and
the layout version. A copy made with `cp -p` keeps size and mtime but not inode and ctime, so it is hashed
again (and finds the same layout). Only when the key changes is the content hashed; unchanged data is
neither validated nor hashed again. A key is recorded only for files last changed more than `RACY_SECONDS`
before it was read (as git treats "racily clean" files), since a rewrite within one clock tick keeps mtime.

Builds run under an exclusive lock on `CACHE/lock` into a staging folder renamed into place when
complete, so a partly built layout is never used. After a build the least recently used layouts are
evicted until the cache is within its size cap (`ROUTESIM_CACHE_MAX_BYTES`, default `DEFAULT_MAX_BYTES`).

The build runs out of core (`_build`): the requests are sorted one range of timestamps at a time, the
outcomes get their row ids by one join of their request ids per bucket of hashed request id
(`MEMORY_REQUESTS` request ids each) and are read `SLICE_OUTCOME_ROWS` at a time, and each (model,
sample) is aligned one range of row ids at a time, so no step holds every request id or every outcome.
The files are the same, byte for byte, whatever the ranges, buckets and slices.

The build also settles the data contract's key checks (unique request ids, no outcome of an unknown
request, samples numbered 0, 1, 2, ... once each) on row ids, far cheaper than the contract's group-bys
over string ids: the caller validates everything else first, and only when the build finds a key problem
(`KeyProblem`) runs the contract's own key checks, which report it with examples.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from simulator.core.errors import RoutesimError

# 3: layout files compressed with lz4 instead of zstd (every replay decodes them: 4-5x faster, about 1.6x larger)
# 4: requests of traffic with sessions carry SESSION_FIRST
# 5: the data contract checks served logs' propensities: a layout stands for a folder that passed every
#    check, and one built before would let a folder with impossible propensities through unchecked
LAYOUT_VERSION = 5
DEFAULT_MAX_BYTES = 20 * 1024**3
RACY_SECONDS = 2.0
# Requests the build holds at once: the request ids of one bucket (joined to the outcomes), and one
# (model, sample)'s aligned columns, are kept in memory up to this many requests, in scratch files beyond.
MEMORY_REQUESTS = 12_000_000
SLICE_OUTCOME_ROWS = 8_000_000  # outcome rows joined to row ids at a time
RANGE_ROWS = 4_000_000  # requests sorted and aligned at a time by the build
SCRATCH_COMPRESSION = "lz4"  # the build's intermediate files: written and read once, so fast over small
LAYOUT_COMPRESSION = "lz4"  # the layout's own files: read by every replay, so fast to decode
ROW_GROUP_ROWS = 262_144  # rows per Parquet row group of every layout file, whatever the ranges
ROW = "__row"
PRESENT = "__present"
SESSION_FIRST = "__session_first"
# Traffic columns holding prompt or answer text; a layout never stores them.
PROMPT_COLUMNS = frozenset({"prompt", "prompt_text", "messages", "input", "input_text", "completion",
                            "response", "output", "output_text"})
# Identify the slot a row belongs to; a slot file stores neither.
SLOT_KEYS = ("request_id", "model", "sample")
_HASH_SEED = 20261116


class KeyProblem(Exception):
    """The build found data breaking a key rule of the data contract (which one is the message); the data
    contract's key checks (`simulator.core.contract`) report it in full."""


def cache_root(cache_dir: Path | None = None) -> Path:
    """`cache_dir`, else `$ROUTESIM_CACHE_DIR` (set by `routesim --cache-dir`), else
    `$XDG_CACHE_HOME/routesim`, else `~/.cache/routesim`. RoutesimError when `cache_dir` is a file."""
    if cache_dir is not None:
        if Path(cache_dir).exists() and not Path(cache_dir).is_dir():
            raise RoutesimError(f"--cache-dir needs a folder; '{cache_dir}' is a file", where="--cache-dir",
                                fix="name a folder (routesim creates it when missing), or leave --cache-dir out "
                                    "to use $XDG_CACHE_HOME/routesim")
        return Path(cache_dir)
    if os.environ.get("ROUTESIM_CACHE_DIR"):
        return Path(os.environ["ROUTESIM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "routesim"


def max_bytes() -> int:
    text = os.environ.get("ROUTESIM_CACHE_MAX_BYTES")
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return int(text)
    except ValueError:
        raise RoutesimError(f"ROUTESIM_CACHE_MAX_BYTES is '{text}', not a number of bytes",
                            fix="set it to an integer such as 20000000000, or unset it") from None


def content_fingerprint(paths: list[Path]) -> str:
    """Identifies data by content (sha256 of each file's name and bytes, 16 hex digits), so a fresh clone
    gives the same fingerprint."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def file_key(path: Path) -> tuple[int, int, int, int, int]:
    """The cheap per-file key: device, inode, size, mtime_ns, ctime_ns."""
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _key_name(paths: list[Path], keys: list[tuple]) -> str:
    text = json.dumps([LAYOUT_VERSION, [[str(path.resolve()), *key] for path, key in zip(paths, keys)]])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Layout:
    """A complete compiled layout in the cache."""

    path: Path
    meta: dict

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def requests(self) -> int:
        return self.meta["requests"]

    @property
    def sample_dtype(self) -> pl.DataType:
        """The type of the source's `sample` column, which a slot file does not store."""
        return _dtype(self.meta["sample_dtype"])

    @property
    def slots(self) -> list[tuple[str, int]]:
        return [(model, sample) for model, sample, _ in self.meta["slots"]]

    def scan_requests(self) -> pl.LazyFrame:
        """The traffic (without prompt text) in (ts, request_id) order: row i has row id i."""
        return pl.scan_parquet(self.path / "requests.parquet")

    def slot(self, model: str, sample: int) -> pl.LazyFrame:
        """The (model, sample) outcomes aligned with the requests' order, in the source's column types,
        with `__present` false where the request has no such answer."""
        for known_model, known_sample, file in self.meta["slots"]:
            if (known_model, known_sample) == (model, sample):
                source = self.meta["outcome_schema"]
                return pl.scan_parquet(self.path / "slots" / file).with_columns(
                    pl.col(name).cast(_dtype(source[name])) for name in self.meta["narrowed"])
        raise KeyError((model, sample))

    def gather(self, model: str, sample: int, columns: list, rows: np.ndarray | None = None) -> pl.DataFrame:
        """The (model, sample) answers to the requests at row ids `rows` (every request, in row order, when
        None), in that order: the slot's `columns` (names, or expressions over its columns) and `__present`.
        A gather by position, where a join on `request_id` would hash every id; row i of the result is
        null, with `__present` false, where request `rows[i]` has no such answer."""
        slot = self.slot(model, sample).select(*columns, PRESENT)
        return slot.collect() if rows is None else rows_at(slot, rows)

    def gather_each(self, model: str, sample: int, columns: list, row_sets: list[np.ndarray]) -> list[pl.DataFrame]:
        """`gather` at each of `row_sets`, one frame per set, decoding each window of the slot's file once for
        all of them (rows_at_each)."""
        return rows_at_each(self.slot(model, sample).select(*columns, PRESENT), row_sets)


# Rows of a layout file read at a time for a part of its requests (a chunk of whole sessions spans nearly
# the whole file, but holds only its own rows).
SLOT_WINDOW_ROWS = 4_000_000


def take(frame: pl.DataFrame, positions: np.ndarray) -> pl.DataFrame:
    """`frame`'s rows at `positions`, in their order. A frame read from Parquet or concatenated comes in many
    chunks, and polars gathers from many chunks several times slower than from one (8.5 s against 1.5 s for
    10M decisions in 17 pieces): it is made one chunk first, which costs a copy."""
    return frame.rechunk()[positions]


def rows_at(frame: pl.LazyFrame, rows: np.ndarray) -> pl.DataFrame:
    """The rows of a layout file (`frame`, one row per row id) at the row ids `rows`, in their order. Only
    the range they span is read, SLOT_WINDOW_ROWS rows of the file at a time, so a chunk's replay never
    holds a whole (model, sample) of large data, only its own rows and one window. Row ids out of order (a
    sample's, or the requests a retry resends, listed as the steps decided them) are read in ascending
    order and put back in theirs."""
    rows = rows.astype(np.int64, copy=False)  # row ids come as UInt32, whose differences would wrap around
    if rows.size and rows.size == int(rows[-1]) - int(rows[0]) + 1 and bool((np.diff(rows) == 1).all()):
        return frame.slice(int(rows[0]), rows.size).collect()  # a range of row numbers, whole
    return rows_at_each(frame, [rows])[0]


def rows_at_each(frame: pl.LazyFrame, row_sets: list[np.ndarray]) -> list[pl.DataFrame]:
    """rows_at for each set of row ids in `row_sets`, one frame per set, in one pass over the range they
    span: each window of the file is decoded once for all the sets (decoding is most of a read), then cut
    for each."""
    sets, backs = [], []
    for rows in row_sets:
        rows = rows.astype(np.int64, copy=False)
        back = None
        if bool((np.diff(rows) < 0).any()):
            order = np.argsort(rows, kind="stable")
            back = np.empty_like(order)
            back[order] = np.arange(order.size)
            rows = rows[order]
        sets.append(rows)
        backs.append(back)
    empty = frame.clear().collect()
    pieces: list[list[pl.DataFrame]] = [[empty] for _ in sets]
    spans = [(int(rows[0]), int(rows[-1]) + 1) for rows in sets if rows.size]
    if spans:
        low, high = min(first for first, _ in spans), max(last for _, last in spans)
        for start in range(low, high, SLOT_WINDOW_ROWS):
            size = min(SLOT_WINDOW_ROWS, high - start)
            bounds = [np.searchsorted(rows, [start, start + size]) for rows in sets]
            wanted = [index for index, (first, last) in enumerate(bounds) if last > first]
            if not wanted:
                continue
            window = frame.slice(start, size)
            if len(wanted) > 1:  # decoded once, cut for each set
                window = window.collect().lazy()
            for index in wanted:
                first, last = bounds[index]
                at = sets[index][first:last] - start
                if bool((np.diff(at) > 0).all()):
                    # A mask filters the file's pieces as they are, where a gather would first copy them into one.
                    mask = np.zeros(size, dtype=bool)
                    mask[at] = True
                    pieces[index].append(window.filter(pl.lit(pl.Series(mask))).collect())
                else:
                    pieces[index].append(take(window.collect(), at))
    # One chunk per read: the file's pieces would otherwise leave hundreds of chunks in every answer column,
    # and a frame whose columns are chunked unlike its mask is copied whole by each later filter (a sticky
    # fan-out at 10M: 0.7 s faster in fresh processes, `stacked` unchanged).
    found = [pl.concat(parts, how="vertical", rechunk=True) for parts in pieces]
    return [frame_ if back is None else take(frame_, back) for frame_, back in zip(found, backs)]


def _dtype(name: str) -> pl.DataType:
    return getattr(pl, name)()


def _narrowing(outcomes: pl.LazyFrame, columns: list[str]) -> dict[str, pl.DataType]:
    """For each Int64 column, the narrowest integer type holding all its values, where narrower."""
    if not columns:
        return {}
    bounds = outcomes.select(*(pl.col(name).min().alias(f"{name}.low") for name in columns),
                             *(pl.col(name).max().alias(f"{name}.high") for name in columns)).collect().row(0, named=True)
    narrowing = {}
    for name in columns:
        low, high = bounds[f"{name}.low"], bounds[f"{name}.high"]
        for dtype, bits in ((pl.Int8, 7), (pl.Int16, 15), (pl.Int32, 31)):
            if low is not None and -(2**bits) <= low and high < 2**bits:
                narrowing[name] = dtype
                break
    return narrowing


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _complete(path: Path, any_version: bool = False) -> dict | None:
    """The meta of a complete layout of this format version (of any version with `any_version`), else None."""
    meta = path / "meta.json"
    if not meta.is_file():
        return None
    try:
        content = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if any_version or content.get("version") == LAYOUT_VERSION else None


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        (path / "used").touch()


def _layout_dir(root: Path, fingerprint: str) -> Path:
    return root / "layouts" / f"{fingerprint}-v{LAYOUT_VERSION}"


def check_cache_outside(folder: Path, cache_dir: Path | None = None) -> Path:
    """The cache root (absolute), after checking that it does not lie inside the data folder `folder`, an
    input no run may write into. `replay` (through open_layout) and `validate` both ask here, so the two
    refuse the same folders. Raises RoutesimError."""
    root = cache_root(cache_dir).absolute()
    data = Path(folder).resolve()
    if root.resolve() == data or data in root.resolve().parents:
        raise RoutesimError(f"the cache folder {root} is inside the data folder {folder}, which is an input",
                            fix="point --cache-dir (or XDG_CACHE_HOME) outside the data folder")
    return root


PIN = "pin"  # in a layout folder: held under a shared lock by every open Layout of it (`_pin`)


def _pin(target: Path) -> object | None:
    """The layout folder `target`'s pin file, open under a shared lock: a Layout holds it until it is garbage
    collected (`_held`), and eviction and `cache clear` skip a layout whose pin they cannot lock exclusively
    (`_removable`), so a command never loses the layout it reads. None when the layout is not there (never
    built, or renamed aside by an eviction before the lock was granted); a nullcontext when it cannot be
    pinned (a read-only cache, where nothing is evicted either)."""
    try:
        handle = open(target / PIN, "a+")  # noqa: SIM115 - held open by the Layout (`_held`), on purpose
    except OSError:
        return contextlib.nullcontext() if (target / "meta.json").is_file() else None
    try:
        fcntl.flock(handle, fcntl.LOCK_SH)  # waits only while an eviction renames the folder aside
    except OSError:
        handle.close()
        return contextlib.nullcontext() if (target / "meta.json").is_file() else None
    if not (target / "meta.json").is_file():  # renamed aside (evicted) before the lock was granted
        handle.close()
        return None
    return handle


def _held(layout: Layout, pin: object) -> Layout:
    """`layout`, holding `pin` (`_pin`) until it is garbage collected, when the pin is closed and its lock
    released."""
    if hasattr(pin, "close"):
        weakref.finalize(layout, pin.close)
    return layout


def _removable(path: Path) -> object | None:
    """The layout folder `path`'s pin, locked exclusively (the caller renames the folder aside, then closes
    it), or None while some process reads the layout (`_pin`)."""
    try:
        handle = open(path / PIN, "a+")  # noqa: SIM115 - closed by the caller once the folder is aside
    except OSError:
        return contextlib.nullcontext()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def open_layout(folder: Path, paths: list[Path], validate: Callable[[bool], None], cache_dir: Path | None = None,
                scan: Callable[[Path], pl.LazyFrame] = pl.scan_parquet) -> Layout | None:
    """The layout of the data folder `folder` (whose files are `paths`: traffic, then outcomes, read with
    `scan`, as the data contract reads them), built first if needed. `validate(keys)` raises on a broken
    data contract: the build runs after `validate(False)` and checks the keys itself; only when it finds a
    key problem does `validate(True)` run, to report it.

    Returns None when the cache cannot be written (the caller then validates and hashes itself).
    Raises RoutesimError when the cache folder lies inside the data folder.
    """
    root = check_cache_outside(folder, cache_dir)
    try:
        (root / "keys").mkdir(parents=True, exist_ok=True)
        (root / "layouts").mkdir(exist_ok=True)
    except OSError:
        return None
    stated_at = time.time_ns()
    keys = [file_key(path) for path in paths]
    key_file = root / "keys" / f"{_key_name(paths, keys)}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        fingerprint = json.loads(key_file.read_text(encoding="utf-8"))["fingerprint"]
        found = _layout_dir(root, fingerprint)
        pin = _pin(found)
        meta = _complete(found) if pin is not None else None
        if meta is not None:
            _touch(found)
            return _held(Layout(found, meta), pin)
    fingerprint = content_fingerprint(paths)
    target = _layout_dir(root, fingerprint)
    try:
        pin = _pin(target)
        meta = _complete(target) if pin is not None else None
        if meta is None:
            with _locked(root):
                meta = _complete(target)
                if meta is None:  # nobody built it while we waited for the lock
                    validate(False)
                    try:
                        meta = _build(root, target, folder, paths, fingerprint, scan)
                    except KeyProblem as problem:
                        validate(True)
                        raise RuntimeError(f"the layout build found {problem}, the data contract's key checks "
                                           "did not") from None
                    pin = _pin(target)
                    evict(root, max_bytes(), keep=target)
                else:  # built by another process meanwhile: pinned while no eviction can run (the lock)
                    pin = _pin(target)
        _touch(target)
        _note_source(target, folder, meta)
        steady = all(max(key[3], key[4]) < stated_at - RACY_SECONDS * 1e9 for key in keys)
        if steady and keys == [file_key(path) for path in paths]:
            _write_json(key_file, {"fingerprint": fingerprint, "files": [str(p.resolve()) for p in paths]})
        _drop_stale_keys(root, paths, key_file)
    except OSError:
        return None
    return _held(Layout(target, meta), pin)


SOURCES = "sources.json"  # beside meta.json: every other data folder found to hold the layout's content


def _note_source(target: Path, folder: Path, meta: dict) -> None:
    """Records `folder` among the data folders of the layout `target` (the one that built it is meta's
    `source`), so that `routesim cache ls` lists every folder a shared layout serves. Reached only when the
    fingerprint was computed (a folder not yet keyed), so a steady folder is recorded once."""
    source = str(Path(folder).resolve())
    if source == meta.get("source"):
        return
    with contextlib.suppress(OSError, ValueError):
        known = _sources(target)
        if source not in known:
            _write_json(target / SOURCES, {"sources": [*known, source]})


def _sources(target: Path) -> list[str]:
    try:
        return list(json.loads((target / SOURCES).read_text(encoding="utf-8"))["sources"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _write_json(path: Path, content: dict) -> None:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(content, out, indent=2, sort_keys=True)
    os.replace(name, path)


def bucket_of(count: int, key: str = "request_id") -> pl.Expr:
    """The hash bucket (0..count-1) of each row's `key`: every row of one request falls in one bucket."""
    return pl.col(key).hash(_HASH_SEED) % count


def _ts_ranges(traffic: pl.LazyFrame, requests: int) -> list[tuple[int | None, int | None, int]]:
    """Consecutive ranges of `ts` (low inclusive, high exclusive, as physical integers; None: unbounded)
    with the row id of each range's first request, each holding about RANGE_ROWS requests. A range is cut
    only at a timestamp, so requests with equal `ts` share a range and sort there by `request_id`. Holds
    the `ts` column alone (8 bytes a request)."""
    if requests <= RANGE_ROWS:
        return [(None, None, 0)]
    ts = np.sort(traffic.select(pl.col("ts").to_physical()).collect(engine="streaming").to_series().to_numpy())
    count = -(-requests // RANGE_ROWS)
    cuts = sorted({int(ts[requests * k // count]) for k in range(1, count)})
    firsts = np.searchsorted(ts, cuts, side="left").tolist()
    del ts
    lows, highs = [None, *cuts], [*cuts, None]
    return [(low, high, first) for low, high, first in zip(lows, highs, [0, *firsts], strict=True)]


def _in_range(low: int | None, high: int | None) -> pl.Expr:
    ts = pl.col("ts").to_physical()
    inside = pl.lit(True)
    if low is not None:
        inside &= ts >= low
    if high is not None:
        inside &= ts < high
    return inside


def split_by_bucket(frame: pl.LazyFrame, folder: Path | None, buckets: int,
                    key: str = "request_id") -> Callable[[int], pl.LazyFrame]:
    """Writes `frame` into `folder` split by hashed `key` (`bucket_of`) in one streaming pass, and
    returns a reader of one bucket. With one bucket nothing is written (`folder` may be None) and the
    reader returns `frame`."""
    if buckets == 1:
        return lambda _bucket: frame
    frame.with_columns(bucket_of(buckets, key).alias("__bucket")).sink_parquet(
        pl.PartitionBy(folder, key="__bucket", include_key=False), mkdir=True, compression=SCRATCH_COMPRESSION)
    schema = frame.collect_schema()

    def read(bucket: int) -> pl.LazyFrame:
        files = sorted((folder / f"__bucket={bucket}").glob("*.parquet"))
        return pl.scan_parquet(files, hive_partitioning=False) if files else pl.LazyFrame(schema=schema)
    return read


def _piece(frame: pl.DataFrame, file: Path, keep: bool) -> pl.DataFrame | Path:
    """`frame` itself when `keep` (small data stays in memory), else written to the scratch `file`."""
    if keep:
        return frame
    frame.write_parquet(file, compression=SCRATCH_COMPRESSION)
    return file


def _scan(pieces: list[pl.DataFrame | Path]) -> pl.LazyFrame:
    return pl.concat([piece.lazy() if isinstance(piece, pl.DataFrame) else
                      pl.scan_parquet(piece, hive_partitioning=False) for piece in pieces])


def _concatenate(pieces: list[pl.DataFrame | Path], target: Path) -> None:
    """One Parquet file of the pieces' rows in order (LAYOUT_COMPRESSION, ROW_GROUP_ROWS rows a row group), streamed
    from scratch files: the same bytes as `write_parquet` of them all in one frame."""
    if len(pieces) == 1 and isinstance(pieces[0], pl.DataFrame):
        pieces[0].write_parquet(target, compression=LAYOUT_COMPRESSION, row_group_size=ROW_GROUP_ROWS)
    else:
        _scan(pieces).sink_parquet(target, compression=LAYOUT_COMPRESSION, row_group_size=ROW_GROUP_ROWS)


def _session_firsts(sessions: list[pl.DataFrame | Path], firsts: list[int], count: int, scratch: Path,
                    keep: bool) -> list[pl.DataFrame | Path]:
    """Per range of row ids (starting at `firsts`, `count` in all), one column `SESSION_FIRST`: the row id of
    each request's session's first turn, its own row id for a request without a session. `sessions`: the
    ranges' (`session_id`, ROW) pieces. A session's turns may fall in many ranges, so the sessions are
    split by hashed session_id into buckets of about MEMORY_REQUESTS requests, each bucket's minimum row
    ids found in memory, and the results put back in row order one range at a time."""
    turns = _scan(sessions).filter(pl.col("session_id").is_not_null())
    buckets = max(1, -(-count // MEMORY_REQUESTS))
    turns_of = split_by_bucket(turns, scratch / "sessions-by-bucket", buckets, key="session_id")
    dtype = pl.UInt32 if count <= 2**32 else pl.Int64
    bounds = pl.Series(firsts, dtype=pl.Int64)
    found: dict[int, list[pl.DataFrame | Path]] = {}
    for bucket in range(buckets):
        anchored = (turns_of(bucket).select(pl.col(ROW).cast(pl.Int64),
                                            pl.col(ROW).min().over("session_id").cast(dtype).alias(SESSION_FIRST))
                    .with_columns((pl.lit(bounds).search_sorted(pl.col(ROW), side="right") - 1).alias("__range"))
                    .collect(engine="streaming"))
        for (part,), rows_of in anchored.partition_by("__range", as_dict=True).items():
            found.setdefault(part, []).append(_piece(rows_of.drop("__range"), scratch / f"first-{bucket}-{part}.parquet",
                                                     keep))
    shutil.rmtree(scratch / "sessions-by-bucket", ignore_errors=True)
    columns = []
    for part, (first, end) in enumerate(zip(firsts, [*firsts[1:], count], strict=True)):
        rows_here = pl.DataFrame({ROW: pl.int_range(first, end, dtype=pl.Int64, eager=True)})
        pieces = found.pop(part, [])
        if pieces:
            rows_here = rows_here.join(_scan(pieces).collect(), on=ROW, how="left", maintain_order="left")
        else:
            rows_here = rows_here.with_columns(pl.lit(None, dtype=dtype).alias(SESSION_FIRST))
        column = rows_here.select(pl.col(SESSION_FIRST).fill_null(pl.col(ROW).cast(dtype)))
        columns.append(_piece(column, scratch / f"firsts-{part}.parquet", keep))
    return columns


def _with_session_firsts(pieces: list[pl.DataFrame | Path], sessions: list[pl.DataFrame | Path], firsts: list[int],
                         count: int, scratch: Path, keep: bool) -> list[pl.DataFrame | Path]:
    """The requests' pieces (one per range) with their SESSION_FIRST column (`_session_firsts`)."""
    columns = _session_firsts(sessions, firsts, count, scratch, keep)
    joined = []
    for index, (piece, column) in enumerate(zip(pieces, columns, strict=True)):
        read = [part if isinstance(part, pl.DataFrame) else pl.read_parquet(part) for part in (piece, column)]
        joined.append(_piece(read[0].hstack(read[1]), scratch / f"requests-with-firsts-{index}.parquet", keep))
        for part in (piece, column):  # the scratch files are read once: free their disk as the build goes
            if isinstance(part, Path):
                part.unlink()
    return joined


def _build(root: Path, target: Path, folder: Path, paths: list[Path], fingerprint: str,
           scan: Callable[[Path], pl.LazyFrame]) -> dict:
    """Compiles the validated data in `paths` into `target` by way of a staging folder, out of core:

    1. the requests are sorted by (ts, request_id) one range of `ts` at a time (`_ts_ranges`), which fixes
       each request's row id; each range is kept apart with its (request_id, row id) keys; for traffic
       with sessions, each request then gets its session's first row id (`_with_session_firsts`);
    2. beyond MEMORY_REQUESTS requests, the keys and the outcomes are split by hashed request_id into
       buckets of about that many requests (one streaming pass each); per bucket, the outcomes'
       request_id column alone is joined to the keys, once, for each outcome row's row id in file order,
       and the outcome rows are read SLICE_OUTCOME_ROWS at a time and split by (model, sample) and row
       range;
    3. each (model, sample) is aligned with the requests one row range at a time.

    The pieces are then concatenated in order. At most one range of requests, one bucket of request ids
    and one slice of outcomes are held at a time; pieces stay in memory up to MEMORY_REQUESTS requests (or
    one slice of outcomes) and go to scratch files beyond. The files are the same whatever the ranges,
    buckets and slices (a test builds small data in many of each).

    Raises KeyProblem on a duplicate request id, an outcome of an unknown request, or samples of one
    (request, model) not numbered 0, 1, 2, ... once each (`_check_unique`, `_check_samples`).
    """
    traffic_path, outcomes_path = paths
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=root))
    try:
        traffic = scan(traffic_path)
        kept = [name for name in traffic.collect_schema().names() if name.lower() not in PROMPT_COLUMNS]
        requests = traffic.select(kept).with_columns(pl.col("request_id").cast(pl.String))
        count = requests.select(pl.len()).collect().item()
        ranges = _ts_ranges(requests, count)
        for folder_name in ("scratch", "slots"):
            (staging / folder_name).mkdir()
        scratch = staging / "scratch"
        small = count <= MEMORY_REQUESTS  # the requests' pieces and one slot's aligned columns stay in memory
        with_sessions = "session_id" in kept
        pieces, keys_pieces, session_pieces = [], [], []
        for index, (low, high, first) in enumerate(ranges):
            chunk = (requests if len(ranges) == 1 else requests.filter(_in_range(low, high))).sort(
                "ts", "request_id").collect(engine="streaming")
            pieces.append(_piece(chunk, scratch / f"requests-{index}.parquet", small))
            keys_pieces.append(_piece(chunk.select("request_id").with_row_index(ROW, offset=first),
                                      scratch / f"keys-{index}.parquet", small))
            if with_sessions:
                session_pieces.append(_piece(chunk.select("session_id").with_row_index(ROW, offset=first),
                                             scratch / f"sessions-{index}.parquet", small))
            del chunk
        firsts = [first for _, _, first in ranges]
        if with_sessions:
            pieces = _with_session_firsts(pieces, session_pieces, firsts, count, scratch, small)
        _concatenate(pieces, staging / "requests.parquet")
        del pieces, session_pieces

        outcomes = scan(outcomes_path).with_columns(pl.col("request_id").cast(pl.String),
                                                    pl.col("model").cast(pl.String))
        outcome_schema = outcomes.collect_schema()
        rows = outcomes.select(pl.len()).collect().item()
        buckets = max(1, -(-count // MEMORY_REQUESTS))
        value_columns = [name for name in outcome_schema.names() if name not in SLOT_KEYS]
        narrowing = _narrowing(outcomes, [name for name in value_columns if outcome_schema[name] == pl.Int64])
        keys_of = split_by_bucket(_scan(keys_pieces), scratch / "keys-by-bucket", buckets)
        outcomes_of = split_by_bucket(outcomes, scratch / "outcomes-by-bucket", buckets)
        # (model, sample) -> row range -> parts (frames when the outcomes are one slice); row ids and values
        parts: dict[tuple[str, int], dict[int, list[pl.DataFrame | Path]]] = {}
        written = 0
        bounds = pl.lit(pl.Series(firsts, dtype=pl.Int64))
        for bucket in range(buckets):
            keys = keys_of(bucket).collect()
            _check_unique(keys["request_id"])
            these = outcomes_of(bucket)
            # the row id of each outcome row, in file order: the request ids alone are joined, once
            row_ids = (these.select("request_id")
                       .join(keys.lazy(), on="request_id", how="left", maintain_order="left").collect()[ROW])
            del keys
            if row_ids.null_count():
                raise KeyProblem(f"{row_ids.null_count()} outcome row(s) of unknown requests")
            for offset in range(0, len(row_ids), SLICE_OUTCOME_ROWS):
                joined = (these.slice(offset, SLICE_OUTCOME_ROWS).drop("request_id")
                          .with_columns(pl.col(name).cast(dtype) for name, dtype in narrowing.items())
                          .collect(engine="streaming")
                          .with_columns(row_ids.slice(offset, SLICE_OUTCOME_ROWS).alias(ROW))
                          .with_columns((bounds.search_sorted(pl.col(ROW).cast(pl.Int64), side="right") - 1)
                                        .alias("__range")))
                for (model, sample, part), rows_of in joined.partition_by("model", "sample", "__range",
                                                                          as_dict=True).items():
                    parts.setdefault((model, sample), {}).setdefault(part, []).append(
                        _piece(rows_of.drop("model", "sample", "__range"), scratch / f"part-{written}.parquet",
                               rows <= SLICE_OUTCOME_ROWS))
                    written += 1
                del joined
        shutil.rmtree(scratch / "keys-by-bucket", ignore_errors=True)
        shutil.rmtree(scratch / "outcomes-by-bucket", ignore_errors=True)
        part_schema = pl.Schema({ROW: pl.Int64, **{name: narrowing.get(name, outcome_schema[name])
                                                   for name in value_columns}})

        slots = []
        below: dict[int, np.ndarray] = {}  # per row range: which requests the previous slot answers
        order = sorted(parts)
        for index, (model, sample) in enumerate(order):
            follows = index > 0 and order[index - 1] == (model, sample - 1)
            pieces = []
            for part, (first, end) in enumerate(zip(firsts, [*firsts[1:], count], strict=True)):
                found = parts[(model, sample)].pop(part, [])
                present = (_scan(found).collect().with_columns(pl.col(ROW).cast(pl.Int64))
                           if found else pl.DataFrame(schema=part_schema))
                rows_here = pl.DataFrame({ROW: pl.int_range(first, end, dtype=pl.Int64, eager=True)})
                aligned = (rows_here.join(present.with_columns(pl.lit(True).alias(PRESENT)), on=ROW, how="left",
                                          maintain_order="left")
                           .with_columns(pl.col(PRESENT).fill_null(False)).select(*value_columns, PRESENT))
                answered = aligned[PRESENT].to_numpy()
                _check_samples(model, sample, end - first, answered, below.get(part) if follows else None)
                below[part] = answered
                pieces.append(_piece(aligned, scratch / f"aligned-{index}-{part}.parquet", small))
                for piece in found:
                    if isinstance(piece, Path):
                        piece.unlink()
            file = f"{index}.parquet"
            _concatenate(pieces, staging / "slots" / file)
            for piece in pieces:
                if isinstance(piece, Path):
                    piece.unlink()
            slots.append([model, sample, file])
        shutil.rmtree(scratch)
        meta = {
            "version": LAYOUT_VERSION,
            "fingerprint": fingerprint,
            "source": str(Path(folder).resolve()),
            "requests": count,
            "outcome_rows": rows,
            "buckets": buckets,
            "slots": slots,
            "outcome_schema": {name: str(dtype.base_type()) for name, dtype in outcome_schema.items()
                               if name not in SLOT_KEYS},
            "narrowed": sorted(narrowing),
            "sample_dtype": str(outcome_schema["sample"]),
            "prompt_columns_dropped": sorted(set(traffic.collect_schema().names()) - set(kept)),
            "validation": {"problems": [], "checked": "every check of the data contract (README, 'Data contract')"},
        }
        _write_json(staging / "meta.json", meta)
        staging.chmod(0o755)
        if target.exists():  # an incomplete or older layout under the same name
            _remove(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def _check_unique(request_ids: pl.Series) -> None:
    """Raises KeyProblem if a request id occurs twice. Distinct hashes prove the ids distinct; only when
    two hash alike are the strings compared."""
    if (request_ids.hash(_HASH_SEED).n_unique() < len(request_ids)
            and request_ids.n_unique() < len(request_ids)):
        raise KeyProblem("a duplicate request id")


def _check_samples(model: str, sample: int, requests: int, answered: np.ndarray,
                   answered_below: np.ndarray | None) -> None:
    """Raises KeyProblem unless the samples of each (request, model) run 0, 1, 2, ... once each, checked
    one (model, sample) slot and row range at a time, slots in (model, sample) order: `answered` (bool,
    one per request of the range) marks the requests this slot answers, `answered_below` those that
    slot (model, sample - 1) answers (None when there is no such slot). Samples are never negative (a row
    check). A set of samples is 0..k-1 exactly when each sample s > 0 comes with s - 1, and once each
    exactly when aligning the slot's rows with the requests added none."""
    if len(answered) != requests:
        raise KeyProblem(f"a repeated (request_id, model={model!r}, sample={sample})")
    if sample > 0 and (answered.any() if answered_below is None else (answered & ~answered_below).any()):
        raise KeyProblem(f"a gap in the samples of model {model!r} below sample {sample}")


# What routesim makes in a cache folder, by place and name. A cache folder may be one the user named
# (--cache-dir), holding files of their own; `made_by_routesim` is the one test by which `cache ls`, eviction
# and `cache clear` count and remove entries, so they agree and never touch anything else.
_FOLDER, _FILE = True, False
_MADE = {
    "layouts": [
        ("layout", _FOLDER, re.compile(r"[0-9a-f]{16}-v[0-9]+")),  # _layout_dir: content_fingerprint -vVERSION
        ("leftover", _FOLDER, re.compile(r"\.removing-[0-9a-f]{16}-v[0-9]+-[0-9]+")),  # _remove: set aside, pid
    ],
    "keys": [
        ("key", _FILE, re.compile(r"[0-9a-f]{32}\.json")),  # open_layout: _key_name .json
        ("leftover", _FILE, re.compile(r"\.[0-9a-f]{32}\.json\.[a-z0-9_]{8}")),  # _write_json's mkstemp, cut short
    ],
    # _build's staging folder: tempfile.mkdtemp's 8 characters after the prefix
    ".": [("leftover", _FOLDER, re.compile(r"building-[a-z0-9_]{8}"))],
}
_ROOT_OWN = ("layouts", "keys", "lock")  # the cache root's fixed entries (lock: _locked)


def made_by_routesim(root: Path, path: Path) -> str | None:
    """What routesim made `path` as, for a path directly in the cache folder `root` or in its `layouts/` or
    `keys/`: "layout" (a layout folder, of any format version, complete or not), "key" (a key file),
    "leftover" (a staging folder of a build, a layout being removed, a key half written: what an
    interrupted run leaves), or None: not routesim's (a user's file, a symlink, a file named like a folder),
    never listed, evicted or removed. Judged by name and kind (folder or file), never by content."""
    place = {root: ".", root / "layouts": "layouts", root / "keys": "keys"}.get(path.parent)
    try:
        mode = path.lstat().st_mode  # lstat: a symlink is neither, so nothing is removed through one
    except OSError:
        return None
    for kind, folder, name in _MADE.get(place, []):
        if name.fullmatch(path.name) and (stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)):
            return kind
    return None


def _made(root: Path, place: str, kinds: tuple[str, ...]) -> list[Path]:
    """The paths in `root/place` that routesim made as one of `kinds`, sorted."""
    folder = root / place
    found = sorted(folder.iterdir()) if folder.is_dir() else []
    return [path for path in found if made_by_routesim(root, path) in kinds]


def not_made_by_routesim(root: Path) -> list[Path]:
    """The entries of the cache folder `root` (and of its `layouts/` and `keys/`) that routesim did not make
    (`made_by_routesim`), relative to `root`, sorted: what `cache clear` leaves and `cache ls` points out."""
    if not root.is_dir():
        return []
    found = [path for path in sorted(root.iterdir())
             if path.name not in _ROOT_OWN and made_by_routesim(root, path) is None]
    for place in ("layouts", "keys"):
        if (root / place).is_dir():
            found += [path for path in sorted((root / place).iterdir()) if made_by_routesim(root, path) is None]
    return [path.relative_to(root) for path in found]


def _remove(path: Path) -> None:
    """Removes a layout folder: renamed aside first, so no reader ever sees it half deleted."""
    aside = path.with_name(f".removing-{path.name}-{os.getpid()}")
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


@dataclass(frozen=True)
class Entry:
    """One cached layout, as `routesim cache ls` lists it; layouts of an older format version are listed
    (and evicted first, as never used again) until removed."""

    path: Path
    version: int
    fingerprint: str
    source: str
    requests: int
    slots: int
    bytes: int
    last_used_ns: int
    # Every data folder found to hold this content: `source` (which built it) first, then the others in
    # the order they were first opened (sources.json) or keyed (keys/*.json of older caches); a folder known
    # to hold other content now, or gone, is left out.
    sources: tuple[str, ...] = ()
    # Those of `sources` whose files changed since routesim last read them: they may hold other content.
    changed: tuple[str, ...] = ()


def _keyed_sources(root: Path) -> tuple[dict[str, list[str]], set[str]]:
    """Per fingerprint, the data folders whose key files point at it and whose files still have that key;
    and the folders whose every key file is stale (their files changed or went since routesim read them).
    A folder in the first part holds that content now; one in the second may hold anything."""
    held: dict[str, list[str]] = {}
    stale: set[str] = set()
    for path in _made(root, "keys", ("key",)):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, IndexError):
            content = json.loads(path.read_text(encoding="utf-8"))
            files = [Path(name) for name in content["files"]]
            folder = str(files[0].parent)
            try:
                fresh = _key_name(files, [file_key(file) for file in files]) == path.stem
            except OSError:  # a file is gone
                fresh = False
            if fresh:
                held.setdefault(content["fingerprint"], []).append(folder)
            else:
                stale.add(folder)
    return held, stale - {folder for folders in held.values() for folder in folders}


def _drop_stale_keys(root: Path, paths: list[Path], current: Path) -> None:
    """Removes the key files of the files `paths` other than `current`: written for what they held before
    (a key names the files' device, inode, size and times, so an older one can never match again). Without
    it every change of a folder left a key behind, and `cache ls` listed the folder under its old content."""
    files = [str(path.resolve()) for path in paths]
    for key in _made(root, "keys", ("key",)):
        if key == current:
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if json.loads(key.read_text(encoding="utf-8"))["files"] == files:
                key.unlink()


def entries(root: Path) -> list[Entry]:
    """The complete layouts in the cache, of the current format version first, most recently used first.
    Only folders routesim made (`made_by_routesim`) are read: a user's folder is never listed, even one
    holding a meta.json."""
    found = []
    keyed, stale = _keyed_sources(root)
    elsewhere = {folder: fingerprint for fingerprint, folders in keyed.items() for folder in folders}
    for path in _made(root, "layouts", ("layout",)):
        meta = _complete(path, any_version=True)
        if meta is None:
            continue
        used = path / "used"
        last = used.stat().st_mtime_ns if used.exists() else (path / "meta.json").stat().st_mtime_ns
        named = dict.fromkeys([meta["source"], *_sources(path), *keyed.get(meta["fingerprint"], [])])
        # A folder known to hold other content now, or gone, no longer holds this one.
        sources = tuple(folder for folder in named
                        if elsewhere.get(folder, meta["fingerprint"]) == meta["fingerprint"] and Path(folder).is_dir())
        found.append(Entry(path, meta.get("version", 0), meta["fingerprint"], meta["source"], meta["requests"],
                           len(meta["slots"]), _size(path), last, sources,
                           tuple(folder for folder in sources if folder in stale)))
    return sorted(found, key=lambda entry: (entry.version != LAYOUT_VERSION, -entry.last_used_ns, entry.fingerprint))


def evict(root: Path, cap: int, keep: Path | None = None) -> list[Entry]:
    """Removes the least recently used layouts (never `keep`) until the cache holds at most `cap` bytes.
    Returns what was removed."""
    listed = entries(root)
    total = sum(entry.bytes for entry in listed)
    removed = []
    for entry in reversed(listed):
        if total <= cap:
            break
        if keep is not None and entry.path == keep:
            continue
        pin = _removable(entry.path)
        if pin is None:  # a running command reads it
            continue
        with pin:
            _remove(entry.path)
        total -= entry.bytes
        removed.append(entry)
    if removed:  # keys pointing at removed layouts are dropped with them
        gone = {entry.fingerprint for entry in removed}
        for key in _made(root, "keys", ("key",)):
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads(key.read_text(encoding="utf-8"))["fingerprint"] in gone:
                    key.unlink()
    return removed


def clear(root: Path) -> list[Entry]:
    """Removes, under the cache's lock, every layout (of any format version, complete or not) and key of the
    cache at `root`, and what an interrupted run left (`made_by_routesim`), but a layout a running command
    reads (`_pin`: `entries` still lists it afterwards); nothing else in it is touched
    (`not_made_by_routesim` lists it). Returns the complete layouts removed."""
    if not (root / "layouts").is_dir():
        return []
    with _locked(root):  # no build runs meanwhile, so every staging folder is a leftover
        removed = evict(root, -1)  # a layout a running command reads (`_pin`) stays
        for leftover in [*_made(root, ".", ("leftover",)), *_made(root, "layouts", ("leftover",))]:
            shutil.rmtree(leftover, ignore_errors=True)
        for incomplete in _made(root, "layouts", ("layout",)):  # a layout folder evict did not list
            if _complete(incomplete, any_version=True) is None and (pin := _removable(incomplete)) is not None:
                with pin:
                    shutil.rmtree(incomplete, ignore_errors=True)
        for key in _made(root, "keys", ("key", "leftover")):
            key.unlink(missing_ok=True)
    return removed
