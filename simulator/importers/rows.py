"""The record every importer produces, the report it keeps, and the parsing of single fields.

A format module reads its files row by row (parsing JSON line by line is I/O, not replay work) and maps
each row to a `Row`: one model call with its usage, timing, status and, for eval tools, its grade. A field
it cannot use raises `BadRow`; the row is then dropped and counted in the `ImportLog` with its file, line
and reason, so nothing is ever dropped silently.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from simulator.core import limits
from simulator.core.errors import RoutesimError
from simulator.importers.usage import AUTO, EXCLUSIVE, INCLUSIVE

EXAMPLES = 3
BOM = "\ufeff"


class BadRow(Exception):
    """A row that cannot be imported: `reason` groups it in the report, `detail` says what was found."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass
class Row:
    """One model call (or one graded answer) as read from a source row; None where the source has nothing."""

    where: str
    request_id: str | None = None
    ts: dt.datetime | None = None
    model: str | None = None
    sample: int | None = None  # set only where the source numbers repeats itself (inspect-ai epochs)
    slice: str | None = None
    columns: dict[str, str | None] = field(default_factory=dict)
    input_tokens: int | None = None  # all input tokens, cache reads and writes included
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None  # written at the standard (5-minute) rate
    cache_write_1h_tokens: int | None = None  # written at the 1-hour rate
    output_tokens: int | None = None  # reasoning included
    reasoning_tokens: int | None = None
    total_tokens: int | None = None  # the source's own total, checked against input + output
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost_usd: float | None = None
    ok: bool = True  # the call returned a well-formed answer: becomes hard_check_ok
    error_type: str | None = None  # for a failed call: one of contract.ERROR_TYPES (see error_type below)
    service_tier: str | None = None
    passed: bool | None = None
    score: float | None = None
    confidence: float | None = None
    checker_score: float | None = None
    grader: str | None = None
    latency_source: str = "recorded"
    usage_style: str | None = None  # how the source counted cache tokens (rows.normalise_usage)


