"""A slow, obviously correct reference replay, written for clarity rather than speed.

It follows the policy semantics one request at a time with plain Python loops and dicts. The only other
engine involved is DuckDB, used to evaluate the scenario's SQL predicates over small tables, so neither
the routing logic nor the predicates share code with the polars engine under test.

Semantics (the spec the engine claims to follow):
- Requests: the window [start, end) at 00:00 UTC; with `sample`, the `requests` with the smallest keyed
  draws u(seed, "sample", request_id) (ties by request_id), kept in (ts, request_id) order.
- Rules: the first rule whose `when` holds on the traffic row picks its plan, else the default plan.
- Plan: steps in order; the k-th call of a model for one request uses its outcome with sample = k. A
  non-last step's answer is final when hard_check_ok and its accept predicate hold; the last is final.
- Retry: while the latest answer matches `retry.when` and attempts remain, walk `retry.to` once; a
  target without its next sample is skipped (k >= 1) or is a missing outcome (k == 0).
- Missing outcomes: with on_missing=error the replay fails; with skip the request is left out.
- Pricing: per call, the sheet entry in force at the request's ts, else the recorded cost_usd; a call
  with zero input and output tokens and a recorded cost > 0 (usage missing) at its recorded cost. Within
  the entry: the prices of the call's service tier (the step's, else the plan's, else standard; the
  retry's own), and of that tier's highest context tier whose above_input_tokens the input exceeds.
  Each kind of token at its price (a kind without one falls back as the README says), the per-request
  fee, all times (1 - discount). A step's checker adds its cost and latency to that call. A batch call
  has no latency: its request's latency is None and latency percentiles leave it out. Money is whole
  nano-dollars: a sheet price is the exact rational cost (prices as written in decimal) rounded half to
  even, a recorded or checker cost is round(cost_usd * 1e9) (Python's round: half to even). Totals are
  integer sums; dollars are nanos / 1e9, and a cost per request is Fraction(nanos, n x 1e9) rounded once.
- Several calls in one step (`samples: n` of one model, `parallel: [models]`, `race: [models]`): every
  call is made and billed (each with the step's checker); a model listed twice reads its next sample. A
  request missing any of the answers is missing for the first such model in list order. Best-of-n and
  fan-out keep the answer with the highest `select.highest` value (nulls lowest, ties to the earlier
  call), or the first in list order passing hard_check_ok and `select.first` (none: the last), and take
  the slowest call's latency. A race keeps the first answer in latency order (ties in list order)
  passing hard_check_ok and `select.first`, with that call's latency; when none passes, the last model
  in list order answers and the latency is the slowest call's.
- Named steps and final: best: an accept predicate may read an earlier named step's answer as
  STEP.COLUMN (the answer that step kept). With `final: best`, the plan's final answer is the one with
  the highest `best_by` among its steps' answers (nulls lowest, ties to the earlier step), not the last.
- Router overhead: before its plan, a request pays the policy's overhead, then the overhead of every rule
  evaluated for it (the rules before the one that matched, and that one): each a fixed cost (and latency),
  plus, for a classifier, the sheet's price of the request's input tokens (none cached) and the
  classifier's output tokens.
- Prompt-cache loss: a request's previous turn is the one before it in its session among the selected
  requests, ordered by (turn, nulls last; ts; request_id). When that turn was replayed (not left out), each
  model call (step or retry) of the request whose model it did not call bills its cached input tokens again
  at input - cached_input of the call's rate set, times (1 - discount), rounded once, unless the call is
  priced at its recorded cost. Latency is unchanged.
- NULL predicate results count as false.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from fractions import Fraction
from dataclasses import dataclass, field

import duckdb
import sqlglot
from sqlglot import exp
import numpy as np
import polars as pl

from simulator.core.prices import PriceSheet
from simulator.core.scenario import Step

DECISION_KEYS = ("request_id", "ts", "slice", "plan", "models_called", "final_model", "final_sample",
                 "steps_taken", "multi_step", "escalated", "retry_attempts", "retry_exhausted", "cost_nano_usd",
                 "cost_usd", "latency_ms", "passed", "hard_check_ok", "score")
NANO = 10**9

UTC = dt.UTC


class ReferenceFailure(Exception):
    """The reference replay cannot complete; the engine must raise a RoutesimError for the same world."""


class MissingOutcomes(ReferenceFailure):
    """on_missing=error and some requests reached an outcome that is not in the data."""

    def __init__(self, by_model: dict[str, int]):
        self.by_model = by_model
        super().__init__(f"missing outcomes, requests per model: {by_model}")


class Unpriceable(ReferenceFailure):
    """A call that neither the sheet nor a recorded cost can price."""


class NoRequests(ReferenceFailure):
    """The window (and sample) leave nothing to replay."""


class AllSkipped(ReferenceFailure):
    """on_missing=skip left out every request."""


@dataclass
class Coverage:
    requests_in_window: int
    requests_selected: int
    requests_replayed: int
    missing_by_model: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Predicates, evaluated by DuckDB


def _as_utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _midnight_utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=UTC)


def _truth(value) -> bool:
    """SQL truth: NULL counts as false."""
    return value is True


class Predicates:
    """Evaluates predicate texts with DuckDB over the traffic table and over outcomes joined with traffic."""

    def __init__(self, traffic: pl.DataFrame, outcomes: pl.DataFrame):
        self.con = duckdb.connect()
        # ts is never read by a predicate here; leaving it out avoids time zone conversions.
        self.con.register("traffic_frame", traffic.drop("ts").to_arrow())
        self.con.register("outcomes_frame", outcomes.to_arrow())
        traffic_only = [name for name in traffic.columns if name not in outcomes.columns and name != "ts"]
        extra = "".join(f', t."{name}"' for name in traffic_only)
        # Outcome columns win on name clashes (input_tokens is both the request's and the billed count).
        self.con.execute(f"CREATE TABLE answers AS SELECT o.*{extra} FROM outcomes_frame o "
                         "JOIN traffic_frame t ON o.request_id = t.request_id")
        self._rules: dict[str, dict[str, bool]] = {}
        self._answers: dict[str, dict[tuple[str, str, int], bool]] = {}

    def on_traffic(self, text: str) -> dict[str, bool]:
        """request_id -> does the predicate hold on the traffic row."""
        if text not in self._rules:
            rows = self.con.execute(f"SELECT request_id, ({text}) FROM traffic_frame").fetchall()
            self._rules[text] = {request_id: _truth(value) for request_id, value in rows}
        return self._rules[text]

    def on_answers(self, text: str) -> dict[tuple[str, str, int], bool]:
        """(request_id, model, sample) -> does the predicate hold on that answer (with its request)."""
        if text not in self._answers:
            rows = self.con.execute(f"SELECT request_id, model, sample, ({text}) FROM answers").fetchall()
            self._answers[text] = {(r, m, int(s)): _truth(value) for r, m, s, value in rows}
        return self._answers[text]

    def on_answers_and_steps(self, text: str) -> tuple[list[str], dict[tuple, bool]]:
        """For a predicate reading earlier steps' answers as STEP.COLUMN: the step names it reads (sorted)
        and (request_id, model, sample, ((step, model, sample), ...)) -> does it hold. DuckDB resolves the
        qualified columns itself: each step is the answers table again under that alias, joined on the
        request, and the predicate's own columns are the current answer's (alias __cur)."""
        tree = sqlglot.parse_one(text, read="duckdb")
        names = sorted({column.table for column in tree.find_all(exp.Column) if column.table})
        if not names:
            return [], self.on_answers(text)
        for column in tree.find_all(exp.Column):
            if not column.table:
                column.set("table", exp.to_identifier("__cur"))
        if text not in self._answers:
            picks = "".join(f', "{name}".model, "{name}".sample' for name in names)
            joins = "".join(f' JOIN answers "{name}" ON "{name}".request_id = __cur.request_id' for name in names)
            rows = self.con.execute(f"SELECT __cur.request_id, __cur.model, __cur.sample{picks}, "
                                    f"({tree.sql(dialect='duckdb')}) FROM answers __cur{joins}").fetchall()
            self._answers[text] = {
                (row[0], row[1], int(row[2]),
                 tuple((name, row[3 + 2 * i], int(row[4 + 2 * i])) for i, name in enumerate(names))): _truth(row[-1])
                for row in rows}
        return names, self._answers[text]

    def close(self) -> None:
        self.con.close()


# --------------------------------------------------------------------------------------------------
# Pricing


def entry_in_force(sheet: PriceSheet, model: str, at: dt.datetime):
    """The entry with the latest effective_from whose 00:00 UTC is not after `at`; None if none."""
    best = None
    for entry in sheet.models[model]:
        if _midnight_utc(entry.effective_from) <= at and (best is None
                                                          or entry.effective_from > best.effective_from):
            best = entry
    return best


def _written(price: float) -> Fraction:
    """A price exactly as written in the sheet (its shortest decimal repr), as a rational number."""
    return Fraction(repr(price))


def recorded_nanos(usd: float) -> int:
    return round(usd * NANO)


def _price(rates, kind: str) -> float:
    """USD per million tokens of one kind, falling back as the README's price-sheet section says."""
    own = getattr(rates, kind)
    if own is not None:
        return own
    fallback = {"cached_input": "input", "cache_write_input": "input", "cache_write_1h_input": "cache_write_input",
                "reasoning_output": "output"}[kind]
    return _price(rates, fallback)


