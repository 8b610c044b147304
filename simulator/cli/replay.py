"""`routesim replay`, `validate`, `generate`, `demo` and `report`: replaying scenarios and showing the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.shard import RunnerOption, ShardsOption, check_runner
from simulator.cli.console import BAD_INPUT, console, errors, progress_bar
from simulator.core.errors import RoutesimError
from simulator.core.formats import counted
from simulator.core.limits import MAX_GENERATE_DAYS, MAX_GENERATE_REQUESTS, MAX_SEED
from simulator.core.paths import REPORTS, SCENARIOS

DEMO_BASELINE = "flagship-everywhere"
FORCE = typer.Option(help="replace an existing output folder that routesim did not write (never an input, a link "
                          "or a device)")
# What the demo's team accepts against today's production (flagship-everywhere): a pass-rate drop of at
# most one point, overall and in every slice, judged on the gate's paired interval.
DEMO_TOLERANCE = 0.01

RuleOption = Annotated[str | None, typer.Option(
    "--rule", help="admission rule: lower_bound (default: the Wilson lower bound must reach the bar) or point "
                   "(the observed pass rate); overrides the scenarios' 'admission'")]
ConfidenceOption = Annotated[float | None, typer.Option(
    "--confidence", help="confidence of the pass-rate intervals (default 0.95); overrides the scenarios'")]


BaselineOption = Annotated[Path | None, typer.Option(
    help="gate every scenario against this scenario (replayed too when not among them): the recommendation must "
         "also pass the regression gate against it")]
ToleranceOption = Annotated[float | None, typer.Option(
    help="with --baseline: the gate's non-inferiority margin, the pass-rate drop accepted against the baseline "
         "(default 0.01)")]


def with_baseline(scenarios: list[Path], baseline: Path | None, tolerance: float | None) -> tuple[list[Path], str | None]:
    """The scenarios to replay (the baseline first when not among them) and the baseline's name."""
    from simulator.core.scenario import load_scenario

    if tolerance is not None and baseline is None:
        raise RoutesimError("--tolerance is the regression gate's margin against a baseline", where="--tolerance",
                            fix="name the baseline with --baseline A.yaml")
    if baseline is None:
        return scenarios, None
    name = load_scenario(baseline).name
    if baseline.resolve() not in {path.resolve() for path in scenarios}:
        scenarios = [baseline, *scenarios]
    return scenarios, name


def replay_scenarios(paths: list[Path], *, show_progress: bool = True, rule: str | None = None,
                     confidence: float | None = None, shards: Path | None = None, runner: str = "local",
                     workers: int = 0):
    """Replays each scenario file in turn, sharing loaded data and price sheets; returns their outcomes.
    With `shards`, each replays on those shards of its data folder; with `workers` above 0, in chunks of
    its requests on that many processes (one: this process, a chunk at a time), when the data is large
    enough (outcomes without a replay); with 0, in one piece.

    Each exact summary also carries `capacity` (peak per-minute load per model against the scenario's rate
    limits) and `controls` (the random control at equal cost and the best fixed split); a design-weighted
    estimate from a shadow sample does not (both would need the whole window's answers).
    """
    from simulator.analyses.capacity import capacity_of
    from simulator.analyses.controls import controls_of_part, set_beside
    from simulator.core.runner import Inputs, Outcome, load_scenarios

    def from_part(scenario, summary, part) -> Outcome:
        data, sheet = inputs.data(scenario), inputs.prices(scenario)
        summary["capacity"] = capacity_of(scenario, part.load, part.replayed / part.in_window if part.in_window
                                          else 0.0, data)
        summary["controls"] = controls_of_part(scenario, part, data, sheet)
        return Outcome(replay=None, summary=summary)

    scenarios = load_scenarios(paths, rule, confidence)
    inputs = Inputs()
    outcomes = []
    with progress_bar(len(scenarios), show_progress) as (label, advance):
        for scenario in scenarios:
            if shards is not None:
                from simulator.core.sharded import replay_sharded

                label(f"{scenario.name}: {runner} runner")
                outcomes.append(from_part(scenario, *replay_sharded(scenario, inputs, shards, runner, with_part=True)))
            elif workers > 0 and (chunked := _chunked(scenario, inputs, workers, label)) is not None:
                outcomes.append(from_part(scenario, *chunked))
            else:
                outcome = _whole(scenario, inputs, lambda stage, name=scenario.name: label(f"{name}: {stage}"))
                set_beside(outcome.summary, outcome.replay, inputs.data(scenario), inputs.prices(scenario))
                outcomes.append(outcome)
            advance()
    return outcomes


