"""The README's walkthrough of a shadowed copy of the embedded week, run as written: plan-shadow, the
answers brought back through the CSV importer, and replays whose 99% intervals must contain the full
matrix's figures (the embedded week replayed exactly)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from simulator.core.paths import PROJECT

README = (PROJECT / "README.md").read_text(encoding="utf-8")
POLICIES = ("cascade", "rules-only", "stacked")
FIGURES = ("pass_rate", "cost_per_request_usd")


def walkthrough_commands() -> str:
    section = README[README.index("### Walkthrough: a shadowed copy of the embedded week"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def _project_copy(root: Path) -> None:
    """The walkthrough's working folder: the project's scenarios (copied: it writes beside them) and data."""
    (root / "scenarios").mkdir()
    for path in PROJECT.glob("scenarios/*.yaml"):
        shutil.copy(path, root / "scenarios" / path.name)
    (root / "data").mkdir()
    for name in ("prices", "support-week"):
        (root / "data" / name).symlink_to(PROJECT / "data" / name)


def test_the_readme_walkthrough_runs_and_its_99_percent_intervals_contain_the_full_matrix(cli, tmp_path, monkeypatch):
    _project_copy(tmp_path)
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "160"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough_commands()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rules-only ≈" in done.stdout and "design-weighted estimates for all 50,000 requests" in done.stdout
    monkeypatch.chdir(tmp_path)

    def replayed(*paths: str) -> dict:
        result = cli("replay", *paths, "--json", "--confidence", "0.99")
        assert result.code == 0, result.err
        return {summary["scenario"]: summary for summary in json.loads(result.out)}

    truth = replayed(*(f"scenarios/{name}.yaml" for name in POLICIES))
    estimated = replayed(*(f"scenarios/{name}-served.yaml" for name in POLICIES))
    for name in POLICIES:
        assert truth[name]["kind"] == "exact" and estimated[name]["kind"] == "design-weighted"
        for figure in estimated[name]["estimates"]["figures"]:
            if figure["metric"] in FIGURES:
                assert figure["low"] <= truth[name][figure["metric"]] <= figure["high"], (name, figure)
    off_policy = cli("estimate", "scenarios/rules-only-served.yaml", "--method", "off-policy", "--confidence", "0.99",
                     "--json")
    assert off_policy.code == 0, off_policy.err
    for figure in json.loads(off_policy.out)[0]["estimates"]:
        if figure["kind"] in ("SNIPS", "DR"):
            assert figure["low"] <= truth["rules-only"][figure["metric"]] <= figure["high"], figure