def usage_missing(answer: dict) -> bool:
    return (answer["input_tokens"] == 0 and answer["output_tokens"] == 0 and answer["cost_usd"] is not None
            and answer["cost_usd"] > 0)


def _rates_of(sheet: PriceSheet, answer: dict, at: dt.datetime, tier: str):
    """The entry in force and the rate set (service tier, then the highest context tier the input exceeds)."""
    model = answer["model"]
    entry = entry_in_force(sheet, model, at)
    if entry is None:
        raise Unpriceable(f"{model} has no price entry in force at {at}")
    base = entry if tier == "standard" else getattr(entry, tier)
    if base is None:
        raise Unpriceable(f"{model} has no {tier} prices")
    rates = base
    for context in base.tiers:  # the highest tier the input exceeds
        if answer["input_tokens"] > context.above_input_tokens:
            rates = context
    return entry, rates


def by_sheet(sheet: PriceSheet | None, answer: dict) -> bool:
    return sheet is not None and answer["model"] in sheet.models and not usage_missing(answer)


def cache_loss(sheet: PriceSheet | None, answer: dict, at: dt.datetime, tier: str = "standard") -> int | None:
    """Whole nano-dollars a call costs more when its cached input tokens bill at the input rate; None for a
    call priced at its recorded cost."""
    if not by_sheet(sheet, answer):
        return None
    entry, rates = _rates_of(sheet, answer, at, tier)
    cached = answer.get("cached_input_tokens") or 0
    difference = _written(_price(rates, "input")) - _written(_price(rates, "cached_input"))
    discount = sheet.discount if entry.discount is None else entry.discount
    return round(cached * difference / 1_000_000 * (1 - _written(discount)) * NANO)


