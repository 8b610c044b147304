"""Same inputs and seed give identical outputs, byte for byte, from every command that writes numbers,
at any thread count.

polars adds a group's floats in an order its threads race over, and a join's output order is not fixed,
so these run each command twice on the shipped week and compare what it wrote; and money is integer
nano-dollars and draws are keyed by request id, so the outputs are also the same at 1, 2 and 8 threads
(POLARS_MAX_THREADS and the BLAS thread count, set in a fresh process for each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"


def scenario(name: str) -> Path:
    return SCENARIOS / f"{name}.yaml"


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_report_and_its_results_are_identical_on_a_rerun(cli, tmp_path):
    written = []
    for run in ("first", "second"):
        out = tmp_path / run / "report.html"
        result = cli("report", scenario("cascade"), scenario("stacked"), "--baseline",
                     scenario("flagship-everywhere"), "-o", out)
        assert result.code == 0, result.err
        written.append(files_of(tmp_path / run))
    assert written[0].keys() == written[1].keys()
    assert [name for name in written[0] if written[0][name] != written[1][name]] == []


@pytest.mark.parametrize("command", [
    ("sweep", scenario("cascade"), "--points", "50", "--json"),
    ("whatif", scenario("cascade"), scenario("stacked"), "--scale", "flagship=0.5", "--json"),
    ("drift", scenario("cascade"), "--json"),
    ("lanes", ROOT / "data" / "support-week", "--prices", ROOT / "data" / "prices" / "support.yaml",
     "--fit-until", "2026-11-19", "--json"),
    ("gate", "--baseline", scenario("flagship-everywhere"), "--candidate", scenario("stacked"), "--resamples", "100",
     "--json"),
], ids=lambda command: command[0])
def test_json_output_is_identical_on_a_rerun(cli, command):
    first, second = cli(*command), cli(*command)
    assert first.code in (0, 1), first.err  # gate exits 1 when the candidate fails
    assert first.out == second.out


# Runs routesim commands in-process, one after another, each command's stdout into its own file.
THREADED_RUN = """
import contextlib, json, sys
from simulator.cli import main
commands, folder = json.loads(sys.argv[1]), sys.argv[2]
for index, arguments in enumerate(commands):
    sys.argv = ["routesim", *arguments]
    with open(f"{folder}/stdout-{index}.txt", "w") as out, contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit as done:
            assert done.code in (0, 1, None), (arguments, done.code)
"""


def test_outputs_are_identical_at_one_two_and_eight_threads(tmp_path):
    written = {}
    for threads in (1, 2, 8):
        folder = tmp_path / f"threads-{threads}"
        folder.mkdir()
        commands = [
            ["replay", scenario("stacked"), "--save", folder / "results", "--json"],
            # The drill's 30 requests are a keyed sample; the gate bootstraps them.
            ["gate", "--baseline", scenario("routing-drill-flagship"), "--candidate", scenario("routing-drill"),
             "--resamples", "200", "--json"],
        ]
        env = {**os.environ, "POLARS_MAX_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
               "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        done = subprocess.run([sys.executable, "-c", THREADED_RUN, json.dumps([[str(a) for a in c] for c in commands]),
                               str(folder)], env=env, capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        written[threads] = files_of(folder)
        assert len(written[threads]) >= 5, sorted(written[threads])  # the saved result and two stdouts
    for threads in (2, 8):
        assert written[threads].keys() == written[1].keys()
        assert [name for name in written[1] if written[threads][name] != written[1][name]] == [], threads
