"""OpenAI Batch API output files (JSON lines, one `{id, custom_id, response, error}` per request).

Mapping:
- request_id: `custom_id` (the id you gave the request); --custom-id-pattern REGEX with named groups
  turns parts of it into keys for --slice and --column (e.g. `(?P<feature>[a-z_]+)-\\d+`);
- ts: `response.body.created` (Chat Completions, epoch seconds) or `created_at` (Responses API);
- model: `response.body.model`, the model snapshot that answered (the output does not repeat the
  requested name);
- input tokens: `usage.prompt_tokens` (Responses: `usage.input_tokens`), which include the cached
  tokens; cached input: `usage.prompt_tokens_details.cached_tokens` (`input_tokens_details.cached_tokens`);
- output tokens: `usage.completion_tokens` (`usage.output_tokens`), reasoning from
  `completion_tokens_details.reasoning_tokens` (`output_tokens_details.reasoning_tokens`);
- service_tier: `batch` for every call (the prices check then compares them with the sheet's batch prices);
- latency_ms: a batch runs asynchronously within its completion window and records no per-request
  latency: --assume-latency-ms N is required, and `latency_source` says `assumed`;
- cost_usd: null (the output has no cost; price the batch with its batch prices in the price sheet);
- hard_check_ok: false for a finish reason of length or content_filter (Responses: status incomplete);
- requests that failed without a response (`error` set, or a non-200 status) carry no model or usage:
  dropped and counted under the error's type (else its code) and error_type, the message in the example.
A field of the wrong kind (a usage or choices that is no object or list) drops its line, counted with the
reason.
"""

from __future__ import annotations

import re
from itertools import chain
from pathlib import Path
from typing import Any

from simulator.core.errors import RoutesimError
from simulator.importers.options import ImportOptions
from simulator.importers.rows import (
    BadRow,
    error_type,
    ImportLog,
    Row,
    as_text,
    collect,
    dig,
    first_count,
    json_lines,
    label_row,
    list_field,
    normalise_usage,
    object_field,
    timestamp,
)
from simulator.importers.usage import INCLUSIVE

TRUNCATED = {"length", "content_filter"}


def mapping(options: ImportOptions) -> list[tuple[str, str]]:
    require_latency(options)
    return [
        ("request_id", options.request_id_source("key", "custom_id")),
        ("ts", "response.body.created"),
        ("model", "response.body.model"),
        ("input_tokens", "usage.prompt_tokens (cached tokens included)"),
        ("cached_input_tokens", "usage.prompt_tokens_details.cached_tokens"),
        ("output_tokens", "usage.completion_tokens"),
        ("latency_ms", f"{options.assume_latency_ms:g} ms for every request (--assume-latency-ms)"),
        ("ttft_ms", "null"),
        ("hard_check_ok", "finish reason not length/content_filter"),
        ("cost_usd", "null (price batch calls with the sheet's batch prices)"),
        ("slice", options.slice_source("key")),
    ]


def require_latency(options: ImportOptions) -> None:
    if options.assume_latency_ms is None:
        raise RoutesimError(
            "OpenAI Batch output records no per-request latency, and the data contract needs latency_ms",
            where="routesim import openai-batch: --assume-latency-ms (column latency_ms)",
            fix="add --assume-latency-ms N (e.g. the median latency of the same model online); it is kept as "
                "latency_source = assumed and shown in the report")
    if options.assume_latency_ms < 0:
        raise RoutesimError(f"--assume-latency-ms must be >= 0, not {options.assume_latency_ms:g}",
                            where="routesim import openai-batch: --assume-latency-ms",
                            fix="give the latency to record for every request, in milliseconds")


def _finish_reasons(body: dict) -> set[str | None]:
    """The choices' finish reasons (Chat Completions) and the reason a response stopped (Responses API)."""
    reasons = {as_text(choice.get("finish_reason")) for choice in list_field(body.get("choices"), "choices")
               if isinstance(choice, dict)}
    details = body.get("incomplete_details")
    return reasons | ({as_text(details.get("reason"))} if isinstance(details, dict) else set())