def model_cost(sheet: PriceSheet | None, answer: dict, at: dt.datetime, tier: str = "standard") -> int:
    """Whole nano-dollars of one call."""
    model = answer["model"]
    if by_sheet(sheet, answer):
        entry, rates = _rates_of(sheet, answer, at, tier)
        cached = answer.get("cached_input_tokens") or 0
        write = answer.get("cache_write_input_tokens") or 0
        write_1h = answer.get("cache_write_1h_input_tokens") or 0
        reasoning = answer.get("reasoning_output_tokens") or 0
        counts = {"input": answer["input_tokens"] - cached - write - write_1h, "cached_input": cached,
                  "cache_write_input": write, "cache_write_1h_input": write_1h,
                  "output": answer["output_tokens"] - reasoning, "reasoning_output": reasoning}
        # USD per million tokens, exactly: the rational cost in dollars, then rounded once to nano-dollars.
        per_million = sum(counts[kind] * _written(_price(rates, kind)) for kind in counts)
        discount = sheet.discount if entry.discount is None else entry.discount
        exact = (per_million / 1_000_000 + _written(entry.per_request)) * (1 - _written(discount))
        return round(exact * NANO)  # round() of a Fraction: nearest integer, ties to even
    if answer["cost_usd"] is None:
        raise Unpriceable(f"{model} is not in the sheet and has no recorded cost")
    return recorded_nanos(answer["cost_usd"])


