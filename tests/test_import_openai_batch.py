"""`routesim import openai-batch`: Batch API output, which records usage but no latency."""

from __future__ import annotations

import datetime as dt
import json

from tests.import_helpers import FIXTURES, read_import

OUTPUT = FIXTURES / "openai_batch_output.jsonl"


def test_batch_output_needs_an_assumed_latency(cli, tmp_path):
    result = cli("import", "openai-batch", OUTPUT, "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 2
    assert "records no per-request latency" in result.err and "--assume-latency-ms" in result.err
    assert "where: routesim import openai-batch: --assume-latency-ms" in result.err
    assert not (tmp_path / "data").exists()


def test_chat_and_responses_bodies_map_with_cached_tokens_inside_the_prompt(cli, tmp_path):
    result = cli("import", "openai-batch", OUTPUT, "-o", tmp_path / "data", "--assume-latency-ms", "2000",
                 "--custom-id-pattern", r"(?P<feature>[a-z]+)-\d+", "--slice", "feature", "--assume-passed")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    chat = data.outcome("faq-001")
    assert (chat["model"], chat["input_tokens"], chat["cached_input_tokens"], chat["output_tokens"]) == \
        ("gpt-4o-mini-2024-07-18", 1200, 1024, 80)
    assert (chat["latency_ms"], chat["latency_source"], chat["cost_usd"]) == (2000.0, "assumed", None)
    assert data.traffic["faq-001"]["ts"] == dt.datetime(2026, 11, 16, 9, tzinfo=dt.UTC)  # `created`, epoch seconds
    responses = data.outcome("faq-003")
    assert (responses["model"], responses["input_tokens"], responses["cached_input_tokens"]) == \
        ("gpt-4.1-mini-2025-04-14", 2048, 1536)
    assert data.traffic["billing-002"]["slice"] == "billing"  # from the custom_id pattern
    assert not data.outcome("billing-002")["hard_check_ok"]  # finish_reason length


def test_failed_requests_without_an_answer_are_dropped_with_their_error(cli, tmp_path):
    cli("import", "openai-batch", OUTPUT, "-o", tmp_path / "data", "--assume-latency-ms", "2000", "--assume-passed")
    report = read_import(tmp_path / "data").report[0]
    expired = report["dropped"]["request failed in the batch: batch_expired (timeout)"]
    assert expired["examples"][0].endswith("custom_id faq-004: status None, error batch_expired: This request could "
                                           "not be executed before the completion window expired.")
    invalid = report["dropped"]["request failed in the batch: invalid_request_error (other)"]
    assert invalid["examples"][0].endswith("status 400, error empty_array: Invalid 'messages': empty array.")
    assert report["ignored"] == {"object = list": 1}  # an embeddings body
    assert any("latency_source = 'assumed'" in note for note in report["assumptions"])


def batch_line(custom_id: str, model: str = "gpt-4o-mini", **body) -> dict:
    """A Chat Completions answer with 100 prompt and 10 completion tokens."""
    return {"id": f"batch_req_{custom_id}", "custom_id": custom_id, "error": None,
            "response": {"status_code": 200, "body": {
                "object": "chat.completion", "created": 1794819600, "model": model,
                "choices": [{"finish_reason": "stop"}], "usage": {"prompt_tokens": 100, "completion_tokens": 10}}
                | body}}


def test_fields_of_the_wrong_kind_and_undecodable_lines_drop_their_line(cli, tmp_path):
    """One good line survives a usage and choices of the wrong kind, a body that is a list, a response
    that is text and a line with a Latin-1 byte; a finish reason that is a list is read as text."""
    lines = [batch_line("good"), batch_line("usage", usage=[100, 10]), batch_line("choices", choices={"a": 1}),
             batch_line("reason", choices=[{"finish_reason": ["length"]}]),
             {"custom_id": "body", "response": {"status_code": 200, "body": ["x"]}},
             {"custom_id": "response", "response": "ok"}]
    path = tmp_path / "output.jsonl"
    path.write_bytes("".join(json.dumps(line) + "\n" for line in lines).encode() + b'{"custom_id": "\xe9"}\n')
    result = cli("import", "openai-batch", path, "-o", tmp_path / "data", "--assume-latency-ms", "1000",
                 "--assume-passed")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    assert sorted(data.traffic) == ["good", "reason"] and data.outcome("reason")["hard_check_ok"]
    assert {reason: entry["rows"] for reason, entry in data.report[0]["dropped"].items()} == {
        "bad usage": 1, "bad choices": 1, "bad response.body": 1, "bad response": 1, "not UTF-8 text": 1}
    assert data.report[0]["dropped"]["not UTF-8 text"]["examples"][0].startswith(f"{path}, line 7: byte 0xe9")


def test_a_status_code_written_as_text_is_still_a_success(cli, tmp_path):
    line = batch_line("text-status")
    line["response"]["status_code"] = "200"
    path = tmp_path / "output.jsonl"
    path.write_text(json.dumps(line) + "\n")
    assert cli("import", "openai-batch", path, "-o", tmp_path / "data", "--assume-latency-ms", "1000",
               "--assume-passed").code == 0
    assert read_import(tmp_path / "data").outcome("text-status")["input_tokens"] == 100


def test_a_custom_id_pattern_that_is_no_regular_expression_names_the_option(cli, tmp_path):
    path = tmp_path / "output.jsonl"
    path.write_text(json.dumps(batch_line("a")) + "\n")
    result = cli("import", "openai-batch", path, "-o", tmp_path / "data", "--assume-latency-ms", "1000",
                 "--custom-id-pattern", "(?P<feature", "--assume-passed")
    assert result.code == 2 and "not a regular expression" in result.err
    assert "where: routesim import openai-batch: --custom-id-pattern" in result.err and "fix:" in result.err