def _may_hold_shadow_sample(data) -> bool:
    """Whether the data's outcomes have the column a merged shadow sample fills (`inclusion_probability`): only
    then is simulator.analyses.estimates, with the gate it imports, loaded to tell."""
    return "inclusion_probability" in data.outcomes.collect_schema()


def _whole(scenario, inputs, progress):
    """The scenario replayed in one piece (simulator.core.runner.run_scenario), or estimated from a shadow
    sample's drawn requests (simulator.analyses.estimates.replay_or_estimate)."""
    if _may_hold_shadow_sample(inputs.data(scenario)):
        from simulator.analyses.estimates import replay_or_estimate

        return replay_or_estimate(scenario, inputs, progress)
    from simulator.core.runner import run_scenario

    return run_scenario(scenario, inputs, progress)


def _chunked(scenario, inputs, workers: int, label):
    """The summary of a replay in chunks and its merged part, or None when it runs in one piece (a shadow-sampled log is
    estimated from its drawn requests instead: simulator.analyses.estimates.replay_or_estimate)."""
    from simulator.core.sharded import replay_chunked

    if _may_hold_shadow_sample(inputs.data(scenario)):
        from simulator.analyses.estimates import has_shadow_sample

        if has_shadow_sample(inputs.data(scenario)):
            return None
    label(f"{scenario.name}: in chunks, {workers} process{'es' if workers > 1 else ''}")
    return replay_chunked(scenario, inputs, workers, with_part=True)


def check_outputs(scenario_paths: list[Path], *, files=(), folders=(), saved_under: Path | None = None,
                  rule: str | None = None, confidence: float | None = None) -> None:
    """Refuses bad destinations before any replay: every scenario, data folder and price sheet is an input.

    `files` and `folders` are written as such; `saved_under` is a results folder (`replay --save`, a report's),
    which gets one folder per scenario name: it, too, is refused when routesim did not write it, unless
    `--force` (simulator.core.outputs.claim_folder, which save_result calls at the first write)."""
    from simulator.core.outputs import STDOUT, check_destination, note_input
    from simulator.core.runner import load_scenarios

    scenarios = load_scenarios(scenario_paths, rule, confidence)
    for scenario in scenarios:
        note_input(scenario.data)
        if scenario.prices:
            note_input(scenario.prices)
    for path in files:
        if path is not None:
            check_destination(path)
    if saved_under is not None and str(saved_under) == STDOUT:
        check_destination(saved_under, folder=True)  # refuses '-': saved results are folders, not a stream
    named = [saved_under / scenario.name for scenario in scenarios] if saved_under is not None else []
    # The scenarios' folders first: a refusal names the one that is an input (`--save .` beside the data).
    for path in [*folders, *named, *([saved_under] if saved_under is not None else [])]:
        check_destination(path, folder=True)


def _write_decisions(path: Path, outcomes) -> None:
    """Every scenario's decisions with a `scenario` column: Parquet to a file, JSON lines to stdout (`-`),
    since Parquet is binary and a decision's `models_called` is a list, which CSV cannot hold."""
    import polars as pl

    from simulator.core.outputs import STDOUT, write_parquet_atomic, write_stdout

    frames = [o.replay.decisions.with_columns(pl.lit(o.summary["scenario"]).alias("scenario")) for o in outcomes]
    # `rid` is the engine's row number, the key joining decisions to calls inside one run (saved results keep
    # it for that); to a reader of the decisions it is noise beside `request_id`, so it is not written.
    frame = pl.concat(frames, how="vertical").drop("rid", strict=False)
    if str(path) == STDOUT:
        write_stdout(frame.write_ndjson())
    else:
        write_parquet_atomic(frame, path)