# --------------------------------------------------------------------------------------------------
# The replay


def select_requests(scenario, traffic: pl.DataFrame) -> tuple[list[dict], int]:
    rows = []
    for row in traffic.to_dicts():
        row = {**row, "ts": _as_utc(row["ts"])}
        if scenario.window is not None:
            if not (_midnight_utc(scenario.window.start) <= row["ts"] < _midnight_utc(scenario.window.end)):
                continue
        rows.append(row)
    rows.sort(key=lambda row: (row["ts"], row["request_id"]))
    in_window = len(rows)
    if scenario.sample is not None and scenario.sample.requests < len(rows):
        draws = {row["request_id"]: keyed_draw(scenario.sample.seed, "sample", row["request_id"]) for row in rows}
        chosen = set(sorted(draws, key=lambda request_id: (draws[request_id], request_id))[:scenario.sample.requests])
        rows = [row for row in rows if row["request_id"] in chosen]
    if not rows:
        raise NoRequests("no requests to replay")
    return rows, in_window


def _polynomial_hash(text: str) -> int:
    value = 0
    for byte in text.encode("utf-8"):
        value = (value * 0x100000001B3 + byte) % 2**64
    return value


def _splitmix64(value: int) -> int:
    z = (value + 0x9E3779B97F4A7C15) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return z ^ (z >> 31)


def keyed_draw(seed: int, purpose: str, key: str) -> float:
    """u(seed, purpose, key) as simulator/core/draws.py documents it, one id at a time in Python integers."""
    stream = _splitmix64(seed % 2**64) ^ _splitmix64(_polynomial_hash(purpose))
    return (_splitmix64(_polynomial_hash(key) ^ stream) >> 11) * 2.0**-53


