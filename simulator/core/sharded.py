"""Replay of sharded data, or of one data folder in chunks: each shard (or chunk of row numbers)
replays into a mergeable part, and the parts merge into the summary. Sweeps and gates on shards
(simulator.analyses.sweep.prepare_sharded, simulator.analyses.gate.run_gate) run their own per-shard
function through the same checks (`shard_tasks`) and runners (`map_tasks`).

`replay_sharded` checks the scenario against the whole data folder it names (models, slices, columns,
the shards' source fingerprint), sends one task per shard to a runner, merges the parts
(simulator.core.results.merge_replay_parts) and finishes the summary exactly as a replay in one piece does
(`summary_from`), so the JSON is byte for byte the same for any number of shards and either runner:
money and counts are integers, score sums are exact, and latency quantiles are exact order statistics
found in two passes (simulator.core.partials).

Runners (`RUNNERS`):
- `local`: a process pool of at most one worker per core (spawned processes, as polars is not fork-safe). Each
  task writes its kept latencies to a temporary folder under $TMPDIR (`_summary_local`) that this process
  reads back, one task's at a time, for the quantiles' second pass; the parts are taken as they come and keep their
  requests' columns only up to CONTROL_REQUESTS replayed requests in all, so this process holds no
  per-request column of a large replay.
- `ray`: one Ray task per shard. The kept latencies stay in Ray's object store; the second pass runs as
  Ray tasks on them and only the few values in the wanted buckets come back. An initialised Ray session
  is used as is; otherwise `ray.init()` connects to the cluster at `RAY_ADDRESS`, or starts a local one.
  Every node must see the shards' folder at the same path (a shared file system).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from simulator.core.errors import RoutesimError

if TYPE_CHECKING:  # polars, which chunks imports, loads only inside the functions that replay
    from simulator.core.chunks import Chunk

RUNNERS = ("local", "ray")


@dataclass(frozen=True)
class ShardTask:
    scenario: object  # simulator.core.scenario.Scenario
    shard: str  # the shard's data folder
    prices: str | None
    cache_dir: str | None  # the layout cache, as the command was given it
    chunk: Chunk | None = None  # a part of the shard's requests (None: all of them)
    spill: str | None = None  # where to write the kept latencies (None: hand them back)
    fingerprint: str | None = None  # the shard's content as `routesim shard` wrote it (None: not checked)


@dataclass(frozen=True)
class ShardFailure:
    """A RoutesimError raised in a worker, carried back as a value (exceptions with keyword arguments do
    not survive pickling)."""

    what: str
    where: str | None
    fix: str | None


def task_inputs(task: ShardTask):
    """(the shard's data, its price sheet); None when no request of the shard (of the task's chunk) is in the
    scenario's window."""
    from simulator.core.contract import load_data
    from simulator.core.engine import count_in_window
    from simulator.core.prices import load_prices

    data = load_data(Path(task.shard), Path(task.cache_dir) if task.cache_dir else None)
    if task.fingerprint is not None and data.fingerprint != task.fingerprint:
        raise RoutesimError(f"the shard {task.shard} no longer holds what 'routesim shard' wrote there (its content "
                            f"is {data.fingerprint}, the manifest says {task.fingerprint})", where=task.shard,
                            fix="write the shards again with 'routesim shard DATA --shards N -o DIR'")
    if count_in_window(task.scenario, data, task.chunk) == 0:
        return None
    return data, load_prices(Path(task.prices)) if task.prices else None


def _replay_of(task: ShardTask):
    """(the shard's replay as a part, its data); (None, None) when no request of the shard is in the window."""
    from simulator.core.engine import replay

    found = task_inputs(task)
    if found is None:
        return None, None
    data, sheet = found
    return replay(task.scenario, data, sheet, part=True, chunk=task.chunk), data


def replay_shard(task: ShardTask):
    """Replays one shard into (ReplayPart, kept latencies), the kept latencies as a frame or, for a task
    with `spill`, as the path of the Arrow IPC file they were written to; (None, None) for a shard with no
    request in the window; (ShardFailure, None) for bad input."""
    from simulator.core.results import replay_part

    try:
        result, data = _replay_of(task)
        if result is None:
            return None, None
        part, kept = replay_part(result, data)
        if task.spill is None:
            return part, kept
        kept.write_ipc(task.spill, compression="lz4")  # the scope keys repeat: they compress well
        return part, task.spill
    except RoutesimError as error:
        return ShardFailure(error.what, error.where, error.fix), None


