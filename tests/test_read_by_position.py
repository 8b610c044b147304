"""The analyses after a replay (controls, capacity, the summary's parts) read answers from the compiled layout
by each request's row id; without row ids they join the outcomes on request_id. Both ways give the same rows
and the same figures, on a world with a missing answer, repeat samples, a retry and text answer columns."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from simulator.analyses.controls import controls_of, router_of
from simulator.analyses.tables import priced_answers
from simulator.core.calls import model_calls, outcome_rows, traffic_rows, with_layout_rows
from simulator.core.engine import LAYOUT_ROW
from simulator.core.runner import Inputs, run_scenario
from simulator.core.scenario import load_scenario
from tests.conftest import OUTCOME_SCHEMA, outcome_row

IDS = ["r5", "r1", "r4", "r0", "r3", "r2"]  # the traffic file is not in arrival order


@pytest.fixture
def replayed(world):
    """Six requests; small answers each twice (samples 0 and 1), big once, mid all but r3 (so the controls
    leave it out). The policy routes pro requests through a small-then-big cascade, the others to small,
    and retries small's human-graded answers on small (its sample 1)."""
    traffic = pl.DataFrame({"request_id": IDS, "slice": ["faq", "code"] * 3, "input_tokens": [1000] * 6,
                            "tier": ["pro", "free", "pro", "free", "pro", "free"],
                            "ts": [dt.datetime(2026, 11, 16, 1, int(name[1]) * 7, tzinfo=dt.UTC) for name in IDS]})
    rows = []
    for index, name in enumerate(IDS):
        rows += [outcome_row(name, "small", sample=sample, confidence=0.5 + 0.1 * index, passed=index % 2 == 0,
                             grader="human" if sample == 0 and index % 3 == 0 else "llm_judge",
                             output_tokens=100 + 10 * index + sample) for sample in (0, 1)]
        rows.append(outcome_row(name, "big", output_tokens=50 + index, grader="deterministic"))
        if name != "r3":
            rows.append(outcome_row(name, "mid", output_tokens=70 + index, passed=index % 3 != 1))
    world.write_data(traffic, pl.DataFrame(rows, schema=OUTCOME_SCHEMA))
    # A sample of the requests: their row ids have gaps, so answers are gathered, not read whole.
    scenario = load_scenario(world.scenario(sample={"requests": 5, "seed": 2}, policy={
        "rules": [{"when": "tier = 'pro'", "cascade": [{"model": "small", "accept": "confidence >= 0.7"},
                                                       {"model": "big"}]}],
        "default": {"use": "small"},
        "retry": {"when": "grader = 'human'", "to": ["small"]}}))
    prices = {"models": {name: [{"effective_from": dt.date(2026, 11, 1), "input": 1.0 + k, "output": 2.0 + k}]
                         for k, name in enumerate(["small", "mid", "big"])}}
    world.prices.write_text(__import__("yaml").safe_dump(prices))
    inputs = Inputs()
    replay = run_scenario(scenario, inputs).replay
    data = inputs.data(scenario)
    assert data.layout is not None and replay.layout_rows is not None
    assert list(replay.layout_rows) != list(range(replay.layout_rows[0], replay.layout_rows[0] + 5))
    return scenario, replay, data, inputs.prices(scenario)


def test_calls_read_the_same_answers_by_position_as_by_join(replayed):
    _, replay, data, _ = replayed
    assert replay.calls.filter(pl.col("kind") == "retry").height > 0  # sample 1 of small is read
    requests = replay.decisions.select("rid", "request_id", "ts")
    columns = ["input_tokens", "output_tokens", "grader", pl.col("latency_ms").alias("took")]
    joined = model_calls(replay.calls, requests, data, columns)
    by_position = model_calls(replay.calls, with_layout_rows(requests, replay.layout_rows), data, columns)
    assert_frame_equal(by_position, joined)
    assert "output_tokens_right" in by_position.columns and by_position["sample"].max() == 1


def test_answers_and_traffic_rows_are_the_same_by_position_as_by_join(replayed):
    _, replay, data, sheet = replayed
    requests = replay.decisions.select("rid", "request_id", "ts", "slice")
    positioned = with_layout_rows(requests, replay.layout_rows)
    for read in (lambda frame: outcome_rows(frame, data, ["grader", "output_tokens"]),
                 lambda frame: traffic_rows(frame, data, ["request_id", "tier"])):
        assert_frame_equal(read(positioned).sort(pl.all()), read(requests).sort(pl.all()))
    joined, unpriced = priced_answers(requests, data, sheet)
    assert_frame_equal(priced_answers(positioned, data, sheet)[0], joined) and not unpriced
    assert joined["model"].unique().sort().to_list() == ["big", "mid", "small"]


def test_controls_are_the_same_by_position_as_by_join_in_any_row_order(replayed):
    scenario, replay, data, sheet = replayed
    router = router_of(replay.calls)
    joined = controls_of(scenario, replay.decisions, router, data, sheet)
    assert joined["left_out"] == ["mid"] and joined["models"] == ["big", "small"]
    positioned = with_layout_rows(replay.decisions, replay.layout_rows)
    assert LAYOUT_ROW in positioned.columns
    assert controls_of(scenario, positioned, router, data, sheet) == joined
    assert controls_of(scenario, positioned.reverse(), router, data, sheet) == joined
