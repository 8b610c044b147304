"""Same inputs and seed give identical outputs, byte for byte, from every command that writes numbers.

polars adds a group's floats in an order its threads race over, and a join's output order is not fixed,
so these run each command twice on the shipped week and compare what it wrote.
"""

from __future__ import annotations

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
