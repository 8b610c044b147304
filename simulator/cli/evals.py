"""`routesim lanes` and `routesim gate`: eval-driven lanes and the regression gate on the command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.replay import RuleOption
from simulator.cli.shard import RunnerOption, ShardsOption, check_runner
from simulator.cli.console import GATE_FAILED, beside, inert, print_table, print_words
from simulator.core.errors import RoutesimError, visible
from simulator.core.limits import MAX_RESAMPLES, MAX_SEED


def register(app: typer.Typer) -> None:
    @app.command()
    def lanes(
        data: Annotated[Path, typer.Argument(metavar="DATA",
                                             help="data folder (traffic.parquet and outcomes.parquet)")],
        prices: Annotated[Path | None, typer.Option(
            help="price sheet; without it, recorded cost_usd prices calls")] = None,
        bar: Annotated[float | None, typer.Option(help="one bar for every slice (default 0.9)")] = None,
        bars: Annotated[Path | None, typer.Option(help="YAML bars file: {default: 0.9, slices: {SLICE: BAR}}")] = None,
        bars_from: Annotated[Path | None, typer.Option(help="use this scenario's quality_bar")] = None,
        by: Annotated[str, typer.Option(help="traffic column whose values are the lanes")] = "slice",
        confidence: Annotated[float, typer.Option(help="confidence of the Wilson intervals")] = 0.95,
        point: Annotated[bool, typer.Option("--point", help="admit on the observed pass rate, not the interval's "
                                                             "lower bound")] = False,
        resample: Annotated[str, typer.Option(
            help="request (default) or session: the Wilson interval counts sessions, adjusted by their design "
                 "effect, for traffic whose turns are not independent")] = "request",
        emit: Annotated[Path | None, typer.Option(help="write the lanes as a runnable scenario, e.g. "
                                                       "scenarios/lanes.yaml")] = None,
        cascade: Annotated[bool, typer.Option("--cascade", help="make each lane a cascade that escalates to the "
                                                                 "model with the highest pass rate")] = False,
        accept: Annotated[str | None, typer.Option(
            help="with --cascade: when the lane model's answer is final (default: confidence >= 0.7)")] = None,
        escalate_to: Annotated[str | None, typer.Option(help="with --cascade: the model to escalate to")] = None,
        fit_until: Annotated[dt.datetime | None, typer.Option(
            formats=["%Y-%m-%d"],
            help="admit on traffic before this date (UTC), check the lanes on the traffic after it")] = None,
        name: Annotated[str | None, typer.Option(
            help="the scenario's name (default: the --emit file's name; 'lanes' for --emit - or none)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the lanes as JSON")] = False,
    ):
        """Admit models to slices by their evals (Wilson lower bound >= bar); emit the lanes as a scenario."""
        from simulator.analyses.lanes import DEFAULT_ACCEPT, LaneOptions, fit_lanes, load_bars
        from simulator.core.outputs import STDOUT
        from simulator.cli.views import lane_lines, lanes_table, out_of_sample_lines, out_of_sample_table

        shown = beside(as_json, emit=emit)  # the tables go to stderr when the scenario goes to stdout
        emitted_to_file = emit is not None and str(emit) != STDOUT
        if (accept is not None or escalate_to is not None) and not cascade:
            raise RoutesimError("--accept and --escalate-to shape the cascade of each lane",
                                where="--accept, --escalate-to",
                                fix="add --cascade, or leave them out")
        options = LaneOptions(by=by, confidence=confidence, point=point, resample=resample,
                              fit_until=fit_until.date() if fit_until else None, cascade=cascade,
                              accept=DEFAULT_ACCEPT if accept is None else accept,
                              escalate_to=escalate_to, name=name or (emit.stem if emitted_to_file else "lanes"))
        result = fit_lanes(data, prices, load_bars(bar, bars, bars_from), options, emit=emit)
        if as_json:
            from simulator.core.outputs import json_output

            typer.echo(json_output(result))
            return
        print_table(shown, lanes_table(result))
        # Names from the data: control characters shown as escapes (no markup is read); wrapped at spaces.
        for line in lane_lines(result):
            print_words(shown, visible(line))
        if result["out_of_sample"]:
            print_table(shown, out_of_sample_table(result))
            for line in out_of_sample_lines(result):
                print_words(shown, visible(line))
        if emitted_to_file:
            shown.print(f"scenario: {inert(result['emitted'])}", highlight=False)

    @app.command()
    def gate(
        baseline: Annotated[Path, typer.Option(help="the scenario in production")],
        candidate: Annotated[Path, typer.Option(help="the scenario to ship")],
        resamples: Annotated[int | None, typer.Option(
            max=MAX_RESAMPLES, help="paired bootstrap resamples (default 1000, or 2 / (1 - confidence) where that "
                                    "is more: at least one resample beyond each end of the interval)")] = None,
        seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="random seed of the resampling")] = 0,
        resample: Annotated[str, typer.Option(
            help="what the bootstrap resamples: request, or session (a session's turns together)")] = "request",
        confidence: Annotated[float | None, typer.Option(
            help="confidence of the paired bootstrap intervals and of the bar check (default: the scenarios' "
                 "admission confidence, 0.95 unless stated); overrides the scenarios'")] = None,
        rule: RuleOption = None,
        tolerance: Annotated[float, typer.Option(
            help="largest pass-rate loss tolerated, overall and per slice")] = 0.01,
        tolerance_slice: Annotated[list[str] | None, typer.Option(
            "--tolerance-slice", help="SLICE=TOLERANCE for one slice; repeat for more")] = None,
        max_cost_increase: Annotated[float | None, typer.Option(
            help="budget: largest relative rise in cost per request, e.g. 0.05")] = None,
        max_p95_increase_ms: Annotated[float | None, typer.Option(
            help="budget: largest rise in p95 latency, in ms")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
        markdown: Annotated[Path | None, typer.Option(help="write the result as Markdown for a pull request")] = None,
        shards: ShardsOption = None,
        runner: RunnerOption = "local",
    ):
        """Compare a candidate policy with the baseline on the same requests; exit 1 when it fails."""
        from simulator.analyses.estimates import gate_scenarios
        from simulator.analyses.gate import GateOptions, parse_slice_tolerances
        from simulator.cli.views import gate_table
        from simulator.core.outputs import json_output, write_text_atomic
        from simulator.report.gate import failure_lines, gate_markdown

        check_runner(shards, runner)
        shown = beside(as_json, markdown=markdown)  # the table goes to stderr when the Markdown goes to stdout
        options = GateOptions(resamples=resamples, seed=seed, resample=resample, confidence=confidence,
                              rule=rule, tolerance=tolerance,
                              slice_tolerances=parse_slice_tolerances(tolerance_slice),
                              max_cost_increase=max_cost_increase, max_p95_increase_ms=max_p95_increase_ms)
        result = gate_scenarios(baseline, candidate, options, shards=shards, runner=runner)
        if markdown:
            write_text_atomic(markdown, gate_markdown(result))
        if as_json:
            typer.echo(json_output(result))
        else:
            print_table(shown, gate_table(result))
            for line in failure_lines(result):
                shown.print(f"[red]✗[/red] {inert(line)}", highlight=False)
            for note in result["notes"]:
                shown.print(f"note: {inert(note)}", highlight=False)
            shown.print("gate passed" if result["passed"] else "[bold red]gate failed[/bold red]", highlight=False)
        if not result["passed"]:
            raise typer.Exit(GATE_FAILED)
