"""The compiled layout: built once per content fingerprint, found again by a cheap key, never stale."""

from __future__ import annotations

import dataclasses
import gc
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from simulator.core import layout
from simulator.core.contract import load_data, validate_folder
from simulator.core.engine import replay
from simulator.core.errors import RoutesimError
from tests.conftest import OUTCOME_SCHEMA, outcome_row, tiny_outcomes, tiny_traffic
from tests.worlds import random_world, write_frames


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def steady(monkeypatch):
    """Files just written count as settled, so a key is recorded (the racy-file guard is tested apart)."""
    monkeypatch.setattr(layout, "RACY_SECONDS", 0.0)


def forbid(monkeypatch, *names):
    def refuse(*_args, **_kwargs):
        raise AssertionError("called on unchanged data")

    for name in names:
        monkeypatch.setattr(f"simulator.core.{name}", refuse)


def test_unchanged_data_is_neither_validated_nor_hashed_again(world, cache, steady, monkeypatch):
    first = load_data(world.data, cache)
    forbid(monkeypatch, "contract.validate_folder", "layout.content_fingerprint")
    second = load_data(world.data, cache)
    assert second.fingerprint == first.fingerprint and second.layout.path == first.layout.path


def test_the_fingerprint_is_the_content_hash_of_the_two_files(world, cache):
    loaded = load_data(world.data, cache)
    assert loaded.fingerprint == layout.content_fingerprint([world.data / "traffic.parquet",
                                                             world.data / "outcomes.parquet"])
    assert loaded.layout.meta["validation"]["problems"] == []


def test_a_copy_with_kept_mtime_is_hashed_again_and_finds_the_same_layout(world, cache, steady, monkeypatch,
                                                                          tmp_path):
    built = load_data(world.data, cache)
    copy = tmp_path / "copy"
    shutil.copytree(world.data, copy)  # copies mtimes, as cp -p does; inode and ctime differ
    forbid(monkeypatch, "contract.validate_folder")
    hashed = []
    real = layout.content_fingerprint
    monkeypatch.setattr(layout, "content_fingerprint", lambda paths: hashed.append(paths) or real(paths))
    copied = load_data(copy, cache)
    assert len(hashed) == 1 and copied.layout.path == built.layout.path


def test_a_changed_input_builds_a_new_layout(world, cache, steady):
    before = load_data(world.data, cache)
    changed = tiny_outcomes().with_columns(pl.when(pl.col("model") == "big").then(2000.0)
                                           .otherwise(pl.col("latency_ms")).alias("latency_ms"))
    world.write_data(tiny_traffic(), changed)
    after = load_data(world.data, cache)
    assert after.fingerprint != before.fingerprint
    assert after.layout.slot("big", 0).collect()["latency_ms"].to_list() == [2000.0] * 3


def test_a_file_changed_within_the_racy_window_records_no_key(world, cache):
    load_data(world.data, cache)  # the files were written a moment ago
    assert list((cache / "keys").glob("*.json")) == []


def test_broken_data_is_refused_and_builds_nothing(world, cache):
    world.write_data(tiny_traffic(), tiny_outcomes().with_columns(pl.lit(-1).alias("output_tokens")))
    with pytest.raises(RoutesimError, match="negative"):
        load_data(world.data, cache)
    assert list((cache / "layouts").iterdir()) == []


def test_a_partly_built_layout_is_never_used(world, cache):
    fingerprint = layout.content_fingerprint([world.data / "traffic.parquet", world.data / "outcomes.parquet"])
    partial = cache / "layouts" / f"{fingerprint}-v{layout.LAYOUT_VERSION}"
    (partial / "slots").mkdir(parents=True)
    (partial / "requests.parquet").write_bytes(b"half a file")
    loaded = load_data(world.data, cache)
    assert loaded.layout.scan_requests().collect()["request_id"].to_list() == ["a", "b", "c"]
    assert json.loads((partial / "meta.json").read_text())["fingerprint"] == fingerprint


