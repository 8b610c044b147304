"""Reconciliation: does the price sheet agree with what the logged calls were billed?

Every outcome with a recorded `cost_usd` is priced by the sheet exactly as a replay would price it
(simulator.core.prices.price_expr: the entry in force at its request's `ts`, its logged `service_tier`,
null = standard), without the replay's rule for calls whose usage is missing, since finding those is part
of the check, and rounded to whole nano-dollars like every cost (the recorded cost too). Sheet cost and
recorded cost are then summed per model and UTC day, exactly.

- A call differs when |sheet - recorded| exceeds the tolerance: `relative` x recorded, and at least
  `per_call_usd` (defaults 1% and 1 µ$). A model/day is flagged when its sums differ by more than
  `relative` x its recorded sum and at least `per_call_usd` x its calls, or when some call of it cannot be
  priced by the sheet.
- Each differing call gets the first cause that explains it (CAUSES, in this order): the model is not in
  the sheet; no entry of the model is in force (the sheet is out of date); zero input and output tokens
  with a positive recorded cost (usage lost, not zero); the recorded cost is the sheet's price with the
  cache reads priced as fresh input; a tier boundary (the recorded cost is the price without the sheet's
  long-context tiers, or the call's input is above a common tier threshold, 128k, 200k or 272k, at which
  the prices that priced it, its model's entry in force at its service tier, have no tier); else the
  sheet's price differs from what was billed (a price change, negotiated terms). The sheet already charges
  a call above one of its own tiers that tier's price, so such a call billed anything but the price without
  tiers is a price difference, not a tier boundary.
- A log that leaves out some cache counts (null) prices those calls' cache reads as fresh input, so a few
  calls differ; within the tolerance their model/day is not flagged.
- A flagged model/day names the cause of most of its differing calls, counts every cause, and shows up to
  three example requests, the largest differences first.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from simulator.core.contract import Dataset
from simulator.core.engine import with_utc_ts
from simulator.core.errors import RoutesimError
from simulator.core.metrics import grouped
from simulator.core.money import NANO_PER_USD
from simulator.core.prices import (
    PriceEntry,
    PriceSheet,
    context_thresholds,
    nano_usd_expr,
    price_expr,
    rate_set_expr,
    round_half_even,
    token_columns,
    usage_missing,
    usd,
)

NOT_IN_SHEET = "model missing from the sheet"
NO_ENTRY = "no sheet entry in force (sheet out of date)"
ZERO_USAGE = "zero tokens with a positive spend (usage missing)"
CACHE_AS_FRESH = "cache tokens priced as fresh input"
TIER_BOUNDARY = "a tier boundary (long-context prices)"
PRICE_DIFFERS = "sheet price differs from what was billed (out of date, or negotiated terms)"
CAUSES = (NOT_IN_SHEET, NO_ENTRY, ZERO_USAGE, CACHE_AS_FRESH, TIER_BOUNDARY, PRICE_DIFFERS)
COMMON_TIER_THRESHOLDS = (128_000, 200_000, 272_000)
EXAMPLES = 3


@dataclass(frozen=True)
class Tolerance:
    relative: float = 0.01  # share of the recorded cost
    per_call_usd: float = 1e-6  # USD per call

    def check(self) -> Tolerance:
        """Refuses a tolerance no difference could be judged against, naming the option and the value given."""
        if not 0 <= self.relative < 1:
            raise RoutesimError(f"--tolerance must lie in [0, 1) (a share of the recorded cost), got {self.relative}",
                                where="--tolerance", fix="e.g. --tolerance 0.01 for 1%")
        if not self.per_call_usd >= 0:
            raise RoutesimError(f"--tolerance-usd must be >= 0 (USD per call), got {self.per_call_usd}",
                                where="--tolerance-usd", fix="e.g. --tolerance-usd 0.000001")
        return self


@dataclass(frozen=True)
class Reconciliation:
    """Per model and day: `calls`, `recorded_usd`, `sheet_usd` (null when some call has no sheet price),
    `difference_usd` (sheet - recorded), `relative_difference`, `differing_calls`, `flagged`, `cause`
    (of most differing calls), `causes` (cause -> calls) and `examples` (request ids)."""

    groups: pl.DataFrame
    tolerance: Tolerance
    calls_checked: int
    calls_without_recorded_cost: int
    prices: str

    @property
    def flagged(self) -> pl.DataFrame:
        return self.groups.filter("flagged")

    def to_dict(self) -> dict:
        """Plain data for JSON and saved report results."""
        return {"prices": self.prices, "tolerance": {"relative": self.tolerance.relative,
                                                     "per_call_usd": self.tolerance.per_call_usd},
                "calls_checked": self.calls_checked, "calls_without_recorded_cost": self.calls_without_recorded_cost,
                "flagged": self.flagged.height,
                "groups": [{**row, "day": str(row["day"])} for row in self.groups.iter_rows(named=True)]}


def _entry_variant(entry: PriceEntry, *, fresh_cache: bool = False, flat: bool = False) -> PriceEntry:
    """The entry with cache reads priced as fresh input (`fresh_cache`), or without context tiers (`flat`)."""
    def change(rates):
        update = {}
        if fresh_cache:
            update["cached_input"] = None
            if getattr(rates, "tiers", None):
                update["tiers"] = tuple(tier.model_copy(update={"cached_input": None}) for tier in rates.tiers)
        if flat and hasattr(rates, "tiers"):
            update["tiers"] = ()
        return rates.model_copy(update=update)

    changed = change(entry)
    services = {name: change(getattr(entry, name)) for name in ("batch", "flex", "priority") if getattr(entry, name)}
    return changed.model_copy(update=services)


def _sheet_variant(sheet: PriceSheet, **how) -> PriceSheet:
    return sheet.model_copy(update={"models": {name: tuple(_entry_variant(entry, **how) for entry in entries)
                                               for name, entries in sheet.models.items()}})


def _calls(data: Dataset) -> tuple[pl.DataFrame, int]:
    """Outcomes with their request's ts, in a fixed order; and how many had no recorded cost."""
    names = data.outcomes.collect_schema().names()
    extra = [name for name in ("service_tier",) if name in names]
    calls = (data.outcomes.select("request_id", "model", "sample", *token_columns(names), *extra,
                                  pl.col("cost_usd").cast(pl.Float64).alias("recorded_usd"))
             .join(with_utc_ts(data.traffic.select("request_id", "ts")), on="request_id", how="inner")
             .collect().sort("model", "ts", "request_id", "sample"))
    without = calls["recorded_usd"].null_count()
    calls = calls.filter(pl.col("recorded_usd").is_not_null())
    return calls.with_columns(nano_usd_expr(pl.col("recorded_usd")).alias("recorded_nano")), without


