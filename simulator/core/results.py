"""Replay results you can keep: decisions and calls as Parquet, the summary as JSON.

A results folder holds one subfolder per scenario (`decisions.parquet`, `calls.parquet`, `summary.json`).
The summary carries a schema version, the scenario's hash and the fingerprints of the data and the price
sheet, so a report can be re-rendered without replaying and a stale result can be recognised. No
wall-clock time is stamped: the same inputs give byte-identical results.
"""

from __future__ import annotations

import json
import shutil
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import reduce
from operator import xor
from pathlib import Path

import polars as pl

import numpy as np

from simulator.core.calls import (
    answers_read,
    by_position,
    merge_per_minute,
    outcome_rows,
    per_minute,
    traffic_rows,
    with_layout_rows,
)
from simulator.core.contract import Dataset, fingerprint, grade_columns
from simulator.core.engine import LAYOUT_ROW, MODEL_CALLS, Replay
from simulator.core.errors import RoutesimError
from simulator.core.footguns import merge_warning_counts, warning_counts, warnings_of
from simulator.core.metrics import (
    BY_NAME,
    SESSION_READS,
    OVER_TIME_SCOPE,
    LATENCY_QUANTILES,
    QUANTILED_SCOPES,
    call_parts,
    decision_parts,
    SessionTerms,
    merge_call_parts,
    merge_session_terms,
    session_metrics,
    session_terms,
    price_sources_of_parts,
    summary_counts,
    summary_metrics,
    summary_scopes,
)
from simulator.core.partials import Fetch, Parts, fetch_local, merge_parts, quantiles
from simulator.core.outputs import (EARLIER_RESULT_FILES, MARKER, atomic_folder, claim_folder, json_text,
                                    write_json_atomic)
from simulator.core.predicates import parse_predicate
from simulator.core.prices import SOURCE_RECORDED, PriceSheet
from simulator.core.scenario import QualityBar, Scenario
from simulator.core.verdict import (
    DEFAULT_ADMISSION,
    FAILS,
    MEETS,
    Admission,
    judge,
    policy_verdict,
    shortfalls,
)

# The requests' columns a part keeps for the controls (simulator.analyses.controls.controls_of).
CONTROL_COLUMNS = ["request_id", "rid", "ts", "slice", "passed", "cost_nano_usd"]
# The controls price every model's first answer to every replayed request, several times the replay's own
# work: above this many replayed requests they are left out, whole or split alike, and a replay in parts
# stops keeping its requests' columns (`ReplayPart.requests`), which at 100M requests would not fit.
CONTROL_REQUESTS = 2_000_000
SCHEMA_VERSION = 5  # 3: money as int64 nano-dollars (cost_nano_usd); 4: verdicts, deployability, over_time;
# 5: prompt-cache losses (calls of kind cache_loss, their by_model line)
ASSUMED = "assumed_from_status"
# A summary's `kind`: every request of the window replayed, or only those with their outcomes (a
# design-weighted estimate, simulator.analyses.estimates, is a third).
EXACT, PARTIAL = "exact", "partial"
SUMMARY_FILE = "summary.json"
DECISIONS_FILE = "decisions.parquet"
CALLS_FILE = "calls.parquet"


def verdict_of(summary: dict, bar: QualityBar, admission: Admission = DEFAULT_ADMISSION) -> dict:
    """The policy's verdict against its bar (simulator.core.verdict.policy_verdict).

    `summary` needs `requests`, `pass_rate` and `by_slice` (rows with `slice`, `requests`, `pass_rate`).
    """
    return policy_verdict(summary, bar.default, bar.for_slice, admission)


def bar_failures(summary: dict, bar: QualityBar, admission: Admission = DEFAULT_ADMISSION) -> list[dict]:
    """The scopes that do not meet their bar under the admission rule: overall (`slice` None) and slices,
    each with its `state` (fails or undecided), pass rate, interval and bar."""
    return shortfalls(verdict_of(summary, bar, admission))


