"""Shards of a data folder: Hive-partitioned by hashed request id, each shard a data folder of its own.

`write_shards(DATA, N, OUT)` writes `OUT/shard=K/traffic.parquet` and `OUT/shard=K/outcomes.parquet` for
K = 0 .. N-1: the requests whose hashed `request_id` (or `session_id`, when the traffic carries sessions,
so that a session's turns stay together) falls in shard K, with every outcome of those
requests, so each shard validates and replays alone and a request's calls never span two shards (a `columns.json`
of serving-time signals is copied into every shard).
`OUT/shards.json` records the shard count, the source's fingerprint, the requests per shard and the hash
(polars' `hash` with a fixed seed, so the assignment is fixed for a given polars version).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from simulator.core.contract import OUTCOMES_FILE, SIGNALS_FILE, TRAFFIC_FILE, load_data
from simulator.core.errors import RoutesimError
from simulator.core.formats import counted
from simulator.core.layout import content_fingerprint
from simulator.core.limits import MAX_SHARDS
from simulator.core.outputs import MARKER, atomic_folder

SHARD_SEED = 1516
MANIFEST = "shards.json"


def shard_of(shards: int, sessions: bool = False) -> pl.Expr:
    """The shard (0 .. shards-1) of each row, from its `request_id`; with `sessions` (traffic that carries
    `session_id`), from its session where it has one, so that a session's turns share a shard."""
    key = pl.col("request_id").cast(pl.String)
    if sessions:
        key = pl.coalesce(pl.col("session_id").cast(pl.String), key)
    return (key.hash(SHARD_SEED) % shards).cast(pl.UInt32)


def write_shards(folder: Path, shards: int, out: Path, *, force: bool = False) -> dict:
    """Validates the data folder `folder` and writes it as `shards` shards under `out` (see the module
    docstring); returns the manifest. Raises RoutesimError when `shards` < 1, above MAX_SHARDS or above the
    number of requests, when `out` is the data folder or inside it (an input is never replaced), or when
    `out` holds files and `force` is not given."""
    if shards < 1:
        raise RoutesimError(f"--shards is {shards}; a data folder splits into at least one shard",
                            where="--shards", fix="give --shards 1 or more")
    if shards > MAX_SHARDS:
        raise RoutesimError(f"--shards is {shards:,}; routesim writes at most {MAX_SHARDS:,} shards",
                            where="--shards", fix=f"give --shards {MAX_SHARDS:,} or fewer (see 'Reliability' in "
                                                  "the README)")
    source, target = Path(folder).resolve(), Path(out).resolve()
    if target == source or source in target.parents:
        raise RoutesimError(f"the shards' folder {out} is the data folder {folder} or inside it, which is an input",
                            fix="write the shards to a folder outside the data folder")
    if target.exists() and not target.is_dir() and not force:
        raise RoutesimError(f"{out} is a file, but the shards are written into a folder",
                            where=str(out), fix="choose a new -o DIR (or add --force to replace the file)")
    # As every output: a folder routesim wrote (its marker file) is replaced; someone else's needs --force.
    if (target.exists() and (not target.is_dir() or any(target.iterdir())) and not force
            and not (target / MARKER).is_file()):
        raise RoutesimError(f"{out} already holds files routesim did not write (it has no {MARKER} file)",
                            where=str(out), fix="choose a new -o DIR, or add --force to replace it")
    data = load_data(folder)
    sessions = "session_id" in data.traffic.collect_schema().names()
    # Outcomes carry no session: each takes its request's shard.
    keyed = data.traffic.select("request_id", shard_of(shards, sessions).alias("__shard"))
    counts = dict(keyed.group_by("__shard").len().collect().iter_rows())
    requests = sum(counts.values())
    if shards > requests:
        raise RoutesimError(f"--shards is {shards:,} but {folder} holds {counted(requests, 'request')}: more shards "
                            "than "
                            "requests would leave some of them empty", where="--shards",
                            fix=f"give --shards {max(requests, 1):,} or fewer (hashing may still leave one empty, "
                                "which is replayed as holding no requests)")
    manifest = {"shards": shards, "source_fingerprint": data.fingerprint, "hash": f"polars hash, seed {SHARD_SEED}",
                "polars": pl.__version__, "requests": [counts.get(shard, 0) for shard in range(shards)]}
    with atomic_folder(Path(out)) as staging:
        for shard in range(shards):
            part = staging / f"shard={shard}"
            part.mkdir()
            data.traffic.filter(shard_of(shards, sessions) == shard).sink_parquet(part / TRAFFIC_FILE)
            mine = keyed.filter(pl.col("__shard") == shard).select("request_id")
            data.outcomes.join(mine, on="request_id", how="semi", maintain_order="left").sink_parquet(part / OUTCOMES_FILE)
            if (Path(folder) / SIGNALS_FILE).is_file():  # the serving-time declarations hold for every shard
                shutil.copyfile(Path(folder) / SIGNALS_FILE, part / SIGNALS_FILE)
        # Each shard's content, as load_data fingerprints it: a replay on the shards checks that every shard
        # still holds what was written (simulator.core.sharded.task_inputs), not only the source's fingerprint.
        manifest["shard_fingerprints"] = [content_fingerprint([staging / f"shard={shard}" / TRAFFIC_FILE,
                                                               staging / f"shard={shard}" / OUTCOMES_FILE])
                                          for shard in range(shards)]
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def shard_folders(folder: Path) -> list[Path]:
    """The shard folders of a folder `routesim shard` wrote, in shard order (RoutesimError otherwise)."""
    manifest = read_manifest(folder)
    folders = [Path(folder) / f"shard={shard}" for shard in range(manifest["shards"])]
    absent = [str(path) for path in folders if not path.is_dir()]
    if absent:
        raise RoutesimError(f"the shards' folder {folder} lacks {absent[0]}", where=str(folder),
                            fix="write the shards again with 'routesim shard DATA --shards N -o DIR'")
    return folders


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        int(manifest["shards"]), str(manifest["source_fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RoutesimError(f"{folder} holds no shards written by 'routesim shard' ({type(error).__name__}: {error})",
                            where=str(path), fix="write them with 'routesim shard DATA --shards N -o DIR'") from None
    return manifest
