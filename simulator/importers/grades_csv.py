"""A plain CSV of grades (or of whole answers), mapped onto the contract with --map FIELD=COLUMN.

A column named like a contract field is taken without a map entry. `request_id` and `passed` (or a
`score` with --pass-threshold) are needed to merge grades; importing a new folder also needs `model`,
`ts`, `input_tokens`, `output_tokens` and `latency_ms`. Units are the user's to state: --score-scale for
a score out of 10 or 100, --latency-unit s, --cost-unit cents; cached_input_tokens is part of
input_tokens (the contract's convention) unless --usage exclusive says it comes on top. Booleans are
true/false, yes/no, 1/0, pass/fail.
"""

from __future__ import annotations

from pathlib import Path

from simulator.core.errors import RoutesimError, did_you_mean
from simulator.importers.options import LATENCY_UNITS, ImportOptions
from simulator.importers.rows import (
    ImportLog,
    Row,
    as_text,
    boolean,
    collect,
    csv_header,
    csv_rows,
    integer,
    normalise_usage,
    number,
    timestamp,
    unit_score,
)
from simulator.importers.usage import INCLUSIVE

TEXT_FIELDS = ("request_id", "model", "slice", "grader")
FIELDS = (*TEXT_FIELDS, "sample", "passed", "score", "confidence", "checker_score", "hard_check_ok", "ts",
          "input_tokens", "cached_input_tokens", "output_tokens", "latency_ms", "ttft_ms", "cost_usd")


def resolve_map(path: Path, options: ImportOptions, *, merge: bool) -> dict[str, str]:
    """field -> CSV column: the user's --map entries, then columns named like a field."""
    header = csv_header(path)
    for target, column in options.column_map.items():
        if target not in FIELDS:
            raise RoutesimError(f"--map {target}={column}: '{target}' is not a field that can be mapped."
                                f"{did_you_mean(target, FIELDS)}", fix=f"map one of {', '.join(FIELDS)}")
        if column not in header:
            raise RoutesimError(f"--map {target}={column}: the CSV has no column '{column}'."
                                f"{did_you_mean(column, header)}", where=str(path),
                                fix=f"its columns: {', '.join(header)}")
    resolved = {field: field for field in FIELDS if field in header} | dict(options.column_map)
    needed = ["request_id"] + ([] if merge else ["model", "ts", "input_tokens", "output_tokens", "latency_ms"])
    missing = [field for field in needed if field not in resolved]
    if "passed" not in resolved and "score" not in resolved:
        missing.append("passed (or score)")
    if missing:
        raise RoutesimError(f"the CSV maps no column to {', '.join(missing)}", where=str(path),
                            fix="add --map FIELD=COLUMN for each" + ("" if merge else ", or use --merge to add "
                                                                      "grades to a folder imported before"))
    for key, _ in options.columns:
        if key not in header:
            raise RoutesimError(f"--column {key}: the CSV has no column '{key}'.{did_you_mean(key, header)}",
                                where=str(path))
    return resolved


def csv_row(where: str, record: dict, fields: dict[str, str], options: ImportOptions, log: ImportLog) -> Row:
    def value(field: str):
        return record.get(fields[field]) if field in fields else None

    scale = LATENCY_UNITS[options.latency_unit]
    latency, ttft = number(value("latency_ms"), "latency"), number(value("ttft_ms"), "ttft")
    output = integer(value("output_tokens"), "output_tokens")
    usage = normalise_usage(
        integer(value("input_tokens"), "input_tokens"), integer(value("cached_input_tokens"), "cached_input_tokens"),
        None, output=output, total=None, default_style=INCLUSIVE, forced_style=options.usage_style)
    score = unit_score(value("score"), "score", scale=options.score_scale)
    passed = boolean(value("passed"), "passed")
    if passed is None and "passed" not in fields and score is not None:
        passed = score >= options.pass_threshold
    hard_check = boolean(value("hard_check_ok"), "hard_check_ok")
    row = Row(where=where, **{field: as_text(value(field)) for field in TEXT_FIELDS},
              sample=integer(value("sample"), "sample"), ts=timestamp(value("ts"), "ts"),
              **usage.fields(), output_tokens=output,
              latency_ms=None if latency is None else latency * scale, ttft_ms=None if ttft is None else ttft * scale,
              cost_usd=options.cost(number(value("cost_usd"), "cost")), ok=True if hard_check is None else hard_check,
              passed=passed, score=score, confidence=unit_score(value("confidence"), "confidence"),
              checker_score=unit_score(value("checker_score"), "checker_score"))
    if options.grader and row.grader is None:
        row.grader = options.grader
    row.columns = {name: as_text(record.get(key)) for key, name in options.columns}
    return row


def mapping(fields: dict[str, str], options: ImportOptions) -> list[tuple[str, str]]:
    units = {"latency_ms": f" ({options.latency_unit})", "ttft_ms": f" ({options.latency_unit})",
             "cost_usd": f" ({options.cost_unit})", "score": f" (/ {options.score_scale:g})"}
    described = [(field, f"column {column}{units.get(field, '')}") for field, column in fields.items()]
    if "passed" not in fields:
        described.append(("passed", f"score >= {options.pass_threshold:g}"))
    return described


def read(paths: list[Path], options: ImportOptions, log: ImportLog, *, merge: bool) -> list[Row]:
    rows = []
    for path in paths:
        fields = resolve_map(path, options, merge=merge)
        log.mapping = mapping(fields, options)
        if "passed" not in fields:
            log.note(f"passed = score >= {options.pass_threshold:g} (--pass-threshold; the CSV maps no passed column)")
        rows += collect(csv_rows(path), lambda where, record: csv_row(where, record, fields, options, log), log)
    return rows
