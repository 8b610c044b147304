"""`routesim import otel`: OpenTelemetry GenAI spans, current and older attribute names, three line shapes."""

from __future__ import annotations

import datetime as dt
import json

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


def sdk_span(span_id: str, **fields) -> dict:
    """A console-exporter span with 10 input and 5 output tokens, 1 s long."""
    return {"name": "chat", "context": {"trace_id": "t", "span_id": span_id},
            "start_time": "2026-11-16T09:00:00Z", "end_time": "2026-11-16T09:00:01Z",
            "attributes": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                           "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}} | fields


def otlp_span(span_id: str, *attributes: dict) -> dict:
    return {"spanId": span_id, "startTimeUnixNano": "1794819600000000000", "endTimeUnixNano": "1794819601000000000",
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.request.model", "value": {"stringValue": "m"}},
                           {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}},
                           {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "5"}}, *attributes]}


def export(*groups) -> dict:
    return {"resourceSpans": list(groups)}


def test_fields_of_the_wrong_kind_drop_their_span_or_the_part_of_the_export_they_spoil(cli, tmp_path):
    """Two good spans (one SDK line, one in an export request) survive eight malformed ones, each dropped
    and counted under its reason; an operation name of the wrong kind is no model call, so it is ignored."""
    bad_int = {"key": "gen_ai.usage.total_tokens", "value": {"intValue": "many"}}
    lines = [
        sdk_span("good"),
        sdk_span("status", status="ERROR"),
        sdk_span("context", context=["t", "s"]),
        sdk_span("events", status={"status_code": "ERROR"}, events={"name": "exception"}),
        sdk_span("op", attributes={"gen_ai.operation.name": ["chat"], "gen_ai.request.model": "m"}),
        sdk_span("reasons", attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                                        "gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 1,
                                        "gen_ai.response.finish_reasons": [["length"]]}),
        export({"scopeSpans": [{"spans": [otlp_span("otlp-good"), otlp_span("otlp-int", bad_int)]},
                               "not a scope", {"spans": {"spanId": "x"}}]},
               ["not a group"]),
        export({"resource": {"attributes": [bad_int]}, "scopeSpans": [{"spans": [otlp_span("resource")]}]}),
        {"resourceSpans": {"scopeSpans": []}},
    ]
    path = tmp_path / "spans.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("import", "otel", path, "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    assert sorted(data.traffic) == ["good", "otlp-good", "reasons"]
    report = data.report[0]
    assert {reason: entry["rows"] for reason, entry in report["dropped"].items()} == {
        "bad status": 1, "bad context": 1, "bad events": 1, "bad attribute value": 2, "bad OTLP export request": 4}
    assert report["ignored"] == {'gen_ai.operation.name = ["chat"]': 1}
    assert f"{path}, line 7, resourceSpans[0].scopeSpans[1]: resourceSpans[0].scopeSpans[1] is a string, not an " \
           "object" in report["dropped"]["bad OTLP export request"]["examples"]
    assert data.outcome("reasons")["hard_check_ok"]  # [["length"]] holds no finish reason it knows


def test_a_line_that_is_not_utf8_is_dropped_with_its_line_number(cli, tmp_path):
    path = tmp_path / "spans.jsonl"
    path.write_bytes(json.dumps(sdk_span("a")).encode() + b'\n{"name": "caf\xe9"}\n'
                     + json.dumps(sdk_span("b")).encode() + b"\n")
    result = cli("import", "otel", path, "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    assert sorted(data.traffic) == ["a", "b"]
    assert data.report[0]["dropped"]["not UTF-8 text"]["examples"] == [
        f"{path}, line 2: byte 0xe9 at byte 14 of the line (export the file as UTF-8)"]