def reference_replay(scenario, traffic: pl.DataFrame, outcomes: pl.DataFrame,
                     sheet: PriceSheet | None) -> tuple[list[dict], dict]:
    """Per-request decisions (sorted by ts, then request_id) and the summary of every metric.

    The summary also holds "coverage" (a Coverage) and "price_sources" (model -> sheet/recorded/checker/
    fixed when one source priced all its calls, else mixed).
    Raises a ReferenceFailure where the engine must raise a RoutesimError.
    """
    policy = scenario.policy
    plans = policy.plans()
    requests, in_window = select_requests(scenario, traffic)

    answers: dict[tuple[str, str, int], dict] = {}
    for row in outcomes.to_dicts():
        answers[row["request_id"], row["model"], row["sample"]] = row

    predicates = Predicates(traffic, outcomes)
    try:
        rule_holds = [predicates.on_traffic(rule.when) for rule in policy.rules]
        retry_when = predicates.on_answers(policy.retry.when) if policy.retry else None
        accepts, selects = {}, {}
        for plan_index, (_, steps) in enumerate(plans):
            for step_index, step in enumerate(steps):
                if step.accept is not None:  # it may read earlier steps as STEP.COLUMN
                    accepts[plan_index, step_index] = predicates.on_answers_and_steps(step.accept)
                if step.select is not None and step.select.first is not None:
                    selects[plan_index, step_index] = predicates.on_answers(step.select.first)
    finally:
        predicates.close()

    decisions: list[dict] = []
    missing: Counter[str] = Counter()
    price_sources: dict[str, set[str]] = {}

    def rule_plan(request_id: str) -> int:
        for index, holds in enumerate(rule_holds):
            if holds[request_id]:
                return index
        return len(policy.rules)

    # Sticky sessions: first turns (and requests on their own) are routed first, in arrival order; each
    # later turn then takes its first turn's plan, or the model that plan ended at if the first turn escalated.
    sticky = policy.sticky == "session" and requests and "session_id" in requests[0]
    leader_of: dict[str, str] = {}
    if sticky:
        plans = [*plans, *((f"sticky: {model}", (Step(model=model, service_tier="standard"),))
                           for model in policy.models())]
        for request in sorted((r for r in requests if r["session_id"] is not None),
                              key=lambda r: (r.get("turn") is None, r.get("turn") or 0, r["ts"], r["request_id"])):
            leader_of.setdefault(request["session_id"], request["request_id"])
    later = {r["request_id"] for r in requests
             if sticky and r["session_id"] is not None and leader_of[r["session_id"]] != r["request_id"]}
    escalated_to: dict[str, str] = {}  # leader request_id -> the model its plan ended at, when it escalated
    position = {r["request_id"]: index for index, r in enumerate(requests)}
    model_calls: dict[str, list[tuple[dict, str]]] = {}  # request_id -> (answer, service tier) of each model call

    for request in [r for r in requests if r["request_id"] not in later] + [r for r in requests
                                                                             if r["request_id"] in later]:
        request_id, ts = request["request_id"], request["ts"]

        follower = request_id in later
        if follower:
            leader = leader_of[request["session_id"]]
            plan_index = (len(plans) - len(policy.models()) + policy.models().index(escalated_to[leader])
                          if leader in escalated_to else rule_plan(leader))
        else:
            plan_index = rule_plan(request_id)
        label, steps = plans[plan_index]

        calls_of: Counter[str] = Counter()  # calls made so far per model: the next sample to use
        models_called: list[str] = []
        total_cost = 0
        total_latency = 0.0
        calls: list[tuple[str, str]] = []  # (model, price source) of every call, checkers included
        made = model_calls.setdefault(request_id, [])
        missing_model = None

        def call(model: str, tier: str, checker=None, parallel: list | None = None) -> dict | None:
            """One call; with `parallel` its latency is appended there instead of added to the total."""
            nonlocal total_cost, total_latency
            answer = answers.get((request_id, model, calls_of[model]))
            if answer is None:
                return None
            cost = model_cost(sheet, answer, ts, tier)
            latency = None if tier == "batch" else float(answer["latency_ms"])
            by_sheet = sheet is not None and model in sheet.models and not usage_missing(answer)
            calls.append((model, "sheet" if by_sheet else "recorded"))
            if checker is not None:
                cost = cost + recorded_nanos(checker.cost_usd)
                latency = None if latency is None else latency + checker.latency_ms
                calls.append((checker.name, "checker"))
            total_cost += cost
            if parallel is None:
                total_latency = None if total_latency is None or latency is None else total_latency + latency
            else:
                parallel.append(latency)
            calls_of[model] += 1
            models_called.append(model)
            made.append((answer, tier))
            return answer

        for first_plan, overhead in policy.overheads():
            if plan_index < first_plan or (follower and overhead is not policy.overhead):
                continue  # a later turn of a sticky session makes no routing decision: no rule overhead
            cost = recorded_nanos(overhead.cost_usd)
            source = "fixed"
            if overhead.model is not None:
                decision = {"model": overhead.model, "input_tokens": request["input_tokens"],
                            "cached_input_tokens": 0, "output_tokens": overhead.output_tokens, "cost_usd": None}
                cost = model_cost(sheet, decision, ts) + cost
                source = "sheet"
            total_cost += cost
            total_latency += overhead.latency_ms
            calls.append((overhead.name, source))

        final = None
        steps_taken = 0
        named: dict[str, dict] = {}  # the answers of the plan's named steps so far
        best_answer = None  # with final: best, the best answer so far
        best_by = policy.plan_specs()[plan_index].best_by if plan_index < len(policy.plan_specs()) else None
        for step_index, step in enumerate(steps):
            if len(step.calls) == 1:
                answer = call(step.model, step.service_tier, step.checker)
                if answer is None:
                    missing_model = step.model
            else:  # several calls at once (best-of-n, fan-out, race): every one billed, `select` keeps one
                latencies: list[float] = []
                drawn = []
                # The calls are made at once, so the step needs every answer before any call counts: one
                # missing leaves the request out (or is the error) without pricing the others.
                upcoming: Counter[str] = Counter()
                for model in step.calls:
                    if answers.get((request_id, model, calls_of[model] + upcoming[model])) is None:
                        missing_model = model
                        break
                    upcoming[model] += 1
                if missing_model is None:
                    drawn = [call(model, step.service_tier, step.checker, parallel=latencies) for model in step.calls]
                answer = None
                if missing_model is None:
                    slowest = None if None in latencies else max(latencies)  # batch: no latency
                    if step.race is not None:
                        holds = selects[plan_index, step_index]
                        by_latency = sorted(range(len(drawn)), key=lambda i: (latencies[i], i))
                        winners = [i for i in by_latency
                                   if drawn[i]["hard_check_ok"] and holds[request_id, drawn[i]["model"],
                                                                          drawn[i]["sample"]]]
                        if winners:
                            answer, step_latency = drawn[winners[0]], latencies[winners[0]]
                        else:
                            answer, step_latency = drawn[-1], slowest
                    elif step.select.first is not None:
                        holds = selects[plan_index, step_index]
                        passing = [a for a in drawn
                                   if a["hard_check_ok"] and holds[request_id, a["model"], a["sample"]]]
                        answer, step_latency = (passing[0] if passing else drawn[-1]), slowest
                    else:
                        answer = drawn[0]
                        for candidate in drawn[1:]:
                            value, best = candidate[step.select.highest], answer[step.select.highest]
                            if value is not None and (best is None or value > best):
                                answer = candidate
                        step_latency = slowest
                    total_latency = (None if total_latency is None or step_latency is None
                                     else total_latency + step_latency)
            if answer is None:
                break
            steps_taken = step_index + 1
            final = answer
            if step.name is not None:
                named[step.name] = answer
            if best_by is not None:  # final: best: the highest best_by so far, nulls lowest, ties earlier
                value = answer[best_by]
                if best_answer is None or (value is not None and (best_answer[best_by] is None
                                                                  or value > best_answer[best_by])):
                    best_answer = answer
            if step_index == len(steps) - 1:
                break
            names, holds = accepts[plan_index, step_index]
            key = (request_id, answer["model"], answer["sample"])
            if names:
                key = (*key, tuple((name, named[name]["model"], named[name]["sample"]) for name in names))
            if answer["hard_check_ok"] and holds[key]:
                break
        if best_by is not None and best_answer is not None and missing_model is None:
            final = best_answer
        if missing_model is None and not follower and steps_taken > 1:
            escalated_to[request_id] = final["model"]

        retry_attempts = 0
        retry_exhausted = False
        if missing_model is None and policy.retry is not None:
            matching = retry_when[request_id, final["model"], final["sample"]]
            for model in policy.retry.to:
                if not matching or retry_attempts == policy.retry.attempts_allowed:
                    break
                sample = calls_of[model]
                answer = call(model, policy.retry.service_tier)
                if answer is None:
                    if sample == 0:
                        missing_model = model
                        break
                    continue  # no further sample of a model already called: skip this target
                retry_attempts += 1
                final = answer
                matching = retry_when[request_id, final["model"], final["sample"]]
            retry_exhausted = matching

        if missing_model is not None:
            missing[missing_model] += 1
            continue

        for model, source in calls:
            price_sources.setdefault(model, set()).add(source)
        decisions.append({
            "request_id": request_id,
            "ts": ts,
            "slice": request["slice"],
            "plan": label,
            "models_called": models_called,
            "final_model": final["model"],
            "final_sample": final["sample"],
            "steps_taken": steps_taken,
            "multi_step": len(steps) > 1,
            "escalated": steps_taken > 1,
            "retry_attempts": retry_attempts,
            "retry_exhausted": retry_exhausted,
            "cost_nano_usd": total_cost,
            "cost_usd": total_cost / NANO,
            "latency_ms": total_latency,
            "passed": bool(final["passed"] and final["hard_check_ok"]),
            "hard_check_ok": final["hard_check_ok"],
            "score": final["score"],
        })

    decisions.sort(key=lambda decision: position[decision["request_id"]])
    if _bill_cache_losses(requests, decisions, model_calls, sheet):
        price_sources["prompt-cache loss"] = {"sheet"}
    by_model = dict(sorted(missing.items()))
    if by_model and scenario.on_missing == "error":
        raise MissingOutcomes(by_model)
    if by_model and not decisions:
        raise AllSkipped(f"every request was skipped for missing outcomes {by_model}")
    summary = summarise_by_hand(decisions)
    summary["coverage"] = Coverage(requests_in_window=in_window, requests_selected=len(requests),
                                   requests_replayed=len(decisions),
                                   missing_by_model=by_model)
    summary["price_sources"] = {model: min(found) if len(found) == 1 else "mixed"
                                for model, found in sorted(price_sources.items())}
    return decisions, summary


