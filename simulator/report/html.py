"""The self-contained HTML routing report, rendered from Jinja2 templates (simulator/report/templates/).

Python hands the templates the saved summaries and tables (simulator.report.build.ReportInputs) and the
charts' Vega-Lite specs; the templates hold every word and the layout, one template per section, so a
section can be reworded or reordered without touching code. Nothing is computed here: numbers come from a
summary or a saved table and are written with simulator.core.formats (registered as filters).

Escaping: autoescape is on for every template, so every string from the data is HTML-escaped. Autoescape
does not protect `<script>` blocks, so data enters them (the charts' specs) only through `|tojson`, which
writes `<`, `>`, `&` and `'` as \\u escapes; no `|safe` is ever applied to data. The only markup passed in
as safe is the Vega bundle, which is library code, not data. The page works offline from file://: Vega,
Vega-Lite and vega-embed are inlined once (vl-convert's bundle), and a Content-Security-Policy forbids
requests to any origin.
"""

from __future__ import annotations

import functools

from markupsafe import Markup

from simulator.analyses.drift import describe as describe_drift
from simulator.core.metrics import METRICS, SESSION_METRICS
from simulator.core.prices import CACHE_LOSS_LINE
from simulator.core.verdict import describe_shortfalls
from simulator.report import charts
from simulator.report import gate as gate_text
from simulator.report.templating import environment

CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")
EMBED_OPTIONS = {"renderer": "svg", "actions": False}
# (anchor, title, template): the report's sections in order. A section whose context is empty is left out.
SECTIONS = [
    ("headline", "Verdict", "headline.html.j2"),
    ("gate", "Regression gate", "gate.html.j2"),
    ("comparison", "Policy comparison", "comparison.html.j2"),
    ("slices", "Per slice", "slices.html.j2"),
    ("over-time", "Over time", "over_time.html.j2"),
    ("cost-quality", "Cost against quality", "cost_quality.html.j2"),
    ("controls", "Controls, sessions and capacity", "controls.html.j2"),
    ("money", "Where the money goes", "money.html.j2"),
    ("latency", "Latency", "latency.html.j2"),
    ("escalation", "Escalation over time", "escalation.html.j2"),
    ("provenance", "Assumptions and provenance", "provenance.html.j2"),
]
COMPARISON = ["requests", "total_cost_usd", "cost_per_1k_usd", "pass_rate", "mean_score", "latency_p50_ms",
              "latency_p95_ms", "latency_p99_ms", "escalation_rate", "retry_rate"]
HEADERS = {"requests": "Requests", "total_cost_usd": "Cost", "cost_per_1k_usd": "per 1,000 req.",
           "pass_rate": "Pass rate", "mean_score": "Score", "latency_p50_ms": "p50", "latency_p95_ms": "p95",
           "latency_p99_ms": "p99", "escalation_rate": "Escalated", "retry_rate": "Retried"}


@functools.cache
def vega_bundle() -> Markup:
    """Vega, Vega-Lite (the version altair writes) and vega-embed as one script, from vl-convert: library
    code, the one thing marked safe."""
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    return Markup(vl_convert.javascript_bundle(vl_version=vl_version_for_vl_convert()).replace("</script", "<\\/script"))


def _models(inputs) -> list[str]:
    seen = {row["model"] for summary in inputs.summaries for row in summary["by_model"]
            if row["call_share"] is not None}  # not the prompt-cache loss line: it makes no calls
    if inputs.baselines:
        ranked = [m["model"] for m in sorted(inputs.baselines["models"], key=lambda m: m["cost_per_request_usd"])]
        return [m for m in ranked if m in seen] + sorted(seen - set(ranked))
    return sorted(seen)


def _price_sheets(inputs) -> list[dict]:
    sheets = {}
    for summary in inputs.summaries:
        p = summary["provenance"]
        sheets.setdefault((p["prices"], p["prices_fingerprint"]), p["price_entries"])
    return [{"name": name, "fingerprint": fingerprint, "entries": entries}
            for (name, fingerprint), entries in sorted(sheets.items(), key=lambda item: str(item[0]))]


def _price_sources(summary: dict) -> list[tuple[str, list[str]]]:
    by_source: dict[str, list[str]] = {}
    for model, source in summary["provenance"]["price_sources"].items():
        by_source.setdefault(source, []).append(model)
    return sorted(by_source.items())


def context(inputs) -> dict:
    """Everything the templates read: the inputs, the charts' specs, and small lookups."""
    built = charts.all_charts(inputs)
    candidates = {c["scenario"]: c for c in (inputs.recommendation or {}).get("candidates", [])}
    slices = sorted({row["slice"] for summary in inputs.summaries for row in summary["by_slice"]})
    cost_names = {part: sorted({row[key] for tables in inputs.tables for row in tables["cost"][part]})
                  for part, key in (("by_model", "model"), ("by_slice", "slice"))}
    sections = [(key, title, template) for key, title, template in SECTIONS if key != "gate" or inputs.gates]
    return {
        "inputs": inputs, "summaries": inputs.summaries, "tables": inputs.tables, "pairs": list(zip(inputs.summaries, inputs.tables)),
        "headline": inputs.headline, "recommendation": inputs.recommendation or {"policy": None, "candidates": []},
        "candidates": candidates, "baselines": inputs.baselines, "frontier": inputs.frontier, "gates": inputs.gates,
        "specs": {name: chart.to_dict() for name, chart in built.items() if chart is not None},
        "models": _models(inputs), "slices": slices, "cost_names": cost_names, "cache_loss_line": CACHE_LOSS_LINE,
        "slice_bars": {name: sorted({s["slice_bars"][name] for s in inputs.summaries if name in s["slice_bars"]})
                       for name in slices},
        "price_sheets": _price_sheets(inputs), "price_sources": _price_sources,
        "price_checks": getattr(inputs, "price_checks", None) or [],
        "coverage": getattr(inputs, "coverage", None) or [],
        "estimated": [summary for summary in inputs.summaries if summary.get("estimates")],
        "sections": [(index, key, title, template) for index, (key, title, template) in enumerate(sections, start=1)],
        "csp": CSP, "embed_options": EMBED_OPTIONS, "vega_bundle": vega_bundle(),
        "admission": inputs.summaries[0].get("admission", {"rule": "lower_bound", "confidence": 0.95}),
        "describe_drift": describe_drift, "describe_shortfalls": describe_shortfalls,
        "COMPARISON": COMPARISON, "HEADERS": HEADERS, "METRICS": METRICS, "SESSION_METRICS": SESSION_METRICS, **gate_text.template_globals(),
    }


def render(inputs) -> str:
    """The report as one HTML document."""
    return environment().get_template("report.html.j2").render(context(inputs))
