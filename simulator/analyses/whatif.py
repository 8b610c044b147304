"""Price what-ifs: the same replays re-priced with another sheet or scaled prices, side by side.

Modelling assumptions:
- A fixed policy routes the same way whatever the prices (its predicates read answers and requests, not
  prices), so a what-if re-prices the replay's calls instead of replaying: each call's tokens are looked up
  from the outcome it used (the k-th call of a model for a request used that model's sample k) and priced
  with simulator.core.prices.price_calls, exactly as a replay with the what-if sheet would price them.
- `--prices OTHER.yaml` replaces the scenario's sheet (as if its `prices:` pointed there); models the other
  sheet does not list are priced by their recorded cost_usd, as in any replay.
- `--scale NAME=F` multiplies every price of NAME by F: each of its sheet entries' input, cached_input,
  output and per_request prices, or its recorded cost_usd when the sheet does not list it, or a checker's
  or a router overhead's cost when NAME is one (an overhead keeps its replayed cost otherwise, even when a
  classifier priced it from the sheet).
- `--at DATE` prices every call by the entries in force at 00:00 UTC of DATE instead of at its request's
  time ("at today's prices").
- A calibrated threshold (a target pass rate, escalation rate or budget) depends on prices, so it is
  calibrated again on the re-priced sweep.
- Prompt-cache losses (a session switched to a model its previous turn did not call) are billed again
  from the re-priced calls: the same calls lose their cache, at the what-if input and cached rates (none
  for a call priced at its recorded cost).
- A request's cost is the sum of its re-priced calls; summed in another order than the replay adds them,
  it can differ from a replay with the what-if sheet in the last bits.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from simulator.analyses import sweep
from simulator.analyses import tables as analysis
from simulator.core.calls import model_calls
from simulator.core.contract import Dataset
from simulator.core.engine import Replay, calls_to_models, loss_calls
from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.limits import MAX_PRICE_FACTOR
from simulator.core.metrics import aggregate
from simulator.core.money import NANO_PER_USD
from simulator.core.prices import (
    CACHE_LOSS,
    PriceSheet,
    load_prices,
    price_calls,
    price_sources_of,
    refuse_costly_calls,
    round_half_even,
    token_columns,
    usd,
)
from simulator.core.results import grades_read, requests_fingerprint, verdict_of
from simulator.core.scenario import Scenario
from simulator.core.sessions import CacheState, lost
from simulator.core.verdict import DEFAULT_ADMISSION, MEETS, recommend, shortfalls


@dataclass(frozen=True)
class PriceChange:
    """What the what-if changes: a replacement sheet, scale factors per name, a pricing date."""

    sheet: Path | None = None
    scales: tuple[tuple[str, float], ...] = ()
    at: dt.date | None = None

    def describe(self) -> str:
        parts = []
        if self.sheet:
            parts.append(f"prices from {self.sheet.name}")
        parts += [f"{name} x{factor:g}" for name, factor in self.scales]
        if self.at:
            parts.append(f"priced as of {self.at}")
        return ", ".join(parts) or "no change"


def parse_scales(values: list[str]) -> tuple[tuple[str, float], ...]:
    scales: dict[str, float] = {}
    for value in values:
        name, sep, factor = value.partition("=")
        try:
            number = float(factor)
        except ValueError:
            number = None
        fix = f"write MODEL=FACTOR with a factor from 0 to {MAX_PRICE_FACTOR:,}, e.g. --scale flagship=0.5"
        if not sep or not name or number is None or math.isnan(number):
            raise RoutesimError(f"cannot read --scale {value!r}: it is not MODEL=FACTOR", where="--scale", fix=fix)
        if not 0 <= number <= MAX_PRICE_FACTOR:  # read, but out of range: said so
            raise RoutesimError(f"--scale {value!r}: a factor is from 0 to {MAX_PRICE_FACTOR:,}, got {factor}",
                                where="--scale", fix=fix)
        if name in scales:
            raise RoutesimError(f"--scale names '{name}' twice", where="--scale", fix="give each model one factor")
        scales[name] = number
    return tuple(scales.items())


def scaled_sheet(sheet: PriceSheet | None, scales: dict[str, float]) -> PriceSheet | None:
    if sheet is None:
        return None
    models = {}
    for name, entries in sheet.models.items():
        factor = scales.get(name, 1.0)
        models[name] = tuple(entry if factor == 1.0 else entry.scaled(factor) for entry in entries)
    return sheet.model_copy(update={"models": models})


def check_names(change: PriceChange, known: set[str]) -> None:
    for name, _ in change.scales:
        if name not in known:
            raise RoutesimError(f"--scale names '{name}', which no replayed call uses.{did_you_mean(name, known)}",
                                where="--scale", fix=f"names: {', '.join(sorted(known))}")


def _call_tiers(result: Replay) -> pl.Expr:
    """Each call's service tier, as the replay priced it: its plan step's, or the retry's (a sticky
    session's later turn sent straight to a model, plan `sticky: MODEL`, calls it on standard)."""
    policy = result.scenario.policy
    tier = (pl.when(pl.col("kind") == "retry").then(pl.lit(policy.retry.service_tier if policy.retry else "standard"))
            .otherwise(pl.lit("standard")))
    for label, steps in policy.plans():
        for seq, step in enumerate(steps):
            tier = pl.when((pl.col("plan") == label) & (pl.col("kind") == "step") & (pl.col("seq") == seq)) \
                .then(pl.lit(step.service_tier)).otherwise(tier)
    return tier.alias("service_tier")