def test_requests_are_in_ts_then_request_id_order_and_slots_are_aligned_with_them(world, cache):
    noon = dt.datetime(2026, 11, 16, 12, tzinfo=dt.UTC)
    traffic = pl.DataFrame({"request_id": ["z", "y", "x"], "ts": [noon, noon, noon - dt.timedelta(hours=1)],
                            "slice": ["faq"] * 3, "input_tokens": [1, 2, 3], "prompt": ["secret"] * 3})
    outcomes = pl.DataFrame([outcome_row("z", "small", output_tokens=26), outcome_row("x", "small", output_tokens=24),
                             outcome_row("y", "small", output_tokens=25, sample=0),
                             outcome_row("y", "small", output_tokens=125, sample=1)], schema=OUTCOME_SCHEMA)
    world.write_data(traffic, outcomes)
    built = load_data(world.data, cache).layout
    requests = built.scan_requests().collect()
    assert requests["request_id"].to_list() == ["x", "y", "z"]
    assert "prompt" not in requests.columns and built.meta["prompt_columns_dropped"] == ["prompt"]
    first, second = built.slot("small", 0).collect(), built.slot("small", 1).collect()
    assert first["output_tokens"].to_list() == [24, 25, 26] and first.schema["output_tokens"] == pl.Int64
    assert second["output_tokens"].to_list() == [None, 125, None]
    assert second["__present"].to_list() == [False, True, False]
    assert "output_tokens" in built.meta["narrowed"]  # stored as a narrower integer, read back as Int64


