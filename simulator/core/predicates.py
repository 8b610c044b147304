"""Scenario predicates: SQL boolean expressions over columns, checked then compiled to polars.

A predicate is parsed with sqlglot and every node is checked against an allow-list of pure expression
forms (comparisons, boolean logic, arithmetic, IN, BETWEEN, LIKE, IS NULL, CASE and a few scalar
functions). Anything else (subqueries, table functions such as read_csv, statements) is rejected before
polars sees it, so a scenario can never reach files or the network. A predicate that evaluates to NULL
counts as false.

The commonest rule, a column compared with one number or string (`input_tokens = 6000`,
`tier <> 'free'`), is recognised by a regular expression and needs no parse: its text can hold nothing
else, and a policy of thousands of such rules would otherwise spend most of its time in the parser.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import polars as pl
import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB

from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.limits import MAX_PREDICATE_CHARS, MAX_PREDICATE_NESTING

ALLOWED_NODES: tuple[type[exp.Expression], ...] = (
    exp.And, exp.Or, exp.Not, exp.Paren,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In, exp.Between, exp.Like, exp.ILike,
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg,
    exp.Case, exp.If, exp.Coalesce, exp.Lower, exp.Upper, exp.Length, exp.Abs, exp.Cast, exp.DataType,
)

# A column, a comparison and a number or a single-quoted string without backslashes, and nothing else.
SIMPLE_COMPARISON = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=|<>|!=|<=|>=|<|>)\s*"
                               r"(-?[0-9]+(?:\.[0-9]+)?|'(?:[^'\\]|'')*')\s*")

ALLOWED_FORMS = ("comparisons (= <> < <= > >=), AND/OR/NOT, + - * / %, IN (...), BETWEEN, LIKE/ILIKE, "
                 "IS [NOT] NULL, CASE WHEN, CAST, and the functions coalesce, lower, upper, length, abs")


@dataclass(frozen=True)
class Predicate:
    """A checked predicate: its text, where it came from, and the columns it reads."""

    text: str
    key: str
    columns: frozenset[str]
    # For `column = literal`: the column and the literal's value (int, float or str), so that many such
    # rules can be evaluated as one lookup; None for every other form.
    equals: tuple[str, int | float | str] | None = None
    # Predicates of one shape type-check alike: a column compared with a literal of one kind.
    shape: tuple | None = None
    # Columns read from earlier named plan steps, (step name, column): in `columns` and in `text` they
    # appear as the one column "STEP.COLUMN" (simulator.core.predicates.step_column).
    step_reads: frozenset[tuple[str, str]] = frozenset()

    @property
    def own_columns(self) -> frozenset[str]:
        """The columns read from the row itself, without those read from earlier steps."""
        return self.columns - {step_column(step, column) for step, column in self.step_reads}

    @property
    def base_columns(self) -> frozenset[str]:
        """Every data column read, from the row or from an earlier step (for the grade check)."""
        return self.own_columns | {column for _, column in self.step_reads}

    def compile(self) -> pl.Expr:
        """The polars expression; NULL results count as false."""
        return sql_expr(self.text).fill_null(False)

    def check_types(self, schema: dict[str, pl.DataType]) -> None:
        """Evaluates the predicate on no rows of `schema`: a comparison of mismatched types, or a result
        that is not true/false, fails here with the scenario key instead of in the middle of a replay."""
        check_types([self], schema)

    def _check_alone(self, schema: dict[str, pl.DataType]) -> None:
        empty = pl.DataFrame(schema={name: schema[name] for name in sorted(self.columns)})
        try:
            result = empty.select(pl.sql_expr(self.text).alias("result")).schema["result"]
        except pl.exceptions.PolarsError as error:
            reason = str(error).splitlines()[0]
            types = ", ".join(f"{name} is {schema[name]}" for name in sorted(self.columns))
            raise RoutesimError(f"predicate {self.text!r} cannot be evaluated: {reason}",
                                where=_where(self.key) + (f" ({types})" if types else ""),
                                fix="compare columns with values of their own type, e.g. numbers with numbers "
                                    "and timestamps with CAST('2026-11-16' AS TIMESTAMP)") from None
        if result not in (pl.Boolean, pl.Null):
            raise RoutesimError(f"predicate {self.text!r} gives {result} values, not true or false",
                                where=_where(self.key), fix="write a condition, e.g. \"confidence >= 0.7\"")


def _check_single_values(predicate: Predicate, schema: dict[str, pl.DataType]) -> None:
    """A predicate compares single values: a list or struct column would fail (or panic) only on the data."""
    for name in sorted(predicate.columns):
        dtype = schema[name]
        if dtype.is_nested() or dtype in (pl.Object, pl.Binary):
            raise RoutesimError(f"predicate {predicate.text!r} reads column '{name}', which holds {dtype} values; "
                                "predicates compare single values", where=_where(predicate.key),
                                fix=f"add a column of single values derived from '{name}' (a number, text, "
                                    "boolean or timestamp) and read that instead")


# Predicates type-checked per select on an empty frame: one select of many is far cheaper than many selects.
CHECKS_PER_SELECT = 512


def check_types(predicates: list[Predicate], schema: dict[str, pl.DataType]) -> None:
    """`Predicate.check_types` of every predicate, in a few selects over no rows instead of one each (a
    policy may have thousands of rules). A batch that fails is checked one by one, for the message."""
    # One of each shape stands for all of it: `input_tokens = 7` types as `input_tokens = 8` does.
    shapes: dict = {}
    for predicate in predicates:
        shapes.setdefault(predicate.shape or predicate.text, predicate)
    distinct = list(shapes.values())
    for predicate in distinct:
        _check_single_values(predicate, schema)
    for start in range(0, len(distinct), CHECKS_PER_SELECT):
        batch = distinct[start:start + CHECKS_PER_SELECT]
        read = sorted(set().union(*(predicate.columns for predicate in batch)))
        empty = pl.DataFrame(schema={name: schema[name] for name in read})
        try:
            results = empty.select(
                [expression.alias(str(index)) for index, expression in enumerate(sql_exprs(batch))]).schema
        except pl.exceptions.PolarsError:
            results = None
        for index, predicate in enumerate(batch):
            if results is None or results[str(index)] not in (pl.Boolean, pl.Null):
                predicate._check_alone(schema)


def sql_exprs(predicates: list[Predicate]) -> list[pl.Expr]:
    """The polars expressions of `predicates` (NULL not yet counted as false).

    Each text is compiled once per process (a policy's thousands of rules are compiled when their types
    are checked and reused when they are evaluated); the compiled expression is immutable.
    """
    return [sql_expr(predicate.text) for predicate in predicates]


@functools.lru_cache(maxsize=1 << 16)
def sql_expr(text: str) -> pl.Expr:
    """pl.sql_expr(text), compiled once per process (see `sql_exprs`); NULL not yet counted as false."""
    return pl.sql_expr(text)


def step_column(step: str, column: str) -> str:
    """The working column that holds `column` of the answer of the plan step named `step`."""
    return f"{step}.{column}"


def parse_predicate(text: str, *, key: str, columns: list[str] | None = None,
                    steps: frozenset[str] | None = frozenset()) -> Predicate:
    """Check `text` and return it as a Predicate. `key` names the scenario key, for messages.

    When `columns` is given, every column the predicate reads must be one of them. `steps` names the
    earlier plan steps whose answers it may read as `STEP.COLUMN` (None: any name, for a check of what a
    scenario reads); such a read becomes the one quoted column "STEP.COLUMN" of the compiled text.
    """
    if not isinstance(text, str) or not text.strip():
        raise RoutesimError("a predicate must be a non-empty SQL expression", where=_where(key),
                            fix="write e.g. \"confidence >= 0.7\"")
    _check_size(text, key)
    simple = SIMPLE_COMPARISON.fullmatch(text)
    if simple and simple.group(1).upper() not in DuckDB.Tokenizer.KEYWORDS:  # a keyword (NULL, TRUE) is no column
        column, operator, literal = simple.groups()
        value = _literal_value(literal)
        kind = type(value).__name__ if isinstance(value, str) or abs(value) < 2**31 else literal
        return _with_columns(text, key, frozenset([column]), columns,
                             equals=(column, value) if operator == "=" else None, shape=(column, operator, kind))
    try:
        statements = sqlglot.parse(text, read="duckdb")
    except RecursionError:
        raise _too_deep(text, key) from None
    except sqlglot.errors.SqlglotError as error:
        first_line = str(error).splitlines()[0]
        raise RoutesimError(f"cannot parse predicate {text!r}: {first_line}", where=_where(key),
                            fix="write a SQL boolean expression, e.g. \"slice = 'faq' AND input_tokens < 500\"",
                            ) from None
    if len(statements) != 1 or statements[0] is None:
        raise RoutesimError(f"predicate {text!r} must be a single expression, not several statements",
                            where=_where(key), fix="remove the ';'")
    tree = statements[0]
    for node in tree.walk():
        if not isinstance(node, ALLOWED_NODES):
            raise RoutesimError(
                f"predicate {text!r} uses {_describe(node)}, which is not allowed in a predicate",
                where=_where(key),
                fix=f"predicates are pure expressions over columns: {ALLOWED_FORMS}")
    step_reads = set()
    for column in list(tree.find_all(exp.Column)):
        if not column.table:
            continue
        if column.catalog or column.db or (steps is not None and column.table not in steps):
            named = (f"the earlier steps it may read here: {', '.join(sorted(steps))}" if steps
                     else "no earlier step of this plan has a 'name'")
            raise RoutesimError(f"predicate {text!r} reads '{column.sql()}', which is no earlier named step's "
                                f"answer ({named})", where=_where(key),
                                fix=f"name an earlier step of the plan ('name: {column.table}') or write "
                                    f"'{column.name}' for this answer's own column")
        step_reads.add((column.table, column.name))
        column.replace(exp.column(step_column(column.table, column.name), quoted=True))
    if step_reads:
        text = tree.sql(dialect="duckdb")
        own = frozenset(column.name for column in tree.find_all(exp.Column) if "." not in column.name)
        if columns is not None:
            _with_columns(text, key, own | {name for _, name in step_reads}, columns)
        read = own | {step_column(step, name) for step, name in step_reads}
        return Predicate(text=text, key=key, columns=frozenset(read), step_reads=frozenset(step_reads))
    return _with_columns(text, key, frozenset(column.name for column in tree.find_all(exp.Column)), columns)


@functools.lru_cache(maxsize=1 << 16)
def string_literals(text: str) -> tuple[tuple[str, str], ...]:
    """(column, string literal) pairs a predicate compares by =, <> (!=) or IN, in order of appearance.

    A simple comparison (SIMPLE_COMPARISON) is read from its match, without a parse; any other text is
    parsed with sqlglot. Cached per text: warnings ask for each predicate more than once.
    """
    simple = SIMPLE_COMPARISON.fullmatch(text)
    if simple and simple.group(1).upper() not in DuckDB.Tokenizer.KEYWORDS:
        column, operator, literal = simple.groups()
        if operator in ("=", "<>", "!=") and literal.startswith("'"):
            return ((column, _literal_value(literal)),)
        return ()
    found = []
    for node in sqlglot.parse_one(text, read="duckdb").find_all(exp.EQ, exp.NEQ, exp.In):
        column = node.this if isinstance(node.this, exp.Column) else None
        values = node.expressions if isinstance(node, exp.In) else [node.expression]
        if column is None and isinstance(node, (exp.EQ, exp.NEQ)) and isinstance(node.expression, exp.Column):
            column, values = node.expression, [node.this]
        if column is None:
            continue
        found += [(column.name, value.this) for value in values if isinstance(value, exp.Literal) and value.is_string]
    return tuple(found)


def _literal_value(literal: str) -> int | float | str:
    """The value of a literal SIMPLE_COMPARISON matched: a number, or a quoted string with '' for '."""
    if literal.startswith("'"):
        return literal[1:-1].replace("''", "'")
    return float(literal) if "." in literal else int(literal)


