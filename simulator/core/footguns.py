"""Warnings about scenarios that run but do not do what they say: they fail silently otherwise.

- A rule that matches no request, either because its predicate holds for none of the replayed requests or
  because earlier rules take every request it would match.
- A string literal compared with a string column (`=`, `<>`, `IN`) that never occurs in the replayed
  requests (traffic columns) or their answers (outcome columns), with a "did you mean".
- A retry that could not run: requests whose final answer matched the retry's `when` but that made no
  retry attempt, because every target had no further sample.
- A prompt-cache loss that is not billed: model calls that lost their prompt cache when the policy switched
  a session's model, but whose model is priced at its recorded cost, which cannot be split into input and
  cached rates.

Each warning is a dict: `rule` (the scenario key it is about), `kind` and `message`.
"""

from __future__ import annotations

import polars as pl

from simulator.core.errors import did_you_mean
from simulator.core.formats import counted
from simulator.core.predicates import sql_expr, string_literals
from simulator.core.scenario import Scenario

# Distinct values beyond this many are not listed for "did you mean" (a free-text column).
MAX_VALUES = 10_000


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


# More warnings of one kind than this become one warning naming the count and the first few: a policy of
# 10,000 generated rules would otherwise print 10,000 lines and bury everything else.
MAX_LISTED = 5


def _aggregated(found: list[dict], says: str) -> list[dict]:
    """`found` as it is when short; else one warning of the same kind, naming how many and the first few.

    Each found warning carries `example` (how the grouped message names it) beside `rule`, `kind` and
    `message`; the grouped one lists every `rule` key under `rules` and its count under `count`."""
    if len(found) <= MAX_LISTED:
        return [{key: w[key] for key in ("rule", "kind", "message")} for w in found]
    first = "; ".join(w["example"] for w in found[:MAX_LISTED])
    keys = [w["rule"] for w in found]
    return [{"rule": "policy.rules" if all(key.startswith("policy.rules[") for key in keys) else "policy",
             "kind": found[0]["kind"], "count": len(found), "rules": keys,
             "message": f"{len(found):,} {says}; the first {MAX_LISTED}: {first}; "
                        f"and {len(found) - MAX_LISTED:,} more (all listed under 'rules' in --json)"}]


def warning_counts(scenario: Scenario, requests: pl.DataFrame, answers: pl.DataFrame | None,
                   decisions: pl.DataFrame, cache_loss_unbilled: dict[str, int] | None = None) -> dict:
    """What the warnings of one replay (or one part of it) are decided on, in a form parts add up in
    (merge_warning_counts). `requests` holds the replayed requests' traffic rows (the columns the rules
    read), `answers` their outcome rows (or None), `decisions` the replay's decisions.

    `own`: per rule, the requests its predicate holds for; `taken`: per plan label, the requests it took
    (first match wins), so thousands of rules stay linear; `literals`: per column compared with a string
    literal, its distinct values (at most MAX_VALUES + 1 of them, in order; None for a column that is not
    text) and whether each literal occurs; `stuck`: requests whose retry could not run; `unbilled`: per
    model, its calls that lost their prompt cache without a sheet price to bill it by (a replay's
    `cache_loss_unbilled`).
    """
    policy = scenario.policy
    own = (list(requests.select([sql_expr(rule.when).fill_null(False).sum().alias(f"r{index}")
                                 for index, rule in enumerate(policy.rules)]).row(0)) if policy.rules else [])
    taken = dict(decisions.group_by("plan").len().iter_rows())
    literals: dict[str, dict] = {}
    for _, text in _predicates(scenario):
        for column, literal in string_literals(text):
            if column not in literals:
                found = _values(requests, column)
                found = found if found is not None else _values(answers, column)
                literals[column] = {"all": found, "seen": {}}
            found = literals[column]["all"]
            literals[column]["seen"][literal] = found is not None and literal in found
    for entry in literals.values():
        found = entry.pop("all")
        entry["values"] = None if found is None else sorted(found)[:MAX_VALUES + 1]
    stuck = (decisions.filter(pl.col("retry_exhausted") & (pl.col("retry_attempts") == 0)).height
             if policy.retry is not None else 0)
    return {"own": own, "taken": taken, "literals": literals, "stuck": stuck,
            "unbilled": dict(cache_loss_unbilled or {})}