def _for_people(value) -> str:
    """A summary value as a person reads it: a dict as `a 1, b 2` and a list joined by commas, never
    Python's repr (`{'rate_limit': 1}`)."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {count:,}" if isinstance(count, int) else f"{key} {count}"
                         for key, count in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return "; ".join(map(str, value)) or "none"
    return str(value)


@dataclass
class ImportLog:
    """What one import mapped, defaulted, assumed, ignored and dropped; printed and kept as JSON."""

    format: str
    files: list[str]
    mapping: list[tuple[str, str]] = field(default_factory=list)
    rows_read: int = 0
    dropped: Counter = field(default_factory=Counter)
    dropped_examples: dict[str, list[str]] = field(default_factory=dict)
    ignored: Counter = field(default_factory=Counter)
    defaulted: Counter = field(default_factory=Counter)
    usage: Counter = field(default_factory=Counter)  # usage style -> calls imported
    aliases: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def drop(self, reason: str, where: str, detail: str = "") -> None:
        self.drop_many(reason, [f"{where}: {detail}" if detail else where], 1)

    def drop_many(self, reason: str, examples: list[str], count: int) -> None:
        self.dropped[reason] += count
        kept = self.dropped_examples.setdefault(reason, [])
        kept.extend(examples[:EXAMPLES - len(kept)])

    def ignore(self, kind: str) -> None:
        self.ignored[kind] += 1

    def default(self, what: str, count: int = 1) -> None:
        if count:
            self.defaulted[what] += count

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "files": self.files,
            "rows_read": self.rows_read,
            **self.summary,
            "mapping": {target: source for target, source in self.mapping},
            "defaulted": dict(sorted(self.defaulted.items())),
            "assumptions": self.notes,
            "usage_styles": dict(sorted(self.usage.items())),
            "older_field_names": dict(sorted(self.aliases.items())),
            "ignored": dict(sorted(self.ignored.items())),
            "dropped": {reason: {"rows": count, "examples": self.dropped_examples[reason]}
                        for reason, count in sorted(self.dropped.items())},
        }

    def lines(self) -> list[str]:
        """The report as text, one fact per line."""
        out = [f"read {self.rows_read:,} row(s) of {self.format} from {', '.join(self.files)}"]
        for key, value in self.summary.items():
            out.append(f"  {key.replace('_', ' ')}: {_for_people(value)}")
        out.append("  mapped:")
        out += [f"    {target} <- {source}" for target, source in self.mapping]
        def section(title: str, counts: dict[str, int], unit: str = "") -> list[str]:
            return [f"  {title}:", *(f"    {key}: {count:,}{unit}" for key, count in sorted(counts.items()))]

        if self.aliases:
            out += section("read from older field names", self.aliases, " row(s)")
        if self.defaulted:
            out += section("defaulted", self.defaulted, " row(s)")
        if self.notes:
            out += ["  assumed:", *(f"    {note}" for note in self.notes)]
        if self.usage:
            out += section("cache tokens", self.usage, " call(s)")
        if self.ignored:
            out += section("ignored (not model calls)", self.ignored)
        if self.dropped:
            out.append(f"  dropped: {self.dropped_total:,} row(s)")
            for reason, count in sorted(self.dropped.items()):
                out.append(f"    {reason}: {count:,}")
                out += [f"      e.g. {example}" for example in self.dropped_examples[reason]]
        else:
            out.append("  dropped: none")
        return out


# Single fields. Each returns None for an absent value and raises BadRow for one it cannot use.

def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def number(value: Any, name: str, *, minimum: float | None = 0.0) -> float | None:
    if _absent(value):
        return None
    if isinstance(value, bool):
        raise BadRow(f"bad {name}", f"{name}={value!r} is not a number")
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        raise BadRow(f"bad {name}", f"{name}={value!r} is not a number") from None
    if math.isnan(parsed) or math.isinf(parsed):
        raise BadRow(f"bad {name}", f"{name}={value!r} is not a finite number")
    if minimum is not None and parsed < minimum:
        raise BadRow(f"bad {name}", f"{name}={value!r} is below {minimum:g}")
    return parsed


def integer(value: Any, name: str) -> int | None:
    parsed = number(value, name)
    if parsed is None:
        return None
    if parsed != int(parsed):
        raise BadRow(f"bad {name}", f"{name}={value!r} is not a whole number")
    if parsed >= limits.MAX_COUNT:
        raise BadRow(f"bad {name}", f"{name}={value!r} is too large (the limit is {limits.MAX_COUNT:.0e})")
    return int(parsed)


TRUE_WORDS = {"true", "t", "yes", "y", "1", "pass", "passed", "ok", "correct", "c"}
FALSE_WORDS = {"false", "f", "no", "n", "0", "fail", "failed", "incorrect", "i"}


def boolean(value: Any, name: str) -> bool | None:
    if _absent(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadRow(f"bad {name}", f"{name}={value!r} is not true/false")


def unit_score(value: Any, name: str, *, scale: float = 1.0) -> float | None:
    """A score divided by `scale` (10 for a 1-10 rating); must land in 0..1."""
    parsed = number(value, name, minimum=None)
    if parsed is None:
        return None
    scaled = parsed / scale
    if not 0.0 <= scaled <= 1.0:
        hint = "" if scale != 1.0 else " (a score on another scale? give its maximum with --score-scale)"
        raise BadRow(f"bad {name}", f"{name}={value!r} is not in 0..{scale:g}{hint}")
    return scaled


# Epoch numbers are told apart by size: seconds stay below 1e11 until the year 5138, and each finer
# unit is a thousand times larger.
_EPOCH_UNITS = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6), (math.inf, 1e9))


def timestamp(value: Any, name: str) -> dt.datetime | None:
    """A UTC datetime from an ISO 8601 string (naive taken as UTC) or an epoch in s, ms, us or ns."""
    if _absent(value):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool) or _numeric_text(value):
        if not math.isfinite(float(value)):  # JSON's NaN and Infinity, which Python's parser accepts
            raise BadRow(f"bad {name}", f"{name}={value!r} is not a finite time")
        seconds = _epoch_seconds(float(value))
        try:
            return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
        except (OverflowError, ValueError):
            raise BadRow(f"bad {name}", f"{name}={value!r} is not a time between the years 1 and 9999") from None
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise BadRow(f"bad {name}", f"{name}={value!r} is not an ISO 8601 time or an epoch") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _numeric_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _epoch_seconds(value: float) -> float:
    for bound, per_second in _EPOCH_UNITS:
        if abs(value) < bound:
            return value / per_second
    raise AssertionError("unreachable")


def epoch_nanos(value: Any, name: str) -> int | None:
    """OTLP's *UnixNano fields, which OTLP/JSON writes as strings to keep int64 precision."""
    if _absent(value):
        return None
    try:
        nanos = int(value)
    except (TypeError, ValueError):
        raise BadRow(f"bad {name}", f"{name}={value!r} is not an integer of nanoseconds") from None
    if not -2**63 <= nanos < 2**63:
        raise BadRow(f"bad {name}", f"{name}={value!r} is out of the range of a timestamp")
    return nanos


