"""`routesim validate`: every problem of a data folder, price sheet or scenario, collected, not raised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from simulator.core.contract import (
    OUTCOMES_FILE,
    TRAFFIC_FILE,
    data_files,
    load_data,
    scan_parquet,
    serving_signals,
    validate_folder,
)
from simulator.core.engine import compile_policy, data_values
from simulator.core.errors import Origin, RoutesimError
from simulator.core.layout import check_cache_outside
from simulator.core.prices import load_prices
from simulator.core.scenario import Scenario, load_scenario
from simulator.core.validation import read_yaml


def _collect(problems: list[str], check: Callable[[], object]):
    try:
        return check()
    except RoutesimError as error:
        problems.append(error.render())
        return None


def check_data(folder: Path, origin: Origin | None = None) -> list[str]:
    """Every problem of a data folder; one with the folder itself names `origin`, the scenario key that gave it."""
    problems: list[str] = []
    folder = Path(folder)
    if origin is not None and _collect(problems, lambda: data_files(folder, origin)) is None:
        return problems
    shards = sorted(folder.glob("shard=*")) if folder.is_dir() and not (folder / TRAFFIC_FILE).exists() else []
    if shards:
        # The output of `routesim shard`: each shard=N below it is a data folder, the root is not.
        first = shards[0]
        return [RoutesimError(f"{folder} holds {len(shards)} shard(s) written by 'routesim shard', not one data folder",
                              where=str(folder),
                              fix=f"validate the shards themselves: routesim validate {first}"
                                  + (f" ... {shards[-1]}" if len(shards) > 1 else "")).render()]
    _collect(problems, lambda: check_cache_outside(folder))
    report = _collect(problems, lambda: validate_folder(folder))
    if report is not None and report.ok:  # the outcomes read: the declared signals can be checked against them
        outcome_names = scan_parquet(folder / OUTCOMES_FILE).collect_schema().names()
        _collect(problems, lambda: serving_signals(folder, outcome_names))
    return problems + (report.problems if report else [])


def check_prices(path: Path, origin: Origin | None = None) -> list[str]:
    problems: list[str] = []
    _collect(problems, lambda: load_prices(path, origin))
    return problems


def check_scenario(path: Path, replay: Callable[[Path], object] | None = None) -> list[str]:
    """Every problem of a scenario file, its data and its price sheet. With `replay`, a scenario with none is
    then replayed by it (writing nothing), and the problem it raises, if any, is reported: what only the
    data can show (an empty window, a call no price covers, a predicate that some values break)."""
    problems: list[str] = []
    scenario: Scenario | None = _collect(problems, lambda: load_scenario(path))
    if scenario is None:
        return problems
    data_problems = check_data(scenario.data, scenario.origin("data"))
    problems += data_problems
    if scenario.prices:
        problems += check_prices(scenario.prices, scenario.origin("prices"))
    if data_problems:
        return problems
    data = load_data(scenario.data)
    _collect(problems, lambda: compile_policy(scenario, data.traffic.collect_schema(), data.outcomes.collect_schema(),
                                              data_values(data.outcomes, "model"), data_values(data.traffic, "slice")))
    if replay is not None and not problems:
        _collect(problems, lambda: replay(path))
    return problems


# Files an importer reads (logs, grades, exports): never a data folder, price sheet or scenario. Not .json,
# which YAML reads: a scenario or sheet may be written as JSON.
LOG_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".eval")


def check_path(path: Path, replay: Callable[[Path], object] | None = None) -> list[str]:
    """Problems of whatever `path` is: a data folder, a price sheet or a scenario file (`check_scenario`, with
    `replay`)."""
    path = Path(path)
    if path.is_dir():
        return check_data(path)
    if not path.exists():
        return [RoutesimError(f"{path}: no such file or folder", where=str(path),
                              fix="give an existing data folder, price sheet (.yaml) or scenario file (.yaml); "
                                  "check the path's spelling and the current folder").render()]
    if path.suffix.lower() == ".parquet":
        # A data file given for its folder: say so as every other command does, not "not UTF-8 text".
        return check_data(path)
    if path.suffix.lower() in LOG_SUFFIXES:
        # A log or grades file is read by an importer: its YAML parse error would say nothing useful.
        return [RoutesimError(f"{path.name} is a {path.suffix.lstrip('.').upper()} file, not a data folder, price "
                              "sheet or scenario (YAML), which validate checks", where=str(path),
                              fix="turn logs or grades into a data folder with 'routesim import FORMAT FILE -o DIR' "
                                  "(README, 'Importing logs'), then validate that folder").render()]
    problems: list[str] = []
    raw = _collect(problems, lambda: read_yaml(path))
    if problems:
        return problems
    if isinstance(raw, dict) and "models" in raw and "policy" not in raw:
        return check_prices(path)
    return check_scenario(path, replay)