def merge_warning_counts(many: list[dict]) -> dict:
    """The warning counts of a whole replay from those of its parts."""
    merged = {"own": [sum(values) for values in zip(*(counts["own"] for counts in many))],
              "taken": {}, "literals": {}, "stuck": sum(counts["stuck"] for counts in many), "unbilled": {}}
    for counts in many:
        for model, calls in counts["unbilled"].items():
            merged["unbilled"][model] = merged["unbilled"].get(model, 0) + calls
        for label, count in counts["taken"].items():
            merged["taken"][label] = merged["taken"].get(label, 0) + count
        for column, entry in counts["literals"].items():
            into = merged["literals"].setdefault(column, {"values": None, "seen": {}})
            if entry["values"] is not None:
                into["values"] = sorted(set(into["values"] or []) | set(entry["values"]))[:MAX_VALUES + 1]
            for literal, seen in entry["seen"].items():
                into["seen"][literal] = into["seen"].get(literal, False) or seen
    return merged


def warnings_of(scenario: Scenario, counts: dict, in_window: int | None = None) -> list[dict]:
    """Every warning for one replay, from its (merged) warning counts; `in_window`: the requests in the
    scenario's window, which a `sample` larger than it replays all of."""
    warnings = []
    policy = scenario.policy
    if scenario.sample is not None and in_window is not None and scenario.sample.requests > in_window:
        warnings.append({"rule": "sample", "kind": "sample_larger_than_window",
                         "message": f"sample asks for {counted(scenario.sample.requests, 'request')}, "
                                    "but the window holds "
                                    f"{in_window:,}: all of them are replayed, none drawn"})
    own, taken = counts["own"], counts["taken"]
    labels = [rule.name or f"rule {index + 1}" for index, rule in enumerate(policy.rules)]
    named = {}
    for label in labels:
        named[label] = named.get(label, 0) + 1
    nothing, shadowed = [], []
    for index, rule in enumerate(policy.rules):
        label = labels[index]
        if own[index] == 0:
            nothing.append({"rule": f"policy.rules[{index}]", "kind": "rule_matches_nothing",
                            "example": f"'{label}' ({rule.when})",
                            "message": f"rule '{label}' ({rule.when}) matches none of the replayed requests"})
        elif taken.get(label, 0) == 0 and named[label] == 1:
            shadowed.append({"rule": f"policy.rules[{index}]", "kind": "rule_shadowed",
                             "example": f"'{label}' ({rule.when})",
                             "message": f"rule '{label}' ({rule.when}) matches "
                                        f"{counted(own[index], 'request')}, but earlier rules take "
                                        f"{'it' if own[index] == 1 else 'all of them'}, so it never applies"})
    warnings += _aggregated(nothing, "rules match none of the replayed requests")
    warnings += _aggregated(shadowed, "rules match requests that earlier rules take, so they never apply")
    unknown = []
    for key, text in _predicates(scenario):
        for column, literal in string_literals(text):
            entry = counts["literals"].get(column)
            if entry is None or entry["values"] is None or entry["seen"].get(literal, True):
                continue
            values = entry["values"]
            hint = did_you_mean(literal, values) if len(values) <= MAX_VALUES else ""
            unknown.append({"rule": key, "kind": "unknown_literal", "example": f"'{literal}' in {column} ({key})",
                            "message": f"'{literal}' never occurs in column {column} of the replayed requests, so "
                                       f"{key} ({text}) never holds for it.{hint}"})
    warnings += _aggregated(unknown, "predicates compare a column with a value that never occurs in it among "
                                     "the replayed requests, so those comparisons never hold")
    if policy.retry is not None and counts["stuck"]:
        targets = ", ".join(policy.retry.to)
        warnings.append({"rule": "policy.retry", "kind": "retry_could_not_run",
                         "message": f"{counted(counts['stuck'], 'request')} matched the retry's when "
                                    f"({policy.retry.when}) but "
                                    f"no retry could run: {targets} had no further sample for them (a model is "
                                    "called again only through its next sample)"})
    if counts["unbilled"]:
        calls = ", ".join(f"{model}: {found:,}" for model, found in sorted(counts["unbilled"].items()))
        warnings.append({"rule": "prices", "kind": "cache_loss_unbilled",
                         "message": f"calls that lost their prompt cache when the policy switched a session's model "
                                    f"are priced at their recorded cost, which cannot be split into input and cached "
                                    f"rates, so their loss is not billed ({calls}); list their models in the price "
                                    "sheet to bill it"})
    return warnings


def scenario_warnings(scenario: Scenario, requests: pl.DataFrame, answers: pl.DataFrame | None,
                      decisions: pl.DataFrame) -> list[dict]:
    """Every warning for one replay in one piece (see warning_counts for the arguments)."""
    return warnings_of(scenario, warning_counts(scenario, requests, answers, decisions))