def _bill_cache_losses(requests: list[dict], decisions: list[dict], model_calls: dict, sheet) -> bool:
    """Adds each replayed request's prompt-cache losses to its cost; whether any loss was billed."""
    if not requests or "session_id" not in requests[0]:
        return False
    replayed = {decision["request_id"]: decision for decision in decisions}
    sessions: dict[str, list[dict]] = {}
    for request in requests:  # the selected requests, whether replayed or left out
        if request["session_id"] is not None:
            sessions.setdefault(request["session_id"], []).append(request)
    billed = False
    for turns in sessions.values():
        turns.sort(key=lambda r: (r.get("turn") is None, r.get("turn") or 0, r["ts"], r["request_id"]))
        for before, request in zip(turns, turns[1:]):
            decision = replayed.get(request["request_id"])
            if decision is None or before["request_id"] not in replayed:
                continue  # left out, or its previous turn was: nothing is known of that turn's calls
            cached_by = {answer["model"] for answer, _ in model_calls[before["request_id"]]}
            for answer, tier in model_calls[request["request_id"]]:
                if answer["model"] in cached_by or not (answer.get("cached_input_tokens") or 0):
                    continue
                loss = cache_loss(sheet, answer, request["ts"], tier)
                if loss is not None:
                    decision["cost_nano_usd"] += loss
                    decision["cost_usd"] = decision["cost_nano_usd"] / NANO
                    billed = True
    return billed


