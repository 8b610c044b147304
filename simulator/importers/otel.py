"""OpenTelemetry GenAI spans, exported as JSON lines.

A line may be an OTLP/JSON export request (`{"resourceSpans": [...]}`, as the collector's file exporter
writes), a single OTLP/JSON span, or a span as the Python SDK's console exporter prints it (attributes as
a plain object, ISO times, `context.span_id`).

Mapping (GenAI semantic conventions; older names still emitted by instrumentations are read too and
counted in the report):
- a model call is a span whose `gen_ai.operation.name` is chat, text_completion or generate_content, or
  (older instrumentations) a span without one that has `gen_ai.request.model`; embeddings, tool, agent
  and other spans are ignored and counted (agent spans repeat their children's usage);
- request_id: the span id, or the attribute named by --request-id (`--request-id trace_id` groups the
  shadow calls of one trace into one request); ts: the span's start;
  latency_ms: end minus start (OTLP gives nanoseconds);
- model: `gen_ai.request.model` (`gen_ai.response.model` with --model-from response, each falling back
  on the other);
- input tokens: `gen_ai.usage.input_tokens` (older: `gen_ai.usage.prompt_tokens`); cache reads
  `gen_ai.usage.cache_read.input_tokens`, cache writes `gen_ai.usage.cache_creation.input_tokens`, each
  also under the names exporters write (CACHE_READ, CACHE_WRITE: Sentry's `..input_tokens.cached` /
  `..input_tokens.cache_write` and its deprecated `..cache_read_input_tokens` /
  `..cache_creation_input_tokens`, pydantic-ai's `gen_ai.usage.details.*`, Mastra's former
  `..cached_input_tokens` / `..cache_write_tokens`). The conventions say cache tokens are included in
  input_tokens; an instrumentation that copies Anthropic's usage as is reports them on top, which is
  recognised from the total or from cache > input, or forced with --usage;
- output tokens: `gen_ai.usage.output_tokens` (older: `gen_ai.usage.completion_tokens`), reasoning
  included; reasoning `gen_ai.usage.reasoning.output_tokens` (REASONING: Sentry's, OpenLLMetry's and
  pydantic-ai's names). Reasoning counted on top of the output (the total says input + output +
  reasoning, the input taken with or without the cache tokens, or reasoning > output, or Google's
  thoughts count, which Gemini never includes) is added to output_tokens; a total still above input +
  output is listed in the report (folder.flag_unexplained_totals);
- every other `gen_ai.usage.*` attribute is listed in the report as not read, so a rename shows up;
- hard_check_ok: false when the span status is ERROR, `error.type` is set, or a finish reason is
  length/max_tokens/content_filter. Error spans are kept as failed calls with their latency (a span
  without usage counts 0 tokens, since a rejected call bills none), error_type from `error.type`, the
  status message and the exception events;
- service_tier: `openai.response.service_tier` (before semantic conventions v1.37:
  `gen_ai.openai.response.service_tier`), else the tier `openai.request.service_tier` (or
  `gen_ai.openai.request.service_tier`) asked for, unless that is `auto` or `default`; OpenAI's words are
  mapped as simulator.importers.rows.service_tier says;
- cost_usd: the attribute named by --cost-attribute (none in the conventions); ttft_ms: not in the span
  conventions, left null;
- slice and --column keys: span attributes, then resource attributes, then trace_id/span_id/name.
A field of the wrong kind (a status, context or attribute value of another JSON type, an intValue that is
no integer) drops its span, and a malformed export request drops the part of its line it spoils, each
counted with the reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simulator.importers.options import ImportOptions
from simulator.importers.rows import (
    BadRow,
    ImportLog,
    Row,
    as_text,
    collect,
    epoch_nanos,
    error_type,
    first_count,
    json_kind,
    json_lines,
    label_row,
    list_field,
    millis_between,
    normalise_usage,
    number,
    object_field,
    reasoning_on_top,
    service_tier,
    timestamp,
)
from simulator.importers.usage import EXCLUSIVE, INCLUSIVE

MODEL_OPERATIONS = {"chat", "text_completion", "generate_content"}
TRUNCATED = {"length", "max_tokens", "content_filter"}
INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.input_tokens.cached",
              "gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.details.cache_read_tokens",
              "gen_ai.usage.cached_input_tokens")
CACHE_WRITE = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.input_tokens.cache_write",
               "gen_ai.usage.cache_creation_input_tokens", "gen_ai.usage.details.cache_write_tokens",
               "gen_ai.usage.cache_write_tokens", "gen_ai.usage.cache_write_input_tokens")
REASONING = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.output_tokens.reasoning",
             "gen_ai.usage.reasoning_tokens", "gen_ai.usage.details.reasoning_tokens")
THOUGHTS = ("gen_ai.usage.thoughts_token_count", "gen_ai.usage.details.thoughts_tokens")  # never in the output
TOTAL = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens")
# The OpenAI service tier (semantic conventions' `openai.*` registry; before v1.37 `gen_ai.openai.*`).
RESPONSE_TIER = ("openai.response.service_tier", "gen_ai.openai.response.service_tier")
REQUEST_TIER = ("openai.request.service_tier", "gen_ai.openai.request.service_tier")
READ_USAGE = {*INPUT, *OUTPUT, *CACHE_READ, *CACHE_WRITE, *REASONING, *THOUGHTS, *TOTAL}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def mapping(options: ImportOptions) -> list[tuple[str, str]]:
    model = ("gen_ai.request.model (else gen_ai.response.model)" if options.model_from == "request"
             else "gen_ai.response.model (else gen_ai.request.model)")
    return [
        ("request_id", options.request_id_source("attribute", "span id")),
        ("ts", "span start time"),
        ("model", model),
        ("input_tokens", "gen_ai.usage.input_tokens, plus cache tokens where reported on top"),
        ("cached_input_tokens", "gen_ai.usage.cache_read.input_tokens"),
        ("output_tokens", "gen_ai.usage.output_tokens"),
        ("latency_ms", "span end - start"),
        ("ttft_ms", "null (not in the GenAI span conventions)"),
        ("hard_check_ok", "span status not ERROR, no error.type, finish reason not length/content_filter"),
        ("cost_usd", f"attribute {options.cost_attribute} ({options.cost_unit})" if options.cost_attribute else "null"),
        ("slice", options.slice_source("attribute")),
    ]


def any_value(value: Any) -> Any:
    """An OTLP/JSON AnyValue as a plain value (intValue arrives as a string to keep int64 precision);
    BadRow for an intValue that is no integer or an array/kvlist that is no object."""
    if not isinstance(value, dict):
        return value
    for kind in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            raise BadRow("bad attribute value", f"intValue={value['intValue']!r} is not an integer") from None
    if "arrayValue" in value:
        return [any_value(item) for item in list_field(object_field(value["arrayValue"], "arrayValue").get("values"),
                                                         "arrayValue.values")]
    if "kvlistValue" in value:
        return attributes(object_field(value["kvlistValue"], "kvlistValue").get("values"))
    return None


def attributes(raw: Any) -> dict[str, Any]:
    """Attributes as a plain object: the SDK's own, or OTLP/JSON's list of {key, value} (entries without a
    text key are skipped: there is nothing to look them up by)."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, list):
        return {item["key"]: any_value(item.get("value")) for item in raw
                if isinstance(item, dict) and isinstance(item.get("key"), str)}
    return {}


