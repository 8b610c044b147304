"""The self-contained HTML routing report.

It reads the saved summaries and tables (simulator.report.build.ReportInputs) and computes nothing: every
number comes from a summary JSON or a saved table and is written with simulator.core.formats. The page works
offline from file://: Vega, Vega-Lite and vega-embed are inlined once (vl-convert's bundle), the charts'
specs sit in JSON script blocks, and a Content-Security-Policy forbids requests to any origin. Every
string from the data is HTML-escaped, and `<`, `>` and `&` in embedded JSON are written as \\u escapes so
nothing in the data can close a script tag.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable

from markupsafe import Markup, escape

from simulator.analyses.drift import describe as describe_drift
from simulator.core.formats import count, metric, ms, pct, usd
from simulator.core.metrics import METRICS
from simulator.report import charts
from simulator.report.gate import gate_fragment

CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")
EMBED_OPTIONS = {"renderer": "svg", "actions": False}
SECTIONS = [("headline", "Headline"), ("comparison", "Policy comparison"), ("cost-quality", "Cost against quality"),
            ("slices", "Per slice"), ("money", "Where the money goes"), ("latency", "Latency"),
            ("escalation", "Escalation over time"), ("provenance", "Assumptions and provenance")]
COMPARISON = ["requests", "total_cost_usd", "cost_per_1k_usd", "pass_rate", "mean_score", "latency_p50_ms",
              "latency_p95_ms", "latency_p99_ms", "escalation_rate", "retry_rate"]
HEADERS = {"requests": "Requests", "total_cost_usd": "Cost", "cost_per_1k_usd": "per 1,000 req.",
           "pass_rate": "Pass rate", "mean_score": "Score", "latency_p50_ms": "p50", "latency_p95_ms": "p95",
           "latency_p99_ms": "p99", "escalation_rate": "Escalated", "retry_rate": "Retried"}

STYLE = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d8dee4; --bad: #b22222; --bad-bg: #fdecea; --good: #1a7f37;
        --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 40px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 6px; }
p, li { max-width: 900px; }
.sub, .note, small { color: var(--muted); }
nav { margin: 12px 0 8px; font-size: 13px; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; white-space: nowrap; }
.headline { border: 1px solid var(--line); border-left: 5px solid var(--good); border-radius: 6px;
            padding: 14px 18px; background: #f6f8fa; }
.headline.none { border-left-color: var(--bad); }
.lead { font-size: 17px; margin: 0 0 10px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card .label { font-size: 12px; color: var(--muted); }
.card .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13px; }
th, td { padding: 5px 7px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; vertical-align: bottom; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
td small { display: block; font-size: 11px; }
td:first-child { white-space: nowrap; }
span.share { display: block; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.fail small { min-width: 140px; }
tr.best td:first-child { font-weight: 700; }
td.fail { background: var(--bad-bg); color: var(--bad); }
td.ok { color: var(--good); }
.charts { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
figure { margin: 10px 0; }
.vega { min-height: 60px; }
code { font-size: 12px; background: #f6f8fa; padding: 1px 4px; border-radius: 3px; }
.gate { border-left: 5px solid var(--good); padding: 2px 0 2px 14px; margin: 18px 0; }
.gate-fail { border-left-color: var(--bad); }
.gate .lead { font-size: 15px; }
.gate tr.fail td { background: var(--bad-bg); }
.gate ul.failures { color: var(--bad); }
"""

INIT_SCRIPT = """
(function () {
  var options = %s;
  var jobs = Array.prototype.map.call(document.querySelectorAll("div.vega"), function (element) {
    var spec = JSON.parse(document.getElementById(element.getAttribute("data-spec")).textContent);
    return vegaEmbed(element, spec, options).then(function (result) {
      element.setAttribute("data-rendered", "true");
      return result;
    });
  });
  Promise.all(jobs).then(
    function () { document.body.setAttribute("data-charts", "rendered"); },
    function (error) { document.body.setAttribute("data-charts", "failed"); console.error(error); });
})();
"""


def esc(value) -> Markup:
    """Text escaped for HTML; Markup (HTML built here) passes through unchanged."""
    return escape("" if value is None else value)


def _flatten(children) -> Iterable:
    for child in children:
        if isinstance(child, (list, tuple)):
            yield from _flatten(child)
        elif child is not None:
            yield child


