"""Importers faithful to each format as it is really written: current and alias usage names, reasoning,
error spans and error types, LiteLLM's older cache fields and 1-hour writes, Langfuse's Parquet export and
scores, interrupted inspect-ai runs, and totals no field explains."""

from __future__ import annotations

import json
import zipfile

import polars as pl
import pytest

from tests.import_helpers import FIXTURES, read_import


def write_lines(path, rows) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def span(span_id: str, attributes: dict, *, trace: str = "t1", status: dict | None = None, events=()) -> dict:
    """A span as the Python SDK's console exporter prints it (attributes as a plain object, ISO times)."""
    return {"name": "chat", "context": {"trace_id": trace, "span_id": span_id},
            "start_time": "2026-11-16T09:00:00.000000Z", "end_time": "2026-11-16T09:00:01.500000Z",
            "status": status or {"status_code": "UNSET"}, "attributes": {"gen_ai.operation.name": "chat",
                                                                          "gen_ai.request.model": "m", **attributes},
            "events": list(events)}


@pytest.fixture
def otel(cli, tmp_path):
    spans = [
        # Sentry's names: cached 300 and written 200 inside the 1,000 input (total 1,100 = 1,000 + 100).
        span("sentry", {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.input_tokens.cached": 300,
                        "gen_ai.usage.input_tokens.cache_write": 200, "gen_ai.usage.output_tokens": 100,
                        "gen_ai.usage.output_tokens.reasoning": 40, "gen_ai.usage.total_tokens": 1100,
                        "openai.response.service_tier": "flex"}),
        # pydantic-ai's details; reasoning 60 on top of the 100 output (total 1,160 = 1,000 + 100 + 60).
        span("pydantic", {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.details.cache_read_tokens": 500,
                          "gen_ai.usage.output_tokens": 100, "gen_ai.usage.details.reasoning_tokens": 60,
                          "gen_ai.usage.total_tokens": 1160, "gen_ai.usage.details.audio_tokens": 7,
                          "gen_ai.openai.response.service_tier": "default",
                          "gen_ai.openai.request.service_tier": "priority"}),
        # Mastra's former names, Google's thoughts (never inside the output), an unread name.
        span("mastra", {"gen_ai.usage.input_tokens": 800, "gen_ai.usage.cached_input_tokens": 100,
                        "gen_ai.usage.cache_write_tokens": 50, "gen_ai.usage.output_tokens": 20,
                        "gen_ai.usage.thoughts_token_count": 30, "gen_ai.usage.tool_use_prompt_tokens": 5,
                        "openai.request.service_tier": "flex"}),
        # A rate-limited span without usage, in the same trace as a successful one.
        span("limited", {"error.type": "RateLimitError"}, trace="t2", status={"status_code": "ERROR",
                                                                                 "description": "429 Too Many Requests"}),
        span("answered", {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
                          "gen_ai.request.model": "other", "openai.request.service_tier": "auto"}, trace="t2"),
        # A timeout told only by its exception event.
        span("slow", {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 0}, trace="t3",
             status={"status_code": "ERROR"},
             events=[{"name": "exception", "attributes": {"exception.type": "httpx.ReadTimeout",
                                                          "exception.message": "timed out"}}]),
    ]
    path = tmp_path / "spans.jsonl"
    write_lines(path, spans)
    result = cli("import", "otel", path, "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 0, result.err
    return read_import(tmp_path / "data"), result.out


def test_otel_reads_sentry_pydantic_ai_and_mastra_names(otel):
    data, _ = otel
    sentry, pydantic, mastra = data.outcome("sentry"), data.outcome("pydantic"), data.outcome("mastra")
    assert (sentry["input_tokens"], sentry["cached_input_tokens"], sentry["cache_write_input_tokens"]) == (1000, 300, 200)
    assert (sentry["output_tokens"], sentry["reasoning_output_tokens"]) == (100, 40)  # inside: the total says so
    assert (pydantic["cached_input_tokens"], pydantic["output_tokens"], pydantic["reasoning_output_tokens"]) == \
        (500, 160, 60)  # on top: the total says so, and the output gains it
    assert (mastra["cached_input_tokens"], mastra["cache_write_input_tokens"]) == (100, 50)
    assert (mastra["output_tokens"], mastra["reasoning_output_tokens"]) == (50, 30)  # Google's thoughts come on top


def test_otel_lists_every_usage_attribute_it_did_not_read(otel):
    data, out = otel
    defaulted = data.report[0]["defaulted"]
    assert defaulted["not read: gen_ai.usage.details.audio_tokens"] == 1
    assert defaulted["not read: gen_ai.usage.tool_use_prompt_tokens"] == 1
    assert "not read: gen_ai.usage.tool_use_prompt_tokens: 1 row(s)" in out


def test_otel_reads_the_service_tier_the_response_names_else_the_one_the_request_asked_for(otel):
    """Semantic-convention names (the `openai.*` registry; `gen_ai.openai.*` before v1.37): the response's
    tier wins (OpenAI's `default` is standard); a request's explicit tier stands in when the response
    names none, but `auto` leaves the choice to OpenAI, so it tells nothing."""
    data, _ = otel
    tiers = {name: data.outcome(name)["service_tier"] for name in ("sentry", "pydantic", "mastra", "answered")}
    assert tiers == {"sentry": "flex", "pydantic": "standard", "mastra": "flex", "answered": None}


def test_otel_keeps_error_spans_as_failed_calls_with_their_latency_and_type(otel):
    data, out = otel
    assert "error types: rate_limit 1, timeout 1" in out  # for people, not Python's dict repr
    limited, slow = data.outcome("limited"), data.outcome("slow")
    assert (limited["hard_check_ok"], limited["passed"], limited["latency_ms"]) == (False, False, 1500.0)
    assert (limited["input_tokens"], limited["output_tokens"], limited["error_type"]) == (0, 0, "rate_limit")
    assert (slow["hard_check_ok"], slow["error_type"]) == (False, "timeout")
    assert data.outcome("sentry")["error_type"] is None
    assert data.report[0]["error_types"] == {"rate_limit": 1, "timeout": 1}


def test_otel_groups_the_shadow_calls_of_a_trace_with_request_id_trace_id(cli, tmp_path):
    path = tmp_path / "spans.jsonl"
    write_lines(path, [span("a", {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}),
                       span("b", {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
                                  "gen_ai.request.model": "shadow"})])
    assert cli("import", "otel", path, "-o", tmp_path / "data", "--assume-passed", "--request-id", "trace_id").code == 0
    data = read_import(tmp_path / "data")
    assert list(data.traffic) == ["t1"] and {key[1] for key in data.outcomes} == {"m", "shadow"}


def litellm_row(request_id: str, usage: dict | None = None, **fields) -> dict:
    row = {"request_id": request_id, "call_type": "acompletion", "model": "claude", "model_group": "claude",
           "startTime": "2026-11-16T09:00:00Z", "endTime": "2026-11-16T09:00:02Z", "prompt_tokens": 1000,
           "completion_tokens": 100, "spend": 0.01, "status": "success", "metadata": {}}
    if usage is not None:
        row["metadata"] = {"usage_object": usage}
    return row | fields


def test_litellm_one_hour_writes_reasoning_older_cache_fields_and_error_types(cli, tmp_path):
    """hour: 3,000 written of which 1,000 at the 1-hour rate (Anthropic counts both in
    cache_creation_input_tokens); old: an older export's cache reads in additional_usage_values."""
    rows = [
        litellm_row("hour", {"cache_creation_input_tokens": 3000, "cache_read_input_tokens": 0,
                             "cache_creation_token_details": {"ephemeral_1h_input_tokens": 1000},
                             "completion_tokens_details": {"reasoning_tokens": 25}, "service_tier": "priority"},
                    prompt_tokens=4000, total_tokens=4100),
        litellm_row("old", None, metadata={"additional_usage_values": {"cache_read_input_tokens": 600}}),
        litellm_row("failed", None, status="failure", completion_tokens=0, spend=0,
                    metadata={"error_information": {"error_class": "ContextWindowExceededError",
                                                    "error_message": "maximum context length is 8192 tokens"}}),
    ]
    path = tmp_path / "spend.json"
    path.write_text(json.dumps(rows))
    result = cli("import", "litellm", path, "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    hour = data.outcome("hour")
    assert (hour["input_tokens"], hour["cache_write_input_tokens"], hour["cache_write_1h_input_tokens"]) == \
        (4000, 2000, 1000)
    assert (hour["reasoning_output_tokens"], hour["service_tier"]) == (25, "priority")
    assert data.outcome("old")["cached_input_tokens"] == 600
    assert data.outcome("failed")["error_type"] == "context_window"
    assert "no request has calls of two models" in result.out and "--request-id KEY" in result.out


def test_a_total_above_input_and_output_is_listed_row_by_row(cli, tmp_path):
    path = tmp_path / "spend.json"
    path.write_text(json.dumps([litellm_row("r1", total_tokens=1500), litellm_row("r2", total_tokens=1100)]))
    assert cli("import", "litellm", path, "-o", tmp_path / "data", "--assume-passed").code == 0
    listed = read_import(tmp_path / "data").report[0]["total_above_input_and_output"]
    assert listed == [f"{path}, item 1: total 1,500 > input 1,000 + output 100"]


def test_langfuse_parquet_export_with_its_scores(cli, tmp_path):
    """The blob export's observations as Parquet and its scores as JSON lines: an annotation grades
    obs-001 by its observation id (human), an evaluation grades the trace of obs-002 (llm_judge)."""
    observations = [json.loads(line) for line in
                    (FIXTURES.parent / "real-logs" / "C07-langfuse-blob-export" / "observations_v2.jsonl")
                    .read_text().splitlines()]
    flat = [{key: json.dumps(value) if isinstance(value, (dict, list)) else value for key, value in row.items()}
            for row in observations]
    pl.DataFrame(flat, infer_schema_length=None).write_parquet(tmp_path / "observations.parquet")
    write_lines(tmp_path / "scores.jsonl", [
        {"id": "s1", "trace_id": "tr-001", "observation_id": "obs-001", "name": "helpful", "value": 1.0,
         "source": "ANNOTATION", "data_type": "NUMERIC"},
        {"id": "s2", "trace_id": "tr-002", "observation_id": None, "name": "helpful", "value": 0.25,
         "source": "EVAL", "data_type": "NUMERIC"}])
    result = cli("import", "langfuse", tmp_path / "observations.parquet", tmp_path / "scores.jsonl",
                 "-o", tmp_path / "data", "--slice", "feature")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    first, second = data.outcome("obs-001"), data.outcome("obs-002")
    assert (first["passed"], first["score"], first["grader"], first["latency_ms"]) == (True, 1.0, "human", 1509.0)
    assert (second["passed"], second["score"], second["grader"]) == (False, 0.25, "llm_judge")


def test_langfuse_export_latency_is_only_a_cross_check_and_deselected_field_groups_still_import(cli, tmp_path):
    """The export's `latency` is milliseconds or seconds by the integration's creation date, which the
    file does not say: end - start (1,509 ms) is used, the field only counted as agreeing in either unit
    or in neither. A row exported without the cost and timing groups imports without them; one without
    usage cannot be priced and is dropped, counted."""
    first = json.loads((FIXTURES.parent / "real-logs" / "C07-langfuse-blob-export" / "observations_v2.jsonl")
                       .read_text().splitlines()[0])
    rows = [first, first | {"id": "seconds", "latency": 1.509}, first | {"id": "neither", "latency": 99.0},
            {key: value for key, value in first.items() if key not in (
                "cost_details", "total_cost", "latency", "time_to_first_token", "completion_start_time")}
            | {"id": "no-cost"},
            {key: value for key, value in first.items() if key not in ("usage_details", "latency")} | {"id": "no-usage"}]
    write_lines(tmp_path / "observations.jsonl", rows)
    result = cli("import", "langfuse", tmp_path / "observations.jsonl", "-o", tmp_path / "data", "--assume-passed")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    assert {name: data.outcome(name)["latency_ms"] for name in ("obs-001", "seconds", "neither", "no-cost")} == \
        dict.fromkeys(("obs-001", "seconds", "neither", "no-cost"), 1509.0)
    defaulted = data.report[0]["defaulted"]
    assert (defaulted["export latency field checked: milliseconds"], defaulted["export latency field checked: seconds"],
            defaulted["export latency field disagrees with end_time - start_time (end - start used)"]) == (1, 1, 1)
    no_cost = data.outcome("no-cost")
    assert (no_cost["input_tokens"], no_cost["cost_usd"], no_cost["ttft_ms"]) == (1200, None, None)
    assert "no-usage" not in data.traffic
    assert data.report[0]["dropped"]["no input token count"]["rows"] == 1


def test_an_interrupted_eval_is_read_from_its_journal_and_marked_incomplete(cli, tmp_path):
    log = json.loads((FIXTURES / "inspect_eval.json").read_text())
    archive = tmp_path / "interrupted.eval"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("_journal/start.json", json.dumps({"version": 2, "eval": log["eval"], "plan": log["plan"]}))
        for sample in log["samples"][:2]:  # flushed so far
            out.writestr(f"samples/{sample['id']}_epoch_{sample['epoch']}.json", json.dumps(sample))
    result = cli("import", "inspect-ai", archive, "-o", tmp_path / "data")
    assert result.code == 0, result.err
    data = read_import(tmp_path / "data")
    assert len(data.outcomes) == 2 and data.report[0]["incomplete_runs"] == 1
    assert "the run did not finish" in result.out
    broken = tmp_path / "broken.eval"
    with zipfile.ZipFile(broken, "w") as out:
        out.writestr("samples/x_epoch_1.json", json.dumps(log["samples"][0]))
    refused = cli("import", "inspect-ai", broken, "-o", tmp_path / "other")
    assert refused.code == 2 and "inspect eval-retry" in refused.err


def test_otel_reasoning_on_top_is_found_with_the_cache_on_top_too(cli, tmp_path):
    """both: input 100 + cache reads 1,000 + output 50 + reasoning 30 = total 1,180: the cache exceeds the
    input (on top), and only the reasoning explains the other 30. mixed: 1,000 + 500 cached + 50 + 30 =
    1,580, the cache small enough to have been inside, but only both on top make the total. left: total
    200 against 100 + 50 with reasoning 30 (inside, as neither reading makes 200): 50 tokens nobody
    explains, so the row is listed although it has a reasoning count."""
    path = tmp_path / "spans.jsonl"
    write_lines(path, [
        span("both", {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 1000,
                      "gen_ai.usage.output_tokens": 50, "gen_ai.usage.reasoning.output_tokens": 30,
                      "gen_ai.usage.total_tokens": 1180}),
        span("mixed", {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.cache_read.input_tokens": 500,
                       "gen_ai.usage.output_tokens": 50, "gen_ai.usage.reasoning.output_tokens": 30,
                       "gen_ai.usage.total_tokens": 1580}),
        span("left", {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 50,
                      "gen_ai.usage.reasoning.output_tokens": 30, "gen_ai.usage.total_tokens": 200}),
    ])
    assert cli("import", "otel", path, "-o", tmp_path / "data", "--assume-passed").code == 0
    data = read_import(tmp_path / "data")
    counts = {name: (data.outcome(name)["input_tokens"], data.outcome(name)["output_tokens"])
              for name in ("both", "mixed", "left")}
    assert counts == {"both": (1100, 80), "mixed": (1500, 80), "left": (100, 50)}
    assert data.report[0]["total_above_input_and_output"] == [f"{path}, line 3: total 200 > input 100 + output 50"]


def test_otel_forced_usage_reading_decides_where_reasoning_is_looked_for(cli, tmp_path):
    """input 1,000, cache 500, output 50, reasoning 30, total 1,080: with --usage inclusive the input is
    1,000 and the reasoning on top makes the total; with --usage exclusive the input is 1,500 and nothing
    does, so the reasoning stays inside and the row is not listed (its total is below input + output)."""
    path = tmp_path / "spans.jsonl"
    write_lines(path, [span("s", {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.cache_read.input_tokens": 500,
                                  "gen_ai.usage.output_tokens": 50, "gen_ai.usage.reasoning.output_tokens": 30,
                                  "gen_ai.usage.total_tokens": 1080})])
    for usage, expected in (("inclusive", (1000, 80)), ("exclusive", (1500, 50))):
        assert cli("import", "otel", path, "-o", tmp_path / usage, "--assume-passed", "--usage", usage).code == 0
        call = read_import(tmp_path / usage).outcome("s")
        assert (call["input_tokens"], call["output_tokens"]) == expected
