"""The report's pipeline: replay, save results with the report's tables, then render from what was saved.

A report's results folder holds, beside each scenario's saved result (simulator.core.results), its
`tables.json` (simulator.analyses.tables.scenario_tables, plus the threshold sweeps of simulator.analyses.sweep.report_sweeps
under `sweeps`), and at the top `baselines.json` (single-model
baselines and the oracle), `price-checks.json` (each price sheet reconciled with the recorded costs of its
data, simulator.analyses.reconcile), `coverage.json` (each data folder's answers and grades per slice x
model, simulator.analyses.coverage) and `report.json` (the scenarios of the report, in order). A scenario
on a served log with a shadow sample is estimated (simulator.analyses.estimates.replay_or_estimate): its
decisions, tables, sweeps and the baselines (when it is the first) are of the drawn requests. The HTML is always
rendered from these files, so `routesim report --from` needs neither the data nor a replay, and gives the
same bytes as the first render.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from simulator.analyses import tables as analysis
from simulator.analyses.controls import set_beside
from simulator.analyses.estimates import DESIGN_WEIGHTED, replay_or_estimate, shadow_subset, weigh_gate
from simulator.analyses.sweep import report_sweeps
from simulator.core.errors import RoutesimError
from simulator.core.outputs import write_json_atomic, write_text_atomic
from simulator.core.results import (
    CALLS_FILE,
    DECISIONS_FILE,
    SUMMARY_FILE,
    drop_other_results,
    note_order,
    read_summary,
    save_result,
    saved_order,
)
from simulator.core.runner import Inputs, Outcome, load_scenarios
from simulator.core.verdict import recommend

TABLES_FILE = "tables.json"
BASELINES_FILE = "baselines.json"
MANIFEST_FILE = "report.json"
GATES_FILE = "gates.json"
PRICE_CHECKS_FILE = "price-checks.json"
COVERAGE_FILE = "coverage.json"


@dataclass(frozen=True)
class ReportInputs:
    """What the HTML report shows: summaries and tables in report order, baselines, the headline."""

    summaries: list[dict]
    tables: list[dict]
    baselines: dict | None
    headline: dict
    frontier: dict | None = None  # simulator.analyses.tables.frontier_table, computed from the saved tables
    gates: dict | None = None  # every scenario gated against the baseline (see `gates_against`)
    price_checks: list[dict] | None = None  # each sheet against its data's recorded costs (`price_checks`)
    coverage: list[dict] | None = None  # per data folder, answers and grades per slice x model (`coverage_tables`)
    recommendation: dict | None = None  # simulator.core.verdict.recommend over the summaries and gates


def default_results_dir(out: Path) -> Path:
    """reports/NAME.html keeps its results in reports/NAME-results/."""
    out = Path(out)
    return out.with_name(f"{out.stem}-results")


def gates_against(baseline: str, outcomes: list[Outcome], tolerance: float | None = None,
                  inputs: Inputs | None = None) -> dict:
    """Every other scenario replayed on the baseline's requests, through the regression gate (its defaults,
    with the run's `tolerance` and admission rule, whose confidence its intervals take too).

    Scenarios on other requests (other data, window or sample) cannot be compared request by request
    and are listed as skipped.
    """
    from simulator.analyses.gate import GateOptions, GateSide, gate_result
    from simulator.core.verdict import DEFAULT_ADMISSION

    admission = outcomes[0].replay.scenario.admission or DEFAULT_ADMISSION
    options = GateOptions(admission=admission, **({} if tolerance is None else {"tolerance": tolerance})).settled()

    def side(outcome: Outcome) -> GateSide:
        summary = outcome.summary
        return GateSide(name=summary["scenario"], decisions=outcome.replay.decisions,
                        quality_bar=outcome.replay.scenario.quality_bar, description=summary["description"],
                        bar_stated=outcome.replay.scenario.quality_bar_stated,
                        prices_fingerprint=summary["provenance"]["prices_fingerprint"])

    base = next(outcome for outcome in outcomes if outcome.summary["scenario"] == baseline)
    gates, skipped = [], []
    for outcome in outcomes:
        if outcome is base:
            continue
        if not outcome.replay.decisions["request_id"].equals(base.replay.decisions["request_id"]):
            skipped.append({"scenario": outcome.summary["scenario"],
                            "reason": "replayed on other requests than the baseline: another data folder, window "
                                      "or sample, or requests skipped for missing outcomes"})
            continue
        if DESIGN_WEIGHTED in (base.summary.get("kind"), outcome.summary.get("kind")):
            if base.summary.get("kind") != outcome.summary.get("kind"):
                skipped.append({"scenario": outcome.summary["scenario"],
                                "reason": f"its figures are {outcome.summary.get('kind')} and the baseline's "
                                          f"{base.summary.get('kind')}: a gate compares figures of one kind"})
                continue
            data = (inputs or Inputs()).data(outcome.replay.scenario)
            gates.append(weigh_gate(gate_result(side(base), side(outcome), options), base, outcome, data, options))
            continue
        gates.append(gate_result(side(base), side(outcome), options))
    return {"baseline": baseline, "tolerance": options.tolerance, "gates": gates, "skipped": skipped}


def recommend_gated(summaries: list[dict], gates: dict | None) -> dict:
    """simulator.core.verdict.recommend over `summaries`, with the regression gates of `gates_against`
    (None: no baseline named, so policies are ranked on the largest request set, and on none when different
    sets tie for it). Independent of the order of `summaries`, as the terminal's ★ is."""
    if gates is None:
        return recommend(summaries)
    return recommend(summaries, baseline=gates["baseline"],
                     gates={gate["candidate"]["name"]: gate for gate in gates["gates"]})


