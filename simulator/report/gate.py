"""The regression gate's result as text: the cells of its table, Markdown for a pull request and HTML
(templates gate_alone.html.j2 and gate_detail.html.j2). The gate itself (simulator.analyses.gate) computes; this module only writes.
"""

from __future__ import annotations

import html

from simulator.core.errors import visible
from simulator.core.formats import DASH, confidence_level, count, pct, points, signed_ms, signed_pct, usd


def scope(row: dict) -> str:
    """The row's slice as shown in every format: a newline or other invisible character in a slice name
    is written as its escape (\\u000a), so it cannot break a table row."""
    return "overall" if row["slice"] is None else visible(row["slice"])


def cells(row: dict) -> dict[str, str]:
    """Every column of a row as text; a change as 'estimate [low, high]' in the column's unit."""
    def interval(change: dict, render) -> str:
        if change["estimate"] is None:
            return DASH
        if change["low"] is None or change["high"] is None:
            reason = "too few requests" if row.get("too_few_requests") else "no interval"
            return f"{render(change['estimate'])} [{reason}]"
        return f"{render(change['estimate'])} [{render(change['low'])}, {render(change['high'])}]"

    def number(unit_renderer):
        return lambda value: unit_renderer(value).rsplit(" ", 1)[0].removesuffix("%")

    return {
        "scope": scope(row),
        "requests": count(row["requests"]),
        "changed": count(row["changed_verdicts"]),
        "bar": pct(row["bar"]),
        "pass": f"{pct(row['baseline']['pass_rate'])} → {pct(row['candidate']['pass_rate'])}",
        "pass_change": interval(row["pass_rate_change"], number(points)),
        "tolerance": f"{row['tolerance'] * 100:.1f}",
        "cost": f"{usd(row['baseline']['cost_per_request_usd'])} → {usd(row['candidate']['cost_per_request_usd'])}",
        "cost_change": interval(row["cost_relative_change"], number(signed_pct)),
        "p95_change": interval(row["latency_p95_change_ms"], number(signed_ms)),
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
    tolerances = points(result["tolerance"]).lstrip("+")
    if result["slice_tolerances"]:
        tolerances += " (" + ", ".join(f"{name} {points(value).lstrip('+')}"
                                       for name, value in result["slice_tolerances"].items()) + ")"
    budgets = result["budgets"]
    shown = [f"cost {signed_pct(budgets['max_cost_increase'])}" if budgets["max_cost_increase"] is not None else None,
             f"p95 {signed_ms(budgets['max_p95_increase_ms'])}" if budgets["max_p95_increase_ms"] is not None else None]
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
        shown = {key: _markdown_text(value) for key, value in cells(row).items()}
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
    return {"gate_cells": cells, "gate_headline": headline, "gate_settings": settings,
            "gate_failures": failure_lines, "gate_headers": HEADERS, "gate_legend": LEGEND}


def gate_html(result: dict) -> str:
    """The gate as a standalone HTML <section>, from the report's own gate template; strings escaped."""
    from simulator.report.templating import environment

    return environment().get_template("gate_alone.html.j2").render(result=result, **template_globals())
