"""LiteLLM proxy spend logs: an export of the `LiteLLM_SpendLogs` table as CSV, JSON or JSON lines.

JSON may be a list of rows or the `/spend/logs` answer (`{"data": [...]}`). In a CSV export `metadata`
and `request_tags` are JSON strings, and times are the table's UTC timestamps without a zone.

Mapping:
- request_id: `request_id`, or the key named by --request-id. `request_id` is the table's primary key, one
  per call, so shadow calls of one request become one request only with --request-id KEY naming a
  metadata key they share; when no request has two models the report says so;
- ts: `startTime`; latency_ms: `endTime - startTime` (else `request_duration_ms`); ttft_ms:
  `completionStartTime - startTime` for streamed calls; LiteLLM sets completionStartTime = endTime when
  a call was not streamed, and then no time to first token was measured (null). A completionStartTime
  before startTime (clock skew between the two stamps) leaves ttft_ms null, counted, and keeps the call;
- model: `model_group`, the public model name the client asked for (`model`, the deployment's model,
  with --model-from response, or when model_group is empty);
- input tokens: `prompt_tokens`, which LiteLLM reports in OpenAI's convention (cache reads inside) for
  every provider; cache reads from `metadata.usage_object` (`prompt_tokens_details.cached_tokens` and
  `cache_read_input_tokens`: the non-zero one, since streamed Anthropic rows carry cached_tokens 0 beside
  the real count) or, in older exports, `metadata.additional_usage_values`; cache writes from
  `cache_creation_input_tokens` there, the 1-hour part from `cache_creation_token_details`
  (`ephemeral_1h_input_tokens`). Older LiteLLM versions reported Anthropic's prompt_tokens without the
  cache: recognised from `total_tokens` or cache > input, or forced with --usage exclusive;
- output tokens: `completion_tokens` (reasoning included, OpenAI's convention), reasoning from
  `completion_tokens_details.reasoning_tokens`. Some LiteLLM versions reported reasoning on top of
  completion_tokens (Gemini's thoughts before LiteLLM counted them in; LiteLLM issue #10691 for other
  thinking models): reasoning above completion_tokens, or a `total_tokens` equal to prompt + completion +
  reasoning, means on top, and it is added to output_tokens and counted (the rule the OTel importer uses);
  cost_usd: `spend` (USD; --cost-unit cents for a re-scaled export); service_tier: the usage object's
  `service_tier`;
- hard_check_ok: false when `status` (or `metadata.status`) is failure or `metadata.error_information`
  is set; error_type from the error information's class, code and message;
- ignored and counted: LiteLLM response-cache hits (`cache_hit` true: no model was called) and calls
  that are not completions (embeddings, images, audio, ...); early exports write call types with a
  `litellm.` prefix (`litellm.completion`), read as the bare type;
- slice and --column keys: `request_tags` ("key:value" tags), then `metadata.spend_logs_metadata` (the
  metadata a client sends), then `metadata`, then the row's own columns (end_user, team_id, ...).
"""

from __future__ import annotations

import datetime as dt
from itertools import chain
from pathlib import Path
from typing import Any

from simulator.importers.options import ImportOptions
from simulator.importers.rows import (
    BadRow,
    ImportLog,
    Row,
    as_text,
    boolean,
    collect,
    dig,
    error_type,
    first_count,
    json_field,
    label_row,
    millis_between,
    normalise_usage,
    number,
    reasoning_on_top,
    records,
    service_tier,
    tags_namespace,
    timestamp,
    ttft_between,
)
from simulator.importers.usage import INCLUSIVE

REASONING = ("completion_tokens_details.reasoning_tokens",)
COMPLETION_CALLS = {"completion", "acompletion", "text_completion", "atext_completion", "responses", "aresponses",
                    "anthropic_messages", "generate_content", "agenerate_content"}


def mapping(options: ImportOptions) -> list[tuple[str, str]]:
    return [
        ("request_id", options.request_id_source("key", "request_id (LiteLLM's primary key: one per call; shadow calls "
                                             "need --request-id KEY from the metadata)")),
        ("ts", "startTime"),
        ("model", "model_group (else model)" if options.model_from == "request" else "model"),
        ("input_tokens", "prompt_tokens, plus cache tokens where reported on top"),
        ("cached_input_tokens", "metadata.usage_object.prompt_tokens_details.cached_tokens"),
        ("output_tokens", "completion_tokens, plus reasoning where reported on top"),
        ("latency_ms", "endTime - startTime"),
        ("ttft_ms", "completionStartTime - startTime (streamed calls only)"),
        ("hard_check_ok", "status != failure and no metadata.error_information"),
        ("cost_usd", f"spend ({options.cost_unit})"),
        ("slice", options.slice_source("key")),
    ]


CACHE_READ = ("prompt_tokens_details.cached_tokens", "cache_read_input_tokens")
CACHE_WRITE_1H = ("cache_creation_token_details.ephemeral_1h_input_tokens",
                  "prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens",
                  "cache_creation.ephemeral_1h_input_tokens")


