"""`routesim import FORMAT INPUT... -o DATA_DIR` and `routesim public-data`: getting real data in.

Registered on the main app by simulator.cli. Every import prints its report (what was mapped, defaulted,
assumed, ignored and dropped, with examples) and keeps it as `import-report.json` in the data folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from simulator.cli.console import console
from simulator.core.errors import RoutesimError
from simulator.core.paths import DATA, SHARED_PUBLIC_DATA
from simulator.importers.usage import AUTO

if TYPE_CHECKING:
    from simulator.importers.options import ImportOptions
    from simulator.importers.rows import ImportLog, Row

import_app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Import gateway, tracer and eval-tool logs into a data folder (traffic.parquet + outcomes.parquet). "
         "Traffic logs need --assume-passed or grades merged later with an eval format's --merge.")

Inputs = Annotated[list[Path], typer.Argument(metavar="FILE", help="the exported files")]
Out = Annotated[Path, typer.Option("--out", "-o", help="the data folder to write")]
SliceKey = Annotated[str | None, typer.Option("--slice", help="tag, metadata key or attribute holding the slice")]
DefaultSlice = Annotated[str, typer.Option(help="slice of requests without the --slice key")]
Columns = Annotated[list[str] | None, typer.Option("--column", help="KEY[=NAME]: keep a tag/metadata key as a "
                                                                      "traffic column (repeatable)")]
RequestId = Annotated[str | None, typer.Option("--request-id", help="key holding the request id (calls sharing "
                                                                     "one are answers to the same request)")]
ModelFrom = Annotated[str, typer.Option(help="request: the model name asked for; response: the snapshot that answered")]
Usage = Annotated[str, typer.Option(help="auto, inclusive (cache tokens inside the input count, OpenAI) or "
                                         "exclusive (on top, Anthropic)")]
CostUnit = Annotated[str, typer.Option(help="usd or cents")]
AssumePassed = Annotated[bool, typer.Option(help="take a successful call as passed (no grades in traffic logs); "
                                                 "flagged in the report and in outcomes.passed_source")]
Force = Annotated[bool, typer.Option(help="replace DATA_DIR if it already holds files")]
Strict = Annotated[bool, typer.Option(help="fail, writing nothing, if any row is dropped")]
Merge = Annotated[bool, typer.Option(help="merge the grades onto the existing DATA_DIR instead of writing a new one")]
DropUngraded = Annotated[bool, typer.Option(help="with --merge: remove answers still without a grade")]
Threshold = Annotated[float, typer.Option(help="passed when the score (scaled to 0..1) reaches this")]
ScoreScale = Annotated[float, typer.Option(help="the score's maximum, e.g. 10 for a 1-10 rating")]
Grader = Annotated[str | None, typer.Option(help="deterministic, llm_judge or human, where the file does not say")]
Plan = Annotated[Path | None, typer.Option(help="add the re-run answers of this shadow-sample plan (routesim "
                                                "plan-shadow) to the existing DATA_DIR")]


def _options(**values) -> ImportOptions:
    from simulator.importers.options import ImportOptions, check_options, parse_columns

    columns = parse_columns(values.pop("columns", None) or [])
    return check_options(ImportOptions(columns=columns, **values))


def _check_inputs(inputs: list[Path]) -> list[Path]:
    from simulator.core.outputs import file_kind, note_input

    for path in inputs:
        if path.is_dir():
            raise RoutesimError(f"{path} is a folder, but an exported file is expected here", where=str(path),
                                fix="give the export's files, e.g. FOLDER/*.jsonl")
        if not path.exists():
            raise RoutesimError(f"input file not found: {path}", where=str(path), fix="check the path of the export")
        if not path.is_file():  # a device, FIFO or socket: reading one may never end, and it is no export
            raise RoutesimError(f"{path} is {file_kind(path.stat().st_mode)}, not a regular file", where=str(path),
                                fix="give the exported file itself")
        note_input(path)
    return inputs


def _print(log: ImportLog) -> None:
    for line in log.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


# Where each format's request ids come from, and how to give the calls of one request a shared one: the
# report says so when no request of a new folder has calls of two models (rows.hint_shadow_calls), since
# such a folder cannot compare models. A format missing here gets the general wording.
SHARED_IDS = {
    "otel": ("the request id is the span id, one per call",
             "import with --request-id trace_id to group the calls of one trace, or --request-id KEY to group "
             "calls by an attribute holding a shared key"),
    "litellm": ("request_id is LiteLLM's primary key, one per call", None),
    "langfuse": ("the request id is the observation id, one per generation",
                 "import with --request-id traceId (trace_id in the blob export) to group the generations of one "
                 "trace, or --request-id KEY to group them by a metadata key holding a shared key"),
    "openai-batch": ("each custom_id was answered by one model",
                     "give each candidate's batch the same custom_ids and import their output files together"),
    "inspect-ai": ("each sample was answered by the evaluated model only",
                   "import the eval logs of every candidate on the same task together"),
    "promptfoo": ("each test was answered by one provider", "run the eval with every candidate as a provider"),
    "csv": ("no request_id has rows of two models", "map a column holding a shared id with --map request_id=COLUMN"),
}


def _hint_shared_ids(fmt: str, rows: list[Row], options: ImportOptions, log: ImportLog) -> None:
    from simulator.importers.rows import SHARED_KEY, hint_shadow_calls

    why, how = SHARED_IDS.get(fmt, ("the request ids are one per call", None))
    if options.request_id_key:
        why = f"no calls of two models share a value of --request-id {options.request_id_key}"
        how = f"check that every candidate's call carries the same {options.request_id_key}"
    hint_shadow_calls(rows, log, why, how or SHARED_KEY)


def run_import(fmt: str, inputs: list[Path], out: Path, options: ImportOptions, *, force: bool, strict: bool,
               read: Callable[[list[Path], ImportOptions, ImportLog], list[Row]],
               mapping: Callable[[ImportOptions], list[tuple[str, str]]] | None = None,
               merge: bool = False, drop_ungraded: bool = False, plan: Path | None = None) -> None:
    """Reads the inputs and writes a new data folder, merges their grades onto an existing one, or adds a
    shadow-sample plan's answers to one (`plan`)."""
    from simulator.core.contract import write_folder
    from simulator.importers.folder import (
        build_tables,
        check_target,
        read_folder,
        read_reports,
        report_file,
    )
    from simulator.importers.merge import GRADE_FIELDS, merge_grades
    from simulator.importers.rows import ImportLog

    if drop_ungraded and not merge:
        raise RoutesimError("--drop-ungraded goes with --merge", fix="add --merge to grade an imported folder")
    from simulator.core.outputs import allow_replacing_folders, check_destination

    inputs = _check_inputs(inputs)
    allow_replacing_folders(force)
    if plan is not None and merge:
        raise RoutesimError("--plan adds answers, --merge adds grades: one at a time",
                            fix="import the plan's answers with --plan, then their grades with --merge")
    if merge or plan is not None:
        traffic, outcomes = read_folder(out)
        earlier = read_reports(out)
    else:
        check_target(out, force=force)
    check_destination(out, folder=True, updating=merge or plan is not None)
    log = ImportLog(fmt, [str(path) for path in inputs], mapping=mapping(options) if mapping else [])
    try:
        rows = read(inputs, options, log)
    except RoutesimError:
        if log.rows_read:  # what the files read before the failing one held is part of the answer
            _print(log)
        raise
    if merge:  # only the grade's fields are merged; usage and timing stay the traffic log's
        log.mapping = [(field, source) for field, source in log.mapping if field in GRADE_FIELDS]
    try:
        if merge:
            traffic, outcomes = merge_grades(traffic, outcomes, rows, log, drop_ungraded=drop_ungraded)
            reports = [*earlier, log.to_dict()]
        elif plan is not None:
            from simulator.importers.shadow import add_shadow_answers, read_manifest

            _, answers = build_tables(rows, log, columns=[], default_slice=options.default_slice,
                                      assume_passed=options.assume_passed)
            # The folder keeps its own traffic: what the answers' rows said about requests does not apply.
            log.summary, log.defaulted = {}, type(log.defaulted)()
            traffic, outcomes = add_shadow_answers(traffic, outcomes, answers, read_manifest(plan), log)
            reports = [*earlier, log.to_dict()]
        else:
            traffic, outcomes = build_tables(rows, log, columns=options.column_names,
                                             default_slice=options.default_slice, assume_passed=options.assume_passed)
            _hint_shared_ids(fmt, rows, options, log)
            reports = [log.to_dict()]
    except RoutesimError:
        _print(log)
        raise
    # The report comes first: what --strict or the data contract refuses below is explained by it.
    _print(log)
    if strict and log.dropped_total:
        raise RoutesimError(f"{log.dropped_total:,} row(s) were dropped and --strict is set: nothing was written",
                            where=", ".join(log.files), fix="see 'dropped' above, or import without --strict")
    write_folder(out, traffic, outcomes, report_file(reports), updating=merge or plan is not None)
    console.print(f"wrote {out} (report: {out / 'import-report.json'})", markup=False, highlight=False)


