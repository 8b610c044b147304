"""Replays on shards: 1 shard, 16 shards in local processes and 16 shards as Ray tasks give the bytes of
the replay of the whole folder (simulator.core.sharded, simulator.core.partials)."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from simulator.core.chunks import chunks_of
from simulator.core.outputs import json_output
from simulator.core.partials import exact_mean, exact_sums, fetch_local, merge_parts, parts_of, quantiles
from simulator.core.runner import Inputs, load_scenarios, run_scenario
from simulator.core.sharded import replay_chunked, replay_sharded
from simulator.core.shards import write_shards
from simulator.datasets.generate import write_week

ROOT = Path(__file__).resolve().parent.parent
# Ray's own warnings (deprecations inside Ray, its start-up notes) are not routesim's to fix.
RAY_WARNINGS = pytest.mark.filterwarnings(r"ignore:::ray(\.|$)")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A generated 3,000-request world, the stacked scenario on it, and the world as 1 and as 16 shards."""
    base = tmp_path_factory.mktemp("sharded")
    write_week(base / "week", 3_000, days=3, seed=5)
    text = (ROOT / "scenarios" / "stacked.yaml").read_text()
    lines = [f"data: {base / 'week'}" if line.startswith("data:") else
             f"prices: {ROOT / 'data' / 'prices' / 'support.yaml'}" if line.startswith("prices:") else line
             for line in text.splitlines()]
    scenario = base / "stacked.yaml"
    scenario.write_text("\n".join(lines) + "\n")
    # The gate's baseline, the swept cascade and a sticky-session policy, on the same week.
    for name in ("flagship-everywhere", "cascade", "sticky-sessions"):
        text = (ROOT / "scenarios" / f"{name}.yaml").read_text()
        (base / f"{name}.yaml").write_text("\n".join(
            f"data: {base / 'week'}" if line.startswith("data:") else
            f"prices: {ROOT / 'data' / 'prices' / 'support.yaml'}" if line.startswith("prices:") else line
            for line in text.splitlines()) + "\n")
    for count in (1, 16):
        write_shards(base / "week", count, base / f"shards-{count}")
    return base, scenario


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="the test extra installs ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_replay_cli_gives_the_same_json_whole_on_one_shard_and_on_sixteen_local_shards(sharded, cli):
    base, scenario = sharded
    whole = cli("replay", scenario, "--json")
    assert whole.code == 0, whole.err
    for shards in ("shards-1", "shards-16"):
        split = cli("replay", scenario, "--json", "--shards", base / shards, "--runner", "local")
        assert split.code == 0, split.err
        assert split.out == whole.out, shards


@RAY_WARNINGS
def test_sixteen_ray_shards_give_the_bytes_of_the_whole_for_the_stacked_scenario(sharded, ray_session):
    base, scenario_path = sharded
    [scenario] = load_scenarios([scenario_path])
    inputs = Inputs()
    whole = json_output(run_scenario(scenario, inputs).summary)
    assert json_output(replay_sharded(scenario, inputs, base / "shards-16", "ray")) == whole


def test_shards_of_other_data_and_options_without_shards_are_refused(sharded, cli, tmp_path):
    base, scenario = sharded
    write_week(tmp_path / "other", 200, days=1, seed=6)
    write_shards(tmp_path / "other", 2, tmp_path / "other-shards")
    stale = cli("replay", scenario, "--shards", tmp_path / "other-shards")
    assert stale.code == 2 and "were not written from the data folder" in stale.err
    assert cli("replay", scenario, "--runner", "ray").code == 2
    keeps = cli("replay", scenario, "--shards", base / "shards-16", "--decisions", tmp_path / "d.parquet")
    assert keeps.code == 2 and "--decisions" in keeps.err and not (tmp_path / "d.parquet").exists()
    assert cli("sweep", base / "cascade.yaml", "--runner", "ray").code == 2
    held = cli("sweep", base / "cascade.yaml", "--shards", base / "shards-16", "--target-pass-rate", "0.9",
               "--fit-until", "2026-11-20")
    assert held.code == 2 and "--fit-until" in held.err
    stale_gate = cli("gate", "--baseline", base / "flagship-everywhere.yaml", "--candidate", scenario,
                     "--shards", tmp_path / "other-shards")
    assert stale_gate.code == 2 and "were not written from the data folder" in stale_gate.err


