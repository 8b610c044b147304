"""Langfuse observation exports: the public API's camelCase objects (JSON lines, a JSON list or
`{"data": [...]}`, or CSV) and the scheduled blob-storage export's snake_case rows (`observations/`,
`observations_v2/`; JSON lines or Parquet, its default), with the export's `scores/` files as grades.

Every field is read under its API name or its export name (`startTime` / `start_time`, `model` /
`provided_model_name`, `usageDetails` / `usage_details`, `costDetails` / `cost_details`, `totalCost` /
`total_cost`, `completionStartTime` / `completion_start_time`); an export whose optional field groups were
deselected simply lacks some of them, and what is missing is defaulted or dropped and counted.

Mapping:
- a model call is an observation of type GENERATION; spans, events and other types are ignored and
  counted;
- request_id: the observation `id` (`traceId` or a metadata key with --request-id);
- ts: `startTime`; latency_ms: `endTime - startTime`, else (API objects) `latency`, which the API gives
  in seconds; ttft_ms: `completionStartTime - startTime`, else (API objects) `timeToFirstToken`
  (seconds); a first token before the start (the SDK stamps the two on different clocks) leaves ttft_ms
  null, counted, and keeps the call. The blob export's `latency` and `time_to_first_token` are
  milliseconds or seconds depending on when the integration was created, which the files do not record:
  they are only compared with `end_time - start_time` (a row agreeing with neither unit is counted), never
  used alone;
- model: `model` (the export: `provided_model_name`);
- tokens from `usageDetails`, whose usage types Langfuse keeps disjoint so that they add up to `total`
  (its own OpenAI integration moves cached tokens out of `input` into `input_cached_tokens`): input is
  the sum of the types whose name contains "input", cached input the cache reads among them
  (`input_cached_tokens`, `cache_read_input_tokens`, ...), cache writes `cache_creation_input_tokens`;
  output the sum of the types containing "output", reasoning the output types naming it
  (`output_reasoning_tokens`, which Langfuse's OpenAI integration moves out of `output`). A `total` equal
  to input + output without the cache types means the cache was counted inside `input` (as some SDK
  callers send it), and one equal to input + output without the reasoning means the reasoning was counted
  inside `output`; both are honoured. Older exports' `usage.input`/`usage.output` or
  `promptTokens`/`completionTokens` are read when usageDetails is missing;
- cost_usd: `costDetails.total`, else `calculatedTotalCost`, else `totalCost` (USD);
- hard_check_ok: false when `level` is ERROR; error_type from `statusMessage` / `status_message`. A failed
  generation without usage (a rejected call bills none) counts 0 tokens, counted in the report, so that
  replays see every failure;
- grades (`scores/` export rows, told apart by their `source` and `value`, in the same import): each score
  grades the generation named by its `observation_id`, else the one generation of its `trace_id`;
  `source` ANNOTATION -> grader `human`, EVAL -> `llm_judge`, API -> `deterministic`; a NUMERIC or
  BOOLEAN value in 0..1 is the score, passed when it reaches --pass-threshold; --scorer picks the score
  name when several are exported;
- slice and --column keys: `metadata`, then trace tags ("key:value", when the export has `tags`), then
  the observation's own fields (name, environment, promptName, traceId, ...).
"""

from __future__ import annotations

import datetime as dt
from itertools import chain
from pathlib import Path
from typing import Any

from simulator.core.errors import RoutesimError
from simulator.importers.options import ImportOptions
from simulator.importers.rows import (
    NO_CACHE,
    TTFT_BEFORE_START,
    BadRow,
    ImportLog,
    Row,
    Usage,
    as_text,
    collect,
    error_type,
    first_count,
    integer,
    json_field,
    label_row,
    millis_between,
    normalise_usage,
    number,
    reasoning_on_top,
    records,
    tags_namespace,
    timestamp,
    ttft_between,
    unit_score,
)
from simulator.importers.usage import EXCLUSIVE

CACHE_READ_MARKERS = ("cached", "cache_read")
CACHE_WRITE_MARKERS = ("cache_creation", "cache_write")
REASONING_MARKER = "reasoning"


def mapping(options: ImportOptions) -> list[tuple[str, str]]:
    return [
        ("request_id", options.request_id_source("key", "id")),
        ("ts", "startTime / start_time"),
        ("model", "model / provided_model_name"),
        ("input_tokens", "usageDetails / usage_details: sum of the *input* types"),
        ("cached_input_tokens", "usageDetails: input_cached_tokens / cache_read_input_tokens"),
        ("output_tokens", "usageDetails: sum of the *output* types"),
        ("reasoning_output_tokens", "usageDetails: the *output* types naming reasoning"),
        ("latency_ms", "end - start (else the API's latency, seconds; the export's only cross-checked)"),
        ("ttft_ms", "completion start - start (else the API's timeToFirstToken, seconds)"),
        ("hard_check_ok", "level != ERROR"),
        ("cost_usd", f"costDetails.total (else calculatedTotalCost, totalCost, total_cost; {options.cost_unit})"),
        ("slice", options.slice_source("key")),
    ]