def millis_between(start: dt.datetime | None, end: dt.datetime | None, name: str) -> float | None:
    if start is None or end is None:
        return None
    elapsed = (end - start) / dt.timedelta(milliseconds=1)
    if elapsed < 0:
        raise BadRow(f"bad {name}", f"ends before it starts ({start.isoformat()} -> {end.isoformat()})")
    return elapsed


TTFT_BEFORE_START = "ttft_ms -> null (completionStartTime before startTime)"


def ttft_between(start: dt.datetime | None, first_token: dt.datetime | None, log: ImportLog) -> float | None:
    """Milliseconds from a call's start to its first token (None when either is unknown). The time to first
    token is optional: one stamped before the start (the two stamps come from different clocks or roundings)
    leaves it null, counted under TTFT_BEFORE_START, rather than dropping the call's tokens, cost and latency."""
    try:
        return millis_between(start, first_token, "ttft")
    except BadRow:
        log.default(TTFT_BEFORE_START)
        return None


def json_field(value: Any, name: str) -> Any:
    """A nested object that CSV exports (and some JSON ones) store as a JSON string."""
    if _absent(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "{[":
            try:
                return json.loads(text)
            except json.JSONDecodeError as error:
                raise BadRow(f"bad {name}", f"{name} is not valid JSON ({error.msg})") from None
    return value


def json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words, for a message about a field of the wrong kind."""
    for kind, name in ((bool, "a boolean"), (dict, "an object"), (list, "a list"), (str, "a string"),
                       ((int, float), "a number")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def object_field(value: Any, name: str) -> dict:
    """A nested JSON object read from an untrusted file: {} when absent (null or ""), BadRow when a value
    of another kind stands there, so that `.get` on it can never fail."""
    if _absent(value):
        return {}
    if not isinstance(value, dict):
        raise BadRow(f"bad {name}", f"{name} is {json_kind(value)}, not an object")
    return value


def list_field(value: Any, name: str) -> list:
    """A nested JSON list read from an untrusted file: [] when absent (null or ""), BadRow when a value of
    another kind stands there (iterating a string or an object would walk its characters or keys)."""
    if _absent(value):
        return []
    if not isinstance(value, list):
        raise BadRow(f"bad {name}", f"{name} is {json_kind(value)}, not a list")
    return value


def as_text(value: Any) -> str | None:
    if _absent(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def dig(source: Any, dotted: str) -> Any:
    """source['a']['b'] for 'a.b'; a key that itself contains dots (gen_ai.usage.input_tokens) wins."""
    if not isinstance(source, dict):
        return None
    if dotted in source:
        return source[dotted]
    head, _, rest = dotted.partition(".")
    return dig(source.get(head), rest) if rest else None


def first_value(key: str, *namespaces: Any) -> str | None:
    """The first non-empty value of `key` across the namespaces, as text."""
    for namespace in namespaces:
        value = dig(namespace, key)
        if not _absent(value):
            return as_text(value)
    return None


def first_count(source: Any, names: tuple[str, ...], label: str, log: ImportLog | None = None) -> int | None:
    """The first of a field's names present in `source`, as a count.

    With a `log`, the names are the current one followed by older aliases, and a value found under an
    alias is counted in the report.
    """
    for position, name in enumerate(names):
        value = dig(source, name)
        if not _absent(value):
            if position and log is not None:
                log.aliases[f"{name} (for {names[0]})"] += 1
            return integer(value, label)
    return None


def tags_namespace(tags: Any) -> dict[str, str]:
    """'key:value' and 'key=value' tags as a mapping, so tags are looked up like metadata keys."""
    found: dict[str, str] = {}
    for tag in tags if isinstance(tags, list) else []:
        cuts = [cut for cut in (tag.find(":"), tag.find("=")) if cut > 0] if isinstance(tag, str) else []
        if cuts:
            found.setdefault(tag[:min(cuts)], tag[min(cuts) + 1:])
    return found


def label_row(row: Row, options, *namespaces: Any) -> None:
    """Slice, named columns and (when the user names a key) the request id, from the first namespace
    that has each key: tags, metadata or attributes, in the order the format documents."""
    if options.slice_key:
        row.slice = first_value(options.slice_key, *namespaces)
    for key, name in options.columns:
        row.columns[name] = first_value(key, *namespaces)
    if options.request_id_key:
        row.request_id = first_value(options.request_id_key, *namespaces)


NO_CACHE = "no cache tokens reported"
CACHE_INSIDE = "cache inside the reported input (OpenAI style)"
CACHE_ON_TOP = "cache added to the reported input (Anthropic style)"


@dataclass(frozen=True)
class Usage:
    """Input tokens with the cache counted in, the cached part, the cache writes, and how it was read."""

    input_tokens: int | None
    cached_input_tokens: int | None
    cache_write_tokens: int | None
    usage_style: str | None
    cache_write_1h_tokens: int | None = None

    def fields(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "cached_input_tokens": self.cached_input_tokens,
                "cache_write_tokens": self.cache_write_tokens, "cache_write_1h_tokens": self.cache_write_1h_tokens,
                "usage_style": self.usage_style}


def normalise_usage(reported: int | None, cache_read: int | None, cache_write: int | None, *,
                    output: int | None, total: int | None, default_style: str, forced_style: str,
                    cache_write_1h: int | None = None) -> Usage:
    """All input tokens and the cached part of them, whichever way the source counted.

    OpenAI counts cached tokens inside prompt_tokens; Anthropic reports input_tokens next to separate
    cache reads and writes. The style is `forced_style` when the user gave one. Otherwise a cache larger
    than the reported input cannot be inside it, whatever the total says (older LiteLLM versions totalled
    Anthropic calls without their cache); else the total tells when the source reports one (input +
    output + cache = total: the cache came on top; input + output = total: it was inside); else the
    format's documented default applies. `cache_write` and `cache_write_1h` (5-minute and 1-hour writes)
    are both cache writes.
    """
    if reported is None:
        return Usage(None, cache_read, cache_write, None, cache_write_1h)
    cache = (cache_read or 0) + (cache_write or 0) + (cache_write_1h or 0)
    if forced_style != AUTO:
        style = forced_style
    elif cache == 0:
        return Usage(reported, cache_read, cache_write, NO_CACHE, cache_write_1h)
    elif cache > reported:
        style = EXCLUSIVE
    elif total is not None and output is not None and reported + output + cache == total:
        style = EXCLUSIVE
    elif total is not None and output is not None and reported + output == total:
        style = INCLUSIVE
    else:
        style = default_style
    if style == INCLUSIVE:
        if cache > reported:
            raise BadRow("cache tokens exceed input tokens",
                         f"input {reported}, cache reads {cache_read or 0}, "
                         f"cache writes {(cache_write or 0) + (cache_write_1h or 0)} "
                         "(rerun with --usage exclusive if this source reports them on top of the input)")
        return Usage(reported, cache_read, cache_write, CACHE_INSIDE, cache_write_1h)
    return Usage(reported + cache, cache_read, cache_write, CACHE_ON_TOP, cache_write_1h)


# Why a call failed, in the words gateways fall back and retry on. Matched in order on the lower-cased
# status code, error type and message a source records.
_ERROR_PATTERNS = (
    ("context_window", ("context_length", "context window", "contextwindow", "maximum context length",
                        "prompt is too long", "too many tokens", "input is too long")),
    ("content_filter", ("content_filter", "content filter", "contentpolicy", "content_policy", "content policy",
                        "safety", "responsible ai")),
    ("rate_limit", ("429", "rate limit", "rate_limit", "ratelimit", "too many requests", "resource_exhausted",
                    "resource exhausted", "quota")),
    ("timeout", ("408", "504", "timeout", "timed out", "time out", "deadline_exceeded", "deadline exceeded",
                 "expired")),
)


def error_type(*evidence: Any) -> str:
    """`rate_limit`, `timeout`, `context_window`, `content_filter` or `other` for a failed call, from whatever
    the source records about the failure (status codes, exception class names, messages, finish reasons)."""
    text = " ".join(as_text(item) or "" for item in evidence).lower()
    for kind, markers in _ERROR_PATTERNS:
        if any(marker in text for marker in markers):
            return kind
    return "other"


def collect(items: Iterable[tuple[str, Any]], parse: Callable[[str, Any], Row | None], log: ImportLog) -> list[Row]:
    """Parses every (where, item); a BadRow drops the item into the log, None means not a model call."""
    rows = []
    for where, item in items:
        log.rows_read += 1
        try:
            row = parse(where, item)
        except BadRow as bad:
            log.drop(bad.reason, where, bad.detail)
            continue
        except OverflowError as error:  # a number or time too large for its field, wherever it is read
            log.drop("value out of range", where, str(error))
            continue
        if row is not None:
            rows.append(row)
    return rows


# Reading files. JSON lines and CSV are read row by row so that one bad row is dropped, not the file.

def _open_error(path: Path, error: Exception) -> RoutesimError:
    if isinstance(error, UnicodeDecodeError):
        return RoutesimError("not a UTF-8 text file", where=str(path), fix="export the file as UTF-8")
    return RoutesimError(f"cannot read the file: {error}", where=str(path), fix="check the path and permissions")


def _lines(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(number, line) per line, a byte-order mark stripped; None for a line longer than limits.MAX_LINE_BYTES,
    which is skipped without being held in memory."""
    with path.open("rb") as handle:
        number_ = 0
        while line := handle.readline(limits.MAX_LINE_BYTES + 1):
            number_ += 1
            if number_ == 1:
                line = line.removeprefix(BOM.encode())
            if len(line) > limits.MAX_LINE_BYTES and not line.endswith(b"\n"):
                while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                yield number_, None
                continue
            yield number_, line


def json_lines(path: Path, log: ImportLog) -> Iterator[tuple[str, Any]]:
    """(where, object) per non-empty line; a line that is not UTF-8, not JSON, nested too deeply or longer
    than limits.MAX_LINE_BYTES is dropped and counted with its line number. A byte-order mark at the start
    is ignored."""
    try:
        for number_, raw in _lines(path):
            where = f"{path}, line {number_}"
            if raw is None:
                log.rows_read += 1
                log.drop("line too long", where, f"longer than {limits.MAX_LINE_BYTES // 2**20} MiB")
                continue
            if not raw.strip():
                continue
            record = json_record(raw, where, log, line=True)
            if record is not UNREADABLE:
                yield where, record
    except OSError as error:
        raise _open_error(path, error) from None


UNREADABLE = object()  # what json_record gives for a record it dropped


def json_record(raw: bytes, where: str, log: ImportLog, *, line: bool) -> Any:
    """The JSON value of one record of an import (`line`: a line of a JSON lines file, else a whole file such as
    an archive's member); UNREADABLE when it is not UTF-8, not JSON or nested too deeply, dropped and counted
    at `where` with the reason, so that one bad record spoils only itself."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        reason = "not UTF-8 text"
        detail = f"byte 0x{raw[error.start]:02x} at byte {error.start + 1}" + (
            " of the line (export the file as UTF-8)" if line else "")
    else:
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            reason = "not valid JSON"
            detail = f"{error.msg} at " + (f"column {error.colno}" if line else
                                           f"line {error.lineno}, column {error.colno}")
        except RecursionError:
            reason, detail = "nested too deeply", "JSON nested deeper than Python's parser can follow"
    log.rows_read += 1
    log.drop(reason, where, detail)
    return UNREADABLE


def json_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise _open_error(path, error) from None
    return json_text(text, str(path))


def json_text(text: str | bytes, where: str) -> Any:
    """A whole JSON document; errors name `where` and the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RoutesimError(f"not valid JSON: {error.msg}", where=f"{where}, line {error.lineno}, column {error.colno}",
                            fix="export the file again; a JSON lines file needs the .jsonl extension") from None
    except RecursionError:
        raise RoutesimError("the JSON is nested too deeply to be read", where=where,
                            fix="export the file again; see 'Reliability' in the README for the limits") from None


def archive_members(path: Path, archive) -> None:
    """Refuses a zip archive that would expand to more than limits.MAX_ARCHIVE_RATIO times its size on disk
    (or limits.MIN_ARCHIVE_ALLOWANCE), before anything is decompressed. zipfile never reads past a member's
    declared size, so the declared sizes bound what is read."""
    expanded = sum(info.file_size for info in archive.infolist())
    allowance = max(limits.MIN_ARCHIVE_ALLOWANCE, limits.MAX_ARCHIVE_RATIO * path.stat().st_size)
    if expanded > allowance:
        raise RoutesimError(f"the archive expands to {expanded:,} bytes, more than {limits.MAX_ARCHIVE_RATIO}x its "
                            f"size (the limit is {allowance:,} bytes)", where=str(path),
                            fix="this is not an archive the tool wrote; check the file, or import its JSON log")


def csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) per data row, every value a string or None; 'row N' counts data rows from 1."""
    try:
        content = path.read_bytes().removeprefix(BOM.encode())
        frame = pl.read_csv(content, infer_schema=False)
    except (OSError, UnicodeDecodeError) as error:
        raise _open_error(path, error) from None
    except pl.exceptions.PolarsError as error:
        raise RoutesimError(f"not a readable CSV file: {str(error).splitlines()[0]}", where=str(path),
                            fix="export the table as CSV with a header row") from None
    for index, row in enumerate(frame.iter_rows(named=True), 1):
        yield f"{path}, row {index}", row


def csv_header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError) as error:
        raise _open_error(path, error) from None


def records(path: Path, log: ImportLog, *, list_keys: tuple[str, ...] = ("data",)) -> Iterator[tuple[str, Any]]:
    """Rows of a .jsonl, .json (a list, or a list under one of `list_keys`) or .csv export."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from json_lines(path, log)
    elif suffix == ".csv":
        yield from csv_rows(path)
    elif suffix == ".json":
        document = json_document(path)
        if isinstance(document, dict):
            document = next((document[key] for key in list_keys if isinstance(document.get(key), list)), None)
        if not isinstance(document, list):
            keyed = f" or an object with {list_keys[0]!r}" if list_keys else ""
            raise RoutesimError(f"expected a list of rows{keyed}",
                                where=str(path), fix="export the rows as JSON lines (.jsonl), a JSON list or CSV")
        for index, item in enumerate(document, 1):
            yield f"{path}, item {index}", item
    else:
        raise RoutesimError(f"unknown file type '{path.suffix}'", where=str(path),
                            fix="name the export .jsonl, .json or .csv")


