"""`routesim import-config litellm` and `routesim export litellm`: gateway router configs in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.console import console, errors
from simulator.core.errors import RoutesimError

import_config_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                                help="Turn a gateway's router config into a scenario.")
export_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                         help="Write a scenario as a gateway's router config.")


def _not_an_input(out: Path, *inputs: Path | None) -> None:
    """Refuses, before anything is read, an output that would replace or sit inside an input."""
    from simulator.core.outputs import check_destination, note_input

    for given in inputs:
        if given is not None:
            note_input(given)
    check_destination(out)


def _print_notes(title: str, notes: list[str]) -> None:
    if notes:
        errors.print(title, highlight=False)
        for note in notes:
            errors.print(f"  - {note}", markup=False, highlight=False, soft_wrap=True)


@import_config_app.command("litellm")
def import_litellm_config(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="LiteLLM proxy config.yaml")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the scenario YAML to write")],
    data: Annotated[Path, typer.Option(help="data folder the scenario replays")],
    prices: Annotated[Path | None, typer.Option(help="price sheet")] = None,
    name: Annotated[str | None, typer.Option(help="scenario name (default: the output file's name)")] = None,
    entry: Annotated[str | None, typer.Option(help="model group requests enter at (default: the first)")] = None,
    tag_column: Annotated[str, typer.Option(help="traffic column holding each request's tag")] = "tag",
):
    """Turn a LiteLLM router config (groups, tag routing, retries, fallbacks, rpm/tpm) into a scenario."""
    import yaml

    from simulator.core.contract import load_data
    from simulator.core.engine import compile_policy, data_values
    from simulator.core.outputs import write_text_atomic
    from simulator.core.paths import relative
    from simulator.core.scenario import load_scenario
    from simulator.core.validation import read_yaml
    from simulator.importers.litellm_config import config_to_scenario

    _not_an_input(out, config, data, prices)
    base = out.resolve().parent
    converted = config_to_scenario(read_yaml(config), name=name or out.stem, data=relative(data, base),
                                   prices=relative(prices, base) if prices else None, entry=entry,
                                   tag_column=tag_column, where=str(config))
    text = f"# Imported from {config.name} by routesim import-config litellm.\n" + yaml.safe_dump(
        converted.content, sort_keys=False, allow_unicode=True)
    staged = out.with_name(f".{out.name}.check")
    try:  # check the scenario against the data before it takes the output's place
        staged.write_text(text, encoding="utf-8")
        scenario = load_scenario(staged)
        dataset = load_data(scenario.data, origin=scenario.origin("data"))
        compile_policy(scenario, dataset.traffic.collect_schema(), dataset.outcomes.collect_schema(),
                       data_values(dataset.outcomes, "model"))
    finally:
        staged.unlink(missing_ok=True)
    write_text_atomic(out, text)
    _print_notes("not expressed in the scenario:", converted.notes)
    console.print(f"wrote {out}", highlight=False)


@export_app.command("litellm")
def export_litellm(
    scenario: Annotated[Path, typer.Argument(metavar="SCENARIO", help="scenario YAML file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the LiteLLM config.yaml to write")],
    deployment: Annotated[list[str] | None, typer.Option(
        help="MODEL=PROVIDER/ID: the provider model behind a routesim model (repeatable)")] = None,
    group: Annotated[str | None, typer.Option(help="with rules: the model group clients call (default: the "
                                                   "scenario's name)")] = None,
):
    """Write lanes, or rules plus fallbacks, as a LiteLLM router config; refuse what LiteLLM cannot express."""
    import yaml

    from simulator.core.outputs import write_text_atomic
    from simulator.core.scenario import load_scenario
    from simulator.importers.litellm_config import scenario_to_config

    _not_an_input(out, scenario)
    mapping = {}
    for item in deployment or []:
        model, sep, provider = item.partition("=")
        if not sep or not model or not provider:
            raise RoutesimError(f"--deployment '{item}' is not MODEL=PROVIDER/ID", where="--deployment",
                                fix="e.g. --deployment small=openai/gpt-4o-mini")
        mapping[model] = provider
    converted = scenario_to_config(load_scenario(scenario), deployments=mapping, group=group)
    text = f"# Exported from {scenario.name} by routesim export litellm.\n" + yaml.safe_dump(
        converted.content, sort_keys=False, allow_unicode=True)
    write_text_atomic(out, text)
    _print_notes("note:", converted.notes)
    console.print(f"wrote {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(import_config_app, name="import-config")
    app.add_typer(export_app, name="export")
