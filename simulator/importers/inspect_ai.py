"""inspect-ai eval logs: `.json` logs (`--log-format json`) and `.eval` archives.

One sample x epoch is one answer of the evaluated model. Mapping:
- request_id: the sample `id` (or a sample metadata key with --request-id); sample: `epoch - 1` (inspect
  numbers epochs from 1; a log holding an epoch 0 numbers them from 0, and then sample = epoch). In a new
  folder an epoch dropped below leaves no gap: the request's remaining epochs are renumbered 0, 1, ... in
  epoch order (folder.number_samples, listed in the report). Epochs are independent repeats of one input,
  so which of them is sample 1 changes no expected pass rate or cost, while dropping the request's other
  epochs would select requests on whether their scorer worked. With --merge the grade keeps `epoch - 1`,
  which must name the same answer as the folder's sample;
- model: `eval.model` as inspect names it (`openai/gpt-4o`; the merge matches it to the gateway's
  `gpt-4o`), or the answering snapshot `output.model` with --model-from response;
- ts: the sample's `started_at`, else the eval's `created`;
- passed: the chosen scorer's value (--scorer NAME, or NAME.KEY for a dict value; required when the log
  has several scorers) as inspect reads it: C = 1, P = 0.5, I and N = 0, true/yes = 1, numbers as they
  are (divided by --score-scale); passed when it reaches --pass-threshold (default 1: fully correct);
  score: that value;
- grader: llm_judge for model_graded_* scorers, deterministic for inspect's built-in string scorers
  (match, includes, pattern, answer, choice, exact, f1), else --grader or null;
- hard_check_ok: false when the sample errored (then passed is false too), hit a limit, or stopped for
  max_tokens/model_length/content_filter; error_type from the error, the limit or the stop reason;
- an interrupted `.eval` (no `header.json` yet) is read from `_journal/start.json` and the samples
  flushed so far, and the report marks the run incomplete;
- tokens: the evaluated model's entry in the sample's `model_usage` (a model-graded scorer's judge is
  left out), else `output.usage`. Inspect's `input_tokens` leaves out the cache reads and writes it
  reports beside them; older logs counted OpenAI's cached tokens inside: the total tells which;
- latency_ms: the generation time of the evaluated model's calls (`output.time` of its model events,
  in seconds), else `output.time`, else the sample's `working_time`; ttft_ms: null;
- cost_usd: `total_cost` of that usage when inspect recorded one;
- slice: the key named by --slice in the sample metadata, else the task name.
A field of the wrong kind (an epoch that is no whole number, scores or usage that is no object) drops its
sample, counted with the reason; a file that is no eval log, or whose `samples` is no list, is refused.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simulator.core.errors import RoutesimError
from simulator.importers.options import ImportOptions
from simulator.importers.rows import (
    UNREADABLE,
    BadRow,
    ImportLog,
    Row,
    archive_members,
    as_text,
    collect,
    error_type,
    first_count,
    integer,
    json_document,
    json_record,
    json_text,
    label_row,
    list_field,
    normalise_usage,
    number,
    object_field,
    timestamp,
    unit_score,
)
from simulator.importers.usage import EXCLUSIVE

LETTER_VALUES = {"C": 1.0, "P": 0.5, "I": 0.0, "N": 0.0}
WORD_VALUES = {"yes": 1.0, "true": 1.0, "no": 0.0, "false": 0.0}
DETERMINISTIC_SCORERS = {"match", "includes", "pattern", "answer", "choice", "exact", "f1"}
TRUNCATED = {"max_tokens", "model_length", "content_filter"}


def mapping(options: ImportOptions) -> list[tuple[str, str]]:
    return [
        ("request_id", options.request_id_source("metadata", "sample id")),
        ("sample", "epoch - 1 (a new folder renumbers them 0, 1, ... where an epoch was dropped)"),
        ("ts", "sample started_at (else eval.created)"),
        ("model", "eval.model" if options.model_from == "request" else "output.model"),
        ("passed", f"scorer {options.scorer or '(the only one)'} >= {options.pass_threshold:g}"),
        ("score", "scorer value in 0..1"),
        ("input_tokens", "model_usage[eval.model]: input + cache reads + cache writes"),
        ("cached_input_tokens", "model_usage[eval.model].input_tokens_cache_read"),
        ("output_tokens", "model_usage[eval.model].output_tokens"),
        ("latency_ms", "model events' output.time x 1000 (seconds)"),
        ("hard_check_ok", "no sample error or limit, stop reason not max_tokens/content_filter"),
        ("slice", options.slice_source("metadata", "eval.task")),
    ]


JOURNAL_START = "_journal/start.json"


def samples(paths: list[Path], log: ImportLog) -> Iterator[tuple[str, tuple[dict, dict]]]:
    """(where, (sample, eval spec)) for every sample of every log."""
    for path in paths:
        if path.suffix == ".eval":
            yield from _archive_samples(path, log)
            continue
        document = json_document(path)
        if not isinstance(document, dict) or not isinstance(document.get("eval"), dict):
            raise RoutesimError("not an inspect-ai eval log (no 'eval' object)", where=str(path),
                                fix="write the log with --log-format json, or pass the .eval file")
        if "samples" not in document:
            raise RoutesimError("the eval log holds no samples", where=str(path),
                                fix="run the eval with log_samples enabled (the default)")
        if not isinstance(document["samples"] or [], list):
            raise RoutesimError("the eval log's 'samples' is not a list of samples", where=f"{path}, samples",
                                fix="pass the log as inspect wrote it (inspect log dump LOG prints it)")
        for index, sample in enumerate(document["samples"] or [], 1):
            yield _where(path, index, sample), (sample, document["eval"])


def _archive_samples(path: Path, log: ImportLog) -> Iterator[tuple[str, tuple[dict, dict]]]:
    """Samples of a .eval archive; an interrupted run (no header.json yet) is read from its journal's
    start.json and the samples flushed so far, and marked incomplete."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive_members(path, archive)
            names = archive.namelist()
            header = json_text(archive.read("header.json"), f"{path}, header.json") if "header.json" in names else None
            if header is None and JOURNAL_START in names:
                header = json_text(archive.read(JOURNAL_START), f"{path}, {JOURNAL_START}")
                log.note(f"{path.name}: the run did not finish (no header.json); imported the samples it flushed "
                         f"from {JOURNAL_START}, so the run is incomplete")
                log.summary["incomplete_runs"] = log.summary.get("incomplete_runs", 0) + 1
            if not isinstance(header, dict) or not isinstance(header.get("eval"), dict):
                raise RoutesimError("not an inspect-ai .eval archive (no header.json nor _journal/start.json)",
                                    where=str(path), fix="pass the log as inspect wrote it; an interrupted run can "
                                    "be finished with 'inspect eval-retry LOG' and the new log imported")
            members = sorted(name for name in names if name.startswith("samples/") and name.endswith(".json"))
            for index, member in enumerate(members, 1):
                sample = _member(archive, path, member, log)
                if sample is not UNREADABLE:
                    yield _where(path, index, sample, member), (sample, header["eval"])
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError) as error:
        raise RoutesimError(f"cannot read the .eval archive: {error}", where=str(path),
                            fix="an archive cut off mid-write cannot be read: finish the run with "
                                "'inspect eval-retry LOG' and import the new log") from None


