"""Langfuse observation exports (JSON lines, a JSON list or `{"data": [...]}` from the public API, or CSV).

Mapping:
- a model call is an observation of type GENERATION; spans, events and other types are ignored and
  counted;
- request_id: the observation `id` (`traceId` or a metadata key with --request-id);
- ts: `startTime`; latency_ms: `endTime - startTime`, else `latency`, which Langfuse gives in seconds;
  ttft_ms: `completionStartTime - startTime`, else `timeToFirstToken` (seconds);
- model: `model`;
- tokens from `usageDetails`, whose usage types Langfuse keeps disjoint so that they add up to `total`
  (its own OpenAI integration moves cached tokens out of `input` into `input_cached_tokens`): input is
  the sum of the types whose name contains "input", cached input the cache reads among them
  (`input_cached_tokens`, `cache_read_input_tokens`, ...), cache writes `cache_creation_input_tokens`;
  output the sum of the types containing "output". A `total` equal to input + output without the cache
  types means the cache was counted inside `input` (as some SDK callers send it), and is honoured; older
  exports' `usage.input`/`usage.output` or `promptTokens`/`completionTokens` are read when usageDetails is
  missing;
- cost_usd: `costDetails.total`, else `calculatedTotalCost`, else `totalCost` (USD);
- hard_check_ok: false when `level` is ERROR;
- slice and --column keys: `metadata`, then trace tags ("key:value", when the export has `tags`), then
  the observation's own fields (name, environment, promptName, traceId, ...).
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path
from typing import Any

from simulator.importers.options import ImportOptions
from simulator.importers.rows import (
    NO_CACHE,
    BadRow,
    ImportLog,
    Row,
    Usage,
    as_text,
    collect,
    first_count,
    integer,
    json_field,
    label_row,
    millis_between,
    normalise_usage,
    number,
    records,
    tags_namespace,
    timestamp,
)
from simulator.importers.usage import EXCLUSIVE

CACHE_READ_MARKERS = ("cached", "cache_read")
CACHE_WRITE_MARKERS = ("cache_creation", "cache_write")


def mapping(options: ImportOptions) -> list[tuple[str, str]]:
    return [
        ("request_id", options.request_id_source("key", "id")),
        ("ts", "startTime"),
        ("model", "model"),
        ("input_tokens", "usageDetails: sum of the *input* types"),
        ("cached_input_tokens", "usageDetails: input_cached_tokens / cache_read_input_tokens"),
        ("output_tokens", "usageDetails: sum of the *output* types"),
        ("latency_ms", "endTime - startTime (else latency, seconds)"),
        ("ttft_ms", "completionStartTime - startTime (else timeToFirstToken, seconds)"),
        ("hard_check_ok", "level != ERROR"),
        ("cost_usd", f"costDetails.total (else calculatedTotalCost, totalCost; {options.cost_unit})"),
        ("slice", options.slice_source("key")),
    ]


def _usage(record: dict, options: ImportOptions, log: ImportLog) -> tuple[Usage, int | None]:
    """Input-side usage and output tokens."""
    details = json_field(record.get("usageDetails"), "usageDetails")
    if isinstance(details, dict) and details:
        counts = {str(key): integer(value, f"usageDetails.{key}") for key, value in details.items()}
        counts = {key: value for key, value in counts.items() if value is not None}
        inputs = {key: value for key, value in counts.items() if "input" in key}
        read = sum(value for key, value in inputs.items() if any(m in key for m in CACHE_READ_MARKERS))
        write = sum(value for key, value in inputs.items() if any(m in key for m in CACHE_WRITE_MARKERS))
        output = sum(value for key, value in counts.items() if "output" in key)
        uncached = sum(inputs.values()) - read - write
        has_read = any(any(m in key for m in CACHE_READ_MARKERS) for key in inputs)
        has_write = any(any(m in key for m in CACHE_WRITE_MARKERS) for key in inputs)
        return normalise_usage(uncached, read if has_read else None, write if has_write else None, output=output,
                               total=counts.get("total"), default_style=EXCLUSIVE,
                               forced_style=options.usage_style), output
    legacy = json_field(record.get("usage"), "usage") or {}
    input_tokens = first_count(legacy, ("input",), "usage.input")
    output = first_count(legacy, ("output",), "usage.output")
    if input_tokens is None:
        input_tokens = first_count(record, ("promptTokens", "inputUsage"), "promptTokens")
    if output is None:
        output = first_count(record, ("completionTokens", "outputUsage"), "completionTokens")
    if input_tokens is not None:
        log.aliases["usage / promptTokens (for usageDetails)"] += 1
    return Usage(input_tokens, None, None, NO_CACHE), output


def _seconds(value: Any, name: str) -> float | None:
    seconds = number(value, name)
    return None if seconds is None else seconds * 1000.0


def observation_row(where: str, record: Any, options: ImportOptions, log: ImportLog) -> Row | None:
    if not isinstance(record, dict):
        raise BadRow("not an observation", "expected an object with Langfuse observation fields")
    kind = (as_text(record.get("type")) or "").upper()
    if kind != "GENERATION":
        log.ignore(f"type = {kind or '(none)'}")
        return None
    start = timestamp(record.get("startTime"), "startTime")
    latency = millis_between(start, timestamp(record.get("endTime"), "endTime"), "latency")
    if latency is None and record.get("latency") not in (None, ""):
        latency = _seconds(record.get("latency"), "latency")
        log.default("latency_ms <- latency in seconds x 1000 (no endTime)")
    ttft = millis_between(start, timestamp(record.get("completionStartTime"), "completionStartTime"), "ttft")
    if ttft is None and record.get("timeToFirstToken") not in (None, ""):
        ttft = _seconds(record.get("timeToFirstToken"), "timeToFirstToken")
    usage, output = _usage(record, options, log)
    cost_details = json_field(record.get("costDetails"), "costDetails") or {}
    cost = number(cost_details.get("total") if isinstance(cost_details, dict) else None, "costDetails.total")
    for name in ("calculatedTotalCost", "totalCost"):
        if cost is None:
            cost = number(record.get(name), name)
    metadata = json_field(record.get("metadata"), "metadata")
    tags = json_field(record.get("tags"), "tags")
    row = Row(where=where, request_id=as_text(record.get("id")), ts=start, model=as_text(record.get("model")),
              **usage.fields(), output_tokens=output,
              latency_ms=latency, ttft_ms=ttft, cost_usd=options.cost(cost),
              ok=(as_text(record.get("level")) or "").upper() != "ERROR")
    label_row(row, options, metadata, tags_namespace(tags), record)
    return row


def read(paths: list[Path], options: ImportOptions, log: ImportLog) -> list[Row]:
    rows = collect(chain.from_iterable(records(path, log) for path in paths),
                   lambda where, record: observation_row(where, record, options, log), log)
    return rows