@import_app.command("otel")
def import_otel(inputs: Inputs, out: Out, slice_key: SliceKey = None, default_slice: DefaultSlice = "all",
                columns: Columns = None, request_id: RequestId = None, model_from: ModelFrom = "request",
                usage: Usage = AUTO, cost_attribute: Annotated[str | None, typer.Option(
                    help="span attribute holding the call's cost (none in the GenAI conventions)")] = None,
                cost_unit: CostUnit = "usd", assume_passed: AssumePassed = False, force: Force = False,
                strict: Strict = False):
    """OpenTelemetry GenAI spans exported as JSON lines (OTLP/JSON or SDK console format)."""
    from simulator.importers import otel

    options = _options(slice_key=slice_key, default_slice=default_slice, columns=columns, request_id_key=request_id,
                       model_from=model_from, usage_style=usage, cost_attribute=cost_attribute, cost_unit=cost_unit,
                       assume_passed=assume_passed)
    run_import("otel", inputs, out, options, force=force, strict=strict, read=otel.read, mapping=otel.mapping)


@import_app.command("litellm")
def import_litellm(inputs: Inputs, out: Out, slice_key: SliceKey = None, default_slice: DefaultSlice = "all",
                   columns: Columns = None, request_id: RequestId = None, model_from: ModelFrom = "request",
                   usage: Usage = AUTO, cost_unit: CostUnit = "usd", assume_passed: AssumePassed = False,
                   force: Force = False, strict: Strict = False):
    """LiteLLM proxy spend logs: the LiteLLM_SpendLogs table exported as CSV, JSON or JSON lines."""
    from simulator.importers import litellm

    options = _options(slice_key=slice_key, default_slice=default_slice, columns=columns, request_id_key=request_id,
                       model_from=model_from, usage_style=usage, cost_unit=cost_unit, assume_passed=assume_passed)
    run_import("litellm", inputs, out, options, force=force, strict=strict, read=litellm.read, mapping=litellm.mapping)