def replay_and_save(paths: list[Path], results_dir: Path, label: Callable[[str], None] | None = None,
                    advance: Callable[[], None] | None = None, baseline: str | None = None, *,
                    tolerance: float | None = None, rule: str | None = None,
                    confidence: float | None = None) -> list[Outcome]:
    """Replays the scenarios and saves results, tables, baselines (on the first scenario's requests),
    and, when `baseline` names one of the scenarios, every other one gated against it (with `tolerance`).
    `rule` and `confidence` set the run's admission (simulator.core.verdict.resolve_admission)."""
    label, advance = label or (lambda _: None), advance or (lambda: None)
    results_dir = Path(results_dir)
    scenarios = load_scenarios(paths, rule, confidence)
    inputs = Inputs()
    outcomes = []
    for scenario in scenarios:
        outcome = replay_or_estimate(scenario, inputs, lambda stage, name=scenario.name: label(f"{name}: {stage}"))
        decisions, calls = outcome.replay.decisions, outcome.replay.calls
        data, sheet = _replayed_data(outcome, inputs), inputs.prices(scenario)
        set_beside(outcome.summary, outcome.replay, data, sheet)
        folder = save_result(results_dir, outcome.summary, decisions, calls)
        tables = analysis.scenario_tables(outcome.summary, decisions, calls, analysis.plan_steps(scenario),
                                          analysis.straight_cost(data, sheet))
        label(f"{scenario.name}: threshold sweeps")
        tables["sweeps"] = report_sweeps(scenario, data, sheet)
        analysis.attach_break_even(tables["sweeps"], tables["cascades"], len(decisions))
        write_json_atomic(folder / TABLES_FILE, tables)
        outcomes.append(outcome)
        advance()
    first = scenarios[0]
    label(f"baselines on {first.name}'s requests")
    baselines = analysis.baselines(first, _replayed_data(outcomes[0], inputs), inputs.prices(first))
    write_json_atomic(results_dir / BASELINES_FILE, baselines | {
        "data": outcomes[0].summary["provenance"]["data"],
        "data_fingerprint": outcomes[0].summary["provenance"]["data_fingerprint"]})
    gates_path = results_dir / GATES_FILE
    if baseline is not None:
        label(f"gating against {baseline}")
        write_json_atomic(gates_path, gates_against(baseline, outcomes, tolerance, inputs))
    elif gates_path.exists():
        gates_path.unlink()
    label("price sheets against the recorded costs")
    write_json_atomic(results_dir / PRICE_CHECKS_FILE, {"checks": price_checks(scenarios, inputs)})
    label("answers and grades held")
    write_json_atomic(results_dir / COVERAGE_FILE, {"data": coverage_tables(scenarios, inputs)})
    write_json_atomic(results_dir / MANIFEST_FILE, {"scenarios": [scenario.name for scenario in scenarios]})
    drop_other_results(results_dir, {scenario.name for scenario in scenarios})
    note_order(results_dir, [scenario.name for scenario in scenarios])  # kept when replay --save adds results
    advance()
    return outcomes


def _replayed_data(outcome: Outcome, inputs: Inputs):
    """The data a scenario's tables are computed on: the drawn requests for a design-weighted outcome
    (its decisions are theirs), else the whole data folder."""
    data = inputs.data(outcome.replay.scenario)
    if outcome.summary.get("kind") != DESIGN_WEIGHTED:
        return data
    return shadow_subset(data, outcome.replay.decisions.select("request_id"))


