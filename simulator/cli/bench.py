"""`routesim bench`: replay speed and memory against a DuckDB scan of the same Parquet columns.

Each measurement runs in a fresh child process, so its peak resident memory is its own and no cache
warmed by an earlier measurement flatters a later one (the OS page cache is shared, and each measurement
is run once first to warm it alike for all).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from simulator.cli.console import console
from simulator.core.paths import CACHE, DATA, SCENARIOS

if TYPE_CHECKING:
    from rich.table import Table

BENCH_SCENARIOS = ("flagship-everywhere", "stacked")
SEED = 2026
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_REQUESTS = 1_000_000
REPORT_SCENARIOS = ("flagship-everywhere", "cascade", "stacked")
SWEEP_POINTS = 200
RULE_COUNTS = (10, 10_000)  # rules per policy compared on the embedded week

FLOOR_SQL = """
SELECT count(t.request_id), min(t.ts), count(DISTINCT t.slice), sum(t.input_tokens),
       (SELECT sum(input_tokens) + sum(coalesce(cached_input_tokens, 0)) + sum(output_tokens) + sum(latency_ms)
               + sum(score) + sum(confidence) + sum(CAST(passed AS INT)) + sum(CAST(hard_check_ok AS INT))
               + count(model) + count(request_id) + sum(sample)
        FROM read_parquet('{outcomes}'))
FROM read_parquet('{traffic}') t
"""


@dataclass(frozen=True)
class Measurement:
    name: str
    seconds: float
    peak_mb: float


def week_folder(requests: int, cache: Path) -> Path:
    """The benchmark week of `requests` requests, generated once and kept in `cache`."""
    from simulator.datasets.generate import write_week

    folder = Path(cache) / f"support-week-{requests}-seed{SEED}"
    if not (folder / "outcomes.parquet").exists():
        write_week(folder, requests, 7, SEED)
    return folder


def _peak_mb() -> float:
    """This process's peak resident memory. VmHWM belongs to the process image, so unlike ru_maxrss it
    does not carry over the parent's peak into a child started by fork and exec."""
    import resource

    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _floor(folder: str) -> tuple[float, float]:
    import duckdb

    started = time.perf_counter()
    connection = duckdb.connect()
    connection.execute(FLOOR_SQL.format(traffic=f"{folder}/traffic.parquet",
                                        outcomes=f"{folder}/outcomes.parquet")).fetchall()
    return time.perf_counter() - started, _peak_mb()


def _replay(folder: str, scenario_name: str) -> tuple[float, float]:
    from simulator.core.contract import load_data
    from simulator.core.engine import replay
    from simulator.core.prices import load_prices
    from simulator.core.scenario import load_scenario

    scenario = load_scenario(SCENARIOS / f"{scenario_name}.yaml")
    data = load_data(Path(folder))
    sheet = load_prices(scenario.prices)
    started = time.perf_counter()
    replay(scenario.model_copy(update={"data": Path(folder)}), data, sheet)
    return time.perf_counter() - started, _peak_mb()


def many_rules_scenario(rules: int, folder: Path = DATA / "support-week"):
    """rules-only.yaml with `rules` rules in front of its own: rule i is `input_tokens = i` and sends the
    request to small, so every rule is evaluated for most requests and requests spread over many rules."""
    from simulator.core.scenario import load_scenario

    scenario = load_scenario(SCENARIOS / "rules-only.yaml")
    content = scenario.model_dump(exclude_none=True)
    content["policy"]["rules"] = ([{"when": f"input_tokens = {i}", "use": "small"} for i in range(rules)]
                                  + list(content["policy"]["rules"]))
    return type(scenario).model_validate(content | {"name": f"rules-{rules}", "data": folder})


def _rules(rules: int) -> tuple[float, float]:
    """Seconds and peak memory of a replay of `many_rules_scenario(rules)`, checking the scenario included."""
    from simulator.core.contract import load_data
    from simulator.core.engine import replay
    from simulator.core.prices import load_prices

    data = load_data(DATA / "support-week")
    sheet = load_prices(DATA / "prices" / "support.yaml")
    started = time.perf_counter()
    replay(many_rules_scenario(rules), data, sheet)
    return time.perf_counter() - started, _peak_mb()


