"""The `routesim` command."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from simulator.data_commands import register as register_data_commands
from simulator.errors import RoutesimError
from simulator.eval_commands import register as register_eval_commands
from simulator.formats import metric
from simulator.metrics import METRICS
from simulator.tuning_commands import register as register_tuning_commands

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Replay logged LLM traffic under routing policies: rules, cascades and retries.")
# Off a terminal (CI logs, pipes) rich would wrap the comparison table at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

PROJECT = Path(__file__).resolve().parent.parent
SCENARIOS = PROJECT / "scenarios"
REPORTS = PROJECT / "reports"
BAD_INPUT = 2


@contextmanager
def progress_bar(total: int, enabled: bool):
    """A bar over scenarios whose label follows the engine's stages; silent off a terminal."""
    if not (enabled and console.is_terminal):
        yield lambda label: None, lambda: None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=errors, transient=True) as bar:
        task = bar.add_task("replaying", total=total)
        yield (lambda label: bar.update(task, description=label)), (lambda: bar.advance(task))


def cheapest_meeting_bar(summaries: list[dict]) -> str | None:
    from simulator.results import cheapest_meeting_bar as cheapest

    best = cheapest(summaries)
    return best["scenario"] if best else None


def _bar_verdict(failures: list[dict]) -> str:
    if not failures:
        return "yes"
    slices = sum(1 for failure in failures if failure["slice"] is not None)
    parts = (["overall"] if len(failures) > slices else []) + ([f"{slices} slice{'s' * (slices > 1)}"] if slices else [])
    return "no: " + " + ".join(parts)


def comparison_table(summaries: list[dict], title: str = "Replay comparison") -> Table:
    best = cheapest_meeting_bar(summaries)
    table = Table(title=title, caption=(
        f"★ cheapest scenario that meets its quality bar overall and in every slice: {best}" if best
        else "No scenario meets its quality bar overall and in every slice."))
    table.add_column("scenario", no_wrap=True)
    for column in METRICS:
        table.add_column(column.title, justify="right")
    table.add_column("meets bar", justify="center", no_wrap=True)
    for summary in summaries:
        name = summary["scenario"] + (" ★" if summary["scenario"] == best else "")
        verdict = _bar_verdict(summary["bar_failures"])
        table.add_row(name, *[metric(m.name, summary[m.name]) for m in METRICS], verdict)
    return table


def replay_scenarios(paths: list[Path], *, show_progress: bool = True):
    from simulator.runner import Inputs, load_scenarios, run_scenario

    scenarios = load_scenarios(paths)
    inputs = Inputs()
    outcomes = []
    with progress_bar(len(scenarios), show_progress) as (label, advance):
        for scenario in scenarios:
            outcomes.append(run_scenario(scenario, inputs, lambda stage, name=scenario.name: label(f"{name}: {stage}")))
            advance()
    return outcomes


def _write_decisions(path: Path, outcomes) -> None:
    from simulator.outputs import write_parquet_atomic

    frames = [o.replay.decisions.with_columns(pl.lit(o.summary["scenario"]).alias("scenario")) for o in outcomes]
    write_parquet_atomic(pl.concat(frames, how="vertical"), path)


@app.command()
def replay(
    scenarios: Annotated[list[Path], typer.Argument(help="scenario YAML files")],
    as_json: Annotated[bool, typer.Option("--json", help="print the summaries as JSON")] = False,
    decisions: Annotated[Path | None, typer.Option(help="write per-request decisions as Parquet")] = None,
    save: Annotated[Path | None, typer.Option(help="save results (Parquet + summary JSON) under this folder")] = None,
):
    """Replay scenarios and compare them; the cheapest that meets the bar is marked."""
    from simulator.results import save_result

    outcomes = replay_scenarios(scenarios, show_progress=not as_json)
    summaries = [outcome.summary for outcome in outcomes]
    if decisions:
        _write_decisions(decisions, outcomes)
    if save:
        for outcome in outcomes:
            save_result(save, outcome.summary, outcome.replay.decisions, outcome.replay.calls)
    if as_json:
        typer.echo(json.dumps(summaries, indent=2, default=str))
    else:
        console.print(comparison_table(summaries))


