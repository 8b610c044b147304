"""Replay of sharded data: each shard replays into a mergeable part, the parts merge into the summary.

`replay_sharded` checks the scenario against the whole data folder it names (models, slices, columns,
the shards' source fingerprint), sends one task per shard to a runner, merges the parts
(simulator.core.results.merge_replay_parts) and finishes the summary exactly as a replay in one piece does
(`summary_from`), so the JSON is byte for byte the same for any number of shards and either runner:
money and counts are integers, score sums are exact, and latency quantiles are exact order statistics
found in two passes (simulator.core.partials).

Runners (`RUNNERS`):
- `local`: a process pool of one worker per core (spawned processes, as polars is not fork-safe); each
  task's kept latencies come back to this process for the quantiles' second pass.
- `ray`: one Ray task per shard. The kept latencies stay in Ray's object store; the second pass runs as
  Ray tasks on them and only the few values in the wanted buckets come back. An initialised Ray session
  is used as is; otherwise `ray.init()` connects to the cluster at `RAY_ADDRESS`, or starts a local one.
  Every node must see the shards' folder at the same path (a shared file system).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from simulator.core.errors import RoutesimError

RUNNERS = ("local", "ray")


@dataclass(frozen=True)
class ShardTask:
    scenario: object  # simulator.core.scenario.Scenario
    shard: str  # the shard's data folder
    prices: str | None
    cache_dir: str | None  # the layout cache, as the command was given it


@dataclass(frozen=True)
class ShardFailure:
    """A RoutesimError raised in a worker, carried back as a value (exceptions with keyword arguments do
    not survive pickling)."""

    what: str
    where: str | None
    fix: str | None


def replay_shard(task: ShardTask):
    """Replays one shard into (ReplayPart, kept latencies); (None, None) for a shard with no request in
    the window; (ShardFailure, None) for bad input."""
    import polars as pl

    from simulator.core.contract import load_data
    from simulator.core.engine import in_window, replay
    from simulator.core.prices import load_prices
    from simulator.core.results import replay_part

    try:
        data = load_data(Path(task.shard), Path(task.cache_dir) if task.cache_dir else None)
        if in_window(task.scenario, data.traffic.select("ts")).select(pl.len()).collect().item() == 0:
            return None, None
        sheet = load_prices(Path(task.prices)) if task.prices else None
        return replay_part(replay(task.scenario, data, sheet, part=True), data)
    except RoutesimError as error:
        return ShardFailure(error.what, error.where, error.fix), None


def _run_local(tasks: list[ShardTask]):
    from simulator.core.partials import fetch_local

    workers = max(1, min(len(tasks), os.cpu_count() or 1))
    if workers == 1:
        results = [replay_shard(task) for task in tasks]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(replay_shard, tasks))
    return [part for part, _ in results], fetch_local([kept for _, kept in results if kept is not None])


def _run_ray(tasks: list[ShardTask]):
    try:
        import ray
    except ImportError:
        raise RoutesimError("--runner ray needs Ray, which is not installed", where="--runner",
                            fix="pip install 'routesim[ray]', or use --runner local") from None
    from simulator.core.partials import values_in

    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS names a cluster; without it a local instance starts
    replay_remote = ray.remote(num_returns=2)(replay_shard)
    pairs = [replay_remote.remote(task) for task in tasks]
    parts = ray.get([part for part, _ in pairs])
    kept = [kept for part, (_, kept) in zip(parts, pairs) if part is not None and not isinstance(part, ShardFailure)]
    values_remote = ray.remote(values_in)

    def fetch(wanted):
        return ray.get([values_remote.remote(ref, wanted) for ref in kept])

    return parts, fetch


def replay_sharded(scenario, inputs, shards: Path, runner: str = "local") -> dict:
    """The summary of `scenario` replayed on the shards in `shards` of the data folder it names (see the
    module docstring); RoutesimError for bad input, as a replay of the whole folder would raise."""
    from simulator.core.engine import all_skipped, check_policy, missing_outcomes, no_requests
    from simulator.core.layout import cache_root
    from simulator.core.results import merge_replay_parts, summary_from
    from simulator.core.shards import read_manifest, shard_folders

    if runner not in RUNNERS:
        raise RoutesimError(f"--runner is '{runner}'", where="--runner", fix=f"use one of {', '.join(RUNNERS)}")
    data = inputs.data(scenario.data)
    manifest = read_manifest(shards)
    if manifest["source_fingerprint"] != data.fingerprint:
        raise RoutesimError(f"the shards in {shards} were not written from the data folder {scenario.data} as it is now",
                            where=f"scenario '{scenario.name}', key 'data'",
                            fix=f"write them again: routesim shard {scenario.data} --shards N -o {shards}")
    if scenario.sample is not None:
        raise RoutesimError("a scenario with a 'sample' is replayed on the whole data folder, not on shards",
                            where=f"scenario '{scenario.name}', key 'sample'",
                            fix="leave out --shards, or the scenario's sample")
    check_policy(scenario, data)
    sheet = inputs.prices(scenario.prices)
    cache = str(cache_root().absolute())
    tasks = [ShardTask(scenario, str(folder.absolute()), str(Path(scenario.prices).absolute()) if scenario.prices
                       else None, cache) for folder in shard_folders(shards)]
    parts, fetch = (_run_ray if runner == "ray" else _run_local)(tasks)
    failures = [part for part in parts if isinstance(part, ShardFailure)]
    if failures:
        raise RoutesimError(failures[0].what, where=failures[0].where, fix=failures[0].fix)
    parts = [part for part in parts if part is not None]
    if not parts or sum(part.selected for part in parts) == 0:
        raise no_requests(scenario)
    merged = merge_replay_parts(parts)
    if merged.missing and scenario.on_missing == "error":
        raise missing_outcomes(scenario, merged.missing, merged.missing_example)
    if merged.replayed == 0:
        raise all_skipped(scenario, merged.missing)
    return summary_from(scenario, merged, fetch, data, sheet)