def test_a_build_in_buckets_gives_the_same_layout(world, tmp_path, monkeypatch):
    whole = load_data(world.data, tmp_path / "one").layout
    monkeypatch.setattr(layout, "MEMORY_REQUESTS", 2)
    monkeypatch.setattr(layout, "SLICE_OUTCOME_ROWS", 2)
    bucketed = load_data(world.data, tmp_path / "many").layout
    assert bucketed.meta["buckets"] == -(-whole.requests // 2) > 1
    for model, sample in whole.slots:
        assert bucketed.slot(model, sample).collect().equals(whole.slot(model, sample).collect())


def _files(built: layout.Layout) -> dict[str, bytes]:
    return {str(path.relative_to(built.path)): path.read_bytes() for path in sorted(built.path.rglob("*.parquet"))}


@pytest.mark.parametrize("seed", [3, 11])
def test_a_build_in_many_ts_ranges_and_buckets_writes_the_same_bytes(seed, tmp_path, monkeypatch):
    world = random_world(seed)
    # whole hours: many requests share a timestamp, so ranges are cut between runs of equal ts
    traffic = world.traffic.with_columns(pl.col("ts").dt.truncate("1h"))
    data = write_frames(tmp_path / "data", traffic, world.outcomes)
    monkeypatch.setattr(layout, "ROW_GROUP_ROWS", 4)  # several row groups per file, cut at the same rows
    whole = load_data(data, tmp_path / "one").layout
    monkeypatch.setattr(layout, "RANGE_ROWS", 3)
    monkeypatch.setattr(layout, "MEMORY_REQUESTS", 2)
    monkeypatch.setattr(layout, "SLICE_OUTCOME_ROWS", 4)
    split = load_data(data, tmp_path / "many").layout
    assert whole.meta["buckets"] == 1 and split.meta["buckets"] > 3
    assert _files(split) == _files(whole) and len(_files(whole)) == len(whole.slots) + 1
    assert split.meta | {"buckets": 1} == whole.meta
    requests = whole.scan_requests().collect()
    assert requests["request_id"].equals(traffic.sort("ts", "request_id")["request_id"])
    # each request carries the row id of its session's first turn (its own without a session)
    rows = requests.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    first = pl.when(pl.col("session_id").is_null()).then(pl.col("row")).otherwise(pl.col("row").min().over("session_id"))
    assert requests["session_id"].null_count() > 0 and rows["session_id"].n_unique() < rows.height
    assert rows[layout.SESSION_FIRST].cast(pl.Int64).equals(rows.select(first)["row"], check_names=False)


def test_the_least_recently_used_layout_is_evicted_beyond_the_cap(world, cache, monkeypatch, tmp_path):
    older = load_data(world.data, cache).layout.path  # the path only: nothing reads the layout any more
    other = tmp_path / "other"
    shutil.copytree(world.data, other)
    pl.DataFrame(tiny_outcomes()).with_columns(pl.lit(7).alias("output_tokens")).write_parquet(
        other / "outcomes.parquet")
    monkeypatch.setenv("ROUTESIM_CACHE_MAX_BYTES", "1")  # room for the newest layout only
    newer = load_data(other, cache).layout
    assert not older.exists() and newer.path.exists()
    assert [entry.path for entry in layout.entries(cache)] == [newer.path]


def test_a_layout_a_command_reads_is_neither_evicted_nor_cleared_until_it_is_let_go(world, cache, monkeypatch,
                                                                                   tmp_path, cli):
    # A report over two data folders read the first one's layout after the second one's build evicted it.
    reading = load_data(world.data, cache)
    other = tmp_path / "other"
    shutil.copytree(world.data, other)
    pl.DataFrame(tiny_outcomes()).with_columns(pl.lit(7).alias("output_tokens")).write_parquet(
        other / "outcomes.parquet")
    monkeypatch.setenv("ROUTESIM_CACHE_MAX_BYTES", "1")
    newer = load_data(other, cache).layout.path
    assert reading.layout.path.exists() and reading.traffic.collect().height == 3
    cleared = cli("--cache-dir", cache, "cache", "clear")
    assert cleared.code == 0 and "left 1 layout a running command reads" in cleared.out
    assert reading.layout.path.exists() and not newer.exists()
    held = reading.layout.path
    del reading
    gc.collect()
    assert layout.clear(cache) and not held.exists()


def test_the_cache_is_never_inside_a_data_folder(world, cli):
    result = cli("--cache-dir", world.data / "cache", "replay", world.scenario())
    assert result.code == 2 and "inside the data folder" in result.err
    assert not (world.data / "cache").exists()


def test_the_global_cache_dir_option_in_both_spellings(world, cli, tmp_path):
    for spelling in (["--cache-dir", tmp_path / "spaced"], [f"--cache-dir={tmp_path / 'joined'}"]):
        assert cli(*spelling, "replay", world.scenario()).code == 0
    assert layout.entries(tmp_path / "spaced") and layout.entries(tmp_path / "joined")
    for incomplete in (["--cache-dir"], ["--cache-dir", "--help"], ["--cache-dir="]):
        result = cli(*incomplete)
        assert result.code == 2 and "--cache-dir needs a folder" in result.err
    forgotten = cli("--cache-dir", "replay", world.scenario())  # the folder left out: 'replay' is no folder
    assert forgotten.code == 2 and "'replay' is a command" in forgotten.err
    assert "routesim --cache-dir DIR replay" in forgotten.err
    (tmp_path / "a-file").write_text("not a cache")
    a_file = cli("--cache-dir", tmp_path / "a-file", "replay", world.scenario())
    assert a_file.code == 2 and "is a file" in a_file.err and "fix:" in a_file.err
    assert (tmp_path / "a-file").read_text() == "not a cache"


def test_cache_ls_and_clear(world, cli, cache, monkeypatch):
    monkeypatch.setenv("ROUTESIM_CACHE_DIR", str(cache))  # restored after the test, unlike --cache-dir
    assert cli("replay", world.scenario()).code == 0
    fingerprint = load_data(world.data).fingerprint
    listed = cli("cache", "ls")
    assert listed.code == 0 and fingerprint in listed.out and "1 layout" in listed.out
    cleared = cli("cache", "clear", "--cache-dir", cache)
    assert cleared.code == 0 and "removed 1 layout" in cleared.out
    assert layout.entries(cache) == []


def test_cache_ls_lists_every_data_folder_a_shared_layout_serves(world, cli, cache, monkeypatch, tmp_path):
    # Two copies of one folder share a layout (same content); a tester saw only the first folder listed.
    monkeypatch.setenv("ROUTESIM_CACHE_DIR", str(cache))
    monkeypatch.setenv("COLUMNS", "400")
    copies = [tmp_path / "copy-a", tmp_path / "copy-b"]
    for copy in copies:
        shutil.copytree(world.data, copy)
    for folder in [world.data, *copies, copies[0]]:  # opening one again adds nothing
        load_data(folder)
    (entry,) = layout.entries(cache)
    assert entry.sources == tuple(str(folder.resolve()) for folder in [world.data, *copies])
    listed = cli("cache", "ls")
    assert listed.code == 0 and "1 layout" in listed.out
    assert all(str(folder.resolve()) in listed.out.replace(" · ", "\n") for folder in [world.data, *copies])


@pytest.mark.parametrize("seed", range(0, 300, 15))
def test_a_replay_from_the_layout_equals_one_that_joins_the_outcome_file(seed, tmp_path, monkeypatch):
    # A window's or a sample's requests are gathered from the layout's files 8 rows at a time.
    monkeypatch.setattr(layout, "SLOT_WINDOW_ROWS", 8)
    world = random_world(seed)
    data = load_data(write_frames(tmp_path / "data", world.traffic, world.outcomes), tmp_path / "cache")
    assert data.layout is not None

    def run(dataset):
        try:
            return replay(world.scenario, dataset, world.sheet)
        except RoutesimError as error:
            return str(error)

    by_layout, by_join = run(data), run(dataclasses.replace(data, layout=None))
    if isinstance(by_join, str):
        assert by_layout == by_join
    else:
        assert by_layout.decisions.equals(by_join.decisions) and by_layout.calls.equals(by_join.calls)
        assert by_layout.decisions.schema == by_join.decisions.schema
        assert (by_layout.coverage, by_layout.price_sources) == (by_join.coverage, by_join.price_sources)


def test_part_of_a_layout_file_is_gathered_one_window_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "SLOT_WINDOW_ROWS", 7)
    pl.DataFrame({"value": range(100)}).write_parquet(tmp_path / "slot.parquet")
    scan = pl.scan_parquet(tmp_path / "slot.parquet")
    # in order, out of order (a sample's, a retry's), repeated, and repeated over a span as long as the list
    for rows in ([0, 3, 6, 7, 50, 99], [5, 2, 40], [90, 3, 50, 20], [13], [], [4, 4, 9, 9, 30], [0, 0, 2],
                 [60, 2, 60, 1]):
        for dtype in (np.int64, np.uint32):  # row ids come as UInt32 from with_row_index
            assert layout.rows_at(scan, np.array(rows, dtype=dtype))["value"].to_list() == rows


