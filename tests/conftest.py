"""Shared fixtures: running the CLI in-process, and a tiny valid world on disk to break in one place."""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import yaml

from simulator.cli import main


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Layouts go to a temporary cache for the whole run (inherited by the CLI's child processes), never
    to the user's."""
    saved = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "ROUTESIM_CACHE_DIR")}
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ.pop("ROUTESIM_CACHE_DIR", None)
    yield Path(os.environ["XDG_CACHE_HOME"]) / "routesim"
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch, capsys):
    """Runs `routesim ARGS...` as the console script does and returns its exit code and output."""

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["routesim", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def outcome_row(request_id: str, model: str, **values) -> dict:
    row = dict(request_id=request_id, model=model, sample=0, input_tokens=1000, cached_input_tokens=None,
               output_tokens=100, latency_ms=100.0, ttft_ms=None, passed=True, score=1.0, confidence=0.9,
               checker_score=None, hard_check_ok=True, cost_usd=None, grader=None)
    return row | values


OUTCOME_SCHEMA = {"request_id": pl.String, "model": pl.String, "sample": pl.Int64, "input_tokens": pl.Int64,
                  "cached_input_tokens": pl.Int64, "output_tokens": pl.Int64, "latency_ms": pl.Float64,
                  "ttft_ms": pl.Float64, "passed": pl.Boolean, "score": pl.Float64, "confidence": pl.Float64,
                  "checker_score": pl.Float64, "hard_check_ok": pl.Boolean, "cost_usd": pl.Float64,
                  "grader": pl.String}


@dataclass
class World:
    """A valid 3-request, 2-model world in a folder, with a price sheet and a scenario writer."""

    folder: Path

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def prices(self) -> Path:
        return self.folder / "prices.yaml"

    def write_data(self, traffic: pl.DataFrame, outcomes: pl.DataFrame) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        traffic.write_parquet(self.data / "traffic.parquet")
        outcomes.write_parquet(self.data / "outcomes.parquet")

    def scenario(self, name: str = "tiny", **overrides) -> Path:
        content = {"name": name, "data": "data", "prices": "prices.yaml",
                   "policy": {"default": {"cascade": [{"model": "small", "accept": "confidence >= 0.7"},
                                                      {"model": "big"}]}}}
        content.update(overrides)
        path = self.folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        return path


def tiny_traffic() -> pl.DataFrame:
    return pl.DataFrame({
        "request_id": ["a", "b", "c"],
        "ts": [dt.datetime(2026, 11, 16, hour, tzinfo=dt.UTC) for hour in (1, 2, 3)],
        "slice": ["faq", "faq", "contract"],
        "input_tokens": [1000, 1000, 1000],
        "tier": ["free", "pro", "pro"],
    })


def tiny_outcomes() -> pl.DataFrame:
    rows = [outcome_row("a", "small", confidence=0.9), outcome_row("b", "small", confidence=0.5, passed=False),
            outcome_row("c", "small", confidence=0.8)]
    rows += [outcome_row(request, "big", latency_ms=1000.0, confidence=0.99) for request in "abc"]
    return pl.DataFrame(rows, schema=OUTCOME_SCHEMA)


TINY_PRICES = {"models": {
    "small": [{"effective_from": dt.date(2026, 11, 1), "input": 1.0, "output": 2.0}],
    "big": [{"effective_from": dt.date(2026, 11, 1), "input": 10.0, "output": 20.0}],
}}


@pytest.fixture
def world(tmp_path) -> World:
    made = World(tmp_path)
    made.write_data(tiny_traffic(), tiny_outcomes())
    made.prices.write_text(yaml.safe_dump(TINY_PRICES))
    return made