def _fingerprint_terms(request_ids: pl.Series) -> tuple[int, int, int]:
    """(count, xor, sum mod 2^64) of the ids' 64-bit hashes: a part of requests_fingerprint."""
    hashed = request_ids.hash(seed=0).to_numpy()
    return len(hashed), int(np.bitwise_xor.reduce(hashed)) if len(hashed) else 0, int(hashed.sum())


def _fingerprint_text(count: int, xor: int, total: int) -> str:
    return f"{count:x}-{xor:016x}-{total % 2**64:016x}"


def requests_fingerprint(request_ids: pl.Series) -> str:
    """An order-independent fingerprint of a set of request ids: policies are ranked together only when
    they were replayed on the same requests."""
    return _fingerprint_text(*_fingerprint_terms(request_ids))


def grades_read(scenario: Scenario, data: Dataset) -> list[str]:
    """The grade columns any accept, select or retry predicate of the scenario reads, or that `select.highest`
    or `best_by` rank answers by (simulator.core.contract); an earlier step's column counts as its own."""
    policy = scenario.policy
    steps = [step for _, plan in policy.plans() for step in plan]
    texts = [step.accept for step in steps if step.accept]
    texts += [step.select.first for step in steps if step.select and step.select.first]
    texts += [policy.retry.when] if policy.retry else []
    read = set().union(*(parse_predicate(text, key="policy", steps=None).base_columns for text in texts)) if texts else set()
    read |= {step.select.highest for step in steps if step.select and step.select.highest}
    read |= {spec.best_by for spec in policy.plan_specs() if spec.best_by}
    return grade_columns(read, data.outcomes.collect_schema().names(), data.serving_signals)


def _assumed(decisions: pl.DataFrame, data: Dataset) -> int | None:
    """Replayed requests (`decisions`, with `LAYOUT_ROW` when read by position) whose final answer's grade
    was assumed from the HTTP status (`passed_source = assumed_from_status`); None when the data has no
    `passed_source`."""
    if "passed_source" not in data.outcomes.collect_schema().names():
        return None
    finals = decisions.select("request_id", pl.col("final_model").alias("model"), pl.col("final_sample").alias("sample"),
                              *([LAYOUT_ROW] if LAYOUT_ROW in decisions.columns else []))
    if by_position(finals, data):
        sources = answers_read(finals, data, ["passed_source"])
    else:
        sources = (data.outcomes.select("request_id", "model", "sample", "passed_source")
                   .join(finals.lazy(), on=["request_id", "model", "sample"], how="inner").collect())
    return int((sources["passed_source"] == ASSUMED).sum())


# Windows shorter than this are shown per hour, longer ones per day.
# Over-time buckets, finest first, each used when the replayed requests span less than its limit (else
# days): a window of under two hours (the public datasets) still shows a series, not one point.
OVER_TIME_BUCKETS = (("5 minutes", "5m", 2 * 3_600), ("hour", "1h", 2 * 86_400))


def over_time(steps: pl.DataFrame, span_seconds: float, bar: float, admission: Admission = DEFAULT_ADMISSION) -> dict:
    """Pass rate (with its verdict against `bar`) and cost per request per UTC day, per hour when the
    replayed requests span less than two days, per 5 minutes when they span less than two hours. `steps`
    are the merged counters of the 5-minute scope (simulator.core.metrics). `late_misses` are the
    trailing buckets that fail the bar."""
    bucket, every = next(((name, every) for name, every, below in OVER_TIME_BUCKETS if span_seconds < below),
                         ("day", "1d"))
    rows = (steps.group_by(pl.col("key").dt.truncate(every).alias("start"))
            .agg(pl.col("requests").sum(), pl.col("passes").sum(), pl.col("cost_nano").sum()).sort("start"))
    found = []
    for row in rows.iter_rows(named=True):
        verdict = judge(row["passes"], row["requests"], bar, admission)
        found.append({"start": row["start"].strftime("%Y-%m-%dT%H:%M:%SZ"), "requests": row["requests"],
                      "pass_rate": verdict["pass_rate"], "low": verdict["low"], "high": verdict["high"],
                      "state": verdict["state"],
                      "cost_per_request_usd": BY_NAME["cost_per_request_usd"].value(row)})
    late = []
    for row in reversed(found):
        if row["state"] != FAILS:
            break
        late.insert(0, row)
    return {"bucket": bucket, "bar": bar, "rows": found, "late_misses": late}


