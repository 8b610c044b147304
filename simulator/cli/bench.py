"""`routesim bench`: replay speed and memory against a DuckDB scan of the same Parquet columns.

Methodology: every measurement runs in a fresh process, so its peak resident memory is its own and no
cache warmed by an earlier measurement flatters a later one (the OS page cache is shared: one untimed
round warms it alike for all). Each measurement is run `runs` times (at least 3), each time right after a
run of its floor, so a burst of load on the machine lands on both; the table gives medians, and each
ratio is the median measurement over the median of its own floors. In-process measurements (the library
call, after imports and loading) are set against the DuckDB scan timed in-process; whole-process
measurements (`routesim replay`, `routesim gate`) against a whole `python -c` process running that scan.
The load average is printed before and after.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from simulator.cli.console import console, print_table
from simulator.core.paths import CACHE, DATA, SCENARIOS

if TYPE_CHECKING:
    from rich.table import Table

# sticky-sessions: stacked with a fan-out step and sticky sessions (issue 13's constructs at scale)
BENCH_SCENARIOS = ("flagship-everywhere", "cascade", "stacked", "sticky-sessions")
SEED = 2026
BOOTSTRAP_RESAMPLES = 1000
GATE_REQUESTS = 1_000_000  # the gate, its bootstrap and the report are measured up to this size
REPORT_SCENARIOS = ("flagship-everywhere", "cascade", "stacked")
SWEEP_POINTS = 1000
RUNS = 3
RULE_COUNTS = (10, 10_000)  # rules per policy compared on the embedded week
SWEEP_JOB = f"sweep cascade, {SWEEP_POINTS:,} thresholds"
GATE_JOB = f"whole process: routesim gate, {BOOTSTRAP_RESAMPLES:,} resamples"
REPLAY_PROCESS_JOB = "whole process: routesim replay stacked"
COMMAND_REPLAY = "replay {} as the command runs it, summary included"
# (measurement, the one replay it is set against, the target for the ratio of their medians)
# (issue 15's sweep and gate; issue 13's fan-out and session policy against the stacked replay, as the
# command runs them and in one piece). The sweep is set against a replay run as its own command runs it:
# in chunks on large data, as the sweep is.
RATIOS = ((SWEEP_JOB, COMMAND_REPLAY.format("cascade"), 2.0), (GATE_JOB, REPLAY_PROCESS_JOB, 25.0),
          (COMMAND_REPLAY.format("sticky-sessions"), COMMAND_REPLAY.format("stacked"), 1.5),
          ("replay sticky-sessions", "replay stacked", 1.5))

FLOOR_SQL = """
SELECT count(t.request_id), min(t.ts), count(DISTINCT t.slice), sum(t.input_tokens),
       (SELECT sum(input_tokens) + sum(coalesce(cached_input_tokens, 0)) + sum(output_tokens) + sum(latency_ms)
               + sum(score) + sum(confidence) + sum(CAST(passed AS INT)) + sum(CAST(hard_check_ok AS INT))
               + count(model) + count(request_id) + sum(sample)
        FROM read_parquet('{outcomes}'))