def coverage_tables(scenarios, inputs: Inputs) -> list[dict]:
    """Per distinct data folder of the scenarios: `routesim coverage`'s answers per slice x model."""
    from simulator.analyses.coverage import answer_table

    found, seen = [], set()
    for scenario in scenarios:
        if scenario.data in seen:
            continue
        seen.add(scenario.data)
        found.append({"data": Path(scenario.data).name, "answers": answer_table(inputs.data(scenario)).to_dicts()})
    return found


def price_checks(scenarios, inputs: Inputs) -> list[dict]:
    """`routesim prices check` of every distinct (data, price sheet) pair of the scenarios whose data
    records costs: totals and the flagged model/days (simulator.analyses.reconcile)."""
    from simulator.analyses.reconcile import reconcile

    checks, seen = [], set()
    for scenario in scenarios:
        if scenario.prices is None or (scenario.data, scenario.prices) in seen:
            continue
        seen.add((scenario.data, scenario.prices))
        result = reconcile(inputs.data(scenario), inputs.prices(scenario))
        if result.calls_checked == 0:
            continue
        checked = result.to_dict()
        checked["groups"] = [group for group in checked["groups"] if group["flagged"]]
        # The file names, not the reconciliation's full paths: a report does not show where it was built.
        checks.append({**checked, "data": Path(scenario.data).name, "prices": Path(scenario.prices).name,
                       "model_days": result.groups.height})
    return checks


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RoutesimError(f"cannot read {path.name}: {error}", where=str(path),
                            fix="run 'routesim report SCENARIO... -o FILE' again") from None


def _summary(folder: Path, name: str) -> dict:
    path = folder / name / SUMMARY_FILE
    if not path.is_file():
        raise RoutesimError(f"no saved result for scenario '{name}'", where=str(folder),
                            fix="run 'routesim report SCENARIO... -o FILE' again")
    return read_summary(path)


def _tables(folder: Path, summary: dict) -> dict:
    """The saved tables, or (for results saved by `routesim replay --save`) tables computed from Parquet.

    In a report's results folder (its `report.json`) every scenario's tables are the report's own: some
    (the sweeps, read from the data) cannot be computed again from the saved results, so a missing or stale
    one is refused (RoutesimError) rather than replaced by tables without them."""
    path = folder / summary["scenario"] / TABLES_FILE
    if path.is_file():
        tables = _read_json(path)
        if tables.get("scenario_hash") == summary["provenance"]["scenario_hash"]:
            return tables
    if (folder / MANIFEST_FILE).is_file():
        raise RoutesimError(f"the results of '{summary['scenario']}' in the report's folder {folder} lack the tables "
                            f"the report saved with them ({TABLES_FILE} missing, or from another scenario)",
                            where=str(path), fix="write the report again: routesim report SCENARIO... -o FILE")
    scenario_folder = path.parent
    return analysis.scenario_tables(summary, pl.read_parquet(scenario_folder / DECISIONS_FILE),
                                    pl.read_parquet(scenario_folder / CALLS_FILE))


def load_report_inputs(results_dir: Path) -> ReportInputs:
    """Reads a results folder: the scenarios in `report.json`'s order, else every saved scenario in the order
    they were saved (`saved_order`)."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise RoutesimError(f"results folder not found: {folder}",
                            fix="run 'routesim report SCENARIO... -o FILE' first, or pass its --save folder")
    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        names = _read_json(manifest)["scenarios"]
    else:
        names = saved_order(folder)
    if not names:
        raise RoutesimError(f"no saved results in {folder}", where=str(folder),
                            fix="run 'routesim report SCENARIO... -o FILE' first")
    summaries = [_summary(folder, name) for name in names]
    tables = [_tables(folder, summary) for summary in summaries]
    baselines_path, gates_path = folder / BASELINES_FILE, folder / GATES_FILE
    baselines = _read_json(baselines_path) if baselines_path.is_file() else None
    checks_path, coverage_path = folder / PRICE_CHECKS_FILE, folder / COVERAGE_FILE
    gates = _read_json(gates_path) if gates_path.is_file() else None
    recommendation = recommend_gated(summaries, gates)
    return ReportInputs(summaries=summaries, tables=tables, baselines=baselines,
                        headline=analysis.headline(summaries, baselines, recommendation, gates),
                        frontier=analysis.frontier_table(summaries, tables, baselines),
                        gates=gates, recommendation=recommendation,
                        price_checks=_read_json(checks_path)["checks"] if checks_path.is_file() else None,
                        coverage=_read_json(coverage_path)["data"] if coverage_path.is_file() else None)


def render_report(results_dir: Path, out: Path) -> Path:
    """Renders the HTML report of a results folder into `out`, atomically."""
    from simulator.report.html import render

    out = Path(out)
    write_text_atomic(out, render(load_report_inputs(results_dir)))
    return out
