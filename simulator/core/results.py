"""Replay results you can keep: decisions and calls as Parquet, the summary as JSON.

A results folder holds one subfolder per scenario (`decisions.parquet`, `calls.parquet`, `summary.json`).
The summary carries a schema version, the scenario's hash and the fingerprints of the data and the price
sheet, so a report can be re-rendered without replaying and a stale result can be recognised. No
wall-clock time is stamped: the same inputs give byte-identical results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from simulator.core.contract import Dataset, fingerprint
from simulator.core.engine import Replay
from simulator.core.errors import RoutesimError
from simulator.core.metrics import summarise
from simulator.core.outputs import atomic_folder, json_text
from simulator.core.prices import PriceSheet, recorded_calls_of
from simulator.core.scenario import QualityBar

SCHEMA_VERSION = 3  # 3: money as int64 nano-dollars (cost_nano_usd) in decisions and calls
SUMMARY_FILE = "summary.json"
DECISIONS_FILE = "decisions.parquet"
CALLS_FILE = "calls.parquet"


def bar_failures(summary: dict, bar: QualityBar) -> list[dict]:
    """Where the pass rate falls below the bar: overall (`slice` None), and each slice against its own bar.

    `summary` needs `pass_rate` and `by_slice` (rows with `slice` and `pass_rate`).
    """
    failures = []
    if summary["pass_rate"] < bar.default:
        failures.append({"slice": None, "pass_rate": summary["pass_rate"], "bar": bar.default})
    for row in summary["by_slice"]:
        slice_bar = bar.for_slice(row["slice"])
        if row["pass_rate"] < slice_bar:
            failures.append({"slice": row["slice"], "pass_rate": row["pass_rate"], "bar": slice_bar})
    return failures


def cheapest_meeting_bar(rows: list[dict], name: str = "scenario") -> dict | None:
    """The policy of least cost per request among those meeting their bar (ties: by name).

    Cost per request, not total cost, so that a policy replayed on a sample of the requests is not
    favoured for having fewer of them.
    """
    meeting = [row for row in rows if row["meets_bar"]]
    return min(meeting, key=lambda row: (row["cost_per_request_usd"], row[name])) if meeting else None


def build_summary(replay: Replay, data: Dataset, sheet: PriceSheet | None) -> dict:
    scenario = replay.scenario
    summary = {"scenario": scenario.name, "description": scenario.description}
    summary |= summarise(replay.decisions, replay.calls, replay.price_sources)
    failures = bar_failures(summary, scenario.quality_bar)
    ts = replay.decisions["ts"]
    summary |= {
        "quality_bar": scenario.quality_bar.default,
        "slice_bars": {row["slice"]: scenario.quality_bar.for_slice(row["slice"]) for row in summary["by_slice"]},
        "meets_bar": not failures,
        "bar_failures": failures,
        # How the figures were obtained: every request replayed (exact), or only those with their outcomes.
        "kind": "exact" if replay.coverage.share == 1 else "partial",
        "coverage": {
            "requests_in_window": replay.coverage.requests_in_window,
            "requests_selected": replay.coverage.requests_selected,
            "requests_replayed": replay.coverage.requests_replayed,
            "share": replay.coverage.share,
            "missing_by_model": replay.coverage.missing_by_model,
        },
        "provenance": {
            "schema_version": SCHEMA_VERSION,
            "scenario_hash": scenario.digest(),
            "data": data.folder.name,
            "data_fingerprint": data.fingerprint,
            "prices": Path(sheet.source).name if sheet else None,
            "prices_fingerprint": fingerprint([Path(sheet.source)]) if sheet else None,
            "price_entries": ({model: [str(entry.effective_from) for entry in entries]
                               for model, entries in sheet.models.items()} if sheet else {}),
            "price_sources": replay.price_sources,
            "calls_priced_at_recorded_cost": recorded_calls_of(replay.calls, sheet),
            "requests_without_latency_on_batch": replay.decisions["latency_ms"].null_count(),
            "window": ({"start": str(scenario.window.start), "end": str(scenario.window.end)}
                       if scenario.window else None),
            "first_request": ts.min().isoformat(),
            "last_request": ts.max().isoformat(),
            "sample": scenario.sample.model_dump() if scenario.sample else None,
        },
    }
    return summary


@dataclass(frozen=True)
class SavedResult:
    summary: dict
    decisions: pl.DataFrame
    calls: pl.DataFrame


def save_result(folder: Path, summary: dict, decisions: pl.DataFrame, calls: pl.DataFrame) -> Path:
    """Writes one scenario's result to `folder/<scenario>/`, atomically."""
    target = Path(folder) / summary["scenario"]
    with atomic_folder(target) as staging:
        decisions.write_parquet(staging / DECISIONS_FILE)
        calls.write_parquet(staging / CALLS_FILE)
        (staging / SUMMARY_FILE).write_text(json_text(summary))
    return target


def load_results(folder: Path) -> list[SavedResult]:
    """Every scenario result saved under `folder`, in name order."""
    folder = Path(folder)
    summaries = sorted(folder.glob(f"*/{SUMMARY_FILE}"))
    if not summaries:
        raise RoutesimError(f"no saved results in {folder}", where=str(folder),
                            fix="run 'routesim replay SCENARIO --save DIR' (or 'routesim report') first")
    results = []
    for path in summaries:
        summary = read_summary(path)
        results.append(SavedResult(summary=summary, decisions=pl.read_parquet(path.parent / DECISIONS_FILE),
                                   calls=pl.read_parquet(path.parent / CALLS_FILE)))
    return results


REBUILD = ("rebuild the results with this version of routesim: 'routesim report SCENARIO... -o FILE --save DIR' "
           "(or 'routesim replay SCENARIO... --save DIR')")


def read_summary(path: Path) -> dict:
    """A saved summary.json, refused (RoutesimError naming the rebuild command) when it is not JSON, not a
    summary, or written by another schema version."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RoutesimError(f"cannot read the saved summary: {error}", where=str(path), fix=REBUILD) from None
    provenance = summary.get("provenance") if isinstance(summary, dict) else None
    version = provenance.get("schema_version") if isinstance(provenance, dict) else None
    if version != SCHEMA_VERSION:
        older = isinstance(version, int) and version < SCHEMA_VERSION
        raise RoutesimError(f"these results were saved with schema version {version}, "
                            f"{'an older one than' if older else 'not'} this routesim's ({SCHEMA_VERSION})",
                            where=str(path), fix=REBUILD)
    return summary