def _warning_counts(replay: Replay, decisions: pl.DataFrame, data: Dataset) -> dict:
    """simulator.core.footguns.warning_counts of `replay` (`decisions`: its decisions, with `LAYOUT_ROW` when
    read by position)."""
    scenario = replay.scenario
    traffic = data.traffic.collect_schema().names()
    outcome_schema = data.outcomes.collect_schema()
    texts = [scenario.policy.retry.when] if scenario.policy.retry else []
    texts += [rule.when for rule in scenario.policy.rules]
    texts += [step.accept for _, steps in scenario.policy.plans() for step in steps if step.accept]
    read = set().union(*(parse_predicate(text, key="policy", steps=None).base_columns for text in texts)) if texts else set()
    wanted = sorted(read & set(traffic)) or ["request_id"]
    if replay.requests is not None and set(wanted) <= set(replay.requests.columns):
        requests = replay.requests.select(wanted)  # as the rules were evaluated, without reading them again
        if requests.height != decisions.height:  # requests left out for a missing answer
            requests = requests[decisions["rid"].to_numpy()]
    else:
        requests = traffic_rows(decisions, data, wanted)
    # Answers are read for the distinct values of text columns only (footguns' literals).
    answer_columns = sorted(name for name in read - set(traffic)
                            if name in outcome_schema and outcome_schema[name] in (pl.String, pl.Categorical))
    answers = outcome_rows(decisions, data, answer_columns) if answer_columns else None
    return warning_counts(scenario, requests, answers, replay.decisions, replay.cache_loss_unbilled)


@dataclass
class ReplayPart:
    """What the summary of a replay needs from one part of it (a shard, or the whole replay), in a form
    parts add up in: counters, exact sums and latency histograms per group (simulator.core.partials), calls
    per model and price source, coverage, the request-id fingerprint's terms, the first and last request,
    assumed grades and the warnings' counts; for the capacity and controls analyses, the per-minute load
    per model (simulator.core.calls.per_minute), the requests' `request_id`, `ts`, `slice`, `passed`,
    `cost_nano_usd` (CONTROL_COLUMNS; None once a merge holds more than CONTROL_REQUESTS replayed
    requests, `without_requests`) and the models its plans and retries called; for traffic with sessions,
    the session metrics' terms. Merged by merge_replay_parts; its per-request latencies for the quantiles'
    second pass are kept apart (see replay_part)."""

    parts: Parts
    calls: pl.DataFrame
    in_window: int
    selected: int
    replayed: int
    missing: dict[str, int]
    missing_example: tuple[str, str] | None
    fingerprint: tuple[int, int, int]
    first: object
    last: object
    assumed: int | None
    warnings: dict
    load: pl.DataFrame
    requests: pl.DataFrame | None
    routed_to: frozenset[str]
    sessions: SessionTerms | None  # None for traffic without sessions
    # The fingerprint of the layout whose row ids `requests` carry as LAYOUT_ROW (None: they carry none).
    layout: str | None = None

    def requests_on(self, data: Dataset) -> pl.DataFrame | None:
        """`requests`, with their row ids only when those are row ids of `data`'s layout (a part of a
        replay in chunks of `data`, not of a shard of it); None when they were not kept."""
        if self.requests is None:
            return None
        mine = data.layout is not None and self.layout == data.layout.fingerprint
        return self.requests if mine else self.requests.drop(LAYOUT_ROW, strict=False)

    def without_requests(self) -> ReplayPart:
        """This part without its requests' columns (kept only up to CONTROL_REQUESTS replayed requests)."""
        return replace(self, requests=None)


