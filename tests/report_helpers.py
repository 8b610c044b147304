"""Worlds for the report tests: the shipped scenarios, and a tiny one whose names are HTML."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml

from simulator.core.results import SUMMARY_FILE
from simulator.report.build import render_report, replay_and_save
from tests.conftest import TINY_PRICES, World, tiny_outcomes, tiny_traffic

REPO = Path(__file__).resolve().parents[1]
# Closes a script block, then runs code if anything wrote it out unescaped.
HOSTILE = "</script><img src=x onerror=alert(1)>"
HOSTILE_DESCRIPTION = f"<script>alert(2)</script> {HOSTILE}"
SHIPPED = ["cascade", "flagship-everywhere", "lanes", "rules-only", "small-everywhere", "stacked", "routing-drill"]
DEMO_TOLERANCE = 0.01


def build(paths: list[Path], out: Path, baseline: str | None = None, tolerance: float | None = None) -> Path:
    """Replays `paths`, saves results next to `out` and renders it; returns the results folder."""
    results = out.with_name(f"{out.stem}-results")
    replay_and_save(paths, results, baseline=baseline, tolerance=tolerance)
    render_report(results, out)
    return results


def shipped(names: list[str] = SHIPPED) -> list[Path]:
    return [REPO / "scenarios" / f"{name}.yaml" for name in names]


def summaries(results: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in results.glob(f"*/{SUMMARY_FILE}")}


def tiny_world(folder: Path) -> list[Path]:
    """The conftest world (a, b, c; small then big) with a cascade and a big-everywhere scenario.

    small costs $0.0012 a call, big $0.012; b is the one request the cascade escalates. Three requests prove
    no pass rate, so bars are judged on the observed rate (`admission: {rule: point}`), as worked by hand.
    """
    world = World(folder)
    world.write_data(tiny_traffic(), tiny_outcomes())
    world.prices.write_text(yaml.safe_dump(TINY_PRICES))
    point = {"rule": "point"}
    return [world.scenario("cascade", admission=point),
            world.scenario("big-everywhere", admission=point, policy={"default": {"use": "big"}})]


def hostile_world(folder: Path) -> list[Path]:
    """A tiny world whose first model and two of its requests' slice are named like a script tag."""
    world = World(folder)
    traffic = tiny_traffic().with_columns(pl.Series("slice", [HOSTILE, "faq", HOSTILE]))
    hostile = pl.col("model") == "small"
    outcomes = tiny_outcomes().with_columns(
        pl.when(hostile).then(pl.lit(HOSTILE)).otherwise(pl.col("model")).alias("model"),
        pl.when(hostile).then(pl.lit(0.0005)).otherwise(pl.col("cost_usd")).alias("cost_usd"))
    world.write_data(traffic, outcomes)
    world.prices.write_text(yaml.safe_dump({"models": {"big": TINY_PRICES["models"]["big"]}}))
    policy = {"default": {"cascade": [{"model": HOSTILE, "accept": "confidence >= 0.7"}, {"model": "big"}]}}
    return [world.scenario("hostile", description=HOSTILE_DESCRIPTION, policy=policy,
                           quality_bar={"default": 0.9, "slices": {HOSTILE: 0.5}}),
            world.scenario("big-everywhere", policy={"default": {"use": "big"}})]
