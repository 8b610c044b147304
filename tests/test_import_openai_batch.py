"""`routesim import openai-batch`: Batch API output, which records usage but no latency."""

from __future__ import annotations

import datetime as dt

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