def _truncated(body: dict) -> bool:
    return bool(_finish_reasons(body) & TRUNCATED) or body.get("status") == "incomplete"


def batch_row(where: str, line: Any, options: ImportOptions, pattern: re.Pattern | None, log: ImportLog) -> Row | None:
    if not isinstance(line, dict) or "custom_id" not in line:
        raise BadRow("not a batch output line", "expected an object with custom_id, response and error")
    response = object_field(line.get("response"), "response")
    body = object_field(response.get("body"), "response.body")  # {} when the request got no answer
    status = response.get("status_code")
    if line.get("error") or not body or as_text(status) not in (None, "200"):
        error = line.get("error") or body.get("error") or {}
        code = error.get("code") if isinstance(error, dict) else error
        kind = (error.get("type") if isinstance(error, dict) else None) or code or f"status {status}"
        message = error.get("message") if isinstance(error, dict) else None
        raise BadRow(f"request failed in the batch: {kind} ({error_type(kind, code, status, message)})",
                     f"custom_id {line.get('custom_id')}: status {status}, error {code}"
                     + (f": {str(message)[:200]}" if message else ""))
    if body.get("object") not in (None, "chat.completion", "response", "text_completion"):
        log.ignore(f"object = {body.get('object')}")
        return None
    usage = object_field(body.get("usage"), "usage")
    output = first_count(usage, ("completion_tokens", "output_tokens"), "output tokens")
    reasoning = first_count(usage, ("completion_tokens_details.reasoning_tokens",
                                    "output_tokens_details.reasoning_tokens"), "reasoning tokens")
    usage = normalise_usage(
        first_count(usage, ("prompt_tokens", "input_tokens"), "input tokens"),
        first_count(usage, ("prompt_tokens_details.cached_tokens", "input_tokens_details.cached_tokens"),
                    "cached tokens"),
        None, output=output, total=first_count(usage, ("total_tokens",), "total tokens"), default_style=INCLUSIVE,
        forced_style=options.usage_style)
    custom_id = as_text(line.get("custom_id"))
    match = pattern.fullmatch(custom_id) if pattern and custom_id else None
    row = Row(where=where, request_id=custom_id,
              ts=timestamp(body.get("created", body.get("created_at")), "created"),
              model=as_text(body.get("model")), **usage.fields(), output_tokens=output, reasoning_tokens=reasoning,
              latency_ms=options.assume_latency_ms, service_tier="batch",
              ok=not _truncated(body),
              error_type=error_type(*sorted(map(str, _finish_reasons(body)))) if _truncated(body) else None,
              latency_source="assumed")
    own = {"custom_id": custom_id, "batch_request_id": line.get("id"), "service_tier": body.get("service_tier"),
           "system_fingerprint": body.get("system_fingerprint")}
    label_row(row, options, match.groupdict() if match else {}, own, dig(body, "metadata"))
    return row


def read(paths: list[Path], options: ImportOptions, log: ImportLog) -> list[Row]:
    require_latency(options)
    try:
        pattern = re.compile(options.custom_id_pattern) if options.custom_id_pattern else None
    except re.error as error:
        raise RoutesimError(f"--custom-id-pattern is not a regular expression: {error}",
                            where=f"routesim import openai-batch: --custom-id-pattern {options.custom_id_pattern}",
                            fix="give a Python regular expression with named groups, e.g. "
                                "'(?P<feature>[a-z_]+)-\\d+'") from None
    rows = collect(chain.from_iterable(json_lines(path, log) for path in paths),
                   lambda where, line: batch_row(where, line, options, pattern, log), log)
    if rows:
        log.note(f"latency_ms = {options.assume_latency_ms:g} for every call (--assume-latency-ms): "
                 "batch output has no latency; latency_source = 'assumed'")
    return rows