def _counted(sources: tuple[Any, ...], names: tuple[str, ...], label: str) -> int | None:
    """The first non-zero count of `names` across the sources, else 0 when one says 0, else None.

    Two fields for one count can disagree: a streamed Anthropic row has cached_tokens 0 next to
    cache_read_input_tokens 2455 (LiteLLM issue #11789), so a zero does not end the search.
    """
    counts = [count for source in sources for name in names
              if (count := first_count(source, (name,), label)) is not None]
    return next((count for count in counts if count), counts[0] if counts else None)


def _cache_tokens(usage: Any, extra: Any) -> tuple[int | None, int | None, int | None]:
    """Cache reads, 5-minute writes and 1-hour writes (Anthropic's cache_creation_input_tokens holds both)."""
    read = _counted((usage, extra), CACHE_READ, "cache read tokens")
    write = _counted((usage, extra), ("cache_creation_input_tokens",), "cache write tokens")
    write_1h = _counted((usage, extra), CACHE_WRITE_1H, "1-hour cache write tokens")
    if write_1h:
        write = max((write or 0) - write_1h, 0)
    return read, write, write_1h


def _reasoning(output: int | None, reasoning: int | None, total: int | None, prompt: int | None,
               log: ImportLog) -> int | None:
    """Output tokens with reasoning in: completion_tokens, plus the reasoning when it was reported on top.

    LiteLLM follows OpenAI (reasoning inside completion_tokens), but a reasoning count above the completion
    count cannot be inside it, and a total of prompt + completion + reasoning counted it again; either way
    it is added (as simulator.importers.otel._reasoning decides for spans) and counted in the report.
    """
    if reasoning is None or output is None:
        return output
    if not reasoning_on_top(output, reasoning, total, () if prompt is None else (prompt,)):
        return output
    log.default("output_tokens <- completion_tokens + reasoning_tokens (reasoning reported on top)")
    return output + reasoning


def _ttft(start: dt.datetime | None, first_token: dt.datetime | None, end: dt.datetime | None,
          log: ImportLog) -> float | None:
    """Milliseconds from the start to the first token of a streamed call (None when not streamed: LiteLLM
    stamps completionStartTime at the end then), by rows.ttft_between."""
    if first_token is None or first_token == end:
        return None
    return ttft_between(start, first_token, log)


def spend_row(where: str, record: Any, options: ImportOptions, log: ImportLog) -> Row | None:
    if not isinstance(record, dict):
        raise BadRow("not a spend log row", "expected an object with the LiteLLM_SpendLogs columns")
    call_type = (as_text(record.get("call_type")) or "completion").lower().removeprefix("litellm.")
    if call_type not in COMPLETION_CALLS:
        log.ignore(f"call_type = {call_type}")
        return None
    if boolean(record.get("cache_hit"), "cache_hit"):
        log.ignore("LiteLLM response-cache hits (no model call)")
        return None
    metadata = json_field(record.get("metadata"), "metadata") or {}
    tags = json_field(record.get("request_tags"), "request_tags") or []
    start = timestamp(record.get("startTime"), "startTime")
    end = timestamp(record.get("endTime"), "endTime")
    latency = millis_between(start, end, "latency")
    if latency is None:
        latency = number(record.get("request_duration_ms"), "request_duration_ms")
    first_token = timestamp(record.get("completionStartTime"), "completionStartTime")
    ttft = _ttft(start, first_token, end, log)

    model = as_text(record.get("model"))
    if options.model_from == "request":
        group = as_text(record.get("model_group"))
        if group is None and model is not None:
            log.default("model <- model (no model_group)")
        model = group or model
    usage_object = dig(metadata, "usage_object")
    prompt = first_count(record, ("prompt_tokens",), "prompt_tokens")
    total = first_count(record, ("total_tokens",), "total_tokens")
    reasoning = _counted((usage_object,), REASONING, "reasoning tokens")
    output = _reasoning(first_count(record, ("completion_tokens",), "completion_tokens"), reasoning, total, prompt,
                        log)
    cache_read, cache_write, cache_write_1h = _cache_tokens(usage_object, dig(metadata, "additional_usage_values"))
    usage = normalise_usage(prompt, cache_read, cache_write, output=output, total=total, default_style=INCLUSIVE,
                            forced_style=options.usage_style, cache_write_1h=cache_write_1h)
    status = (as_text(record.get("status")) or as_text(dig(metadata, "status")) or "success").lower()
    error = dig(metadata, "error_information")
    ok = status != "failure" and not error
    row = Row(where=where, request_id=as_text(record.get("request_id")), ts=start, model=model, **usage.fields(),
              output_tokens=output, total_tokens=total, reasoning_tokens=reasoning,
              latency_ms=latency, ttft_ms=ttft, service_tier=service_tier(dig(usage_object, "service_tier")),
              cost_usd=options.cost(number(record.get("spend"), "spend")), ok=ok,
              error_type=None if ok else error_type(*_error_fields(error)))
    label_row(row, options, tags_namespace(tags), dig(metadata, "spend_logs_metadata"), metadata, record)
    return row


def _error_fields(error: Any) -> list[Any]:
    if isinstance(error, dict):
        return [error.get(key) for key in ("error_class", "error_code", "error_message")]
    return [error]


def read(paths: list[Path], options: ImportOptions, log: ImportLog) -> list[Row]:
    rows = collect(chain.from_iterable(records(path, log) for path in paths),
                   lambda where, record: spend_row(where, record, options, log), log)
    return rows
