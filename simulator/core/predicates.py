"""Scenario predicates: SQL boolean expressions over columns, checked then compiled to polars.

A predicate is parsed with sqlglot and every node is checked against an allow-list of pure expression
forms (comparisons, boolean logic, arithmetic, IN, BETWEEN, LIKE, IS NULL, CASE and a few scalar
functions). Anything else (subqueries, table functions such as read_csv, statements) is rejected before
polars sees it, so a scenario can never reach files or the network. A predicate that evaluates to NULL
counts as false.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import sqlglot
from sqlglot import exp

from simulator.core.errors import RoutesimError, did_you_mean

ALLOWED_NODES: tuple[type[exp.Expression], ...] = (
    exp.And, exp.Or, exp.Not, exp.Paren,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In, exp.Between, exp.Like, exp.ILike,
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null,
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg,
    exp.Case, exp.If, exp.Coalesce, exp.Lower, exp.Upper, exp.Length, exp.Abs, exp.Cast, exp.DataType,
)

ALLOWED_FORMS = ("comparisons (= <> < <= > >=), AND/OR/NOT, + - * / %, IN (...), BETWEEN, LIKE/ILIKE, "
                 "IS [NOT] NULL, CASE WHEN, CAST, and the functions coalesce, lower, upper, length, abs")


@dataclass(frozen=True)
class Predicate:
    """A checked predicate: its text, where it came from, and the columns it reads."""

    text: str
    key: str
    columns: frozenset[str]

    def compile(self) -> pl.Expr:
        """The polars expression; NULL results count as false."""
        return pl.sql_expr(self.text).fill_null(False)

    def check_types(self, schema: dict[str, pl.DataType]) -> None:
        """Evaluates the predicate on no rows of `schema`: a comparison of mismatched types, or a result
        that is not true/false, fails here with the scenario key instead of in the middle of a replay."""
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


def parse_predicate(text: str, *, key: str, columns: list[str] | None = None) -> Predicate:
    """Check `text` and return it as a Predicate. `key` names the scenario key, for messages.

    When `columns` is given, every column the predicate reads must be one of them.
    """
    if not isinstance(text, str) or not text.strip():
        raise RoutesimError("a predicate must be a non-empty SQL expression", where=_where(key),
                            fix="write e.g. \"confidence >= 0.7\"")
    try:
        statements = sqlglot.parse(text, read="duckdb")
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
    for column in tree.find_all(exp.Column):
        if column.table:
            raise RoutesimError(f"predicate {text!r} names a table ('{column.sql()}'); predicates read the "
                                "columns of one row", where=_where(key), fix=f"write '{column.name}'")
    read = frozenset(column.name for column in tree.find_all(exp.Column))
    if columns is not None:
        for name in sorted(read):
            if name not in columns:
                raise RoutesimError(
                    f"predicate {text!r} reads column '{name}', which is not available here.{did_you_mean(name, columns)}",
                    where=_where(key), fix=f"available columns: {', '.join(sorted(columns))}")
    return Predicate(text=text, key=key, columns=read)


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