@app.command()
def validate(paths: Annotated[list[Path], typer.Argument(help="data folders, price sheets or scenario files")]):
    """Check inputs against the data contract and print every problem found."""
    from simulator.checks import check_path

    problems = 0
    for path in paths:
        found = check_path(path)
        problems += len(found)
        if found:
            errors.print(f"[red]✗ {path}[/red]: {len(found)} problem(s)")
            for problem in found:
                errors.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]✓ {path}[/green]: valid")
    if problems:
        raise typer.Exit(BAD_INPUT)


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(help="folder to write traffic.parquet and outcomes.parquet into")],
    requests: Annotated[int, typer.Option(min=1, help="number of requests")] = 50_000,
    days: Annotated[int, typer.Option(min=1, help="days of traffic from 2026-11-16")] = 7,
    seed: Annotated[int, typer.Option(help="random seed; the same arguments give identical files")] = 2026,
    mix_shift: Annotated[bool, typer.Option(help="shift the mix toward harder requests late in the week")] = True,
):
    """Generate a seeded synthetic week of support-bot traffic with graded outcomes for 4 model tiers."""
    from simulator.generate import write_week

    with Progress(TextColumn("generating"), BarColumn(), TimeElapsedColumn(), console=errors,
                  transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("generate", total=requests)
        write_week(out, requests, days, seed, mix_shift=mix_shift,
                   progress=lambda done: bar.update(task, completed=done))
    console.print(f"wrote {requests:,} requests to {out}")


DEMO_BASELINE = "flagship-everywhere"


def _replay_into_report(paths: list[Path], out: Path, results: Path, baseline: str | None = None):
    from simulator.reporting import render_report, replay_and_save

    with progress_bar(len(paths) + 1, True) as (label, advance):
        outcomes = replay_and_save(paths, results, label, advance, baseline=baseline)
    return outcomes, render_report(results, out)


@app.command()
def demo():
    """Replay every shipped scenario and write the reports.

    The support-week scenarios go to reports/demo.html, each gated against flagship-everywhere; each public
    dataset's scenarios (scenarios/DATASET/) go to reports/demo-DATASET.html.
    """
    from simulator.reporting import default_results_dir

    runs = [("support week", sorted(SCENARIOS.glob("*.yaml")), REPORTS / "demo.html", DEMO_BASELINE)]
    runs += [(folder.name, sorted(folder.glob("*.yaml")), REPORTS / f"demo-{folder.name}.html", None)
             for folder in sorted(SCENARIOS.iterdir()) if folder.is_dir()]
    written = []
    for title, paths, out, baseline in runs:
        outcomes, report_path = _replay_into_report(paths, out, default_results_dir(out), baseline)
        console.print(comparison_table([outcome.summary for outcome in outcomes], title=f"Replay comparison: {title}"))
        written.append(report_path)
    for report_path in written:
        console.print(f"report: {report_path}", highlight=False)


@app.command()
def report(
    scenarios: Annotated[list[Path] | None, typer.Argument(help="scenario YAML files to replay")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="the HTML file to write, e.g. reports/NAME.html")] = ...,
    save: Annotated[Path | None, typer.Option(help="results folder (default: NAME-results next to the report)")] = None,
    from_results: Annotated[Path | None, typer.Option("--from", help="re-render from this results folder, "
                                                      "without replaying")] = None,
    baseline: Annotated[Path | None, typer.Option(help="gate every scenario against this scenario (replayed too "
                                                       "when not among them) in a regression-gate section")] = None,
):
    """Write a self-contained HTML report: replay and save results, or re-render saved ones (--from)."""
    from simulator.reporting import default_results_dir, render_report
    from simulator.scenario import load_scenario

    if bool(scenarios) == bool(from_results):
        raise RoutesimError("give either scenario files to replay or --from RESULTS_DIR, not both or neither",
                            fix="routesim report SCENARIO... -o FILE, or routesim report --from RESULTS_DIR -o FILE")
    if from_results and (save or baseline):
        raise RoutesimError("--save and --baseline go with scenario files; --from re-renders what was saved",
                            fix="replay with 'routesim report SCENARIO... --baseline A.yaml -o FILE'")
    if from_results:
        console.print(f"report: {render_report(from_results, out)}", highlight=False)
        return
    results = save or default_results_dir(out)
    baseline_name = None
    if baseline is not None:
        baseline_name = load_scenario(baseline).name
        if baseline.resolve() not in {path.resolve() for path in scenarios}:
            scenarios = [baseline, *scenarios]
    _, report_path = _replay_into_report(scenarios, out, results, baseline_name)
    console.print(f"report: {report_path}", highlight=False)
    console.print(f"results: {results}", highlight=False)


@app.command()
def bench(
    requests: Annotated[int, typer.Option(help="requests in the benchmark week")] = 1_000_000,
    ten_million: Annotated[bool, typer.Option("--10m", help="also run on 10,000,000 requests")] = False,
    cache: Annotated[Path, typer.Option(help="where generated benchmark weeks are kept")] = PROJECT / ".cache" / "bench",
):
    """Time the replay against a DuckDB scan of the same Parquet columns (the floor)."""
    from simulator.bench import run_bench

    sizes = [requests] + ([10_000_000] if ten_million and requests != 10_000_000 else [])
    for size in sizes:
        console.print(run_bench(size, cache))


# `routesim import FORMAT ...` and `routesim public-data` (simulator/data_commands.py).
register_data_commands(app)

# `routesim lanes` and `routesim gate` (simulator/eval_commands.py).
register_eval_commands(app)

# `routesim sweep`, `whatif`, `drift` and `prices import-litellm` (simulator/tuning_commands.py).
register_tuning_commands(app)


def main() -> None:
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of exiting.
        sys.exit(app(standalone_mode=False) or 0)
    except RoutesimError as error:
        errors.print(f"[bold red]error:[/bold red] {escape(error.render())}", highlight=False, soft_wrap=True)
        sys.exit(BAD_INPUT)
    except (typer.Abort, KeyboardInterrupt):
        errors.print("aborted")
        sys.exit(130)
    except typer.TyperException as error:  # usage errors, which standalone mode would print itself
        error.show()
        sys.exit(getattr(error, "exit_code", BAD_INPUT))
    except Exception as error:  # anything unforeseen, still without a traceback
        if os.environ.get("ROUTESIM_DEBUG"):
            raise
        errors.print(f"[bold red]internal error:[/bold red] {escape(f'{type(error).__name__}: {error}')}\n"
                     "  this is a bug in routesim; rerun with ROUTESIM_DEBUG=1 for the traceback", highlight=False)
        sys.exit(3)
