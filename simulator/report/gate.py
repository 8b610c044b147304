"""The regression gate's result as text: the cells of its table, Markdown for a pull request and HTML
(templates gate_alone.html.j2 and gate_detail.html.j2). The gate itself (simulator.analyses.gate) computes; this module only writes.
"""

from __future__ import annotations

import html

from simulator.analyses.gate import TOLERANCE_SLACK
from simulator.core.errors import visible
from simulator.core.formats import DASH, against, confidence_level, count, given, pct, pct_against, usd


def scope(row: dict) -> str:
    """The row's slice as shown in every format: a newline or other invisible character in a slice name
    is written as its escape (\\u000a), so it cannot break a table row."""
    return "overall" if row["slice"] is None else visible(row["slice"])


def _ends(change: dict, unit: str, floor: float | None, ceiling: float | None) -> tuple[str, str, str]:
    """A paired change's estimate, lower and upper end in `unit` (simulator.core.formats.UNITS). The ends the
    gate judges are written on their side of the threshold (formats.against): the lower end of the pass-rate
    change against `floor` (minus the tolerance, with the gate's own slack), the upper end against `ceiling`
    (a budget)."""
    return (against(change["estimate"], None, unit), against(change["low"], floor, unit, slack=TOLERANCE_SLACK),
            against(change["high"], ceiling, unit))


def change_text(change: dict | None, unit: str, floor: float | None = None, ceiling: float | None = None) -> str:
    """A paired change as 'estimate [low, high]' in `unit`, its judged ends as `_ends` writes them."""
    if not change or change.get("estimate") is None:
        return DASH
    estimate, low, high = _ends(change, unit, floor, ceiling)
    return f"{estimate} [{low}, {high}]"


def cells(row: dict, budgets: dict | None = None) -> dict[str, str]:
    """Every column of a row as text; a change as 'estimate [low, high]' in the column's unit (left out: the
    header names it). `budgets` (the result's) are judged on the overall row's upper ends: they apply to the
    whole replay."""
    def interval(change: dict, unit: str, floor: float | None = None, ceiling: float | None = None) -> str:
        if change["estimate"] is None:
            return DASH
        estimate, low, high = (text.rsplit(" ", 1)[0].removesuffix("%")
                               for text in _ends(change, unit, floor, ceiling))
        if change["low"] is None or change["high"] is None:
            reason = "too few requests" if row.get("too_few_requests") else "no interval"
            return f"{estimate} [{reason}]"
        return f"{estimate} [{low}, {high}]"

    overall = budgets if budgets and row["slice"] is None else {}
    return {
        "scope": scope(row),
        "requests": count(row["requests"]),
        "changed": count(row["changed_verdicts"]),
        "bar": given(row["bar"]),
        "pass": f"{pct(row['baseline']['pass_rate'])} → {pct_against(row['candidate']['pass_rate'], row['bar'])}",
        "pass_change": interval(row["pass_rate_change"], "points", floor=-row["tolerance"]),
        "tolerance": given(row["tolerance"], "points").lstrip("+").removesuffix(" pts"),
        "cost": f"{usd(row['baseline']['cost_per_request_usd'])} → {usd(row['candidate']['cost_per_request_usd'])}",
        "cost_change": interval(row["cost_relative_change"], "signed_pct", ceiling=overall.get("max_cost_increase")),
        "p95_change": interval(row["latency_p95_change_ms"], "signed_ms", ceiling=overall.get("max_p95_increase_ms")),
        "verdict": "fail" if row["failures"] else "undecided" if row.get("undecided") else "pass",
    }


HEADERS = {"scope": "slice", "requests": "requests", "changed": "changed", "bar": "bar", "pass": "pass rate",
           "pass_change": "Δ pass (pts)", "tolerance": "tolerance (pts)", "cost": "$/request",
           "cost_change": "Δ $/request (%)", "p95_change": "Δ p95 (ms)", "verdict": "verdict"}
