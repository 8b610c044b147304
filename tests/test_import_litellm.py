"""`routesim import litellm`: LiteLLM_SpendLogs exports as CSV and as the /spend/logs JSON."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.import_helpers import FIXTURES, read_import

CSV = FIXTURES / "litellm_spend_logs.csv"


@pytest.fixture
def imported(cli, tmp_path):
    result = cli("import", "litellm", CSV, "-o", tmp_path / "data", "--slice", "feature", "--column",
                 "customer_tier", "--column", "end_user=customer", "--assume-passed")
    assert result.code == 0, result.err
    return read_import(tmp_path / "data")


def test_an_openai_call_keeps_its_cached_tokens_inside_the_prompt_tokens(imported):
    call = imported.outcome("chatcmpl-001")
    assert (call["model"], call["input_tokens"], call["cached_input_tokens"], call["output_tokens"]) == \
        ("gpt-4o", 1200, 1000, 150)  # model_group, the name the client asked for
    assert (call["latency_ms"], call["ttft_ms"], call["cost_usd"]) == (1500.0, 400.0, 0.00325)
    assert call["passed_source"] == "assumed_from_status" and call["passed"] and call["hard_check_ok"]


def test_tags_spend_logs_metadata_and_row_columns_become_slice_and_columns(imported):
    request = imported.traffic["chatcmpl-001"]
    assert (request["slice"], request["customer_tier"], request["customer"]) == ("faq", "enterprise", "cust-42")
    assert request["ts"] == dt.datetime(2026, 11, 16, 9, tzinfo=dt.UTC)  # the table's zone-less UTC time
    assert imported.traffic["chatcmpl-009"]["slice"] == "all"


def test_anthropic_cache_reads_inside_or_on_top_of_prompt_tokens_give_the_same_input(imported):
    current = imported.outcome("chatcmpl-002")  # prompt_tokens 2000 with 1800 read; total = prompt + completion
    older = imported.outcome("chatcmpl-003")  # prompt_tokens 200 without the 1800 read (older LiteLLM)
    assert (current["input_tokens"], current["cached_input_tokens"]) == (2000, 1800)
    assert (older["input_tokens"], older["cached_input_tokens"]) == (2000, 1800)


def test_a_non_streamed_call_has_no_time_to_first_token(imported):
    assert imported.outcome("chatcmpl-002")["ttft_ms"] is None  # completionStartTime == endTime


def test_a_failed_call_is_kept_with_its_hard_check_failed(imported):
    call = imported.outcome("chatcmpl-004")
    assert (call["hard_check_ok"], call["passed"], call["cost_usd"]) == (False, False, 0.0)


def test_cache_hits_and_embeddings_are_ignored_bad_rows_and_repeats_dropped(imported):
    report = imported.report[0]
    assert report["ignored"] == {"LiteLLM response-cache hits (no model call)": 1, "call_type = aembedding": 1}
    assert report["dropped"]["bad startTime"]["examples"] == [
        f"{CSV}, row 7: startTime='yesterday' is not an ISO 8601 time or an epoch"]
    assert report["dropped"]["duplicate of an earlier row (overlapping exports?)"]["rows"] == 1
    assert sorted(imported.traffic) == ["chatcmpl-001", "chatcmpl-002", "chatcmpl-003", "chatcmpl-004", "chatcmpl-009"]
    assert report["defaulted"]["model <- model (no model_group)"] == 1


def test_the_json_export_maps_like_the_csv(cli, tmp_path, imported):
    assert cli("import", "litellm", FIXTURES / "litellm_spend_logs.json", "-o", tmp_path / "json",
               "--slice", "feature", "--assume-passed").code == 0
    from_json = read_import(tmp_path / "json")
    for request_id in from_json.traffic:
        json_call, csv_call = from_json.outcome(request_id), imported.outcome(request_id)
        assert {k: json_call[k] for k in ("input_tokens", "cached_input_tokens", "latency_ms", "ttft_ms", "cost_usd")} == \
            {k: csv_call[k] for k in ("input_tokens", "cached_input_tokens", "latency_ms", "ttft_ms", "cost_usd")}


def test_model_from_response_takes_the_deployment_model(cli, tmp_path):
    assert cli("import", "litellm", CSV, "-o", tmp_path / "data", "--model-from", "response",
               "--assume-passed").code == 0
    assert read_import(tmp_path / "data").outcome("chatcmpl-001")["model"] == "azure/gpt-4o-prod"


def test_a_cost_in_cents_is_converted_to_dollars(cli, tmp_path):
    assert cli("import", "litellm", CSV, "-o", tmp_path / "data", "--cost-unit", "cents", "--assume-passed").code == 0
    assert read_import(tmp_path / "data").outcome("chatcmpl-001")["cost_usd"] == pytest.approx(0.0000325)


def spend_row(request_id: str, reasoning: int | None = None, **fields) -> dict:
    """A non-streamed o3 call: 100 prompt and 50 completion tokens, 1.5 s, $0.002."""
    usage = {} if reasoning is None else {"completion_tokens_details": {"reasoning_tokens": reasoning}}
    row = {"request_id": request_id, "call_type": "acompletion", "model": "o3", "model_group": "o3",
           "startTime": "2026-11-16T09:00:00.000Z", "endTime": "2026-11-16T09:00:01.500Z",
           "completionStartTime": "2026-11-16T09:00:01.500Z", "prompt_tokens": 100, "completion_tokens": 50,
           "spend": 0.002, "status": "success", "metadata": {"usage_object": usage}}
    return row | fields


def import_rows(cli, tmp_path, rows: list[dict]):
    path = tmp_path / "spend.json"
    path.write_text(json.dumps(rows))
    result = cli("import", "litellm", path, "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 0, result.err
    return read_import(tmp_path / "data")


def test_a_first_token_stamped_before_the_start_keeps_the_call_without_a_time_to_first_token(cli, tmp_path):
    """skewed: completionStartTime 1 ms before startTime; streamed: the first token 250 ms after it."""
    data = import_rows(cli, tmp_path, [
        spend_row("skewed", completionStartTime="2026-11-16T08:59:59.999Z"),
        spend_row("streamed", completionStartTime="2026-11-16T09:00:00.250Z")])
    skewed = data.outcome("skewed")
    assert (skewed["input_tokens"], skewed["output_tokens"], skewed["cost_usd"]) == (100, 50, 0.002)
    assert (skewed["latency_ms"], skewed["ttft_ms"], skewed["hard_check_ok"]) == (1500.0, None, True)
    assert data.outcome("streamed")["ttft_ms"] == 250.0
    report = data.report[0]
    assert report["defaulted"]["ttft_ms -> null (completionStartTime before startTime)"] == 1
    assert report["dropped"] == {}


def test_reasoning_reported_on_top_of_the_completion_tokens_is_added_to_the_output(cli, tmp_path):
    """above: 80 reasoning cannot be inside 50 completion tokens -> 50 + 80 = 130 output.
    totalled: total 180 = 100 prompt + 50 completion + 30 reasoning -> 80 output.
    inside: total 150 = 100 + 50, so the 30 reasoning are part of the 50 (OpenAI's convention) -> 50.
    unsaid: no total, 30 <= 50 -> inside by LiteLLM's convention -> 50."""
    data = import_rows(cli, tmp_path, [spend_row("above", 80), spend_row("totalled", 30, total_tokens=180),
                                       spend_row("inside", 30, total_tokens=150), spend_row("unsaid", 30)])
    tokens = {name: (data.outcome(name)["output_tokens"], data.outcome(name)["reasoning_output_tokens"])
              for name in ("above", "totalled", "inside", "unsaid")}
    assert tokens == {"above": (130, 80), "totalled": (80, 30), "inside": (50, 30), "unsaid": (50, 30)}
    report = data.report[0]
    assert report["defaulted"]["output_tokens <- completion_tokens + reasoning_tokens (reasoning reported on top)"] == 2
    assert report["dropped"] == {}
