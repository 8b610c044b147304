"""Dated price sheets, and the pricing of calls.

A sheet lists, per model, entries in force from 00:00 UTC of `effective_from` until the next entry of the
same model. Prices are USD per million tokens; `cached_input` defaults to `input`; `per_request` is a
flat fee per call. A call is priced by the entry in force at its request's timestamp, with its cached
input tokens at the cached price and the rest of its input at the input price. A model the sheet does not
list is priced by the `cost_usd` recorded when the call ran.

Money is int64 nano-dollars (1e-9 USD): each call's cost is rounded half to even to a whole nano-dollar
once, here, so that every later sum is exact and does not depend on the order or grouping of its terms
(threads, chunks, shards). Outputs show dollars, converted from the exact integer sums.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.core.errors import RoutesimError
from simulator.core.money import NANO_PER_USD
from simulator.core.validation import from_pydantic_error, read_yaml

PER_MILLION = 1_000_000
# Largest per-call cost in nano-dollars whose float64 evaluation is exact to the unit: 2**53 nano-dollars is
# about 9 million USD per call.
MAX_CALL_NANO_USD = 2**53

SOURCE_SHEET = "sheet"
SOURCE_RECORDED = "recorded"
SOURCE_CHECKER = "checker"
PRICE_SOURCE = pl.Enum([SOURCE_SHEET, SOURCE_RECORDED, SOURCE_CHECKER])


class PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    effective_from: dt.date
    input: float = Field(ge=0, description="USD per million input tokens not served from cache")
    cached_input: float | None = Field(default=None, ge=0, description="USD per million cached input tokens")
    output: float = Field(ge=0, description="USD per million output tokens")
    per_request: float = Field(default=0.0, ge=0, description="USD per call")

    @property
    def cached_input_price(self) -> float:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def nano_per_token_input(self) -> float:
        return nano_per_token(self.input)

    @property
    def nano_per_token_cached_input(self) -> float:
        return nano_per_token(self.cached_input_price)

    @property
    def nano_per_token_output(self) -> float:
        return nano_per_token(self.output)

    @property
    def nano_per_request(self) -> float:
        return float(Decimal(repr(self.per_request)) * NANO_PER_USD)

    @property
    def starts(self) -> dt.datetime:
        return dt.datetime.combine(self.effective_from, dt.time(), tzinfo=dt.UTC)


class PriceSheet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, tuple[PriceEntry, ...]]
    source: str = ""

    @field_validator("models")
    @classmethod
    def _entries_sorted_and_distinct(cls, models: dict[str, tuple[PriceEntry, ...]]):
        ordered = {}
        for name, entries in models.items():
            if not entries:
                raise ValueError(f"model '{name}' has no price entries")
            dates = [entry.effective_from for entry in entries]
            if len(set(dates)) != len(dates):
                raise ValueError(f"model '{name}' has two entries with the same effective_from")
            ordered[name] = tuple(sorted(entries, key=lambda entry: entry.effective_from))
        return ordered


def nano_per_token(usd_per_million: float) -> float:
    """Nano-dollars per token of a price in USD per million tokens: the price as written, times 1,000.

    Scaled in decimal from the price's shortest repr, so $0.15 per million is exactly 150.0 (float
    arithmetic would give 150.00000000000003 for 0.15 * 1000).
    """
    return float(Decimal(repr(usd_per_million)) * (NANO_PER_USD // PER_MILLION))


def nano_usd_expr(usd: pl.Expr) -> pl.Expr:
    """A USD column as Int64 nano-dollars, rounded half to even, as `to_nano_usd` does for one value."""
    return round_half_even(usd * NANO_PER_USD)


def round_half_even(value: pl.Expr) -> pl.Expr:
    """A Float64 expression rounded to the nearest integer, ties to even, as Int64 (null stays null).

    Written out rather than left to `Expr.round`, whose tie rule has changed between polars versions.
    `value - floor(value)` is exact for magnitudes below 2**52, so the tie test is exact.
    """
    floor = value.floor()
    fraction = value - floor
    odd = (floor % 2) == 1
    up = (fraction > 0.5) | ((fraction == 0.5) & odd)
    return (floor + up.cast(pl.Float64)).cast(pl.Int64)


def usd(nano_usd: pl.Expr) -> pl.Expr:
    """Int64 nano-dollars as Float64 USD (null stays null): the one division that turns exact money into
    dollars, correctly rounded, so 4,200,000 nano-dollars show as 0.0042.

    numpy divides; polars divides a column by a constant by multiplying by its reciprocal, which is off by
    an ulp for about a third of values (0.004200000000000001).
    """
    return nano_usd.map_batches(_nano_to_usd, return_dtype=pl.Float64, is_elementwise=True)


def _nano_to_usd(nano_usd: pl.Series) -> pl.Series:
    dollars = nano_usd.cast(pl.Float64).to_numpy() / NANO_PER_USD
    return pl.Series(nano_usd.name, dollars, dtype=pl.Float64, nan_to_null=True)


def load_prices(path: Path) -> PriceSheet:
    raw = read_yaml(path)
    if raw is not None and not isinstance(raw, dict):
        raise RoutesimError("a price sheet must be a YAML mapping with a 'models' key", where=str(path),
                            fix="see 'Price sheets' in the README")
    try:
        return PriceSheet.model_validate({**(raw or {}), "source": str(path)})
    except ValidationError as error:
        raise from_pydantic_error(error, PriceSheet, file=path) from None


def price_expr(sheet: PriceSheet | None, *, model: str = "model", ts: str = "ts") -> pl.Expr:
    """Nano-dollars per call from the sheet (Float64, before rounding), null where the sheet has no entry
    in force for the call; `price_calls` rounds it.

    Reads `model`, `ts`, `input_tokens`, `cached_input_tokens` (null counts as 0) and `output_tokens`.
    The cost is `uncached * input + cached * cached_input + output_tokens * output + per_request` with
    every price in nano-dollars (per token, and per call), evaluated in float64 in that order. With
    per-token prices of a few significant digits (any price written in whole thousandths of a dollar per
    million tokens) every term is an exact float, so the rounding in `price_calls` sees the exact cost.
    """
    if sheet is None or not sheet.models:
        return pl.lit(None, dtype=pl.Float64)
    cached = pl.col("cached_input_tokens").fill_null(0).cast(pl.Float64)
    uncached = pl.col("input_tokens").cast(pl.Float64) - cached
    output = pl.col("output_tokens").cast(pl.Float64)
    priced: pl.Expr | None = None
    for name, entries in sheet.models.items():
        # Newest first: the first entry whose start is not after ts is the one in force.
        for entry in reversed(entries):
            cost = (uncached * entry.nano_per_token_input + cached * entry.nano_per_token_cached_input
                    + output * entry.nano_per_token_output + entry.nano_per_request)
            condition = (pl.col(model) == name) & (pl.col(ts) >= entry.starts)
            priced = pl.when(condition).then(cost) if priced is None else priced.when(condition).then(cost)
    return priced.otherwise(None).cast(pl.Float64)


def price_calls(calls: pl.DataFrame, sheet: PriceSheet | None, *, recorded: str = "recorded_cost_usd",
                into: str = "cost_nano_usd", source_into: str = "price_source") -> pl.DataFrame:
    """Adds `into` (Int64 nano-dollars: the sheet's price, else the `recorded` USD column converted) and
    `source_into` (which priced it) to a frame of calls.

    Each call is rounded half to even to a whole nano-dollar here and only here. Raises when a call can be
    priced by neither (a listed model with no entry in force at the call's time, or an unlisted model
    without a recorded cost), and when a call would cost 2**53 nano-dollars (about 9 million USD) or more.
    """
    listed = list(sheet.models) if sheet else []
    from_sheet = pl.col("model").is_in(listed)
    exact = pl.when(from_sheet).then(price_expr(sheet)).otherwise(pl.col(recorded) * NANO_PER_USD)
    priced = calls.with_columns(
        exact.alias(into),
        pl.when(from_sheet).then(pl.lit(SOURCE_SHEET)).otherwise(pl.lit(SOURCE_RECORDED))
        .cast(PRICE_SOURCE).alias(source_into),
    )
    unpriced = priced.filter(pl.col(into).is_null())
    if unpriced.height:
        _raise_unpriced(unpriced, sheet)
    too_large = priced.filter(pl.col(into).abs() >= MAX_CALL_NANO_USD)
    if too_large.height:
        row = too_large.row(0, named=True)
        raise RoutesimError(f"{too_large.height} call(s) would cost 9 million USD or more each "
                            f"(e.g. model '{row['model']}' for request {row.get('request_id', '?')})",
                            where=sheet.source if sheet else "outcomes.parquet, column cost_usd",
                            fix="check the price sheet's units (USD per million tokens) and the recorded costs")
    return priced.with_columns(round_half_even(pl.col(into)).alias(into))


def _raise_unpriced(unpriced: pl.DataFrame, sheet: PriceSheet | None) -> None:
    counts = unpriced.group_by("model").agg(pl.len().alias("calls"), pl.col("ts").min().alias("first"),
                                           pl.col("request_id").first().alias("example")).sort("model")
    lines = []
    for row in counts.iter_rows(named=True):
        if sheet and row["model"] in sheet.models:
            earliest = sheet.models[row["model"]][0].effective_from
            reason = (f"no price entry in force at {row['first']:%Y-%m-%d %H:%M} UTC "
                      f"(the earliest is effective_from {earliest})")
        else:
            reason = "not in the price sheet and no recorded cost_usd"
        lines.append(f"model '{row['model']}': {row['calls']} call(s), {reason}; e.g. request {row['example']}")
    where = sheet.source if sheet else "scenario key 'prices' (none given)"
    raise RoutesimError("some calls cannot be priced:\n  - " + "\n  - ".join(lines), where=where,
                        fix="add the model (or an earlier entry) to the price sheet, or record cost_usd")

