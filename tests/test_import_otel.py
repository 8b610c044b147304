"""`routesim import otel`: OpenTelemetry GenAI spans, current and older attribute names, three line shapes."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.import_helpers import FIXTURES, read_import

SPANS = FIXTURES / "otel_spans.jsonl"


@pytest.fixture
def imported(cli, tmp_path):
    result = cli("import", "otel", SPANS, "-o", tmp_path / "data", "--request-id", "app.request_id",
                 "--slice", "app.feature", "--column", "deployment.environment=env", "--assume-passed")
    assert result.code == 0, result.err
    return read_import(tmp_path / "data"), result.out


def test_an_otlp_export_request_maps_current_attribute_names(imported):
    data, _ = imported
    call = data.outcome("req-1")
    assert (call["model"], call["input_tokens"], call["cached_input_tokens"], call["output_tokens"]) == \
        ("gpt-4o", 1200, 1000, 150)
    assert call["latency_ms"] == pytest.approx(1234.5)  # from the nanosecond start and end
    assert call["hard_check_ok"] and call["ttft_ms"] is None and call["cost_usd"] is None
    request = data.traffic["req-1"]
    assert request["ts"] == dt.datetime(2026, 11, 16, 9, tzinfo=dt.UTC)
    assert (request["slice"], request["env"]) == ("faq", "prod")  # env is a resource attribute


def test_older_aliases_are_read_and_anthropic_cache_reads_are_added_to_the_input(imported):
    data, out = imported
    call = data.outcome("req-2")  # gen_ai.system, prompt/completion_tokens, cache_read_input_tokens
    assert (call["model"], call["input_tokens"], call["cached_input_tokens"], call["output_tokens"]) == \
        ("claude-3-5-sonnet", 2000, 1800, 300)
    assert "gen_ai.usage.prompt_tokens (for gen_ai.usage.input_tokens): 1 row(s)" in out


def test_the_total_tells_that_cache_writes_came_on_top(imported):
    call = imported[0].outcome("req-6")
    assert (call["input_tokens"], call["cached_input_tokens"], call["cache_write_input_tokens"]) == (1400, None, 400)


def test_an_sdk_console_span_with_a_length_finish_reason_fails_its_hard_check(imported):
    call = imported[0].outcome("req-3")
    assert call["latency_ms"] == pytest.approx(800.0) and not call["hard_check_ok"] and not call["passed"]


def test_an_error_status_keeps_the_call_as_a_failed_one(imported):
    call = imported[0].outcome("req-5")
    assert (call["hard_check_ok"], call["passed"], call["input_tokens"]) == (False, False, 0)


def test_tool_agent_and_non_genai_spans_are_ignored_and_counted(imported):
    data, out = imported
    report = data.report[0]
    assert report["ignored"] == {"gen_ai.operation.name = execute_tool": 1, "gen_ai.operation.name = invoke_agent": 1,
                                 "spans without gen_ai attributes": 1}
    assert "req-4" not in data.traffic and len(data.traffic) == 5
    assert report["dropped"]["no output token count"]["rows"] == 1
    assert report["dropped"]["not valid JSON"]["examples"] == [f"{SPANS}, line 4: Expecting value at column 1"]
    assert report["rows_read"] == 10 and "dropped: 2 row(s)" in out


def test_without_a_request_id_key_each_span_is_a_request(cli, tmp_path):
    assert cli("import", "otel", SPANS, "-o", tmp_path / "data", "--assume-passed").code == 0
    assert "eee19b7ec3c1b174" in read_import(tmp_path / "data").traffic


def test_model_from_response_takes_the_answering_snapshot(cli, tmp_path):
    assert cli("import", "otel", SPANS, "-o", tmp_path / "data", "--request-id", "app.request_id",
               "--model-from", "response", "--assume-passed").code == 0
    data = read_import(tmp_path / "data")
    assert data.outcome("req-1")["model"] == "gpt-4o-2024-08-06"
    assert data.outcome("req-2")["model"] == "claude-3-5-sonnet"  # no response model: the request's
    assert data.report[0]["defaulted"]["model <- gen_ai.request.model (no gen_ai.response.model)"] == 4