def spans(paths: list[Path], log: ImportLog) -> Iterator[tuple[str, tuple[Any, Any]]]:
    """(where, (span, its resource's raw attributes)) for every span of every line; the attributes are
    parsed with the span, so that a bad one drops that span only."""
    for path in paths:
        for where, document in json_lines(path, log):
            if isinstance(document, dict) and "resourceSpans" in document:
                yield from _export_spans(where, document, log)
            elif isinstance(document, dict):
                resource = document.get("resource")
                yield where, (document, resource.get("attributes") if isinstance(resource, dict) else None)
            else:
                yield where, (None, None)


def _export_spans(where: str, document: dict, log: ImportLog) -> Iterator[tuple[str, tuple[Any, Any]]]:
    """The spans of one OTLP export request. A level that is not the list or object OTLP/JSON has there
    drops what it holds, counted once with its path, and the rest of the line is still read."""
    def malformed(path: str, value: Any, expected: str) -> None:
        log.rows_read += 1
        log.drop("bad OTLP export request", f"{where}, {path}", f"{path} is {json_kind(value)}, not {expected}")

    groups = document.get("resourceSpans") or []
    if not isinstance(groups, list):
        malformed("resourceSpans", groups, "a list")
        groups = []
    for number_, group in enumerate(groups):
        path = f"resourceSpans[{number_}]"
        if not isinstance(group, dict):
            malformed(path, group, "an object")
            continue
        resource = group.get("resource")
        raw_resource = resource.get("attributes") if isinstance(resource, dict) else None
        scopes = group.get("scopeSpans") or group.get("instrumentationLibrarySpans") or []
        if not isinstance(scopes, list):
            malformed(f"{path}.scopeSpans", scopes, "a list")
            continue
        for scope_number, scope in enumerate(scopes):
            if not isinstance(scope, dict):
                malformed(f"{path}.scopeSpans[{scope_number}]", scope, "an object")
                continue
            scope_spans = scope.get("spans") or []
            if not isinstance(scope_spans, list):
                malformed(f"{path}.scopeSpans[{scope_number}].spans", scope_spans, "a list")
                continue
            for span in scope_spans:
                name = (span.get("spanId") or span.get("name")) if isinstance(span, dict) else None
                yield f"{where}, span {as_text(name) or '?'}", (span, raw_resource)


