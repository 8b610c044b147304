"""`routesim import langfuse`: observation exports with disjoint usage types and latency in seconds."""

from __future__ import annotations

import json

import pytest

from tests.import_helpers import FIXTURES, read_import

JSONL = FIXTURES / "langfuse_observations.jsonl"


@pytest.fixture
def imported(cli, tmp_path):
    result = cli("import", "langfuse", JSONL, "-o", tmp_path / "data", "--slice", "feature", "--assume-passed")
    assert result.code == 0, result.err
    return read_import(tmp_path / "data")


def test_openai_cached_tokens_kept_apart_by_langfuse_are_added_back_to_the_input(imported):
    call = imported.outcome("obs-001")  # input 200 + input_cached_tokens 1000 = total 1350 - output 150
    assert (call["input_tokens"], call["cached_input_tokens"], call["output_tokens"]) == (1200, 1000, 150)
    assert (call["latency_ms"], call["ttft_ms"], call["cost_usd"]) == (1500.0, 350.0, 0.003)
    assert imported.traffic["obs-001"]["slice"] == "faq"


def test_anthropic_cache_reads_and_writes_are_part_of_the_input(imported):
    call = imported.outcome("obs-002")
    assert (call["input_tokens"], call["cached_input_tokens"], call["cache_write_input_tokens"]) == (2100, 1800, 100)


def test_a_total_equal_to_input_plus_output_means_the_cache_was_inside_the_input(imported):
    call = imported.outcome("obs-006")
    assert (call["input_tokens"], call["cached_input_tokens"]) == (1000, 800)


def test_latency_and_time_to_first_token_in_seconds_become_milliseconds(imported):
    call = imported.outcome("obs-005")  # no endTime: latency 2.5 s, timeToFirstToken 0.3 s, level ERROR
    assert (call["latency_ms"], call["ttft_ms"], call["hard_check_ok"]) == (2500.0, 300.0, False)
    assert (call["input_tokens"], call["output_tokens"]) == (50, 10)  # the legacy `usage` object
    report = imported.report[0]
    assert report["defaulted"]["latency_ms <- latency in seconds x 1000 (no endTime)"] == 1
    assert report["older_field_names"] == {"usage / promptTokens (for usageDetails)": 1}


def test_spans_and_events_are_ignored_and_a_generation_without_model_is_dropped(imported):
    report = imported.report[0]
    assert report["ignored"] == {"type = EVENT": 1, "type = SPAN": 1}
    assert report["dropped"]["no model name"]["examples"] == [f"{JSONL}, line 7"]
    assert sorted(imported.traffic) == ["obs-001", "obs-002", "obs-005", "obs-006"]


def test_a_csv_export_with_json_columns_maps_like_jsonl(cli, tmp_path, imported):
    assert cli("import", "langfuse", FIXTURES / "langfuse_observations.csv", "-o", tmp_path / "csv",
               "--slice", "feature", "--assume-passed").code == 0
    from_csv = read_import(tmp_path / "csv")
    assert from_csv.outcome("obs-001") == imported.outcome("obs-001")
    assert from_csv.outcome("obs-002") == imported.outcome("obs-002")


def generation(observation_id: str, **fields) -> dict:
    """A gpt-4o generation of 2 s with 100 input and 20 output tokens, as the public API returns it."""
    return {"id": observation_id, "traceId": f"trace-{observation_id}", "type": "GENERATION", "model": "gpt-4o",
            "startTime": "2026-11-16T09:00:00.000Z", "endTime": "2026-11-16T09:00:02.000Z", "level": "DEFAULT",
            "usageDetails": {"input": 100, "output": 20}} | fields


def import_observations(cli, tmp_path, observations: list[dict]):
    path = tmp_path / "observations.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in observations))
    result = cli("import", "langfuse", path, "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 0, result.err
    return read_import(tmp_path / "data")


def test_a_first_token_before_the_start_keeps_the_call_without_a_time_to_first_token(cli, tmp_path):
    """skewed: completionStartTime 10 ms before startTime; derived: no completionStartTime and the API's
    timeToFirstToken -0.01 s; streamed: the first token 0.4 s after the start."""
    data = import_observations(cli, tmp_path, [
        generation("skewed", completionStartTime="2026-11-16T08:59:59.990Z"),
        generation("derived", timeToFirstToken=-0.01),
        generation("streamed", completionStartTime="2026-11-16T09:00:00.400Z")])
    skewed = data.outcome("skewed")
    assert (skewed["input_tokens"], skewed["output_tokens"], skewed["latency_ms"], skewed["ttft_ms"]) == \
        (100, 20, 2000.0, None)
    assert (data.outcome("derived")["ttft_ms"], data.outcome("streamed")["ttft_ms"]) == (None, 400.0)
    report = data.report[0]
    assert report["defaulted"]["ttft_ms -> null (completionStartTime before startTime)"] == 2
    assert report["dropped"] == {}


def test_a_failed_generation_without_usage_is_kept_as_a_failure_with_no_tokens(cli, tmp_path):
    """timed-out: level ERROR after 30 s, empty usageDetails (a rejected call bills none); unmeasured: a
    successful generation without usage cannot be priced and is still dropped."""
    data = import_observations(cli, tmp_path, [
        generation("timed-out", level="ERROR", statusMessage="Request timed out", usageDetails={},
                   endTime="2026-11-16T09:00:30.000Z"),
        generation("unmeasured", usageDetails={})])
    failed = data.outcome("timed-out")
    assert (failed["input_tokens"], failed["output_tokens"], failed["latency_ms"]) == (0, 0, 30000.0)
    assert (failed["hard_check_ok"], failed["error_type"], failed["passed"]) == (False, "timeout", False)
    report = data.report[0]
    assert report["defaulted"]["tokens -> 0 (failed generation without usage)"] == 1
    assert report["dropped"]["no input token count"]["rows"] == 1
    assert sorted(data.traffic) == ["timed-out"]


def test_reasoning_tokens_are_kept_and_a_total_tells_when_they_were_already_in_the_output(cli, tmp_path):
    """apart: output 150 + output_reasoning_tokens 40, disjoint as Langfuse keeps them -> 190 output.
    totalled: total 290 = 100 + 150 + 40 confirms that reading -> 190.
    repeated: total 250 = 100 + 150, so the 40 were already in the 150 -> 150 output.
    cached: input 100 with 60 cached reads inside it and the reasoning inside the output (total 250)."""
    details = {"input": 100, "output": 150, "output_reasoning_tokens": 40}
    data = import_observations(cli, tmp_path, [
        generation("apart", usageDetails=details), generation("totalled", usageDetails=details | {"total": 290}),
        generation("repeated", usageDetails=details | {"total": 250}),
        generation("cached", usageDetails=details | {"input_cached_tokens": 60, "total": 250})])
    tokens = {name: (data.outcome(name)["output_tokens"], data.outcome(name)["reasoning_output_tokens"])
              for name in ("apart", "totalled", "repeated", "cached")}
    assert tokens == {"apart": (190, 40), "totalled": (190, 40), "repeated": (150, 40), "cached": (150, 40)}
    cached = data.outcome("cached")
    assert (cached["input_tokens"], cached["cached_input_tokens"]) == (100, 60)
    defaulted = data.report[0]["defaulted"]
    assert defaulted["output_tokens <- output types without reasoning (total counts it inside output)"] == 2