FROM read_parquet('{traffic}') t
"""

# Runs a command as a child and prints its wall time, peak memory (MiB) and exit code. A tiny interpreter
# starts it, so the child's ru_maxrss, which starts from its parent's peak, is not inflated. ru_maxrss is the
# largest single process of the tree, so the resident memory of the whole tree (the command and its worker
# processes) is also summed every 0.25 s; the peak is the larger of the two.
PROCESS_PROBE = """
import json, os, subprocess, sys, threading, time
def tree_bytes(root):
    children = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open(f'/proc/{name}/stat') as stat:
                    children.setdefault(int(stat.read().rsplit(')', 1)[1].split()[1]), []).append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f'/proc/{pid}/statm') as statm:
                total += int(statm.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
        except (OSError, ValueError, IndexError):
            pass
    return total
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
peak, done = [0], threading.Event()
def watch():
    while not done.wait(0.25):
        peak[0] = max(peak[0], tree_bytes(child.pid))
threading.Thread(target=watch, daemon=True).start()
_, status, usage = os.wait4(child.pid, 0)
seconds = time.perf_counter() - started
done.set()
print(json.dumps([seconds, max(usage.ru_maxrss / 1024, peak[0] / 2**20), os.waitstatus_to_exitcode(status)]))
"""
OUT_OF_CORE_REQUESTS = 100_000_000  # from this size the bench measures the out-of-core path only


@dataclass(frozen=True)
class Job:
    """One measurement: a function run in a fresh child process, returning (seconds, peak MiB)."""

    name: str
    function: Callable[..., tuple[float, float]]
    arguments: tuple
    whole_process: bool = False  # compared with the whole-process floor
    once: bool = False  # run once (after one run of its floor), not warmed up: a first use happens once


@dataclass(frozen=True)
class Measurement:
    name: str
    seconds: float  # median of the runs
    peak_mb: float  # largest of the runs
    floor_seconds: float  # median of the floors run beside it
    runs: int


GENERATION_RECORD = "generation.json"


def week_folder(requests: int, cache: Path) -> Path:
    """The benchmark week of `requests` requests, generated once and kept in `cache`. Its generation is
    timed in a fresh process and recorded beside it (`GENERATION_RECORD`: seconds, peak memory, date and
    load average), since it runs once and not beside a floor."""
    import json

    # "-sessions": weeks generated since the generator writes session_id, turn and answer_key
    folder = Path(cache) / f"support-week-{requests}-seed{SEED}-sessions"
    if not (folder / "outcomes.parquet").exists():
        load_before = _load_average()
        seconds, peak = _in_child(_generate, str(folder), requests)
        record = {"seconds": seconds, "peak_mb": peak, "requests": requests, "load_before": load_before,
                  "load_after": _load_average(), "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        (folder / GENERATION_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return folder


def _generate(folder: str, requests: int) -> tuple[float, float]:
    """Seconds and peak memory of `routesim generate`'s writing path (`write_week`, chunk by chunk)."""
    from simulator.datasets.generate import write_week

    started = time.perf_counter()
    write_week(Path(folder), requests, 7, SEED)
    return time.perf_counter() - started, _peak_mb()


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


def _floor_sql(folder: str) -> str:
    return FLOOR_SQL.format(traffic=f"{folder}/traffic.parquet", outcomes=f"{folder}/outcomes.parquet")


def _floor(folder: str) -> tuple[float, float]:
    import duckdb

    started = time.perf_counter()
    connection = duckdb.connect()
    connection.execute(_floor_sql(folder)).fetchall()
    return time.perf_counter() - started, _peak_mb()


def _process(*command: str) -> tuple[float, float]:
    """Wall time and peak memory of `command` as a whole process."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", PROCESS_PROBE, *command], capture_output=True, text=True,
                          check=True)
    seconds, peak, code = json.loads(done.stdout)
    if code not in (0, 1):  # `routesim gate` exits 1 when the candidate fails, which is still a full run
        raise RuntimeError(f"benchmark command failed with exit code {code}: {' '.join(command)}")
    return seconds, peak


def _floor_process(folder: str) -> tuple[float, float]:
    import sys

    return _process(sys.executable, "-c", f"import duckdb; duckdb.connect().execute({_floor_sql(folder)!r}).fetchall()")


def _routesim(*arguments: str) -> tuple[float, float]:
    import sys

    script = Path(sys.executable).with_name("routesim")
    launcher = [str(script)] if script.exists() else [sys.executable, "-c", "from simulator.cli import main; main()"]
    return _process(*launcher, *arguments)


def _scenario(folder: str, name: str):
    from simulator.core.scenario import load_scenario

    return load_scenario(Path(folder) / "scenarios" / f"{name}.yaml")


def _replay(folder: str, scenario_name: str) -> tuple[float, float]:
    from simulator.core.contract import load_data
    from simulator.core.engine import replay
    from simulator.core.prices import load_prices

    scenario = _scenario(folder, scenario_name)
    data = load_data(Path(folder))
    sheet = load_prices(scenario.prices)
    started = time.perf_counter()
    replay(scenario, data, sheet)
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


def many_rules_file(rules: int, out: Path) -> Path:
    """`many_rules_scenario(rules)` written as a scenario file in `out` (data and prices as absolute paths)."""
    import yaml

    content = many_rules_scenario(rules).model_dump(mode="json", exclude_none=True)
    path = out / f"rules-{rules}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def rules_table() -> Table:
    """Replay time and peak memory of RULE_COUNTS rules on the embedded week: the rules are compiled once
    and evaluated in flat passes, so the cost grows linearly with the count (README "Reliability"). The
    whole command is timed too (`routesim replay FILE` as a process: start-up, reading and checking the
    scenario file, the replay, its summary and warnings), since a policy of thousands of rules can spend
    more time being read than replayed."""
    import tempfile

    from rich.table import Table

    measured = []
    with tempfile.TemporaryDirectory(prefix="routesim-rules-") as scratch:
        for rules in RULE_COUNTS:
            _in_child(_rules, rules)
            path = many_rules_file(rules, Path(scratch))
            _routesim("replay", str(path), "--json")
            measured.append((rules, *_in_child(_rules, rules), *_routesim("replay", str(path), "--json")))
    table = Table(title="rules per policy: replay of the embedded week (data/support-week)")
    for column in ("rules", "replay s", f"x {RULE_COUNTS[0]} rules", "peak memory", "command s",
                   f"command x {RULE_COUNTS[0]} rules", "command peak memory"):
        table.add_column(column, justify="right")
    for rules, seconds, peak, command, command_peak in measured:
        table.add_row(f"{rules:,}", f"{seconds:.2f}", f"{seconds / measured[0][1]:.1f}", f"{peak:,.0f} MB",
                      f"{command:.2f}", f"{command / measured[0][3]:.1f}", f"{command_peak:,.0f} MB")
    return table


def _replay_as_command(folder: str, scenario_name: str) -> tuple[float, float]:
    """The replay as `routesim replay` runs it, summary, capacity and controls included
    (simulator.cli.replay.replay_scenarios on its default processes: in chunks on large data), loading of
    the cached layout included (about 0.05 s at 10M)."""
    from simulator.cli.replay import replay_scenarios
    from simulator.core.sharded import default_workers

    started = time.perf_counter()
    replay_scenarios([Path(folder) / "scenarios" / f"{scenario_name}.yaml"], show_progress=False,
                     workers=default_workers())
    return time.perf_counter() - started, _peak_mb()


def bench_sweep(folder: Path, points: int) -> float:
    """Seconds to sweep scenarios/cascade.yaml's gate over `points` thresholds on the data in `folder`, as
    `routesim sweep` does without --fit-until (in chunks on large data: simulator.analyses.sweep.prepare_curve).

    Loading the data is left out (timed separately by `routesim bench`); both replays, the value lookup
    and the curve are in.
    """
    from simulator.analyses.sweep import prepare_curve, resolve_gate, sweep
    from simulator.core.runner import Inputs
    from simulator.core.scenario import load_scenario

    scenario = load_scenario(SCENARIOS / "cascade.yaml")
    scenario = scenario.model_copy(update={"data": Path(folder)})
    inputs = Inputs()
    data, sheet = inputs.data(scenario), inputs.prices(scenario)
    started = time.perf_counter()
    gate = resolve_gate(scenario, data, step=0, over="confidence")
    sweep(scenario, data, sheet, gate, points=points, prepared=prepare_curve(scenario, inputs, gate))
    return time.perf_counter() - started


def _sweep(folder: str) -> tuple[float, float]:
    return bench_sweep(Path(folder), SWEEP_POINTS), _peak_mb()


def _bootstrap(requests: int) -> tuple[float, float]:
    from simulator.core.stats import bench_bootstrap

    return bench_bootstrap(requests=requests, resamples=BOOTSTRAP_RESAMPLES), _peak_mb()


def _write_scenarios(folder: Path) -> Path:
    """Copies of the shipped scenarios pointed at the benchmark week, in `folder/scenarios`."""
    import yaml

    scenarios = folder / "scenarios"
    scenarios.mkdir(exist_ok=True)
    for name in sorted({*BENCH_SCENARIOS, *REPORT_SCENARIOS}):
        content = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
        content |= {"data": str(folder.resolve()), "prices": str((SCENARIOS / content["prices"]).resolve())}
        (scenarios / f"{name}.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
    return scenarios


def _saved_report_results(folder: Path) -> Path:
    """Replays the report's scenarios on the benchmark week once and keeps their results beside it, in
    `WEEK-report/` (never inside the week: that is the replay's input)."""
    from simulator.core.results import SCHEMA_VERSION
    from simulator.report.build import replay_and_save

    results = folder.with_name(f"{folder.name}-report") / f"results-v{SCHEMA_VERSION}"
    if not (results / "report.json").exists():
        scenarios = folder / "scenarios"
        replay_and_save([scenarios / f"{name}.yaml" for name in REPORT_SCENARIOS], results,
                        baseline=REPORT_SCENARIOS[0])
    return results


def _render(results: str) -> tuple[float, float]:
    from simulator.report.build import render_report

    started = time.perf_counter()
    render_report(Path(results), Path(results).with_name("report.html"))  # in WEEK-report/, beside the results
    return time.perf_counter() - started, _peak_mb()


def _load(folder: str) -> tuple[float, float]:
    from simulator.core.contract import load_data

    started = time.perf_counter()
    load_data(Path(folder))
    return time.perf_counter() - started, _peak_mb()


def _first_use(folder: str, keep_in: str | None = None) -> tuple[float, float]:
    """Loading with an empty cache: validation, hashing and the layout build. The layout is built into a
    temporary cache, or into `keep_in` (emptied first) to be replayed from afterwards."""
    import shutil
    import tempfile

    from simulator.core.contract import load_data
    from simulator.core.layout import clear

    if keep_in is not None:
        clear(Path(keep_in))
    empty = Path(keep_in or tempfile.mkdtemp(prefix="routesim-bench-cache-"))
    try:
        started = time.perf_counter()
        load_data(Path(folder), empty)
        return time.perf_counter() - started, _peak_mb()
    finally:
        if keep_in is None:
            shutil.rmtree(empty, ignore_errors=True)


def _in_child(function, *arguments) -> tuple[float, float]:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, arguments)


def out_of_core_jobs(folder: Path, cache: Path) -> list[Job]:
    """The measurements from OUT_OF_CORE_REQUESTS on: the first use once (validation, hashing and the
    layout build, into `cache`, emptied first), then whole `routesim replay` processes of `stacked` from
    that layout, in chunks. A replay in one piece in the bench's own process is left out: it
    holds every request, which is what the chunks avoid."""
    stacked = str(folder / "scenarios" / "stacked.yaml")
    return [Job("first use: validate + hash + build the layout (once)", _first_use, (str(folder), str(cache)),
                once=True),
            Job("whole process: routesim replay stacked (in chunks)", _routesim,
                ("--cache-dir", str(cache), "replay", stacked), whole_process=True)]


def jobs_for(folder: Path, requests: int) -> list[Job]:
    """Every measurement at this size; the gate and the report only up to GATE_REQUESTS; from
    OUT_OF_CORE_REQUESTS on `out_of_core_jobs`, with the layout kept beside the week."""
    here = str(folder)
    scenarios = folder / "scenarios"
    if requests >= OUT_OF_CORE_REQUESTS:
        return out_of_core_jobs(folder, folder.with_name(f"{folder.name}-layouts"))
    jobs = [Job("first use: validate + hash + build the layout", _first_use, (here,)),
            Job("load (layout cached)", _load, (here,))]
    jobs += [Job(f"replay {name}", _replay, (here, name)) for name in BENCH_SCENARIOS]
    jobs += [Job(COMMAND_REPLAY.format(name), _replay_as_command, (here, name))
             for name in ("cascade", "stacked", "sticky-sessions")]
    jobs += [Job(SWEEP_JOB, _sweep, (here,))]
    jobs += [Job(REPLAY_PROCESS_JOB, _routesim, ("replay", str(scenarios / "stacked.yaml")), whole_process=True)]
    if requests <= GATE_REQUESTS:
        jobs += [Job(GATE_JOB, _routesim,
                     ("gate", "--baseline", str(scenarios / "flagship-everywhere.yaml"), "--candidate",
                      str(scenarios / "stacked.yaml"), "--resamples", str(BOOTSTRAP_RESAMPLES)), whole_process=True),
                 Job(f"paired bootstrap alone, {BOOTSTRAP_RESAMPLES:,} resamples", _bootstrap, (requests,))]
        results = _in_child(_saved_report_results, folder)
        jobs += [Job(f"report --from saved results ({len(REPORT_SCENARIOS)} policies)", _render, (str(results),))]
    return jobs


def measure(folder: Path, requests: int, runs: int = RUNS) -> tuple[list[Measurement], Measurement, Measurement]:
    """Each job's median over `runs` runs, each run right after one of its floor. Returns the jobs'
    measurements and the two floors (in-process, whole-process)."""
    _write_scenarios(folder)
    jobs = jobs_for(folder, requests)
    floors = {False: Job("DuckDB scan (floor)", _floor, (str(folder),)),
              True: Job("whole process: python -c DuckDB scan (floor)", _floor_process, (str(folder),), True)}
    taken: dict[str, list[tuple[float, float]]] = {job.name: [] for job in [*floors.values(), *jobs]}
    beside: dict[str, list[float]] = {job.name: [] for job in jobs}
    for floor in floors.values():  # warm the page cache alike for every measurement
        _in_child(floor.function, *floor.arguments)
    # A first use reads every input and builds the layout that the jobs after it read. It runs before their
    # warm-up: a warm-up replay on an empty cache would build the layout itself, which at 100M requests
    # costs as much as the first use, only for the first use to clear it.
    for job in [job for job in jobs if job.once]:
        floor = floors[job.whole_process]
        taken[floor.name].append(_in_child(floor.function, *floor.arguments))
        beside[job.name].append(taken[floor.name][-1][0])
        taken[job.name].append(_in_child(job.function, *job.arguments))
    for job in [job for job in jobs if not job.once]:  # warm the page cache (and the layout cache) alike
        _in_child(job.function, *job.arguments)
    for _ in range(runs):
        for job in [job for job in jobs if not job.once]:
            floor = floors[job.whole_process]
            floor_seconds, floor_peak = _in_child(floor.function, *floor.arguments)
            taken[floor.name].append((floor_seconds, floor_peak))
            beside[job.name].append(floor_seconds)
            taken[job.name].append(_in_child(job.function, *job.arguments))

    def summary(job: Job, floor_seconds: list[float]) -> Measurement:
        from statistics import median

        seconds = [run[0] for run in taken[job.name]]
        return Measurement(job.name, median(seconds), max(run[1] for run in taken[job.name]),
                           median(floor_seconds), len(seconds))

    in_process, whole = (summary(floors[kind], [run[0] for run in taken[floors[kind].name]]) for kind in (False, True))
    return [summary(job, beside[job.name]) for job in jobs], in_process, whole


def ratio_lines(measurements: list[Measurement]) -> list[str]:
    """The ratio of each measurement in RATIOS to the one replay it is set against (medians of the same
    bench run), beside the issue's target."""
    by_name = {m.name: m for m in measurements}
    return [f"{name} / {against}: {by_name[name].seconds / by_name[against].seconds:.2f}x (target <= {target:g}x)"
            for name, against, target in RATIOS if name in by_name and against in by_name]


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run_bench(requests: int, cache: Path, runs: int = RUNS) -> tuple[Table, list[str]]:
    import json
    import multiprocessing
    import platform

    from rich.table import Table

    folder = week_folder(requests, cache)
    # The benchmark's layouts live beside its weeks, not in the user's cache.
    os.environ.setdefault("ROUTESIM_CACHE_DIR", str(Path(cache) / "layouts"))
    load_before = _load_average()
    measurements, floor, whole_floor = measure(folder, requests, runs)
    generated = json.loads((folder / GENERATION_RECORD).read_text()) if (folder / GENERATION_RECORD).exists() else None
    table = Table(title=f"routesim bench: {requests:,} requests, {platform.machine()}, "
                        f"{multiprocessing.cpu_count()} cores, Python {platform.python_version()}, "
                        f"median of {runs} runs, each after its floor",
                  caption=f"load average (1, 5, 15 min): {load_before} before, {_load_average()} after")
    for column in ("measurement", "median s", "requests / s", "x floor", "peak memory"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    if generated is not None:
        table.add_row(f"generate the week, once ({generated['finished']}, load {generated['load_before']})",
                      f"{generated['seconds']:.2f}", f"{requests / generated['seconds']:,.0f}", "",
                      f"{generated['peak_mb']:,.0f} MB")
    for m in [floor, whole_floor, *measurements]:
        table.add_row(m.name, f"{m.seconds:.2f}", f"{requests / m.seconds:,.0f}", f"{m.seconds / m.floor_seconds:.2f}",
                      f"{m.peak_mb:,.0f} MB")
    return table, ratio_lines(measurements)


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
    """Wall time and CPU time (user + system) of whole `routesim ... --help` processes: the median of
    `runs` runs per command, the commands interleaved so that a burst of load on the machine does not land
    on one of them. CPU time is what to read on a busy machine: waiting for a core inflates the wall time,
    not it."""
    import resource
    import statistics
    import subprocess
    import sys

    from rich.table import Table

    def cpu_of_children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    script = Path(sys.executable).with_name("routesim")
    launcher = [str(script)] if script.exists() else [sys.executable, "-c", "from simulator.cli import main; main()"]
    commands = help_commands()
    seconds: dict[int, list[tuple[float, float]]] = {index: [] for index in range(len(commands))}
    load_before = os.getloadavg()[0]
    for _ in range(runs):
        for index, arguments in enumerate(commands):
            started, cpu_before = time.perf_counter(), cpu_of_children()
            subprocess.run([*launcher, *arguments], check=True, stdout=subprocess.DEVNULL)
            seconds[index].append((time.perf_counter() - started, cpu_of_children() - cpu_before))
    table = Table(title=f"routesim startup: whole process, median of {runs} runs (load average: "
                        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after)")
    for column in ("command", "wall s", "max wall s", "CPU s"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for index, arguments in enumerate(commands):
        walls, cpus = zip(*seconds[index])
        table.add_row("routesim " + " ".join(arguments), f"{statistics.median(walls):.3f}", f"{max(walls):.3f}",
                      f"{statistics.median(cpus):.3f}")
    return table


def bench(
    requests: Annotated[int, typer.Option(help="requests in the benchmark week")] = 1_000_000,
    ten_million: Annotated[bool, typer.Option("--10m", help="also run on 10,000,000 requests")] = False,
    hundred_million: Annotated[bool, typer.Option("--100m", help="also run on 100,000,000 requests, out of core: "
                                                                 "generation, the first use once and the chunked "
                                                                 "replay (generating them takes about 14 minutes, "
                                                                 "the first use about 22; --cache needs about "
                                                                 "45 GB free)")] = False,
    runs: Annotated[int, typer.Option(min=3, help="runs per measurement, each after a run of its floor")] = RUNS,
    cache: Annotated[Path, typer.Option(help="where generated benchmark weeks are kept")] = CACHE / "bench",
    startup_only: Annotated[bool, typer.Option("--startup-only", help="only time routesim's startup (--help)")
                            ] = False,
    coverage: Annotated[bool, typer.Option("--coverage", help="only run the served-only estimators' coverage "
                                                              "study on seeded worlds")] = False,
    worlds: Annotated[int, typer.Option(min=1, help="with --coverage: worlds per estimator")] = 2000,
):
    """Time the replay against a DuckDB scan of the same Parquet columns (the floor)."""
    if coverage:
        from simulator.cli.served_views import coverage_study_table

        print_table(console, coverage_study_table(worlds))
        return
    sizes = [requests] + [size for size, asked in ((10_000_000, ten_million), (100_000_000, hundred_million))
                          if asked and size != requests]
    print_table(console, startup_table())
    if startup_only:
        return
    print_table(console, rules_table())
    for size in sizes:
        table, ratios = run_bench(size, cache, runs)
        console.print(table)
        for line in ratios:
            console.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(bench)
