"""Vega-Lite charts of the report, built with altair from the saved tables (never from per-request rows).

Each builder takes the loaded report inputs and returns an altair chart whose data are a few dozen to a few
hundred aggregated rows, so a 10M-request replay plots as fast as a 1,000-request one. Labels shown in
tooltips are formatted in Python with simulator.core.formats, so a chart says "$0.0004" where the table does.
"""

from __future__ import annotations

import datetime as dt

import altair as alt
import polars as pl

from simulator.core import formats

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
WIDTH = 560
KIND_SHAPES = {"policy": "circle", "single model": "square", "oracle": "diamond"}
LATENCY_TICKS = [10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
                 500_000, 1_000_000]
PASS_TICKS = [step / 20 for step in range(21)]
QUANTILES = ("p5", "p25", "p50", "p75", "p95", "p99")
GROUP_ORDER = ["all requests", "1 model call", "2 model calls", "3+ model calls"]
GROUP_COLORS = ["#7f7f7f", "#4c78a8", "#f58518", "#e45756"]



def _cost_quality_axes(log: bool, *, padding: int) -> tuple[alt.X, alt.Y]:
    """Cost per 1,000 requests (log scale when every cost is positive) against pass rate."""
    x = alt.X("cost_per_1k_usd:Q", title="Cost per 1,000 requests" + (" (log scale)" if log else ""),
              scale=alt.Scale(type="log" if log else "linear", nice=False, padding=padding),
              axis=alt.Axis(format="$,.2~f", labelOverlap="greedy", labelSeparation=6))
    y = alt.Y("pass_rate:Q", title="Pass rate", scale=alt.Scale(zero=False, nice=True, padding=12),
              axis=alt.Axis(format=".0%", values=PASS_TICKS))
    return x, y

def _frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    return pl.DataFrame([{name: row.get(name) for name in schema} for row in rows], schema=schema)


