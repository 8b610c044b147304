"""`routesim import langfuse`: observation exports with disjoint usage types and latency in seconds."""

from __future__ import annotations

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
