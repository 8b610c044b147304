"""Price sheets from LiteLLM's `model_prices_and_context_window.json`.

LiteLLM lists USD per token per model key (`gpt-4o`, `azure/gpt-4o`, `anthropic.claude-...`). The import
writes, for each chosen model, one entry effective from the given date, converted to USD per million
tokens as our sheets hold them. The conversion is done in decimal on the numbers as written in the file
(2.5e-06 becomes 2.5, not 2.4999999999999996). Every price key is read as KIND[_above_1hr][_above_<N>k_tokens]
[_batches|_flex|_priority] (KEY below):
- KIND: `input_cost_per_token` -> input, `output_cost_per_token` -> output, `cache_read_input_token_cost`
  (and DeepSeek's `input_cost_per_token_cache_hit`) -> cached_input, `cache_creation_input_token_cost` ->
  cache_write_input (`_above_1hr`: cache_write_1h_input), `output_cost_per_reasoning_token` ->
  reasoning_output;
- `_above_<N>k_tokens` (32k, 128k, 200k, 256k, 272k, 512k, ...): a context tier above N x 1000 input tokens;
- `_batches`, `_flex`, `_priority`: that service tier's absolute prices;
- `tiered_pricing` lists (`range: [lo, hi]`, each with its own per-token prices): the range from 0 is the
  base, every other one a context tier above `lo`.
A rate set needs its input and output prices; the keys of a set without them, and every other price key
(per query, per image, per second, audio, `_above_12hr` writes, ...), are listed per model as not mapped.

Names: a model is looked up by its exact key; a bare name (no provider prefix) that is not a key matches
the keys that end in `/NAME`: one such key is used, several are ambiguous and listed. `--as NAME=KEY`
names a sheet model differently from its LiteLLM key.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
from decimal import Decimal
from pathlib import Path

import yaml

from simulator.core.errors import RoutesimError
from simulator.core.prices import PER_MILLION, PriceSheet

INPUT, OUTPUT = "input_cost_per_token", "output_cost_per_token"
KINDS = {"input_cost_per_token": "input", "output_cost_per_token": "output",
         "cache_read_input_token_cost": "cached_input", "input_cost_per_token_cache_hit": "cached_input",
         "cache_creation_input_token_cost": "cache_write_input", "output_cost_per_reasoning_token": "reasoning_output"}
KEY = re.compile(r"(?P<kind>" + "|".join(sorted(KINDS, key=len, reverse=True)) + r")(?P<hour>_above_1hr)?"
                 r"(?:_above_(?P<thousands>\d+)k_tokens)?(?:_(?P<service>batches|flex|priority))?")
SERVICES = {"batches": "batch", "flex": "flex", "priority": "priority"}
STANDARD = "standard"
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


def _rate_sets(values: dict) -> tuple[dict[tuple[str, int], dict[str, tuple[str, float]]], list[str]]:
    """(service tier, above_input_tokens) -> kind -> (LiteLLM key, USD per million), and the price keys
    that fit no rate set."""
    sets: dict[tuple[str, int], dict[str, tuple[str, float]]] = {}
    unmapped = []
    for key, value in values.items():
        if key == "tiered_pricing":
            unmapped += _tiered(value, sets)
            continue
        if "cost" not in key:
            continue
        match = KEY.fullmatch(key)
        if match is None or not _price(value) or (match["hour"] and match["kind"] != "cache_creation_input_token_cost"):
            unmapped.append(key)
            continue
        kind = "cache_write_1h_input" if match["hour"] else KINDS[match["kind"]]
        place = (SERVICES.get(match["service"], STANDARD), int(match["thousands"] or 0) * 1000)
        sets.setdefault(place, {})[kind] = (key, per_million(value))
    return sets, unmapped


def _tiered(tiers, sets: dict) -> list[str]:
    """LiteLLM's `tiered_pricing` ranges into context tiers; keys set explicitly elsewhere win."""
    if not isinstance(tiers, list):
        return ["tiered_pricing"]
    unmapped = []
    for index, tier in enumerate(tiers):
        bounds = tier.get("range") if isinstance(tier, dict) else None
        if not (isinstance(bounds, list) and bounds and _price(bounds[0])):
            unmapped.append(f"tiered_pricing[{index}]")
            continue
        rates = sets.setdefault((STANDARD, int(bounds[0])), {})
        for key, value in tier.items():
            if key == "range":
                continue
            if key in KINDS and _price(value):
                rates.setdefault(KINDS[key], (f"tiered_pricing[{index}].{key}", per_million(value)))
            else:
                unmapped.append(f"tiered_pricing[{index}].{key}")
    return unmapped