def _differs(value_nano: pl.Expr, tolerance: Tolerance) -> pl.Expr:
    """A call costing `value_nano` nano-dollars is off its recorded cost by more than the tolerance."""
    recorded = pl.col("recorded_nano")
    allowed = pl.max_horizontal(recorded.abs() * tolerance.relative, pl.lit(tolerance.per_call_usd * NANO_PER_USD))
    return (value_nano - recorded).abs() > allowed


def _above_a_missing_tier(sheet: PriceSheet, columns: set[str]) -> pl.Expr:
    """The call's input_tokens exceed a common tier threshold (COMMON_TIER_THRESHOLDS) at which the prices
    that priced it (its model's entry in force, its service tier) have no context tier.

    A tier the sheet does price is not a cause: above it the sheet already charges the tier's price, so a
    call that still differs was billed something else (the sheet's tier price is out of date, or negotiated).
    """
    index, _ = rate_set_expr(sheet, columns)
    lowest_missing = [min((bound for bound in COMMON_TIER_THRESHOLDS if bound not in priced), default=None)
                      for priced in context_thresholds(sheet)]
    if not lowest_missing:
        return pl.lit(False)
    bound = index.replace_strict(list(range(len(lowest_missing))), lowest_missing, default=None,
                                 return_dtype=pl.Int64)
    return (pl.col("input_tokens") > bound).fill_null(False)