def _parts(frame: pl.DataFrame):
    scopes = {"all": pl.lit("")}
    return parts_of(frame, scopes, ("all",)), frame.select(pl.lit("").alias("all"), "latency_ms")


def _decisions(latency: np.ndarray, score: np.ndarray) -> pl.DataFrame:
    n = len(latency)
    return pl.DataFrame({"cost_nano_usd": np.arange(n, dtype=np.int64), "passed": np.ones(n, bool),
                         "score": score, "multi_step": np.zeros(n, bool), "escalated": np.zeros(n, bool),
                         "retry_attempts": np.zeros(n, np.int32), "retry_exhausted": np.zeros(n, bool),
                         "latency_ms": latency})


@pytest.mark.parametrize("splits", [1, 2, 7])
def test_merged_parts_give_polars_quantiles_and_the_exact_mean_for_any_split(splits):
    rng = np.random.default_rng(splits)
    # ties, a spread over many powers of two, and values sharing a histogram bucket
    latency = np.concatenate([rng.lognormal(7, 2, 900), np.full(60, 1234.5), 1000 + rng.random(40) * 1e-9])
    score = rng.random(1000) ** 3
    frame = _decisions(latency, score)
    pieces = [_parts(piece) for piece in np.array_split(np.arange(1000), splits) for piece in [frame[piece]]]
    merged = merge_parts([part for part, _ in pieces])
    found = quantiles(merged, ("all",), (0.5, 0.95, 0.99), fetch_local([kept for _, kept in pieces]))["all"][""]
    for q, value in found.items():
        assert value == pl.Series(latency).quantile(q, interpolation="linear")
    total = exact_sums(merged.scopes["all"]["scores"])[""]
    assert total == sum(Fraction(value) for value in score)
    assert exact_mean(total, 1000) == float(sum(Fraction(value) for value in score) / 1000)
    assert merged.scopes["all"]["counts"]["cost_nano"].item() == sum(range(1000))


@pytest.mark.parametrize(("name", "workers"), [("stacked", 2), ("stacked", 8), ("sticky-sessions", 8)])
def test_a_replay_in_chunks_gives_the_bytes_of_the_whole_at_two_and_eight_workers(sharded, name, workers):
    # The week carries sessions, so the chunks are ranges of sessions' first turns, each read up to the last
    # turn of its sessions; the sticky policy's later turns follow their first turn in any chunk (eight plain
    # ranges of row numbers would cut sessions and change its figures).
    base, _ = sharded
    [scenario] = load_scenarios([base / f"{name}.yaml"])
    inputs = Inputs()
    summary = run_scenario(scenario, inputs).summary
    assert summary["sessions"]["sessions"] > 0
    assert replay_chunked(scenario, inputs, 1, min_chunk=1) is None  # one worker chunks only above MAX_CHUNK_REQUESTS
    assert json_output(replay_chunked(scenario, inputs, workers, min_chunk=1)) == json_output(summary)


def test_one_worker_replays_large_data_in_chunks_in_its_own_process_with_the_bytes_of_the_whole(sharded, monkeypatch):
    """Above MAX_CHUNK_REQUESTS requests one worker still replays in chunks, each in turn in this process (no
    process pool starts), so only one chunk's requests are held at a time; the summary is the whole's."""
    from simulator.core import sharded as chunking

    base, _ = sharded
    [scenario] = load_scenarios([base / "sticky-sessions.yaml"])
    inputs = Inputs()
    whole = json_output(run_scenario(scenario, inputs).summary)
    monkeypatch.setattr(chunking, "MAX_CHUNK_REQUESTS", 1_000)  # the week has 3,000 requests
    monkeypatch.setattr(chunking, "ProcessPoolExecutor", None)  # a pool would fail: none may start
    ran = []
    real = chunking.replay_shard
    monkeypatch.setattr(chunking, "replay_shard", lambda task: ran.append(task.chunk) or real(task))
    assert json_output(replay_chunked(scenario, inputs, 1)) == whole
    assert len(ran) == 3 and all(chunk.rows is not None for chunk in ran)