def entry_for(key: str, values: dict, as_of: dt.date, source: str) -> tuple[dict, list[str]]:
    """The sheet entry of one LiteLLM model, and its price keys left unmapped (see the module docstring)."""
    sets, unmapped = _rate_sets(values)
    base = sets.get((STANDARD, 0), {})
    missing = [field for field, kind in ((INPUT, "input"), (OUTPUT, "output")) if kind not in base]
    if missing:
        mode = values.get("mode", "unknown")
        raise RoutesimError(f"model '{key}' has no usable per-token {' or '.join(missing)} (mode: {mode})", where=source,
                            fix="pick a model priced per token (a chat or completion model)")
    entry: dict = {"effective_from": as_of, **_prices(base)}
    services: dict[str, dict] = {}
    for (service, above), rates in sorted(sets.items(), key=lambda item: (item[0][0] != STANDARD, item[0])):
        if (service, above) == (STANDARD, 0):
            continue
        complete = "input" in rates and "output" in rates
        home = entry if service == STANDARD else services.get(service)
        if above == 0 and complete:
            services[service] = _prices(rates)
        elif above and complete and home is not None:
            home.setdefault("tiers", []).append({"above_input_tokens": above, **_prices(rates)})
        else:  # an incomplete set, or a service tier's context tier without the service tier's base prices
            unmapped += [name for name, _ in rates.values()]
    entry |= {service: services[service] for service in SERVICES.values() if service in services}
    return entry, sorted(unmapped)


def _prices(rates: dict[str, tuple[str, float]]) -> dict[str, float]:
    order = ("input", "cached_input", "cache_write_input", "cache_write_1h_input", "output", "reasoning_output")
    return {kind: rates[kind][1] for kind in order if kind in rates}


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
                   ) -> tuple[dict, dict[str, str], dict[str, list[str]]]:
    """A price sheet (as a mapping, ready to dump as YAML) for `models` and `renames` as of `as_of`, the
    LiteLLM key each sheet model was priced from, and per sheet model the price keys not mapped."""
    prices = read_litellm(path)
    source = str(path)
    wanted = [(name, name) for name in models] + list(renames)
    if not wanted:
        raise RoutesimError("no models to import", where="--models", fix="e.g. --models gpt-4o,gpt-4o-mini")
    sheet: dict[str, list[dict]] = {}
    keys: dict[str, str] = {}
    unmapped: dict[str, list[str]] = {}
    for sheet_name, name in wanted:
        if sheet_name in sheet:
            raise RoutesimError(f"model '{sheet_name}' is named twice", where="--models / --as",
                                fix="name each sheet model once")
        key = resolve(name, prices, source)
        entry, unmapped[sheet_name] = entry_for(key, prices[key], as_of, source)
        sheet[sheet_name] = [entry]
        keys[sheet_name] = key
    PriceSheet.model_validate({"models": sheet})  # the same checks as loading the written file
    return {"models": sheet}, keys, unmapped


def render_sheet(sheet: dict, path: Path, as_of: dt.date, keys: dict[str, str], unmapped: dict[str, list[str]]) -> str:
    named = f"{Path(path).parent.name}/{Path(path).name}"  # the folder names the version of a packaged file
    header = [f"# Imported from LiteLLM's {named} by `routesim prices import-litellm`, as of {as_of}.",
              "# USD per million tokens. Sheet model: LiteLLM key (price keys not mapped)."]
    header += [f"#   {name}: {key}" + (f" (not mapped: {', '.join(unmapped[name])})" if unmapped.get(name) else "")
               for name, key in keys.items()]
    return "\n".join(header) + "\n" + yaml.dump(sheet, Dumper=_NoAliases, sort_keys=False)


class _NoAliases(yaml.SafeDumper):
    """Writes a date shared by several entries out each time instead of as a YAML anchor."""

    def ignore_aliases(self, data) -> bool:
        return True