def decisions_of_shard(task: ShardTask, columns: tuple[str, ...]):
    """(the per-request decisions' `columns` that exist, Coverage) of the shard's replay; (None, None) for a
    shard with no request in the window; (ShardFailure, None) for bad input."""
    try:
        result, _ = _replay_of(task)
        if result is None:
            return None, None
        return result.decisions.select(name for name in columns if name in result.decisions.columns), result.coverage
    except RoutesimError as error:
        return ShardFailure(error.what, error.where, error.fix), None


def merged_decisions(scenario, results: list):
    """The decisions of the shards' replays (`decisions_of_shard`) in one frame, raising what a replay of the
    whole folder would: no requests in the window, missing outcomes under on_missing: error, every request
    left out."""
    import polars as pl

    from simulator.core.engine import all_skipped, missing_outcomes, no_requests

    raise_failures([result for result, _ in results])
    found = [(decisions, coverage) for decisions, coverage in results if decisions is not None]
    if not found:
        raise no_requests(scenario)
    by_model: dict[str, int] = {}
    examples = []
    for _, coverage in found:
        for model, count in coverage.missing_by_model.items():
            by_model[model] = by_model.get(model, 0) + count
        if coverage.missing_example is not None:
            examples.append(tuple(coverage.missing_example))
    by_model = dict(sorted(by_model.items()))
    if by_model and scenario.on_missing == "error":
        raise missing_outcomes(scenario, by_model, min(examples))
    decisions = pl.concat([decisions for decisions, _ in found], how="vertical_relaxed")
    if decisions.is_empty():
        raise all_skipped(scenario, by_model)
    return decisions


def _run_local(tasks: list[ShardTask], scratch: Path, workers: int | None = None):
    """(parts, fetch) of `tasks` replayed in a local pool, their kept latencies spilled into `scratch`. The
    parts are taken in task order as they finish; once they hold more than CONTROL_REQUESTS replayed
    requests in all, they drop their requests' columns (the controls are skipped above that anyway)."""
    from dataclasses import replace

    from simulator.core.partials import fetch_local
    from simulator.core.results import CONTROL_REQUESTS, ReplayPart

    parts, kept, replayed = [], [], 0
    spilling = [replace(task, spill=str(scratch / f"latencies-{index}.arrow")) for index, task in enumerate(tasks)]
    for part, spilled in iter_tasks(replay_shard, spilling, "local", workers):
        if isinstance(part, ReplayPart):
            replayed += part.replayed
            kept.append(spilled)
        parts.append(part)
        if replayed > CONTROL_REQUESTS:  # the controls will be skipped: no part need keep its requests
            parts = [part.without_requests() if isinstance(part, ReplayPart) else part for part in parts]
    return parts, fetch_local(kept)