def _field(record: dict, api: str, export: str) -> Any:
    """A field under its public-API name, else its blob-export name."""
    value = record.get(api)
    return record.get(export) if value is None or value == "" else value


def _usage(record: dict, options: ImportOptions, log: ImportLog) -> tuple[Usage, int | None, int | None]:
    """Input-side usage, output tokens (reasoning in) and reasoning tokens."""
    details = json_field(_field(record, "usageDetails", "usage_details"), "usageDetails")
    if isinstance(details, dict) and details:
        counts = {str(key): integer(value, f"usageDetails.{key}") for key, value in details.items()}
        counts = {key: value for key, value in counts.items() if value is not None}
        inputs = {key: value for key, value in counts.items() if "input" in key}
        read = sum(value for key, value in inputs.items() if any(m in key for m in CACHE_READ_MARKERS))
        write = sum(value for key, value in inputs.items() if any(m in key for m in CACHE_WRITE_MARKERS))
        outputs = {key: value for key, value in counts.items() if "output" in key}
        reasoning_types = [key for key in outputs if REASONING_MARKER in key]
        reasoning = sum(outputs[key] for key in reasoning_types) if reasoning_types else None
        uncached = sum(inputs.values()) - read - write
        has_read = any(any(m in key for m in CACHE_READ_MARKERS) for key in inputs)
        has_write = any(any(m in key for m in CACHE_WRITE_MARKERS) for key in inputs)
        output = sum(outputs.values())
        if _reasoning_inside(uncached, read + write, output, reasoning, counts.get("total")):
            output -= reasoning
            log.default("output_tokens <- output types without reasoning (total counts it inside output)")
        usage = normalise_usage(uncached, read if has_read else None, write if has_write else None, output=output,
                                total=counts.get("total"), default_style=EXCLUSIVE, forced_style=options.usage_style)
        return usage, output, reasoning
    legacy = json_field(record.get("usage"), "usage") or {}
    input_tokens = first_count(legacy, ("input",), "usage.input")
    output = first_count(legacy, ("output",), "usage.output")
    if input_tokens is None:
        input_tokens = first_count(record, ("promptTokens", "inputUsage"), "promptTokens")
    if output is None:
        output = first_count(record, ("completionTokens", "outputUsage"), "completionTokens")
    if input_tokens is not None:
        log.aliases["usage / promptTokens (for usageDetails)"] += 1
    return Usage(input_tokens, None, None, NO_CACHE), output, None


def _reasoning_inside(uncached: int, cache: int, output: int, reasoning: int | None, total: int | None) -> bool:
    """Whether a reasoning usage type repeats tokens already in `output` (usage types are disjoint by default).

    Only a total that adds up without the reasoning, and not with it, says so (an OTel span's output already
    holds its reasoning, which Langfuse issue #11244 shows counted twice), the input read with its cache on
    top or inside; and only when the reasoning fits in the rest of the output: a reasoning count above it
    cannot be inside (the OTel importer's rule for spans).
    """
    if not reasoning or total is None:
        return False
    rest = output - reasoning
    inputs = (uncached + cache, uncached)  # cache types on top of `input`, or counted inside it
    # Inside: the total adds up with the rest of the output, and the spans' rule does not read it on top.
    return any(tokens + rest == total for tokens in inputs) and not reasoning_on_top(rest, reasoning, total, inputs)


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
    export = "start_time" in record  # the blob-storage export's snake_case rows
    start = timestamp(_field(record, "startTime", "start_time"), "startTime")
    latency = millis_between(start, timestamp(_field(record, "endTime", "end_time"), "endTime"), "latency")
    if export:
        _cross_check_latency(latency, number(record.get("latency"), "latency"), log)
    elif latency is None and record.get("latency") not in (None, ""):
        latency = _seconds(record.get("latency"), "latency")
        log.default("latency_ms <- latency in seconds x 1000 (no endTime)")
    ttft = _ttft(record, start, export, log)
    ok = (as_text(record.get("level")) or "").upper() != "ERROR"
    usage, output, reasoning = _usage(record, options, log)
    if not ok and usage.input_tokens is None and output is None:
        usage, output = Usage(0, None, None, NO_CACHE), 0  # a rejected call (rate limit, timeout) bills no tokens
        log.default("tokens -> 0 (failed generation without usage)")
    cost_details = json_field(_field(record, "costDetails", "cost_details"), "costDetails") or {}
    cost = number(cost_details.get("total") if isinstance(cost_details, dict) else None, "costDetails.total")
    for name in ("calculatedTotalCost", "totalCost", "total_cost"):
        if cost is None:
            cost = number(record.get(name), name)
    metadata = json_field(record.get("metadata"), "metadata")
    tags = json_field(record.get("tags"), "tags")
    row = Row(where=where, request_id=as_text(record.get("id")), ts=start,
              model=as_text(_field(record, "model", "provided_model_name")),
              **usage.fields(), output_tokens=output, reasoning_tokens=reasoning,
              latency_ms=latency, ttft_ms=ttft, cost_usd=options.cost(cost), ok=ok,
              error_type=None if ok else error_type(_field(record, "statusMessage", "status_message")))
    label_row(row, options, metadata, tags_namespace(tags), record)
    return row