def finish(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """The look shared by every chart: system fonts, no frame around the plot."""
    return (chart.configure(font=FONT)
            .configure_view(stroke=None)
            .configure_axis(labelFontSize=11, titleFontSize=12, titleFontWeight="normal", labelLimit=220)
            .configure_legend(labelFontSize=11, titleFontSize=12, labelLimit=260)
            .configure_title(fontSize=13, anchor="start"))


def _policy_order(inputs) -> list[str]:
    return [summary["scenario"] for summary in inputs.summaries]


def cost_quality(inputs) -> alt.TopLevelMixin:
    """Pass rate against cost per 1,000 requests: policies as coloured dots, baselines and oracle labelled."""
    rows = [{"name": s["scenario"], "kind": "policy", "cost_per_1k_usd": t["cost_per_1k_usd"],
             "pass_rate": s["pass_rate"], "requests": s["requests"]}
            for s, t in zip(inputs.summaries, inputs.tables)]
    if inputs.baselines:
        rows += [{"name": f"{m['model']} only", "kind": "single model", "cost_per_1k_usd": m["cost_per_1k_usd"],
                  "pass_rate": m["pass_rate"], "requests": m["requests"]} for m in inputs.baselines["models"]]
        oracle = inputs.baselines["oracle"]
        if oracle:
            rows.append({"name": "oracle", "kind": "oracle", "cost_per_1k_usd": oracle["cost_per_1k_usd"],
                         "pass_rate": oracle["pass_rate"], "requests": oracle["requests"]})
    for row in rows:
        row |= {"cost_label": formats.usd(row["cost_per_1k_usd"]), "pass_label": formats.pct(row["pass_rate"]),
                "requests_label": formats.count(row["requests"])}
    schema = {"name": pl.String, "kind": pl.String, "cost_per_1k_usd": pl.Float64, "pass_rate": pl.Float64,
              "requests": pl.Int64, "cost_label": pl.String, "pass_label": pl.String, "requests_label": pl.String}
    policies = _frame([row for row in rows if row["kind"] == "policy"], schema)
    references = _frame([row for row in rows if row["kind"] != "policy"], schema)
    log = all(row["cost_per_1k_usd"] > 0 for row in rows)
    x, y = _cost_quality_axes(log, padding=40)
    tooltip = [alt.Tooltip("name:N", title="name"), alt.Tooltip("kind:N", title="kind"),
               alt.Tooltip("cost_label:N", title="per 1,000 requests"), alt.Tooltip("pass_label:N", title="pass rate"),
               alt.Tooltip("requests_label:N", title="requests")]
    reference_marks = alt.Chart(references).encode(x, y, tooltip=tooltip)
    hollow = reference_marks.mark_point(size=260, strokeWidth=1.5, color="#555").encode(
        shape=alt.Shape("kind:N", title="Reference", scale=alt.Scale(domain=list(KIND_SHAPES)[1:],
                                                                      range=list(KIND_SHAPES.values())[1:])))
    names = reference_marks.mark_text(align="center", dy=-17, fontSize=11, color="#444").encode(text="name:N")
    dots = alt.Chart(policies).mark_circle(size=110, opacity=0.95, stroke="white", strokeWidth=1).encode(
        x, y, tooltip=tooltip,
        color=alt.Color("name:N", title="Policy", sort=_policy_order(inputs), scale=alt.Scale(scheme="category10")))
    bars = sorted({s["quality_bar"] for s in inputs.summaries})
    bar_rows = _frame([{"bar": bar, "label": f"quality bar {formats.pct(bar)}"} for bar in bars],
                      {"bar": pl.Float64, "label": pl.String})
    rule = alt.Chart(bar_rows).mark_rule(color="#b22222", strokeDash=[6, 4], strokeWidth=1.5).encode(y="bar:Q")
    label = alt.Chart(bar_rows).mark_text(align="left", baseline="bottom", dx=4, dy=-3, color="#b22222",
                                          fontSize=11).encode(y="bar:Q", x=alt.value(0), text="label:N")
    return finish(alt.layer(rule, label, hollow, names, dots).properties(
        width=WIDTH, height=340, title="Cost against quality (up and to the left is better)"))


def _stacked_cost(inputs, part: str, key: str, title: str) -> alt.TopLevelMixin:
    rows = []
    for summary, tables in zip(inputs.summaries, inputs.tables):
        for row in tables["cost"][part]:
            rows.append({"scenario": summary["scenario"], "part": row[key], "cost_per_1k_usd": row["cost_per_1k_usd"],
                         "cost_label": formats.usd(row["cost_usd"]), "share_label": formats.pct(row["cost_share"]),
                         "per_1k_label": formats.usd(row["cost_per_1k_usd"])})
    frame = _frame(rows, {"scenario": pl.String, "part": pl.String, "cost_per_1k_usd": pl.Float64,
                          "cost_label": pl.String, "share_label": pl.String, "per_1k_label": pl.String})
    return finish(alt.Chart(frame).mark_bar().encode(
        x=alt.X("sum(cost_per_1k_usd):Q", title="Cost per 1,000 requests", axis=alt.Axis(format="$,.2~f")),
        y=alt.Y("scenario:N", title=None, sort=_policy_order(inputs)),
        color=alt.Color("part:N", title=key, scale=alt.Scale(scheme="tableau10")),
        tooltip=[alt.Tooltip("scenario:N", title="policy"), alt.Tooltip("part:N", title=key),
                 alt.Tooltip("cost_label:N", title="cost"), alt.Tooltip("per_1k_label:N", title="per 1,000 requests"),
                 alt.Tooltip("share_label:N", title="share of the policy's cost")],
    ).properties(width=340, height=alt.Step(22), title=title))


def cost_by_model(inputs) -> alt.TopLevelMixin:
    return _stacked_cost(inputs, "by_model", "model", "Cost by model")


def cost_by_slice(inputs) -> alt.TopLevelMixin:
    return _stacked_cost(inputs, "by_slice", "slice", "Cost by slice")


def latency(inputs) -> alt.TopLevelMixin:
    """Quantile boxes of latency per policy: whisker p5 to p99, box p25 to p75, tick at the median."""
    rows = []
    for summary, tables in zip(inputs.summaries, inputs.tables):
        for row in tables["latency"]:
            rows.append(row | {"scenario": summary["scenario"], "requests_label": formats.count(row["requests"]),
                               "share_label": formats.pct(row["share"]),
                               **{f"{q}_label": formats.ms(row[f"{q}_ms"]) for q in QUANTILES}})
    schema = {"scenario": pl.String, "group": pl.String, "requests": pl.Int64, "share": pl.Float64,
              **{f"{q}_ms": pl.Float64 for q in QUANTILES}, "requests_label": pl.String, "share_label": pl.String,
              **{f"{q}_label": pl.String for q in QUANTILES}}
    frame = _frame(rows, schema)
    y = alt.Y("scenario:N", title=None, sort=_policy_order(inputs))
    offset = alt.YOffset("group:N", sort=GROUP_ORDER)
    color = alt.Color("group:N", title="Calls per request", sort=GROUP_ORDER,
                      scale=alt.Scale(domain=GROUP_ORDER, range=GROUP_COLORS))
    tooltip = [alt.Tooltip("scenario:N", title="policy"), alt.Tooltip("group:N", title="requests"),
               alt.Tooltip("requests_label:N", title="count"), alt.Tooltip("share_label:N", title="share"),
               *[alt.Tooltip(f"{q}_label:N", title=q) for q in QUANTILES]]
    x = alt.X("p5_ms:Q", title="Latency per request (ms, log scale)", scale=alt.Scale(type="log"),
              axis=alt.Axis(format=",.0f", values=LATENCY_TICKS, labelOverlap="greedy", labelSeparation=6))
    base = alt.Chart(frame).encode(y=y, yOffset=offset, color=color, tooltip=tooltip)
    whisker = base.mark_rule(strokeWidth=1.5).encode(x=x, x2="p99_ms:Q")
    box = base.mark_bar(height=8).encode(x="p25_ms:Q", x2="p75_ms:Q")
    median = base.mark_tick(color="#111", thickness=3, size=12, opacity=1).encode(x="p50_ms:Q")
    return finish(alt.layer(whisker, box, median).properties(
        width=WIDTH, height=alt.Step(11, **{"for": "offset"}),
        title="Latency per request: whisker p5–p99, box p25–p75, black tick at the median"))


def _when(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).strftime("%a %d %b %Y %H:%M")


def escalation(inputs) -> alt.TopLevelMixin | None:
    """Escalation rate over time of every multi-step plan, with its break-even rate as a dashed rule."""
    panels = []
    for summary, tables in zip(inputs.summaries, inputs.tables):
        for cascade in tables["cascades"]:
            steps = " → ".join(step for step in cascade["steps"] if step) or "first → last step"
            title = f"{summary['scenario']} · {cascade['plan']} plan ({steps}), per {cascade['bucket']}"
            series = _frame([row | {"start_label": _when(row["start"]),
                                    "rate_label": formats.pct(row["escalation_rate"]),
                                    "requests_label": formats.count(row["requests"])} for row in cascade["over_time"]],
                            {"start": pl.String, "start_label": pl.String, "requests": pl.Int64, "escalated": pl.Int64,
                             "escalation_rate": pl.Float64, "rate_label": pl.String, "requests_label": pl.String})
            line = alt.Chart(series).mark_line(point=alt.OverlayMarkDef(size=18), strokeWidth=1.5).encode(
                x=alt.X("start:T", title=f"{cascade['bucket'].capitalize()} (UTC)", scale=alt.Scale(type="utc"),
                        axis=alt.Axis(format="%a %d %b", labelAngle=0)),
                y=alt.Y("escalation_rate:Q", title="Escalation rate", scale=alt.Scale(domain=[0, 1]),
                        axis=alt.Axis(format=".0%")),
                tooltip=[alt.Tooltip("start_label:N", title="from (UTC)"),
                         alt.Tooltip("rate_label:N", title="escalated"),
                         alt.Tooltip("requests_label:N", title="requests")])
            layers = [line]
            if cascade["break_even_rate"] is not None:
                rule_rows = _frame([{"rate": cascade["break_even_rate"],
                                     "label": f"break-even {formats.pct(cascade['break_even_rate'])}"}],
                                   {"rate": pl.Float64, "label": pl.String})
                layers.append(alt.Chart(rule_rows).mark_rule(color="#b22222", strokeDash=[6, 4], clip=True)
                              .encode(y="rate:Q"))
                layers.append(alt.Chart(rule_rows).mark_text(align="right", baseline="bottom", dy=-3,
                                                             color="#b22222", fontSize=11)
                              .encode(y="rate:Q", x=alt.value(WIDTH), text="label:N"))
            layers += _alarm_layers(cascade.get("drift") or {})
            panels.append(alt.layer(*layers).properties(width=WIDTH, height=150, title=title))
    if not panels:
        return None
    return finish(alt.vconcat(*panels, spacing=24))


def _alarm_layers(found: dict) -> list:
    """A vertical rule where a sustained rise in escalations began (simulator.analyses.drift), labelled."""
    if not found.get("alarm"):
        return []
    rows = _frame([{"start": found["started_at"], "label": f"rise from {_when(found['started_at'])}",
                    "alarm_label": _when(found["alarm_at"])}],
                  {"start": pl.String, "label": pl.String, "alarm_label": pl.String})
    tooltip = [alt.Tooltip("label:N", title="sustained rise"), alt.Tooltip("alarm_label:N", title="alarm in bucket")]
    marker = alt.Chart(rows).mark_rule(color="#d97706", strokeWidth=2).encode(
        x=alt.X("start:T", scale=alt.Scale(type="utc")), tooltip=tooltip)
    label = alt.Chart(rows).mark_text(align="left", baseline="top", dx=4, dy=4, color="#b45309", fontSize=11).encode(
        x=alt.X("start:T", scale=alt.Scale(type="utc")), y=alt.value(0), text="label:N")
    return [marker, label]


FRONTIER_KINDS = {"policy": "circle", "single model": "square", "oracle": "diamond"}


def frontier(inputs) -> alt.TopLevelMixin | None:
    """Every sweep's cost-quality curve, the frontier, the best random mixture of models, and the points."""
    found = inputs.frontier
    if not found:
        return None
    curves = []
    for summary, tables in zip(inputs.summaries, inputs.tables):
        entry = next(p for p in found["policies"] if p["scenario"] == summary["scenario"])
        if not entry["comparable"]:
            continue
        for sweep in tables.get("sweeps", [])[:1]:
            name = f"{summary['scenario']} ({sweep['over']} ≥ t)"
            curves += [{"curve": name, "cost_per_1k_usd": p["cost_per_request_usd"] * 1000, "pass_rate": p["pass_rate"],
                        "threshold": p["threshold"], "label": f"t = {p['threshold']:.4g}",
                        "cost_label": formats.usd(p["cost_per_request_usd"] * 1000),
                        "pass_label": formats.pct(p["pass_rate"]),
                        "escalation_label": formats.pct(p["escalation_rate"])}
                       for p in sweep["points"] if p["requests"] == summary["requests"]]
    lines = [{"line": "frontier", "order": index, "cost_per_1k_usd": p["cost_per_request_usd"] * 1000,
              "pass_rate": p["pass_rate"], "name": p["name"]} for index, p in enumerate(found["frontier"])]
    lines += [{"line": "best mixture of two models", "order": index,
               "cost_per_1k_usd": p["cost_per_request_usd"] * 1000, "pass_rate": p["pass_rate"], "name": p["name"]}
              for index, p in enumerate(found["mixture"])]
    points = [{"name": p["scenario"], "kind": "policy", "cost_per_1k_usd": p["cost_per_request_usd"] * 1000,
               "pass_rate": p["pass_rate"]} for p in found["policies"] if p["comparable"]]
    if inputs.baselines:
        points += [{"name": f"{m['model']} only", "kind": "single model", "cost_per_1k_usd": m["cost_per_1k_usd"],
                    "pass_rate": m["pass_rate"]} for m in inputs.baselines["models"]]
    if found["oracle"]:
        points.append({"name": "oracle", "kind": "oracle", "cost_per_1k_usd": found["oracle"]["cost_per_request_usd"] * 1000,
                       "pass_rate": found["oracle"]["pass_rate"]})
    for row in points + lines:
        row |= {"cost_label": formats.usd(row["cost_per_1k_usd"]), "pass_label": formats.pct(row["pass_rate"])}
    everything = curves + lines + points
    log = all(row["cost_per_1k_usd"] > 0 for row in everything)
    x, y = _cost_quality_axes(log, padding=30)
    layers = []
    if curves:
        frame = _frame(curves, {"curve": pl.String, "cost_per_1k_usd": pl.Float64, "pass_rate": pl.Float64,
                                "threshold": pl.Float64, "label": pl.String, "cost_label": pl.String,
                                "pass_label": pl.String, "escalation_label": pl.String})
        layers.append(alt.Chart(frame).mark_line(strokeWidth=1.5, opacity=0.85, point=alt.OverlayMarkDef(size=10))
                      .encode(x, y, order="threshold:Q",
                              color=alt.Color("curve:N", title="Threshold sweep", scale=alt.Scale(scheme="tableau10")),
                              tooltip=[alt.Tooltip("curve:N", title="sweep"), alt.Tooltip("label:N", title="threshold"),
                                       alt.Tooltip("cost_label:N", title="per 1,000 requests"),
                                       alt.Tooltip("pass_label:N", title="pass rate"),
                                       alt.Tooltip("escalation_label:N", title="escalated")]))
    line_frame = _frame(lines, {"line": pl.String, "order": pl.Int64, "cost_per_1k_usd": pl.Float64,
                                "pass_rate": pl.Float64, "name": pl.String, "cost_label": pl.String,
                                "pass_label": pl.String})
    layers.append(alt.Chart(line_frame).mark_line(strokeWidth=2, interpolate="linear").encode(
        x, y, order="order:Q",
        strokeDash=alt.StrokeDash("line:N", title="Envelope", scale=alt.Scale(
            domain=["frontier", "best mixture of two models"], range=[[1, 0], [5, 4]])),
        color=alt.value("#333"),
        tooltip=[alt.Tooltip("line:N", title="envelope"), alt.Tooltip("name:N", title="vertex"),
                 alt.Tooltip("cost_label:N", title="per 1,000 requests"), alt.Tooltip("pass_label:N", title="pass rate")]))
    point_frame = _frame(points, {"name": pl.String, "kind": pl.String, "cost_per_1k_usd": pl.Float64,
                                  "pass_rate": pl.Float64, "cost_label": pl.String, "pass_label": pl.String})
    marks = alt.Chart(point_frame).encode(x, y, tooltip=[alt.Tooltip("name:N", title="name"),
                                                         alt.Tooltip("cost_label:N", title="per 1,000 requests"),
                                                         alt.Tooltip("pass_label:N", title="pass rate")])
    layers.append(marks.mark_point(size=120, strokeWidth=1.5, filled=False, color="#111").encode(
        shape=alt.Shape("kind:N", title="Point", scale=alt.Scale(domain=list(FRONTIER_KINDS),
                                                                  range=list(FRONTIER_KINDS.values())))))
    layers.append(marks.mark_text(align="left", dx=8, dy=-8, fontSize=10, color="#444").encode(text="name:N"))
    return finish(alt.layer(*layers).resolve_scale(color="independent").properties(
        width=WIDTH, height=360, title="Threshold sweeps and the cost-quality frontier (up and to the left is better)"))


def all_charts(inputs) -> dict[str, alt.TopLevelMixin | None]:
    return {"cost-quality": cost_quality(inputs), "cost-by-model": cost_by_model(inputs),
            "cost-by-slice": cost_by_slice(inputs), "latency": latency(inputs), "escalation": escalation(inputs),
            "frontier": frontier(inputs)}