@pytest.fixture
def windowed(tmp_path, monkeypatch):
    """A layout file of 100 rows (value = row id) read 10 rows at a time, and the (offset, length) of every
    slice of it read (clear() slices 0 rows)."""
    monkeypatch.setattr(layout, "SLOT_WINDOW_ROWS", 10)
    pl.DataFrame({"value": range(100)}).write_parquet(tmp_path / "slot.parquet")
    sliced = []
    real_slice = pl.LazyFrame.slice
    monkeypatch.setattr(pl.LazyFrame, "slice", lambda frame, offset, length=None: (
        length and sliced.append((offset, length)), real_slice(frame, offset, length))[1])
    return pl.scan_parquet(tmp_path / "slot.parquet"), sliced


def test_several_sets_of_row_ids_are_cut_from_one_read_of_each_window(windowed):
    scan, sliced = windowed
    sets = [[0, 3, 6, 50], [95, 2, 40], [], [4, 4, 9, 51], [99]]
    found = layout.rows_at_each(scan, [np.array(rows, dtype=np.uint32) for rows in sets])
    assert [frame["value"].to_list() for frame in found] == sets
    assert sorted(offset for offset, _ in sliced) == [0, 40, 50, 90]  # each window the sets reach, once


def test_a_sticky_replay_reads_no_layout_file_for_its_later_turns(monkeypatch, tmp_path):
    """Later turns are routed after their first turns; their answers are cut from the first reads of each
    slot instead of decoding the slot's file again."""
    from simulator.core.engine import Answers

    reads = []
    real_gather = layout.Layout.gather
    monkeypatch.setattr(layout.Layout, "gather", lambda self, model, sample, columns, rows=None: (
        reads.append(rows), real_gather(self, model, sample, columns, rows))[1])
    kept = []
    real_keep = Answers.keep_for
    monkeypatch.setattr(Answers, "keep_for", lambda self, rids: (kept.append(self._layout_rows[rids]),
                                                                 real_keep(self, rids))[1])
    checked = 0
    for seed in range(40):
        world = random_world(seed)
        if world.scenario.policy.sticky != "session":
            continue
        data = load_data(write_frames(tmp_path / f"data{seed}", world.traffic, world.outcomes), tmp_path / "cache")
        reads.clear(), kept.clear()
        try:
            replay(world.scenario, data, world.sheet)
        except RoutesimError:
            continue
        if kept and kept[0].size:
            later = set(kept[0].tolist())
            assert not any(rows is not None and rows.size and set(rows.tolist()) <= later for rows in reads)
            checked += 1
    assert checked >= 5


