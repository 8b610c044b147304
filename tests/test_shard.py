"""`routesim shard`: each request with all its outcomes in one shard, every shard a data folder of its own."""

from __future__ import annotations

import json

import polars as pl
import yaml

from simulator.core.contract import load_data, validate_folder
from simulator.core.engine import replay
from simulator.core.prices import load_prices
from simulator.core.scenario import load_scenario
from tests.conftest import tiny_outcomes, tiny_traffic

KEYS = {"traffic.parquet": ["request_id"], "outcomes.parquet": ["request_id", "model", "sample"]}


def rows(folder, name) -> pl.DataFrame:
    return pl.read_parquet(folder / name).sort(KEYS[name])


def test_shards_partition_the_requests_and_keep_each_requests_outcomes_with_it(world, cli, tmp_path):
    out = tmp_path / "shards"
    result = cli("shard", world.data, "--shards", "3", "-o", out)
    assert result.code == 0, result.err
    parts = [out / f"shard={k}" for k in range(3)]
    for part in parts:
        assert validate_folder(part).ok
        assert set(rows(part, "outcomes.parquet")["request_id"]) <= set(rows(part, "traffic.parquet")["request_id"])
    for name in KEYS:
        assert pl.concat([rows(part, name) for part in parts]).sort(KEYS[name]).equals(rows(world.data, name))
    manifest = json.loads((out / "shards.json").read_text())
    assert manifest["shards"] == 3 and sum(manifest["requests"]) == 3
    assert manifest["requests"] == [rows(part, "traffic.parquet").height for part in parts]


def test_replays_of_the_shards_add_up_to_the_replay_of_the_whole(world, cli, tmp_path):
    out = tmp_path / "shards"
    assert cli("shard", world.data, "--shards", "2", "-o", out).code == 0
    scenario, sheet = load_scenario(world.scenario()), load_prices(world.prices)
    whole = replay(scenario, load_data(world.data), sheet).decisions
    parts = [replay(scenario.model_copy(update={"data": part}), load_data(part), sheet).decisions
             for part in sorted(out.glob("shard=*")) if pl.read_parquet(part / "traffic.parquet").height]
    merged = pl.concat(parts).drop("rid").sort("request_id")
    assert merged.equals(whole.drop("rid").sort("request_id"))


def test_shards_are_never_written_into_the_data_folder_nor_over_files(world, cli, tmp_path):
    inside = cli("shard", world.data, "--shards", "2", "-o", world.data / "shards")
    assert inside.code == 2 and "inside it" in inside.err and not (world.data / "shards").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep")
    refused = cli("shard", world.data, "--shards", "2", "-o", taken)
    assert refused.code == 2 and "--force" in refused.err and (taken / "notes.txt").read_text() == "keep"
    assert cli("shard", world.data, "--shards", "0", "-o", tmp_path / "none").code == 2


def test_a_shard_folder_routesim_wrote_is_replaced_without_force(world, cli, tmp_path):
    # README, Reliability: a folder holding the .routesim-output marker is routesim's own, and replaced.
    assert cli("shard", world.data, "--shards", "2", "-o", tmp_path / "sh").code == 0
    again = cli("shard", world.data, "--shards", "3", "-o", tmp_path / "sh")
    assert again.code == 0, again.err
    assert sorted(path.name for path in (tmp_path / "sh").glob("shard=*")) == ["shard=0", "shard=1", "shard=2"]