def replay_part(replay: Replay, data: Dataset) -> tuple[ReplayPart, pl.DataFrame]:
    """One replay (of a whole data folder, or of one shard of it) as a mergeable part, and the latencies
    it keeps for the second pass of the exact quantiles."""
    decisions, coverage = replay.decisions, replay.coverage
    positioned = with_layout_rows(decisions, replay.layout_rows)
    # The warnings' counts and the per-minute load are taken on a second thread meanwhile: polars and numpy
    # work outside the GIL.
    with ThreadPoolExecutor(1) as beside:
        warnings = beside.submit(_warning_counts, replay, positioned, data)
        # The call records in the order made: every figure of them is an integer sum or a count.
        load = beside.submit(per_minute, replay.call_records, decisions)
        parts, kept = decision_parts(decisions, summary_scopes(), QUANTILED_SCOPES)
        calls = call_parts(replay.call_records)
        assumed = _assumed(positioned, data)
        warnings, load = warnings.result(), load.result()
    part = ReplayPart(
        parts=parts, calls=calls, in_window=coverage.requests_in_window,
        selected=coverage.requests_selected, replayed=coverage.requests_replayed,
        missing=dict(coverage.missing_by_model), missing_example=coverage.missing_example,
        fingerprint=_fingerprint_terms(decisions["request_id"]),
        first=decisions["ts"].min(), last=decisions["ts"].max(), assumed=assumed,
        warnings=warnings, load=load,
        requests=_request_columns(positioned),
        routed_to=frozenset(replay.call_records.filter(pl.col("kind").is_in(MODEL_CALLS))["model"]
                            .unique().cast(pl.String)),
        sessions=_sessions_of(decisions),
        layout=data.layout.fingerprint if by_position(positioned, data) else None)
    _LAST_PART[:] = [(weakref.ref(replay, _forget), data, part)]
    return part, kept


# The part of the replay summarised last, with that replay (weakly) and its data: the analyses set beside
# its summary (simulator.analyses.capacity, simulator.analyses.controls) read it instead of computing the
# per-minute load and the requests' columns again.
_LAST_PART: list[tuple[weakref.ref, Dataset, ReplayPart]] = []


def _forget(replay: weakref.ref) -> None:
    """Drops the kept part once its replay is gone."""
    if _LAST_PART and _LAST_PART[0][0] is replay:
        _LAST_PART.clear()


def part_of(replay: Replay, data: Dataset) -> ReplayPart:
    """The mergeable part of `replay` on `data` (`replay_part`), computed once: the one its summary was built
    from when that was the last replay summarised, else anew."""
    if _LAST_PART:
        replayed, on, part = _LAST_PART[0]
        if replayed() is replay and on is data:
            return part
    return replay_part(replay, data)[0]


def _sessions_of(decisions: pl.DataFrame) -> SessionTerms | None:
    """The session metrics' terms of a replay's decisions; None for traffic without sessions."""
    if "session_id" not in decisions.columns:
        return None
    within_plan = (pl.col("escalated") & pl.col("multi_step")).alias("escalated")  # SESSION_READS' escalated
    return session_terms(decisions.select(*(name for name in SESSION_READS if name != "escalated"), within_plan))


def _request_columns(decisions: pl.DataFrame) -> pl.DataFrame | None:
    """What a part keeps per request for the controls: CONTROL_COLUMNS (and `LAYOUT_ROW` when `decisions`
    have it); None above CONTROL_REQUESTS requests."""
    if decisions.height > CONTROL_REQUESTS:
        return None
    return decisions.select(*CONTROL_COLUMNS, *([LAYOUT_ROW] if LAYOUT_ROW in decisions.columns else []))


