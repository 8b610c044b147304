"""Vega-Lite charts of the report, built with altair from the saved tables (never from per-request rows).

Each builder takes the loaded report inputs and returns an altair chart whose data are a few dozen to a few
hundred aggregated rows, so a 10M-request replay plots as fast as a 1,000-request one. Labels shown in
tooltips are formatted in Python with simulator.core.formats, so a chart says "$0.0004" where the table does.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import altair as alt
import numpy as np
import polars as pl

from simulator.core import formats

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
WIDTH = 560
KIND_SHAPES = {"policy": "circle", "single model": "square", "oracle": "diamond", "bound": "triangle-up"}
LATENCY_TICKS = [10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
                 500_000, 1_000_000]
PASS_TICKS = [step / 20 for step in range(21)]
QUANTILES = ("p5", "p25", "p50", "p75", "p95", "p99")
GROUP_ORDER = ["all requests", "1 model call", "2 model calls", "3+ model calls"]
GROUP_COLORS = ["#7f7f7f", "#4c78a8", "#f58518", "#e45756"]
ESCALATION_HEIGHT = 150



@dataclass(frozen=True)
class Plane:
    """A cost-quality plot's explicit scales, so label positions can be worked out in pixels here: cost per
    1,000 requests on x (log when every cost is positive), pass rate on y."""

    width: int
    height: int
    x_domain: tuple[float, float]
    y_domain: tuple[float, float]
    log: bool

    @classmethod
    def around(cls, costs: list[float], rates: list[float], width: int, height: int) -> Plane:
        log = all(cost > 0 for cost in costs)
        low, high = min(costs), max(costs)
        if log:
            spread = max(math.log10(high) - math.log10(low), 0.2) * 0.08
            x_domain = (10 ** (math.log10(low) - spread), 10 ** (math.log10(high) + spread))
        else:
            spread = max(high - low, 1e-9) * 0.08
            x_domain = (low - spread, high + spread)
        bottom = math.floor(min(rates) * 20 - 0.2) / 20
        top = min(1.0, math.ceil(max(rates) * 20 + 0.2) / 20)
        return cls(width, height, x_domain, (max(0.0, bottom), max(top, bottom + 0.05)), log)

    def x(self, value: float) -> float:
        if self.log:
            low, high = (math.log10(v) for v in self.x_domain)
            return (math.log10(value) - low) / (high - low) * self.width
        return (value - self.x_domain[0]) / (self.x_domain[1] - self.x_domain[0]) * self.width

    def y(self, value: float) -> float:
        return (1 - (value - self.y_domain[0]) / (self.y_domain[1] - self.y_domain[0])) * self.height

    def x_value(self, pixel: float) -> float:
        share = pixel / self.width
        if self.log:
            low, high = (math.log10(v) for v in self.x_domain)
            return 10 ** (low + share * (high - low))
        return self.x_domain[0] + share * (self.x_domain[1] - self.x_domain[0])

    def y_value(self, pixel: float) -> float:
        return self.y_domain[0] + (1 - pixel / self.height) * (self.y_domain[1] - self.y_domain[0])

    def axes(self) -> tuple[alt.X, alt.Y]:
        x = alt.X("cost_per_1k_usd:Q", title="Cost per 1,000 requests" + (" (log scale)" if self.log else ""),
                  scale=alt.Scale(type="log" if self.log else "linear", nice=False, domain=list(self.x_domain)),
                  axis=alt.Axis(format="$,.2~f", labelOverlap="greedy", labelSeparation=6))
        y = alt.Y("pass_rate:Q", title="Pass rate", scale=alt.Scale(nice=False, zero=False, domain=list(self.y_domain)),
                  axis=alt.Axis(format=".0%", values=[v for v in PASS_TICKS
                                                      if self.y_domain[0] - 1e-9 <= v <= self.y_domain[1] + 1e-9]))
        return x, y


# Estimated size of a label at LABEL_FONT px: wide enough for system-ui's widest common glyphs.
LABEL_FONT = 11
CHAR_WIDTH = 6.6
LINE_HEIGHT = 14
# How far (pixels) from its point's edge a label may sit, nearest first; at each distance the label is tried
# right, left, above, below, then at the four corners.
GAPS = (3, 14, 28, 44)
SIDES = [(1, 0), (-1, 0), (0, -1), (0, 1), (1, -1), (-1, -1), (1, 1), (-1, 1)]
MARK_RADIUS = 8


def place_labels(points: list[tuple[float, float, str]], plane: Plane,
                 obstacles: list[tuple[float, float, float, float]] = ()) -> list[dict]:
    """Label positions that overlap neither each other nor the points, inside the plot.

    `points` are (cost per 1,000, pass rate, label) in priority order; returns, per label that found room,
    `name`, `label_x` and `label_y` (data coordinates of the label's centre, drawn centred). A label that
    finds no room is left out: its point keeps its tooltip and the tables name it. Text widths are
    estimated (CHAR_WIDTH per character), on the generous side.
    """
    boxes = np.array([(plane.x(c) - MARK_RADIUS, plane.y(q) - MARK_RADIUS, plane.x(c) + MARK_RADIUS,
                       plane.y(q) + MARK_RADIUS) for c, q, _ in points] + list(obstacles), dtype=float).reshape(-1, 4)
    placed = []
    for cost, rate, name in points:
        half_w, half_h = len(name) * CHAR_WIDTH / 2 + 2, LINE_HEIGHT / 2
        px, py = plane.x(cost), plane.y(rate)
        for gap, (ox, oy) in ((gap, side) for gap in GAPS for side in SIDES):
            reach = MARK_RADIUS + gap
            cx = px + ox * (reach + half_w) if oy == 0 else px + ox * (half_w - MARK_RADIUS)
            cy = py + oy * (reach + half_h)
            box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
            if box[0] < 0 or box[2] > plane.width or box[1] < 0 or box[3] > plane.height:
                continue
            if np.any((box[2] > boxes[:, 0]) & (boxes[:, 2] > box[0]) & (box[3] > boxes[:, 1]) & (boxes[:, 3] > box[1])):
                continue
            boxes = np.vstack([boxes, box])
            placed.append({"name": name, "label_x": plane.x_value(cx), "label_y": plane.y_value(cy)})
            break
    return placed


def line_obstacles(paths: list[list[tuple[float, float]]], plane: Plane, step: float = 3.0,
                   half: float = 1.5) -> list[tuple[float, float, float, float]]:
    """Small boxes (pixels) every `step` pixels along drawn lines, given as (cost per 1,000, pass rate)
    vertices in drawing order, so that place_labels keeps labels off the lines (a label struck through by
    a sweep or a rule is hard to read)."""
    boxes = []
    for path in paths:
        pixels = [(plane.x(cost), plane.y(rate)) for cost, rate in path]
        boxes += [(x - half, y - half, x + half, y + half) for x, y in pixels[:1]]
        for (x0, y0), (x1, y1) in zip(pixels, pixels[1:]):
            steps = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / step))
            boxes += [(x0 + (x1 - x0) * i / steps - half, y0 + (y1 - y0) * i / steps - half,
                       x0 + (x1 - x0) * i / steps + half, y0 + (y1 - y0) * i / steps + half)
                      for i in range(1, steps + 1)]
    return boxes


def _label_layer(placed: list[dict], plane: Plane, color: str = "#444") -> alt.Chart:
    """The placed labels, centred where place_labels put them (fields named like the points' so the
    layers share their axes)."""
    frame = _frame([{"name": p["name"], "cost_per_1k_usd": p["label_x"], "pass_rate": p["label_y"]} for p in placed],
                   {"name": pl.String, "cost_per_1k_usd": pl.Float64, "pass_rate": pl.Float64})
    x, y = plane.axes()
    return alt.Chart(frame).mark_text(align="center", baseline="middle", fontSize=LABEL_FONT, color=color).encode(
        x, y, text="name:N")


def _bar_annotation(plane: Plane, bars: list[float]) -> tuple[list, list[tuple[float, float, float, float]]]:
    """The quality bar(s) as dashed rules with a label at the left, and the labels' boxes (obstacles)."""
    rows = [{"bar": bar, "label": f"quality bar {formats.given(bar)}"} for bar in bars
            if plane.y_domain[0] <= bar <= plane.y_domain[1]]
    frame = _frame(rows, {"bar": pl.Float64, "label": pl.String})
    rule = alt.Chart(frame).mark_rule(color="#b22222", strokeDash=[6, 4], strokeWidth=1.5).encode(y="bar:Q")
    label = alt.Chart(frame).mark_text(align="left", baseline="bottom", dx=4, dy=-3, color="#b22222",
                                       fontSize=LABEL_FONT).encode(y="bar:Q", x=alt.value(0), text="label:N")
    boxes = [(0, plane.y(row["bar"]) - 3 - LINE_HEIGHT, 4 + len(row["label"]) * CHAR_WIDTH, plane.y(row["bar"]))
             for row in rows]
    boxes += [(0, plane.y(row["bar"]) - 1.5, plane.width, plane.y(row["bar"]) + 1.5) for row in rows]  # the rule
    return [rule, label], boxes


def _groups(rows: list[dict], key: str) -> list[list[dict]]:
    """`rows` grouped by `key`, groups in order of first appearance."""
    found: dict = {}
    for row in rows:
        found.setdefault(row[key], []).append(row)
    return list(found.values())


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
    """Pass rate against cost per 1,000 requests: each policy its own colour and shape, baselines and the
    oracle as hollow grey shapes, every point labelled where its label overlaps nothing."""
    # A policy that reads a grade is a bound: drawn hollow with the references, never as a policy.
    # Each point's pass rate is labelled on its side of the bar it is judged against (formats.against): a
    # policy's own, the baselines' that of the scenario whose requests they ran on.
    rows = [{"name": s["scenario"], "kind": "policy" if s.get("deployable", True) else "bound",
             "cost_per_1k_usd": t["cost_per_1k_usd"], "pass_rate": s["pass_rate"], "requests": s["requests"],
             "bar": s["quality_bar"]} for s, t in zip(inputs.summaries, inputs.tables)]
    if inputs.baselines:
        bar = next((s["quality_bar"] for s in inputs.summaries if s["scenario"] == inputs.baselines["window_of"]), None)
        rows += [{"name": f"{m['model']} only", "kind": "single model", "cost_per_1k_usd": m["cost_per_1k_usd"],
                  "pass_rate": m["pass_rate"], "requests": m["requests"], "bar": bar}
                 for m in inputs.baselines["models"]]
        oracle = inputs.baselines["oracle"]
        if oracle:
            rows.append({"name": "oracle", "kind": "oracle", "cost_per_1k_usd": oracle["cost_per_1k_usd"],
                         "pass_rate": oracle["pass_rate"], "requests": oracle["requests"], "bar": bar})
    for row in rows:
        row |= {"cost_label": formats.usd(row["cost_per_1k_usd"]),
                "pass_label": formats.pct_against(row["pass_rate"], row["bar"]),
                "requests_label": formats.count(row["requests"])}
    schema = {"name": pl.String, "kind": pl.String, "cost_per_1k_usd": pl.Float64, "pass_rate": pl.Float64,
              "requests": pl.Int64, "cost_label": pl.String, "pass_label": pl.String, "requests_label": pl.String}
    policies = _frame([row for row in rows if row["kind"] == "policy"], schema)
    references = _frame([row for row in rows if row["kind"] != "policy"], schema)
    bars = sorted({s["quality_bar"] for s in inputs.summaries})
    plane = Plane.around([row["cost_per_1k_usd"] for row in rows], [row["pass_rate"] for row in rows] + bars,
                         WIDTH, 340)
    x, y = plane.axes()
    tooltip = [alt.Tooltip("name:N", title="name"), alt.Tooltip("kind:N", title="kind"),
               alt.Tooltip("cost_label:N", title="per 1,000 requests"), alt.Tooltip("pass_label:N", title="pass rate"),
               alt.Tooltip("requests_label:N", title="requests")]
    hollow = alt.Chart(references).encode(x, y, tooltip=tooltip).mark_point(size=200, strokeWidth=1.5, color="#555").encode(
        shape=alt.Shape("kind:N", title="Reference", scale=alt.Scale(domain=list(KIND_SHAPES)[1:],
                                                                      range=list(KIND_SHAPES.values())[1:])))
    names = [s["scenario"] for s in inputs.summaries if s.get("deployable", True)]
    dots = alt.Chart(policies).mark_point(size=110, opacity=0.95, filled=True).encode(
        x, y, tooltip=tooltip,
        color=alt.Color("name:N", title="Policy", sort=names, scale=alt.Scale(domain=names, range=palette(len(names)))))
    annotation, boxes = _bar_annotation(plane, bars)
    placed = place_labels([(row["cost_per_1k_usd"], row["pass_rate"], row["name"]) for row in rows], plane, boxes)
    return finish(alt.layer(*annotation, hollow, dots, _label_layer(placed, plane)).properties(width=WIDTH, height=340, title="Cost against quality (up and to the left is better)"))


# A stacked bar tells apart at most this many parts by colour; the rest are drawn as one "other" part
# (the table below the chart lists every part).
MAX_PARTS = 10


def _stacked_cost(inputs, part: str, key: str, title: str) -> alt.TopLevelMixin:
    totals: dict[str, float] = {}
    for tables in inputs.tables:
        for row in tables["cost"][part]:
            totals[row[key]] = totals.get(row[key], 0.0) + (row["cost_per_1k_usd"] or 0.0)
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    shown = ranked if len(ranked) <= MAX_PARTS else ranked[:MAX_PARTS - 1]
    other = f"{len(ranked) - len(shown)} other {key}s"
    rows = []
    for summary, tables in zip(inputs.summaries, inputs.tables):
        rest = [row for row in tables["cost"][part] if row[key] not in shown]
        for row in [row for row in tables["cost"][part] if row[key] in shown]:
            rows.append({"scenario": summary["scenario"], "part": row[key], "cost_per_1k_usd": row["cost_per_1k_usd"],
                         "cost_label": formats.usd(row["cost_usd"]), "share_label": formats.pct(row["cost_share"]),
                         "per_1k_label": formats.usd(row["cost_per_1k_usd"])})
        if rest:
            cost = sum(row["cost_usd"] for row in rest)
            per_1k = sum(row["cost_per_1k_usd"] for row in rest)
            share = sum(row["cost_share"] or 0.0 for row in rest)
            rows.append({"scenario": summary["scenario"], "part": other, "cost_per_1k_usd": per_1k,
                         "cost_label": formats.usd(cost), "share_label": formats.pct(share),
                         "per_1k_label": formats.usd(per_1k)})
    domain = shown + ([other] if len(shown) < len(ranked) else [])
    frame = _frame(rows, {"scenario": pl.String, "part": pl.String, "cost_per_1k_usd": pl.Float64,
                          "cost_label": pl.String, "share_label": pl.String, "per_1k_label": pl.String})
    return finish(alt.Chart(frame).mark_bar().encode(
        x=alt.X("sum(cost_per_1k_usd):Q", title="Cost per 1,000 requests", axis=alt.Axis(format="$,.2~f")),
        y=alt.Y("scenario:N", title=None, sort=_policy_order(inputs)),
        color=alt.Color("part:N", title=key, sort=domain, scale=alt.Scale(domain=domain, range=palette(len(domain)))),
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
                x=_time_axis(cascade["bucket"], f"{cascade['bucket'].capitalize()} (UTC)"),
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
            layers += _alarm_layers(cascade.get("drift") or {}, cascade["over_time"], cascade["break_even_rate"])
            panels.append(alt.layer(*layers).properties(width=WIDTH, height=ESCALATION_HEIGHT, title=title))
    if not panels:
        return None
    return finish(alt.vconcat(*panels, spacing=24))


def _alarm_layers(found: dict, series: list[dict], break_even: float | None = None) -> list:
    """A vertical rule where a sustained rise in escalations began (simulator.analyses.drift), labelled on
    the side of the rule with more room, so the label stays inside the panel, and at the lowest height
    where neither the series nor the break-even rule runs through it."""
    if not found.get("alarm"):
        return []
    first, last = dt.datetime.fromisoformat(series[0]["start"]), dt.datetime.fromisoformat(series[-1]["start"])
    started = dt.datetime.fromisoformat(found["started_at"])
    right_half = last > first and (started - first) / (last - first) > 0.5
    text = f"rise from {_when(found['started_at'])}"
    # The rates the series takes under the label, which spans its estimated width beside the rule.
    reach = (last - first) * ((len(text) * CHAR_WIDTH + 12) / WIDTH)
    low, high = (started - reach, started) if right_half else (started, started + reach)
    under = [row["escalation_rate"] for row in series if row["escalation_rate"] is not None
             and low <= dt.datetime.fromisoformat(row["start"]) <= high]
    under += [break_even] if break_even is not None else []
    tall, margin = (LINE_HEIGHT + 4) / ESCALATION_HEIGHT, 3 / ESCALATION_HEIGHT
    bottoms = [i / 100 for i in range(0, 101 - math.ceil(tall * 100))]
    clear = [b for b in bottoms if not any(b - margin <= rate <= b + tall for rate in under)]
    bottom = clear[0] if clear else 0.0
    rows = _frame([{"start": found["started_at"], "label": text, "alarm_label": _when(found["alarm_at"]),
                    "rate": bottom}],
                  {"start": pl.String, "label": pl.String, "alarm_label": pl.String, "rate": pl.Float64})
    tooltip = [alt.Tooltip("label:N", title="sustained rise"), alt.Tooltip("alarm_label:N", title="alarm in bucket")]
    marker = alt.Chart(rows).mark_rule(color="#d97706", strokeWidth=2).encode(
        x=alt.X("start:T", scale=alt.Scale(type="utc")), tooltip=tooltip)
    label = alt.Chart(rows).mark_text(align="right" if right_half else "left", baseline="bottom",
                                      dx=-4 if right_half else 4, dy=-2, color="#b45309", fontSize=11).encode(
        x=alt.X("start:T", scale=alt.Scale(type="utc")), y=alt.Y("rate:Q", scale=alt.Scale(domain=[0, 1])),
        text="label:N")
    return [marker, label]


FRONTIER_KINDS = {"policy": "circle", "bound": "triangle-up", "single model": "square", "oracle": "diamond",
                  "random control": "cross"}


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
    deployable = {s["scenario"]: s.get("deployable", True) for s in inputs.summaries}
    points = [{"name": p["scenario"], "kind": "policy" if deployable[p["scenario"]] else "bound",
               "cost_per_1k_usd": p["cost_per_request_usd"] * 1000,
               "pass_rate": p["pass_rate"]} for p in found["policies"] if p["comparable"]]
    # Each policy's random control at equal cost: the same cost, the pass rate a random router gets there.
    controls = {s["scenario"]: s.get("controls") for s in inputs.summaries}
    points += [{"name": f"{p['scenario']}: random control", "kind": "random control",
                "cost_per_1k_usd": controls[p["scenario"]]["random"]["cost_per_request_usd"] * 1000,
                "pass_rate": controls[p["scenario"]]["random"]["pass_rate"]}
               for p in found["policies"] if p["comparable"] and controls.get(p["scenario"])
               and controls[p["scenario"]].get("router")]
    if inputs.baselines:
        points += [{"name": f"{m['model']} only", "kind": "single model", "cost_per_1k_usd": m["cost_per_1k_usd"],
                    "pass_rate": m["pass_rate"]} for m in inputs.baselines["models"]]
    if found["oracle"]:
        points.append({"name": "oracle", "kind": "oracle", "cost_per_1k_usd": found["oracle"]["cost_per_request_usd"] * 1000,
                       "pass_rate": found["oracle"]["pass_rate"]})
    for row in points + lines:
        row |= {"cost_label": formats.usd(row["cost_per_1k_usd"]), "pass_label": formats.pct(row["pass_rate"])}
    everything = curves + lines + points
    plane = Plane.around([row["cost_per_1k_usd"] for row in everything], [row["pass_rate"] for row in everything],
                         WIDTH, 360)
    x, y = plane.axes()
    layers = []
    if curves:
        frame = _frame(curves, {"curve": pl.String, "cost_per_1k_usd": pl.Float64, "pass_rate": pl.Float64,
                                "threshold": pl.Float64, "label": pl.String, "cost_label": pl.String,
                                "pass_label": pl.String, "escalation_label": pl.String})
        layers.append(alt.Chart(frame).mark_line(strokeWidth=1.5, opacity=0.85, point=alt.OverlayMarkDef(size=10))
                      .encode(x, y, order="threshold:Q",
                              color=alt.Color("curve:N", title="Threshold sweep",
                                              scale=alt.Scale(range=palette(len({c["curve"] for c in curves})))),
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
    priority = {"policy": 0, "bound": 1, "oracle": 1, "single model": 2, "random control": 3}
    ranked = sorted(points, key=lambda p: priority[p["kind"]])
    paths = [[(row["cost_per_1k_usd"], row["pass_rate"]) for row in sorted(group, key=lambda r: r["threshold"])]
             for group in _groups(curves, "curve")]
    paths += [[(row["cost_per_1k_usd"], row["pass_rate"]) for row in sorted(group, key=lambda r: r["order"])]
              for group in _groups(lines, "line")]
    layers.append(_label_layer(place_labels([(p["cost_per_1k_usd"], p["pass_rate"], p["name"]) for p in ranked],
                                            plane, line_obstacles(paths, plane)), plane))
    return finish(alt.layer(*layers).resolve_scale(color="independent").properties(
        width=WIDTH, height=360, title="Threshold sweeps and the cost-quality frontier (up and to the left is better)"))


# Time axis labels per bucket size: a day's label never repeats within a daily series, an hour's carries
# the time so hourly ticks of one day do not all read the same date.
TIME_FORMATS = {"minute": "%H:%M", "5 minutes": "%H:%M", "hour": "%d %b %H:%M", "day": "%a %d %b", "week": "%d %b %Y"}


def _time_axis(bucket: str, title: str) -> alt.X:
    return alt.X("start:T", title=title, scale=alt.Scale(type="utc"),
                 axis=alt.Axis(format=TIME_FORMATS.get(bucket, "%d %b"), labelAngle=0, labelOverlap="greedy",
                               labelSeparation=8,
                               **({"tickCount": {"interval": bucket, "step": 1}} if bucket in ("day", "week") else {})))


def over_time(inputs) -> alt.TopLevelMixin | None:
    """Pass rate and cost per request per day (or hour) of every policy, the bar drawn on the pass rate."""
    rows = []
    for summary in inputs.summaries:
        for row in summary["over_time"]["rows"]:
            rows.append({"policy": summary["scenario"], "start": row["start"], "pass_rate": row["pass_rate"],
                         "cost_per_1k_usd": row["cost_per_request_usd"] * 1000,
                         "pass_label": formats.pct_against(row["pass_rate"],
                                                           summary["over_time"].get("bar", summary["quality_bar"])),
                         "cost_label": formats.usd(row["cost_per_request_usd"] * 1000),
                         "requests_label": formats.count(row["requests"]), "start_label": _when(row["start"])})
    if not rows:
        return None
    bucket = inputs.summaries[0]["over_time"]["bucket"]
    frame = _frame(rows, {"policy": pl.String, "start": pl.String, "pass_rate": pl.Float64,
                          "cost_per_1k_usd": pl.Float64, "pass_label": pl.String, "cost_label": pl.String,
                          "requests_label": pl.String, "start_label": pl.String})
    names = _policy_order(inputs)
    color = alt.Color("policy:N", title="Policy", sort=names, scale=alt.Scale(domain=names, range=palette(len(names))))
    shape = alt.Shape("policy:N", title="Policy", sort=names, scale=alt.Scale(domain=names, range=shapes(len(names))))
    tooltip = [alt.Tooltip("policy:N"), alt.Tooltip("start_label:N", title="from (UTC)"),
               alt.Tooltip("pass_label:N", title="pass rate"), alt.Tooltip("cost_label:N", title="per 1,000 requests"),
               alt.Tooltip("requests_label:N", title="requests")]
    x = _time_axis(bucket, f"{bucket.capitalize()} (UTC)")
    base = alt.Chart(frame).encode(x=x, color=color, tooltip=tooltip)
    passing = base.mark_line(point=alt.OverlayMarkDef(size=30, filled=True)).encode(
        y=alt.Y("pass_rate:Q", title="Pass rate", scale=alt.Scale(zero=False), axis=alt.Axis(format=".0%")),
        shape=shape)
    bars = sorted({s["quality_bar"] for s in inputs.summaries})
    bar_rows = _frame([{"bar": bar} for bar in bars], {"bar": pl.Float64})
    rule = alt.Chart(bar_rows).mark_rule(color="#b22222", strokeDash=[6, 4]).encode(y="bar:Q")
    costs = base.mark_line(point=alt.OverlayMarkDef(size=30, filled=True)).encode(
        y=alt.Y("cost_per_1k_usd:Q", title="Cost per 1,000 requests", axis=alt.Axis(format="$,.2~f")), shape=shape)
    return finish(alt.vconcat(
        alt.layer(rule, passing).properties(width=WIDTH, height=200, title=f"Pass rate per {bucket} (dashed: the quality bar)"),
        costs.properties(width=WIDTH, height=160, title=f"Cost per 1,000 requests per {bucket}"), spacing=20))


# Enough distinct colours for every policy or model a report shows (Tableau 20 and more), and shapes to
# tell apart the ones that still share a colour.
COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
          "#bab0ac", "#1f77b4", "#aec7e8", "#ff7f0e", "#2ca02c", "#98df8a", "#d62728", "#9467bd", "#c5b0d5",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39"]
SHAPES = ["circle", "square", "diamond", "triangle-up", "triangle-down", "cross", "triangle-left", "triangle-right"]


def palette(n: int) -> list[str]:
    return [COLORS[index % len(COLORS)] for index in range(n)]


def shapes(n: int) -> list[str]:
    return [SHAPES[index % len(SHAPES)] for index in range(n)]


def all_charts(inputs) -> dict[str, alt.TopLevelMixin | None]:
    return {"over-time": over_time(inputs), "cost-quality": cost_quality(inputs), "cost-by-model": cost_by_model(inputs),
            "cost-by-slice": cost_by_slice(inputs), "latency": latency(inputs), "escalation": escalation(inputs),
            "frontier": frontier(inputs)}
