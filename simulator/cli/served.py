"""`routesim coverage`, `estimate`, `plan-shadow` and `calibrate`: what a served-only log can answer, how to
fill it in with a shadow sample, and estimates from it, each labelled with its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.console import console, inert, print_table
from simulator.core.errors import RoutesimError
from simulator.core.formats import counted
from simulator.core.limits import MAX_SEED


def coverage(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="data folder (traffic.parquet and outcomes.parquet)")],
    scenarios: Annotated[list[Path] | None, typer.Argument(metavar="SCENARIO",
                                                           help="scenario files to check against the data")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the tables as JSON")] = False,
):
    """Per slice x model: answers and grades held; per scenario: which kind of number a replay can give."""
    from simulator.analyses.coverage import answer_table, scenario_coverage
    from simulator.core.contract import load_data
    from simulator.core.runner import Inputs, load_scenarios

    # Before the shared loader, whose "file not found" cannot say which argument named the file.
    for position, path in enumerate(scenarios or [], start=2):
        if not path.exists():
            raise RoutesimError(f"scenario file not found: {path}", where=f"SCENARIO (argument {position}: {path})",
                                fix="give the path of a scenario .yaml that replays DATA, or leave it out to see the "
                                    "answers alone")
    dataset = load_data(data)
    answers = answer_table(dataset)
    inputs = Inputs()
    rows = []
    for scenario in load_scenarios(scenarios or []):
        if scenario.data.resolve() != Path(data).resolve():
            raise RoutesimError(f"scenario '{scenario.name}' replays {scenario.data}, not {data}",
                                where=f"scenario '{scenario.name}', key 'data'",
                                fix="check scenarios against the data folder they name")
        rows.append(scenario_coverage(scenario, dataset, inputs.prices(scenario)))
    if as_json:
        from simulator.core.outputs import json_output

        typer.echo(json_output({"answers": answers.to_dicts(),
                                "scenarios": [{**row.__dict__, "share": row.share} for row in rows]}))
        return
    from simulator.cli.served_views import answers_table, scenarios_table

    print_table(console, answers_table(answers))
    if answers.is_empty():  # an empty table alone would read as a rendering fault
        console.print(f"{inert(str(data))} holds no answers (its outcomes have no rows).", highlight=False)
    if rows:
        print_table(console, scenarios_table(rows))


def estimate(
    scenarios: Annotated[list[Path], typer.Argument(metavar="SCENARIO",
                                                    help="scenario files whose data is a served-only log")],
    method: Annotated[str, typer.Option(help="design-weighted (a shadow sample) or off-policy (a randomised "
                                             "router's log; one-call policies)")] = "design-weighted",
    confidence: Annotated[float, typer.Option(help="confidence of the intervals")] = 0.95,
    resamples: Annotated[int | None, typer.Option(
        min=1, help="design-weighted: stratified bootstrap resamples (default 1000, or 2 / (1 - confidence) where "
                    "that is more)")] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED,
                                      help="seed of the bootstrap and of the reward models' folds")] = 0,
    unsupported: Annotated[str, typer.Option(help="off-policy: refuse requests without support, or fill them "
                                                  "from the reward model (dm)")] = "refuse",
    reward_model: Annotated[str, typer.Option(help="off-policy: logistic (and ridge) or gbm")] = "logistic",
    as_json: Annotated[bool, typer.Option("--json", help="print the estimates as JSON")] = False,
):
    """Whole-traffic estimates, each labelled with how it was obtained, from a shadow sample or a served log."""
    from simulator.core.runner import Inputs, load_scenarios
    from simulator.core.stats import check_confidence, settle_resamples

    resamples = settle_resamples(resamples, check_confidence(confidence))
    inputs = Inputs()
    results = []
    for scenario in load_scenarios(scenarios):
        data, sheet = inputs.data(scenario), inputs.prices(scenario)
        if method == "design-weighted":
            from simulator.analyses.estimates import design_weighted

            results.append(design_weighted(scenario, data, sheet, resamples=resamples, seed=seed,
                                           confidence=confidence))
        elif method == "off-policy":
            from simulator.analyses.offpolicy import off_policy

            results.append(off_policy(scenario, data, sheet, confidence=confidence, unsupported=unsupported,
                                      reward_model=reward_model, seed=seed))
        else:
            raise RoutesimError(f"unknown method '{method}'", where="--method", fix="use design-weighted or off-policy")
    if as_json:
        from simulator.core.outputs import json_output

        typer.echo(json_output([result.as_dict() for result in results]))
        return
    from simulator.cli.served_views import estimates_table

    for result in results:
        print_table(console, estimates_table(f"{result.scenario}: estimates ({method})", result.estimates, confidence))
        console.print("  " + ", ".join(f"{key} {_diagnostic(key, value)}" for key, value in result.diagnostics.items()),
                      highlight=False)
        total = getattr(result, "requests", None) or result.diagnostics.get("requests")
        console.print(f"  figures are estimates for all {counted(total, 'request')} of the window, not an exact replay",
                      highlight=False)


def _diagnostic(key: str, value) -> str:
    """A diagnostic's value as the tables show numbers: counts and large sums with thousands separators
    (`population 6,000`, `weight_sum 6,000`), small figures to 4 significant digits; a seed as given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or key == "seed":
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.4g}" if abs(value) < 10_000 else f"{value:,.0f}"