def test_row_ids_out_of_order_are_read_one_window_at_a_time(windowed):
    """A retry resends requests in the order the plan's steps decided them: reading their answers must not
    hold the whole span of the file at once (at 100M requests, a whole slot file)."""
    scan, sliced = windowed
    rows = [95, 3, 50, 7, 99, 0]
    assert layout.rows_at(scan, np.array(rows))["value"].to_list() == rows
    assert sliced and max(length for _, length in sliced) <= 10


def test_clear_removes_layouts_of_older_versions_and_leftovers_of_interrupted_builds(world, cache, monkeypatch):
    monkeypatch.setattr(layout, "LAYOUT_VERSION", layout.LAYOUT_VERSION - 1)
    older = load_data(world.data, cache).layout.path  # paths only: a layout still read is not cleared
    monkeypatch.undo()
    current = load_data(world.data, cache).layout.path
    assert older != current
    assert [entry.version for entry in layout.entries(cache)] == [layout.LAYOUT_VERSION, layout.LAYOUT_VERSION - 1]
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=cache))  # named as _build names it
    (staging / "slots").mkdir()
    assert len(layout.clear(cache)) == 2
    assert list((cache / "layouts").iterdir()) == [] and not staging.exists()


def _user_files(cache: Path) -> dict[str, str]:
    """A user's files in the three places routesim keeps its own: layouts/, keys/ and the cache root (one named
    like a staging folder, one a file named exactly like a staging folder, and a symlink named like a layout
    pointing at a folder of theirs). Returns path -> content."""
    files = {"layouts/notes/todo.txt": "precious", "keys/config.json": '{"api": "x"}',
             "building-site/index.html": "hi", "building-abcd1234": "a file, not a staging folder",
             "elsewhere/kept.txt": "behind a symlink"}
    for name, text in files.items():
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_text(text)
    (cache / "layouts" / f"{'0' * 16}-v{layout.LAYOUT_VERSION}").symlink_to(cache / "elsewhere")
    return files


def test_cache_clear_leaves_and_names_what_routesim_did_not_make(world, cli, cache, steady):
    # A tester's notes, API config and site under --cache-dir were deleted by `cache clear`, which said
    # "removed 0 layouts"; routesim's own layouts, keys and leftovers must still all go.
    assert cli("--cache-dir", cache, "replay", world.scenario()).code == 0
    (built,) = layout.entries(cache)
    made = [Path(tempfile.mkdtemp(prefix="building-", dir=cache)),  # a build cut short
            cache / "layouts" / f".removing-{built.path.name}-4242",  # a removal cut short
            cache / "keys" / f".{'a' * 32}.json.x_y12345"]  # a key write cut short (_write_json's mkstemp)
    made[1].mkdir()
    made[2].write_text("{")
    keys = list((cache / "keys").glob("*.json"))
    assert keys  # the replay's key, which clear must remove
    files = _user_files(cache)

    listed = cli("cache", "ls", "--cache-dir", cache)
    assert listed.code == 0 and "1 layout" in listed.out
    assert "6 entries routesim did not make" in listed.out and "layouts/notes" in listed.out
    cleared = cli("cache", "clear", "--cache-dir", cache)
    assert cleared.code == 0 and "removed 1 layout" in cleared.out, cleared.err
    unknown = ["building-abcd1234", "building-site", "elsewhere", f"layouts/{'0' * 16}-v{layout.LAYOUT_VERSION}",
               "layouts/notes", "keys/config.json"]
    assert f"left 6 entries routesim did not make in {cache}: {', '.join(unknown)}" in " ".join(cleared.out.split())
    assert {name: (cache / name).read_text() for name in files} == files
    assert (cache / "layouts" / f"{'0' * 16}-v{layout.LAYOUT_VERSION}").is_symlink()
    assert not built.path.exists() and not any(path.exists() for path in [*made, *keys])
    assert sorted(path.name for path in (cache / "layouts").iterdir()) == [f"{'0' * 16}-v{layout.LAYOUT_VERSION}",
                                                                         "notes"]