def _ttft(record: dict, start: dt.datetime | None, export: bool, log: ImportLog) -> float | None:
    """Milliseconds to the first token: completion start - start, else (API objects) timeToFirstToken x 1000.

    The time to first token is optional: one before the start (a negative difference, or the negative
    timeToFirstToken the API derives from it) leaves it null and is counted, rather than dropping the
    call's tokens, cost and latency with it.
    """
    first_token = timestamp(_field(record, "completionStartTime", "completion_start_time"), "completionStartTime")
    if first_token is not None or export:
        return ttft_between(start, first_token, log)
    seconds = number(record.get("timeToFirstToken"), "timeToFirstToken", minimum=None)
    if seconds is not None and seconds < 0:
        log.default(TTFT_BEFORE_START)
        return None
    return None if seconds is None else seconds * 1000.0


LATENCY_TOLERANCE_MS = 1.0


def _cross_check_latency(measured: float | None, exported: float | None, log: ImportLog) -> None:
    """The export's `latency` agrees with end - start in milliseconds or in seconds, or is counted."""
    if measured is None or exported is None:
        return
    if abs(exported - measured) <= LATENCY_TOLERANCE_MS:
        log.default("export latency field checked: milliseconds")
    elif abs(exported * 1000.0 - measured) <= LATENCY_TOLERANCE_MS:
        log.default("export latency field checked: seconds")
    else:
        log.default("export latency field disagrees with end_time - start_time (end - start used)")


def _rows_of(path: Path, log: ImportLog):
    """Rows of a Parquet export file, or of any text format `records` reads."""
    if path.suffix.lower() != ".parquet":
        yield from records(path, log)
        return
    import polars as pl  # noqa: PLC0415 - only a Parquet export needs it here

    try:
        frame = pl.read_parquet(path)
    except Exception as error:  # polars raises several types for unreadable files
        raise RoutesimError(f"cannot read {path.name} as Parquet: {str(error).splitlines()[0]}", where=str(path),
                            fix="export the observations again, as Parquet or JSON lines") from None
    for index, row in enumerate(frame.iter_rows(named=True), 1):
        yield f"{path}, row {index}", row


def _is_score(record: Any) -> bool:
    return isinstance(record, dict) and "value" in record and "source" in record and "type" not in record


SCORE_GRADERS = {"ANNOTATION": "human", "EVAL": "llm_judge", "API": "deterministic"}


def read(paths: list[Path], options: ImportOptions, log: ImportLog) -> list[Row]:
    items = list(chain.from_iterable(_rows_of(path, log) for path in paths))
    scores = [(where, record) for where, record in items if _is_score(record)]
    observations = {where: record for where, record in items if not _is_score(record)}
    rows = collect(observations.items(), lambda where, record: observation_row(where, record, options, log), log)
    if scores:
        traces = {row.where: as_text(_field(observations[row.where], "traceId", "trace_id")) for row in rows}
        _grade(rows, traces, scores, options, log)
    return rows


def _grade(rows: list[Row], traces: dict[str, str | None], scores: list[tuple[str, dict]], options: ImportOptions,
           log: ImportLog) -> None:
    """Puts each score on the generation it grades (see the module docstring); `traces`: row.where -> trace id."""
    names = sorted({as_text(record.get("name")) or "" for _, record in scores})
    wanted = options.scorer or (names[0] if len(names) == 1 else None)
    if wanted is None:
        raise RoutesimError(f"the scores export holds {len(names)} score names: {', '.join(names)}",
                            fix="choose one with --scorer NAME")
    by_id = {row.request_id: row for row in rows}
    by_trace: dict[str, list[Row]] = {}
    for row in rows:
        by_trace.setdefault(traces[row.where] or "", []).append(row)
    for where, record in scores:
        log.rows_read += 1
        if as_text(record.get("name")) != wanted:
            log.ignore(f"score {record.get('name')} (not --scorer)")
            continue
        target = by_id.get(as_text(record.get("observation_id") or record.get("observationId")))
        if target is None:
            trace = by_trace.get(as_text(record.get("trace_id") or record.get("traceId")) or "", [])
            target = trace[0] if len(trace) == 1 else None
        if target is None:
            log.drop("score for no single imported generation", where, f"trace {record.get('trace_id')}")
            continue
        try:
            value = unit_score(record.get("value"), "score value")
        except BadRow as bad:
            log.drop(bad.reason, where, bad.detail)
            continue
        target.score = value
        target.passed = value is not None and value >= options.pass_threshold
        target.grader = SCORE_GRADERS.get((as_text(record.get("source")) or "").upper())
