"""A reader that closes routesim's stdout early (`routesim replay ... | head -3`) ends the command with exit
141 (128 + SIGPIPE) and nothing on stderr: before, it was a silent exit 1, the failed gate's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = "from simulator.cli import main; main()"


def _env(cache: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), ROUTESIM_CACHE_DIR=str(cache), COLUMNS="200")


def _fake_layouts(cache: Path, count: int) -> None:
    """`count` complete-looking layouts, so that `cache ls` prints a table far beyond a pipe's 64 KiB."""
    for index in range(count):
        folder = cache / "layouts" / f"{index:016x}-v4"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"version": 4, "fingerprint": f"{index:016x}", "requests": 1,
                                                      "source": f"/data/folder-{index}", "slots": [["m", 0, "0"]]}))


def test_cache_ls_into_a_reader_that_stops_after_one_line_exits_141_quietly(tmp_path):
    _fake_layouts(tmp_path / "cache", 3000)
    with subprocess.Popen([sys.executable, "-c", RUN, "cache", "ls"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=_env(tmp_path / "cache")) as process:
        assert process.stdout.readline().strip().startswith(b"routesim cache")
        process.stdout.close()  # as `head -1` does
        stderr = process.stderr.read()
        assert (process.wait(timeout=120), stderr.decode()) == (141, "")


@pytest.mark.parametrize("how", ["rich console", "typer.echo"])
def test_a_replay_into_a_closed_stdout_exits_141_quietly(world, tmp_path, how):
    # The read end is closed before routesim starts, so its first write fails whatever the output's size.
    # The replay's tables are printed by rich; its --json by typer.echo: both paths end the same way.
    read, write = os.pipe()
    os.close(read)
    args = [world.scenario()] if how == "rich console" else [world.scenario(), "--json"]
    try:
        done = subprocess.run([sys.executable, "-c", RUN, "replay", *map(str, args)], stdout=write,
                              stderr=subprocess.PIPE, env=_env(tmp_path / "cache"), cwd=world.folder, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr.decode()) == (141, "")


def test_decisions_streamed_into_a_reader_that_stops_early_exit_141(tmp_path):
    # 50,000 decisions as JSON lines (megabytes) were one write: cut short by the reader, it could end with
    # exit 0 and the stream truncated. Written in pieces, the closed pipe shows, and the command says so.
    scenario = ROOT / "scenarios" / "cascade.yaml"
    with subprocess.Popen([sys.executable, "-c", RUN, "replay", str(scenario), "--decisions", "-"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path / "cache")) as process:
        assert json.loads(process.stdout.readline())["request_id"]
        process.stdout.close()  # as `head -1` does
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=300) == 141 and "Traceback" not in stderr