def _pricing_time(change: PriceChange) -> pl.Expr:
    """`ts` as the what-if prices a call: its request's arrival, or 00:00 UTC of `change.at` for every call."""
    if change.at is None:
        return pl.col("ts")
    return pl.lit(dt.datetime.combine(change.at, dt.time(), tzinfo=dt.UTC)).cast(pl.Datetime("us", "UTC")).alias("ts")


def reprice(result: Replay, data: Dataset, sheet: PriceSheet | None, change: PriceChange) -> Replay:
    """The replay with every call priced under `change` (see the module doc); routing is unchanged."""
    scales = dict(change.scales) or {"": 1.0}  # replace_strict needs a mapping with at least one entry
    base = load_prices(change.sheet) if change.sheet else sheet
    priced_sheet = scaled_sheet(base, scales)
    calls = result.calls.filter(pl.col("kind") != CACHE_LOSS).with_row_index("_order")  # billed again below
    requests = result.decisions.select("rid", "request_id", "ts", "plan").with_columns(_pricing_time(change))
    tokens = model_calls(calls, requests, data, [*token_columns(data.outcomes.collect_schema().names()),
                                                 pl.col("cost_usd").alias("recorded_cost_usd")]
                         ).with_columns(_call_tiers(result))
    listed = set(priced_sheet.models) if priced_sheet else set()
    tokens = tokens.with_columns(
        pl.when(pl.col("model").is_in(sorted(listed))).then(pl.col("recorded_cost_usd"))
        .otherwise(pl.col("recorded_cost_usd") * pl.col("model").replace_strict(scales, default=1.0,
                                                                                return_dtype=pl.Float64))
        .alias("recorded_cost_usd"))
    sessions = result.turns is not None
    # A call too costly to price exactly under the factors is the factors' doing, not the sheet's.
    blame = (("--scale " + " ".join(f"{name}={factor:g}" for name, factor in change.scales),
              "give smaller factors: no call may cost 9 million USD or more") if change.scales else None)
    repriced = price_calls(tokens, priced_sheet, recorded="recorded_cost_usd", into="new_cost",
                           cache_loss_into="if_lost" if sessions else None, blame=blame).sort("_order")
    # Checker and router-overhead calls keep their recorded cost, scaled by --scale NAME.
    checkers = calls.filter(pl.col("kind").is_in(["checker", "router"])).with_columns(
        (pl.col("cost_usd") * pl.col("model").replace_strict(scales, default=1.0, return_dtype=pl.Float64)
         * NANO_PER_USD).alias("new_cost"))
    if blame:
        refuse_costly_calls(checkers, "new_cost", *blame)
    checkers = checkers.with_columns(round_half_even(pl.col("new_cost")).alias("new_cost"))
    new_calls = (pl.concat([repriced.select(*calls.columns, "new_cost"),
                            checkers.select(*calls.columns, "new_cost")], how="vertical")
                 .sort("_order").with_columns(pl.col("new_cost").alias("cost_nano_usd"),
                                              usd(pl.col("new_cost")).alias("cost_usd"))
                 .drop("new_cost", "_order"))
    new_calls = new_calls.select(result.calls.columns)
    exposure, unbilled = None, {}
    if sessions:
        exposure = repriced.filter(pl.col("cached_input_tokens").fill_null(0) > 0).select(
            "rid", "seq", "model", pl.col("if_lost").alias("loss"))
        state = CacheState(kept=result.decisions.select("rid"), exposure=exposure,
                           called=calls_to_models(new_calls),
                           models=tuple(result.scenario.policy.models()))
        found = lost(result.turns, state, state)
        unbilled = dict(found.filter(pl.col("loss").is_null()).group_by("model").len().sort("model").iter_rows())
        losses = loss_calls(found).with_columns(usd(pl.col("cost_nano_usd")).alias("cost_usd"))
        new_calls = pl.concat([new_calls, losses.select(new_calls.columns)], how="vertical")
    # Money is whole nano-dollars, so a request's cost is an exact integer sum in any order.
    totals = new_calls.group_by("rid").agg(pl.col("cost_nano_usd").sum().alias("_cost"))
    decisions = (result.decisions.join(totals, on="rid", how="left", maintain_order="left")
                 .with_columns(pl.col("_cost").fill_null(0).alias("cost_nano_usd"),
                               usd(pl.col("_cost").fill_null(0)).alias("cost_usd")).drop("_cost"))
    price_sources = price_sources_of(new_calls)
    return Replay(scenario=result.scenario, decisions=decisions, call_records=new_calls, coverage=result.coverage,
                  price_sources=price_sources, turns=result.turns, exposure=exposure, cache_loss_unbilled=unbilled,
                  requests=result.requests)


