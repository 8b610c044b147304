"""Dated price sheets, and the pricing of calls.

A sheet lists, per model, entries in force from 00:00 UTC of `effective_from` until the next entry of the
same model. Prices are USD per million tokens; `cached_input` defaults to `input`; `per_request` is a
flat fee per call. A call is priced by the entry in force at its request's timestamp, with its cached
input tokens at the cached price and the rest of its input at the input price. A model the sheet does not
list is priced by the `cost_usd` recorded when the call ran.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.core.errors import RoutesimError
from simulator.core.validation import from_pydantic_error, read_yaml

PER_MILLION = 1_000_000

SOURCE_SHEET = "sheet"
SOURCE_RECORDED = "recorded"
SOURCE_CHECKER = "checker"
PRICE_SOURCE = pl.Enum([SOURCE_SHEET, SOURCE_RECORDED, SOURCE_CHECKER])


class PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    effective_from: dt.date
    input: float = Field(ge=0, description="USD per million input tokens not served from cache")
    cached_input: float | None = Field(default=None, ge=0, description="USD per million cached input tokens")
    output: float = Field(ge=0, description="USD per million output tokens")
    per_request: float = Field(default=0.0, ge=0, description="USD per call")

    @property
    def cached_input_price(self) -> float:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def per_token_input(self) -> float:
        return self.input / PER_MILLION

    @property
    def per_token_cached_input(self) -> float:
        return self.cached_input_price / PER_MILLION

    @property
    def per_token_output(self) -> float:
        return self.output / PER_MILLION

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
    """USD per call from the sheet, null where the sheet has no entry in force for the call.

    Reads `model`, `ts`, `input_tokens`, `cached_input_tokens` (null counts as 0) and `output_tokens`.
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
            # Per-token prices are divided once, in Python: polars may turn a column's division by a
            # constant into a multiplication by its reciprocal, which would make a call's cost depend on
            # how many calls are priced together.
            cost = (uncached * entry.per_token_input + cached * entry.per_token_cached_input
                    + output * entry.per_token_output + entry.per_request)
            condition = (pl.col(model) == name) & (pl.col(ts) >= entry.starts)
            priced = pl.when(condition).then(cost) if priced is None else priced.when(condition).then(cost)
    return priced.otherwise(None).cast(pl.Float64)


def price_calls(calls: pl.DataFrame, sheet: PriceSheet | None, *, recorded: str = "recorded_cost_usd",
                into: str = "cost_usd", source_into: str = "price_source") -> pl.DataFrame:
    """Adds `into` (sheet price, else the `recorded` column) and `source_into` (which) to a frame of calls.

    Raises when a call can be priced by neither: a listed model with no entry in force at the call's
    time, or an unlisted model without a recorded cost.
    """
    listed = list(sheet.models) if sheet else []
    from_sheet = pl.col("model").is_in(listed)
    priced = calls.with_columns(
        pl.when(from_sheet).then(price_expr(sheet)).otherwise(pl.col(recorded)).alias(into),
        pl.when(from_sheet).then(pl.lit(SOURCE_SHEET)).otherwise(pl.lit(SOURCE_RECORDED))
        .cast(PRICE_SOURCE).alias(source_into),
    )
    unpriced = priced.filter(pl.col(into).is_null())
    if unpriced.height:
        _raise_unpriced(unpriced, sheet)
    return priced


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