def test_shard_counts_are_bounded_by_the_limit_and_by_the_requests(world, cli, tmp_path):
    # README, Reliability limits: at most MAX_SHARDS shards, and no more shards than requests (world: 3).
    from simulator.core.limits import MAX_SHARDS

    huge = cli("shard", world.data, "--shards", str(MAX_SHARDS + 1), "-o", tmp_path / "huge")
    assert huge.code == 2 and f"at most {MAX_SHARDS:,} shards" in huge.err and "--shards" in huge.err
    more = cli("shard", world.data, "--shards", "4", "-o", tmp_path / "more")
    assert more.code == 2 and "holds 3 requests" in more.err and "--shards 3 or fewer" in more.err
    assert "would leave some of them empty" in more.err
    assert not (tmp_path / "huge").exists() and not (tmp_path / "more").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_sigterm_during_the_write_removes_the_staging_folder(world, cli, tmp_path, monkeypatch):
    # A SIGTERM arriving while the shards are written (here: right after the first Parquet file) ends the run
    # with exit 143, and the staging folder beside the destination is gone, as after any failure.
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    written = pl.LazyFrame.sink_parquet

    def sink_then_terminated(self, *args, **kwargs):
        result = written(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", sink_then_terminated)
    result = cli("shard", world.data, "--shards", "2", "-o", tmp_path / "place" / "out")
    assert result.code == 128 + signal.SIGTERM and "terminated" in result.err
    assert list((tmp_path / "place").iterdir()) == []  # neither OUT nor its .out.writing-* staging folder
    assert signal.getsignal(signal.SIGTERM) == before  # main() leaves the caller's handler in place


def test_a_shard_hashing_leaves_empty_replays_as_holding_no_requests(world, cli, tmp_path):
    # Three shards of three requests: hashing need not give each one, and an empty shard is written and replayed
    # as holding none, so the summary on the shards is the whole's.
    # request ids a, d, c hash to shards 0, 1, 1 of 3 (simulator.core.shards.shard_of): shard 2 is empty.
    renamed = pl.col("request_id").replace("b", "d")
    world.write_data(tiny_traffic().with_columns(renamed), tiny_outcomes().with_columns(renamed))
    out = tmp_path / "shards"
    assert cli("shard", world.data, "--shards", "3", "-o", out).code == 0
    heights = [pl.read_parquet(part / "traffic.parquet").height for part in sorted(out.glob("shard=*"))]
    assert heights == [1, 2, 0]
    path = world.scenario()
    whole = cli("replay", path, "--json")
    sharded = cli("replay", path, "--json", "--shards", out)
    assert whole.code == sharded.code == 0, sharded.err
    assert sharded.out == whole.out


def test_a_shard_without_any_answer_of_a_model_replays_as_its_requests_missing_it(world, cli, tmp_path):
    # 'rare' answers request a only; a and b hash to shard 0 of 2 and c to shard 1, which holds no answer of
    # rare at all. With on_missing: skip the shards give the whole folder's summary; without, its error.
    outcomes = pl.concat([tiny_outcomes(), tiny_outcomes().filter(pl.col("request_id") == "a").head(1)
                          .with_columns(pl.lit("rare").alias("model"))])
    world.write_data(tiny_traffic(), outcomes)
    out = tmp_path / "shards"
    assert cli("shard", world.data, "--shards", "2", "-o", out).code == 0
    assert [pl.read_parquet(part / "outcomes.parquet").filter(pl.col("model") == "rare").height
            for part in sorted(out.glob("shard=*"))] == [1, 0]
    prices = yaml.safe_load(world.prices.read_text())
    prices["models"]["rare"] = prices["models"]["small"]
    world.prices.write_text(yaml.safe_dump(prices))
    policy = {"default": {"cascade": [{"model": "rare", "accept": "confidence >= 0.7"}, {"model": "big"}]}}
    skipping = world.scenario("rare-skip", on_missing="skip", policy=policy)
    whole, sharded = cli("replay", skipping, "--json"), cli("replay", skipping, "--json", "--shards", out)
    assert whole.code == sharded.code == 0, sharded.err
    assert sharded.out == whole.out
    strict = world.scenario("rare-strict", policy=policy)
    whole, sharded = cli("replay", strict, "--json"), cli("replay", strict, "--json", "--shards", out)
    assert whole.code == sharded.code == 2 and "missing from the data" in sharded.err


def test_a_shard_changed_after_it_was_written_is_refused(world, cli, tmp_path):
    # The source is unchanged, so its fingerprint still matches; each shard's own content is checked too.
    out = tmp_path / "shards"
    assert cli("shard", world.data, "--shards", "2", "-o", out).code == 0
    path = world.scenario()
    assert cli("replay", path, "--json", "--shards", out).code == 0
    outcomes = out / "shard=0" / "outcomes.parquet"
    pl.read_parquet(outcomes).with_columns(pl.lit(False).alias("passed")).write_parquet(outcomes)
    for command in (["replay", path, "--json"], ["sweep", path, "--json"]):
        refused = cli(*command, "--shards", out)
        assert refused.code == 2, refused.err
        assert "no longer holds what 'routesim shard' wrote there" in refused.err and "shard=0" in refused.err


def test_counts_of_one_are_written_in_the_singular(cli, tmp_path):
    """'wrote 1 request', not '1 requests' (formats.counted), in generate's and shard's reports."""
    result = cli("generate", tmp_path / "one", "--requests", "1", "--days", "1")
    assert result.code == 0 and f"wrote 1 request to {tmp_path / 'one'}" in result.out.replace("\n", "")
    result = cli("shard", tmp_path / "one", "--shards", "1", "-o", tmp_path / "shards")
    assert result.code == 0 and "wrote 1 shard of 1 request to" in result.out
    result = cli("generate", tmp_path / "two", "--requests", "2", "--days", "1")
    assert "wrote 2 requests to" in result.out