def _time(span: dict, nano_key: str, iso_key: str) -> tuple[dt.datetime | None, int | None]:
    nanos = epoch_nanos(span.get(nano_key), nano_key)
    if nanos is not None:
        return EPOCH + dt.timedelta(microseconds=nanos // 1000), nanos
    return timestamp(span.get(iso_key), iso_key), None


def _failure(span: dict, attrs: dict) -> str | None:
    """The error type of a failed or truncated call, None for a good answer."""
    status = object_field(span.get("status"), "status")
    code = as_text(status.get("code", status.get("status_code")))
    reasons = attrs.get("gen_ai.response.finish_reasons") or []
    truncated = {as_text(reason) for reason in (reasons if isinstance(reasons, list) else [reasons])} & TRUNCATED
    if code in ("2", "ERROR", "STATUS_CODE_ERROR") or attrs.get("error.type"):
        events = [attributes(event.get("attributes")) for event in list_field(span.get("events"), "events")
                  if isinstance(event, dict)]
        return error_type(attrs.get("error.type"), attrs.get("http.response.status_code"),
                          status.get("message", status.get("description")),
                          *(event.get(key) for event in events for key in ("exception.type", "exception.message")))
    return error_type(*sorted(truncated)) if truncated else None


def _reasoning(attrs: dict, output: int | None, total: int | None, inputs: tuple[int, ...],
               log: ImportLog) -> tuple[int | None, int | None]:
    """(output tokens with reasoning in, reasoning tokens), telling reasoning inside the output from on top.

    `inputs`: what the input may be once its cache tokens are counted the way the span counted them (the
    reported input, and the reported input plus the cache where it could have come on top). Reasoning is
    on top when some reading of the input with output + reasoning makes the total and no reading with the
    output alone does: without the cache tried, a span reporting both on top (input 100, cache reads 1,000,
    output 50, reasoning 30, total 1,180) would lose its 30 reasoning tokens.
    """
    thoughts = first_count(attrs, THOUGHTS, "thoughts tokens")
    if thoughts is not None:
        return (None if output is None else output + thoughts), thoughts
    reasoning = first_count(attrs, REASONING, "reasoning tokens", log)
    if reasoning is None or output is None:
        return output, reasoning
    return (output + reasoning if reasoning_on_top(output, reasoning, total, inputs) else output), reasoning


def _input_readings(reported: int | None, cache: int, forced_style: str) -> tuple[int, ...]:
    """The input tokens a span may mean, its cache tokens counted inside or on top of the reported input:
    on top only when the cache exceeds the input (it cannot be inside it), both when either could hold, one
    when --usage forces a reading (rows.normalise_usage decides which for the row itself)."""
    if reported is None:
        return ()
    if forced_style == INCLUSIVE or cache == 0:
        return (reported,)
    if forced_style == EXCLUSIVE or cache > reported:
        return (reported + cache,)
    return (reported, reported + cache)


def _service_tier(attrs: dict) -> str | None:
    """The tier the call ran on: the response's tier (RESPONSE_TIER), else an explicit tier the request
    asked for (REQUEST_TIER; `auto` and `default` leave the choice to the provider, so they say nothing)."""
    for key in RESPONSE_TIER:
        if attrs.get(key) is not None:
            return service_tier(attrs[key])
    for key in REQUEST_TIER:
        asked = (as_text(attrs.get(key)) or "").strip().lower()
        if asked and asked not in ("auto", "default"):
            return service_tier(asked)
    return None


def span_row(where: str, span: Any, raw_resource: Any, options: ImportOptions, log: ImportLog) -> Row | None:
    if not isinstance(span, dict):
        raise BadRow("not a span", "a line must hold an OTLP export request or one span object")
    attrs = attributes(span.get("attributes"))
    operation = attrs.get("gen_ai.operation.name")
    if operation is None and "gen_ai.request.model" not in attrs:
        log.ignore("spans without gen_ai attributes")
        return None
    operation = None if operation is None else as_text(operation)
    if operation is not None and operation not in MODEL_OPERATIONS:
        log.ignore(f"gen_ai.operation.name = {operation}")
        return None
    resource = attributes(raw_resource)
    context = object_field(span.get("context"), "context")
    ids = {"span_id": span.get("spanId") or context.get("span_id"),
           "trace_id": span.get("traceId") or context.get("trace_id"), "name": span.get("name")}
    start, start_nanos = _time(span, "startTimeUnixNano", "start_time")
    end, end_nanos = _time(span, "endTimeUnixNano", "end_time")
    if start_nanos is not None and end_nanos is not None:
        if end_nanos < start_nanos:
            raise BadRow("bad latency", "the span ends before it starts")
        latency = (end_nanos - start_nanos) / 1e6
    else:
        latency = millis_between(start, end, "latency")
    names = ("gen_ai.request.model", "gen_ai.response.model")
    first, second = names if options.model_from == "request" else names[::-1]
    model = as_text(attrs.get(first))
    if model is None and attrs.get(second) is not None:
        model = as_text(attrs[second])
        log.default(f"model <- {second} (no {first})")
    failure = _failure(span, attrs)
    unread = sorted(key for key in attrs if key.startswith("gen_ai.usage.") and key not in READ_USAGE)
    for key in unread:
        log.default(f"not read: {key}")
    reported = first_count(attrs, INPUT, "input tokens", log)
    output = first_count(attrs, OUTPUT, "output tokens", log)
    if failure is not None and reported is None and output is None:
        reported = output = 0  # a rejected call (rate limit, timeout) bills no tokens
        log.default("tokens -> 0 (failed span without usage)")
    total = first_count(attrs, TOTAL, "total tokens", log)
    cache_read = first_count(attrs, CACHE_READ, "cache read tokens", log)
    cache_write = first_count(attrs, CACHE_WRITE, "cache write tokens", log)
    cache = (cache_read or 0) + (cache_write or 0)
    output, reasoning = _reasoning(attrs, output, total, _input_readings(reported, cache, options.usage_style), log)
    usage = normalise_usage(reported, cache_read, cache_write, output=output, total=total,
                            default_style=INCLUSIVE, forced_style=options.usage_style)
    cost = number(attrs.get(options.cost_attribute), "cost") if options.cost_attribute else None
    row = Row(where=where, request_id=as_text(ids["span_id"]), ts=start, model=model, **usage.fields(),
              output_tokens=output, reasoning_tokens=reasoning, total_tokens=total, latency_ms=latency,
              service_tier=_service_tier(attrs),
              cost_usd=options.cost(cost), ok=failure is None, error_type=failure)
    label_row(row, options, attrs, resource, ids)
    return row


def read(paths: list[Path], options: ImportOptions, log: ImportLog) -> list[Row]:
    return collect(spans(paths, log), lambda where, item: span_row(where, *item, options, log), log)
