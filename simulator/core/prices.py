"""Dated price sheets, and the pricing of calls.

A sheet lists, per model, entries in force from 00:00 UTC of `effective_from` until the next entry of the
same model. Prices are USD per million tokens of each kind (uncached input, cache reads, cache writes at
the standard and the 1-hour rate, output, reasoning), with a flat `per_request` fee. An entry may hold
context tiers (`above_input_tokens`: every token of a longer call at the tier's prices), absolute prices
per service tier (`batch`, `flex`, `priority`, each with its own context tiers) and a negotiated
`discount`; a sheet may hold a `discount` for every entry without its own. A call is priced by the entry
in force at its request's timestamp (price_expr gives the formula). A model the sheet does not list, and
a call whose usage is missing (zero tokens, a positive recorded cost), is priced by the `cost_usd`
recorded when the call ran.

Money is int64 nano-dollars (1e-9 USD): each call's cost is rounded half to even to a whole nano-dollar
once, here, so that every later sum is exact and does not depend on the order or grouping of its terms
(threads, chunks, shards). Outputs show dollars, converted from the exact integer sums.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.core.errors import Origin, RoutesimError
from simulator.core.money import NANO_PER_USD, usd_per_array
from simulator.core.validation import from_pydantic_error, read_yaml

PER_MILLION = 1_000_000
# Largest per-call cost in nano-dollars whose float64 evaluation is exact to the unit: 2**53 nano-dollars is
# about 9 million USD per call.
MAX_CALL_NANO_USD = 2**53

SOURCE_SHEET = "sheet"
SOURCE_RECORDED = "recorded"
SOURCE_CHECKER = "checker"
SOURCE_FIXED = "fixed"  # a router overhead's fixed cost per decision
SOURCE_MIXED = "mixed"  # a model's calls priced by more than one source (summaries only, never a call's)
PRICE_SOURCE = pl.Enum([SOURCE_SHEET, SOURCE_RECORDED, SOURCE_CHECKER, SOURCE_FIXED])

# The call kind of a prompt-cache loss (simulator.core.sessions): a model call's cached input tokens billed
# again at the difference between its input and cached_input rates, because the policy switched its session
# to a model the previous turn did not call. Its rows carry the call's model; cost lines (by_model, the
# report's cost by model, price sources) show them together under CACHE_LOSS_LINE.
CACHE_LOSS = "cache_loss"
CACHE_LOSS_LINE = "prompt-cache loss"


def cost_line(kind: str = "kind", model: str = "model") -> pl.Expr:
    """The cost line a call row is shown under: its model (or checker, or overhead), or CACHE_LOSS_LINE for
    a prompt-cache loss."""
    return pl.when(pl.col(kind) == CACHE_LOSS).then(pl.lit(CACHE_LOSS_LINE)).otherwise(pl.col(model))


SERVICE_STANDARD = "standard"
PRICED_SERVICE_TIERS = ("batch", "flex", "priority")  # each may carry its own absolute prices


class Rates(BaseModel):
    """USD per million tokens of each kind. A kind left out falls back within the same set: cached input,
    and cache writes at the standard rate, to `input`; 1-hour cache writes to `cache_write_input`;
    reasoning to `output`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    input: float = Field(ge=0, description="USD per million input tokens neither read from nor written to the cache")
    cached_input: float | None = Field(default=None, ge=0, description="USD per million cache-read input tokens")
    cache_write_input: float | None = Field(default=None, ge=0,
                                            description="USD per million tokens written to the cache (5-minute)")
    cache_write_1h_input: float | None = Field(default=None, ge=0,
                                               description="USD per million tokens written to the 1-hour cache")
    output: float = Field(ge=0, description="USD per million output tokens")
    reasoning_output: float | None = Field(default=None, ge=0, description="USD per million reasoning tokens")

    @property
    def cached_input_price(self) -> float:
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_price(self) -> float:
        return self.input if self.cache_write_input is None else self.cache_write_input

    @property
    def cache_write_1h_price(self) -> float:
        return self.cache_write_price if self.cache_write_1h_input is None else self.cache_write_1h_input

    @property
    def reasoning_price(self) -> float:
        return self.output if self.reasoning_output is None else self.reasoning_output

    def per_million(self) -> dict[str, float]:
        """Every kind's resolved price, USD per million tokens (TOKEN_KINDS order)."""
        return {"input": self.input, "cached_input": self.cached_input_price, "cache_write_input": self.cache_write_price,
                "cache_write_1h_input": self.cache_write_1h_price, "output": self.output,
                "reasoning_output": self.reasoning_price}

    def _scaled(self, factor: float) -> dict:
        return {name: None if value is None else value * factor
                for name, value in self.model_dump(include=set(Rates.model_fields)).items()}