def rules_table() -> Table:
    """Replay time and peak memory of RULE_COUNTS rules on the embedded week: the rules are compiled once
    and evaluated in flat passes, so the cost grows linearly with the count (README "Reliability")."""
    from rich.table import Table

    measured = []
    for rules in RULE_COUNTS:
        _in_child(_rules, rules)
        measured.append((rules, *_in_child(_rules, rules)))
    table = Table(title="rules per policy: replay of the embedded week (data/support-week)")
    for column in ("rules", "seconds", f"x {RULE_COUNTS[0]} rules", "peak memory"):
        table.add_column(column, justify="right")
    for rules, seconds, peak in measured:
        table.add_row(f"{rules:,}", f"{seconds:.2f}", f"{seconds / measured[0][1]:.1f}", f"{peak:,.0f} MB")
    return table


def bench_sweep(folder: Path, points: int) -> float:
    """Seconds to sweep scenarios/cascade.yaml's gate over `points` thresholds on the data in `folder`.

    Loading and validating the data is left out (timed separately by `routesim bench`); both replays, the
    value lookup and the curve are in.
    """
    from simulator.analyses.sweep import resolve_gate, sweep
    from simulator.core.contract import load_data
    from simulator.core.prices import load_prices
    from simulator.core.scenario import load_scenario

    scenario = load_scenario(SCENARIOS / "cascade.yaml")
    scenario = scenario.model_copy(update={"data": Path(folder)})
    data = load_data(Path(folder))
    sheet = load_prices(scenario.prices)
    started = time.perf_counter()
    gate = resolve_gate(scenario, data, step=0, over="confidence")
    sweep(scenario, data, sheet, gate, points=points)
    return time.perf_counter() - started


def _sweep(folder: str) -> tuple[float, float]:
    return bench_sweep(Path(folder), SWEEP_POINTS), _peak_mb()


def _bootstrap(requests: int) -> tuple[float, float]:
    from simulator.core.stats import bench_bootstrap

    return bench_bootstrap(requests=requests, resamples=BOOTSTRAP_RESAMPLES), _peak_mb()


def _saved_report_results(folder: Path) -> Path:
    """Replays the report's scenarios on the benchmark week once and keeps their results beside it."""
    import yaml

    from simulator.core.results import SCHEMA_VERSION
    from simulator.report.build import replay_and_save

    results = folder / f"report-results-v{SCHEMA_VERSION}"
    if (results / "report.json").exists():
        return results
    scenarios = folder / "scenarios"
    scenarios.mkdir(exist_ok=True)
    paths = []
    for name in REPORT_SCENARIOS:
        content = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
        content |= {"data": str(folder.resolve()), "prices": str((SCENARIOS / content["prices"]).resolve())}
        path = scenarios / f"{name}.yaml"
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        paths.append(path)
    replay_and_save(paths, results, baseline=REPORT_SCENARIOS[0])
    return results


def _render(results: str) -> tuple[float, float]:
    from simulator.report.build import render_report

    started = time.perf_counter()
    render_report(Path(results), Path(results).with_name("report.html"))
    return time.perf_counter() - started, _peak_mb()


def _load(folder: str) -> tuple[float, float]:
    from simulator.core.contract import load_data

    started = time.perf_counter()
    load_data(Path(folder))
    return time.perf_counter() - started, _peak_mb()


def _in_child(function, *arguments) -> tuple[float, float]:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, arguments)


