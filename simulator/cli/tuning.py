"""`routesim sweep`, `routesim whatif`, `routesim drift`, `routesim prices import-litellm` and `routesim prices check`.

Only the options live here; simulator.cli.views computes and prints.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.shard import RunnerOption, ShardsOption, check_runner
from simulator.cli.console import console
from simulator.core.errors import RoutesimError
from simulator.core.limits import MAX_SWEEP_POINTS


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise RoutesimError(f"cannot read {option} {value!r} as a date", where=option,
                            fix="write the date as YYYY-MM-DD, e.g. 2026-11-20") from None


def register(app: typer.Typer) -> None:
    @app.command()
    def sweep(
        scenario: Annotated[Path, typer.Argument(metavar="SCENARIO", help="scenario YAML file")],
        step: Annotated[int, typer.Option(help="the gate to sweep: its step in the plan, from 0")] = 0,
        over: Annotated[str | None, typer.Option(help="numeric column the gate compares with t (default: the "
                                                      "column its accept predicate reads)")] = None,
        plan: Annotated[str | None, typer.Option(help="'default', a rule's name or its number from 1 (default: the "
                                                      "default plan, or the only multi-step plan)")] = None,
        points: Annotated[int, typer.Option(min=2, max=MAX_SWEEP_POINTS, help="most thresholds: every distinct "
                                            "value an accepted answer holds, when there are fewer")] = 200,
        target_pass_rate: Annotated[float | None, typer.Option(help="calibrate: least cost with at least this "
                                                                    "pass rate")] = None,
        target_escalation_rate: Annotated[float | None, typer.Option(help="calibrate: best pass rate with at most "
                                                                          "this escalation rate")] = None,
        budget: Annotated[float | None, typer.Option(help="calibrate: best pass rate within this cost per request "
                                                          "(USD)")] = None,
        fit_until: Annotated[str | None, typer.Option(help="calibrate on requests before this date (YYYY-MM-DD), "
                                                           "then report the threshold on the later days")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print every point as JSON")] = False,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="write every point (.csv, .parquet or "
                                                                      ".json)")] = None,
        shards: ShardsOption = None,
        runner: RunnerOption = "local",
    ):
        """Sweep a cascade gate's threshold in one pass: cost, pass rate, p95 latency and escalation per threshold."""
        from simulator.analyses.sweep import parse_target
        from simulator.cli.views import run_sweep

        check_runner(shards, runner)
        target = parse_target(target_pass_rate, target_escalation_rate, budget)
        run_sweep(console, scenario, step=step, over=over, plan=plan, points=points, target=target,
                  fit_until=_date(fit_until, "--fit-until"), as_json=as_json, out=out, shards=shards, runner=runner)

    @app.command()
    def whatif(
        scenarios: Annotated[list[Path], typer.Argument(metavar="SCENARIO", help="scenario YAML files")],
        prices: Annotated[Path | None, typer.Option(help="another price sheet, replacing each scenario's")] = None,
        scale: Annotated[list[str] | None, typer.Option(help="MODEL=FACTOR: multiply a model's prices (repeatable)")
                         ] = None,
        at: Annotated[str | None, typer.Option(help="price every call as of this date (YYYY-MM-DD)")] = None,
        target_pass_rate: Annotated[float | None, typer.Option(help="also calibrate each cascade's first gate to "
                                                                    "this pass rate, at both prices")] = None,
        target_escalation_rate: Annotated[float | None, typer.Option(help="... or to this escalation rate")] = None,
        budget: Annotated[float | None, typer.Option(help="... or to this cost per request (USD)")] = None,
        points: Annotated[int, typer.Option(min=2, max=MAX_SWEEP_POINTS, help="thresholds swept for "
                                            "calibration")] = 200,
        as_json: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
    ):
        """Re-price the same replays with other prices: cost, ranking and break-even side by side."""
        from simulator.analyses.sweep import parse_target
        from simulator.analyses.whatif import PriceChange, parse_scales
        from simulator.cli.views import run_whatif

        change = PriceChange(sheet=prices, scales=parse_scales(scale or []), at=_date(at, "--at"))
        if prices is not None and not prices.is_file():
            raise RoutesimError(f"price sheet not found: {prices}", where="--prices", fix="pass a price-sheet YAML file")
        run_whatif(console, scenarios, change, target=parse_target(target_pass_rate, target_escalation_rate, budget),
                   points=points, as_json=as_json)

    @app.command()
    def drift(
        scenario: Annotated[Path, typer.Argument(metavar="SCENARIO", help="scenario YAML file")],
        every: Annotated[str, typer.Option(help="bucket size: a number and m, h, d or w")] = "1h",
        reference_share: Annotated[float, typer.Option(help="the first part of the window that sets the reference "
                                                            "rate")] = 1 / 3,
        min_rise: Annotated[float, typer.Option(help="the rise in escalation rate the test is designed for")] = 0.05,
        false_alarm: Annotated[float, typer.Option(help="chance of any false alarm over the monitored part")] = 0.01,
        as_json: Annotated[bool, typer.Option("--json", help="print the series and the test as JSON")] = False,
    ):
        """Escalation rate, pass rate and cost over time per cascade, with a CUSUM alarm on a sustained rise."""
        from simulator.analyses.drift import DriftSettings
        from simulator.cli.views import run_drift

        run_drift(console, scenario, every=every, as_json=as_json,
                  settings=DriftSettings(reference_share=reference_share, min_rise=min_rise, false_alarm=false_alarm))

    prices_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Make price sheets from public price lists.")

    @prices_app.command("import-litellm")
    def import_litellm(
        file: Annotated[Path, typer.Argument(metavar="FILE", help="LiteLLM's model_prices_and_context_window.json")],
        as_of: Annotated[str, typer.Option(help="effective_from of the imported prices (YYYY-MM-DD)")],
        models: Annotated[str | None, typer.Option(help="comma-separated LiteLLM model names")] = None,
        rename: Annotated[list[str] | None, typer.Option("--as", help="SHEET_NAME=LITELLM_KEY (repeatable)")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="write the sheet here (default: print it)")
                       ] = None,
    ):
        """Turn LiteLLM's per-token prices into a dated price sheet (USD per million tokens)."""
        from simulator.cli.views import run_import_litellm

        names = [name.strip() for name in (models or "").split(",") if name.strip()]
        run_import_litellm(console, file, as_of=_date(as_of, "--as-of"), models=names, renames=rename or [], out=out)

    @prices_app.command("check")
    def check(
        data: Annotated[Path, typer.Argument(metavar="DATA", help="a data folder whose outcomes record cost_usd")],
        prices: Annotated[Path, typer.Option(help="the price sheet to check against the recorded costs")],
        tolerance: Annotated[float, typer.Option(help="relative difference allowed per model and day")] = 0.01,
        tolerance_usd: Annotated[float, typer.Option(help="absolute difference allowed, USD per call")] = 1e-6,
        as_json: Annotated[bool, typer.Option("--json", help="print the reconciliation as JSON")] = False,
    ):
        """Reconcile a price sheet with the recorded cost of the logged calls, per model and day."""
        from simulator.cli.views import run_prices_check

        run_prices_check(console, data, prices, tolerance=tolerance, tolerance_usd=tolerance_usd, as_json=as_json)

    app.add_typer(prices_app, name="prices")