class ContextTier(Rates):
    """Prices for every token of a call whose inclusive input_tokens exceed `above_input_tokens`."""

    above_input_tokens: int = Field(gt=0, description="the tier applies when input_tokens is above this")

    def scaled(self, factor: float) -> ContextTier:
        return self.model_copy(update=self._scaled(factor))


def _sorted_tiers(tiers: tuple[ContextTier, ...]) -> tuple[ContextTier, ...]:
    bounds = [tier.above_input_tokens for tier in tiers]
    if len(set(bounds)) != len(bounds):
        raise ValueError("two tiers have the same above_input_tokens")
    return tuple(sorted(tiers, key=lambda tier: tier.above_input_tokens))


class ServiceTierPrices(Rates):
    """Absolute prices of a service tier (batch, flex, priority), with its own context tiers."""

    tiers: tuple[ContextTier, ...] = ()

    @field_validator("tiers")
    @classmethod
    def _tiers_distinct(cls, tiers: tuple[ContextTier, ...]) -> tuple[ContextTier, ...]:
        return _sorted_tiers(tiers)

    def scaled(self, factor: float) -> ServiceTierPrices:
        return self.model_copy(update={**self._scaled(factor), "tiers": tuple(t.scaled(factor) for t in self.tiers)})


class PriceEntry(Rates):
    """One dated entry of a model: standard prices, context tiers, service tiers and a negotiated discount."""

    effective_from: dt.date
    per_request: float = Field(default=0.0, ge=0, description="USD per call")
    tiers: tuple[ContextTier, ...] = ()
    batch: ServiceTierPrices | None = None
    flex: ServiceTierPrices | None = None
    priority: ServiceTierPrices | None = None
    discount: float | None = Field(default=None, ge=0, lt=1,
                                   description="negotiated share off every price of this entry (0.2 = 20% off)")

    @field_validator("tiers")
    @classmethod
    def _tiers_distinct(cls, tiers: tuple[ContextTier, ...]) -> tuple[ContextTier, ...]:
        return _sorted_tiers(tiers)

    @property
    def nano_per_request(self) -> float:
        return float(Decimal(repr(self.per_request)) * NANO_PER_USD)

    @property
    def starts(self) -> dt.datetime:
        return dt.datetime.combine(self.effective_from, dt.time(), tzinfo=dt.UTC)

    def service(self, tier: str) -> Rates | None:
        """The rate set of a service tier (standard: the entry itself); None where the entry has none."""
        return self if tier == SERVICE_STANDARD else getattr(self, tier)

    def rate_sets(self) -> list[tuple[str, int, Rates]]:
        """(service tier, above_input_tokens, rates) of every rate set, the base of each service tier at 0."""
        sets = []
        for tier in (SERVICE_STANDARD, *PRICED_SERVICE_TIERS):
            base = self.service(tier)
            if base is not None:
                sets.append((tier, 0, base))
                sets += [(tier, context.above_input_tokens, context) for context in base.tiers]
        return sets

    def scaled(self, factor: float) -> PriceEntry:
        """Every price of the entry (per-token, per-request, tiers, service tiers) times `factor`."""
        return self.model_copy(update={
            **self._scaled(factor), "per_request": self.per_request * factor,
            "tiers": tuple(tier.scaled(factor) for tier in self.tiers),
            **{name: getattr(self, name).scaled(factor) for name in PRICED_SERVICE_TIERS if getattr(self, name)}})


