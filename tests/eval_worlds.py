"""Small Parquet worlds for the lanes and gate tests, with every number chosen so it can be worked by hand.

Prices are conftest's TINY_PRICES: with 1,000 input and 100 output tokens, a `small` call costs
1000 x 1 / 1e6 + 100 x 2 / 1e6 = $0.0012 and a `big` call 1000 x 10 / 1e6 + 100 x 20 / 1e6 = $0.012.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import yaml

from tests.conftest import OUTCOME_SCHEMA, TINY_PRICES, World, outcome_row

SMALL_COST = 0.0012
BIG_COST = 0.012
DAY_ONE = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)


def request(request_id: str, slice_name: str, *, day: int = 0, second: int = 0, tier: str = "pro") -> dict:
    return {"request_id": request_id, "ts": DAY_ONE + dt.timedelta(days=day, seconds=second), "slice": slice_name,
            "input_tokens": 1000, "tier": tier}


def make_world(folder: Path, requests: list[dict], answers: list[dict]) -> World:
    """Writes the requests and answers (outcome_row dicts) with the tiny price sheet into `folder`."""
    world = World(Path(folder))
    world.write_data(pl.DataFrame(requests), pl.DataFrame(answers, schema=OUTCOME_SCHEMA))
    world.prices.write_text(yaml.safe_dump(TINY_PRICES))
    return world


def slice_requests(slice_name: str, size: int, *, prefix: str | None = None, day: int = 0) -> list[dict]:
    prefix = prefix or slice_name
    return [request(f"{prefix}-{index:04d}", slice_name, day=day, second=index) for index in range(size)]


def answers_for(requests: list[dict], model: str, passes: int, **values) -> list[dict]:
    """`model` answers every request; the first `passes` of them pass, the rest fail."""
    return [outcome_row(row["request_id"], model, passed=index < passes, **values)
            for index, row in enumerate(requests)]