def h(tag: str, *children, **attributes) -> Markup:
    """An element; `class_` is `class`, `data_x` is `data-x`; text children and values are escaped."""
    attrs = "".join(f' {name.rstrip("_").replace("_", "-")}="{esc(value)}"'
                    for name, value in attributes.items() if value is not None)
    return Markup(f"<{tag}{attrs}>{''.join(esc(child) for child in _flatten(children))}</{tag}>")


def num(*children, **attributes) -> Markup:
    return h("td", *children, class_="num", **attributes)


def table(headers: list, rows: list[list], numeric_from: int = 1, **attributes) -> Markup:
    head = h("tr", [h("th", title, class_="num" if index >= numeric_from else None)
                    for index, title in enumerate(headers)])
    return h("div", h("table", h("thead", head), h("tbody", rows), **attributes), class_="scroll")


def script_json(content) -> Markup:
    """JSON for a <script> block: '<', '>' and '&' escaped so the data cannot end the block."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


@functools.cache
def vega_bundle() -> str:
    """Vega, Vega-Lite (the version altair writes) and vega-embed as one script, from vl-convert."""
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    return vl_convert.javascript_bundle(vl_version=vl_version_for_vl_convert()).replace("</script", "<\\/script")


def chart_figure(name: str, chart) -> Markup:
    return h("figure", h("div", class_="vega", id=f"chart-{name}", data_spec=f"spec-{name}"),
             Markup(f'<script type="application/json" id="spec-{name}">{script_json(chart.to_dict())}</script>'))


def _when(provenance: dict) -> str:
    window = provenance.get("window")
    span = f"{window['start']} to {window['end']}, end excluded" if window else "all requests"
    return span + (f", seeded sample of {count(provenance['sample']['requests'])}" if provenance.get("sample") else "")


def _bar_verdict(summary: dict) -> Markup:
    failures = summary["bar_failures"]
    if not failures:
        return h("td", "✓ meets bar", class_="ok", data_scenario=summary["scenario"], data_metric="meets_bar")
    names = ["overall" if f["slice"] is None else f["slice"] for f in failures]
    return h("td", "✗ below bar", [h("small", name) for name in names], class_="fail",
             data_scenario=summary["scenario"], data_metric="meets_bar")


def _models(inputs) -> list[str]:
    seen = {row["model"] for summary in inputs.summaries for row in summary["by_model"]}
    if inputs.baselines:
        ranked = [m["model"] for m in sorted(inputs.baselines["models"], key=lambda m: m["cost_per_request_usd"])]
        return [m for m in ranked if m in seen] + sorted(seen - set(ranked))
    return sorted(seen)


def headline_section(inputs) -> Markup:
    top = inputs.headline
    if top["policy"] is None:
        return h("div", h("p", "No policy meets the quality bar overall and in every slice.", class_="lead",
                          data_field="none"),
                 h("p", "The per-slice table shows where each policy falls short.", class_="note"),
                 class_="headline none")
    reference = top["reference"]
    cards = [("Cost", usd(top["total_cost_usd"]), f"for {count(top['requests'])} requests", "total_cost_usd"),
             ("Pass rate", pct(top["pass_rate"]), "of final answers", "pass_rate"),
             ("Escalation rate", pct(top["escalation_rate"]),
              "no multi-step plan" if top["escalation_rate"] is None else "of requests in multi-step plans",
              "escalation_rate"),
             ("p95 latency", ms(top["latency_p95_ms"]), "per request", "latency_p95_ms")]
    note = None
    if reference is not None:
        saving, share = top["saving_usd"], top["saving_share"]
        cheaper = saving >= 0
        against = reference["name"] + (" only" if reference["kind"] == "baseline" else "")
        detail = f"{pct(None if share is None else abs(share))} {'less' if cheaper else 'more'}"
        cards.insert(1, (f"{'Saving' if cheaper else 'Extra cost'} vs {against}", usd(abs(saving)), detail,
                         "saving_usd"))
        if reference["kind"] == "baseline":
            note = (f"No scenario named flagship-everywhere was replayed, so the saving is measured against sending "
                    f"every request to {reference['name']}, the most expensive single-model baseline.")
        if reference["requests"] != top["requests"]:
            note = (note or "") + (f" {reference['name']} ran on {count(reference['requests'])} requests, so the "
                                   f"saving applies its cost per request to {top['policy']}'s requests.")
    return h("div",
             h("p", h("strong", top["policy"]), " is the cheapest policy that meets the quality bar overall and in "
               "every slice.", class_="lead", data_field="policy"),
             h("div", [h("div", h("div", label, class_="label"), h("div", value, class_="value", data_field=field),
                         h("div", detail, class_="label"), class_="card")
                       for label, value, detail, field in cards], class_="cards"),
             h("p", note, class_="note") if note else None, class_="headline")


def comparison_section(inputs) -> Markup:
    models = _models(inputs)
    best = inputs.headline["policy"]
    rows = []
    for summary, tables in zip(inputs.summaries, inputs.tables):
        name = summary["scenario"]
        values = summary | {"cost_per_1k_usd": tables["cost_per_1k_usd"]}
        shares = {row["model"]: row["call_share"] for row in summary["by_model"]}
        failed_overall = any(f["slice"] is None for f in summary["bar_failures"])
        cells = [h("td", name)]
        for key in COMPARISON:
            marked = "num fail" if key == "pass_rate" and failed_overall else "num"
            cells.append(h("td", metric(key, values[key]), class_=marked, data_scenario=name, data_metric=key))
        cells.append(h("td", [h("span", f"{model} {pct(shares[model])}", class_="share", data_scenario=name,
                                data_metric=f"call_share:{model}") for model in models if model in shares]))
        cells.append(_bar_verdict(summary))
        rows.append(h("tr", cells, class_="best" if name == best else None))
    headers = ["Policy", *[HEADERS[key] for key in COMPARISON], "Calls by model", "Quality bar"]
    policies = h("ul", [h("li", h("strong", s["scenario"]), f": {s['description']}" if s["description"] else None)
                        for s in inputs.summaries], class_="note")
    return Markup(table(headers, rows, id="comparison-table") + policies + h(
        "p", "Cost per 1,000 requests sets policies replayed on different numbers of requests side by side. "
        "Latencies are per request (calls made one after another add up). Escalated: share of requests in "
        "multi-step plans that went past the first step. Calls by model: share of the policy's calls made to each "
        "model.", class_="note"))


def _baseline_row(label, row: dict, p95: float | None) -> Markup:
    verdict = "✓" if row["meets_bar"] else "✗ " + ", ".join(row["bar_failures"])
    return h("tr", h("td", label), num(count(row["requests"])), num(usd(row["total_cost_usd"])),
             num(usd(row["cost_per_1k_usd"])), num(pct(row["pass_rate"])), num(metric("mean_score", row["mean_score"])),
             num(ms(p95)), h("td", verdict, class_="ok" if row["meets_bar"] else "fail"))


def cost_quality_section(inputs, chart) -> Markup:
    parts = [chart_figure("cost-quality", chart)]
    base = inputs.baselines
    if base is None:
        parts.append(h("p", "No baselines were saved with these results (they were replayed with "
                            "'routesim replay --save'); run 'routesim report' to add them.", class_="note"))
        return Markup("".join(parts))
    rows = [_baseline_row(f"{m['model']} only", m, m["latency_p95_ms"]) for m in base["models"]]
    if base["oracle"]:
        mix = ", ".join(f"{model} {pct(share)}" for model, share in base["oracle"]["model_share"].items())
        label = Markup(h("span", "oracle") + h("small", f"answers from: {mix}"))
        rows.append(_baseline_row(label, base["oracle"], None))
    parts.append(h("h3", f"Baselines on the requests of {base['window_of']} ({count(base['requests'])} requests)"))
    parts.append(table(["Baseline", "Requests", "Cost", "per 1,000 req.", "Pass rate", "Score", "p95", "Quality bar"],
                       rows, id="baselines-table"))
    parts.append(h("p", "A single-model baseline sends every request to one model (its first answer). The oracle "
                        "sends each request to the cheapest model whose answer passed; when none passed, it counts "
                        "a failure at the cheapest model's cost. The oracle is a lower bound no router can beat "
                        "on these answers.", class_="note"))
    if base["unpriced"]:
        unpriced = "; ".join(f"{model}: {reason}" for model, reason in base["unpriced"].items())
        parts.append(h("p", f"Left out (cannot be priced): {unpriced}", class_="note"))
    return Markup("".join(parts))


def _sweep_rows(inputs) -> list[Markup]:
    rows = []
    for summary, tables in zip(inputs.summaries, inputs.tables):
        for sweep in tables.get("sweeps", []):
            points, cheapest = sweep["points"], sweep["cheapest_at_bar"]
            current = sweep["current_threshold"]
            rows.append(h("tr", h("td", summary["scenario"]), h("td", sweep["plan"]),
                          h("td", f"step {sweep['step']} ({sweep['models'][sweep['step']]}): {sweep['over']} ≥ t"),
                          num(count(len(points))),
                          num("–" if current is None else f"{current:.4g}"),
                          num("–" if cheapest is None else f"{cheapest['threshold']:.4g}",
                              h("small", "none reaches the bar" if cheapest is None else
                                f"{usd(cheapest['cost_per_request_usd'] * 1000)}/1k · {pct(cheapest['pass_rate'])} · "
                                f"escalated {pct(cheapest['escalation_rate'])}"),
                              data_scenario=summary["scenario"], data_metric="calibrated_threshold")))
    return rows


def frontier_section(inputs, chart) -> Markup:
    found = inputs.frontier
    if not found:
        return h("p", "No frontier: it needs the single-model baselines, which these results do not hold.",
                 class_="note")
    parts = [h("h3", "Threshold sweeps and the frontier"), chart_figure("frontier", chart)] if chart else []
    sweeps = _sweep_rows(inputs)
    if sweeps:
        parts.append(table(["Policy", "Plan", "Gate swept", "Thresholds", "Current t", "Cheapest t at the bar"],
                           sweeps, numeric_from=3, id="sweeps-table"))
    rows = []
    for entry in found["policies"]:
        cpt = entry.get("cpt") or {}
        if not entry["comparable"]:
            rows.append(h("tr", h("td", entry["scenario"]), h("td", "ran on other requests than the baselines: "
                                                                    "not compared", colspan=6, class_="note")))
            continue
        rows.append(h("tr", h("td", entry["scenario"]), num(usd(entry["cost_per_request_usd"] * 1000)),
                      num(pct(entry["pass_rate"])),
                      num(pct(entry["quality_gap"]), data_scenario=entry["scenario"], data_metric="quality_gap"),
                      num(usd(None if entry["excess_cost_usd"] is None else entry["excess_cost_usd"] * 1000),
                          h("small", pct(entry["excess_cost_share"]))),
                      num(metric("mean_score", entry["aiq"]), data_scenario=entry["scenario"], data_metric="aiq"),
                      num(f"{pct(cpt['cpt_50'])} / {pct(cpt['cpt_80'])}" if cpt else "–",
                          h("small", f"{cpt['weak']} → {cpt['strong']}") if cpt else None)))
    oracle = found["oracle"]
    mixture_aiq = metric("mean_score", found["mixture_aiq"])
    parts.append(table(["Policy", "per 1,000 req.", "Pass rate", "Below frontier (pass)", "Excess cost /1k",
                        "AIQ", "CPT 50% / 80%"], rows, id="frontier-table"))
    notes = [
        f"On the {count(found['requests'])} requests of {found['requests_of']}. Frontier: the best pass rate "
        "reachable at each cost by the replayed policies, every sweep point and the single models, mixing any two "
        "at random (the upper envelope of their points). Below frontier: how many pass-rate points the frontier "
        "reaches above the policy at the same cost; excess cost: how much more the policy pays per 1,000 requests "
        "than the frontier needs for the same pass rate.",
        f"AIQ (RouterBench): the area under the policy's own envelope (its sweep points, or its one point, with the "
        f"cheapest and the most expensive single model) over the single models' cost range "
        f"({usd(found['cost_range_usd'][0] * 1000)} to {usd(found['cost_range_usd'][1] * 1000)} per 1,000 requests), "
        f"divided by the range: the mean pass rate over that range. Best random mixture of single models: "
        f"{mixture_aiq}" + ("" if not oracle else f"; oracle: {metric('mean_score', oracle['aiq'])}") + ".",
        "CPT 50% / 80% (RouteLLM), for policies that call exactly two models: the least share of requests that "
        "called the strong model among the sweep points recovering 50% / 80% of the pass-rate gap between the weak "
        "and the strong model alone.",
    ]
    parts.append(h("ul", [h("li", text) for text in notes], class_="note"))
    return Markup("".join(parts))


def slices_section(inputs) -> Markup:
    slices = sorted({row["slice"] for summary in inputs.summaries for row in summary["by_slice"]})
    rows = []
    for name in slices:
        bars = sorted({summary["slice_bars"][name] for summary in inputs.summaries if name in summary["slice_bars"]})
        cells = [h("td", name), num(" / ".join(pct(bar) for bar in bars))]
        for summary in inputs.summaries:
            row = next((r for r in summary["by_slice"] if r["slice"] == name), None)
            if row is None:
                cells.append(num("–"))
                continue
            failing = any(f["slice"] == name for f in summary["bar_failures"])
            cells.append(h("td", pct(row["pass_rate"]) + (" ✗" if failing else ""),
                           h("small", f"{usd(row['cost_per_request_usd'])}/req"),
                           h("small", f"{count(row['requests'])} req"),
                           class_="num fail" if failing else "num", data_scenario=summary["scenario"],
                           data_slice=name, data_metric="pass_rate", title=f"bar {pct(summary['slice_bars'][name])}"))
        rows.append(h("tr", cells))
    headers = ["Slice", "Bar", *[summary["scenario"] for summary in inputs.summaries]]
    return Markup(table(headers, rows, id="slices-table") + h(
        "p", "Each cell: pass rate (✗ below that policy's bar for the slice), cost per request and volume. "
        "Bar: the slice's quality bar (several values when the policies' bars differ).", class_="note"))


def _cost_matrix(inputs, part: str, key: str, table_id: str) -> Markup:
    names = sorted({row[key] for tables in inputs.tables for row in tables["cost"][part]})
    rows = []
    for name in names:
        cells = [h("td", name)]
        for summary, tables in zip(inputs.summaries, inputs.tables):
            row = next((r for r in tables["cost"][part] if r[key] == name), None)
            cells.append(num("–") if row is None else h(
                "td", usd(row["cost_usd"]), h("small", f"{pct(row['cost_share'])} · {usd(row['cost_per_1k_usd'])}/1k"),
                class_="num", data_scenario=summary["scenario"], data_metric=f"cost:{name}"))
        rows.append(h("tr", cells))
    headers = [key.capitalize(), *[summary["scenario"] for summary in inputs.summaries]]
    return table(headers, rows, id=table_id)


def money_section(inputs, by_model, by_slice) -> Markup:
    return Markup(
        h("div", chart_figure("cost-by-model", by_model), chart_figure("cost-by-slice", by_slice), class_="charts")
        + h("h3", "Cost by model") + _cost_matrix(inputs, "by_model", "model", "cost-model-table")
        + h("h3", "Cost by slice") + _cost_matrix(inputs, "by_slice", "slice", "cost-slice-table")
        + h("p", "Each cell: total cost, its share of the policy's cost and its cost per 1,000 of the policy's "
                 "requests. Checker calls appear under the checker's name.", class_="note"))


def latency_section(inputs, chart) -> Markup:
    rows = []
    for summary, tables in zip(inputs.summaries, inputs.tables):
        for index, row in enumerate(tables["latency"]):
            first = h("td", summary["scenario"], rowspan=len(tables["latency"])) if index == 0 else None
            rows.append(h("tr", first, h("td", row["group"]), num(count(row["requests"])), num(pct(row["share"])),
                          num(ms(row["p50_ms"]), data_scenario=summary["scenario"], data_metric=f"p50:{row['group']}"),
                          num(ms(row["p95_ms"])), num(ms(row["p99_ms"]))))
    return Markup(chart_figure("latency", chart) + table(
        ["Policy", "Calls per request", "Requests", "Share", "p50", "p95", "p99"], rows, numeric_from=2,
        id="latency-table")
        + h("p", "A request's calls run one after another, so every escalation or retry adds a full call's "
                 "latency: compare the 1-call and 2-call rows of a cascade.", class_="note"))


def escalation_section(inputs, chart) -> Markup:
    rows = []
    for summary, tables in zip(inputs.summaries, inputs.tables):
        for c in tables["cascades"]:
            last = c["steps"][-1] or "the last step"
            if c["cheaper_than_last"] is None:
                verdict, css = "break-even undefined (no request reached the last step, or it cost nothing)", None
            elif c["cheaper_than_last"]:
                verdict, css = f"cheaper than sending all to {last}", "ok"
            else:
                verdict, css = f"costs more than sending all to {last}", "fail"
            drift_note = describe_drift(c.get("drift") or {})
            if (c.get("drift") or {}).get("alarm"):
                verdict, css = f"{verdict}; {drift_note}", "fail"
            rows.append(h("tr", h("td", summary["scenario"]), h("td", c["plan"]),
                          h("td", " → ".join(step for step in c["steps"] if step) or f"{len(c['steps'])} steps"),
                          num(count(c["requests"])), num(usd(c["first_step_cost_usd"])),
                          num(usd(c["last_step_cost_usd"])), num(pct(c["escalation_rate"])),
                          num(pct(c["break_even_rate"]), data_scenario=summary["scenario"], data_metric="break_even"),
                          h("td", verdict, class_=css, data_scenario=summary["scenario"], data_metric="drift")))
    if not rows:
        return h("p", "No policy has a multi-step plan, so there is no escalation to follow.", class_="note")
    return Markup(chart_figure("escalation", chart) + table(
        ["Policy", "Plan", "Steps", "Requests", "First step $/req (c1)", "Last step $/req (cL)", "Escalated",
         "Break-even e*", "Verdict"], rows, numeric_from=3, id="escalation-table") + h(
        "p", "The cascade costs c1 + e × cL per request at escalation rate e; sending the same requests straight "
        "to the last step costs cL. Above e* = 1 − c1 / cL the cascade costs more. c1 is the mean cost of the first "
        "step per request of the plan; cL the mean cost of the last step per request that reached it (checker "
        "calls included, retries left out; middle steps of longer plans are left out, so the true break-even lies "
        "lower).", class_="note") + h(
        "p", "Drift: a one-sided Bernoulli CUSUM on escalations against the rate of the first third of the window, "
        "designed for a rise of 5 percentage points, with its threshold set by simulation for a 1% chance of any "
        "false alarm over the rest of the window. An orange rule marks where a sustained rise began.",
        class_="note"))


def _instant(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def _sources(summary: dict) -> Markup:
    by_source: dict[str, list[str]] = {}
    for model, source in summary["provenance"]["price_sources"].items():
        by_source.setdefault(source, []).append(model)
    return Markup("".join(h("small", f"{source}: {', '.join(models)}") for source, models in sorted(by_source.items())))


def _price_sheets(inputs) -> Markup:
    sheets = {}
    for s in inputs.summaries:
        p = s["provenance"]
        sheets.setdefault((p["prices"], p["prices_fingerprint"]), p["price_entries"])
    rows = []
    for (name, fingerprint), entries in sorted(sheets.items(), key=lambda item: str(item[0])):
        if name is None:
            rows.append(h("tr", h("td", "none"), h("td", "every call priced by its recorded cost_usd")))
            continue
        rows.append(h("tr", h("td", name, h("small", fingerprint)),
                      h("td", [h("small", f"{model}: from {', '.join(dates)}") for model, dates in entries.items()])))
    return table(["Price sheet", "Entries (in force from 00:00 UTC)"], rows, numeric_from=99, id="prices-table")


def _price_checks(checks: list[dict] | None) -> Markup:
    """Each price sheet against the recorded costs of its data (routesim prices check), flags listed."""
    if not checks:
        return Markup("")
    rows = []
    for check in checks:
        tolerance = check["tolerance"]
        verdict = (f"agrees on all {count(check['model_days'])} model/days" if not check["flagged"] else
                   f"{count(check['flagged'])} of {count(check['model_days'])} model/days differ")
        flags = [h("small", f"{group['model']} on {group['day']}: {group['cause']} "
                            f"(e.g. {', '.join(group['examples'] or [])})") for group in check["groups"]]
        rows.append(h("tr", h("td", check["prices"]), h("td", check["data"]),
                      num(count(check["calls_checked"])),
                      h("td", verdict, h("small", f"tolerance {pct(tolerance['relative'])} and "
                                                  f"{usd(tolerance['per_call_usd'])} per call"), flags)))
    return table(["Price sheet", "Data", "Calls with a recorded cost", "Against the recorded costs"], rows,
                 numeric_from=2, id="price-checks-table")


def provenance_section(inputs) -> Markup:
    rows = []
    for s in inputs.summaries:
        p, coverage = s["provenance"], s["coverage"]
        missing = ", ".join(f"{m}: {count(n)}" for m, n in coverage["missing_by_model"].items()) or "none"
        rows.append(h("tr", h("td", s["scenario"]), h("td", p["data"], h("small", p["data_fingerprint"])),
                      h("td", _when(p), h("small", f"{_instant(p['first_request'])} –"),
                        h("small", _instant(p["last_request"]))),
                      num(f"{count(coverage['requests_replayed'])} of {count(coverage['requests_selected'])}",
                          h("small", f"coverage {pct(coverage['share'])}")),
                      h("td", missing), h("td", p["prices"] or "none", _sources(s)),
                      h("td", h("code", p["scenario_hash"]), h("small", f"schema v{p['schema_version']}"))))
    assumptions = [
        "Rules see only the request; plan steps run one after another and a request's latencies add up; every "
        "call (escalation, retry, checker) is priced at its request's timestamp by the sheet entry in force, "
        "and a model the sheet does not list is priced by its recorded cost.",
        "Cheapest policy: the least total cost among policies meeting their bar overall and in every slice.",
        "Saving: against the flagship-everywhere scenario when replayed, else the most expensive single-model "
        "baseline; the difference in cost per request times the policy's requests.",
        "Baselines and the oracle use each model's first answer (sample 0) on the first scenario's requests; "
        "the oracle counts a request no model passes as a failure at the cheapest model's cost.",
        "Break-even escalation rate e* = 1 − c1 / cL (see Escalation over time); undefined when cL = 0 or no "
        "request reached the last step.",
        "Charts plot aggregated tables saved with the results; nothing is computed in the page.",
    ]
    return Markup(
        h("ul", [h("li", text) for text in assumptions])
        + table(["Policy", "Data and fingerprint", "Window and requests seen", "Requests replayed",
                 "Missing outcomes", "Models priced from", "Scenario hash"], rows, numeric_from=99,
                id="provenance-table")
        + _price_sheets(inputs)
        + _price_checks(inputs.price_checks)
        + h("h3", "Metric definitions")
        + h("ul", [h("li", h("strong", m.title), f" ({m.unit}): {m.definition}") for m in METRICS]))


def _subtitle(inputs) -> str:
    first = inputs.summaries[0]["provenance"]
    data = sorted({s["provenance"]["data"] for s in inputs.summaries})
    prices = sorted({s["provenance"]["prices"] or "recorded costs" for s in inputs.summaries})
    return (f"{count(len(inputs.summaries))} policies replayed on {', '.join(data)} "
            f"({_when(first)}), priced with {', '.join(prices)}.")


def gate_section(gates: dict) -> Markup:
    """Each scenario against the baseline through the regression gate (simulator.analyses.gate, default settings)."""
    parts = [h("p", "Each policy against the baseline, request by request, with the regression gate's default "
                    "settings (routesim gate): paired bootstrap intervals, a one-point non-inferiority margin per "
                    "slice, and the candidate's quality bars.", class_="note")]
    parts += [Markup(gate_fragment(result)) for result in gates["gates"]]
    if gates["skipped"]:
        parts.append(h("p", "Not gated: " + "; ".join(f"{item['scenario']} ({item['reason']})"
                                                      for item in gates["skipped"]), class_="note"))
    return Markup("".join(parts))


def render(inputs) -> str:
    """The report as one HTML document."""
    built = charts.all_charts(inputs)
    bodies = {
        "headline": headline_section(inputs),
        "comparison": comparison_section(inputs),
        "cost-quality": Markup(cost_quality_section(inputs, built["cost-quality"])
                               + frontier_section(inputs, built["frontier"])),
        "slices": slices_section(inputs),
        "money": money_section(inputs, built["cost-by-model"], built["cost-by-slice"]),
        "latency": latency_section(inputs, built["latency"]),
        "escalation": escalation_section(inputs, built["escalation"]),
        "provenance": provenance_section(inputs),
    }
    shown = list(SECTIONS)
    if inputs.gates:
        shown.append(("gate", f"Regression gate against {inputs.gates['baseline']}"))
        bodies["gate"] = gate_section(inputs.gates)
    sections = [h("section", h("h2", f"{index}. {title}"), bodies[key], id=key)
                for index, (key, title) in enumerate(shown, start=1)]
    nav = h("nav", [h("a", title, href=f"#{key}") for key, title in shown])
    head = (f'<meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Routing report</title><style>{STYLE}</style>")
    main = h("main", h("h1", "Routing report"), h("p", _subtitle(inputs), class_="sub"), nav, sections)
    scripts = (f"<script>{vega_bundle()}</script>"
               f"<script>{INIT_SCRIPT % script_json(EMBED_OPTIONS)}</script>")
    return f'<!DOCTYPE html>\n<html lang="en">\n<head>{head}</head>\n<body>{main}\n{scripts}\n</body>\n</html>\n'