@import_app.command("langfuse")
def import_langfuse(inputs: Inputs, out: Out, slice_key: SliceKey = None, default_slice: DefaultSlice = "all",
                    columns: Columns = None, request_id: RequestId = None, usage: Usage = AUTO,
                    cost_unit: CostUnit = "usd", assume_passed: AssumePassed = False, force: Force = False,
                    strict: Strict = False):
    """Langfuse observation exports (JSON lines, JSON or CSV); GENERATION observations are the calls."""
    from simulator.importers import langfuse

    options = _options(slice_key=slice_key, default_slice=default_slice, columns=columns, request_id_key=request_id,
                       usage_style=usage, cost_unit=cost_unit, assume_passed=assume_passed)
    run_import("langfuse", inputs, out, options, force=force, strict=strict, read=langfuse.read,
               mapping=langfuse.mapping)


@import_app.command("openai-batch")
def import_openai_batch(inputs: Inputs, out: Out, assume_latency_ms: Annotated[float | None, typer.Option(
                            help="latency to record for every request (batch output has none)")] = None,
                        custom_id_pattern: Annotated[str | None, typer.Option(
                            help="regex with named groups that split custom_id into keys for --slice/--column")] = None,
                        slice_key: SliceKey = None, default_slice: DefaultSlice = "all", columns: Columns = None,
                        usage: Usage = AUTO, assume_passed: AssumePassed = False, force: Force = False,
                        strict: Strict = False, plan: Plan = None):
    """OpenAI Batch API output files (JSON lines)."""
    from simulator.importers import openai_batch

    options = _options(slice_key=slice_key, default_slice=default_slice, columns=columns, usage_style=usage,
                       assume_passed=assume_passed, assume_latency_ms=assume_latency_ms,
                       custom_id_pattern=custom_id_pattern)
    run_import("openai-batch", inputs, out, options, force=force, strict=strict, read=openai_batch.read,
               mapping=openai_batch.mapping, plan=plan)


