"""Scenario files in, replays and summaries out: the one path every command takes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simulator.core.contract import Dataset, load_data
from simulator.core.engine import Progress, Replay, replay
from simulator.core.errors import RoutesimError
from simulator.core.prices import PriceSheet, load_prices
from simulator.core.results import build_summary
from simulator.core.scenario import Scenario, load_scenario
from simulator.core.verdict import resolve_admission


@dataclass(frozen=True)
class Outcome:
    replay: Replay | None  # None for a replay on shards, which keeps no per-request decisions
    summary: dict


class Inputs:
    """Loads each scenario's data folder and price sheet once, however many scenarios share it. A folder or
    sheet that cannot be loaded is reported at the scenario's key that names it (Scenario.origin)."""

    def __init__(self) -> None:
        self._data: dict[Path, Dataset] = {}
        self._prices: dict[Path, PriceSheet] = {}

    def data(self, scenario: Scenario) -> Dataset:
        folder = scenario.data
        if folder not in self._data:
            self._data[folder] = load_data(folder, origin=scenario.origin("data"))
        return self._data[folder]

    def prices(self, scenario: Scenario) -> PriceSheet | None:
        path = scenario.prices
        if path is None:
            return None
        if path not in self._prices:
            self._prices[path] = load_prices(path, origin=scenario.origin("prices"))
        return self._prices[path]


def run_scenario(scenario: Scenario, inputs: Inputs, progress: Progress | None = None) -> Outcome:
    import polars as pl

    data, sheet = inputs.data(scenario), inputs.prices(scenario)
    try:
        result = replay(scenario, data, sheet, progress)
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError) as error:
        # The predicates were type-checked on load; what fails only on the values (a CAST of text that is
        # not a number) fails here.
        reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
        if "parquet" in reason.lower() and data.layout is not None:
            # Read after the first use from the compiled layout: a file of it truncated or damaged on disk.
            raise RoutesimError(f"scenario '{scenario.name}': a Parquet file cannot be read ({reason})",
                                where=f"the compiled layout of {scenario.data} in the cache, {data.layout.path}",
                                fix="run 'routesim cache clear' (the next use validates the data and builds the "
                                    "layout again), then 'routesim validate' if it fails again") from None
        raise RoutesimError(f"scenario '{scenario.name}' cannot be replayed on its data: {reason}",
                            where=f"scenario '{scenario.name}', data {scenario.data}",
                            fix="a predicate fails on some values of the data (a CAST of text that is not a "
                                "number?): compare values of the column's own type") from None
    return Outcome(replay=result, summary=build_summary(result, data, sheet))


def load_scenarios(paths: list[Path], rule: str | None = None, confidence: float | None = None) -> list[Scenario]:
    """The scenario files of one run, each carrying the run's one admission setting
    (simulator.core.verdict.resolve_admission: `rule` and `confidence` override the scenarios)."""
    scenarios = [load_scenario(path) for path in paths]
    admission = resolve_admission([(s.name, s.admission) for s in scenarios], rule, confidence)
    scenarios = [s.model_copy(update={"admission": admission}) for s in scenarios]
    names = [scenario.name for scenario in scenarios]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise RoutesimError(f"two scenarios share the name '{duplicated[0]}'",
                            where=", ".join(str(p) for p, s in zip(paths, scenarios) if s.name == duplicated[0]),
                            fix="give every scenario its own 'name'")
    return scenarios
