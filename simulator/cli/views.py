"""Terminal views: the replay comparison, lanes and gate tables, and what `sweep`, `whatif`, `drift` and
`prices import-litellm` compute and print.

The command modules beside this one only declare options; these functions call the analyses
(simulator.analyses) and print rich tables (or JSON). Files are written atomically. Imported only once a
command runs, so the heavy libraries stay out of `routesim --help`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from simulator.cli.console import inert, print_table, print_words

from simulator.core.errors import RoutesimError, visible
from simulator.core.formats import (against, confidence_level, count, counted, given, metric, ms, pct, pct_against,
                                    signed_pct, span_against, threshold, usd, usd_decimals)
from simulator.core.metrics import METRICS, SESSION_METRICS
from simulator.core.outputs import STDOUT, atomic_file, json_output, write_csv_atomic, write_text_atomic
from simulator.core.prices import CACHE_LOSS_LINE
from simulator.core.verdict import DEFAULT_ADMISSION, Admission

if TYPE_CHECKING:  # the sweep, drift and what-if analyses load with the commands that run them
    from simulator.analyses import drift, sweep, whatif

SHOWN_POINTS = 21


# The replay comparison.

# The columns shown by default: every number whole within 80 columns. `--wide` shows every metric.
NARROW = ("cost_per_request_usd", "pass_rate", "latency_p95_ms")


def _interval(verdict: dict) -> str:
    # Each end on its side of the bar the verdict judged: 89.97–90.4, not 90.0–90.4 beside "undecided".
    return span_against(verdict["low"], verdict["high"], verdict.get("bar")).removesuffix("%")


def _shown(name: str, summary: dict, star_cost: float | None = None) -> str:
    # The pass rate is shown beside its verdict: with the digits that tell it from the bar it is judged against.
    if name == "pass_rate":
        return pct_against(summary["pass_rate"], summary["verdict"]["overall"].get("bar"))
    # The ★ rests on cost per request: every policy's is written on its side of the ★ policy's, so one that
    # "costs more per request" than it reads more ($0.00012001 beside $0.000120), not the same.
    if name == "cost_per_request_usd" and star_cost is not None:
        return against(summary[name], star_cost, "usd")
    return metric(name, summary[name])


def _star_cost(summaries: list[dict], recommendation: dict) -> float | None:
    """The recommended policy's cost per request, which every other one's is written against."""
    return next((s["cost_per_request_usd"] for s in summaries if s["scenario"] == recommendation["policy"]), None)


def _verdict_cell(summary: dict, recommended: str | None) -> str:
    state = summary["verdict"]["state"]
    if not summary.get("deployable", True):
        return "bound"
    failing = len(summary["bar_failures"])
    return state if state == "meets" else f"{state} ({failing})"


ESTIMATED = " ≈"  # marks a policy whose figures are estimates, not an exact replay of every request


def _name(summary: dict, best: str | None) -> str:
    return (summary["scenario"] + (ESTIMATED if summary.get("kind", "exact") not in ("exact", "partial") else "")
            + (" ★" if summary["scenario"] == best else ""))


def kind_lines(summaries: list[dict], recommendation: dict) -> list[str]:
    """What kind of number each estimated policy's figures are, how wide, and a warning when policies of
    different kinds were ranked together (simulator.core.verdict.recommend's `mixed_kinds`)."""
    lines = []
    for summary in summaries:
        estimates = summary.get("estimates")
        if not estimates:
            continue
        level = confidence_level(summary["admission"]["confidence"])
        shown = []
        for e in estimates["figures"]:
            if e["metric"] in ("pass_rate", "cost_per_request_usd") and e["low"] is not None:
                # The verdicts judge the pass rate's interval against the overall bar: on their side of it.
                unit, bar = (("pct", summary["verdict"]["overall"]["bar"]) if e["metric"] == "pass_rate"
                             else ("usd", None))
                shown.append(f"{against(e['value'], bar, unit)} ({against(e['low'], bar, unit)}–"
                             f"{against(e['high'], bar, unit)})")
        lines.append(f"  {summary['scenario']}{ESTIMATED}: {summary['kind']} estimates for all "
                     f"{counted(summary['requests'], 'request')} from a shadow sample of {summary['sampled']:,}, "
                     "not an exact "
                     f"replay; {level} intervals: " + ", ".join(shown) + "; verdicts judge these intervals")
    mixed = recommendation.get("mixed_kinds")
    if mixed:
        lines.append("  warning: policies ranked together have figures of different kinds: "
                     + ", ".join(f"{name} ({kind})" for name, kind in mixed.items()))
    return lines


def gate_entry(gates: dict, name: str) -> dict:
    """One policy's regression-gate verdict against the run's baseline (simulator.report.build.gates_against),
    as `replay --json` gives it: `state` is baseline, passed, failed or skipped (other requests), with the
    failing scopes."""
    entry = {"baseline": gates["baseline"], "tolerance": gates["tolerance"]}
    if name == gates["baseline"]:
        return entry | {"state": "baseline", "failures": []}
    gate = next((g for g in gates["gates"] if g["candidate"]["name"] == name), None)
    if gate is None:
        reason = next((s["reason"] for s in gates["skipped"] if s["scenario"] == name), "not gated")
        return entry | {"state": "skipped", "reason": reason, "failures": []}
    return entry | {"state": "passed" if gate["passed"] else "failed", "failures": gate["failures"]}


def _gate_cell(entry: dict) -> str:
    if entry["state"] == "failed":
        return f"FAILED ({len({f['slice'] for f in entry['failures']})})"
    return {"skipped": "–"}.get(entry["state"], entry["state"])


def comparison_lines(summaries: list[dict], recommendation: dict, gates: dict | None = None) -> list[str]:
    """The words under the comparison: what is recommended and why each other policy is not."""
    best = recommendation["policy"]
    first = summaries[0] if summaries else {}
    admission = first.get("admission", {"rule": "lower_bound", "confidence": 0.95})
    estimated = any(summary.get("estimates") for summary in summaries)
    rule = ("the observed pass rate" if admission["rule"] == "point"
            else f"the {confidence_level(admission['confidence'])} "
            + ("lower bound (Wilson, or the estimate's interval ≈)" if estimated else "Wilson lower bound"))
    gated = f" and passes the regression gate against {gates['baseline']}" if gates else ""
    tied = recommendation.get("tied")
    if best and gates and best == gates["baseline"]:
        # The baseline is not gated against itself: it is kept because nothing cheaper passes both checks.
        star = (f"★ {best} (the baseline, kept): its pass rate meets every bar ({rule} at or above it), and no "
                "cheaper deployable policy both meets every bar and passes the regression gate against it")
    elif best:
        star = (f"★ {best}: the cheapest deployable policy whose pass rate meets every bar ({rule} at or above "
                f"it){gated}")
    elif tied:
        star = (f"No policy is recommended: the largest request sets tie ({tied['requests']:,} requests each, "
                "different requests: " + "; ".join(", ".join(names) for names in tied["sets"])
                + "), and policies replayed on different requests cannot be ranked against each other. Replay them "
                "on the same requests, or name a --baseline to rank on its requests.")
    else:
        star = f"No policy qualifies: none is deployable and meets every bar ({rule} at or above it){gated}."
    if best and recommendation.get("uncertainty"):
        star += f"; {recommendation['uncertainty']}"
    lines = [star]
    if gates:
        tolerance = given(gates["tolerance"], "points").lstrip("+")
        lines.append(f"  gate: a pass-rate drop of at most {tolerance} against "
                     f"{gates['baseline']}, overall and in every slice, judged on the paired interval")
    for candidate in recommendation["candidates"]:
        if candidate["scenario"] != best and candidate["reasons"]:
            lines.append(f"  {candidate['scenario']}: " + "; ".join(candidate["reasons"]))
    for summary in summaries:
        if not summary.get("quality_bar_stated", True):
            from simulator.core.scenario import default_bar_note

            lines.append(f"  {default_bar_note(summary['scenario'])}")
        batch = summary.get("provenance", {}).get("requests_without_latency_on_batch")
        if batch:
            lines.append(f"  {summary['scenario']}: {count(batch)} request(s) ran a step on batch, which gives no "
                         "meaningful latency; the latency figures leave them out")
        share = summary.get("assumed_grades_share")
        if share:
            lines.append(f"  {summary['scenario']}: {pct(share)} of its grades were assumed from the HTTP status")
        for warning in summary.get("warnings", []):
            lines.append(f"  warning, {summary['scenario']}: {warning['message']}")
    # Each is one line: a newline or other control character in a slice, model or policy name is shown as an
    # escape (\u000a), as in the gate's and the tables' text.
    return [visible(line) for line in lines + kind_lines(summaries, recommendation)]


def comparison_table(summaries: list[dict], title: str = "Replay comparison", *, wide: bool = False,
                     recommendation: dict | None = None, gates: dict | None = None) -> Table:
    """The comparison: by default cost per request, pass rate with its interval, p95 and the verdict
    (fits 80 columns); `wide` adds every metric of the registry; `gates` (against a baseline) adds each
    policy's gate verdict beside its bar verdict."""
    from rich import box

    from simulator.core.verdict import recommend

    recommendation = recommendation or recommend(summaries)
    best = recommendation["policy"]
    level = confidence_level(summaries[0]["admission"]["confidence"] if summaries else 0.95)
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, caption_justify="left")
    table.add_column("policy", no_wrap=True)
    shown = [m for m in METRICS if wide or m.name in NARROW]
    for column in shown:
        table.add_column(column.title, justify="right", no_wrap=True)
        if column.name == "pass_rate":
            table.add_column(f"{level} CI", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    if gates:
        table.add_column("gate", no_wrap=True)
    star_cost = _star_cost(summaries, recommendation)
    for summary in summaries:
        name = inert(_name(summary, best))
        cells = []
        for m in shown:
            cells.append(_shown(m.name, summary, star_cost))
            if m.name == "pass_rate":
                cells.append(_interval(summary["verdict"]["overall"]))
        cells.append(_verdict_cell(summary, best))
        if gates:
            cells.append(_gate_cell(gate_entry(gates, summary["scenario"])))
        table.add_row(name, *cells)
    return table


def vertical_comparison(summaries: list[dict], recommendation: dict, *, wide: bool,
                        gates: dict | None = None) -> list[str]:
    """One block per policy, `name: value` lines, for consoles too narrow for the table."""
    lines = []
    star_cost = _star_cost(summaries, recommendation)
    for summary in summaries:
        lines.append(_name(summary, recommendation["policy"]))
        for m in METRICS:
            if wide or m.name in NARROW:
                value = _shown(m.name, summary, star_cost)
                if m.name == "pass_rate":
                    value += f" ({_interval(summary['verdict']['overall'])})"
                lines.append(f"  {m.title}: {value}")
        lines.append(f"  verdict: {_verdict_cell(summary, recommendation['policy'])}")
        if gates:
            lines.append(f"  gate: {_gate_cell(gate_entry(gates, summary['scenario']))}")
    return [visible(line) for line in lines]


def print_comparison(console: Console, summaries: list[dict], title: str = "Replay comparison", *,
                     wide: bool = False, recommendation: dict | None = None, gates: dict | None = None) -> None:
    """The comparison table when it fits the console, else one block per policy; then the verdict lines.
    `gates` (simulator.report.build.gates_against) adds the gate verdicts against the baseline."""
    from simulator.cli.console import fits
    from simulator.core.verdict import recommend

    recommendation = recommendation or recommend(summaries)
    table = comparison_table(summaries, title, wide=wide, recommendation=recommendation, gates=gates)
    if fits(console, table):
        print_table(console, table)
    else:
        console.print(title, highlight=False)
        for line in vertical_comparison(summaries, recommendation, wide=wide, gates=gates):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    for line in comparison_lines(summaries, recommendation, gates):
        print_words(console, line)


# Lanes.

def lanes_table(result: dict) -> Table:
    level = confidence_level(result["confidence"])
    rule = ("observed pass rate" if result["criterion"] == "point_estimate"
            else f"{level} Wilson lower bound") + " ≥ bar"
    table = Table(title=escape(f"Lanes by {result['by']}: admitted when the {rule}"),
                  caption=escape(f"fitted on {counted(result['fit']['requests'], 'request')}"
                                 + (" drawn into the shadow sample" if result["fit"].get("shadow_sample") else "")
                                 + (f" before {result['fit']['until']}" if result["fit"]["until"] else "")
                                 + "; ★ the lane: cheapest admitted model"),
                  caption_justify="left")
    for header, justify in ((result["by"], "left"), ("model", "left"), ("requests", "right"), ("pass", "right"),
                            (f"{level} interval", "right"), ("$/request", "right"), ("p95 ms", "right"),
                            ("bar", "right"), ("admitted", "center")):
        table.add_column(escape(header), justify=justify, no_wrap=True)
    for position, group in enumerate(result["groups"]):
        for index, model in enumerate(group["models"]):
            mark = " ★" if model["model"] == group["lane"] else ""
            table.add_row(inert(group["group"]) if index == 0 else "", inert(model["model"]) + mark,
                          f"{count(model['requests'])}/{count(group['requests'])}"
                          if model["requests"] != group["requests"] else count(model["requests"]),
                          pct_against(model["pass_rate"], model["bar"]),
                          f"{pct_against(model['pass_rate_low'], model['bar'])} – "
                          f"{pct_against(model['pass_rate_high'], model['bar'])}",
                          usd(model["cost_per_request_usd"]), ms(model["latency_p95_ms"]).removesuffix(" ms"),
                          given(model["bar"]), "yes" if model["admitted"] else "no",
                          end_section=index == len(group["models"]) - 1 and position < len(result["groups"]) - 1)
    return table


def lane_lines(result: dict) -> list[str]:
    lines = [result["bars"]["note"]] if result["bars"].get("note") else []
    for group in result["groups"]:
        if group["lane"]:
            lines.append(f"{group['group']} → {group['lane']} (cheapest admitted model)")
        else:
            best = next(model for model in group["models"] if model["model"] == group["route_to"])
            lines.append(f"{group['group']} → none admitted; routed to {group['route_to']}, the highest pass rate "
                         f"there ({pct_against(best['pass_rate'], group['bar'])} against a bar of "
                         f"{given(group['bar'])})")
    lines.append(f"any other {result['by']} → {result['default_model']} (highest pass rate overall)")
    cascade = result.get("cascade")
    if cascade:
        lines.append(f"each lane is a cascade: its model first, final when its hard check passes and "
                     f"'{cascade['accept']}' holds, else escalated to {cascade['escalate_to']}")
        if cascade["reads_grades"]:
            lines.append(f"the accept predicate reads the grade column(s) {', '.join(cascade['reads_grades'])}, "
                         "known only after grading: the lanes' replay is a bound, not a deployable policy")
    return lines


def _out_of_sample_rule(check: dict) -> str:
    """How the out-of-sample verdicts were reached: the lanes' admission rule, as replay judges bars."""
    if check.get("drawn") and check["rule"] == "lower_bound":  # the intervals are the estimates', not Wilson's
        return (f"the {confidence_level(check['confidence'])} lower bound of the design-weighted estimate of the "
                "pass rate reaches the bar")
    return Admission(rule=check["rule"], confidence=check["confidence"]).describe()


def out_of_sample_table(result: dict) -> Table:
    check = result["out_of_sample"]
    level = confidence_level(result["confidence"])
    table = Table(title=escape(f"Out of sample: the lanes replayed from {check['window']['start']} to "
                               f"{check['window']['end']} (not fitted on)"),
                  caption=escape(counted(check['requests'], 'request')
                                 + (f" (design-weighted from the {check['drawn']:,} drawn into the shadow sample)"
                                    if check.get("drawn") else "")
                                 + f"; pass rate {pct_against(check['pass_rate'], check['bar'])}, "
                                 f"{usd(check['cost_per_request_usd'])} per request; a bar is met when "
                                 f"{_out_of_sample_rule(check)}"),
                  caption_justify="left")
    for header in (result["by"], "routed to", "in sample", "requests", "pass", f"{level} interval", "bar",
                   "out of sample"):
        # "in sample": the routed model's admission and pass rate on the fitted traffic.
        table.add_column(escape(header), justify="left" if header in (result["by"], "routed to", "in sample",
                                                                       "out of sample") else "right", no_wrap=True)
    called_out = {name: "bold red" for name in check["failed_out_of_sample"]}
    called_out |= {name: "yellow" for name in check.get("undecided_out_of_sample", [])}
    for group in check["groups"]:
        in_sample = group["in_sample"] + (f", {pct(group['in_sample_pass_rate'])}"
                                          if group["in_sample_pass_rate"] is not None else "")
        table.add_row(inert(group["group"]), inert(group["route_to"]), in_sample, count(group["requests"]),
                      pct_against(group["pass_rate"], group["bar"]),
                      f"{pct_against(group['pass_rate_low'], group['bar'])} – "
                      f"{pct_against(group['pass_rate_high'], group['bar'])}",
                      given(group["bar"]), group["state"], style=called_out.get(group["group"]))
    return table


def out_of_sample_lines(result: dict) -> list[str]:
    """The out-of-sample verdicts in words: the lanes admitted in sample that do not meet their bar out of
    sample, the whole check in the words `routesim replay` of the emitted scenario prints, and the overall
    bar when it is not met."""
    from simulator.core.verdict import MEETS, describe_shortfalls

    check = result["out_of_sample"]
    level = confidence_level(check["confidence"])
    lines = []
    for group in check["groups"]:
        if group["in_sample"] != "admitted" or group["state"] == MEETS:
            continue
        why = ("" if check["rule"] == "point" else f", its {level} interval "
               + ("straddles the bar" if group["state"] == "undecided" else "wholly below it"))
        lines.append(f"{group['group']}: admitted in sample, but {group['state']} out of sample: pass rate "
                     f"{pct_against(group['pass_rate'], group['bar'])} against a bar of {given(group['bar'])}{why}")
    if not lines:
        lines.append("every lane admitted in sample meets its bar out of sample")
    scopes = [{"slice": None, **check, "low": check["pass_rate_low"], "high": check["pass_rate_high"]},
              *({"slice": group["group"], **group, "low": group["pass_rate_low"], "high": group["pass_rate_high"]}
                for group in check["groups"])]
    unmet = [scope for scope in scopes if scope["state"] != MEETS]
    # A replay judges the traffic's slices: lanes by another column match it only in the overall verdict.
    judged = "as replaying the lanes' scenario judges it" if result["by"] == "slice" else "by the admission rule"
    lines.append(f"out of sample, {judged}: " + (describe_shortfalls(unmet) if unmet else "meets every bar"))
    if check["state"] != MEETS:
        lines.append(f"overall: out of sample the lanes pass {pct_against(check['pass_rate'], check['bar'])} of "
                     f"requests, which {check['state'] if check['state'] == 'fails' else 'is undecided against'} "
                     f"the overall bar of {given(check['bar'])} (lanes are admitted per {result['by']}, and the mix "
                     "can shift toward harder ones)")
    return lines


# The regression gate. The terminal leaves out the tolerance (in the caption) and the absolute costs (in --json and --markdown).
# The bar goes under the slice and the changed verdicts under the requests, so that every number of the
# table stays whole within the 120 columns of a CI log.
GATE_COLUMNS = ("scope", "requests", "pass", "pass_change", "cost_change", "p95_change", "verdict")
GATE_HEADERS = {"scope": "slice, bar"}


def gate_table(result: dict) -> Table:
    from simulator.report import gate as gate_text

    table = Table(title=escape(gate_text.headline(result)), caption=escape(f"{gate_text.settings(result)}\n{gate_text.LEGEND}"),
                  caption_justify="left", show_lines=True)
    for key in GATE_COLUMNS:
        table.add_column(escape(GATE_HEADERS.get(key, gate_text.HEADERS[key])),
                         justify="left" if key in ("scope", "verdict") else "right", no_wrap=True)
    for row in [result["overall"], *result["slices"]]:
        # The text is made inert first (a slice name's newline shows as \\u000a), then the table's own line
        # breaks go in: an interval under its estimate ("[" escaped or not), to keep the table narrow for a CI log.
        cells = {key: re.sub(r" (\\?\[)", r"\n\1", inert(value), count=1)
                 for key, value in gate_text.cells(row, result["budgets"]).items()}
        cells["scope"] += f"\nbar {cells['bar']}"
        cells["requests"] += f"\n{cells['changed']} changed"
        style = "bold red" if row["failures"] else None
        table.add_row(*(cells[key] for key in GATE_COLUMNS), style=style)
    return table


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """A table as CSV, Parquet or JSON (by the file's suffix), atomically."""
    suffix = Path(path).suffix.lower()
    writers = {".parquet": frame.write_parquet,
               ".json": lambda target: Path(target).write_text(json_output(frame.to_dicts()) + "\n")}
    if suffix == ".csv":
        write_csv_atomic(frame, path)
        return
    if suffix not in writers:
        raise RoutesimError(f"cannot tell how to write {Path(path).name}", where="--out",
                            fix="name the file .csv, .parquet or .json")
    with atomic_file(path) as temporary:
        writers[suffix](temporary)


def _gate_title(scenario, gate: sweep.Gate) -> str:
    return (f"{scenario.name} · plan {gate.plan} · step {gate.step} ({gate.models[gate.step]}): "
            f"accept when hard_check_ok AND {gate.over} >= t")


# The sweep point's figure each calibration target (simulator.analyses.sweep.TARGET_*) is judged on.
TARGET_FIGURES = {"pass_rate": "pass_rate", "escalation_rate": "escalation_rate", "budget": "cost_per_request_usd"}


def _figure(point: dict, key: str, target: tuple[str, float] | None, decimals: int | None = None) -> str:
    """A sweep point's rate or cost; the one a calibration `target` is judged on written on its side of the
    target (simulator.core.formats.against), so no point reads as meeting a target it misses. A cost judged on
    nothing takes `decimals` (its column's, from usd_decimals)."""
    judged = target is not None and TARGET_FIGURES[target[0]] == key
    if key == "cost_per_request_usd" and not judged:
        return usd(point[key], decimals)
    return against(point[key], target[1] if judged else None, "usd" if key == "cost_per_request_usd" else "pct")


def _points_table(title: str, points: pl.DataFrame, marks: dict[float, str], pick: str = "★",
                  target: tuple[str, float] | None = None) -> Table:
    legend = {"●": "● the scenario's own threshold",
              pick: "★ calibrated" if pick == "★" else f"{pick} calibrated on a grade: a bound, not deployable"}
    # Only the marks the table shows (one threshold may carry both): none is calibrated without a target.
    shown_marks = "".join(marks.values())
    table = Table(title=title, caption="   ".join(text for mark, text in legend.items() if mark in shown_marks)
                  or None)
    for column in ("threshold", "gate accepted", "requests", "cost", "$/request", "pass", "escalated", "p95 ms",
                   "strong calls"):
        table.add_column(column, justify="right")
    rows = points.to_dicts()
    shown = sorted(set(np.round(np.linspace(0, len(rows) - 1, min(SHOWN_POINTS, len(rows)))).astype(int).tolist())
                   | {i for i, row in enumerate(rows) if row["threshold"] in marks})
    # Each cost column to one precision, as the report's cost tables: $0.8401 above $1.2000, not $1.20.
    total_decimals = usd_decimals(rows[index]["total_cost_usd"] for index in shown)
    per_request_decimals = usd_decimals(rows[index]["cost_per_request_usd"] for index in shown)
    for index in shown:
        row = rows[index]
        mark = marks.get(row["threshold"], "")
        table.add_row(f"{mark} {threshold(row['threshold'])}".strip(), count(row["gate_accepted"]), count(row["requests"]),
                      usd(row["total_cost_usd"], total_decimals),
                      _figure(row, "cost_per_request_usd", target, per_request_decimals),
                      _figure(row, "pass_rate", target), _figure(row, "escalation_rate", target),
                      ms(row["latency_p95_ms"]).replace(" ms", ""),
                      pct(row["strong_call_share"]))
    return table


def _point_line(point: dict, target: tuple[str, float] | None = None) -> str:
    return (f"t = {threshold(point['threshold'])}: pass {_figure(point, 'pass_rate', target)}, "
            f"{_figure(point, 'cost_per_request_usd', target)}/request, escalated "
            f"{_figure(point, 'escalation_rate', target)}, p95 {ms(point['latency_p95_ms'])}")


def run_sweep(console: Console, scenario_path: Path, *, step: int, over: str | None, plan: str | None, points: int,
              target: tuple[str, float] | None, fit_until: dt.date | None, as_json: bool, out: Path | None,
              shards: Path | None = None, runner: str = "local") -> None:
    from simulator.analyses import sweep
    from simulator.core.runner import Inputs
    from simulator.core.scenario import load_scenario

    scenario = load_scenario(scenario_path)
    admission = scenario.admission or DEFAULT_ADMISSION
    inputs = Inputs()
    data, sheet = inputs.data(scenario), inputs.prices(scenario)
    gate = sweep.resolve_gate(scenario, data, step=step, over=over, plan=plan)
    if fit_until is not None and target is None:
        raise RoutesimError("--fit-until needs a calibration target", where="--fit-until",
                            fix="add --target-pass-rate, --target-escalation-rate or --budget")
    if fit_until is not None and shards is not None:
        raise RoutesimError("--fit-until measures the chosen threshold on per-request decisions, which a sweep on "
                            "shards does not keep", where="--fit-until", fix="leave out --shards")
    if shards is not None:
        prepared = sweep.prepare_sharded(scenario, inputs, gate, shards, runner)
    elif fit_until is not None:  # the holdout measures the chosen threshold on per-request decisions
        prepared = sweep.prepare(scenario, data, sheet, gate)
    else:
        prepared = sweep.prepare_curve(scenario, inputs, gate)
    result = sweep.sweep(scenario, data, sheet, gate, points=points, prepared=prepared)
    held = (sweep.holdout(scenario, data, sheet, gate, target, fit_until, points=points, prepared=prepared)
            if fit_until else None)
    # With --fit-until the pick is the threshold calibrated on the requests before the date, the one an honest
    # validation ships; calibrated on every request it would have seen the days it is checked on.
    chosen = held.fit if held else sweep.calibrate(result.points, *target, admission) if target else None
    fitted_on = f"requests before {fit_until}" if held else "every request"
    if out:
        write_table(result.points, out)
    # A gate on a grade (known only after the answer is graded) is a bound, as a replay's verdict says: its
    # points are what no deployable gate can beat on these answers, and its pick is never one to ship.
    report = {"scenario": scenario.name, "plan": gate.plan, "step": gate.step, "model": gate.models[gate.step],
              "over": gate.over, "deployable": gate.deployable, "reads_grades": list(gate.grades),
              "current_threshold": result.current, "left_out": result.left_out, "points": result.points.to_dicts()}
    if target:
        # The admission rule picks only for a pass-rate target (and judges whether it held out of sample); the
        # JSON states it as the replay's summaries do, with the words the terminal prints.
        report["calibration"] = {"target": target[0], "value": target[1], "chosen": chosen, "fitted_on": fitted_on,
                                 "deployable": gate.deployable, "admission": (
            {"rule": admission.rule, "confidence": admission.confidence, "meets_when": admission.describe()}
            if target[0] == sweep.TARGET_PASS_RATE else None)}
    if held:
        report["holdout"] = {"fit_until": str(held.until), "fit": held.fit, "later": held.later,
                             "later_by_day": held.later_by_day, "hindsight": held.hindsight, "held": held.held}
    if as_json:
        console.print_json(json_output(report))
        return
    pick = "★" if gate.deployable else "◇"
    marks = {}
    if result.current is not None:
        marks[result.current] = "●"
    if chosen:
        marks[chosen["threshold"]] = marks.get(chosen["threshold"], "") + pick
    print_table(console, _points_table(_gate_title(scenario, gate) + f" — {count(result.points.height)} thresholds",
                                result.points, marks, pick, target))
    if not gate.deployable:
        console.print(f"bound: the swept policy reads the grade column(s) {inert(', '.join(gate.grades))}, known only "
                      "after the answer is graded, so no router can gate on it: every point is what no deployable "
                      "gate can beat on these answers, and no threshold here is one to ship.", highlight=False,
                      soft_wrap=True)
    if result.left_out:
        console.print(f"{result.left_out} threshold(s) left out: replaying them would need outcomes missing from the "
                      "data (on_missing: error).", highlight=False)
    if target:
        words = sweep.target_words(target)
        kind = "calibrated" if gate.deployable else "calibrated on a grade (a bound, not deployable)"
        console.print(f"{pick} {kind} to {words} on {fitted_on}: "
                      + (_point_line(chosen, target) if chosen else "no threshold meets it"), highlight=False,
                      soft_wrap=True)
        if target[0] == sweep.TARGET_PASS_RATE:  # the kind of estimate the pick rests on
            console.print(f"  A threshold meets it when {admission.describe()}"
                          ", the target being the bar (the admission rule).", highlight=False, soft_wrap=True)
    if held:
        _print_holdout(console, held, target)
    if out:
        console.print(f"all {count(result.points.height)} points: {out}", highlight=False)


def _print_holdout(console: Console, held: sweep.Holdout, target: tuple[str, float]) -> None:
    from simulator.analyses import sweep

    words = sweep.target_words(target)
    if held.fit is None:
        console.print(f"Fitted before {held.until}: no threshold meets {words}.", highlight=False)
        _print_hindsight(console, held, words, target)
        return
    console.print(f"Fitted on requests before {held.until} ({count(held.fit['requests'])}): "
                  + _point_line(held.fit, target), highlight=False, soft_wrap=True)
    later = held.later
    console.print(f"From {held.until} on ({counted(later['requests'], 'request')}), the same t = "
                  f"{threshold(later['threshold'])} gives pass {_figure(later, 'pass_rate', target)}, "
                  f"{_figure(later, 'cost_per_request_usd', target)}/request, escalated "
                  f"{_figure(later, 'escalation_rate', target)}: target "
                  f"{'held' if held.held else 'NOT held'} out of sample.", highlight=False, soft_wrap=True)
    table = Table(title="Calibrated threshold on the later days")
    for column in ("day", "requests", "$/request", "pass", "escalated", "p95 ms"):
        table.add_column(column, justify="right")
    for row in held.later_by_day:
        table.add_row(row["day"], count(row["requests"]), _figure(row, "cost_per_request_usd", target),
                      _figure(row, "pass_rate", target), _figure(row, "escalation_rate", target),
                      ms(row["latency_p95_ms"]).replace(" ms", ""))
    print_table(console, table)
    _print_hindsight(console, held, words, target)


def _print_hindsight(console: Console, held: sweep.Holdout, words: str, target: tuple[str, float]) -> None:
    console.print("In hindsight, the later days alone would pick " + _point_line(held.hindsight, target)
                  if held.hindsight
                  else f"In hindsight, no threshold meets {words} on the later days alone.", highlight=False)


def run_drift(console: Console, scenario_path: Path, *, every: str, settings: drift.DriftSettings,
              as_json: bool) -> None:
    from simulator.analyses import drift
    from simulator.core.engine import replay
    from simulator.core.runner import Inputs
    from simulator.core.scenario import load_scenario

    drift.check_every(every)
    settings.check()
    scenario = load_scenario(scenario_path)
    inputs = Inputs()

    result = replay(scenario, inputs.data(scenario), inputs.prices(scenario))
    plans = [label for label, steps in scenario.policy.plans() if len(steps) > 1]
    if not plans:
        raise RoutesimError("the policy has no multi-step plan, so nothing escalates", where=f"scenario '{scenario.name}'",
                            fix="watch a scenario with a cascade")
    found = [drift.cascade_drift(result.decisions, plan, every, settings) for plan in plans]
    if as_json:
        console.print_json(json_output({"scenario": scenario.name, "cascades": found}))
        return
    for cascade in found:
        test = cascade["drift"]
        statistic = {row["start"]: row["cusum"] for row in test.get("statistic", [])}
        table = Table(title=f"{scenario.name} · plan {cascade['plan']}: escalation, pass rate and cost per {every}",
                      caption=drift.describe(test) + "\nFailures (pass rate): " + drift.describe(cascade["pass_rate_drift"]))
        for column in ("from (UTC)", "requests", "escalated", "pass", "$/request", "CUSUM", "alarm"):
            table.add_column(column, justify="right")
        for row in cascade["series"]:
            note = ""
            if test.get("alarm") and row["start"] == test["started_at"]:
                note = "rise starts"
            if test.get("alarm") and row["start"] == test["alarm_at"]:
                note = (note + ", " if note else "") + "ALARM"
            cusum = statistic.get(row["start"])
            table.add_row(row["start"][:16].replace("T", " "), count(row["requests"]), pct(row["escalation_rate"]),
                          pct(row["pass_rate"]), usd(row["cost_per_request_usd"]),
                          "reference" if cusum is None else against(cusum, test["threshold"], "number"), note)
        print_table(console, table)
        if test.get("status") == "tested":
            # The settings as given (--false-alarm 0.005 is 0.5%, --min-rise 0.025 2.5 points), h as used.
            rise = given(test["min_rise"], "points").removeprefix("+").removesuffix(" pts")
            console.print(f"CUSUM threshold h = {given(test['threshold'], 'number')} for a "
                          f"{given(test['false_alarm'])} false-alarm rate over the monitored part; an alarm when "
                          f"the CUSUM is above h; designed for a rise of {rise} points "
                          f"({pct(test['reference_rate'])} → {pct(test['design_rate'])}).",
                          highlight=False)


def run_whatif(console: Console, paths: list[Path], change: whatif.PriceChange, *, target, points: int,
               as_json: bool) -> None:
    from simulator.analyses import whatif
    from simulator.core.runner import Inputs, load_scenarios

    if change.sheet is None and not change.scales and change.at is None:
        raise RoutesimError("nothing to change", where="routesim whatif",
                            fix="give --prices OTHER.yaml, --scale MODEL=FACTOR or --at DATE")
    scenarios = load_scenarios(paths)
    result = whatif.what_if(scenarios, Inputs(), change, target=target, points=points)
    if as_json:
        console.print_json(json_output(result))
        return
    cheapest = result["cheapest_meeting_bar"]
    table = Table(title=f"What if: {result['change']}",
                  caption=f"★ cheapest meeting its bar: {cheapest['current'] or 'none'} now → "
                          f"{cheapest['what_if'] or 'none'} at what-if prices")
    for column in ("policy", "pass", "verdict", "$/request now", "rank now", "$/request what-if", "rank what-if",
                   "change", "threshold now → what-if"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for now, then in zip(result["current"], result["what_if"]):
        if now.get("unreachable") or then.get("unreachable"):
            table.add_row(now["policy"], "", "", "no threshold meets the target" if now.get("unreachable") else
                          usd(now["cost_per_request_usd"]), "", "no threshold meets the target"
                          if then.get("unreachable") else usd(then["cost_per_request_usd"]), "", "", "")
            continue
        change_share = (then["cost_per_request_usd"] / now["cost_per_request_usd"] - 1
                        if now["cost_per_request_usd"] else None)
        stars = ("★" if now["policy"] == cheapest["current"] else "", "★" if then["policy"] == cheapest["what_if"] else "")
        thresholds = ("" if now["threshold"] is None else
                      f"{threshold(now['threshold'], 4)} → {threshold(then['threshold'], 4)}")
        verdict = now["verdict"]["state"] if now.get("deployable", True) else "bound"
        # The pass rate beside its verdict, on its side of the overall bar; the change signed, as every change.
        table.add_row(now["policy"], pct_against(now["pass_rate"], now["verdict"]["overall"]["bar"]), verdict,
                      f"{usd(now['cost_per_request_usd'])} {stars[0]}".strip(), count(now["rank"]),
                      f"{usd(then['cost_per_request_usd'])} {stars[1]}".strip(), count(then["rank"]),
                      signed_pct(change_share), thresholds)
    print_table(console, table)
    # Ranks and the ★ rest on one request set, as replay's do: a policy replayed on others is not ranked.
    for row in result["current"]:
        if row.get("not_ranked"):
            print_words(console, visible(f"{row['policy']}: not ranked: {row['not_ranked']}"))
    for note in result["notes"]:
        console.print(inert(note), highlight=False)
    breakeven = Table(title="Break-even escalation rate e* = 1 − c1 / cL of each cascade, now and at what-if prices",
                      caption="Above e* the cascade costs more than sending its requests straight to its last step.")
    for column in ("policy", "plan", "steps", "escalated", "e* now", "e* what-if", "verdict what-if"):
        breakeven.add_column(column, justify="left" if column in ("policy", "plan", "steps", "verdict what-if")
                             else "right")
    for now, then in zip(result["current"], result["what_if"]):
        for before, after in zip(now.get("cascades", []), then.get("cascades", [])):
            verdict = ("undefined" if after["cheaper_than_last"] is None else
                       "cheaper than its last step" if after["cheaper_than_last"] else "costs more than its last step")
            # The escalation rate and each e* are judged against each other: each is written on its side of the
            # other, so 30.0% never stands beside an e* of 30.0% and "costs more" (30.000% against 29.995%).
            escalated = before["escalation_rate"]
            breakeven.add_row(now["policy"], inert(before["plan"]), " → ".join(before["steps"]),
                              against(escalated, after["break_even_rate"]),
                              against(before["break_even_rate"], escalated),
                              against(after["break_even_rate"], escalated), verdict)
    if breakeven.row_count:
        print_table(console, breakeven)


def run_import_litellm(console: Console, file: Path, *, as_of: dt.date, models: list[str], renames: list[str],
                       out: Path | None) -> None:
    from simulator.core.outputs import note_input
    from simulator.importers.litellm_prices import check_loads_back, import_litellm, parse_renames, render_sheet

    note_input(file)  # so `-o` naming the price list itself is refused, as for every command's inputs
    sheet, keys, unmapped = import_litellm(file, as_of, models, parse_renames(renames))
    text = render_sheet(sheet, file, as_of, keys, unmapped)
    check_loads_back(text, sheet, "stdout" if out is None or str(out) == STDOUT else str(out))
    if out is None or str(out) == STDOUT:
        console.out(text, end="", highlight=False)
        return
    write_text_atomic(out, text)
    console.print(f"wrote {len(sheet['models'])} model(s) to {out}", highlight=False)
    for name, skipped in unmapped.items():
        if skipped:
            console.print(f"  {inert(name)}: not mapped: {inert(', '.join(skipped))}", highlight=False)


def run_prices_check(console: Console, data: Path, prices: Path, *, tolerance: float, tolerance_usd: float,
                     as_json: bool) -> None:
    from simulator.analyses.reconcile import Tolerance, reconcile
    from simulator.core.contract import load_data
    from simulator.core.prices import load_prices

    Tolerance(tolerance, tolerance_usd).check()
    if not prices.is_file():
        raise RoutesimError(f"price sheet not found: {prices}", where="--prices", fix="pass a price-sheet YAML file")
    result = reconcile(load_data(data), load_prices(prices), Tolerance(tolerance, tolerance_usd))
    if result.calls_checked == 0:  # a check of nothing would pass a sheet it never compared (a gate in CI)
        without = result.calls_without_recorded_cost
        held = f"none of its {without:,} call(s) records cost_usd" if without else "it holds no calls"
        raise RoutesimError(f"nothing to check the sheet against: {held}", where=str(data),
                            fix="check a data folder whose outcomes record what each call was billed (cost_usd)")
    if as_json:
        console.print_json(json_output(result.to_dict()))
        return
    table = Table(title=f"{inert(str(data))} against {inert(prices.name)}: sheet price vs recorded cost per model and day",
                  caption=f"flagged: off by more than {given(tolerance)} and {given(tolerance_usd, 'usd')} per call")
    for column in ("model", "day", "calls", "recorded", "sheet", "difference", "differing calls", "likely cause"):
        table.add_column(column, justify="left" if column in ("model", "likely cause") else "right")
    for row in result.groups.iter_rows(named=True):
        mark = "⚑ " if row["flagged"] else ""
        # The difference is judged against the tolerance on its own side of zero: written on its side of it, so
        # a flagged 1.0101% and an unflagged 0.999% do not both read 1.0% beside "off by more than 1.0%".
        difference = row["relative_difference"]
        bar = None if difference is None else math.copysign(tolerance, difference)
        table.add_row(mark + inert(row["model"]), str(row["day"]), count(row["calls"]), usd(row["recorded_usd"]),
                      usd(row["sheet_usd"]), against(difference, bar), count(row["differing_calls"]),
                      inert(row["cause"] or ""))
    print_table(console, table)
    flagged = result.flagged
    if flagged.is_empty():
        console.print(f"The sheet agrees with the recorded costs of {count(result.calls_checked)} call(s).", highlight=False)
    for row in flagged.iter_rows(named=True):
        causes = "; ".join(f"{item['cause']}: {count(item['calls'])}" for item in row["causes"] or [])
        console.print(f"⚑ {inert(row['model'])} on {row['day']}: {inert(causes)}; e.g. request(s) "
                      f"{inert(', '.join(row['examples'] or []))}", highlight=False)
    if result.calls_without_recorded_cost:
        console.print(f"{count(result.calls_without_recorded_cost)} call(s) without a recorded cost_usd were not "
                      "checked.", highlight=False)


# Honest controls and capacity, beside the replay comparison.

def controls_table(summaries: list[dict]) -> Table:
    """Each policy against its random control at equal cost and its best fixed split (second half)."""
    table = Table(title="Honest controls", caption=(
        "random: the cheapest and most expensive single model mixed to the policy's cost per request; fixed split: "
        "one model per slice fitted on the first half of the window to the policy's pass rate, scored on the "
        "second half"))
    for title, justify in (("scenario", "left"), ("Pass", "right"), ("random: pass", "right"),
                           ("2nd half: pass", "right"), ("$/request", "right"), ("split: pass", "right"),
                           ("split $/request", "right"), ("beats its controls", "center")):
        table.add_column(title, justify=justify, no_wrap=True)
    for summary in summaries:
        found = summary.get("controls")
        # Every pass rate here is written on its side of the policy's overall bar, as the comparison above writes
        # it: 89.96% there is not 90.0% here.
        bar = summary["verdict"]["overall"].get("bar")
        if found is None or "skipped" in found:
            table.add_row(inert(summary["scenario"]), pct_against(summary["pass_rate"], bar), *["–"] * 5,
                          inert(found["skipped"]) if found else "no single model answered every request")
            continue
        split = found["fixed_split"]
        mine, scored = split["policy"] or {}, split["scored"] or {}
        verdict = ("– (a single model)" if not found["router"] else
                   "no: " + ", ".join(name.replace("_", " ") for name in found["no_better_than"])
                   if found["no_better_than"] else "yes")
        table.add_row(inert(summary["scenario"]), pct_against(summary["pass_rate"], bar),
                      pct_against(found["random"]["pass_rate"], bar), pct_against(mine.get("pass_rate"), bar),
                      usd(mine.get("cost_per_request_usd")), pct_against(scored.get("pass_rate"), bar),
                      usd(scored.get("cost_per_request_usd")), verdict)
        tiers = found.get("policy_service_tiers", ["standard"])  # results saved before the key existed: standard
        if tiers != ["standard"]:  # the controls' prices are not plainly comparable
            table.caption += (f"\n{inert(summary['scenario'])}: controls priced on {found['service_tier']}" +
                              (f" (the policy mixes {', '.join(tiers)})" if len(tiers) > 1 else ", as its calls"))
    return table


def sessions_table(summaries: list[dict]) -> Table | None:
    """Every session metric per scenario (README "Metrics"), and its prompt-cache loss line (by_model: the
    calls that lost the cache and what that cost); None when the traffic has no sessions."""
    found = [summary for summary in summaries if summary.get("sessions")]
    if not found:
        return None
    table = Table(title="Sessions: a conversation's turns taken together", caption=(
        "Cache lost: model calls that lost their prompt cache because the policy switched a session to a model "
        "its previous turn did not call (those the sheet prices); Cache loss: what their cached tokens cost more "
        f"at the input rate ('{CACHE_LOSS_LINE}' in by_model)"))
    table.add_column("scenario", no_wrap=True)
    for entry in SESSION_METRICS:
        table.add_column(entry.title, justify="right", no_wrap=True)
    table.add_column("Cache lost", justify="right", no_wrap=True)
    table.add_column("Cache loss", justify="right", no_wrap=True)
    for summary in found:
        sessions = summary["sessions"]
        [line] = [row for row in summary["by_model"] if row["model"] == CACHE_LOSS_LINE] or [None]
        table.add_row(inert(summary["scenario"]), *(metric(entry.name, sessions[entry.name])
                                                    for entry in SESSION_METRICS),
                      count(line["calls"] if line else 0), usd(line["call_cost_usd"] if line else 0.0))
    return table


def capacity_table(summaries: list[dict]) -> Table | None:
    """Peak per-minute load of every model with a rate limit, and the minutes over it; None without limits."""
    rows = [(summary["scenario"], row) for summary in summaries
            for row in (summary.get("capacity") or {}).get("models", []) if row["rpm"] or row["tpm"]]
    if not rows:
        return None
    table = Table(title="Capacity: peak load per minute against each model's rate limits")
    for title, justify in (("scenario", "left"), ("model", "left"), ("peak calls/min", "right"), ("rpm", "right"),
                           ("peak tokens/min", "right"), ("tpm", "right"), ("minutes over", "right"),
                           ("first over", "left")):
        table.add_column(title, justify=justify, no_wrap=True)
    for scenario, row in rows:
        first = row["over"][0]["minute"] if row["over"] else "–"
        table.add_row(inert(scenario), inert(row["model"]), count(row["peak_calls_per_minute"]), count(row["rpm"]),
                      count(row["peak_tokens_per_minute"]), count(row["tpm"]),
                      ("[red]" + count(row["minutes_over"]) + "[/red]") if row["minutes_over"] else "0", first)
    return table