def test_chunks_of_traffic_with_sessions_are_the_shards_whole_sessions_in_row_order(sharded):
    base, _ = sharded
    traffic = pl.scan_parquet(base / "week" / "traffic.parquet").sort("ts", "request_id")
    parts = [chunk.of_requests(traffic).collect() for chunk in chunks_of(3_000, 16, sessions=True)]
    for shard, part in enumerate(parts):
        written = pl.read_parquet(base / "shards-16" / f"shard={shard}" / "traffic.parquet")
        assert sorted(part["request_id"]) == sorted(written["request_id"])
        assert part.select("ts", "request_id").equals(part.select("ts", "request_id").sort("ts", "request_id"))
    sessions = pl.concat([part.select("session_id", pl.lit(index).alias("chunk")) for index, part in enumerate(parts)])
    assert sessions.drop_nulls().group_by("session_id").agg(pl.col("chunk").n_unique())["chunk"].max() == 1
    assert sum(part.height for part in parts) == 3_000
    assert [chunk.rows for chunk in chunks_of(10, 3, sessions=False)] == [(0, 3), (3, 6), (6, 10)]


def _sweep_and_gate(cli, base: Path, *shard_options) -> tuple[str, str]:
    """The JSON of `routesim sweep` (cascade, 300 thresholds) and `routesim gate` (flagship-everywhere
    against stacked, 200 resamples), with `shard_options` added to both commands."""
    sweep = cli("sweep", base / "cascade.yaml", "--points", "300", "--json", *shard_options)
    assert sweep.code == 0, sweep.err
    gate = cli("gate", "--baseline", base / "flagship-everywhere.yaml", "--candidate", base / "stacked.yaml",
               "--resamples", "200", "--json", *shard_options)
    assert gate.code in (0, 1), gate.err
    return sweep.out, gate.out


def test_sweep_and_gate_give_the_same_json_whole_on_one_shard_and_on_sixteen_local_shards(sharded, cli):
    base, _ = sharded
    whole = _sweep_and_gate(cli, base)
    assert '"points"' in whole[0] and '"overall"' in whole[1]
    for shards in ("shards-1", "shards-16"):
        assert _sweep_and_gate(cli, base, "--shards", base / shards, "--runner", "local") == whole, shards


def test_a_sweep_of_large_data_runs_in_chunks_with_the_bytes_of_the_whole(sharded, cli, monkeypatch):
    """Above MAX_CHUNK_REQUESTS requests `routesim sweep` lines up A and B chunk by chunk (whole sessions, so
    each turn's prompt-cache losses stay with it) and stacks the frames: the curve is the whole's."""
    from simulator.analyses import sweep as sweeping
    from simulator.core import sharded as chunking

    base, _ = sharded
    whole = cli("sweep", base / "cascade.yaml", "--points", "300", "--json")
    assert whole.code == 0, whole.err
    chunks = []
    real = sweeping.sweep_shard
    monkeypatch.setattr(sweeping, "sweep_shard", lambda task, gate: chunks.append(task.chunk) or real(task, gate))
    monkeypatch.setattr(chunking, "MAX_CHUNK_REQUESTS", 700)  # the week has 3,000 requests
    monkeypatch.setattr(chunking, "default_workers", lambda: 1)  # in this process, where the spy is
    split = cli("sweep", base / "cascade.yaml", "--points", "300", "--json")
    assert split.code == 0, split.err
    assert len(chunks) == 5 and all(chunk.through is not None for chunk in chunks)  # ranges of sessions
    assert split.out == whole.out


@RAY_WARNINGS
def test_sixteen_ray_shards_give_the_bytes_of_the_whole_for_the_sweep_and_the_gate(sharded, ray_session, cli):
    base, _ = sharded
    assert _sweep_and_gate(cli, base, "--shards", base / "shards-16", "--runner", "ray") == _sweep_and_gate(cli, base)