def _with_columns(text: str, key: str, read: frozenset[str], columns: list[str] | None, **form) -> Predicate:
    """The Predicate, once every column it reads is known to be among `columns` (when given)."""
    if columns is not None:
        for name in sorted(read):
            if name not in columns:
                raise RoutesimError(
                    f"predicate {text!r} reads column '{name}', which is not available here.{did_you_mean(name, columns)}",
                    where=_where(key), fix=f"available columns: {', '.join(sorted(columns))}")
    return Predicate(text=text, key=key, columns=read, **form)


def _check_size(text: str, key: str) -> None:
    if len(text) > MAX_PREDICATE_CHARS:
        raise RoutesimError(f"predicate of {len(text):,} characters is longer than the limit of "
                            f"{MAX_PREDICATE_CHARS:,}", where=_where(key),
                            fix="write a shorter condition: IN (...) for lists of values, or a derived column")
    depth = deepest = 0
    quote = None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_PREDICATE_NESTING:
        raise _too_deep(text, key)


def _too_deep(text: str, key: str) -> RoutesimError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return RoutesimError(f"predicate {shown!r} nests parentheses more than {MAX_PREDICATE_NESTING} levels deep",
                         where=_where(key), fix="remove redundant parentheses")


def _where(key: str) -> str:
    """A bare key names a scenario key; callers may pass a fuller location (scenario name, file, option)."""
    return key if " " in key or key.startswith("-") else f"scenario key '{key}'"


def _describe(node: exp.Expression) -> str:
    if isinstance(node, (exp.Select, exp.Subquery, exp.Query)):
        return "a subquery"
    if isinstance(node, exp.Anonymous):
        return f"the function {node.name.lower()}()"
    if isinstance(node, exp.Func):
        return f"the function {node.sql_name().lower()}()"
    if isinstance(node, (exp.DDL, exp.DML, exp.Command, exp.Drop)):
        return "a statement"
    if isinstance(node, exp.Table):
        return "a table"
    return f"{type(node).__name__} ({node.sql(dialect='duckdb')[:40]!r})"