def _member(archive: zipfile.ZipFile, path: Path, member: str, log: ImportLog) -> Any:
    """One sample of an archive, or UNREADABLE for a member that cannot be read (damaged, not UTF-8, not
    JSON), which is dropped and counted as a bad line of a JSON lines file is: one sample, not the run."""
    where = f"{path}, {member}"
    try:
        raw = archive.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
        log.rows_read += 1
        log.drop("damaged archive member", where, str(error))
        return UNREADABLE
    return json_record(raw, where, log, line=False)


def _where(path: Path, index: int, sample: Any, member: str | None = None) -> str:
    identity = f"id {sample.get('id')}, epoch {sample.get('epoch')}" if isinstance(sample, dict) else "?"
    return f"{path}, {member or f'sample {index}'} ({identity})"


def scorer_names(paths: list[Path]) -> set[str]:
    """The scorers named in the samples' `scores` objects (a sample whose scores are no object is dropped
    when it is read, so it names none)."""
    return {name for _, (sample, _) in samples(paths, ImportLog("inspect-ai", [])) if isinstance(sample, dict)
            and isinstance(sample.get("scores"), dict) for name in sample["scores"]}


def score_value(value: Any, key: str | None, scale: float) -> float:
    if isinstance(value, dict):
        if key is None or key not in value:
            raise BadRow("score has several values", f"keys {sorted(value)}: choose one with --scorer NAME.KEY")
        value = value[key]
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        word = value.strip()
        if word.upper() in LETTER_VALUES:
            return LETTER_VALUES[word.upper()]
        if word.lower() in WORD_VALUES:
            return WORD_VALUES[word.lower()]
    parsed = unit_score(value, "score", scale=scale)
    if parsed is None:
        raise BadRow("no score", "the scorer recorded no value")
    return parsed


def _grader(scorer: str, options: ImportOptions) -> str | None:
    if options.grader:
        return options.grader
    if scorer.startswith("model_graded"):
        return "llm_judge"
    return "deterministic" if scorer in DETERMINISTIC_SCORERS else None