@import_app.command("inspect-ai")
def import_inspect_ai(inputs: Inputs, out: Out, merge: Merge = False, scorer: Annotated[str | None, typer.Option(
                          help="scorer whose value is the grade (NAME, or NAME.KEY for a dict value)")] = None,
                      pass_threshold: Threshold = 1.0, score_scale: ScoreScale = 1.0, grader: Grader = None,
                      slice_key: SliceKey = None, columns: Columns = None, request_id: RequestId = None,
                      model_from: ModelFrom = "request", usage: Usage = AUTO, drop_ungraded: DropUngraded = False,
                      force: Force = False, strict: Strict = False):
    """inspect-ai eval logs (.json, .eval): grades to --merge, or a new folder with their usage."""
    from simulator.importers import inspect_ai

    options = _options(scorer=scorer, pass_threshold=pass_threshold, score_scale=score_scale, grader=grader,
                       slice_key=slice_key, columns=columns, request_id_key=request_id, model_from=model_from,
                       usage_style=usage)
    run_import("inspect-ai", inputs, out, options, force=force, strict=strict, read=inspect_ai.read,
               mapping=inspect_ai.mapping, merge=merge, drop_ungraded=drop_ungraded)


@import_app.command("promptfoo")
def import_promptfoo(inputs: Inputs, out: Out, merge: Merge = False, score_scale: ScoreScale = 1.0,
                     grader: Grader = None, slice_key: SliceKey = None, default_slice: DefaultSlice = "all",
                     columns: Columns = None, request_id: RequestId = None, cost_unit: CostUnit = "usd",
                     drop_ungraded: DropUngraded = False, force: Force = False, strict: Strict = False):
    """promptfoo results JSON (promptfoo eval -o results.json): grades to --merge, or a new folder."""
    from simulator.importers import promptfoo

    options = _options(score_scale=score_scale, grader=grader, slice_key=slice_key, default_slice=default_slice,
                       columns=columns, request_id_key=request_id, cost_unit=cost_unit)
    run_import("promptfoo", inputs, out, options, force=force, strict=strict, read=promptfoo.read,
               mapping=promptfoo.mapping, merge=merge, drop_ungraded=drop_ungraded)


@import_app.command("csv")
def import_csv(inputs: Inputs, out: Out, column_map: Annotated[list[str] | None, typer.Option(
                   "--map", help="FIELD=COLUMN (repeatable): which CSV column holds a contract field")] = None,
               merge: Merge = False, pass_threshold: Threshold = 1.0, score_scale: ScoreScale = 1.0,
               grader: Grader = None, columns: Columns = None,
               latency_unit: Annotated[str, typer.Option(help="ms or s")] = "ms", cost_unit: CostUnit = "usd",
               usage: Usage = AUTO, drop_ungraded: DropUngraded = False, force: Force = False, strict: Strict = False,
               plan: Plan = None):
    """A plain CSV of grades (or whole answers) with a column map."""
    from simulator.importers import grades_csv

    pairs = {}
    for spec in column_map or []:
        target, separator, column = spec.partition("=")
        if not separator or not target.strip() or not column.strip():
            raise RoutesimError(f"--map {spec!r}: give FIELD=COLUMN", fix="e.g. --map passed=is_correct")
        pairs[target.strip()] = column.strip()
    options = _options(column_map=pairs, pass_threshold=pass_threshold, score_scale=score_scale, grader=grader,
                       columns=columns, latency_unit=latency_unit, cost_unit=cost_unit, usage_style=usage)
    run_import("csv", inputs, out, options, force=force, strict=strict, merge=merge, drop_ungraded=drop_ungraded,
               read=lambda paths, opts, log: grades_csv.read(paths, opts, log, merge=merge), plan=plan)


def public_data(
    source: Annotated[Path, typer.Option(help="the public-data folder")] = SHARED_PUBLIC_DATA,
    out: Annotated[Path, typer.Option("--out", "-o", help="where the dataset folders go")] = DATA,
    force: Force = False,
):
    """Convert the public routing datasets (RouterBench, RouteLLM, RouterArena) into data folders."""
    from simulator.core.outputs import allow_replacing_folders, check_destination, note_input
    from simulator.datasets.public_data import build_all

    note_input(source)  # the dataset folders are never written into the source, nor over it
    allow_replacing_folders(force)
    check_destination(out, folder=True, updating=True)  # '-' or a file is refused before any conversion
    for folder in build_all(source, out):
        console.print(f"wrote {folder}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.command("public-data")(public_data)
