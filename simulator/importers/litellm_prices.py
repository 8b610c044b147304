"""Price sheets from LiteLLM's `model_prices_and_context_window.json`.

LiteLLM lists USD per token per model key (`gpt-4o`, `azure/gpt-4o`, `anthropic.claude-...`). The import
keeps, for each chosen model, `input_cost_per_token`, `output_cost_per_token` and
`cache_read_input_token_cost` (the cached-input price), converted to USD per million tokens as our sheets
hold them, in one entry effective from the given date. The conversion is done in decimal on the numbers as
written in the file (2.5e-06 becomes 2.5, not 2.4999999999999996). Tiered prices (`..._above_200k_tokens`),
batch, priority and flex prices and cache-write prices have no place in our sheet and are not imported.

Names: a model is looked up by its exact key; a bare name (no provider prefix) that is not a key matches
the keys that end in `/NAME`: one such key is used, several are ambiguous and listed. `--as NAME=KEY`
names a sheet model differently from its LiteLLM key.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
from decimal import Decimal
from pathlib import Path

import yaml

from simulator.core.errors import RoutesimError
from simulator.core.prices import PER_MILLION, PriceSheet

INPUT, OUTPUT, CACHED = "input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost"
NOT_A_MODEL = {"sample_spec"}
SUGGESTIONS = 5


def read_litellm(path: Path) -> dict[str, dict]:
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8-sig"), parse_constant=_not_a_number)
    except OSError as error:
        raise RoutesimError(f"cannot read {path}: {error.strerror}", where=str(path),
                            fix="pass LiteLLM's model_prices_and_context_window.json") from None
    except ValueError as error:
        raise RoutesimError(f"{path.name} is not JSON: {error}", where=str(path),
                            fix="pass LiteLLM's model_prices_and_context_window.json") from None
    if not isinstance(content, dict):
        raise RoutesimError(f"{path.name} does not map model names to prices", where=str(path),
                            fix="pass LiteLLM's model_prices_and_context_window.json")
    return {key: value for key, value in content.items() if key not in NOT_A_MODEL and isinstance(value, dict)}


def _not_a_number(word: str):
    raise ValueError(f"{word} is not a price (JSON has no NaN or Infinity)")


def per_million(per_token) -> float:
    """USD per token as written in the file, times one million, in decimal arithmetic.

    Raises RoutesimError for a value that is not a finite number >= 0."""
    try:
        value = float(per_token)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(per_token, bool) or not 0 <= value < math.inf:
        raise RoutesimError(f"the price {per_token!r} is not a finite number >= 0",
                            fix="correct the price in the LiteLLM file, or leave the model out")
    return float((Decimal(repr(value)) * PER_MILLION).normalize())


def resolve(name: str, prices: dict[str, dict], source: str) -> str:
    """The LiteLLM key for `name`: the exact key, else the one key ending in '/name' (see the module doc)."""
    if name in prices:
        return name
    prefixed = sorted(key for key in prices if key.endswith(f"/{name}"))
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        shown = ", ".join(prefixed[:12]) + (f" and {len(prefixed) - 12} more" if len(prefixed) > 12 else "")
        raise RoutesimError(f"model '{name}' is ambiguous: {len(prefixed)} provider-prefixed keys match it: {shown}",
                            where=source, fix=f"give the full key, e.g. --models {prefixed[0]}, or "
                            f"--as {name}={prefixed[0]} to keep the short name")
    close = difflib.get_close_matches(name, sorted(prices), n=SUGGESTIONS, cutoff=0.6)
    contains = sorted(key for key in prices if name.lower() in key.lower())[:SUGGESTIONS]
    suggestions = list(dict.fromkeys([*close, *contains]))[:SUGGESTIONS]
    hint = f" Did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
    raise RoutesimError(f"model '{name}' is not in {Path(source).name}.{hint}", where=source,
                        fix="use a key of the file as written (with its provider prefix where it has one)")


def _price(value) -> bool:
    """A usable per-token price: a finite number >= 0 (JSON true is no price)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def entry_for(key: str, values: dict, as_of: dt.date, source: str) -> dict:
    missing = [field for field in (INPUT, OUTPUT) if not _price(values.get(field))]
    if missing:
        mode = values.get("mode", "unknown")
        raise RoutesimError(f"model '{key}' has no usable per-token {' or '.join(missing)} (mode: {mode})", where=source,
                            fix="pick a model priced per token (a chat or completion model)")
    entry = {"effective_from": as_of, "input": per_million(values[INPUT])}
    if _price(values.get(CACHED)):
        entry["cached_input"] = per_million(values[CACHED])
    entry["output"] = per_million(values[OUTPUT])
    return entry


def parse_renames(values: list[str]) -> list[tuple[str, str]]:
    renames = []
    for value in values:
        name, sep, key = value.partition("=")
        if not sep or not name.strip() or not key.strip():
            raise RoutesimError(f"cannot read --as {value!r}", where="--as",
                                fix="write SHEET_NAME=LITELLM_KEY, e.g. --as flagship=gpt-4o")
        renames.append((name.strip(), key.strip()))
    return renames


def import_litellm(path: Path, as_of: dt.date, models: list[str], renames: list[tuple[str, str]] = ()
                   ) -> tuple[dict, dict[str, str]]:
    """A price sheet (as a mapping, ready to dump as YAML) for `models` and `renames` as of `as_of`, and the
    LiteLLM key each sheet model was priced from."""
    prices = read_litellm(path)
    source = str(path)
    wanted = [(name, name) for name in models] + list(renames)
    if not wanted:
        raise RoutesimError("no models to import", where="--models", fix="e.g. --models gpt-4o,gpt-4o-mini")
    sheet: dict[str, list[dict]] = {}
    keys: dict[str, str] = {}
    for sheet_name, name in wanted:
        if sheet_name in sheet:
            raise RoutesimError(f"model '{sheet_name}' is named twice", where="--models / --as",
                                fix="name each sheet model once")
        key = resolve(name, prices, source)
        sheet[sheet_name] = [entry_for(key, prices[key], as_of, source)]
        keys[sheet_name] = key
    PriceSheet.model_validate({"models": sheet})  # the same checks as loading the written file
    return {"models": sheet}, keys


def render_sheet(sheet: dict, path: Path, as_of: dt.date, keys: dict[str, str]) -> str:
    header = [f"# Imported from LiteLLM's {Path(path).name} by `routesim prices import-litellm`, as of {as_of}.",
              "# USD per million tokens; tiered, batch, priority and cache-write prices are not imported."]
    header += [f"#   {name}: {key}" for name, key in keys.items()]
    return "\n".join(header) + "\n" + yaml.dump(sheet, Dumper=_NoAliases, sort_keys=False)


class _NoAliases(yaml.SafeDumper):
    """Writes a date shared by several entries out each time instead of as a YAML anchor."""

    def ignore_aliases(self, data) -> bool:
        return True