def _latency_ms(sample: dict, output: dict, model: str) -> float | None:
    times = [number(object_field(event.get("output"), "event output").get("time"), "output.time")
             for event in list_field(sample.get("events"), "events")
             if isinstance(event, dict) and event.get("event") == "model" and event.get("model") == model]
    times = [time for time in times if time is not None]
    if times:
        return sum(times) * 1000.0
    seconds = number(output.get("time"), "output.time")
    if seconds is None:
        seconds = number(sample.get("working_time"), "working_time")
    return None if seconds is None else seconds * 1000.0


def sample_row(where: str, sample: Any, spec: dict, options: ImportOptions, log: ImportLog) -> Row:
    if not isinstance(sample, dict):
        raise BadRow("not a sample", "expected an object with id, epoch and scores")
    output = object_field(sample.get("output"), "output")
    evaluated = as_text(spec.get("model"))
    model = evaluated if options.model_from == "request" else as_text(output.get("model")) or evaluated
    model_usage = object_field(sample.get("model_usage"), "model_usage")
    usage = (object_field(model_usage.get(evaluated), "model_usage entry")
             or object_field(output.get("usage"), "output.usage"))
    others = set(model_usage) - {evaluated}
    if others:
        log.note(f"usage of other models in a sample (scorers' judges: {', '.join(sorted(others))}) is left out")
    out_tokens = first_count(usage, ("output_tokens",), "output_tokens")
    usage_counts = normalise_usage(
        first_count(usage, ("input_tokens",), "input_tokens"),
        first_count(usage, ("input_tokens_cache_read",), "input_tokens_cache_read"),
        first_count(usage, ("input_tokens_cache_write",), "input_tokens_cache_write"),
        output=out_tokens, total=first_count(usage, ("total_tokens",), "total_tokens"), default_style=EXCLUSIVE,
        forced_style=options.usage_style)
    stop_reasons = {as_text(choice.get("stop_reason")) for choice in list_field(output.get("choices"), "output.choices")
                    if isinstance(choice, dict)}
    errored = bool(sample.get("error"))
    ok = not errored and not sample.get("limit") and not stop_reasons & TRUNCATED

    name, _, key = (options.scorer or "").partition(".")
    scores = object_field(sample.get("scores"), "scores")
    if not name and len(scores) == 1:
        name = next(iter(scores))
    score = None
    if name in scores:
        raw = scores[name].get("value") if isinstance(scores[name], dict) else None
        score = score_value(raw, key or None, options.score_scale)
    elif not errored and not name:
        raise BadRow("no score", "the sample has no scores")
    elif not errored:
        raise BadRow("no score", f"the sample has no score from scorer '{name}' "
                                 f"(scorers: {', '.join(sorted(scores)) or 'none'})")
    if errored and score is None:
        log.note("samples that errored without a score count as failed (passed false, hard_check_ok false)")
    epoch = integer(sample.get("epoch"), "epoch")
    failure = None if ok else error_type(sample.get("error") if errored else "", sample.get("limit") or "",
                                         *sorted(str(reason) for reason in stop_reasons & TRUNCATED))
    row = Row(where=where, request_id=as_text(sample.get("id")), sample=None if epoch is None else epoch - 1,
              error_type=failure,
              ts=timestamp(sample.get("started_at") or spec.get("created"), "started_at"), model=model,
              **usage_counts.fields(), output_tokens=out_tokens, latency_ms=_latency_ms(sample, output, evaluated),
              cost_usd=options.cost(number(usage.get("total_cost"), "total_cost")), ok=ok,
              passed=score is not None and score >= options.pass_threshold, score=score,
              grader=_grader(name, options), slice=as_text(spec.get("task")))
    label_row(row, options, sample.get("metadata"), spec.get("metadata"), spec)
    if options.slice_key and row.slice is None:
        row.slice = as_text(spec.get("task"))
    return row


def read(paths: list[Path], options: ImportOptions, log: ImportLog) -> list[Row]:
    if not options.scorer:
        names = scorer_names(paths)
        if len(names) > 1:
            raise RoutesimError(f"the logs have several scorers: {', '.join(sorted(names))}",
                                where=", ".join(map(str, paths)), fix="choose the one that grades with --scorer NAME")
    rows = []
    for path in paths:  # each log numbers its own epochs
        found = collect(samples([path], log), lambda where, item: sample_row(where, *item, options, log), log)
        if any(row.sample == -1 for row in found):
            for row in found:
                row.sample = None if row.sample is None else row.sample + 1
            log.note(f"{path.name} numbers its epochs from 0 (inspect numbers them from 1): sample = epoch")
        rows += found
    return rows