def test_chunks_of_a_layout_with_sessions_are_ranges_of_first_turns_holding_whole_sessions(sharded):
    """From a layout, a chunk of traffic with sessions is the sessions whose first turn is in its range of
    row ids, read up to their last turn (`through`): every request once, sessions whole, in row order, and
    a chunk reads far fewer rows than the bucket of sessions it replaces, which spans the whole data."""
    from simulator.core.contract import load_data
    from simulator.core.engine import LAYOUT_ROW

    base, _ = sharded
    requests = load_data(base / "week").layout.scan_requests().with_row_index(LAYOUT_ROW)
    chunks = chunks_of(3_000, 7, True, requests)  # bounds 0, 428, 857, ...: not a whole number apart
    parts = [chunk.of_requests(requests).collect() for chunk in chunks]
    assert [chunk.rows for chunk in chunks][:2] == [(0, 428), (428, 857)]
    assert all(chunk.through is not None for chunk in chunks)
    assert any(chunk.through > chunk.rows[1] for chunk in chunks)  # some sessions run past their range
    assert sorted(pl.concat(parts)[LAYOUT_ROW].to_list()) == list(range(3_000))
    for chunk, part in zip(chunks, parts):
        assert part[LAYOUT_ROW].is_sorted() and part[LAYOUT_ROW].max() < chunk.through
    sessions = pl.concat([part.select("session_id", pl.lit(index).alias("chunk")) for index, part in enumerate(parts)])
    assert sessions.drop_nulls().group_by("session_id").agg(pl.col("chunk").n_unique())["chunk"].max() == 1
    assert sum(chunk.through - chunk.rows[0] for chunk in chunks) < 2 * 3_000


def test_large_data_replays_in_chunks_of_bounded_size_several_per_worker(sharded, monkeypatch):
    from simulator.core import sharded as chunking

    _, scenario_path = sharded
    [scenario] = load_scenarios([scenario_path])
    inputs = Inputs()
    whole = json_output(run_scenario(scenario, inputs).summary)
    ran = []
    real = chunking._run_local
    monkeypatch.setattr(chunking, "_run_local",
                        lambda tasks, scratch, workers: ran.append(len(tasks)) or real(tasks, scratch, workers))
    monkeypatch.setattr(chunking, "MAX_CHUNK_REQUESTS", 700)
    assert json_output(replay_chunked(scenario, inputs, 2, min_chunk=1)) == whole
    assert ran[0] > 2 and ran[0] % min(2, os.cpu_count()) == 0  # whole rounds: as many chunks per process


def test_the_workers_spill_their_kept_latencies_to_a_scratch_folder_removed_afterwards(sharded, monkeypatch, tmp_path):
    """Each chunk's worker writes the latencies it keeps for the exact quantiles to a file in a temporary
    folder (under $TMPDIR), which the parent reads back and removes once the summary is built."""
    import tempfile

    from simulator.core import sharded as chunking

    _, scenario_path = sharded
    [scenario] = load_scenarios([scenario_path])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []
    real = chunking._run_local

    def recording(tasks, scratch, workers):
        found = real(tasks, scratch, workers)
        seen.append((scratch.parent, sorted(path.name for path in scratch.iterdir()), len(tasks)))
        return found

    monkeypatch.setattr(chunking, "_run_local", recording)
    assert replay_chunked(scenario, Inputs(), 2, min_chunk=1) is not None
    [(parent, files, tasks)] = seen
    assert parent == tmp_path and files == sorted(f"latencies-{index}.arrow" for index in range(tasks))
    assert not list(tmp_path.glob("routesim-latencies-*"))


def test_a_replay_in_parts_above_the_controls_limit_keeps_no_requests_and_says_what_a_whole_one_says(
        sharded, cli, monkeypatch):
    """Above CONTROL_REQUESTS replayed requests the merged part drops its requests' columns as the parts come
    in; the controls then say they were skipped, exactly as a replay in one piece says it, and the session
    metrics, merged from per-part terms, are the whole's."""
    import simulator.analyses.controls as controls
    import simulator.core.results as results
    from simulator.core import sharded as chunking

    base, _ = sharded
    scenario = base / "sticky-sessions.yaml"
    for module in (controls, results):
        monkeypatch.setattr(module, "CONTROL_REQUESTS", 1_000)  # the week replays 3,000
    monkeypatch.setattr(chunking, "MIN_CHUNK_REQUESTS", 500)
    merged = []
    real = chunking._summary

    def recording(*args):
        summary, part = real(*args)
        merged.append(part)
        return summary, part

    monkeypatch.setattr(chunking, "_summary", recording)
    whole = cli("replay", scenario, "--json", "--workers", "1")
    split = cli("replay", scenario, "--json", "--workers", "2")
    assert whole.code == 0 and split.code == 0, whole.err + split.err
    assert merged and merged[-1].requests is None  # the replay did run in parts, which kept no requests
    found = json.loads(split.out)[0]
    assert found["sessions"]["sessions"] > 0 and "computed up to 1,000" in found["controls"]["skipped"]
    assert split.out == whole.out