def _cause(sheet: PriceSheet, columns: set[str], tolerance: Tolerance) -> pl.Expr:
    """The first cause (CAUSES order) that explains a differing call."""
    fresh = price_expr(_sheet_variant(sheet, fresh_cache=True), columns)
    flat = price_expr(_sheet_variant(sheet, flat=True), columns)
    has_cache = pl.col("cached_input_tokens").fill_null(0) > 0
    return (pl.when(~pl.col("model").is_in(list(sheet.models))).then(pl.lit(NOT_IN_SHEET))
            .when(pl.col("sheet_nano").is_null()).then(pl.lit(NO_ENTRY))
            .when(usage_missing("recorded_usd")).then(pl.lit(ZERO_USAGE))
            .when(has_cache & ~_differs(fresh, tolerance)).then(pl.lit(CACHE_AS_FRESH))
            .when(~_differs(flat, tolerance) | _above_a_missing_tier(sheet, columns)).then(pl.lit(TIER_BOUNDARY))
            .otherwise(pl.lit(PRICE_DIFFERS)))


def reconcile(data: Dataset, sheet: PriceSheet, tolerance: Tolerance = Tolerance()) -> Reconciliation:
    """The sheet-priced cost of every logged call against its recorded cost, per model and day."""
    calls, without = _calls(data)
    columns = set(calls.columns)
    calls = calls.with_columns(round_half_even(price_expr(sheet, columns)).alias("sheet_nano"),
                               pl.col("ts").dt.date().alias("day"))
    calls = calls.with_columns(
        (_differs(pl.col("sheet_nano"), tolerance) | pl.col("sheet_nano").is_null()).alias("differs"),
        (pl.col("sheet_nano") - pl.col("recorded_nano")).alias("difference_nano"))
    # Money in whole nano-dollars: every sum is exact; dollars are shown from the exact sums.
    groups = grouped(calls, ["model", "day"], [
        pl.len().alias("calls"),
        pl.col("recorded_nano").sum().alias("recorded_nano"),
        pl.when(pl.col("sheet_nano").null_count() == 0).then(pl.col("sheet_nano").sum()).alias("sheet_nano"),
        pl.col("differs").sum().alias("differing_calls"),
    ])
    difference = pl.col("sheet_nano") - pl.col("recorded_nano")
    allowed = pl.max_horizontal(pl.col("recorded_nano").abs() * tolerance.relative,
                                pl.col("calls") * tolerance.per_call_usd * NANO_PER_USD)
    groups = groups.select(
        "model", "day", "calls", usd(pl.col("recorded_nano")).alias("recorded_usd"),
        usd(pl.col("sheet_nano")).alias("sheet_usd"), usd(difference).alias("difference_usd"),
        pl.when(pl.col("recorded_nano") > 0).then(difference / pl.col("recorded_nano")).alias("relative_difference"),
        "differing_calls", (pl.col("sheet_nano").is_null() | (difference.abs() > allowed)).alias("flagged"))
    # The causes price the differing calls again under variant sheets: only those, so a sheet that agrees
    # costs one pricing pass.
    explained = _explain(calls.filter("differs").with_columns(_cause(sheet, columns, tolerance).alias("cause")))
    groups = (groups.join(explained, on=["model", "day"], how="left")
              .with_columns(pl.when("flagged").then(pl.col("cause")).alias("cause"),
                            pl.when("flagged").then(pl.col("causes")).alias("causes"),
                            pl.when("flagged").then(pl.col("examples")).alias("examples"))
              .sort("model", "day"))
    return Reconciliation(groups=groups, tolerance=tolerance, calls_checked=calls.height,
                          calls_without_recorded_cost=without, prices=sheet.source)


def _explain(differing: pl.DataFrame) -> pl.DataFrame:
    """Per model and day: the main cause, the count per cause, and the example requests."""
    rows = []
    for (model, day), part in differing.partition_by(["model", "day"], as_dict=True, maintain_order=True).items():
        counts = dict(part.group_by("cause").len().iter_rows())
        ordered = sorted(counts.items(), key=lambda item: (-item[1], CAUSES.index(item[0])))
        examples = (part.with_columns(pl.col("difference_nano").abs().cast(pl.Float64).fill_null(float("inf"))
                                      .alias("_size"))
                    .sort(["_size", "request_id"], descending=[True, False])["request_id"].head(EXAMPLES).to_list())
        rows.append({"model": model, "day": day, "cause": ordered[0][0],
                     "causes": [{"cause": cause, "calls": count} for cause, count in ordered], "examples": examples})
    schema = {"model": pl.String, "day": pl.Date, "cause": pl.String,
              "causes": pl.List(pl.Struct({"cause": pl.String, "calls": pl.Int64})), "examples": pl.List(pl.String)}
    return pl.DataFrame(rows, schema=schema)