def measure(folder: Path, requests: int) -> list[Measurement]:
    jobs = [("DuckDB scan (floor)", _floor, (str(folder),)),
            ("load + validate", _load, (str(folder),))]
    jobs += [(f"replay {name}", _replay, (str(folder), name)) for name in BENCH_SCENARIOS]
    jobs += [(f"sweep cascade, {SWEEP_POINTS} thresholds", _sweep, (str(folder),))]
    if requests <= BOOTSTRAP_REQUESTS:  # the gate's bootstrap and the report are sized at 1M requests
        jobs += [(f"paired bootstrap, {BOOTSTRAP_RESAMPLES:,} resamples", _bootstrap, (requests,))]
        results = _in_child(_saved_report_results, folder)
        jobs += [(f"report --from saved results ({len(REPORT_SCENARIOS)} policies)", _render, (str(results),))]
    measurements = []
    for name, function, arguments in jobs:
        _in_child(function, *arguments)  # warm the page cache alike for every measurement
        seconds, peak = _in_child(function, *arguments)
        measurements.append(Measurement(name, seconds, peak))
    return measurements


def run_bench(requests: int, cache: Path) -> Table:
    import multiprocessing
    import platform

    from rich.table import Table

    folder = week_folder(requests, cache)
    measurements = measure(folder, requests)
    floor = measurements[0].seconds
    table = Table(title=f"routesim bench: {requests:,} requests, {platform.machine()}, "
                        f"{multiprocessing.cpu_count()} cores, Python {platform.python_version()}")
    for column in ("measurement", "seconds", "requests / s", "x floor", "peak memory"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for m in measurements:
        table.add_row(m.name, f"{m.seconds:.2f}", f"{requests / m.seconds:,.0f}", f"{m.seconds / floor:.1f}",
                      f"{m.peak_mb:,.0f} MB")
    return table


STARTUP_RUNS = 7


def help_commands() -> list[list[str]]:
    """`--help` of routesim and of every subcommand, as argument lists."""
    import typer.main

    from simulator.cli import app

    def walk(group, prefix: list[str]) -> list[list[str]]:
        found = [[*prefix, "--help"]]
        for name, command in sorted(getattr(group, "commands", {}).items()):
            found += walk(command, [*prefix, name]) if hasattr(command, "commands") else [[*prefix, name, "--help"]]
        return found

    return walk(typer.main.get_command(app), [])


def startup_table(runs: int = STARTUP_RUNS) -> Table:
    """Wall time of whole `routesim ... --help` processes: the median of `runs` runs per command, the
    commands interleaved so that a burst of load on the machine does not land on one of them."""
    import statistics
    import subprocess
    import sys

    from rich.table import Table

    script = Path(sys.executable).with_name("routesim")
    launcher = [str(script)] if script.exists() else [sys.executable, "-c", "from simulator.cli import main; main()"]
    commands = help_commands()
    seconds: dict[int, list[float]] = {index: [] for index in range(len(commands))}
    for _ in range(runs):
        for index, arguments in enumerate(commands):
            started = time.perf_counter()
            subprocess.run([*launcher, *arguments], check=True, stdout=subprocess.DEVNULL)
            seconds[index].append(time.perf_counter() - started)
    table = Table(title=f"routesim startup: whole process, median of {runs} runs")
    for column in ("command", "median s", "max s"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for index, arguments in enumerate(commands):
        table.add_row("routesim " + " ".join(arguments), f"{statistics.median(seconds[index]):.3f}",
                      f"{max(seconds[index]):.3f}")
    return table


def bench(
    requests: Annotated[int, typer.Option(help="requests in the benchmark week")] = 1_000_000,
    ten_million: Annotated[bool, typer.Option("--10m", help="also run on 10,000,000 requests")] = False,
    cache: Annotated[Path, typer.Option(help="where generated benchmark weeks are kept")] = CACHE / "bench",
    startup_only: Annotated[bool, typer.Option("--startup-only", help="only time routesim's startup (--help)")
                            ] = False,
):
    """Time the replay against a DuckDB scan of the same Parquet columns (the floor)."""
    sizes = [requests] + ([10_000_000] if ten_million and requests != 10_000_000 else [])
    console.print(startup_table())
    if startup_only:
        return
    console.print(rules_table())
    for size in sizes:
        console.print(run_bench(size, cache))


def register(app: typer.Typer) -> None:
    app.command()(bench)
