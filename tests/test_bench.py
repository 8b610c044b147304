"""`routesim bench` methodology: every run of a measurement right after a run of its own floor, medians."""

from __future__ import annotations

from simulator.cli import bench
from simulator.core.results import SCHEMA_VERSION


def test_each_run_follows_a_run_of_its_floor_and_medians_are_reported(monkeypatch, tmp_path):
    calls = []
    times = {"floor": iter([9.0, 1.0, 2.0, 3.0]), "whole floor": iter([9.0, 4.0, 5.0, 3.0]),
             "replay": iter([0.5, 3.0, 9.0, 2.0]), "process": iter([0.5, 8.0, 10.0, 12.0])}

    def timed(name):
        def run(*_):
            calls.append(name)
            return next(times[name]), {"replay": 100.0, "process": 300.0}.get(name, 50.0)
        return run

    monkeypatch.setattr(bench, "_floor", timed("floor"))
    monkeypatch.setattr(bench, "_floor_process", timed("whole floor"))
    monkeypatch.setattr(bench, "_write_scenarios", lambda folder: folder)
    monkeypatch.setattr(bench, "jobs_for", lambda folder, requests: [
        bench.Job("replay", timed("replay"), ()), bench.Job("process", timed("process"), (), whole_process=True)])
    monkeypatch.setattr(bench, "_in_child", lambda function, *arguments: function(*arguments))
    measured, floor, whole_floor = bench.measure(tmp_path, 1000, runs=3)
    warm = ["floor", "whole floor", "replay", "process"]
    assert calls == warm + ["floor", "replay", "whole floor", "process"] * 3
    replay, process = measured
    # the warm-up runs (0.5 s, 9.0 s) are left out: medians of 3, 9, 2 and 8, 10, 12; of floors 1, 2, 3 and 4, 5, 3
    assert (replay.seconds, replay.runs, replay.peak_mb, replay.floor_seconds) == (3.0, 3, 100.0, 2.0)
    assert (process.seconds, process.floor_seconds) == (10.0, 4.0)
    assert floor.seconds == 2.0 and whole_floor.seconds == 4.0


def test_ratios_set_the_sweep_and_the_gate_against_one_replay_of_the_same_run():
    def measured(name, seconds):
        return bench.Measurement(name, seconds, 100.0, 1.0, 3)

    cascade = bench.COMMAND_REPLAY.format("cascade")
    lines = bench.ratio_lines([measured(cascade, 2.0), measured(bench.SWEEP_JOB, 3.0),
                               measured(bench.REPLAY_PROCESS_JOB, 4.0), measured(bench.GATE_JOB, 50.0),
                               measured("replay stacked", 8.0), measured("replay sticky-sessions", 12.4),
                               measured(bench.COMMAND_REPLAY.format("stacked"), 10.0),
                               measured(bench.COMMAND_REPLAY.format("sticky-sessions"), 12.0)])
    assert lines == [f"{bench.SWEEP_JOB} / {cascade}: 1.50x (target <= 2x)",
                     f"{bench.GATE_JOB} / {bench.REPLAY_PROCESS_JOB}: 12.50x (target <= 25x)",
                     f"{bench.COMMAND_REPLAY.format('sticky-sessions')} / {bench.COMMAND_REPLAY.format('stacked')}: "
                     "1.20x (target <= 1.5x)",
                     "replay sticky-sessions / replay stacked: 1.55x (target <= 1.5x)"]
    assert bench.ratio_lines([measured(cascade, 2.0)]) == []  # above 1M requests there is no gate


def test_a_first_use_runs_once_after_one_floor_and_is_not_warmed_up(monkeypatch, tmp_path):
    calls = []

    def timed(name, seconds):
        def run(*_):
            calls.append(name)
            return seconds, 10.0
        return run

    monkeypatch.setattr(bench, "_floor", timed("floor", 1.0))
    monkeypatch.setattr(bench, "_floor_process", timed("whole floor", 2.0))
    monkeypatch.setattr(bench, "_write_scenarios", lambda folder: folder)
    monkeypatch.setattr(bench, "jobs_for", lambda folder, requests: [
        bench.Job("first use", timed("first use", 50.0), (), once=True),
        bench.Job("process", timed("process", 4.0), (), whole_process=True)])
    monkeypatch.setattr(bench, "_in_child", lambda function, *arguments: function(*arguments))
    (first, process), _, _ = bench.measure(tmp_path, 1000, runs=3)
    # the first use before the process's warm-up, which would otherwise build the layout itself
    assert calls == ["floor", "whole floor", "floor", "first use", "process"] + ["whole floor", "process"] * 3
    assert (first.runs, first.seconds, first.floor_seconds) == (1, 50.0, 1.0) and process.runs == 3


def test_from_100m_requests_only_the_out_of_core_path_is_measured(tmp_path):
    jobs = bench.jobs_for(tmp_path / "week", bench.OUT_OF_CORE_REQUESTS)
    first, replay = jobs
    assert first.once and first.function is bench._first_use and first.arguments[1].endswith("week-layouts")
    assert replay.whole_process and replay.arguments[:2] == ("--cache-dir", first.arguments[1])


def test_every_job_of_a_small_week_runs_and_writes_nothing_into_the_week(tmp_path, monkeypatch):
    """Each in-process measurement of `routesim bench` run for real once, on a week small enough for the test
    run, after jobs_for has saved the report's results (outside the week: it is the replays' input). The
    whole-process jobs run `routesim replay` and `routesim gate`, which their own tests cover, and rendering
    a report is covered by the report's tests: they are left out to keep the test run short."""
    monkeypatch.setenv("ROUTESIM_CACHE_DIR", str(tmp_path / "layouts"))
    week = bench.week_folder(3_000, tmp_path)
    bench._write_scenarios(week)
    before = sorted(path.relative_to(week) for path in week.rglob("*"))
    for job in [job for job in bench.jobs_for(week, 3_000) if not job.whole_process and job.function is not bench._render]:
        seconds, peak_mb = job.function(*job.arguments)
        assert seconds > 0 and peak_mb > 0, job.name
    assert sorted(path.relative_to(week) for path in week.rglob("*")) == before
    assert (week.with_name(f"{week.name}-report") / f"results-v{SCHEMA_VERSION}" / "report.json").exists()