def straight_at(data: Dataset, sheet: PriceSheet | None, change: PriceChange | None) -> analysis.StraightCost:
    """Straight-to-a-model costs (for break-even rates) at current prices, or at the what-if prices."""
    if change is None:
        return analysis.straight_cost(data, sheet)
    scales = dict(change.scales)
    base = load_prices(change.sheet) if change.sheet else sheet
    return analysis.straight_cost(data, scaled_sheet(base, scales or {"": 1.0}), scales, _pricing_time(change))


def _row(name: str, scenario: Scenario, data: Dataset, decisions: pl.DataFrame, calls: pl.DataFrame, *, kind: str,
         threshold: float | None = None, straight: analysis.StraightCost | None = None) -> dict:
    summary = aggregate(decisions).to_dicts()[0]
    summary["by_slice"] = aggregate(decisions, "slice").to_dicts()
    verdict = verdict_of(summary, scenario.quality_bar, scenario.admission or DEFAULT_ADMISSION)
    grades = grades_read(scenario, data)
    cascades = analysis.cascades(decisions, calls, analysis.plan_steps(scenario), straight)
    return {"policy": name, "kind": kind, "threshold": threshold, "requests": summary["requests"],
            "total_cost_usd": summary["total_cost_usd"], "cost_per_request_usd": summary["cost_per_request_usd"],
            "pass_rate": summary["pass_rate"], "escalation_rate": summary["escalation_rate"],
            "verdict": verdict, "meets_bar": verdict["state"] == MEETS, "bar_failures": shortfalls(verdict),
            "deployable": not grades, "grade_columns_read": grades,
            "provenance": {"data_fingerprint": data.fingerprint},
            "requests_fingerprint": requests_fingerprint(decisions["request_id"]),
            "cascades": [{key: c[key] for key in ("plan", "steps", "escalation_rate", "first_step_cost_usd",
                                                  "last_step_cost_usd", "break_even_rate", "cheaper_than_last")}
                         for c in cascades]}


def _ranked(rows: list[dict]) -> dict:
    """Ranks `rows` by cost per request (ties by name) among those `recommend` ranks together: policies
    replayed on the same requests (the largest set; none when different sets tie for it). Each row gets
    `rank` (None when not ranked) and `not_ranked` (why, in recommend's words, or None). Returns recommend's
    result, whose `policy` is the cheapest meeting every bar: the ranks and the ★ rest on one choice of
    requests, as replay's do."""
    found = recommend([row | {"scenario": row["policy"]} for row in rows])
    candidates = {candidate["scenario"]: candidate for candidate in found["candidates"]}
    ranked = sorted((row for row in rows if candidates[row["policy"]]["comparable"]),
                    key=lambda row: (row["cost_per_request_usd"], row["policy"]))
    for row in rows:
        row["rank"] = next((rank for rank, other in enumerate(ranked, start=1) if other is row), None)
        reasons = [reason for reason in candidates[row["policy"]]["reasons"] if "replayed on" in reason]
        row["not_ranked"] = None if row["rank"] is not None else "; ".join(reasons) or None
    return found