class PriceSheet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    models: dict[str, tuple[PriceEntry, ...]]
    discount: float = Field(default=0.0, ge=0, lt=1, description="negotiated share off every price of the sheet")
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

    def discount_of(self, entry: PriceEntry) -> float:
        """The entry's own discount, else the sheet's."""
        return self.discount if entry.discount is None else entry.discount

    def only(self, model: str) -> "PriceSheet":
        """The sheet with `model`'s entries alone (none when it is not listed), pricing that model's calls as
        the whole sheet does: a frame of one model's calls then evaluates its entries only, not every
        model's (price_calls)."""
        return self.model_copy(update={"models": {model: self.models[model]} if model in self.models else {}})


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

    The tie rule is named (`Expr.round`'s default has changed between polars versions); to whole numbers it
    is IEEE 754's roundTiesToEven, exact for every float (tests/test_money.py checks it against a written-out
    floor-and-fraction rule and numpy's `rint`). One pass: the written-out rule took four times as long.
    """
    return value.round(0, mode="half_to_even").cast(pl.Int64)


def usd_per_request(nano_usd: pl.Expr) -> pl.Expr:
    """An aggregation: USD per row (Float64) of Int64 nano-dollars, as the `cost_per_request_usd` metric
    defines it (simulator.core.metrics): the exact integer sum over the rows divided by the number of rows,
    correctly rounded once (simulator.core.money.usd_per). Averaging per-row USD floats instead is off by
    ulps (0.021750000000000002 for 0.02175), and so is dividing the dollars by the count
    (0.00048719999999999997 for 0.0004872). Works in `select` and in `group_by(...).agg`; null for no rows."""
    return (pl.struct(nano_usd.sum().alias("nano_usd"), pl.len().alias("count"))
            .map_batches(_usd_per, return_dtype=pl.Float64, returns_scalar=True))


def usd_per_row(nano_usd: pl.Expr, count: pl.Expr, per: int = 1) -> pl.Expr:
    """Elementwise USD per `per` units of integer nano-dollar sums `nano_usd` over counts `count`, each
    correctly rounded once as `usd_per_request` (null where the count is 0), e.g. a cost per request per
    time bucket, or per 1,000 requests (`per=1000`)."""
    return (pl.struct(nano_usd.alias("nano_usd"), count.alias("count"))
            .map_batches(lambda sums: _usd_per(sums, per), return_dtype=pl.Float64, is_elementwise=True))


def _usd_per(sums: pl.Series, per: int = 1) -> pl.Series:
    nano_usd = sums.struct.field("nano_usd").cast(pl.Float64).to_numpy()
    count = sums.struct.field("count").cast(pl.Float64).to_numpy()
    found = np.where(count > 0, usd_per_array(nano_usd, np.maximum(count, 1.0), per), np.nan)
    return pl.Series(sums.name, found, dtype=pl.Float64, nan_to_null=True)


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


def load_prices(path: Path, origin: Origin | None = None) -> PriceSheet:
    """Read and validate a price sheet. Raises RoutesimError; when the file is missing or not a regular file
    and `origin` (the scenario key that names it) is given, the error says where to fix it: that key."""
    path = Path(path)
    if origin is not None and not path.is_file():
        kind = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "not found"
        raise origin.error(f"price sheet {kind}: {origin.shown(path)}", "a price-sheet YAML file (relative to its "
                           "folder), or leave it out when every outcome records its cost_usd")
    try:
        raw = read_yaml(path)
        if not isinstance(raw, dict) or (origin is not None and "models" not in raw):
            raise RoutesimError("a price sheet must be a YAML mapping with a 'models' key", where=str(path),
                                fix="see 'Price sheets' in the README")
    except RoutesimError as error:
        if origin is None:
            raise
        # Not a price sheet at all (a data file, the scenario itself): the mistake is likely the key that names it.
        raise origin.error(f"{origin.shown(path)} is not a price sheet: {error.what}", "a price-sheet YAML file "
                           "(relative to its folder); if it is the sheet, give it a 'models' mapping (see 'Price "
                           "sheets' in the README)") from None
    try:
        return PriceSheet.model_validate({**(raw or {}), "source": str(path)})
    except ValidationError as error:
        raise from_pydantic_error(error, PriceSheet, file=path) from None


TOKEN_KINDS = ("input", "cached_input", "cache_write_input", "cache_write_1h_input", "output", "reasoning_output")
# Optional token columns: null (or absent) counts as 0.
OPTIONAL_TOKENS = ("cached_input_tokens", "cache_write_input_tokens", "cache_write_1h_input_tokens",
                   "reasoning_output_tokens")


def token_columns(names) -> list[str]:
    """The outcome columns pricing reads, of those a file has (`names`): the token counts, the optional
    ones only where present."""
    return ["input_tokens", "cached_input_tokens", "output_tokens",
            *[name for name in OPTIONAL_TOKENS[1:] if name in names]]


def _tokens(frame_columns: set[str], name: str) -> pl.Expr:
    return pl.col(name).fill_null(0).cast(pl.Float64) if name in frame_columns else pl.lit(0.0)


def token_counts(columns: set[str]) -> dict[str, pl.Expr]:
    """Tokens of each kind (TOKEN_KINDS) of a call: the cache reads and writes are parts of input_tokens,
    reasoning is part of output_tokens, so `input` and `output` are what is left."""
    cached, write, write_1h, reasoning = (_tokens(columns, name) for name in OPTIONAL_TOKENS)
    return {"input": pl.col("input_tokens").cast(pl.Float64) - cached - write - write_1h, "cached_input": cached,
            "cache_write_input": write, "cache_write_1h_input": write_1h,
            "output": pl.col("output_tokens").cast(pl.Float64) - reasoning, "reasoning_output": reasoning}


def rate_set_expr(sheet: PriceSheet, columns: set[str], *, model: str = "model", ts: str = "ts",
                  tier: str = "service_tier") -> tuple[pl.Expr, list]:
    """The index of the rate set pricing each call, and the list of (entry, rates) it indexes.

    A call's rate set: the entry of its model in force at `ts`, its `service_tier` (null or absent:
    standard; the column `tier`), and the highest context tier whose above_input_tokens its input_tokens exceed (else the
    service tier's base prices). Null where the sheet has no such entry or service tier.
    """
    service = (pl.col(tier).cast(pl.String).fill_null(SERVICE_STANDARD) if tier in columns
               else pl.lit(SERVICE_STANDARD))
    sets: list[tuple[PriceEntry, Rates]] = []
    chosen: pl.Expr | None = None
    for name, entry, entry_sets in _entries_newest_first(sheet):
        in_force = (pl.col(model) == name) & (pl.col(ts) >= entry.starts)
        for tier, above, rates in entry_sets:
            condition = in_force & (service == tier)
            if above:
                condition = condition & (pl.col("input_tokens") > above)
            sets.append((entry, rates))
            index = pl.lit(len(sets) - 1, pl.Int64)
            chosen = pl.when(condition).then(index) if chosen is None else chosen.when(condition).then(index)
        # A service tier this entry does not price leaves the call unpriced rather than falling to an older entry.
        stop = pl.lit(None, pl.Int64)
        chosen = chosen.when(in_force).then(stop)
    return (pl.lit(None, pl.Int64) if chosen is None else chosen.otherwise(None)), sets


def _entries_newest_first(sheet: PriceSheet):
    """(model, entry, its rate sets highest context tier first) per model, newest entry first (the first
    entry started by a call's ts is in force): the order rate_set_expr numbers the rate sets in."""
    for name, entries in sheet.models.items():
        for entry in reversed(entries):
            yield name, entry, list(reversed(entry.rate_sets()))


def context_thresholds(sheet: PriceSheet) -> list[tuple[int, ...]]:
    """Per rate set, in rate_set_expr's numbering: the above_input_tokens of every context tier its entry
    prices for the set's service tier (ascending; empty where that service tier has no context tiers)."""
    return [tuple(sorted(bound for other, bound, _ in entry_sets if other == tier and bound))
            for _, _, entry_sets in _entries_newest_first(sheet) for tier, _, _ in entry_sets]


def _rate_sets(sheet: PriceSheet, columns: set[str], *, model: str, ts: str, tier: str,
               rate_set: str | None) -> tuple[pl.Expr, list]:
    """rate_set_expr's index and list, or with `rate_set` (a column holding that index) the column and the
    list alone: building the long when-chain costs more than pricing a small frame."""
    if rate_set is None:
        return rate_set_expr(sheet, columns, model=model, ts=ts, tier=tier)
    return pl.col(rate_set), [(entry, rates) for _, entry, entry_sets in _entries_newest_first(sheet)
                              for _, _, rates in entry_sets]


def _per_rate_set(index: pl.Expr, values: list[float]) -> pl.Expr:
    """`values[index]` per row (Float64), where `index` (a rate set's number) is not null; the caller nulls
    the rest (_where_priced). Where every rate set has the same value (one model's calls priced by its one
    entry: engine._Run.sheet_of) it is that value, with no lookup per row."""
    if len(set(values)) == 1:
        return pl.lit(values[0], pl.Float64)
    return index.replace_strict(list(range(len(values))), values, default=None, return_dtype=pl.Float64)


def _where_priced(index: pl.Expr, value: pl.Expr) -> pl.Expr:
    """`value` where the call has a rate set (`index` not null), else null."""
    return pl.when(index.is_not_null()).then(value).cast(pl.Float64)


def price_expr(sheet: PriceSheet | None, columns: set[str] | None = None, *, model: str = "model",
               ts: str = "ts", tier: str = "service_tier", rate_set: str | None = None) -> pl.Expr:
    """Nano-dollars per call from the sheet (Float64, before rounding), null where the sheet has no entry
    (or service tier) in force for the call; `price_calls` rounds it.

    Reads `model`, `ts`, `input_tokens`, `output_tokens` and, where `columns` (the frame's column names)
    has them, the optional token columns (null counts as 0) and `service_tier`. The formula, with every
    price of the call's rate set (see rate_set_expr) in nano-dollars per token:
    ((input - cached - writes - 1h writes) x input + cached x cached_input + writes x cache_write_input
    + 1h writes x cache_write_1h_input + (output - reasoning) x output + reasoning x reasoning_output
    + per_request) x (1 - discount), evaluated in float64 in that order. With per-token prices of a few
    significant digits (any price written in whole thousandths of a dollar per million tokens) every term
    before the discount is an exact float, so the rounding in `price_calls` sees the exact cost.
    `rate_set` names a column already holding rate_set_expr's index (computed once instead of in each
    lookup: planning the long when-chain once per lookup costs far more than pricing a small frame).
    """
    if sheet is None or not sheet.models:
        return pl.lit(None, dtype=pl.Float64)
    columns = set(columns or ())
    index, sets = _rate_sets(sheet, columns, model=model, ts=ts, tier=tier, rate_set=rate_set)
    counts = token_counts(columns)

    def lookup(values: list[float]) -> pl.Expr:
        return _per_rate_set(index, values)

    # Per-token prices are scaled once, in decimal (nano_per_token): polars may turn a column's division by
    # a constant into a multiplication by its reciprocal, which would make a call's cost depend on how many
    # calls are priced together.
    cost = pl.lit(0.0)
    for kind in TOKEN_KINDS:
        cost = cost + counts[kind] * lookup([nano_per_token(rates.per_million()[kind]) for _, rates in sets])
    cost = cost + lookup([entry.nano_per_request for entry, _ in sets])
    keep = lookup([float(1 - Decimal(repr(sheet.discount_of(entry)))) for entry, _ in sets])
    return _where_priced(index, cost * keep)


def cache_loss_expr(sheet: PriceSheet | None, columns: set[str] | None = None, *, model: str = "model",
                    ts: str = "ts", tier: str = "service_tier", rate_set: str | None = None) -> pl.Expr:
    """Nano-dollars (Float64, before rounding) a call's cached input tokens cost more when billed at its rate
    set's `input` price instead of `cached_input` (see price_expr for the rate set and the arguments):
    cached_input_tokens x (input - cached_input) x (1 - discount), the difference of the two prices taken in
    decimal, so it is exact for prices written in whole thousandths of a dollar per million. Null where the
    sheet has no entry for the call."""
    if sheet is None or not sheet.models:
        return pl.lit(None, dtype=pl.Float64)
    columns = set(columns or ())
    index, sets = _rate_sets(sheet, columns, model=model, ts=ts, tier=tier, rate_set=rate_set)

    def lookup(values: list[float]) -> pl.Expr:
        return _per_rate_set(index, values)

    scale = Decimal(NANO_PER_USD // PER_MILLION)
    difference = [float((Decimal(repr(rates.input)) - Decimal(repr(rates.cached_input_price))) * scale)
                  for _, rates in sets]
    keep = lookup([float(1 - Decimal(repr(sheet.discount_of(entry)))) for entry, _ in sets])
    return _where_priced(index, token_counts(columns)["cached_input"] * lookup(difference) * keep)


def usage_missing(recorded: str = "recorded_cost_usd") -> pl.Expr:
    """A call with zero tokens and a positive recorded cost: its usage was lost (a stream without usage),
    not zero, so it is priced at its recorded cost under any sheet."""
    return ((pl.col("input_tokens") == 0) & (pl.col("output_tokens") == 0) & (pl.col(recorded) > 0)).fill_null(False)


def refuse_costly_calls(calls: pl.DataFrame, column: str, where: str, fix: str) -> None:
    """Raises when a call's cost in `column` (Float64 nano-dollars, before rounding) is 2**53 nano-dollars
    (about 9 million USD) or more, or no number: beyond it int64 money would no longer be exact."""
    costly = ~(pl.col(column).abs() < MAX_CALL_NANO_USD)  # NaN and infinities too
    # Counted first: filtering every column of 10M calls to find none costs more than the check.
    if not calls.select(costly.any()).item():
        return
    too_large = calls.filter(costly)
    if too_large.height:
        row = too_large.row(0, named=True)
        raise RoutesimError(f"{too_large.height} call(s) would cost 9 million USD or more each, or no number "
                            f"(e.g. model '{row['model']}' for request {row.get('request_id', '?')})",
                            where=where, fix=fix)


def price_calls(calls: pl.DataFrame, sheet: PriceSheet | None, *, recorded: str = "recorded_cost_usd",
                into: str = "cost_nano_usd", source_into: str = "price_source",
                tier: str = "service_tier", cache_loss_into: str | None = None,
                blame: tuple[str, str] | None = None, sheet_from: str = "scenario key 'prices'",
                asked_by: Callable[[str, str], list[tuple[str, str]]] | None = None) -> pl.DataFrame:
    """Adds `into` (Int64 nano-dollars: the sheet's price, else the `recorded` USD column converted) and
    `source_into` (which priced it) to a frame of calls; with `cache_loss_into`, also what the call would
    cost more if its prompt cache were lost (cache_loss_expr, Int64 nano-dollars, rounded as a call is; null
    for a call the sheet does not price, whose recorded cost cannot be split into input and cached rates).

    A listed model's call is priced by the sheet (price_expr, on the service tier in column `tier`),
    except a call whose usage is missing (usage_missing), priced at its recorded cost. Each call is rounded
    half to even to a whole nano-dollar here and only here. Raises when a call can be priced by neither (a
    listed model with no entry or service tier in force at the call's time, or an unlisted model without a
    recorded cost), and when a call would cost 2**53 nano-dollars (about 9 million USD) or more: that error
    names the sheet, or `blame` (where, fix) when the prices are not the sheet's own (a what-if's factors).
    Without a sheet, the unpriced calls' error points at `sheet_from`, where the command takes one.
    `asked_by(model, service tier)`: the (place, key) pairs where the caller asked for that tier (a scenario's
    file and keys), which the error of calls whose entry in force has no prices on their tier names.
    """
    listed = list(sheet.models) if sheet else []
    from_sheet = pl.col("model").is_in(listed) & ~usage_missing(recorded)
    rate_set = "__rate_set"
    columns = set(calls.columns)
    with_sets = calls.with_columns(rate_set_expr(sheet, columns, tier=tier)[0].alias(rate_set)) if listed else calls
    exact = (pl.when(from_sheet).then(price_expr(sheet, columns, tier=tier, rate_set=rate_set))
             .otherwise(pl.col(recorded) * NANO_PER_USD))
    loss = ([pl.when(from_sheet).then(cache_loss_expr(sheet, columns, tier=tier, rate_set=rate_set))
             .otherwise(None).alias(cache_loss_into)] if cache_loss_into else [])
    priced = with_sets.with_columns(
        exact.alias(into),
        pl.when(from_sheet).then(pl.lit(SOURCE_SHEET)).otherwise(pl.lit(SOURCE_RECORDED))
        .cast(PRICE_SOURCE).alias(source_into),
        *loss,
    ).drop(rate_set, strict=False)
    if priced.select(pl.col(into).is_null().any()).item():
        _raise_unpriced(priced.filter(pl.col(into).is_null()), sheet, tier, sheet_from, asked_by)
    refuse_costly_calls(priced, into, *(blame or (
        sheet.source if sheet else "outcomes.parquet, column cost_usd",
        "check the price sheet's units (USD per million tokens) and the recorded costs")))
    return priced.with_columns(round_half_even(pl.col(into)).alias(into),
                               *([round_half_even(pl.col(cache_loss_into)).alias(cache_loss_into)] if loss else []))


def price_sources_of(calls: pl.DataFrame) -> dict[str, str]:
    """Model (cost line: cost_line) -> the source that priced its calls (see price_sources_from)."""
    # Grouping hashes the columns as they are; casting first would build a string per call. The streaming
    # engine groups 20M calls in a fraction of the in-memory engine's time (found in any order: sorted below).
    found = calls.lazy().group_by("kind", "model", "price_source").len().collect(engine="streaming").iter_rows()
    pairs = ((CACHE_LOSS_LINE if kind == CACHE_LOSS else model, str(source)) for kind, model, source, _ in found)
    return price_sources_from(pairs)


def price_sources_from(pairs) -> dict[str, str]:
    """Model -> the source that priced its calls, from (model, price source) pairs: that source when one
    priced them all (`sheet`, `recorded`, `checker` or `fixed`), else `mixed` (the sheet priced some and the
    rest had no usage and were priced at their recorded cost; `calls_priced_at_recorded_cost` counts those)."""
    sources: dict[str, set[str]] = {}
    for model, source in pairs:
        sources.setdefault(model, set()).add(source)
    return {model: found.pop() if len(found) == 1 else SOURCE_MIXED for model, found in sorted(sources.items())}


def _entries_in_force(entries: tuple[PriceEntry, ...], times: pl.Series) -> list[PriceEntry]:
    """The entries (sorted by effective_from) in force at any of `times` (UTC timestamps)."""
    days = sorted(times.dt.date().unique().drop_nulls().to_list())
    found: dict[dt.date, PriceEntry] = {}
    for day in days:
        in_force = [entry for entry in entries if entry.effective_from <= day]
        if in_force:
            found.setdefault(in_force[-1].effective_from, in_force[-1])
    return list(found.values())


def _raise_unpriced(unpriced: pl.DataFrame, sheet: PriceSheet | None, tier: str, sheet_from: str,
                    asked_by: Callable[[str, str], list[tuple[str, str]]] | None = None) -> None:
    counts = unpriced.group_by("model").agg(pl.len().alias("calls"), pl.col("ts").min().alias("first"),
                                           pl.col("request_id").first().alias("example")).sort("model")
    lines = []
    services = (unpriced.filter(pl.col(tier).is_not_null() & (pl.col(tier) != SERVICE_STANDARD)).group_by("model")
                .agg(pl.col(tier).cast(pl.String).unique().sort()) if tier in unpriced.columns
                else pl.DataFrame({"model": [], "service_tier": []}, schema={"model": pl.String,
                                                                           "service_tier": pl.List(pl.String)}))
    tiers_of = dict(services.iter_rows())
    # Each kind of gap has its own fix; the fix line gives the one every listed model shares, else points at them.
    fixes = {"tier": "add the missing service tier's prices under its key in the entry in force, or run those calls "
                     "on standard",
             "date": "add an entry in force at those calls' dates (an earlier effective_from), or record cost_usd",
             "model": "add the model to the price sheet, or record cost_usd"}
    kinds = set()
    asked: list[str] = []  # each entry lacking a tier, and where the scenario asked for that tier
    for row in counts.iter_rows(named=True):
        model, wanted = row["model"], tiers_of.get(row["model"])
        entries = _entries_in_force(sheet.models[model], unpriced.filter(pl.col("model") == model)["ts"]) if (
            sheet and model in sheet.models and wanted) else []
        if entries:
            places = [place for service in wanted for place in (asked_by(model, service) if asked_by else [])]
            asked += [f"{sheet.source}, key 'models.{model}'", *(where for where, _ in places)]
            keys = [key for _, key in places]
            named = "/".join(wanted)
            dates = ", ".join(str(entry.effective_from) for entry in entries)
            several = len(entries) > 1
            priced = ", ".join(service for service in (SERVICE_STANDARD, *PRICED_SERVICE_TIERS)
                               if all(entry.service(service) is not None for entry in entries))
            kind, reason = "tier", (f"run on {named}{' by ' + ' and '.join(keys) if keys else ''}, but its price "
                                    f"entr{'ies' if several else 'y'} in force (effective_from {dates}) "
                                    f"{'have' if several else 'has'} no {named} prices")
            if counts.height == 1:  # a fix naming the entry and the keys
                fixes["tier"] = (f"add {named} prices (a '{wanted[0]}:' key with input and output) to {model}'s "
                                 f"entr{'ies' if several else 'y'} from {dates} in "
                                 f"{Path(sheet.source).name or 'the price sheet'}, or set "
                                 f"{' and '.join(keys) or 'the service_tier'} to a tier "
                                 f"{'they' if several else 'it'} price{'' if several else 's'} ({priced})")
        elif sheet and model in sheet.models:
            earliest = sheet.models[model][0].effective_from
            kind, reason = "date", (f"no price entry in force at {row['first']:%Y-%m-%d %H:%M} UTC "
                                    f"(the earliest is effective_from {earliest})")
        else:
            kind, reason = "model", "not in the price sheet and no recorded cost_usd"
        kinds.add(kind)
        lines.append(f"model '{model}': {row['calls']} call(s), {reason}; e.g. request {row['example']}")
    if sheet:
        # Calls on a tier their entry lacks: the entry and the scenario keys that asked for the tier.
        where = "; ".join(dict.fromkeys(asked)) if kinds == {"tier"} and asked else sheet.source
        fix = fixes[kinds.pop()] if len(kinds) == 1 else "see each model's line above"
    else:
        where, fix = f"{sheet_from} (none given)", f"name a price sheet with {sheet_from}, or record cost_usd"
    raise RoutesimError("some calls cannot be priced:\n  - " + "\n  - ".join(lines), where=where, fix=fix)

