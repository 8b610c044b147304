"""The README documents every metric, scenario key, data column and command, and starts with the two commands."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from simulator.cli import app
from simulator.core.contract import (
    OPTIONAL_OUTCOME_COLUMNS,
    OPTIONAL_TRAFFIC_COLUMNS,
    OUTCOME_COLUMNS,
    TRAFFIC_COLUMNS,
)
from simulator.core.metrics import CALL_METRICS, METRICS, SESSION_METRICS
from simulator.core.prices import PriceEntry
from simulator.core.scenario import Scenario

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def keys_of(model: type[BaseModel]) -> set[str]:
    from simulator.core.validation import _model_in

    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        nested = _model_in(field.annotation)
        if nested is not None:
            keys |= keys_of(nested)
    return keys


def test_readme_starts_with_the_demo_and_test_commands():
    head = "\n".join(README.splitlines()[:20])
    assert "bash scripts/demo.sh" in head and "bash scripts/test.sh" in head


@pytest.mark.parametrize("metric", [*METRICS, *CALL_METRICS, *SESSION_METRICS], ids=lambda m: m.name)
def test_readme_defines_every_metric_with_its_unit(metric):
    assert f"| `{metric.name}` | {metric.unit} | {metric.definition} |" in README


@pytest.mark.parametrize("key", sorted(keys_of(Scenario)))
def test_readme_documents_every_scenario_key(key):
    assert f"| `{key}` |" in README


@pytest.mark.parametrize("key", sorted(PriceEntry.model_fields))
def test_readme_documents_every_price_key(key):
    assert f"{key}:" in README


@pytest.mark.parametrize("column", [*TRAFFIC_COLUMNS, *OUTCOME_COLUMNS, *OPTIONAL_TRAFFIC_COLUMNS,
                                    *OPTIONAL_OUTCOME_COLUMNS], ids=lambda c: c.name)
def test_readme_documents_every_data_column(column):
    assert f"| `{column.name}` |" in README


@pytest.mark.parametrize("command", [c.name or c.callback.__name__ for c in app.registered_commands])
def test_readme_documents_every_command(command):
    assert f"`routesim {command}" in README


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci and "bash scripts/test.sh" in README


ROOT = Path(__file__).resolve().parent.parent


def test_the_scenario_reference_example_validates_on_the_shipped_data(cli, tmp_path):
    """The README's annotated scenario is a working file on the embedded week (its paths made absolute, since
    it is written elsewhere): a user copying it gets no error."""
    import yaml

    block = README.split("## Scenario reference", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    scenario = yaml.safe_load(block)
    scenario["data"] = str(ROOT / "data" / "support-week")
    scenario["prices"] = str(ROOT / "data" / "prices" / "support.yaml")
    path = tmp_path / "reference.yaml"
    path.write_text(yaml.safe_dump(scenario))
    result = cli("validate", path)
    assert result.code == 0, result.err


def test_the_shipped_lanes_scenario_is_what_its_documented_command_emits(cli, tmp_path):
    """scenarios/lanes.yaml is named in the README with the command that wrote it; run again, the command
    writes the same file (the data and prices paths aside, which are relative to where it is written)."""
    import yaml

    command = README.split("`lanes` (written by `", 1)[1].split("`", 1)[0].split()
    assert command[:2] == ["routesim", "lanes"] and command[-2:] == ["--emit", "scenarios/lanes.yaml"]
    emitted = tmp_path / "scenarios" / "lanes.yaml"
    arguments = [ROOT / argument if argument.startswith(("data/", "scenarios/")) else argument
                 for argument in command[1:-1]]
    result = cli(*arguments, emitted)
    assert result.code == 0, result.err
    shipped, again = (yaml.safe_load(path.read_text()) for path in (ROOT / "scenarios" / "lanes.yaml", emitted))
    for content in (shipped, again):
        content.pop("data"), content.pop("prices")
    assert again == shipped


def test_the_readme_replay_sample_is_what_its_command_prints(tmp_path):
    # "What a replay looks like" is pasted output: it went stale once (90.0% where the command printed 89.96%).
    # The block is the command, then the output's first lines verbatim, at the 120 columns the README states.
    block = README.split("## What a replay looks like", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    command, *shown = block.splitlines()
    assert command.startswith("$ routesim replay ")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", "from simulator.cli import main; main()",
                           *shlex.split(command.removeprefix("$ routesim "))], capture_output=True, text=True,
                          cwd=root, env=dict(os.environ, PYTHONPATH=str(root), COLUMNS="120",
                                             ROUTESIM_CACHE_DIR=str(tmp_path / "cache")), timeout=600)
    assert done.returncode == 0, done.stderr
    printed = [line.rstrip() for line in done.stdout.splitlines()]
    assert printed[:len(shown)] == shown
