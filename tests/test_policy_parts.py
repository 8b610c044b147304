"""Issue 13's constructs on split replays: a policy with router overhead, fan-out, a race, sticky sessions
and rate limits gives the same summary (capacity and controls included) whole, on shards and in chunks."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from simulator.core import sharded as sharded_module
from simulator.core.contract import TRAFFIC_FILE
from simulator.core.outputs import json_output
from simulator.core.shards import write_shards
from simulator.datasets.generate import write_week

ROOT = Path(__file__).resolve().parent.parent

POLICY = """
policy:
  overhead: {name: router, cost_usd: 0.00001, latency_ms: 5}
  rules:
    - name: long
      when: "slice IN ('contract_analysis', 'research_synthesis')"
      overhead: {name: slice-classifier, model: small, output_tokens: 3, latency_ms: 150}
      cascade:
        - race: [medium, large]
          select: {first: "confidence >= 0.7"}
          accept: "confidence >= 0.8"
        - model: flagship
  default:
    cascade:
      - parallel: [small, medium]
        select: {highest: confidence}
        accept: "confidence >= 0.7"
      - model: flagship
capacity:
  small: {rpm: 3}
  flagship: {tpm: 4000}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A generated 1,500-request week whose requests come in sessions of one to four turns, as 1 and 5 shards,
    and the policy above without and with `sticky: session`."""
    base = tmp_path_factory.mktemp("parts")
    write_week(base / "week", 1_500, days=2, seed=11)
    traffic = pl.read_parquet(base / "week" / TRAFFIC_FILE)
    # every third request starts a new session; its turns are the next requests in arrival order, so a
    # session spans minutes and crosses any row-number boundary
    order = traffic.sort("ts", "request_id").with_row_index("n")
    sessions = order.select("request_id", (pl.col("n") // 3).alias("group"), (pl.col("n") % 3 + 1).alias("turn"))
    traffic = traffic.join(sessions, on="request_id", maintain_order="left").with_columns(
        pl.when(pl.col("group") % 5 == 0).then(None).otherwise(pl.format("s{}", pl.col("group")))
        .alias("session_id"), pl.col("turn").cast(pl.Int32)).drop("group")
    traffic.write_parquet(base / "week" / TRAFFIC_FILE)
    scenarios = {}
    for name, extra in (("constructs", ""), ("sticky", "  sticky: session\n")):
        text = (f"name: {name}\ndata: {base / 'week'}\nprices: {ROOT / 'data' / 'prices' / 'support.yaml'}\n"
                f"on_missing: skip\n{POLICY.replace('policy:', 'policy:' + chr(10) + extra.rstrip(), 1)}")
        scenarios[name] = base / f"{name}.yaml"
        scenarios[name].write_text(text)
    write_shards(base / "week", 5, base / "shards")
    return base, scenarios


def test_shards_keep_each_session_whole(world):
    base, _ = world
    found = pl.concat([pl.read_parquet(path).select("request_id", "session_id", pl.lit(path.parent.name).alias("shard"))
                       for path in sorted((base / "shards").glob("shard=*/" + TRAFFIC_FILE))])
    assert found.height == 1_500
    per_session = found.filter(pl.col("session_id").is_not_null()).group_by("session_id").agg(pl.col("shard").n_unique())
    assert per_session["shard"].max() == 1
    assert found["shard"].n_unique() == 5


@pytest.mark.parametrize("name", ["constructs", "sticky"])
def test_whole_and_sharded_replays_give_the_same_json_with_capacity_and_controls(world, cli, name):
    base, scenarios = world
    whole = cli("replay", scenarios[name], "--json")
    assert whole.code == 0, whole.err
    [summary] = json.loads(whole.out)
    assert summary["capacity"]["minutes_over"] > 0 and summary["controls"]["random"]["requests"] > 0
    split = cli("replay", scenarios[name], "--json", "--shards", base / "shards")
    assert split.code == 0, split.err
    assert split.out == whole.out


def test_a_replay_in_chunks_gives_the_whole_replays_capacity_and_controls(world, monkeypatch):
    from simulator.cli.replay import replay_scenarios

    _, scenarios = world
    [whole] = replay_scenarios([scenarios["constructs"]], show_progress=False)
    [sticky_whole] = replay_scenarios([scenarios["sticky"]], show_progress=False)
    monkeypatch.setattr(sharded_module, "MIN_CHUNK_REQUESTS", 100)
    [chunked] = replay_scenarios([scenarios["constructs"]], show_progress=False, workers=2)
    assert chunked.replay is None  # it did run in chunks
    assert json_output(chunked.summary) == json_output(whole.summary)
    # a sticky policy on traffic with sessions runs in chunks too: each chunk holds whole sessions
    [sticky] = replay_scenarios([scenarios["sticky"]], show_progress=False, workers=2)
    assert sticky.replay is None and json_output(sticky.summary) == json_output(sticky_whole.summary)