def _replay_into_report(paths: list[Path], out: Path, results: Path, baseline: str | None = None, *,
                        tolerance: float | None = None, rule: str | None = None, confidence: float | None = None):
    from simulator.report.build import render_report, replay_and_save

    with progress_bar(len(paths) + 1, True) as (label, advance):
        outcomes = replay_and_save(paths, results, label, advance, baseline=baseline, tolerance=tolerance,
                                   rule=rule, confidence=confidence)
    return outcomes, render_report(results, out)


def replay(
    scenarios: Annotated[list[Path], typer.Argument(metavar="SCENARIO", help="scenario YAML files")],
    as_json: Annotated[bool, typer.Option("--json", help="print the summaries as JSON")] = False,
    decisions: Annotated[Path | None, typer.Option(help="write per-request decisions as Parquet; '-' streams them "
                                                        "to stdout as JSON lines (the table then goes to stderr)")
                         ] = None,
    save: Annotated[Path | None, typer.Option(help="save results (Parquet + summary JSON) under this folder")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="show every metric (the default fits 80 columns)")] = False,
    baseline: BaselineOption = None,
    tolerance: ToleranceOption = None,
    rule: RuleOption = None,
    confidence: ConfidenceOption = None,
    force: Annotated[bool, FORCE] = False,
    shards: ShardsOption = None,
    runner: RunnerOption = "local",
    workers: Annotated[int | None, typer.Option(min=1, help="processes replaying chunks of a large data folder "
                                                "(default: one per two cores); the figures are the same. A replay "
                                                "with --decisions, --save, --baseline or --shards runs in one piece "
                                                "(or per shard) instead")] = None,
):
    """Replay scenarios and compare them; the recommended policy is marked ★.

    With --baseline, each policy's regression-gate verdict against the baseline shows beside its bar verdict,
    and only a policy that passes the gate is recommended."""
    from simulator.cli.console import beside, print_table
    from simulator.cli.views import capacity_table, controls_table, gate_entry, print_comparison, sessions_table
    from simulator.core.outputs import STDOUT, allow_replacing_folders
    from simulator.core.results import forget_report, note_order, save_result
    from simulator.core.verdict import recommend

    if shards is not None and (decisions or save or baseline):
        raise RoutesimError("a replay on shards keeps no per-request decisions, so --decisions, --save and "
                            "--baseline cannot be used with it", where="--shards",
                            fix="leave out --shards to write decisions or results or to gate against a baseline")
    check_runner(shards, runner)
    allow_replacing_folders(force)
    scenarios, baseline_name = with_baseline(scenarios, baseline, tolerance)
    streamed = decisions is not None and str(decisions) == STDOUT
    shown = beside(as_json, decisions=decisions)  # the tables go to stderr when the decisions go to stdout
    check_outputs(scenarios, files=[None if streamed else decisions], saved_under=save, rule=rule,
                  confidence=confidence)
    if decisions is not None and not streamed and decisions.suffix.lower() != ".parquet":
        # Decisions hold lists (models_called), which CSV or JSON by name would misrepresent: Parquet only.
        raise RoutesimError(f"--decisions writes Parquet, but {decisions.name} is named as another format",
                            where="--decisions", fix=f"name it {decisions.stem}.parquet, or give '-' for JSON lines")
    from simulator.core.sharded import default_workers

    # Decisions and calls tables are built only when they are written: otherwise large data replays in
    # chunks into mergeable parts, on one process per worker.
    chunk_workers = 0 if decisions or save or baseline else (workers or default_workers())
    outcomes = replay_scenarios(scenarios, show_progress=not as_json, rule=rule, confidence=confidence,
                                shards=shards, runner=runner, workers=chunk_workers)
    summaries = [outcome.summary for outcome in outcomes]
    gates = None
    if baseline_name:  # the report's module, with the gate, loads only to gate against a baseline
        from simulator.report.build import gates_against, recommend_gated

        gates = gates_against(baseline_name, outcomes, tolerance)
        recommendation = recommend_gated(summaries, gates)
    else:
        recommendation = recommend(summaries)
    # The results first: `--decisions` may name a file inside the `--save` folder, which must be new (or
    # routesim's) when save_result claims it.
    if save:
        for outcome in outcomes:
            save_result(save, outcome.summary, outcome.replay.decisions, outcome.replay.calls)
        note_order(save, [outcome.summary["scenario"] for outcome in outcomes])
        forget_report(save)  # a report's files there described its own run
    if decisions:
        _write_decisions(decisions, outcomes)
    if as_json:
        from simulator.core.outputs import json_output

        typer.echo(json_output([summary | {"recommended": summary["scenario"] == recommendation["policy"]}
                                | ({"gate": gate_entry(gates, summary["scenario"])} if gates else {})
                                for summary in summaries]))
    else:
        print_comparison(shown, summaries, wide=wide, recommendation=recommendation, gates=gates)
        for table in (controls_table(summaries), sessions_table(summaries), capacity_table(summaries)):
            if table is not None:
                print_table(shown, table)


