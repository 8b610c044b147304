"""What every import shares: grades are required or assumed, writes are atomic and repeatable, rows sharing
an id are one request, and the field rules (time units, cache conventions)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import polars as pl
import pytest

from simulator.importers.folder import ROW_SCHEMA
from simulator.importers.rows import (
    AUTO,
    CACHE_INSIDE,
    CACHE_ON_TOP,
    EXCLUSIVE,
    INCLUSIVE,
    NO_CACHE,
    BadRow,
    Row,
    normalise_usage,
    timestamp,
)
from tests.import_helpers import FIXTURES, read_import

LITELLM = FIXTURES / "litellm_spend_logs.csv"


def test_traffic_logs_without_grades_need_assume_passed(cli, tmp_path):
    result = cli("import", "litellm", LITELLM, "-o", tmp_path / "data")
    assert result.code == 2
    assert "carry no grade" in result.err and "--assume-passed" in result.err and "--merge" in result.err
    assert not (tmp_path / "data").exists()


def test_an_existing_folder_is_kept_unless_forced(cli, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    refused = cli("import", "litellm", LITELLM, "-o", folder, "--assume-passed")
    assert refused.code == 2 and "already holds files" in refused.err and "--force" in refused.err
    assert (folder / "notes.txt").read_text() == "mine"
    assert cli("import", "litellm", LITELLM, "-o", folder, "--assume-passed", "--force").code == 0
    assert sorted(path.name for path in folder.iterdir()) == [".routesim-output", "import-report.json",
                                                             "outcomes.parquet", "traffic.parquet"]
    # Now routesim wrote it (the marker): a second import replaces it without --force, as README says.
    assert cli("import", "litellm", LITELLM, "-o", folder, "--assume-passed").code == 0


def test_a_failed_write_leaves_nothing_behind(cli, tmp_path, monkeypatch):
    folder = tmp_path / "data"
    assert cli("import", "litellm", LITELLM, "-o", folder, "--assume-passed").code == 0
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    original = pl.DataFrame.write_parquet

    def fail_on_outcomes(frame, path, *args, **kwargs):
        if str(path).endswith("outcomes.parquet"):
            raise OSError("disk full")
        return original(frame, path, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", fail_on_outcomes)
    # A full disk is a problem of the destination, not a bug: exit 2, naming the cause.
    for out, force in ((folder, ["--force"]), (tmp_path / "new", [])):
        failed = cli("import", "litellm", LITELLM, "-o", out, "--assume-passed", *force)
        assert failed.code == 2 and "disk full" in failed.err
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_strict_refuses_to_write_when_rows_were_dropped(cli, tmp_path):
    result = cli("import", "litellm", LITELLM, "-o", tmp_path / "data", "--assume-passed", "--strict")
    assert result.code == 2 and "2 row(s) were dropped and --strict is set" in result.err
    assert "bad startTime: 1" in result.out and not (tmp_path / "data").exists()


def test_the_same_inputs_give_identical_files(cli, tmp_path):
    for name in ("one", "two"):
        assert cli("import", "litellm", LITELLM, "-o", tmp_path / name, "--assume-passed").code == 0
    for file in ("traffic.parquet", "outcomes.parquet", "import-report.json"):
        assert (tmp_path / "one" / file).read_bytes() == (tmp_path / "two" / file).read_bytes()


def test_calls_sharing_a_request_id_are_candidates_and_samples_of_one_request(cli, tmp_path):
    def span(span_id, model, second, tokens):
        start = int(dt.datetime(2026, 11, 16, 9, 0, second, tzinfo=dt.UTC).timestamp()) * 10**9
        return {"spanId": span_id, "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 500_000_000),
                "attributes": {"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                               "gen_ai.usage.input_tokens": tokens, "gen_ai.usage.output_tokens": 10,
                               "app.ticket": "t-1", "app.feature": "faq" if second else None}}
    spans = tmp_path / "shadow.jsonl"
    spans.write_text("\n".join(json.dumps(s) for s in [span("s3", "small", 2, 101), span("s1", "small", 0, 100),
                                                        span("s2", "big", 1, 100)]) + "\n")
    assert cli("import", "otel", spans, "-o", tmp_path / "data", "--request-id", "app.ticket",
               "--slice", "app.feature", "--assume-passed").code == 0
    data = read_import(tmp_path / "data")
    assert sorted(data.outcomes) == [("t-1", "big", 0), ("t-1", "small", 0), ("t-1", "small", 1)]
    assert data.outcomes["t-1", "small", 1]["input_tokens"] == 101  # the later call is sample 1
    request = data.traffic["t-1"]  # the earliest call makes the traffic row
    assert (request["ts"].second, request["input_tokens"], request["slice"]) == (0, 100, "all")


def test_an_input_that_does_not_exist_is_named(cli, tmp_path):
    result = cli("import", "otel", tmp_path / "missing.jsonl", "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 2 and "input file not found" in result.err and "missing.jsonl" in result.err


def test_an_input_that_exists_but_is_no_regular_file_is_called_what_it_is(cli, tmp_path):
    result = cli("import", "otel", "/dev/null", "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 2 and "/dev/null is a character device, not a regular file" in result.err
    assert "not found" not in result.err
    (tmp_path / "empty.jsonl").write_bytes(b"")
    empty = cli("import", "otel", tmp_path / "empty.jsonl", "-o", tmp_path / "data", "--assume-passed")
    assert empty.code == 2 and "the input holds no rows (an empty file?)" in empty.err


def test_a_file_that_is_not_utf8_is_named(cli, tmp_path):
    path = tmp_path / "spend.csv"
    path.write_bytes("request_id\n\xe9t\xe9\n".encode("latin-1"))
    result = cli("import", "litellm", path, "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 2 and str(path) in result.err


@pytest.mark.parametrize("value", [
    1794819600, 1794819600.0, "1794819600", 1794819600_000, 1794819600_000_000, 1794819600_000_000_000,
    "2026-11-16T09:00:00Z", "2026-11-16T10:00:00+01:00", "2026-11-16 09:00:00", "2026-11-16 09:00:00.000+00",
])
def test_times_in_seconds_milliseconds_microseconds_nanoseconds_or_iso_agree(value):
    assert timestamp(value, "ts") == dt.datetime(2026, 11, 16, 9, tzinfo=dt.UTC)


def test_a_time_that_is_neither_iso_nor_epoch_is_a_bad_row():
    with pytest.raises(BadRow, match="bad ts"):
        timestamp("next tuesday", "ts")


@pytest.mark.parametrize("case, expected", [
    (dict(reported=1200, cache_read=1000, cache_write=None, output=100, total=None, default_style=INCLUSIVE),
     (1200, 1000, CACHE_INSIDE)),
    (dict(reported=200, cache_read=1000, cache_write=None, output=100, total=None, default_style=INCLUSIVE),
     (1200, 1000, CACHE_ON_TOP)),  # the cache cannot be inside a smaller input
    (dict(reported=1000, cache_read=None, cache_write=400, output=50, total=1450, default_style=INCLUSIVE),
     (1400, None, CACHE_ON_TOP)),  # the total counts the cache on top
    (dict(reported=1000, cache_read=800, cache_write=None, output=50, total=1050, default_style=EXCLUSIVE),
     (1000, 800, CACHE_INSIDE)),  # the total counts it inside
    (dict(reported=300, cache_read=0, cache_write=0, output=5, total=None, default_style=EXCLUSIVE),
     (300, 0, NO_CACHE)),
])
def test_cache_tokens_are_counted_once_whichever_convention_the_source_used(case, expected):
    usage = normalise_usage(case.pop("reported"), case.pop("cache_read"), case.pop("cache_write"),
                            forced_style=AUTO, **case)
    assert (usage.input_tokens, usage.cached_input_tokens, usage.usage_style) == expected


def test_a_forced_inclusive_reading_that_cannot_hold_is_a_bad_row():
    with pytest.raises(BadRow, match="cache tokens exceed input tokens"):
        normalise_usage(200, 1000, None, output=1, total=None, default_style=INCLUSIVE, forced_style=INCLUSIVE)
    assert normalise_usage(1200, 1000, None, output=1, total=None, default_style=INCLUSIVE,
                           forced_style=EXCLUSIVE).input_tokens == 2200


def test_every_field_of_a_row_reaches_the_frame():
    assert set(ROW_SCHEMA) == {field.name for field in dataclasses.fields(Row)} - {"columns"}


def sdk_span(span_id: str, model: str = "m", trace: str = "t") -> dict:
    return {"name": "chat", "context": {"trace_id": trace, "span_id": span_id}, "start_time": "2026-11-16T09:00:00Z",
            "end_time": "2026-11-16T09:00:01Z", "attributes": {"gen_ai.operation.name": "chat",
                                                                "gen_ai.request.model": model,
                                                                "gen_ai.usage.input_tokens": 10,
                                                                "gen_ai.usage.output_tokens": 5}}


def test_the_report_is_printed_before_a_write_that_fails(cli, tmp_path, monkeypatch):
    """The data contract or the disk can still refuse the folder after the rows were read: the report of what
    was read and dropped comes first, so the refusal can be understood."""
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps(sdk_span("a")) + "\nnot json\n")

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full)
    result = cli("import", "otel", path, "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 2 and "disk full" in result.err
    assert "dropped: 1 row(s)" in result.out and f"{path}, line 2: Expecting value" in result.out
    assert "wrote" not in result.out


def test_the_report_of_the_files_read_before_a_refused_one_is_printed(cli, tmp_path):
    log, other = tmp_path / "log.json", tmp_path / "other.json"
    log.write_text(json.dumps({"eval": {"task": "t", "model": "m"}, "samples": [
        {"id": "a", "epoch": "first", "scores": {"match": {"value": "C"}}}]}))
    other.write_text('{"results": []}')
    result = cli("import", "inspect-ai", log, other, "-o", tmp_path / "data", "--scorer", "match")
    assert result.code == 2 and "not an inspect-ai eval log" in result.err and str(other) in result.err
    assert "bad epoch: 1" in result.out and f"{log}, sample 1 (id a, epoch first): epoch='first'" in result.out


@pytest.mark.parametrize("fmt, lines, options, named", [
    ("otel", [sdk_span("a", "m1"), sdk_span("b", "m2")], [], "--request-id trace_id"),
    ("langfuse", [{"id": f"obs-{n}", "traceId": "trace", "type": "GENERATION", "model": model,
                   "startTime": "2026-11-16T09:00:00Z", "endTime": "2026-11-16T09:00:01Z",
                   "usageDetails": {"input": 10, "output": 5}} for n, model in enumerate(("m1", "m2"))],
     [], "--request-id traceId"),
    ("openai-batch", [{"custom_id": f"c{n}", "response": {"status_code": 200, "body": {
        "object": "chat.completion", "created": 1794819600, "model": model, "choices": [{"finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}}}} for n, model in enumerate(("m1", "m2"))],
     ["--assume-latency-ms", "1000"], "the same custom_ids"),
])
def test_every_format_says_when_no_request_has_calls_of_two_models(cli, tmp_path, fmt, lines, options, named):
    """Two models, but each call its own request (the default ids are one per call): no request can compare
    them, and the report says so, naming how to group them."""
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("import", fmt, path, "-o", tmp_path / "data", "--assume-passed", *options)
    assert result.code == 0, result.err
    notes = [note for note in read_import(tmp_path / "data").report[0]["assumptions"]
             if note.startswith("no request has calls of two models")]
    assert len(notes) == 1 and named in notes[0]


def test_no_hint_once_a_request_has_calls_of_two_models_and_litellm_gives_it_once(cli, tmp_path):
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps(sdk_span("a", "m1")) + "\n" + json.dumps(sdk_span("b", "m2")) + "\n")
    grouped = cli("import", "otel", path, "-o", tmp_path / "data", "--assume-passed", "--request-id", "trace_id")
    assert grouped.code == 0 and "no request has calls of two models" not in grouped.out
    litellm = cli("import", "litellm", LITELLM, "-o", tmp_path / "lite", "--assume-passed")
    assert litellm.out.count("no request has calls of two models") == 1