LEGEND = ("baseline → candidate; Δ is the candidate minus the baseline, with its interval in brackets; "
          "changed: requests whose pass verdict differs between the two")


def headline(result: dict) -> str:
    verdict = "passed" if result["passed"] else "FAILED"
    undecided = result.get("undecided") or []
    if undecided:
        verdict += " (undecided, too few requests: " + ", ".join(
            "overall" if name is None else visible(name) for name in undecided) + ")"
    return (f"Regression gate {verdict}: candidate '{result['candidate']['name']}' against baseline "
            f"'{result['baseline']['name']}'")


def settings(result: dict) -> str:
    # Tolerances and budgets as given (+18.83%, not +18.8%): a figure is judged against these exact values.
    tolerances = given(result["tolerance"], "points").lstrip("+")
    if result["slice_tolerances"]:
        tolerances += " (" + ", ".join(f"{name} {given(value, 'points').lstrip('+')}"
                                       for name, value in result["slice_tolerances"].items()) + ")"
    budgets = result["budgets"]
    shown = [f"cost {given(budgets['max_cost_increase'], 'signed_pct')}"
             if budgets["max_cost_increase"] is not None else None,
             f"p95 {given(budgets['max_p95_increase_ms'], 'signed_ms')}"
             if budgets["max_p95_increase_ms"] is not None else None]
    budget_text = ", ".join(part for part in shown if part) or "none"
    return (f"{result['requests']:,} paired requests; {confidence_level(result['confidence'])} paired bootstrap "
            f"intervals, {result['resamples']:,} resamples, seed {result['seed']}; tolerance {tolerances}; "
            f"budgets: {budget_text}; a bar is met when {result['meets_when']}")


def failure_lines(result: dict) -> list[str]:
    return [f"{'overall' if failure['slice'] is None else visible(failure['slice'])}: {failure['message']}"
            for failure in result["failures"]]


def _markdown_text(text: str) -> str:
    """Text made inert in Markdown: control characters escaped (a newline would end a table row), HTML
    escaped, and every character Markdown gives a meaning backslash-escaped (| would split a cell)."""
    escaped = html.escape(visible(str(text)), quote=False)
    for character in "\\`*_[]|#$":
        escaped = escaped.replace(character, "\\" + character)
    return escaped


def gate_markdown(result: dict) -> str:
    """The gate as a Markdown comment for a pull request."""
    mark = "✅" if result["passed"] else "❌"
    lines = [f"### {mark} {_markdown_text(headline(result))}", "", _markdown_text(settings(result)), "",
             _markdown_text(LEGEND), ""]
    lines.append("| " + " | ".join(HEADERS.values()) + " |")
    lines.append("|" + "|".join("---" if key in ("scope", "verdict") else "---:" for key in HEADERS) + "|")
    for row in [result["overall"], *result["slices"]]:
        shown = {key: _markdown_text(value) for key, value in cells(row, result["budgets"]).items()}
        if row["slice"] is None:
            shown["scope"] = f"**{shown['scope']}**"
        if row["failures"]:
            shown["verdict"] = "**fail**"
        lines.append("| " + " | ".join(shown.values()) + " |")
    if result["failures"]:
        lines += ["", "**Failures**", ""] + [f"- {_markdown_text(line)}" for line in failure_lines(result)]
    for note in result["notes"]:
        lines += ["", f"_Note: {_markdown_text(note)}_"]
    return "\n".join(lines) + "\n"


def template_globals() -> dict:
    """The helpers the gate's templates call (gate.html.j2, gate_detail.html.j2)."""
    return {"gate_cells": cells, "gate_change": change_text, "gate_headline": headline, "gate_settings": settings,
            "gate_failures": failure_lines, "gate_headers": HEADERS, "gate_legend": LEGEND}


def gate_html(result: dict) -> str:
    """The gate as a standalone HTML <section>, from the report's own gate template; strings escaped."""
    from simulator.report.templating import environment

    return environment().get_template("gate_alone.html.j2").render(result=result, **template_globals())