def _summary_local(scenario, data, sheet, tasks: list[ShardTask], workers: int | None = None):
    """`_summary` of `tasks` run by `_run_local`, in a scratch folder removed afterwards."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="routesim-latencies-") as scratch:
        return _summary(scenario, data, sheet, *_run_local(tasks, Path(scratch), workers))


def _ray():
    """The ray module, with a session: the one already initialised, else ray.init() (which connects to the
    cluster at RAY_ADDRESS, or starts a local instance)."""
    try:
        import ray
    except ImportError:
        raise RoutesimError("--runner ray needs Ray, which is not installed", where="--runner",
                            fix="pip install 'routesim[ray]', or use --runner local") from None
    if not ray.is_initialized():
        ray.init()
    return ray


def _run_ray(tasks: list[ShardTask]):
    from simulator.core.partials import values_in

    ray = _ray()
    replay_remote = ray.remote(num_returns=2)(replay_shard)
    pairs = [replay_remote.remote(task) for task in tasks]
    parts = ray.get([part for part, _ in pairs])
    kept = [kept for part, (_, kept) in zip(parts, pairs) if part is not None and not isinstance(part, ShardFailure)]
    values_remote = ray.remote(values_in)

    def fetch(wanted):
        return ray.get([values_remote.remote(ref, wanted) for ref in kept])

    return parts, fetch


def shard_tasks(scenario, inputs, shards: Path, runner: str = "local") -> list[ShardTask]:
    """One task per shard in `shards` for `scenario`, after checking that the shards were written from the
    data folder it names as it is now, that it has no `sample`, and that its policy fits that whole folder
    (models, slices, columns); RoutesimError otherwise, as a run on the whole folder would raise."""
    from dataclasses import replace

    from simulator.core.engine import check_policy
    from simulator.core.shards import read_manifest, shard_folders

    if runner not in RUNNERS:
        raise RoutesimError(f"--runner is '{runner}'", where="--runner", fix=f"use one of {', '.join(RUNNERS)}")
    data = inputs.data(scenario)
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
    # Shards written before their fingerprints were recorded are checked by the source's fingerprint alone.
    expected = manifest.get("shard_fingerprints") or [None] * manifest["shards"]
    return [replace(_task(scenario, folder), fingerprint=fingerprint)
            for folder, fingerprint in zip(shard_folders(shards), expected)]


def replay_sharded(scenario, inputs, shards: Path, runner: str = "local", *, with_part: bool = False):
    """The summary of `scenario` replayed on the shards in `shards` of the data folder it names (see the
    module docstring); RoutesimError for bad input, as a replay of the whole folder would raise. With
    `with_part`, (summary, merged ReplayPart), for the analyses that read more than the summary."""
    tasks = shard_tasks(scenario, inputs, shards, runner)
    data, sheet = inputs.data(scenario), inputs.prices(scenario)
    summary, merged = (_summary(scenario, data, sheet, *_run_ray(tasks)) if runner == "ray"
                       else _summary_local(scenario, data, sheet, tasks))
    return (summary, merged) if with_part else summary


def _call(function, task):
    return function(task)


def map_tasks(function, tasks: list, runner: str = "local", workers: int | None = None) -> list:
    """`function(task)` for every task, in task order, on the runner: a local process pool of at most
    `workers` processes and one per core, or one Ray task each. `function` must be importable by the workers
    (a module-level function, or a functools.partial of one); a RoutesimError it raises should come back as
    a ShardFailure (`raise_failures`)."""
    if runner == "ray":
        ray = _ray()
        remote = ray.remote(_call)
        return ray.get([remote.remote(function, task) for task in tasks])
    return list(iter_tasks(function, tasks, runner, workers))


def iter_tasks(function, tasks: list, runner: str = "local", workers: int | None = None) -> Iterator:
    """`map_tasks`, yielding each result in task order as soon as it and those before it are done, so that
    a caller can fold them without holding them all."""
    if runner == "ray":
        yield from map_tasks(function, tasks, runner, workers)
        return
    # More processes than cores would only contend: extra tasks wait for a free process.
    workers = max(1, min(len(tasks), workers or os.cpu_count() or 1, os.cpu_count() or 1))
    if workers == 1:
        yield from (function(task) for task in tasks)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(function, tasks)


def raise_failures(results: list) -> None:
    """Raises the first ShardFailure among `results` as the RoutesimError it was."""
    for result in results:
        if isinstance(result, ShardFailure):
            raise RoutesimError(result.what, where=result.where, fix=result.fix)


def _task(scenario, folder: Path, chunk: Chunk | None = None) -> ShardTask:
    from simulator.core.layout import cache_root

    prices = str(Path(scenario.prices).absolute()) if scenario.prices else None
    return ShardTask(scenario, str(Path(folder).absolute()), prices, str(cache_root().absolute()), chunk)


def _summary(scenario, data, sheet, parts, fetch):
    """The summary from the parts of the shards or chunks, raising what a replay in one piece would, and
    the merged part."""
    from simulator.core.engine import all_skipped, missing_outcomes, no_requests
    from simulator.core.results import merge_replay_parts, summary_from

    raise_failures(parts)
    parts = [part for part in parts if part is not None]
    if not parts or sum(part.selected for part in parts) == 0:
        raise no_requests(scenario)
    merged = merge_replay_parts(parts)
    if merged.missing and scenario.on_missing == "error":
        raise missing_outcomes(scenario, merged.missing, merged.missing_example)
    if merged.replayed == 0:
        raise all_skipped(scenario, merged.missing)
    return summary_from(scenario, merged, fetch, data, sheet), merged


# A chunk smaller than this is not worth a process of its own: each chunk's process starts anew (imports,
# about a second of CPU). When chunks of sessions were hash buckets that each decoded every slot file whole,
# 2 chunks took 1.6-1.9x the CPU of one piece at 1M and 3M requests (README "Benchmark"). One piece holds
# about 0.6 GB per million requests.
MIN_CHUNK_REQUESTS = 2_000_000
# Nor larger than this, so a worker's memory stays bounded however large the data: beyond one chunk per
# worker of this size, each worker replays several chunks in turn. A chunk of 2.5M requests of a 100M-request
# week, with its summary part, peaks at 1.8 GB and one of 5M at 3.1 GB (2026-12-02, chunks of sessions' first
# turns), but with 2.5M the bench's 100M replays peaked at 5.3-6.08 GB in all: a worker that has replayed
# many chunks holds more than one fresh (1.8 GB after its first 2M chunk, 2.3 GB after 25). With 2M the
# bench's 100M replays peaked at 4.9 GB; at 10M, 3.3 GB in all against 3.8 GB for 2.5M. Since one process runs
# the chunks in turn on 2 cores, reusing the pages it frees (simulator.cli.KEEP_FREED_PAGES), its peak is
# about what its largest chunk needs: for the stacked replay of 10M requests with the pages kept for good,
# 1.3 GB with chunks of 1M, 1.6-1.8 GB with 1.5M, 2.1 GB with 2M, in 9.8-10.3 s, 9.5 s and 9.4-9.9 s
# (2026-12-03); with them kept for 3 s, 1.5 GB with 1.5M.
MAX_CHUNK_REQUESTS = 1_500_000


def default_workers() -> int:
    """Processes a replay in chunks runs on by default: one per two cores. A chunk's replay keeps about two
    cores busy on its own (polars' threads), so on 2 cores a second process only contends: the stacked
    replay of 10M requests took 12.3 s in two processes and 10.1 s in one running its chunks in turn
    (2026-12-03, README "Benchmark")."""
    return max(1, (os.cpu_count() or 1) // 2)


def chunk_tasks(scenario, inputs, workers: int, min_chunk: int | None = None) -> list[ShardTask] | None:
    """One task per chunk of the scenario's data folder (simulator.core.chunks: ranges of the requests' row
    numbers, or, for traffic with sessions, the sessions whose first turns are in such a range): one chunk per
    worker (more, of at most about MAX_CHUNK_REQUESTS each, on large data, as many for each process). Each
    chunk holds whole sessions in (ts, request_id) order, so sticky sessions and prompt caches replay in a
    chunk as in the whole. None when the data is better replayed in one piece: fewer than two chunks of
    `min_chunk` (default MIN_CHUNK_REQUESTS) requests for as many workers and no more than
    MAX_CHUNK_REQUESTS requests in all, or a `sample` (drawn over the whole window). Checks the policy
    against the whole folder first, as a replay in one piece would."""
    from simulator.core.chunks import chunks_of
    from simulator.core.engine import check_policy, request_rows

    if scenario.sample is not None:
        return None
    data = inputs.data(scenario)
    total = request_rows(data)
    smallest = MIN_CHUNK_REQUESTS if min_chunk is None else min_chunk
    count = max(min(workers, total // max(smallest, 1)), -(-total // MAX_CHUNK_REQUESTS))
    at_once = min(workers, os.cpu_count() or 1)
    if count > at_once:  # whole rounds: each process replays as many chunks, none is left to finish one alone
        count = -(-count // at_once) * at_once
    if count < 2:
        return None
    check_policy(scenario, data)
    sessions = "session_id" in data.traffic.collect_schema().names()
    anchors = data.layout.scan_requests() if data.layout is not None else None
    return [_task(scenario, scenario.data, chunk) for chunk in chunks_of(total, count, sessions, anchors)]


def replay_chunked(scenario, inputs, workers: int, min_chunk: int | None = None, *, with_part: bool = False):
    """The summary of `scenario` replayed in chunks (`chunk_tasks`), at most one process per core, merged
    exactly as shards are; None when it is better replayed in one piece (`chunk_tasks`). One worker replays
    its chunks in turn in this process, so that however large the data only one chunk's requests are held
    at a time. No per-request decisions are built. With `with_part`, (summary, merged ReplayPart) as
    replay_sharded gives them."""
    tasks = chunk_tasks(scenario, inputs, workers, min_chunk)
    if tasks is None:
        return None
    data = inputs.data(scenario)
    summary, merged = _summary_local(scenario, data, inputs.prices(scenario), tasks, workers)
    return (summary, merged) if with_part else summary