def merge_replay_parts(many: list[ReplayPart]) -> ReplayPart:
    """The part of the whole from the parts of a split: every figure adds up exactly."""
    missing: dict[str, int] = {}
    for part in many:
        for model, count in part.missing.items():
            missing[model] = missing.get(model, 0) + count
    examples = [part.missing_example for part in many if part.missing_example is not None]
    firsts = [part.first for part in many if part.first is not None]
    lasts = [part.last for part in many if part.last is not None]
    assumed = [part.assumed for part in many]
    layouts = {part.layout for part in many}
    layout = layouts.pop() if len(layouts) == 1 else None  # row ids of one layout, or none kept
    replayed = sum(part.replayed for part in many)
    requests = None
    if replayed <= CONTROL_REQUESTS and all(part.requests is not None for part in many):
        requests = pl.concat([part.requests if layout else part.requests.drop(LAYOUT_ROW, strict=False)
                              for part in many], how="vertical_relaxed")
        # rid: a unique key in (ts, request_id) order; the analyses' results do not depend on its values
        requests = ((requests if _in_arrival_order(requests) else requests.sort("ts", "request_id"))
                    .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("rid")))
    sessions = [part.sessions for part in many if part.sessions is not None]
    return ReplayPart(
        parts=merge_parts([part.parts for part in many]), calls=merge_call_parts([part.calls for part in many]),
        in_window=sum(part.in_window for part in many), selected=sum(part.selected for part in many),
        replayed=replayed, missing=dict(sorted(missing.items())),
        missing_example=min(examples) if examples else None,
        fingerprint=(sum(p.fingerprint[0] for p in many), reduce(xor, (p.fingerprint[1] for p in many), 0),
                     sum(p.fingerprint[2] for p in many) % 2**64),
        first=min(firsts) if firsts else None, last=max(lasts) if lasts else None,
        assumed=None if None in assumed else sum(assumed),
        warnings=merge_warning_counts([part.warnings for part in many]),
        load=merge_per_minute([part.load for part in many]), requests=requests,
        routed_to=frozenset().union(*(part.routed_to for part in many)),
        sessions=merge_session_terms(sessions) if sessions else None, layout=layout)


def _in_arrival_order(requests: pl.DataFrame) -> bool:
    """Whether `requests` already run by (ts, request_id), as the chunks of a replay do when merged in
    order: then sorting can be skipped."""
    ts, ids = pl.col("ts"), pl.col("request_id")
    return bool(requests.select(((ts.diff() > 0) | ((ts.diff() == 0) & (ids > ids.shift()))).fill_null(True).all()).item())


def build_summary(replay: Replay, data: Dataset, sheet: PriceSheet | None) -> dict:
    """The summary of one replay in one piece: summary_from its single part."""
    part, kept = replay_part(replay, data)
    return summary_from(replay.scenario, part, fetch_local([kept]), data, sheet)


def summary_from(scenario: Scenario, part: ReplayPart, fetch: Fetch, data: Dataset, sheet: PriceSheet | None) -> dict:
    """The summary of a replay from its (merged) part; `fetch` runs the quantiles' second pass over the
    parts' kept latencies (simulator.core.partials). `data` is the whole data folder the scenario names."""
    summary = {"scenario": scenario.name, "description": scenario.description}
    latencies = quantiles(part.parts, QUANTILED_SCOPES, LATENCY_QUANTILES, fetch)
    summary |= summary_metrics(part.parts, part.calls, latencies)
    if part.sessions is not None:
        summary["sessions"] = session_metrics(part.sessions)
    price_sources = price_sources_of_parts(part.calls)
    admission = scenario.admission or DEFAULT_ADMISSION
    verdict = verdict_of(summary, scenario.quality_bar, admission)
    grades = grades_read(scenario, data)
    share = part.replayed / part.selected if part.selected else 0.0
    summary |= {
        "quality_bar": scenario.quality_bar.default,
        "quality_bar_stated": scenario.quality_bar_stated,
        "slice_bars": {row["slice"]: scenario.quality_bar.for_slice(row["slice"]) for row in summary["by_slice"]},
        "admission": {"rule": admission.rule, "confidence": admission.confidence},
        "verdict": verdict,
        "meets_bar": verdict["state"] == MEETS,
        "bar_failures": shortfalls(verdict),
        "deployable": not grades,
        "grade_columns_read": grades,
        "assumed_grades_share": None if part.assumed is None else part.assumed / part.replayed,
        "requests_fingerprint": _fingerprint_text(*part.fingerprint),
        "warnings": warnings_of(scenario, part.warnings, part.in_window),
        "over_time": over_time(part.parts.scopes[OVER_TIME_SCOPE]["counts"], (part.last - part.first).total_seconds(),
                               scenario.quality_bar.default, admission),
        # How the figures were obtained: every request replayed (exact), or only those with their outcomes.
        "kind": EXACT if share == 1 else PARTIAL,
        "coverage": {
            "requests_in_window": part.in_window,
            "requests_selected": part.selected,
            "requests_replayed": part.replayed,
            "share": share,
            "missing_by_model": part.missing,
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
            "price_sources": price_sources,
            "calls_priced_at_recorded_cost": recorded_calls_of(part.calls),
            "requests_without_latency_on_batch": part.replayed - summary_counts(part.parts)["timed"],
            "window": ({"start": str(scenario.window.start), "end": str(scenario.window.end)}
                       if scenario.window else None),
            "first_request": part.first.isoformat(),
            "last_request": part.last.isoformat(),
            "sample": scenario.sample.model_dump() if scenario.sample else None,
        },
    }
    return summary


