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
names a sheet model differently from its LiteLLM key. A sheet model's name (as given to --models or --as)
must be printable: a newline, a byte-order mark or a zero-width space in it is refused, since no log's model
column would show it and no reader could type it back.

The sheet names the file as given on the command line, each sheet model's LiteLLM key and the price keys not
mapped in its header comments, with every control or invisible character written as an escape (`visible`):
a newline or a line separator (U+2028, a line break to YAML) in a key of the file would otherwise end the
comment and write YAML of its own. The command writes a sheet only after routesim's own loader has read it
back to exactly the prices imported (`check_loads_back`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
import tempfile
from decimal import Decimal
from pathlib import Path

import yaml

from simulator.core.errors import RoutesimError, visible
from simulator.core.prices import PER_MILLION, PriceSheet, load_prices

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
    """LiteLLM key -> its prices, of every entry that is a mapping (the file's `sample_spec` left out).

    Raises RoutesimError naming the file as given (`/dev/null`, not `null`) when it cannot be read, is empty,
    is not JSON or is not a mapping."""
    path = Path(path)
    shown = visible(str(path))
    fix = "pass LiteLLM's model_prices_and_context_window.json"
    try:
        text = path.read_text(encoding="utf-8-sig")
        if not text.strip():
            raise RoutesimError(f"{shown} is not JSON: it is empty", where=shown, fix=fix)
        content = json.loads(text, parse_constant=_not_a_number)
    except OSError as error:
        raise RoutesimError(f"cannot read {shown}: {error.strerror}", where=shown, fix=fix) from None
    except ValueError as error:  # UnicodeDecodeError included: a binary file given for the JSON one
        raise RoutesimError(f"{shown} is not JSON: {error}", where=shown, fix=fix) from None
    if not isinstance(content, dict):
        raise RoutesimError(f"{shown} does not map model names to prices", where=shown, fix=fix)
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
    """The LiteLLM key for `name`: the exact key, else the one key ending in '/name' (see the module doc).

    Raises RoutesimError for a name that matches no key (with suggestions) or several; names and keys in
    its message are shown with control characters escaped, so a key's newline cannot split the message."""
    if name in prices:
        return name
    prefixed = sorted(key for key in prices if key.endswith(f"/{name}"))
    if len(prefixed) == 1:
        return prefixed[0]
    where = visible(source)
    if prefixed:
        shown = ", ".join(map(visible, prefixed[:12])) + (f" and {len(prefixed) - 12} more" if len(prefixed) > 12
                                                          else "")
        raise RoutesimError(f"model '{visible(name)}' is ambiguous: {len(prefixed)} provider-prefixed keys match it: "
                            f"{shown}", where=where, fix=f"give the full key, e.g. --models {visible(prefixed[0])}, "
                            f"or --as {visible(name)}={visible(prefixed[0])} to keep the short name")
    close = difflib.get_close_matches(name, sorted(prices), n=SUGGESTIONS, cutoff=0.6)
    contains = sorted(key for key in prices if name.lower() in key.lower())[:SUGGESTIONS]
    suggestions = list(dict.fromkeys([*close, *contains]))[:SUGGESTIONS]
    quoted = ", ".join(f"'{visible(suggestion)}'" for suggestion in suggestions)  # repr() would double a backslash
    hint = f" Did you mean {quoted}?" if suggestions else ""
    raise RoutesimError(f"model '{visible(name)}' is not in {where}.{hint}", where=where,
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
        raise RoutesimError(f"model '{visible(key)}' has no usable per-token {' or '.join(missing)} "
                            f"(mode: {visible(str(mode))})", where=visible(source),
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
            raise RoutesimError(f"cannot read --as '{visible(value)}'", where="--as",
                                fix="write SHEET_NAME=LITELLM_KEY, e.g. --as flagship=gpt-4o")
        renames.append((name.strip(), key.strip()))
    return renames


def import_litellm(path: Path, as_of: dt.date, models: list[str], renames: list[tuple[str, str]] = ()
                   ) -> tuple[dict, dict[str, str], dict[str, list[str]]]:
    """A price sheet (as a mapping, ready to dump as YAML) for `models` and `renames` as of `as_of`, the
    LiteLLM key each sheet model was priced from, and per sheet model the price keys not mapped."""
    prices = read_litellm(path)
    source = str(path)
    wanted = [(name, name, "--models") for name in models] + [(name, key, "--as") for name, key in renames]
    if not wanted:
        raise RoutesimError("no models to import", where="--models", fix="e.g. --models gpt-4o,gpt-4o-mini")
    sheet: dict[str, list[dict]] = {}
    keys: dict[str, str] = {}
    unmapped: dict[str, list[str]] = {}
    for sheet_name, name, option in wanted:
        if visible(sheet_name) != sheet_name:
            # Quoted, YAML would hold such a name, but no log's model column shows it and no reader can type it
            # back: a scenario would price nothing under it. The LiteLLM key itself may hold anything.
            raise RoutesimError(f"the sheet model name '{visible(sheet_name)}' has a control or invisible character",
                                where=option, fix=f"give it a printable name with --as NAME=KEY (and leave the key "
                                f"out of --models), KEY being the LiteLLM key '{visible(name)}' as the file has it")
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
    """The sheet as YAML text under a header of comments naming `path` as given, each sheet model's LiteLLM
    key and its price keys not mapped.

    Every string from the input is written through `visible`: a newline, carriage return, NEL or line
    separator (all line breaks to YAML) in a key would end its comment and start YAML of the key's own."""
    header = [f"# Imported from LiteLLM's {visible(str(path))} by `routesim prices import-litellm`, as of {as_of}.",
              "# USD per million tokens. Sheet model: LiteLLM key (price keys not mapped)."]
    header += [f"#   {visible(name)}: {visible(key)}"
               + (f" (not mapped: {visible(', '.join(unmapped[name]))})" if unmapped.get(name) else "")
               for name, key in keys.items()]
    return "\n".join(header) + "\n" + yaml.dump(sheet, Dumper=_NoAliases, sort_keys=False)


def check_loads_back(text: str, sheet: dict, destination: str) -> None:
    """Refuses (RoutesimError) a rendered sheet that routesim's own loader (`load_prices`) does not read back
    as exactly `sheet` (`{"models": ...}`, as `import_litellm` returns it): nothing in the header comments or
    the YAML may add a key, change a name or alter a price. Called before anything is written to
    `destination` (the output as the message names it: a path, or stdout), so a failure leaves it as it was."""
    expected = PriceSheet.model_validate(sheet).model_dump(exclude={"source"})
    # load_prices reads a file: the text goes through the same reading (encoding, size and YAML limits) as
    # the written sheet will when a scenario names it.
    with tempfile.TemporaryDirectory(prefix="routesim-litellm-") as folder:
        written = Path(folder) / "sheet.yaml"
        written.write_text(text, encoding="utf-8")
        try:
            loaded = load_prices(written).model_dump(exclude={"source"})
        except RoutesimError as error:
            problem = f"does not load back: {error.what}"
        else:
            problem = None if loaded == expected else "loads back to other prices than those imported"
    if problem:
        raise RoutesimError(f"the sheet made {problem}; nothing was written", where=visible(destination),
                            fix="this is a bug in routesim: please report it; meanwhile import the models one at a "
                                "time and leave out the one whose key or price keys hold unusual characters")


class _NoAliases(yaml.SafeDumper):
    """Writes a date shared by several entries out each time instead of as a YAML anchor."""

    def ignore_aliases(self, data) -> bool:
        return True