def validate(paths: Annotated[list[Path], typer.Argument(metavar="PATH",
                                                         help="data folders, price sheets or scenario files")]):
    """Check inputs against the data contract and print every problem found. A scenario file that passes
    every check is also replayed once, writing nothing, as `routesim replay` would run it."""
    from simulator.core.checks import check_path
    from simulator.core.sharded import default_workers

    def replay_once(path: Path) -> None:
        replay_scenarios([path], show_progress=False, workers=default_workers())

    problems = 0
    for path in paths:
        found = check_path(path, replay_once)
        problems += len(found)
        if found:
            errors.print(f"[red]✗ {path}[/red]: {len(found)} problem(s)")
            for problem in found:
                errors.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]✓ {path}[/green]: valid")
    if problems:
        raise typer.Exit(BAD_INPUT)


def generate(
    out: Annotated[Path, typer.Argument(metavar="OUT",
                                        help="folder to write traffic.parquet and outcomes.parquet into")],
    requests: Annotated[int, typer.Option(min=1, max=MAX_GENERATE_REQUESTS, help="number of requests")] = 50_000,
    days: Annotated[int, typer.Option(min=1, max=MAX_GENERATE_DAYS, help="days of traffic from 2026-11-16")] = 7,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED,
                                      help="random seed; the same arguments give identical files")] = 2026,
    mix_shift: Annotated[bool, typer.Option(help="shift the mix toward harder requests late in the week")] = True,
    served: Annotated[str | None, typer.Option(help="write a served-only log instead: a logging router (uniform, "
                                               "skewed or by-slice) picked one model per request; the full "
                                               "matrix goes to OUT-truth")] = None,
    shadow_rate: Annotated[float | None, typer.Option(help="with --served: also re-run this share of each slice "
                                                      "(a stratified sample) on every candidate")] = None,
    gold_rate: Annotated[float | None, typer.Option(help="grade the LLM-judged answers by a generous judge and "
                                                    "give this share of them a human gold grade, for "
                                                    "'routesim calibrate'")] = None,
    force: Annotated[bool, FORCE] = False,
):
    """Generate a seeded synthetic week of support-bot traffic with graded outcomes for 4 model tiers."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.core.outputs import allow_replacing_folders, atomic_folder, check_destination
    from simulator.datasets.generate import write_week

    allow_replacing_folders(force)
    check_destination(out, folder=True)
    if shadow_rate is not None and served is None:
        raise RoutesimError("--shadow-rate goes with --served", where="--shadow-rate",
                            fix="add --served uniform (or skewed, by-slice)")
    if served is not None:  # write_served_week checks its second folder, OUT-truth, before generating
        from simulator.datasets.served import write_served_week

        truth = write_served_week(out, requests, days, seed, served, shadow_rate=shadow_rate, mix_shift=mix_shift,
                                  gold_rate=gold_rate)
        console.print(f"wrote {counted(requests, 'served request')} to {out} and the full matrix to {truth}",
                      highlight=False)
        return
    # Written into a new folder that replaces `out` whole (atomic_folder, which marks it): files of an earlier
    # folder there (its README, say) would otherwise stay beside the new week and describe another one.
    with (atomic_folder(out) as staging,
          Progress(TextColumn("generating"), BarColumn(), TimeElapsedColumn(), console=errors,
                   transient=True, disable=not console.is_terminal) as bar):
        task = bar.add_task("generate", total=requests)
        write_week(staging, requests, days, seed, mix_shift=mix_shift, gold_rate=gold_rate,
                   progress=lambda done: bar.update(task, completed=done))
    console.print(f"wrote {counted(requests, 'request')} to {out}")


def demo(force: Annotated[bool, FORCE] = False):
    """Replay every shipped scenario and write the reports.

    The support-week scenarios go to reports/demo.html, each gated against flagship-everywhere (what
    production runs today) with a stated tolerance of one point; each public dataset's scenarios (scenarios/DATASET/)
    go to reports/demo-DATASET.html.
    """
    from simulator.cli.views import print_comparison
    from simulator.core.outputs import allow_replacing_folders
    from simulator.report.build import default_results_dir, load_report_inputs

    runs = [("support week", sorted(SCENARIOS.glob("*.yaml")), REPORTS / "demo.html", DEMO_BASELINE)]
    # scenarios/served reads data/served, which README's "Served-only production logs" block generates
    # first (50,000 requests): it is no shipped data, so the demo leaves it out. scenarios/gateway holds a
    # LiteLLM proxy config beside the scenario import-config makes of it (README "LiteLLM router configs").
    runs += [(folder.name, sorted(folder.glob("*.yaml")), REPORTS / f"demo-{folder.name}.html", None)
             for folder in sorted(SCENARIOS.iterdir()) if folder.is_dir() and folder.name not in {"served", "gateway"}]
    allow_replacing_folders(force)
    for _, paths, out, _ in runs:  # every report and results folder, before the first replay
        check_outputs(paths, files=[out], saved_under=default_results_dir(out))
    written = []
    for title, paths, out, baseline in runs:
        results = default_results_dir(out)
        outcomes, report_path = _replay_into_report(paths, out, results, baseline,
                                                    tolerance=DEMO_TOLERANCE if baseline else None)
        inputs = load_report_inputs(results)
        print_comparison(console, [outcome.summary for outcome in outcomes], title=f"Replay comparison: {title}",
                         recommendation=inputs.recommendation, gates=inputs.gates)
        written.append(report_path)
    for report_path in written:
        console.print(f"report: {report_path}", highlight=False)


def report(
    scenarios: Annotated[list[Path] | None, typer.Argument(metavar="SCENARIO",
                                                           help="scenario YAML files to replay")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="the HTML file to write, e.g. reports/NAME.html")] = ...,
    save: Annotated[Path | None, typer.Option(help="results folder (default: NAME-results next to the report)")] = None,
    from_results: Annotated[Path | None, typer.Option("--from", help="re-render from this results folder, "
                                                      "without replaying")] = None,
    baseline: BaselineOption = None,
    tolerance: ToleranceOption = None,
    rule: RuleOption = None,
    confidence: ConfidenceOption = None,
    force: Annotated[bool, FORCE] = False,
):
    """Write a self-contained HTML report: replay and save results, or re-render saved ones (--from)."""
    from simulator.core.outputs import allow_replacing_folders, check_destination, note_input
    from simulator.report.build import default_results_dir, render_report

    allow_replacing_folders(force)
    if bool(scenarios) == bool(from_results):
        raise RoutesimError("give either scenario files to replay or --from RESULTS_DIR, not both or neither",
                            fix="routesim report SCENARIO... -o FILE, or routesim report --from RESULTS_DIR -o FILE")
    given = [name for name, set_ in (("--save", bool(save)), ("--baseline", bool(baseline)),
                                     ("--tolerance", tolerance is not None), ("--rule", bool(rule)),
                                     ("--confidence", confidence is not None)) if set_]
    if from_results and given:
        raise RoutesimError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with scenario files; --from "
                            "re-renders what was saved, as it was judged", where=", ".join(given),
                            fix=f"replay the scenarios again with them: routesim report SCENARIO... {' '.join(given)} "
                                "... -o FILE")
    if from_results:
        note_input(from_results)
        check_destination(out)
        console.print(f"report: {render_report(from_results, out)}", highlight=False)
        return
    results = save or default_results_dir(out)
    scenarios, baseline_name = with_baseline(scenarios, baseline, tolerance)
    check_outputs(scenarios, files=[out], saved_under=results, rule=rule, confidence=confidence)
    _, report_path = _replay_into_report(scenarios, out, results, baseline_name, tolerance=tolerance, rule=rule,
                                         confidence=confidence)
    console.print(f"report: {report_path}", highlight=False)
    console.print(f"results: {results}", highlight=False)


def register(app: typer.Typer) -> None:
    for command in (replay, validate, generate, demo, report):
        app.command()(command)
