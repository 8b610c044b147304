"""Warnings about scenarios that run but do not do what they say: they fail silently otherwise.

- A rule that matches no request, either because its predicate holds for none of the replayed requests or
  because earlier rules take every request it would match.
- A string literal compared with a string column (`=`, `<>`, `IN`) that never occurs in the replayed
  requests (traffic columns) or their answers (outcome columns), with a "did you mean".
- A retry that could not run: requests whose final answer matched the retry's `when` but that made no
  retry attempt, because every target had no further sample.

Each warning is a dict: `rule` (the scenario key it is about), `kind` and `message`.
"""

from __future__ import annotations

import polars as pl
import sqlglot
from sqlglot import exp

from simulator.core.errors import did_you_mean
from simulator.core.scenario import Scenario

# Distinct values beyond this many are not listed for "did you mean" (a free-text column).
MAX_VALUES = 10_000


def _literals(text: str) -> list[tuple[str, str]]:
    """(column, string literal) pairs compared by =, <> or IN in a predicate."""
    tree = sqlglot.parse_one(text, read="duckdb")
    found = []
    for node in tree.find_all(exp.EQ, exp.NEQ, exp.In):
        column = node.this if isinstance(node.this, exp.Column) else None
        values = node.expressions if isinstance(node, exp.In) else [node.expression]
        if column is None and isinstance(node, (exp.EQ, exp.NEQ)) and isinstance(node.expression, exp.Column):
            column, values = node.expression, [node.this]
        if column is None:
            continue
        found += [(column.name, value.this) for value in values if isinstance(value, exp.Literal) and value.is_string]
    return found


def _predicates(scenario: Scenario) -> list[tuple[str, str]]:
    """(scenario key, predicate text) of every rule, accept and retry predicate."""
    policy = scenario.policy
    found = [(f"policy.rules[{index}].when", rule.when) for index, rule in enumerate(policy.rules)]
    for index, (_, steps) in enumerate(policy.plans()):
        prefix = f"policy.rules[{index}]" if index < len(policy.rules) else "policy.default"
        found += [(f"{prefix}.cascade[{position}].accept", step.accept)
                  for position, step in enumerate(steps) if step.accept is not None]
    if policy.retry:
        found.append(("policy.retry.when", policy.retry.when))
    return found


def _values(frame: pl.DataFrame | None, column: str) -> set[str] | None:
    if frame is None or column not in frame.columns or frame.schema[column] not in (pl.String, pl.Categorical):
        return None
    return set(frame[column].cast(pl.String).drop_nulls().unique().to_list())


def scenario_warnings(scenario: Scenario, requests: pl.DataFrame, answers: pl.DataFrame | None,
                      decisions: pl.DataFrame) -> list[dict]:
    """Every warning for one replay. `requests` holds the replayed requests' traffic rows (the columns the
    rules read), `answers` their outcome rows (or None), `decisions` the replay's decisions."""
    warnings = []
    policy = scenario.policy
    taken = pl.lit(False)
    for index, rule in enumerate(policy.rules):
        label = rule.name or f"rule {index + 1}"
        condition = pl.sql_expr(rule.when).fill_null(False)
        own, left = requests.select(condition.sum().alias("own"), (condition & ~taken).sum().alias("left")).row(0)
        if own == 0:
            warnings.append({"rule": f"policy.rules[{index}]", "kind": "rule_matches_nothing",
                             "message": f"rule '{label}' ({rule.when}) matches none of the replayed requests"})
        elif left == 0:
            warnings.append({"rule": f"policy.rules[{index}]", "kind": "rule_shadowed",
                             "message": f"rule '{label}' ({rule.when}) matches {own:,} requests, but earlier rules "
                                        "take all of them, so it never applies"})
        taken = taken | condition
    for key, text in _predicates(scenario):
        for column, literal in _literals(text):
            values = _values(requests, column)
            if values is None:
                values = _values(answers, column)
            if values is None or literal in values:
                continue
            hint = did_you_mean(literal, values) if len(values) <= MAX_VALUES else ""
            warnings.append({"rule": key, "kind": "unknown_literal",
                             "message": f"'{literal}' never occurs in column {column} of the replayed requests, so "
                                        f"{key} ({text}) never holds for it.{hint}"})
    if policy.retry is not None:
        stuck = decisions.filter(pl.col("retry_exhausted") & (pl.col("retry_attempts") == 0)).height
        if stuck:
            targets = ", ".join(policy.retry.to)
            warnings.append({"rule": "policy.retry", "kind": "retry_could_not_run",
                             "message": f"{stuck:,} requests matched the retry's when ({policy.retry.when}) but no "
                                        f"retry could run: {targets} had no further sample for them (a model is "
                                        "called again only through its next sample)"})
    return warnings