def _calibrated(scenario: Scenario, data: Dataset, sheet: PriceSheet | None, change: PriceChange,
                target: tuple[str, float], points: int) -> tuple[dict | None, dict | None]:
    """The scenario's first gate calibrated to `target` at current and at what-if prices."""
    numeric = sweep.numeric_columns(data)
    plans = scenario.policy.plans()
    gated = [label for label, steps in plans
             if len(steps) > 1 and sweep.read_column(steps[0].accept, numeric) and len(steps[0].calls) == 1]
    if not gated or scenario.policy.sticky == "session":  # a sweep cannot follow sticky sessions
        return None, None
    gate = sweep.resolve_gate(scenario, data, step=0, plan=gated[-1] if "default" in gated else gated[0])
    prepared = sweep.prepare(scenario, data, sheet, gate)
    rows = []
    for which, replays in (("current", (prepared.accept_all, prepared.accept_none)),
                           ("what-if", tuple(reprice(r, data, sheet, change) for r in
                                             (prepared.accept_all, prepared.accept_none)))):
        lined = prepared if which == "current" else sweep.line_up(prepared, *replays)
        result = sweep.sweep(scenario, data, sheet, gate, points=points, prepared=lined)
        chosen = sweep.calibrate(result.points, *target, scenario.admission or DEFAULT_ADMISSION)
        if chosen is None:
            rows.append(None)
            continue
        decisions = sweep.decisions_at(lined, chosen["threshold"])
        calls = sweep.calls_at(lined, chosen["threshold"])
        words = sweep.target_words(target)
        rows.append(_row(f"{scenario.name} calibrated ({gate.over}: {words})", scenario, data, decisions, calls,
                         kind="calibrated", threshold=chosen["threshold"],
                         straight=straight_at(data, sheet, None if which == "current" else change)))
    return rows[0], rows[1]


def what_if(scenarios: list[Scenario], inputs, change: PriceChange, *, target: tuple[str, float] | None = None,
            points: int = sweep.DEFAULT_POINTS) -> dict:
    """Every scenario's cost, rank and break-even at current and what-if prices; JSON-ready."""
    current, changed = [], []
    known: set[str] = set()
    replays = []
    from simulator.core.engine import replay

    for scenario in scenarios:
        data, sheet = inputs.data(scenario), inputs.prices(scenario)
        result = replay(scenario, data, sheet)
        replays.append((scenario, data, sheet, result))
        known |= set(result.calls["model"].unique())
        if sheet:
            known |= set(sheet.models)
    check_names(change, known)
    for scenario, data, sheet, result in replays:
        repriced = reprice(result, data, sheet, change)
        current.append(_row(scenario.name, scenario, data, result.decisions, result.calls, kind="fixed",
                            straight=straight_at(data, sheet, None)))
        changed.append(_row(scenario.name, scenario, data, repriced.decisions, repriced.calls, kind="fixed",
                            straight=straight_at(data, sheet, change)))
        if target is not None:
            before, after = _calibrated(scenario, data, sheet, change, target, points)
            if before is not None or after is not None:
                name = (before or after)["policy"]
                current.append(before or {"policy": name, "kind": "calibrated", "unreachable": True})
                changed.append(after or {"policy": name, "kind": "calibrated", "unreachable": True})
    reachable = [(a, b) for a, b in zip(current, changed) if not a.get("unreachable") and not b.get("unreachable")]
    now, then = _ranked([a for a, _ in reachable]), _ranked([b for _, b in reachable])
    return {"change": change.describe(), "target": None if target is None else {"kind": target[0], "value": target[1]},
            "current": current, "what_if": changed,
            # The verdicts judge each scenario's bars: one left unstated is the default, and said so.
            "notes": [note for scenario in scenarios if (note := scenario.unstated_bar_note())],
            "cheapest_meeting_bar": {"current": now["policy"], "what_if": then["policy"]},
            "tied": now["tied"]}
