"""Shared by the importer tests: the hand-written fixtures and a reader of the folder an import wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from simulator.core.contract import validate_folder

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "imports"


@dataclass
class Imported:
    traffic: dict[str, dict]  # request_id -> traffic row
    outcomes: dict[tuple[str, str, int], dict]  # (request_id, model, sample) -> outcome row
    report: list[dict]

    def outcome(self, request_id: str) -> dict:
        """The only outcome of a request."""
        (row,) = [row for key, row in self.outcomes.items() if key[0] == request_id]
        return row


def read_import(folder: Path) -> Imported:
    assert validate_folder(folder).ok, validate_folder(folder).problems
    traffic = pl.read_parquet(folder / "traffic.parquet")
    outcomes = pl.read_parquet(folder / "outcomes.parquet")
    return Imported(
        traffic={row["request_id"]: row for row in traffic.iter_rows(named=True)},
        outcomes={(row["request_id"], row["model"], row["sample"]): row for row in outcomes.iter_rows(named=True)},
        report=json.loads((folder / "import-report.json").read_text())["imports"],
    )