def plan_shadow(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="the served log's data folder")],
    models: Annotated[str, typer.Option(help="candidate models to re-run, comma-separated")] = ...,
    halfwidth: Annotated[float, typer.Option(help="target half-width of each slice's Wilson interval")] = 0.02,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="seed of the draw")] = ...,
    out: Annotated[Path, typer.Option("--out", "-o", help="plan folder to write")] = ...,
    budget: Annotated[float | None, typer.Option(help="cap the expected cost of the re-runs, USD")] = None,
    prices: Annotated[Path | None, typer.Option(help="price sheet for the budget and the expected cost")] = None,
    confidence: Annotated[float, typer.Option(help="confidence of the Wilson intervals sized for")] = 0.95,
    force: Annotated[bool, typer.Option(help="replace the plan folder if it exists")] = False,
):
    """Plan a stratified shadow sample: which requests to re-run on which models; OpenAI Batch files if the
    traffic carries messages."""
    from simulator.analyses.shadow_plan import batch_files, plan_shadow as make_plan
    from simulator.core.contract import load_data
    from simulator.core.outputs import MARKER, allow_replacing_folders, atomic_folder, json_text
    from simulator.core.prices import load_prices

    allow_replacing_folders(force)
    # As every output: a plan folder routesim wrote (its marker file) is replaced; anything else needs --force.
    if out.exists() and not force and not (out / MARKER).is_file():
        raise RoutesimError(f"{out} already exists and routesim did not write it (it has no {MARKER} file)",
                            where="--out", fix="choose a new folder or add --force")
    dataset = load_data(data)
    names = [name.strip() for name in models.split(",") if name.strip()]
    plan = make_plan(dataset, names, halfwidth, seed, sheet=load_prices(prices) if prices else None,
                     budget=budget, confidence=confidence)
    files = batch_files(plan, dataset)
    summary = plan.summary() | {"batch_files": sorted(files)}
    with atomic_folder(out) as staging:
        plan.manifest.write_parquet(staging / "manifest.parquet")
        (staging / "plan.json").write_text(json_text(summary), encoding="utf-8")
        if files:
            (staging / "batch").mkdir()
            for name, lines in files.items():
                (staging / "batch" / name).write_bytes(b"".join(lines))
    from simulator.cli.served_views import plan_table

    print_table(console, plan_table(plan))
    console.print(f"wrote {out}: manifest.parquet, plan.json" + (f", {len(files)} Batch file(s) in batch/" if files
                                                                 else " (no messages column: no Batch files)"),
                  highlight=False)


def calibrate(
    data: Annotated[Path, typer.Argument(metavar="DATA",
                                         help="data folder whose judge grades have gold grades on a subset")],
    confidence: Annotated[float, typer.Option(help="confidence of the intervals")] = 0.95,
    min_gold: Annotated[int, typer.Option(min=1, help="gold grades a model x slice needs for its own correction")
                        ] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
):
    """Pass rates per model x slice from judge grades calibrated against gold grades (prediction-powered)."""
    from simulator.analyses.calibrated import calibrate as run
    from simulator.core.contract import load_data
    from simulator.core.stats import check_confidence

    result = run(load_data(data), confidence=check_confidence(confidence), min_gold=min_gold)
    if as_json:
        from simulator.core.outputs import json_output

        typer.echo(json_output(result))
        return
    from simulator.cli.served_views import agreement_table, calibrated_table

    print_table(console, calibrated_table(result))
    print_table(console, agreement_table(result))
    assumed = sum(row["len"] for row in result["assumed_from_status"])
    if assumed:
        console.print(f"{assumed:,} answer(s) with passed assumed from status are not calibrated: they stay assumed",
                      highlight=False)


def register(app: typer.Typer) -> None:
    app.command("plan-shadow")(plan_shadow)
    for command in (coverage, estimate, calibrate):
        app.command()(command)