def test_ls_and_eviction_pass_over_a_user_folder_even_one_shaped_like_a_layout(world, cache, monkeypatch):
    built = load_data(world.data, cache).layout
    path, fingerprint = built.path, built.fingerprint
    del built  # read by nothing, so evictable
    mine = cache / "layouts" / "my-copy"  # the user's copy of a layout: a meta.json, but not routesim's name
    shutil.copytree(path, mine)
    (cache / "keys" / "notes.json").write_text(json.dumps({"fingerprint": fingerprint, "files": ["/x/y"]}))
    assert [entry.path for entry in layout.entries(cache)] == [path]
    assert "/x" not in layout.entries(cache)[0].sources  # a user's JSON is no key
    assert [entry.path for entry in layout.evict(cache, -1)] == [path]
    assert (mine / "meta.json").is_file() and (cache / "keys" / "notes.json").is_file()
    assert layout.not_made_by_routesim(cache) == [Path("layouts/my-copy"), Path("keys/notes.json")]


def _lone(outcomes: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows of one (request, model) answered once (sample 0), and every other row."""
    single = (outcomes.group_by("request_id", "model").agg(pl.len()).filter(pl.col("len") == 1)
              .sort("request_id", "model").head(1).drop("len"))
    return (outcomes.join(single, on=["request_id", "model"]),
            outcomes.join(single, on=["request_id", "model"], how="anti"))


def _lone_numbered(outcomes: pl.DataFrame, sample: int, keep_zero: bool) -> pl.DataFrame:
    lone, elsewhere = _lone(outcomes)
    renumbered = lone.with_columns(pl.lit(sample, pl.Int64).alias("sample"))
    return pl.concat([outcomes if keep_zero else elsewhere, renumbered])


# One break of each key rule of the data contract: (traffic, outcomes) -> (traffic, outcomes).
KEY_FAULTS = {
    # the twice-listed request has no outcomes, so only the request ids themselves show the fault
    "a duplicate request id": lambda traffic, outcomes: (
        pl.concat([traffic, traffic.tail(1)]), outcomes.filter(pl.col("request_id") != traffic["request_id"][-1])),
    "a repeated (request, model, sample)": lambda traffic, outcomes: (
        traffic, pl.concat([outcomes, outcomes.tail(1)])),
    "an outcome of an unknown request": lambda traffic, outcomes: (traffic, pl.concat(
        [outcomes, outcomes.head(1).with_columns(pl.lit("nobody").alias("request_id"))])),
    "samples starting at 1": lambda traffic, outcomes: (traffic, _lone_numbered(outcomes, 1, keep_zero=False)),
    "samples 0 and 2": lambda traffic, outcomes: (traffic, _lone_numbered(outcomes, 2, keep_zero=True)),
    "samples 100 and up beside 0, 1, ...": lambda traffic, outcomes: (traffic, pl.concat(
        [outcomes, outcomes.with_columns(pl.col("sample") + 100)])),
}


@pytest.mark.parametrize("fault", list(KEY_FAULTS))
def test_the_build_settles_the_key_checks_and_reports_a_fault_as_validate_does(fault, tmp_path, monkeypatch):
    world = random_world(5)
    traffic, outcomes = KEY_FAULTS[fault](world.traffic, world.outcomes)
    data = write_frames(tmp_path / "data", traffic, outcomes)
    report = validate_folder(data)
    assert not report.ok and validate_folder(data, keys=False).ok  # only a key rule is broken
    with pytest.raises(RoutesimError) as expected:
        report.raise_if_problems(f"data folder {data}")
    for memory in (10**9, 2):  # in one piece, then in many buckets, slices and ranges
        monkeypatch.setattr(layout, "MEMORY_REQUESTS", memory)
        monkeypatch.setattr(layout, "SLICE_OUTCOME_ROWS", memory)
        monkeypatch.setattr(layout, "RANGE_ROWS", memory)
        with pytest.raises(RoutesimError) as built:
            load_data(data, tmp_path / f"cache-{memory}")
        assert str(built.value) == str(expected.value)
        assert layout.entries(tmp_path / f"cache-{memory}") == []  # nothing half built is kept


def test_a_clean_build_skips_the_contracts_key_group_bys(tmp_path, monkeypatch):
    world = random_world(5)
    data = write_frames(tmp_path / "data", world.traffic, world.outcomes)
    forbid(monkeypatch, "contract._check_keys")
    assert load_data(data, tmp_path / "cache").layout.requests == world.traffic.height


@pytest.mark.parametrize("dtype", [pl.Int8, pl.UInt8])
def test_samples_numbered_up_to_the_top_of_a_narrow_integer_type_are_valid(dtype, tmp_path):
    """128 answers of one model to one request, sample 0..127 in an Int8 (0..255 in a UInt8): no gap, and
    neither `routesim validate` (whose top + 1 once wrapped around in the column's type) nor the build
    says otherwise."""
    top = 127 if dtype == pl.Int8 else 255
    outcomes = tiny_outcomes()
    first = outcomes.head(1)
    many = pl.concat([first.with_columns(pl.lit(index, pl.Int64).alias("sample")) for index in range(top + 1)])
    outcomes = pl.concat([many, outcomes.slice(1)]).with_columns(pl.col("sample").cast(dtype))
    data = write_frames(tmp_path / "data", tiny_traffic(), outcomes)
    assert validate_folder(data).ok
    assert len(load_data(data, tmp_path / "cache").layout.slots) == outcomes.select("model", "sample").n_unique()


@pytest.mark.parametrize("command", ["ls", "clear"])
def test_cache_commands_refuse_a_file_as_their_cache_folder(world, cli, command):
    result = cli("cache", command, "--cache-dir", world.data / "traffic.parquet")
    assert result.code == 2 and "--cache-dir needs a folder" in result.err and "is a file" in result.err
    assert (world.data / "traffic.parquet").is_file()


def test_a_damaged_layout_file_is_bad_input_pointing_at_cache_clear(world, cli, tmp_path):
    cache = tmp_path / "damaged-cache"
    assert cli("--cache-dir", cache, "replay", world.scenario()).code == 0
    [slot] = sorted((cache / "layouts").glob("*/slots/*.parquet"))[:1]
    slot.write_bytes(slot.read_bytes()[: slot.stat().st_size // 2])  # truncated on disk
    damaged = cli("--cache-dir", cache, "replay", world.scenario())
    assert damaged.code == 2 and "a Parquet file cannot be read" in damaged.err, damaged.err
    assert "the compiled layout of" in damaged.err and "routesim cache clear" in damaged.err
    assert cli("--cache-dir", cache, "cache", "clear").code == 0
    assert cli("--cache-dir", cache, "replay", world.scenario()).code == 0


def test_cache_ls_drops_a_folder_that_now_holds_other_content_and_its_old_keys(world, cli, cache, monkeypatch,
                                                                                tmp_path):
    """A folder regenerated in place holds new content: `cache ls` lists it under the new layout only, and
    its old key file is removed rather than piling up (a tester saw the folder under both layouts)."""
    monkeypatch.setenv("ROUTESIM_CACHE_DIR", str(cache))
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setattr(layout, "RACY_SECONDS", -1e9)  # key the files at once, as a steady folder is
    folder = tmp_path / "week"
    shutil.copytree(world.data, folder)
    first = load_data(folder).layout.fingerprint
    assert len(list((cache / "keys").glob("*.json"))) == 1
    traffic = pl.read_parquet(folder / "traffic.parquet")
    traffic.with_columns(pl.col("input_tokens") + 1).write_parquet(folder / "traffic.parquet")
    (entry,) = layout.entries(cache)  # changed, not yet read again: listed, but marked
    assert entry.changed == (str(folder.resolve()),)
    assert "(changed since read)" in cli("cache", "ls").out
    second = load_data(folder).layout.fingerprint
    assert second != first and len(list((cache / "keys").glob("*.json"))) == 1
    listed = {entry.fingerprint: entry.sources for entry in layout.entries(cache)}
    assert listed == {first: (), second: (str(folder.resolve()),)}
    out = cli("cache", "ls").out
    assert "none known now" in out and "changed since read" not in out
    shutil.rmtree(folder)  # gone: listed under nothing
    assert all(entry.sources == () for entry in layout.entries(cache))