# --------------------------------------------------------------------------------------------------
# Metrics, by hand


def _mean(values: list[float]) -> float | None:
    """The exact mean, rounded once (the engine's mean_score adds scores exactly, in any order)."""
    if not values:
        return None
    return float(sum(Fraction(value) for value in values) / len(values))


def summarise_by_hand(decisions: list[dict]) -> dict:
    n = len(decisions)
    total_cost = sum(decision["cost_nano_usd"] for decision in decisions) / NANO
    latencies = [decision["latency_ms"] for decision in decisions if decision["latency_ms"] is not None]
    multi = [decision for decision in decisions if decision["multi_step"]]

    def percentile(q: float) -> float | None:
        return float(np.percentile(latencies, q)) if latencies else None

    return {
        "requests": n,
        "total_cost_usd": total_cost,
        # The exact rational, correctly rounded once (dividing the dollars by n would round twice).
        "cost_per_request_usd": float(Fraction(sum(decision["cost_nano_usd"] for decision in decisions), n * NANO))
        if n else None,
        "pass_rate": sum(1 for d in decisions if d["passed"]) / n if n else None,
        "mean_score": _mean([d["score"] for d in decisions if d["score"] is not None]),
        "latency_p50_ms": percentile(50),
        "latency_p95_ms": percentile(95),
        "latency_p99_ms": percentile(99),
        "escalation_rate": sum(1 for d in multi if d["escalated"]) / len(multi) if multi else None,
        "retry_rate": sum(1 for d in decisions if d["retry_attempts"] > 0) / n if n else None,
        "retry_exhausted": sum(1 for d in decisions if d["retry_exhausted"]),
    }