SERVICE_TIER_WORDS = {"standard": "standard", "default": "standard", "auto": "standard", "on_demand": "standard",
                      "batch": "batch", "flex": "flex", "priority": "priority", "scale": "priority"}


def service_tier(value: Any) -> str | None:
    """The contract's service tier for a provider's word (OpenAI answers `default` for standard, `scale` for
    its reserved capacity, priced as priority); None for an absent or unknown word."""
    return SERVICE_TIER_WORDS.get((as_text(value) or "").strip().lower())


SHARED_KEY = "log shadow calls with a shared metadata key and import with --request-id KEY"


def reasoning_on_top(output: int, reasoning: int, total: int | None, inputs: tuple[int, ...]) -> bool:
    """Whether a call's reasoning count was reported on top of its output tokens, not inside them as OpenAI
    counts it: it exceeds the output (which cannot hold it), or some reading of the input (`inputs`: the
    reported input, and the input with its cache on top where that can be) with output + reasoning makes the
    total while no reading with the output alone does."""
    return reasoning > output or (total is not None and any(known + output + reasoning == total for known in inputs)
                                  and not any(known + output == total for known in inputs))


def hint_shadow_calls(rows: list[Row], log: ImportLog, why: str, how: str = SHARED_KEY) -> None:
    """Notes, when no request id of the import has calls of two models, `why` (where the format's request
    ids come from) and `how` to give the calls of one request a shared id."""
    models: dict[str | None, set] = {}
    for row in rows:
        models.setdefault(row.request_id, set()).add(row.model)
    if rows and all(len(named) < 2 for named in models.values()):
        log.note(f"no request has calls of two models: {why}; to compare models on the same requests, {how}")