def recorded_calls_of(calls: pl.DataFrame) -> dict[str, int]:
    """Per model, its calls priced at their recorded cost_usd (`calls`: merged call parts): every call of a
    model the sheet does not list, and a listed model's calls whose usage was missing. A model none of whose
    calls was is left out."""
    return {row["model"]: row["calls"] for row in calls.iter_rows(named=True)
            if row["price_source"] == SOURCE_RECORDED}


@dataclass(frozen=True)
class SavedResult:
    summary: dict
    decisions: pl.DataFrame
    calls: pl.DataFrame


def save_result(folder: Path, summary: dict, decisions: pl.DataFrame, calls: pl.DataFrame) -> Path:
    """Writes one scenario's result to `folder/<scenario>/`, atomically. `folder` is a results folder
    (simulator.core.outputs.claim_folder): one routesim did not write is refused without `--force`."""
    target = claim_folder(folder) / summary["scenario"]
    with atomic_folder(target) as staging:
        decisions.write_parquet(staging / DECISIONS_FILE)
        calls.write_parquet(staging / CALLS_FILE)
        (staging / SUMMARY_FILE).write_text(json_text(summary))
    return target


def forget_report(folder: Path) -> None:
    """Removes from a results folder the files a report writes beside its scenarios' results
    (EARLIER_RESULT_FILES: its manifest, baselines, coverage, gates and price checks), once `replay --save`
    has written results of its own there: they describe the report's run, and a re-render (`report --from`)
    would set them beside the new results, as if one run had made both."""
    for name in sorted(EARLIER_RESULT_FILES):
        path = Path(folder) / name
        if path.is_file() and not path.is_symlink():
            path.unlink()


def drop_other_results(folder: Path, kept: set[str]) -> None:
    """Removes from `folder` the scenario results `save_result` wrote there for scenarios not in `kept` (a
    report written again with fewer scenarios would otherwise leave the others' folders behind). Only
    folders routesim wrote (its marker file and a summary) are removed."""
    for saved in sorted(Path(folder).glob(f"*/{SUMMARY_FILE}")):
        result = saved.parent
        if result.name not in kept and (result / MARKER).is_file():
            shutil.rmtree(result)


ORDER_FILE = "order.json"  # beside the saved results: their scenarios in the order they were saved


def note_order(folder: Path, names: list[str]) -> None:
    """Records the order of the results saved in `folder` (ORDER_FILE): those saved before in their order,
    then `names`, just saved, in the order the command named them. `report --from` shows the scenarios in
    that order, as the command that saved them showed them."""
    earlier = [name for name in saved_order(folder) if name not in names]
    write_json_atomic(Path(folder) / ORDER_FILE, {"scenarios": earlier + list(names)})


def saved_order(folder: Path) -> list[str]:
    """The scenarios whose results are saved in `folder`: in the order ORDER_FILE records, then any it does
    not name (results saved by an older routesim) by name."""
    folder = Path(folder)
    present = sorted(path.parent.name for path in folder.glob(f"*/{SUMMARY_FILE}"))
    try:
        listed = json.loads((folder / ORDER_FILE).read_text(encoding="utf-8"))["scenarios"]
        listed = [name for name in dict.fromkeys(listed) if name in present]
    except (OSError, ValueError, KeyError, TypeError):  # absent, or not routesim's: the names decide
        listed = []
    return listed + [name for name in present if name not in listed]


def load_results(folder: Path) -> list[SavedResult]:
    """Every scenario result saved under `folder`, in the order they were saved (`saved_order`)."""
    folder = Path(folder)
    summaries = [folder / name / SUMMARY_FILE for name in saved_order(folder)]
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
