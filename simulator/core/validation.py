"""Reading YAML inputs and turning pydantic's errors into messages that say where and how to fix."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from simulator.core.errors import RoutesimError, did_you_mean, visible
from simulator.core.limits import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES




class _YamlLimit(Exception):
    def __init__(self, what: str, mark=None, fix: str = "keep the file small and plainly nested; "
                 "see 'Reliability' in the README for the limits"):
        self.what = what
        self.mark = mark
        self.fix = fix


class _Checks:
    """What both loaders share: the expansion (and height) limit on the composed document, duplicate keys
    refused and impossible dates (2026-02-30) reported at their line."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _count_nodes(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _YamlLimit(f"has the key '{visible(str(key))}' twice, on lines {seen[key]} and {line}",
                                     key_node.start_mark, fix="write each key once: the second would silently "
                                     "replace the first")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node):
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            raise _YamlLimit(f"has '{node.value}', which is not a real date or time", node.start_mark,
                             fix="write a date that exists, as YYYY-MM-DD") from None


class _Loader(_Checks, yaml.SafeLoader):
    """PyYAML's safe loader with a depth limit, an expansion limit, duplicate keys refused and impossible
    dates (2026-02-30) reported at their line."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YamlLimit(f"is nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


class _FastLoader(_Checks, yaml.CSafeLoader):
    """The same loader on libyaml's C parser and composer (PyYAML's CSafeLoader), about six times faster on a
    policy of thousands of rules. Its composer recurses in C without a depth check, so `read_yaml` uses it
    only when `_shallow` bounds the nesting first; the depth and expansion limits are then checked on the
    composed document (`_count_nodes`), and anything it refuses is read again by `_Loader`, whose
    messages (with their lines) are the ones reported."""


_FastLoader.add_constructor("tag:yaml.org,2002:timestamp", _FastLoader.construct_yaml_timestamp)

# Leading characters of a line that may open nested block values: indentation and the sequence and
# complex-key indicators ("- - - x" nests three sequences on one line).
_BLOCK_PREFIX = re.compile(r"^[ \t?-]*", re.M)


def _shallow(text: str) -> bool:
    """Whether every block value of `text` starts within MAX_YAML_DEPTH columns: each nested block value
    starts further right than its parent (or, as a sequence under a mapping key, at most one level at the
    key's column), so block nesting stays under about 2 x MAX_YAML_DEPTH levels; flow nesting is bounded by
    `_check_flow_depth`. Multi-line scalars indented further only make this answer no, never wrongly yes."""
    return max((len(match) for match in _BLOCK_PREFIX.findall(text)), default=0) <= MAX_YAML_DEPTH


def _count_nodes(root) -> None:
    """Counts the values of the document with every alias expanded, without expanding them, and refuses a
    document nested more than MAX_YAML_DEPTH levels (its height, aliases followed)."""
    sizes: dict[int, tuple[int, int]] = {}
    pending: set[int] = set()

    def size(node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in pending:
            raise _YamlLimit("has an alias that refers to a value containing it", node.start_mark)
        pending.add(key)
        if isinstance(node, yaml.SequenceNode):
            children = [size(child) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            children = [size(child) for pair in node.value for child in pair]
        else:
            children = []
        total = 1 + sum(count for count, _ in children)
        height = 1 + max((levels for _, levels in children), default=0)
        pending.discard(key)
        if total > MAX_YAML_NODES:
            raise _YamlLimit(f"expands to more than {MAX_YAML_NODES:,} values (aliases repeat what they name)",
                             node.start_mark)
        if height > MAX_YAML_DEPTH:
            raise _YamlLimit(f"is nested more than {MAX_YAML_DEPTH} levels deep", node.start_mark)
        sizes[key] = total, height
        return total, height

    size(root)


def _check_flow_depth(text: str) -> None:
    """Refuses deeply nested [ and { before PyYAML's scanner sees them: it keeps a possible key open per
    level and rechecks them all at every token, so 50,000 levels take seconds before any limit applies.
    Brackets inside quoted text are counted too, so this bound is loose: far above any real file's."""
    depth = 0
    for index, char in enumerate(text):
        if char in "[{":
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _YamlLimit(f"is nested more than {MAX_YAML_DEPTH} levels deep",
                                 yaml.Mark("", index, text.count("\n", 0, index), 0, None, None))
        elif char in "]}":
            depth = max(depth - 1, 0)


def read_yaml(path: Path) -> Any:
    """Reads a YAML input (UTF-8, a byte-order mark allowed) within the limits above.

    Raises RoutesimError for a missing file, a folder, a file that is not YAML, a duplicate key (naming
    both lines), an impossible date, and a file beyond the size, depth or expansion limits.
    """
    from simulator.core.outputs import note_input

    path = Path(path)
    if path.is_dir():
        raise RoutesimError(f"{path} is a folder, but a YAML file is expected here", where=str(path),
                            fix="give the path of the .yaml file (a scenario or price sheet), not of a folder")
    if path.exists() and not path.is_file():
        raise RoutesimError(f"{path} is not a regular file (a device, FIFO or socket)", where=str(path),
                            fix="give the path of the .yaml file")
    if not path.is_file():
        folder = path.resolve().parent
        raise RoutesimError(f"file not found: {path}", where=str(path),
                            fix=f"check the path: the folder {folder} does not exist" if not folder.is_dir()
                            else "check the path (a relative path is read from the current folder)")
    note_input(path)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise RoutesimError(f"the file is larger than {MAX_YAML_BYTES // 2**20} MiB", where=str(path),
                                fix="a scenario or price sheet is a small text file; check the path")
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        if path.suffix.lower() in (".parquet", ".arrow", ".ipc", ".feather"):  # a data file given for a YAML file
            raise RoutesimError(f"{path.name} is a data file, but a YAML file (a scenario or price sheet) is expected "
                                "here", where=str(path),
                                fix="give a scenario file whose 'data' key names the folder holding it (see "
                                    "scenarios/ for examples); `routesim validate` checks a data folder") from None
        raise RoutesimError("not a UTF-8 text file", where=str(path),
                            fix="give a scenario or price sheet (.yaml), saved as UTF-8") from None
    except OSError as error:
        raise RoutesimError(f"cannot read the file: {error.strerror}", where=str(path),
                            fix="check the path and its permissions") from None
    try:
        _check_flow_depth(text)
        if _shallow(text):
            try:
                return yaml.load(text, Loader=_FastLoader)  # noqa: S506 - a CSafeLoader subclass
            except (_YamlLimit, yaml.YAMLError, RecursionError):
                pass  # read again below, for the Python loader's message
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _YamlLimit as error:
        where = f"{path}, line {error.mark.line + 1}" if error.mark else str(path)
        raise RoutesimError(f"the YAML file {error.what}", where=where, fix=error.fix) from None
    except RecursionError:
        raise RoutesimError(f"the YAML is nested more than {MAX_YAML_DEPTH} levels deep", where=str(path),
                            fix="keep the file plainly nested") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise RoutesimError(f"not valid YAML: {problem}", where=where,
                            fix="check indentation and quoting (predicates with ':' need quotes)") from None


def _key_path(location: tuple[Any, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _fields_at(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    """The keys allowed where an unknown key was found, to suggest the nearest one."""
    current: Any = model
    for part in location[:-1]:
        field = getattr(current, "model_fields", {}).get(part) if isinstance(part, str) else None
        if field is not None:  # other parts are list positions or dict keys such as a model's name
            current = _model_in(field.annotation)
    return list(getattr(current, "model_fields", {})) if current else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_in(argument)
        if found:
            return found
    return None


def _as_written(value) -> str:
    """A rejected value as the YAML had it (`{start: 2026-11-23, end: 2026-11-16}`), not Python's repr
    (`{'start': datetime.date(2026, 11, 23), ...}`), which a scenario's author never wrote."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_as_written(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_as_written(item) for item in value) + "]"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    return str(value)


# A scenario's name becomes a folder of saved results, so it may not climb out of one or hide in it.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"
# What a string that misses a pattern should have been, said in words rather than as the regular expression.
PATTERN_WORDS = {NAME_PATTERN: NAME_RULE}


def _number(value) -> str:
    """A bound as a user writes it: 1 rather than 1.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _items(count: int) -> str:
    return "one item" if count == 1 else f"{count} items"


def _characters(count: int) -> str:
    return "one character" if count == 1 else f"{count} characters"


_DATE = "must be a date, YYYY-MM-DD"
_MAPPING = "must be a mapping of keys (KEY: VALUE lines, or {KEY: VALUE})"
_LIST = "must be a list ([A, B], or '- ' lines)"
# What a value must be, in words, per pydantic error type (from its `ctx`), instead of pydantic's wording
# ("Tuple should have at least 1 item after validation, not 0", "Input should be less than 1").
PLAIN: dict[str, Any] = {
    "too_short": lambda ctx: f"must hold at least {_items(ctx['min_length'])}",
    "too_long": lambda ctx: f"may hold at most {_items(ctx['max_length'])}",
    "less_than": lambda ctx: f"must be below {_number(ctx['lt'])}",
    "less_than_equal": lambda ctx: f"must be at most {_number(ctx['le'])}",
    "greater_than": lambda ctx: f"must be above {_number(ctx['gt'])}",
    "greater_than_equal": lambda ctx: f"must be at least {_number(ctx['ge'])}",
    "multiple_of": lambda ctx: f"must be a multiple of {_number(ctx['multiple_of'])}",
    "finite_number": lambda ctx: "must be a finite number",
    "int_type": lambda ctx: "must be a whole number", "int_parsing": lambda ctx: "must be a whole number",
    "int_from_float": lambda ctx: "must be a whole number",
    "float_type": lambda ctx: "must be a number", "float_parsing": lambda ctx: "must be a number",
    "bool_type": lambda ctx: "must be true or false", "bool_parsing": lambda ctx: "must be true or false",
    "string_type": lambda ctx: "must be text",
    "string_too_short": lambda ctx: "must not be empty" if ctx["min_length"] == 1 else (
        f"must be at least {_characters(ctx['min_length'])} long"),
    "string_too_long": lambda ctx: f"may be at most {_characters(ctx['max_length'])} long",
    "literal_error": lambda ctx: f"must be {ctx['expected']}", "enum": lambda ctx: f"must be {ctx['expected']}",
    "dict_type": lambda ctx: _MAPPING, "model_type": lambda ctx: _MAPPING, "mapping_type": lambda ctx: _MAPPING,
    "list_type": lambda ctx: _LIST, "tuple_type": lambda ctx: _LIST, "set_type": lambda ctx: _LIST,
    "date_type": lambda ctx: _DATE, "date_parsing": lambda ctx: _DATE,
    "date_from_datetime_parsing": lambda ctx: _DATE, "date_from_datetime_inexact": lambda ctx: _DATE,
}
# The README section that documents each kind of file, for the fix line of its schema errors.
README_SECTIONS = {"Scenario": "Scenario reference", "QualityBar": "Scenario reference",
                   "PriceSheet": "Price sheets"}


def plain_rule(item: dict) -> str | None:
    """What a value must be, in words (PLAIN), for one pydantic error item (`ValidationError.errors()`);
    None for a kind PLAIN does not word."""
    kind = item.get("type")
    return PLAIN[kind](item.get("ctx") or {}) if kind in PLAIN else None


def _problem(item: dict, model: type[BaseModel]) -> str:
    """One pydantic error as a sentence that names its key."""
    location = tuple(part for part in item["loc"] if not (isinstance(part, str) and "[" in part))
    key = _key_path(location)
    kind, context = item["type"], item.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _fields_at(model, location)
        hint = did_you_mean(str(location[-1]), allowed)
        return f"unknown key '{key}'.{hint} Allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"missing key '{key}'"
    if "input" in item and item["input"] is None:  # `key:` with nothing after it, which YAML reads as null
        return f"key '{key}' has no value: write one after the colon"
    got = _as_written(item.get("input"))
    if kind == "string_pattern_mismatch" and context.get("pattern") in PATTERN_WORDS:
        return f"key '{key}' must be {PATTERN_WORDS[context['pattern']]} (got {got})"
    if (rule := plain_rule(item)) is not None:
        return f"key '{key}' {rule} (got {got})"
    message = item["msg"].removeprefix("Value error, ")
    return f"key '{key}'{' ' if message.startswith(('must ', 'may ')) else ': '}{message} (got {got})"


def from_pydantic_error(error: ValidationError, model: type[BaseModel], *, file: Path | str) -> RoutesimError:
    """A RoutesimError listing every problem of a file that `model` refused, each naming its key, with a fix
    that points at the README section documenting that kind of file."""
    problems = [_problem(item, model) for item in error.errors()]
    section = README_SECTIONS.get(model.__name__)
    guide = f"'{section}' in the README lists every key and the values it takes" if section else "see the README"
    return RoutesimError(f"{file} is not valid:\n  - " + "\n  - ".join(problems), where=str(file),
                         fix=f"correct the key{'s' if len(problems) > 1 else ''} above; {guide}")
