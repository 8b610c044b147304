"""The replay engine: what a routing policy would have done with every logged request.

Modelling assumptions (the README's "Policy semantics" states them in full):
- Rules see only the traffic row: the first rule whose `when` holds picks the plan, else the default plan.
- Plan steps run one after another. An earlier step's answer is final when its hard check passed and its
  `accept` predicate holds; the last step's answer is always final.
- The k-th call of a model for one request uses that model's outcome with `sample` = k.
- A retry resends the full request: it is priced and timed like any other call.
- A step may make several calls at once (best-of-n, fan-out, race) and keep one answer by its `select`;
  each is billed, and the step lasts as long as its slowest call (a race: its winner).
- Every call is priced at its request's timestamp, rounded to a whole nano-dollar; a request's cost is
  the exact integer sum of its calls' costs, and latencies of a request's steps add up.
- A model call of a session's turn whose model the previous turn did not call loses the prompt cache: its
  cached input tokens bill again at the difference of the input and cached rates, a call of its own
  (simulator.core.sessions).

Everything is vectorised: the loops below run over plan steps, plans and retry targets (the policy's
shape), never over requests. Each iteration is a join of the requests still in play with the outcomes of
one (model, sample) pair.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from simulator.core.chunks import Chunk
from simulator.core.contract import Dataset
from simulator.core.draws import keyed_uniform
from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.layout import take
from simulator.core.predicates import Predicate, check_types, parse_predicate, sql_exprs, step_column
from simulator.core.money import to_nano_usd
from simulator.core.prices import (
    CACHE_LOSS,
    CACHE_LOSS_LINE,
    PRICE_SOURCE,
    SOURCE_CHECKER,
    SOURCE_FIXED,
    SOURCE_SHEET,
    PriceSheet,
    price_calls,
    price_sources_of,
    token_columns,
    usd,
)
from simulator.core.scenario import Overhead, Retry, Scenario, Step, with_step_accept
from simulator.core.sessions import (EXPOSURE_SCHEMA, CacheState, in_turn_order, lost, lost_crossed,
                                     previous_turns, session_leaders)

Progress = Callable[[str], None]

# Columns of an answer that the engine carries for every request; predicates may add more.
ANSWER_COLUMNS = ["model", "sample", "passed", "hard_check_ok", "score"]
BATCH = "batch"
# Money is Int64 nano-dollars (`cost_nano_usd`); `cost_usd` is the same figure in dollars, for reading.
CALL_COLUMNS = ["rid", "seq", "model", "kind", "cost_nano_usd", "cost_usd", "latency_ms", "price_source",
                "input_tokens", "output_tokens", "reasoning_output_tokens"]
# A replay's call records as made (Replay.call_records): the calls' columns but `cost_usd`, which is
# `cost_nano_usd` in USD, and with `model` an Enum of the policy's names where the engine made them.
RECORD_COLUMNS = [name for name in CALL_COLUMNS if name != "cost_usd"]
# Traffic's session columns, listed after the decision columns when the traffic carries `session_id`.
SESSION_COLUMNS = ["session_id", "turn"]
# A checker call shares its step's `seq`; the kind's order puts it after the step it checked.
# Router overhead calls come before the plan's (negative `seq`), the policy's first, then each rule's.
# A prompt-cache loss (simulator.core.sessions) shares the `seq` of the call that lost the cache, after it.
CALL_KIND = pl.Enum(["step", "retry", "checker", "router", CACHE_LOSS])
MODEL_CALLS = ["step", "retry"]  # the kinds of call that ask a model for an answer
PRESENT = "__present"
# What the engine carries for every request between steps; answers bring everything else. The engine's
# own working columns start with "__", a prefix the data contract keeps out of user columns, so no
# predicate can read one by mistake.
REQUEST_IDENTITY = ["__rid", "request_id", "ts", "slice", "__plan"]
LAYOUT_ROW = "__row"  # a request's row id in the data's compiled layout


@dataclass(frozen=True)
class Coverage:
    """How many requests of the window the replay could use, and which outcomes were missing."""

    requests_in_window: int  # before any sample
    requests_selected: int  # the window's requests, or the sample of them, that the policy was given
    requests_replayed: int  # those left once requests with missing outcomes were skipped
    missing_by_model: dict[str, int] = field(default_factory=dict)
    # the least (request_id, model) missing, for a part of a replay to name when the whole raises
    missing_example: tuple[str, str] | None = None

    @property
    def share(self) -> float:
        return self.requests_replayed / self.requests_selected if self.requests_selected else 0.0


@dataclass(frozen=True)
class Replay:
    """Per-request decisions and per-call records of one scenario's replay.

    `call_records` holds the calls in the order the stages made them (RECORD_COLUMNS: no `cost_usd`, and
    `model` an Enum of the policy's names, or a String); `calls` is the calls' table (CALL_COLUMNS, `model` a
    String) in (rid, seq, kind) order, built on first use. The figures (sums, counts, loads) read the
    records in any order, so a replay asked only for its summary never sorts its calls, names them or
    converts their cost (20M calls for a sticky fan-out on 10M requests); the tables written out (--save,
    --decisions, the report) read `calls`."""

    scenario: Scenario
    decisions: pl.DataFrame
    call_records: pl.DataFrame
    coverage: Coverage
    price_sources: dict[str, str]
    # Per `rid`, the request's row id in the data's compiled layout (None without one): how the analyses
    # after a replay read its answers by position (simulator.core.calls.with_layout_rows).
    layout_rows: np.ndarray | None = field(default=None, compare=False, repr=False)
    # Traffic with sessions: each request's previous turn (`rid`, `previous`: simulator.core.sessions) and
    # the replayed model calls with cached input tokens (sessions.EXPOSURE_SCHEMA), so a repriced replay
    # (simulator.analyses.whatif) or a sweep's mixture of two replays bills its prompt-cache losses again.
    turns: pl.DataFrame | None = field(default=None, compare=False, repr=False)
    exposure: pl.DataFrame | None = field(default=None, compare=False, repr=False)
    # Per model, the calls that lost their prompt cache but are priced at their recorded cost, which cannot
    # be split into input and cached rates: no loss is billed for them (a warning says so).
    cache_loss_unbilled: dict[str, int] = field(default_factory=dict, compare=False)
    # The selected requests as the policy was evaluated on them: `__rid` (row i is request i), `__plan` and the
    # traffic columns its rules and answers read (`ts` in UTC). The warnings count rule matches on them
    # rather than reading those columns from the data again (simulator.core.results.replay_part).
    requests: pl.DataFrame | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def calls(self) -> pl.DataFrame:
        """The call records in (rid, seq, kind) order (sort_calls) as the calls' table (CALL_COLUMNS), once."""
        return sort_calls(self.call_records).with_columns(
            pl.col("model").cast(pl.String), usd(pl.col("cost_nano_usd")).alias("cost_usd")).select(CALL_COLUMNS)

    def cache_state(self) -> CacheState | None:
        """What the prompt-cache loss reads of this replay (None without sessions)."""
        if self.turns is None:
            return None
        return CacheState(kept=self.decisions.select("rid"),
                          called=calls_to_models(self.call_records),
                          exposure=self.exposure, models=tuple(self.scenario.policy.models()))


@dataclass(frozen=True)
class CompiledPolicy:
    """The scenario's predicates, checked against the data's columns."""

    rules: tuple[Predicate, ...]
    plans: tuple[tuple[str, tuple[Step, ...]], ...]
    accepts: dict[tuple[int, int], Predicate]  # (plan, step) -> accept predicate
    retry_when: Predicate | None
    retry: Retry | None  # the retry's targets and attempts; `retry_when` is its compiled predicate
    selects: dict[tuple[int, int], Predicate] = field(default_factory=dict)  # (plan, step) -> select.first
    best_by: dict[int, str] = field(default_factory=dict)  # plan -> column of `final: best`

    def step_reads(self, plan_index: int) -> dict[str, frozenset[str]]:
        """Per named step of the plan, the columns of its answer that later accept predicates read."""
        return self._step_reads.get(plan_index, {})

    @functools.cached_property
    def _step_reads(self) -> dict[int, dict[str, frozenset[str]]]:
        reads: dict[int, dict[str, frozenset[str]]] = {}
        for (plan, _), accept in self.accepts.items():
            for step, column in accept.step_reads:
                named = reads.setdefault(plan, {})
                named[step] = named.get(step, frozenset()) | {column}
        return reads

    @property
    def answer_columns(self) -> list[str]:
        """Outcome columns the engine must carry: the basics and whatever the predicates and selects read."""
        read = set(ANSWER_COLUMNS) | set(self.best_by.values())
        for predicate in [*self.accepts.values(), *self.selects.values(),
                          *([self.retry_when] if self.retry_when else [])]:
            read |= predicate.base_columns
        read |= {step.select.highest for _, steps in self.plans for step in steps
                 if step.select is not None and step.select.highest is not None}
        if any(step.race for _, steps in self.plans for step in steps):
            read.add("latency_ms")  # a race orders its answers by latency
        return sorted(read)


def _model_keys(policy) -> dict[str, str]:
    """Each model of the policy, with the first scenario key that names it."""
    keys: dict[str, str] = {}

    def key_of(plan, prefix: str, position: int, step: Step, call: int) -> str:
        if plan.use:
            return f"{prefix}.use"
        kind = "model" if step.model is not None else "parallel" if step.parallel is not None else "race"
        return f"{prefix}.cascade[{position}].{kind}" + ("" if step.model is not None else f"[{call}]")

    for index, rule in enumerate(policy.rules):
        for position, step in enumerate(rule.steps):
            for call, model in enumerate(step.calls):
                keys.setdefault(model, key_of(rule, f"policy.rules[{index}]", position, step, call))
    for position, step in enumerate(policy.default.steps):
        for call, model in enumerate(step.calls):
            keys.setdefault(model, key_of(policy.default, "policy.default", position, step, call))
    for position, model in enumerate(policy.retry.to if policy.retry else ()):
        keys.setdefault(model, f"policy.retry.to[{position}]")
    return keys


def compile_policy(scenario: Scenario, traffic_schema: pl.Schema, outcome_schema: pl.Schema,
                   outcome_models: list[str], slices: list[str] | None = None) -> CompiledPolicy:
    """Checks the policy against the data (models, columns, types, slices) and returns its predicates."""
    policy = scenario.policy

    def at(key: str) -> str:
        return f"scenario '{scenario.name}', key '{key}'"

    for model, key in _model_keys(policy).items():
        if model == CACHE_LOSS_LINE:
            raise RoutesimError(f"model '{model}' has the name of the cost line of prompt-cache losses, so by_model "
                                "would mix their calls", where=at(key), fix="rename the model in the data")
        if model not in outcome_models:
            known = ", ".join(sorted(outcome_models)) or "none (the outcomes are empty)"
            raise RoutesimError(
                f"model '{model}' is used by the policy but has no outcomes in the data.{did_you_mean(model, outcome_models)}",
                where=at(key), fix=f"models in the data: {known}")
    for _, steps in policy.plans():
        for step in steps:
            if step.checker and step.checker.name in (*outcome_models, CACHE_LOSS_LINE):
                raise RoutesimError(f"checker '{step.checker.name}' has the name of a model in the data (or of the "
                                    "prompt-cache loss line), so its calls would be counted as that model's",
                                    where=at("checker.name"),
                                    fix="give the checker a name of its own, e.g. 'judge'")
    checkers = policy.checkers()
    seen: set[str] = set()
    for _, overhead in policy.overheads():
        if overhead.name in (*outcome_models, CACHE_LOSS_LINE) or overhead.name in checkers or overhead.name in seen:
            raise RoutesimError(f"router overhead '{overhead.name}' shares its name with a model, a checker or another "
                                "overhead (or the prompt-cache loss line), so by_model would mix their calls",
                                where=at("overhead.name"),
                                fix="give each overhead a name of its own, e.g. 'router' or 'classifier'")
        seen.add(overhead.name)
    if slices is not None:
        for name in scenario.quality_bar.slices:
            if name not in slices:
                raise RoutesimError(f"quality_bar.slices names '{name}', which is no slice of the data."
                                    f"{did_you_mean(name, slices)}", where=at(f"quality_bar.slices.{name}"),
                                    fix=f"slices: {', '.join(sorted(slices))}")
    answer_schema = {**dict(traffic_schema), **dict(outcome_schema)}  # the outcome's value wins a shared name

    def predicate(text: str, key: str, schema: dict) -> Predicate:
        parsed = parse_predicate(text, key=at(key), columns=sorted(schema))
        parsed.check_types(schema)
        return parsed

    traffic_columns = sorted(traffic_schema)
    rules = tuple(parse_predicate(rule.when, key=at(f"policy.rules[{index}].when"), columns=traffic_columns)
                  for index, rule in enumerate(policy.rules))
    check_types(list(rules), dict(traffic_schema))
    plans = tuple(policy.plans())
    accepts, selects, best_by = {}, {}, {}

    def numeric_column(column: str, key: str) -> None:
        dtype = dict(outcome_schema).get(column)
        if dtype is None or not dtype.is_numeric():
            numeric = sorted(name for name, kind in dict(outcome_schema).items() if kind.is_numeric())
            raise RoutesimError(f"{'best_by' if key.endswith('best_by') else 'select.highest'} reads '{column}', "
                                "which is no numeric outcome column."
                                f"{did_you_mean(column, numeric)}", where=at(key),
                                fix=f"numeric outcome columns: {', '.join(numeric)}")

    for plan_index, ((_, steps), spec) in enumerate(zip(plans, policy.plan_specs())):
        prefix = f"policy.rules[{plan_index}]" if plan_index < len(policy.rules) else "policy.default"
        if spec.best_by is not None:
            numeric_column(spec.best_by, f"{prefix}.best_by")
            best_by[plan_index] = spec.best_by
        for step_index, step in enumerate(steps):
            if step.accept is not None:
                earlier = frozenset(s.name for s in steps[:step_index] if s.name is not None)
                key = f"{prefix}.cascade[{step_index}].accept"
                parsed = parse_predicate(step.accept, key=at(key), columns=sorted(answer_schema), steps=earlier)
                parsed.check_types({**answer_schema, **{step_column(name, column): answer_schema[column]
                                                        for name, column in parsed.step_reads}})
                accepts[plan_index, step_index] = parsed
            if step.select is not None and step.select.first is not None:
                selects[plan_index, step_index] = predicate(step.select.first,
                                                            f"{prefix}.cascade[{step_index}].select.first",
                                                            answer_schema)
            elif step.select is not None:
                numeric_column(step.select.highest, f"{prefix}.cascade[{step_index}].select.highest")
    retry_when = predicate(policy.retry.when, "policy.retry.when", answer_schema) if policy.retry else None
    if policy.sticky == "session":  # one plan per model, for later turns of a session that escalated
        plans += tuple((sticky_label(model), (Step(model=model, service_tier="standard"),)) for model in policy.models())
    return CompiledPolicy(rules=rules, plans=plans, accepts=accepts, retry_when=retry_when, retry=policy.retry,
                          selects=selects, best_by=best_by)


def sticky_label(model: str) -> str:
    """The plan a sticky session's later turns take when its first turn escalated to `model`."""
    return f"sticky: {model}"


def data_values(frame: pl.LazyFrame, column: str) -> list[str]:
    """The distinct values of a string column of the data (models, slices), sorted."""
    return sorted(frame.select(pl.col(column).unique()).collect()[column].drop_nulls().to_list())


def with_utc_ts(frame: pl.LazyFrame) -> pl.LazyFrame:
    """`ts` in UTC: the contract says UTC, so a naive column is taken as UTC and an aware one converted."""
    zone = getattr(frame.collect_schema()["ts"], "time_zone", None)
    ts = pl.col("ts")
    return frame.with_columns(ts.dt.replace_time_zone("UTC") if zone is None else ts.dt.convert_time_zone("UTC"))


def _in_arrival_order(requests: pl.DataFrame) -> bool:
    """Whether requests already run by (ts, request_id), as logs usually do: then sorting can be skipped."""
    ordered = requests.select(
        ((pl.col("ts").diff() > 0) | ((pl.col("ts").diff() == 0) & (pl.col("request_id") > pl.col("request_id").shift())))
        .fill_null(True).all())
    return bool(ordered.item())


def _request_source(data: Dataset, columns: list[str], chunk: Chunk | None = None) -> pl.LazyFrame:
    """The traffic to select requests from: the layout's requests with their row id `LAYOUT_ROW` when the
    data has a layout holding `columns` (it never holds prompt text), else the traffic file itself; with
    `chunk`, only the chunk's requests (simulator.core.chunks), in the same order."""
    source, kept = data.traffic, columns
    if data.layout is not None:
        requests = data.layout.scan_requests()
        if set(columns) <= set(requests.collect_schema().names()):
            source, kept = requests.with_row_index(LAYOUT_ROW), [*columns, LAYOUT_ROW]
    return (source if chunk is None else chunk.of_requests(source)).select(kept)


def request_rows(data: Dataset) -> int:
    """How many requests the data holds: the row numbers a Chunk's `rows` run over."""
    return _request_source(data, ["ts"]).select(pl.len()).collect().item()


def count_in_window(scenario: Scenario, data: Dataset, chunk: Chunk | None = None) -> int:
    """How many of the data's requests (of `chunk`) fall in the scenario's window."""
    return in_window(scenario, _request_source(data, ["ts"], chunk)).select(pl.len()).collect().item()


def select_requests(scenario: Scenario, data: Dataset, columns: list[str],
                    chunk: Chunk | None = None) -> tuple[pl.DataFrame, int]:
    """The window's requests (or the scenario's seeded sample of them), numbered by `__rid` in ts order, and
    how many requests the window held before sampling. From a layout they also carry `LAYOUT_ROW`. With
    `chunk`, only the data's requests in that chunk (simulator.core.chunks) are considered."""
    # A chunk of whole sessions is a filter over every request: the streaming engine applies it batch by
    # batch, where the in-memory engine would first read every request's columns (7 GB at 100M requests).
    requests = in_window(scenario, _request_source(data, columns, chunk)).collect(
        engine="auto" if chunk is None else "streaming")
    if not _in_arrival_order(requests):
        requests = requests.sort("ts", "request_id")
    window_count = requests.height
    if scenario.sample and scenario.sample.requests < requests.height:
        requests = requests[sample_rows(requests["request_id"], scenario.sample.requests, scenario.sample.seed)]
    if requests.height == 0:
        raise no_requests(scenario)
    return requests.with_row_index("__rid"), window_count


def in_window(scenario: Scenario, traffic: pl.LazyFrame) -> pl.LazyFrame:
    """The traffic rows of the scenario's window (all of them without one), `ts` in UTC."""
    traffic = with_utc_ts(traffic)
    if scenario.window:
        start = pl.lit(scenario.window.start).cast(pl.Datetime("us", "UTC"))
        end = pl.lit(scenario.window.end).cast(pl.Datetime("us", "UTC"))
        traffic = traffic.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
    return traffic


def no_requests(scenario: Scenario) -> RoutesimError:
    """The error of a replay with no request to replay: with a window, the window is where to look; without
    one, every request of the data was taken, so the data holds none."""
    if scenario.window:
        return RoutesimError(f"no requests to replay between {scenario.window.start} and {scenario.window.end}",
                             where=f"scenario '{scenario.name}', key 'window'",
                             fix="widen the window or check the data's timestamps")
    return RoutesimError("no requests to replay: the data holds none (its traffic has no rows)",
                         where=f"scenario '{scenario.name}', data {scenario.data}",
                         fix="point 'data' at a folder whose traffic holds requests, or import logs into this one "
                             "(routesim import)")


def missing_outcomes(scenario: Scenario, by_model: dict[str, int], example: tuple[str, str]) -> RoutesimError:
    """The error of a replay that needs outcomes the data lacks: requests per model and one example."""
    counts = ", ".join(f"{model}: {count}" for model, count in by_model.items())
    return RoutesimError(
        f"the policy needs outcomes that are missing from the data (requests per model: {counts}; "
        f"e.g. request {example[0]} has no answer from {example[1]})",
        where=f"scenario '{scenario.name}', data {scenario.data}",
        fix="add the missing outcomes, or set 'on_missing: skip' to leave those requests out and report coverage")


def all_skipped(scenario: Scenario, by_model: dict[str, int]) -> RoutesimError:
    counts = ", ".join(f"{model}: {count}" for model, count in by_model.items())
    return RoutesimError(f"every request was skipped for missing outcomes ({counts}); nothing is left to replay",
                         where=f"scenario '{scenario.name}', data {scenario.data}",
                         fix="add the missing outcomes, or change the policy or the window")


# A pass of rule evaluation holds at most this many booleans (requests x rules of the pass) at once.
RULE_CELLS_PER_PASS = 1 << 26
RULES_PER_PASS = 1024  # and at most this many rules


SAMPLE_PURPOSE = "sample"


def sample_rows(request_ids: pl.Series, size: int, seed: int) -> np.ndarray:
    """Positions (ascending) of the `size` requests a scenario's `sample` replays: those with the smallest
    keyed draw u(seed, "sample", request_id) (simulator.core.draws), ties by request_id.

    A uniform random subset without replacement (the bottom-k of independent uniforms), and each request's
    draw is its own: the choice does not depend on the requests' order or on how the work is split, and a
    larger sample with the same seed contains the smaller one.
    """
    draws = pl.DataFrame({"__draw": keyed_uniform(seed, SAMPLE_PURPOSE, request_ids), "request_id": request_ids})
    chosen = draws.with_row_index("__row").sort("__draw", "request_id").head(size)["__row"].to_numpy()
    return np.sort(chosen)


def assign_plans(requests: pl.DataFrame, rules: tuple[Predicate, ...]) -> pl.DataFrame:
    """First matching rule's plan, else the default plan (numbered after the rules), as `__plan` (UInt32).

    Rules are compiled once and evaluated together, never as a nested when/then chain (whose memory grew
    with the square of the rule count). Rules of the form `column = literal` become one lookup table
    per column (value -> first rule), joined to the requests. The others are evaluated in passes of up
    to RULES_PER_PASS over the requests no earlier rule has matched, one select per pass, each rule giving
    the rows where it holds. A request's plan is the least rule index found either way. Time and memory
    are linear in the rule count.
    """
    first = np.full(requests.height, len(rules), dtype=np.int64)
    general = []
    lookups: dict[str, list[tuple[object, int]]] = {}
    schema = requests.schema
    for index, rule in enumerate(rules):
        if rule.equals is not None and _exact_lookup(schema[rule.equals[0]], rule.equals[1]):
            lookups.setdefault(rule.equals[0], []).append((rule.equals[1], index))
        else:
            general.append(index)
    for column, pairs in lookups.items():
        dtype = schema[column]
        table = (pl.DataFrame({column: [value for value, _ in pairs], "__rule": [index for _, index in pairs]},
                              schema={column: _lookup_dtype(dtype), "__rule": pl.Int64}, strict=False)
                 .with_columns(pl.col(column).cast(dtype, strict=False))
                 .drop_nulls(column)  # a literal the column's type cannot hold equals none of its values
                 .group_by(column).agg(pl.col("__rule").min()))
        found = requests.select(column).join(table, on=column, how="left", maintain_order="left")["__rule"]
        first = np.minimum(first, found.fill_null(len(rules)).to_numpy())
    per_pass = max(1, min(RULES_PER_PASS, RULE_CELLS_PER_PASS // max(requests.height, 1)))
    columns = ["__rid", *sorted(set().union(*(rules[index].columns for index in general)))]
    for start in range(0, len(general), per_pass):
        chunk = general[start:start + per_pass]
        open_rows = np.flatnonzero(first > chunk[0])  # rows an earlier rule matched are settled
        if open_rows.size == 0:
            break
        rows = requests.select(columns)[open_rows]
        held = rows.select([expression.fill_null(False).arg_true().implode().alias(str(offset))
                            for offset, expression in enumerate(sql_exprs([rules[index] for index in chunk]))])
        for index, positions in zip(chunk, held.row(0)):
            if positions:
                matched = open_rows[np.asarray(positions, dtype=np.int64)]
                first[matched] = np.minimum(first[matched], index)
    return requests.with_columns(pl.Series("__plan", first, dtype=pl.UInt32))


def _exact_lookup(dtype: pl.DataType, value: object) -> bool:
    """Whether `column = value` holds exactly when the column's value equals `value` cast to its type:
    whole numbers on integer columns, numbers on float columns and strings on string columns."""
    if isinstance(value, str):
        return dtype == pl.String
    if isinstance(value, int):
        return dtype.is_integer() or (dtype.is_float() and abs(value) < 2**53)
    return dtype.is_float()


def _lookup_dtype(dtype: pl.DataType) -> pl.DataType:
    return pl.String if dtype == pl.String else (pl.Float64 if dtype.is_float() else pl.Int64)


class Answers:
    """The outcomes the policy may need, split by (model, sample) so each step is a join on `rid`.

    Each answer carries the outcome columns and, for predicates, the traffic columns they read; where
    both have a column (input_tokens), the outcome's value is the one an answer carries.
    """

    PRICED = ["model", "sample", "latency_ms", "cost_usd"]

    def __init__(self, data: Dataset, requests: pl.DataFrame, slots: set[tuple[str, int]], columns: list[str]):
        outcome_names = data.outcomes.collect_schema().names()
        traffic_extra = [name for name in columns if name not in outcome_names]
        priced = [*self.PRICED, *token_columns(outcome_names)]
        outcome_columns = list(dict.fromkeys(["request_id", *priced,
                                              *[name for name in columns if name in outcome_names]]))
        self._layout = data.layout if LAYOUT_ROW in requests.columns else None
        self._kept_rids: np.ndarray | None = None  # see keep_for
        self._kept: dict[tuple[str, int], pl.DataFrame] = {}
        if self._layout is not None:
            # Read from the layout when a step asks, for the requests reaching it: a step that few requests
            # reach (an escalation, a retry, a rare rule's model) never holds every request's answers.
            self._layout_rows = requests[LAYOUT_ROW].to_numpy()
            self._values = outcome_columns[3:]
            self._beside = requests.select(traffic_extra)
            return
        self._slots, self._empty = self._joined(data, requests, slots, outcome_columns, traffic_extra)
        # A slot with an answer for every request is reached by position: row_of[rid] is the request's row
        # in the slot, so joining it to requests is a gather instead of a hash join.
        self._row_of = {}
        for key, slot in self._slots.items():
            if slot.height == requests.height:
                row_of = np.empty(slot.height, dtype=np.int64)
                row_of[slot["__rid"].to_numpy()] = np.arange(slot.height)
                self._row_of[key] = row_of

    def _gathered(self, rows: pl.DataFrame, model: str, sample: int) -> pl.DataFrame:
        """`rows` with their (model, sample) answers read from the layout, where they are aligned with the
        requests' row ids: a gather at LAYOUT_ROW instead of a join on the string request_id. Where a
        request has no such answer (or the data no such slot), its answer columns are null and PRESENT false."""
        layout, rids = self._layout, rows["__rid"].to_numpy()
        # Where the data has no such slot, any slot is read for its columns' types and nulled: every model of
        # the policy has a sample 0 in the whole data folder (compile_policy checks it), but a shard of it may
        # hold no answer of a model at all.
        known = (model, sample) in layout.slots
        picked = self._read((model, sample) if known else (model, 0) if (model, 0) in layout.slots
                            else layout.slots[0], rids)
        if not known:
            picked = picked.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in picked.schema.items()
                                         ).with_columns(pl.lit(False).alias(PRESENT))
        present = pl.col(PRESENT)
        beside = [self._beside[rids]] if self._beside.width else []  # a frame of no columns has no rows
        answer = pl.concat([picked, *beside], how="horizontal").select(
            pl.when(present).then(pl.lit(model)).alias("model"),
            pl.when(present).then(pl.lit(sample, layout.sample_dtype)).alias("sample"),
            pl.exclude(PRESENT), present)
        # A column `rows` already has (a traffic column the answers also carry) keeps the value it has.
        return pl.concat([rows, answer.drop([name for name in answer.columns if name in rows.columns])],
                         how="horizontal")

    def keep_for(self, rids: np.ndarray) -> None:
        """From now on, each slot's first read also reads the answers of the requests `rids` (ascending) and
        keeps them, so that their own joins, made later, take them from memory. A sticky replay routes its
        sessions' later turns (a fifth of the embedded week's requests) in a second pass after their first
        turns, and each pass decoded every slot's whole span of the layout file again."""
        if self._layout is not None and rids.size:
            self._kept_rids, self._kept = rids.astype(np.int64, copy=False), {}

    def _read(self, slot: tuple[str, int], rids: np.ndarray) -> pl.DataFrame:
        """The slot's answer columns and PRESENT at the requests `rids`, in their order (see keep_for)."""
        kept = self._kept_rids
        if kept is not None and slot not in self._kept:  # the slot's first read: keep the later requests' rows
            picked, self._kept[slot] = self._layout.gather_each(
                *slot, self._values, [self._layout_rows[rids], self._layout_rows[kept]])
            return picked
        if kept is not None:
            at = np.minimum(np.searchsorted(kept, rids), kept.size - 1)
            if bool((kept[at] == rids).all()):  # every request asked for is a kept one
                return take(self._kept[slot], at)
        return self._layout.gather(*slot, self._values, self._layout_rows[rids])

    @staticmethod
    def _joined(data: Dataset, requests: pl.DataFrame, slots: set[tuple[str, int]], outcome_columns: list[str],
                traffic_extra: list[str]) -> tuple[dict[tuple[str, int], pl.DataFrame], pl.DataFrame]:
        """Each slot cut out of the outcomes joined to the requests on request_id (data without a layout)."""
        models = sorted({model for model, _ in slots})
        outcomes = (data.outcomes.filter(pl.col("model").is_in(models)).select(outcome_columns)
                    .with_columns(pl.col("model").cast(pl.Enum(models))))
        keyed = requests.lazy().select("request_id", "__rid", *traffic_extra)
        # The streaming engine joins in batches: a third of the in-memory engine's peak on 10M requests.
        joined = (outcomes.join(keyed, on="request_id", how="inner").drop("request_id")
                  .with_columns(pl.lit(True).alias(PRESENT)).collect(engine="streaming"))
        # Every slot the policy can reach is known from its shape, so the joined frame can be dropped
        # once they are cut out of it.
        found = {(model, sample): joined.filter((pl.col("model") == model) & (pl.col("sample") == sample))
                 .with_columns(pl.lit(model).alias("model")) for model, sample in sorted(slots)}
        return found, joined.clear().with_columns(pl.col("model").cast(pl.String))

    def join(self, rows: pl.DataFrame, model: str, sample: int) -> pl.DataFrame:
        """`rows` with the (model, sample) answer of each request beside it, and PRESENT false where none."""
        if self._layout is not None:
            return self._gathered(rows, model, sample)
        slot = self._slots.get((model, sample), self._empty)
        row_of = self._row_of.get((model, sample))
        if row_of is not None and set(rows.columns) & set(slot.columns) == {"__rid"}:
            return pl.concat([rows, slot.drop("__rid")[row_of[rows["__rid"].to_numpy()]]], how="horizontal")
        joined = rows.join(slot, on="__rid", how="left", suffix="__new", maintain_order="left")
        return joined.with_columns(pl.col(PRESENT).fill_null(False))


def reachable_slots(policy: CompiledPolicy) -> set[tuple[str, int]]:
    """Every (model, sample) a request can reach: the k-th call of a model reads its sample k."""
    slots = set()
    most_plan_calls: dict[str, int] = {}
    for _, steps in policy.plans:
        calls: dict[str, int] = {}
        for step in steps:
            for model in step.calls:
                slots.add((model, calls.get(model, 0)))
                calls[model] = calls.get(model, 0) + 1
        for model, count in calls.items():
            most_plan_calls[model] = max(most_plan_calls.get(model, 0), count)
    if policy.retry is not None:
        for model in set(policy.retry.to):
            for sample in range(most_plan_calls.get(model, 0) + policy.retry.to.count(model)):
                slots.add((model, sample))
    return slots


def _record_calls(run: "_Run", part: pl.DataFrame, *, model: str, kind: str, seq: pl.Expr, service_tier: str,
                  checker=None) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Prices the calls of `model` in `part` (its answers) on `service_tier` by `run.sheet` and returns it
    with `__call_cost`/`__call_latency`, plus call rows. A batch answer carries no meaningful latency: its
    call's latency is null, and so is its request's. With `run.exposed` (traffic with sessions), the calls
    with cached input tokens are appended to it with what losing their prompt cache would cost
    (simulator.core.sessions.EXPOSURE_SCHEMA)."""
    part = part.with_columns(pl.lit(service_tier).alias("__service_tier"))
    exposed = run.exposed
    priced = price_calls(part, run.sheet_of(model), recorded="cost_usd", into="__model_cost",
                         source_into="__price_source", tier="__service_tier",
                         cache_loss_into=None if exposed is None else "__if_lost", asked_by=run.tier_asked_by)
    if exposed is not None:
        # Only the exposure's columns are filtered, not every column of the answers.
        exposed.append(priced.select(
            pl.col("__rid").alias("rid"), seq.alias("seq"), run.call_name(model), pl.col("__if_lost").alias("loss"),
            *_branch_of(priced), pl.col("cached_input_tokens").fill_null(0).alias("__cached"))
            .filter(pl.col("__cached") > 0).drop("__cached"))
    latency = pl.lit(None, pl.Float64) if service_tier == BATCH else pl.col("latency_ms").cast(pl.Float64)
    # Reasoning is part of output_tokens (null or absent = 0), kept per call for by_model.
    reasoning = (pl.col("reasoning_output_tokens").fill_null(0) if "reasoning_output_tokens" in priced.columns
                 else pl.lit(0)).cast(pl.Int64)
    calls = [priced.select(pl.col("__rid").alias("rid"), seq.alias("seq"), run.call_name(model),
                           pl.lit(kind, CALL_KIND).alias("kind"), pl.col("__model_cost").alias("cost_nano_usd"),
                           latency.alias("latency_ms"), pl.col("__price_source").alias("price_source"),
                           pl.col("input_tokens").cast(pl.Int64), pl.col("output_tokens").cast(pl.Int64),
                           reasoning.alias("reasoning_output_tokens"), *_branch_of(priced))]
    cost = pl.col("__model_cost")
    if checker is not None:
        checker_cost = to_nano_usd(checker.cost_usd)
        calls.append(priced.select(pl.col("__rid").alias("rid"), seq.alias("seq"), run.call_name(checker.name),
                                   pl.lit("checker", CALL_KIND).alias("kind"),
                                   pl.lit(checker_cost, pl.Int64).alias("cost_nano_usd"),
                                   pl.lit(checker.latency_ms, pl.Float64).alias("latency_ms"),
                                   pl.lit(SOURCE_CHECKER, PRICE_SOURCE).alias("price_source"),
                                   pl.lit(None, pl.Int64).alias("input_tokens"),
                                   pl.lit(None, pl.Int64).alias("output_tokens"),
                                   pl.lit(None, pl.Int64).alias("reasoning_output_tokens"), *_branch_of(priced)))
        cost, latency = cost + checker_cost, latency + checker.latency_ms
    return priced.with_columns(cost.alias("__call_cost"), latency.alias("__call_latency")), calls


def calls_to_models(calls: pl.DataFrame) -> pl.DataFrame:
    """`rid` and `model` of the model calls (MODEL_CALLS) among call rows: what a prompt-cache loss reads of
    them (sessions.CacheState.called). Only the three columns are filtered, not every column of 20M calls."""
    return calls.select("rid", "model", "kind").filter(pl.col("kind").is_in(MODEL_CALLS)).drop("kind")


def _accumulate() -> list[pl.Expr]:
    return [(pl.col("__cost") + pl.col("__call_cost")).alias("__cost"),
            (pl.col("__latency") + pl.col("__call_latency")).alias("__latency")]


def _with_plan_models(finals: pl.DataFrame, policy: CompiledPolicy, run: _Run) -> pl.DataFrame:
    """Adds `__models`, the number (in `run.model_lists`) of the models the plan stage called: fixed by the
    plan and the number of steps taken.

    Every distinct (plan, steps taken) prefix of models is numbered once, so a request's number is a
    gather at its plan's prefix: list building stays out of the per-step joins. Plans of thousands of
    rules share a few prefixes (`use: small`), so the list of prefixes stays short.
    """
    index_of = []  # per plan, the prefix number of each number of steps taken
    for _, steps in policy.plans:
        calls = [step.calls for step in steps]  # a best-of-n, fan-out or race step makes several calls
        index_of.append([run.models_number(sum(calls[:taken], ())) for taken in range(1, len(steps) + 1)])
    longest = max(len(indices) for indices in index_of)
    table = np.full((len(index_of), longest), -1, dtype=np.int64)
    for plan_index, indices in enumerate(index_of):
        table[plan_index, :len(indices)] = indices
    plan, taken = finals["__plan"].to_numpy(), finals["__steps"].to_numpy()
    return finals.with_columns(pl.Series("__models", table[plan, taken - 1], dtype=pl.UInt32))


class _Run:
    """Mutable bookkeeping of one replay: call records and missing outcomes."""

    def __init__(self, scenario: Scenario, sheet: PriceSheet | None, answers: Answers | None, keep: list[str],
                 answer_only: list[str]):
        self.scenario = scenario
        self.sheet = sheet
        self._sheets: dict[str, PriceSheet] = {}  # sheet_of
        self.answers = answers
        self.keep = keep  # columns carried per request between stages
        self.answer_only = answer_only  # the carried columns that come with an answer
        self.calls: list[pl.DataFrame] = []
        self.missing: list[pl.DataFrame] = []
        # Traffic with sessions: the model calls that would lose their prompt cache (_record_calls).
        self.exposed: list[pl.DataFrame] | None = None
        # The distinct lists of models called, numbered: a request carries its list's number (`__models`)
        # until its decision is built, not the list (putting 10M lists of strings in rid order took 1.5 s).
        self.model_lists: dict[tuple[str, ...], int] = {}
        # Call records name their model (or checker, or router) as an Enum of every name the policy can
        # call, made String once every call is recorded (_result): concatenating, filtering and sorting
        # them moves 32-bit codes instead of strings from every stage's pieces (a sort's gather of 20M
        # calls of a sticky fan-out: 2.2 s as strings, 0.5 s as codes).
        policy = scenario.policy
        names = {*policy.models(), *policy.checkers(), *(overhead.name for _, overhead in policy.overheads())}
        self.call_names = pl.Enum(sorted(names))

    def sheet_of(self, model: str) -> PriceSheet | None:
        """The price sheet for a frame of `model`'s calls: its entries alone (PriceSheet.only). Every piece
        of calls a stage records has one model, so its prices need not be looked up among every model's."""
        if self.sheet is None:
            return None
        if model not in self._sheets:
            self._sheets[model] = self.sheet.only(model)
        return self._sheets[model]

    def tier_asked_by(self, model: str, tier: str) -> list[tuple[str, str]]:
        """(place, key) of each scenario key that puts `model`'s calls on service tier `tier`, for the error of
        calls its price entry cannot price on that tier (simulator.core.prices.price_calls)."""
        origin = self.scenario.origin("data")
        place = str(origin.file) if origin else f"scenario '{self.scenario.name}'"
        return [(f"{place}, key '{key}'", key) for key in self.scenario.policy.service_tier_keys(model, tier)]

    def call_name(self, name: str) -> pl.Expr:
        """The call records' `model` column: `name`, as an Enum of the policy's names (see call_names)."""
        return pl.lit(name, self.call_names).alias("model")

    def models_number(self, models: tuple[str, ...]) -> int:
        """The number of this list of models called (numbered on first sight)."""
        return self.model_lists.setdefault(models, len(self.model_lists))

    def models_called(self) -> pl.Series:
        """The lists of models called, as List(String), at their numbers."""
        return pl.Series("models_called", [list(models) for models in self.model_lists], dtype=pl.List(pl.String))

    def note_missing(self, rows: pl.DataFrame, model: str) -> None:
        if rows.height:
            self.missing.append(rows.select("__rid", "request_id", pl.lit(model).alias("model"), *_branch_of(rows)))


def _step_groups(policy: CompiledPolicy, step_index: int) -> tuple[list[int], list[int]]:
    """Plans whose step `step_index` is the same call (model, sample, checker, service tier, accept, last or
    not), grouped:
    the group of each plan (-1 for plans without that step) and one plan of each group.

    Many rules share a plan shape (`use: small`), so a step is replayed once per group of equal steps,
    not once per rule.
    """
    groups: dict[tuple, int] = {}
    group_of, representative = [], []
    for plan_index, (_, steps) in enumerate(policy.plans):
        if step_index >= len(steps):
            group_of.append(-1)
            continue
        step = steps[step_index]
        accept = policy.accepts.get((plan_index, step_index))
        named = policy.step_reads(plan_index).get(step.name, frozenset()) if step.name else frozenset()
        key = (step.calls, step.race is not None, _samples_of(steps, step_index), step.checker, step.service_tier,
               step_index == len(steps) - 1, None if accept is None else accept.text, step.select,
               step.name if named else None, named, policy.best_by.get(plan_index))
        if key not in groups:
            groups[key] = len(representative)
            representative.append(plan_index)
        group_of.append(groups[key])
    return group_of, representative


def _samples_of(steps: tuple[Step, ...], step_index: int) -> tuple[int, ...]:
    """The sample each call of a plan's step reads: how often the plan called that model before (earlier
    steps, and earlier calls of the same step)."""
    made: dict[str, int] = {}
    for earlier in steps[:step_index]:
        for model in earlier.calls:
            made[model] = made.get(model, 0) + 1
    samples = []
    for model in steps[step_index].calls:
        samples.append(made.get(model, 0))
        made[model] = made.get(model, 0) + 1
    return tuple(samples)


def _several_calls(run: _Run, rows: pl.DataFrame, step: Step, samples: tuple[int, ...], select: Predicate | None,
                   seq: pl.Expr) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """A step of several calls at once (best-of-n, fan-out or race), one answer kept by its `select`.

    Returns the rows that had every answer, with the kept answer, `__call_cost` (the calls' sum) and
    `__call_latency` (the slowest call, checker included; in a race the winner's), plus the call records.
    A request missing an answer is noted missing for the first such call in list order. Vectorised: the
    answers line up row by row, and each request's kept one is the first in the select's order, chosen
    column by column.
    """
    joined = [run.answers.join(rows, model, sample) for model, sample in zip(step.calls, samples)]
    # Each joined frame keeps `rows`' order, so presence lines up row by row across the calls.
    complete = np.ones(rows.height, dtype=bool)
    for model, frame in zip(step.calls, joined):
        absent = complete & ~frame[PRESENT].to_numpy()
        if absent.any():
            run.note_missing(rows.filter(pl.Series(absent)), model)
            complete &= ~absent
    count = len(step.calls)
    stacked, calls = [], []
    every = bool(complete.all())
    for position, frame in enumerate(joined):
        # A filter keeps `rows`' order, so the answers of every call line up row by row.
        called, made = _record_calls(run, frame if every else frame.filter(pl.Series(complete)),
                                     model=step.calls[position], kind="step", seq=seq,
                                     service_tier=step.service_tier, checker=step.checker)
        calls += made
        if step.race is not None:  # the first passing in latency order, ties in list order; else the last listed
            passing = (pl.col("hard_check_ok") & select.compile()).fill_null(False)
            order = pl.when(passing).then(pl.col("__call_latency")).otherwise(pl.lit(float("inf")))
            tie = pl.when(passing).then(pl.lit(position)).otherwise(pl.lit(2 * count - 1 - position))
        elif select is not None:  # first in list order passing its hard check and the predicate, else the last
            passing = (pl.col("hard_check_ok") & select.compile()).fill_null(False)
            order = pl.when(passing).then(pl.lit(position)).otherwise(pl.lit(2 * count - 1 - position))
            tie = pl.lit(position)
        else:  # the highest value (nulls lowest), ties to the earlier call
            value = pl.col(step.select.highest).cast(pl.Float64)
            order = pl.when(value.is_null()).then(pl.lit(float("inf"))).otherwise(-value)
            tie = pl.lit(position)
        stacked.append(called.with_columns(order.cast(pl.Float64).fill_null(float("inf")).alias("__order"),
                                           tie.cast(pl.Int64).alias("__tie")))
    # The columns `rows` came with (request_id among them) are the same in every call's frame: only the
    # answer's columns that go on with the request (run.keep) are chosen, with the call's latency.
    answered = [name for name in stacked[-1].columns
                if name not in rows.columns and name in run.keep and not name.startswith("__call_")]
    wide = pl.concat([stacked[-1].select(rows.columns),
                      *(frame.select(pl.col(*answered, "__call_latency", "__call_cost", "__order", "__tie")
                                     .name.suffix(f"@{position}")) for position, frame in enumerate(stacked))],
                     how="horizontal")
    slowest = pl.max_horizontal(f"__call_latency@{position}" for position in range(count))
    # A race's latency is its winner's; when no answer passes, the last model answers after the slowest.
    # Otherwise every call is waited for: the slowest (checkers included).
    latency = (pl.when(pl.col("__pick_order").is_finite()).then(pl.col("__call_latency")).otherwise(slowest)
               if step.race is not None else slowest)
    kept = _kept_answers(wide.lazy(), count, [*answered, "__call_latency"]).select(
        *rows.columns, *answered, pl.sum_horizontal(f"__call_cost@{position}" for position in range(count))
        .alias("__call_cost"), latency.alias("__call_latency"))
    return kept.collect(), calls


def _kept_answers(wide: pl.LazyFrame, count: int, answered: list[str]) -> pl.LazyFrame:
    """`wide` (each call's `answered` columns, `__order` and `__tie` suffixed `@position`) with each request's
    kept answer under the plain names, and `__pick_order`: the call whose (order, tie) comes first, as
    sorting by them ascending would put it (polars compares NaN as above every number). One pass per call:
    the answers are aligned row by row, so the choice is column by column, not a gather."""
    wide = wide.with_columns(pl.lit(0).alias("__pick"), pl.col("__order@0").alias("__pick_order"),
                             pl.col("__tie@0").alias("__pick_tie"))
    for position in range(1, count):
        order, tie = pl.col(f"__order@{position}"), pl.col(f"__tie@{position}")
        better = (order < pl.col("__pick_order")) | ((order == pl.col("__pick_order")) & (tie < pl.col("__pick_tie")))
        wide = wide.with_columns(pl.when(better).then(pl.lit(position)).otherwise(pl.col("__pick")).alias("__pick"),
                                 pl.when(better).then(order).otherwise(pl.col("__pick_order")).alias("__pick_order"),
                                 pl.when(better).then(tie).otherwise(pl.col("__pick_tie")).alias("__pick_tie"))

    def chosen(name: str) -> pl.Expr:
        expression = pl.col(f"{name}@{count - 1}")
        for position in range(count - 2, -1, -1):
            expression = pl.when(pl.col("__pick") == position).then(pl.col(f"{name}@{position}")).otherwise(expression)
        return expression.alias(name)

    return wide.with_columns(chosen(name) for name in answered)


def _overhead_stage(run: _Run, requests: pl.DataFrame, overheads: list[tuple[int, Overhead]]) -> pl.DataFrame:
    """Each request's routing overhead as its starting `__cost` and `__latency`, one call per decision.

    An overhead with a classifier `model` prices the request's own input tokens (none cached) and the
    classifier's `output_tokens` by the sheet, then adds its fixed `cost_usd`; requests pay the policy's
    overhead, then the overhead of every rule evaluated for them (rule i: plan index i or later).
    """
    cost, latency = pl.lit(0, pl.Int64), pl.lit(0.0)
    frame = requests
    for position, (first_plan, overhead) in enumerate(overheads):
        pays = pl.col("__plan") >= first_plan
        fixed = to_nano_usd(overhead.cost_usd)
        paying = frame.filter(pays)
        if overhead.model is not None:
            calls = paying.select("__rid", "request_id", "ts", pl.lit(overhead.model).alias("model"), "input_tokens",
                                  pl.lit(0, pl.Int64).alias("cached_input_tokens"),
                                  pl.lit(overhead.output_tokens, pl.Int64).alias("output_tokens"),
                                  pl.lit(None, pl.Float64).alias("__recorded"))
            priced = price_calls(calls, run.sheet, recorded="__recorded", into="__oh", source_into="__oh_source")
            priced = priced.select("__rid", (pl.col("__oh") + fixed).alias("__oh"), "__oh_source",
                                   pl.col("input_tokens").cast(pl.Int64).alias("__oh_input"))
        else:
            priced = paying.select("__rid", pl.lit(fixed, pl.Int64).alias("__oh"),
                                   pl.lit(SOURCE_FIXED, PRICE_SOURCE).alias("__oh_source"),
                                   pl.lit(None, pl.Int64).alias("__oh_input"))
        run.calls.append(priced.select(pl.col("__rid").alias("rid"),
                                       pl.lit(position - len(overheads), pl.Int32).alias("seq"),
                                       run.call_name(overhead.name), pl.lit("router", CALL_KIND).alias("kind"),
                                       pl.col("__oh").alias("cost_nano_usd"),
                                       pl.lit(overhead.latency_ms, pl.Float64).alias("latency_ms"),
                                       pl.col("__oh_source").alias("price_source"),
                                       # a classifier reads the request's input and writes its own output
                                       # tokens; a fixed overhead has none
                                       pl.col("__oh_input").alias("input_tokens"),
                                       pl.lit(overhead.output_tokens if overhead.model else None, pl.Int64)
                                       .alias("output_tokens"),
                                       pl.lit(None, pl.Int64).alias("reasoning_output_tokens")))
        frame = frame.join(priced.select("__rid", pl.col("__oh").alias(f"__oh_{position}")), on="__rid", how="left",
                           maintain_order="left")
        cost = cost + pl.col(f"__oh_{position}").fill_null(0)
        latency = latency + pl.when(pays).then(pl.lit(overhead.latency_ms)).otherwise(0.0)
    return frame.select(*REQUEST_IDENTITY, cost.alias("__cost"), latency.alias("__latency"))


def _plan_stage(run: _Run, requests: pl.DataFrame, policy: CompiledPolicy, progress: Progress,
                fork: _Fork | None = None) -> pl.DataFrame:
    """Walks every plan step by step; returns one row per request with its final plan answer.

    `requests` carries each request's starting `__cost` and `__latency` (its routing overhead). With `fork`
    (replay_forked), the requests whose answer is final at the fork's step go on in a second copy too."""
    frontier = requests
    decided: list[pl.DataFrame] = []
    longest = max(len(steps) for _, steps in policy.plans)
    for step_index in range(longest):
        progress(f"step {step_index + 1} of {longest}")
        next_frontier = []
        group_of, representative = _step_groups(policy, step_index)
        grouped = frontier.with_columns(pl.col("__plan").replace_strict(list(range(len(group_of))), group_of,
                                                                        return_dtype=pl.Int64).alias("__group"))
        for (group_index,), rows in grouped.partition_by("__group", as_dict=True, include_key=False).items():
            plan_index = representative[group_index]
            steps = policy.plans[plan_index][1]
            step = steps[step_index]
            if len(step.calls) > 1:
                called, calls = _several_calls(run, rows, step, _samples_of(steps, step_index),
                                               policy.selects.get((plan_index, step_index)),
                                               pl.lit(step_index, pl.Int32))
            else:
                joined = run.answers.join(rows, step.model, _samples_of(steps, step_index)[0])
                run.note_missing(joined.filter(~pl.col(PRESENT)), step.model)
                called, calls = _record_calls(run, joined.filter(pl.col(PRESENT)), model=step.model, kind="step",
                                              seq=pl.lit(step_index, pl.Int32), service_tier=step.service_tier,
                                              checker=step.checker)
            run.calls.extend(calls)
            if step_index == len(steps) - 1:
                final = pl.lit(True)
            else:
                final = pl.col("hard_check_ok") & policy.accepts[plan_index, step_index].compile()
            called = called.with_columns(*_accumulate(), final.alias("__final"),
                                         pl.lit(step_index + 1, pl.Int32).alias("__steps"))
            named = policy.step_reads(plan_index).get(step.name, frozenset()) if step.name else frozenset()
            called = called.with_columns(pl.col(column).alias(step_column(step.name, column)) for column in sorted(named))
            best_by = policy.best_by.get(plan_index)
            if best_by is not None:
                called = _keep_best(called, best_by, run.answer_only, first=step_index == 0)
            goes_on, going = ~pl.col("__final"), []
            if fork is not None and step_index == fork.step and group_of[fork.plan] == group_index:
                called, goes_on, going = fork.split(called)
            finished = called.filter("__final")
            if best_by is not None:  # the best answer among the steps called is the final one
                finished = finished.with_columns(pl.col(_best(column)).alias(column) for column in run.answer_only)
            decided.append(finished.select(*run.keep, "__steps"))
            # Earlier named steps' answers ("STEP.COLUMN") and the best answer so far go on with the request.
            carried = [name for name in called.columns
                       if name == BEST_VALUE or name.startswith("__best.") or ("." in name and not name.startswith("__"))]
            next_frontier.append(called.filter(goes_on).with_columns(*going).select(
                *requests.columns, *[name for name in carried if name not in requests.columns]))
        frontier = pl.concat(next_frontier, how="diagonal_relaxed") if next_frontier else frontier.clear()
    return _with_plan_models(pl.concat(decided, how="vertical"), policy, run)


def _best(column: str) -> str:
    return f"__best.{column}"


BEST_VALUE = "__best_value"


def _keep_best(called: pl.DataFrame, best_by: str, answer: list[str], *, first: bool) -> pl.DataFrame:
    """`final: best`: carries the answer with the highest `best_by` so far (nulls lowest; ties: the earlier
    step) as `__best.COLUMN` for every answer column, and its value as `__best_value`."""
    value = pl.col(best_by).cast(pl.Float64)
    if first:
        return called.with_columns(*(pl.col(column).alias(_best(column)) for column in answer),
                                   value.alias(BEST_VALUE))
    better = value.is_not_null() & (pl.col(BEST_VALUE).is_null() | (value > pl.col(BEST_VALUE)))
    return called.with_columns(*(pl.when(better).then(pl.col(column)).otherwise(pl.col(_best(column)))
                                 .alias(_best(column)) for column in answer),
                               pl.when(better).then(value).otherwise(pl.col(BEST_VALUE)).alias(BEST_VALUE))


def _retry_stage(run: _Run, finals: pl.DataFrame, policy: CompiledPolicy, progress: Progress) -> pl.DataFrame:
    """Resends answers that match the retry predicate to the retry models, one attempt at a time."""
    retry = policy.retry
    finals = finals.with_columns(pl.lit(0, pl.Int32).alias("__attempts"), pl.lit(False).alias("__matching"))
    if retry is None:
        return finals.rename({"__matching": "__exhausted"})
    matches = policy.retry_when.compile()
    flagged = finals.with_columns(matches.alias("__matching"))
    settled, state = flagged.filter(~pl.col("__matching")), flagged.filter(pl.col("__matching"))
    counts = {model: f"__calls_{index}" for index, model in enumerate(dict.fromkeys(retry.to))}
    numbers = state["__models"].to_numpy()
    state = state.with_columns(
        pl.Series(column, np.array([models.count(model) for models in run.model_lists], dtype=np.int32)[numbers])
        for model, column in counts.items())
    for position, model in enumerate(retry.to):
        progress(f"retry {position + 1} of {len(retry.to)}")
        # Each list of models called, with this model appended, by number.
        appended = pl.Series([run.models_number((*models, model)) for models in list(run.model_lists)], dtype=pl.UInt32)
        trying = pl.col("__matching") & (pl.col("__attempts") < retry.attempts_allowed)
        waiting, active = state.filter(~trying), state.filter(trying)
        parts = [waiting]
        for (sample,), rows in active.partition_by(counts[model], as_dict=True).items():
            joined = run.answers.join(rows.drop(run.answer_only), model, sample)
            absent = joined.filter(~pl.col(PRESENT))
            if sample == 0:
                run.note_missing(absent, model)
            else:  # no further sample of a model already called: skip it, as the semantics say
                parts.append(rows.join(absent.select("__rid"), on="__rid", how="semi"))
            called, calls = _record_calls(run, joined.filter(pl.col(PRESENT)), model=model, kind="retry",
                                          seq=pl.col("__steps") + pl.col("__attempts"), service_tier=retry.service_tier)
            run.calls.extend(calls)
            parts.append(called.with_columns(
                *_accumulate(), pl.lit(appended).gather(pl.col("__models")).alias("__models"),
                matches.alias("__matching"),
                (pl.col("__attempts") + 1).alias("__attempts"),
                (pl.col(counts[model]) + 1).alias(counts[model]),
            ).select(state.columns))
        state = pl.concat(parts, how="vertical")
    return pl.concat([settled, state.drop(counts.values())], how="vertical").rename(
        {"__matching": "__exhausted"})


def _raise_or_drop_missing(scenario: Scenario, missing: pl.DataFrame | None, decisions: pl.DataFrame,
                           part: bool) -> tuple[pl.DataFrame, dict[str, int], tuple[str, str] | None]:
    """`decisions` without the requests in `missing` (__rid, request_id, model: the first answer each lacked),
    the count per model and the least (request_id, model); under on_missing=error (and not a part) the
    error instead."""
    by_model, example = _missing_counts(scenario, missing, part)
    if not by_model:
        return decisions, {}, None
    return decisions.join(missing.select("__rid"), on="__rid", how="anti"), by_model, example


def _missing_counts(scenario: Scenario, missing: pl.DataFrame | None,
                    part: bool) -> tuple[dict[str, int], tuple[str, str] | None]:
    """Requests per model that lacked an outcome, and the least (request_id, model) of them; under
    on_missing=error (and not a part) the error instead."""
    if missing is None or missing.is_empty():
        return {}, None
    by_model = dict(missing.group_by("model").len().sort("model").iter_rows())
    example = missing.select("request_id", "model").sort("request_id", "model").row(0)
    if scenario.on_missing == "error" and not part:
        first = missing.sort("__rid").row(0, named=True)
        raise missing_outcomes(scenario, by_model, (first["request_id"], first["model"]))
    return by_model, example


def check_policy(scenario: Scenario, data: Dataset, *, part: bool = False) -> CompiledPolicy:
    """The scenario's policy compiled against `data`: its models, slices, columns and types checked
    (RoutesimError otherwise). For a `part` of data (see replay) only the columns and types are checked."""
    traffic_schema, outcome_schema = data.traffic.collect_schema(), data.outcomes.collect_schema()
    models = sorted({model for model, _ in data.layout.slots}) if data.layout else data_values(data.outcomes, "model")
    if part:
        models = sorted(set(models) | set(_model_keys(scenario.policy)))
    return compile_policy(scenario, traffic_schema, outcome_schema, models,
                          None if part else data_values(data.traffic, "slice"))


def _route(run: _Run, requests: pl.DataFrame, policy: CompiledPolicy, overheads: list[tuple[int, Overhead]],
           progress: Progress, plan_models: dict | None = None) -> pl.DataFrame:
    """Overheads, plans and retries of `requests`: one final row per request. With `plan_models`, it also
    receives "escalated": `__rid` and `__to` (the model the plan ended at) of the requests that escalated."""
    staged = _overhead_stage(run, requests, overheads)
    finals = _plan_stage(run, staged, policy, progress)
    if plan_models is not None:
        plan_models["escalated"] = finals.filter(pl.col("__steps") > 1).select("__rid", pl.col("model").alias("__to"))
    return _retry_stage(run, finals, policy, progress)


def replay(scenario: Scenario, data: Dataset, sheet: PriceSheet | None,
           progress: Progress | None = None, *, part: bool = False, chunk: Chunk | None = None) -> Replay:
    """Replays `scenario` on `data`, pricing calls with `sheet` (recorded costs where it has no entry).

    With `part`, `data` is one part (a shard) of data the policy was already checked against
    (simulator.core.shards): models and slices the part happens to lack are not errors, requests with
    missing outcomes are left out and counted (the whole decides whether that is an error), and a part
    whose requests are all left out gives empty decisions. `chunk` replays a chunk of the data
    (simulator.core.chunks: a range of row numbers, or whole sessions), as a part."""
    progress = progress or (lambda _: None)
    start = _begin(scenario, data, sheet, progress, part=part, chunk=chunk)
    policy, requests, run = start.policy, start.requests, start.run
    overheads = scenario.policy.overheads()
    if not start.sticky:
        finals = _route(run, requests, policy, overheads, progress)
    else:  # first turns (and requests on their own) first; later turns follow their session's first turn
        leader = session_leaders(requests, start.turn_order)
        later = (leader >= 0) & (leader != np.arange(requests.height))
        leaders, followers = requests.filter(pl.Series(~later)), requests.filter(pl.Series(later))
        run.answers.keep_for(np.flatnonzero(later))
        first = _route(run, leaders, policy, overheads, progress, plan_models := {})
        # A later turn takes its first turn's plan, or the sticky plan of the model that turn escalated to.
        models = scenario.policy.models()
        sticky_plan = {model: len(policy.plans) - len(models) + index for index, model in enumerate(models)}
        escalated = plan_models["escalated"]
        plan = requests["__plan"].to_numpy().astype(np.int64)
        plan[escalated["__rid"].to_numpy()] = escalated["__to"].replace_strict(sticky_plan, return_dtype=pl.Int64).to_numpy()
        followers = followers.with_columns(pl.Series("__plan", plan[leader[later]], dtype=pl.UInt32))
        # A later turn makes no routing decision: it pays the policy's overhead but no rule's.
        policy_overhead = [(0, scenario.policy.overhead)] if scenario.policy.overhead else []
        finals = (first if followers.is_empty() else
                  pl.concat([first, _route(run, followers, policy, policy_overhead, progress)], how="vertical"))
    run.answers = None  # the outcomes are the largest frame: free them before the final sorts
    progress("summarising")
    missing = pl.concat(run.missing, how="vertical") if run.missing else None
    return _result(start, scenario, finals, pl.concat(run.calls, how="vertical"), missing, _exposure(run))


def _exposure(run: _Run) -> pl.DataFrame | None:
    """The model calls with cached input tokens the run recorded (None without sessions), their `model` in
    the Enum of the call records (sessions.lost reads both without a cast)."""
    if run.exposed is None:
        return None
    schema = EXPOSURE_SCHEMA | {"model": run.call_names}
    return pl.concat([pl.DataFrame(schema=schema), *run.exposed], how="diagonal_relaxed")


@dataclass
class _Start:
    """A replay once its policy is checked, its requests selected and routed to plans, and its outcomes
    loaded: what every way of routing them starts from."""

    policy: CompiledPolicy
    requests: pl.DataFrame  # __rid, __plan and the traffic columns rules, answers and sessions read
    window_count: int
    session_columns: list[str]
    sticky: bool
    part: bool
    run: _Run
    layout_rows: np.ndarray | None = None  # per __rid, the request's row id in the data's layout

    @functools.cached_property
    def turn_order(self) -> pl.DataFrame:
        """The requests with a session in the order of their sessions' turns (sessions.in_turn_order): sorted
        once for the sticky sessions' leaders and the previous turns."""
        return in_turn_order(self.requests)

    @functools.cached_property
    def turns(self) -> pl.DataFrame | None:
        """Each request's previous turn (simulator.core.sessions.previous_turns); None without sessions."""
        return previous_turns(self.requests, self.turn_order) if "session_id" in self.session_columns else None


def _begin(scenario: Scenario, data: Dataset, sheet: PriceSheet | None, progress: Progress, *, part: bool,
           chunk: Chunk | None, also_carry: tuple[str, ...] = ()) -> _Start:
    """Checks the policy, selects the requests, assigns their plans and loads the outcomes the policy can
    reach, with the answer columns it reads (and `also_carry`)."""
    traffic_schema, outcome_schema = data.traffic.collect_schema(), data.outcomes.collect_schema()
    traffic_columns, outcome_columns = traffic_schema.names(), outcome_schema.names()
    policy = check_policy(scenario, data, part=part)
    answer_columns = list(dict.fromkeys([*policy.answer_columns, *also_carry]))

    progress("selecting requests")
    rule_columns = sorted(set().union(*(rule.columns for rule in policy.rules)))
    answer_traffic_columns = [c for c in answer_columns if c in traffic_columns and c not in outcome_columns]
    overheads = scenario.policy.overheads()
    classifier_columns = ["input_tokens"] if any(overhead.model for _, overhead in overheads) else []
    request_columns = list(dict.fromkeys(["request_id", "ts", "slice", *rule_columns, *answer_traffic_columns,
                                          *classifier_columns]))
    sticky = scenario.policy.sticky == "session" and "session_id" in traffic_columns
    # A session's turns are listed with its decisions (session metrics, resampling by session).
    session_columns = [name for name in SESSION_COLUMNS if "session_id" in traffic_columns and name in traffic_columns]
    request_columns += [name for name in session_columns if name not in request_columns]
    selected, window_count = select_requests(scenario, data, request_columns, chunk)
    layout_rows = selected[LAYOUT_ROW].to_numpy() if LAYOUT_ROW in selected.columns else None
    requests = assign_plans(selected, policy.rules)

    progress("loading outcomes")
    carried = [c for c in answer_columns if c not in REQUEST_IDENTITY]
    answers = Answers(data, requests, reachable_slots(policy), carried)
    run = _Run(scenario, sheet, answers,
               [*REQUEST_IDENTITY, *carried, "__cost", "__latency"], carried)
    if "session_id" in session_columns:
        run.exposed = []
    return _Start(policy=policy, requests=requests, window_count=window_count, session_columns=session_columns,
                  sticky=sticky, part=part, run=run, layout_rows=layout_rows)


def _decision_columns(policy: CompiledPolicy, models_called: pl.Series) -> dict[str, pl.Expr]:
    """The decisions' columns (README "Decisions"), each an expression over the routed requests' final rows;
    `models_called` holds the lists of models called at the numbers the rows carry (_Run.models_called)."""
    plan_labels = [label for label, _ in policy.plans]
    plan_lengths = [len(steps) for _, steps in policy.plans]
    columns = [
        pl.col("__rid").alias("rid"), pl.col("request_id"), pl.col("ts"), pl.col("slice"),
        pl.col("__plan").replace_strict(list(range(len(plan_labels))), plan_labels, return_dtype=pl.String)
        .alias("plan"),
        pl.lit(models_called).gather(pl.col("__models")).alias("models_called"),
        pl.col("model").alias("final_model"),
        pl.col("sample").alias("final_sample"),
        pl.col("__steps").alias("steps_taken"),
        (pl.col("__plan").replace_strict(list(range(len(plan_lengths))), plan_lengths, return_dtype=pl.Int32) > 1)
        .alias("multi_step"),
        (pl.col("__steps") > 1).alias("escalated"),
        pl.col("__attempts").alias("retry_attempts"),
        pl.col("__exhausted").alias("retry_exhausted"),
        pl.col("__cost").alias("cost_nano_usd"),
        usd(pl.col("__cost")).alias("cost_usd"),
        pl.col("__latency").alias("latency_ms"),
        (pl.col("passed") & pl.col("hard_check_ok")).alias("passed"),
        pl.col("hard_check_ok"),
        pl.col("score").cast(pl.Float64),
    ]
    return {column.meta.output_name(): column for column in columns}


def sort_calls(calls: pl.DataFrame) -> pl.DataFrame:
    """Call records in (rid, seq, kind) order, stable, so the samples of a best-of-n step keep their order
    within their step. One 64-bit key (rid, seq and kind's place in CALL_KIND) sorts in a third of the time
    of three columns; a seq outside 24 bits falls back to sorting by the columns.

    The records come as a concatenation of runs already in key order (each stage's calls of one step and
    kind, in rid order), which numpy's stable sort, a timsort for 64-bit keys, merges instead of sorting
    anew: about a quarter of the time of polars' stable sort on 20M fan-out and session calls."""
    seq = calls["seq"]
    if calls.is_empty() or not -(1 << 23) <= seq.min() <= seq.max() < (1 << 23):
        return calls.sort("rid", "seq", "kind", maintain_order=True)
    # One chunk first, as layout.take does, and before the key so that its columns convert without a copy:
    # the stages' pieces leave some columns in a thousand chunks.
    calls = calls.rechunk()
    # Built in place: each temporary of 20M keys is 160 MB of fresh pages, and faulting them in cost more
    # than the arithmetic.
    key = calls["rid"].to_numpy().astype(np.uint64)
    key <<= np.uint64(32)
    seq = calls["seq"].to_numpy().astype(np.int64)
    seq += 1 << 23
    seq <<= 8
    key |= seq.view(np.uint64)
    key |= calls["kind"].to_physical().to_numpy()
    return calls[np.argsort(key, kind="stable")]


def _in_rid_order(finals: pl.DataFrame, requests: pl.DataFrame, also: list[str]) -> pl.DataFrame:
    """`finals` (one row per routed request, in any order) in `__rid` order, with the requests' columns
    `also` beside them: a scatter and a compaction, two linear passes, instead of a sort. The request's own
    columns (request_id, ts, slice and `also`) are read from `requests` (row i is __rid i) rather than moved
    with the rest, since gathering strings costs most."""
    at = np.full(requests.height, -1, dtype=np.int64)
    at[finals["__rid"].to_numpy()] = np.arange(finals.height)
    order = at[at >= 0]
    own = ["request_id", "ts", "slice"]
    ordered = take(finals.drop(*own, *also, strict=False), order)
    identity = requests.select(*own, *also)
    if ordered.height < requests.height:  # requests left out for a missing answer
        identity = identity[ordered["__rid"].to_numpy()]
    return pl.concat([ordered, identity], how="horizontal")


def _result(start: _Start, scenario: Scenario, finals: pl.DataFrame, calls: pl.DataFrame,
            missing: pl.DataFrame | None, exposure: pl.DataFrame | None = None) -> Replay:
    """The Replay of routed requests: `finals` (one final row per request), their `calls`, the requests
    that lacked an outcome (`missing`), which are left out, or raise under on_missing=error, and with
    sessions the `exposure` of their model calls to a prompt-cache loss, billed here."""
    finals, missing_by_model, missing_example = _raise_or_drop_missing(scenario, missing, finals, start.part)
    if finals.is_empty() and not start.part:
        raise all_skipped(scenario, missing_by_model)
    state, unbilled = None, {}
    if exposure is not None and start.turns is not None:
        kept = finals.select(pl.col("__rid").alias("rid")) if missing_by_model else None
        state = CacheState(kept=kept, called=calls_to_models(calls),
                           exposure=exposure if kept is None else exposure.join(kept, on="rid", how="semi",
                                                                               maintain_order="left"),
                           models=tuple(scenario.policy.models()))
        found = lost(start.turns, state, state)
        unbilled = dict(found.filter(pl.col("loss").is_null()).group_by("model").len().sort("model").iter_rows())
        finals, calls = _billed(finals, calls, loss_calls(found))
    # Only the decisions' columns are put in rid order, not every column the stages carried.
    # A session's columns are listed after the decisions' own.
    decisions = _in_rid_order(finals, start.requests, start.session_columns).select(
        *_decision_columns(start.policy, start.run.models_called()).values(), *start.session_columns)
    if missing_by_model:  # calls made for requests later left out
        calls = calls.join(decisions.select("rid"), on="rid", how="semi")
    # Named and converted to USD only when the calls' table is asked for (Replay.calls). The stages record
    # the columns in this order; a select of 20M calls in a thousand chunks is not free, so it is skipped.
    if calls.columns != RECORD_COLUMNS:
        calls = calls.select(RECORD_COLUMNS)
    price_sources = price_sources_of(calls)
    coverage = Coverage(requests_in_window=start.window_count, requests_selected=start.requests.height,
                        requests_replayed=decisions.height, missing_by_model=missing_by_model,
                        missing_example=missing_example)
    return Replay(scenario=scenario, decisions=decisions, call_records=calls, coverage=coverage,
                  price_sources=price_sources, layout_rows=start.layout_rows, turns=start.turns,
                  exposure=None if state is None else state.exposure, cache_loss_unbilled=unbilled,
                  requests=start.requests)


def loss_calls(found: pl.DataFrame) -> pl.DataFrame:
    """The call rows (CALL_COLUMNS but `cost_usd`, and any further columns of `found`) of the prompt-cache
    losses in `found` (simulator.core.sessions.lost) that the sheet prices: kind `cache_loss`, the lost call's
    rid, seq and model, the loss as cost, no latency of their own and no tokens."""
    billed = found.filter(pl.col("loss").is_not_null())
    extra = [name for name in billed.columns if name not in ("rid", "seq", "model", "loss")]
    return billed.select(
        "rid", "seq", "model", pl.lit(CACHE_LOSS, CALL_KIND).alias("kind"), pl.col("loss").alias("cost_nano_usd"),
        pl.lit(None, pl.Float64).alias("latency_ms"), pl.lit(SOURCE_SHEET, PRICE_SOURCE).alias("price_source"),
        *(pl.lit(None, pl.Int64).alias(name) for name in ("input_tokens", "output_tokens", "reasoning_output_tokens")),
        *extra)


def _billed(finals: pl.DataFrame, calls: pl.DataFrame, losses: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`finals` with each request's prompt-cache losses added to its `__cost`, and `calls` with their rows
    appended (in the order of `losses`; the final sort puts each after the call that lost the cache)."""
    if losses.is_empty():
        return finals, calls
    # Each request's losses summed by its number (__rid numbers the requests from 0): a scatter-add in
    # int64, exact, and a gather, where a join would hash every request.
    rids = finals["__rid"].to_numpy()
    per_request = np.zeros(int(rids.max()) + 1, dtype=np.int64)
    np.add.at(per_request, losses["rid"].to_numpy(), losses["cost_nano_usd"].to_numpy())
    finals = finals.with_columns(pl.col("__cost") + pl.Series(per_request[rids]))
    return finals, pl.concat([calls, losses.select(calls.columns).cast(calls.schema)], how="vertical")


# --------------------------------------------------------------------------------------------------
# One replay forked at a step: a threshold sweep's two branches in one pass

BRANCH = "__branch"  # which branch a row of a forked replay belongs to
SHARED, ACCEPTS, ESCALATES = 0, 1, 2  # both branches; the step as the scenario says; the step accepting nothing


def _branch_of(frame: pl.DataFrame) -> list[str]:
    """[BRANCH] when the rows belong to a forked replay (its call records and missing outcomes carry it)."""
    return [BRANCH] if BRANCH in frame.columns else []


@dataclass
class _Fork:
    """Where a replay forks (step `step` of plan `plan`), and the answers that step got (`at_step`)."""

    plan: int
    step: int
    value: str  # the answer column recorded at the step
    at_step: list[pl.DataFrame] = field(default_factory=list)

    def split(self, called: pl.DataFrame) -> tuple[pl.DataFrame, pl.Expr, list[pl.Expr]]:
        """The rows of one group of plans at the fork's step, which of them go on to the next step, and their
        BRANCH as they go: the plan's requests whose answer is final are ACCEPTS' there and go on as
        ESCALATES'."""
        mine = pl.col("__plan") == self.plan
        self.at_step.append(called.filter(mine).select(
            "__rid", "hard_check_ok", pl.col(self.value).cast(pl.Float64).alias("value")))
        stops = mine & pl.col("__final")
        called = called.with_columns(pl.when(stops).then(pl.lit(ACCEPTS, pl.Int8)).otherwise(pl.col(BRANCH))
                                     .alias(BRANCH))
        going = pl.when(pl.col(BRANCH) == ACCEPTS).then(pl.lit(ESCALATES, pl.Int8)).otherwise(pl.col(BRANCH))
        return called, ~pl.col("__final") | stops, [going.alias(BRANCH)]


def by_rid(frame: pl.DataFrame, rows: int) -> pl.DataFrame:
    """`frame` (at most one row per `__rid` in 0 .. rows - 1) as `rows` rows in `__rid` order, without
    `__rid`, nulls where it has no row: a gather, not a join."""
    position = np.full(rows, frame.height, dtype=np.int64)  # frame.height: the null row appended below
    position[frame["__rid"].to_numpy()] = np.arange(frame.height)
    return pl.concat([frame, frame.clear(1)], how="vertical").drop("__rid")[position]


class ForkedReplay:
    """Two replays of one scenario that differ at one step, made in one pass: branch ACCEPTS is the scenario
    as it is; branch ESCALATES is the same with that step accepting no answer, so every request reaching it
    goes on to the next step. Everything before the step's verdict (rules, overheads, earlier steps, the
    step's own call and its price) is the same in both and replayed once; the requests whose answer the step
    accepts are replayed on past it in a second copy, and only those. Requests are routed independently of
    one another, so each branch's decisions and calls equal a separate replay's (tests/test_sweep.py). Only
    a prompt-cache loss reads another request (its previous turn's calls): `cache_losses` gives each turn's
    losses for both branches its previous turn may take.

    Rows are aligned by the request's `rid` (its row in ts order), so the branches need no join: `outcomes`
    gives one row per selected request for each. Decisions and calls are built only when asked
    (`replay`). Build it with `replay_forked`.
    """

    def __init__(self, start: _Start, scenarios: dict[int, Scenario], finals: pl.DataFrame, calls: pl.DataFrame,
                 missing: pl.DataFrame | None, at_step: pl.DataFrame, exposure: pl.DataFrame | None = None):
        self._start = start
        self._scenarios = scenarios
        self._finals = finals
        self._calls = calls
        self._missing = missing
        self._at_step = at_step
        self._exposure = exposure
        self._replays: dict[int, Replay] = {}
        self.requests_selected = start.requests.height
        for branch in (ACCEPTS, ESCALATES):  # the errors the two replays would raise, the accepting one first
            by_model, _ = _missing_counts(scenarios[branch], self._rows(missing, branch), start.part)
            if not start.part and self._kept(branch).select(pl.len()).collect().item() == 0:
                raise all_skipped(scenarios[branch], by_model)

    @staticmethod
    def _in(branch: int) -> pl.Expr:
        return pl.col(BRANCH).is_in([SHARED, branch]) | pl.col(BRANCH).is_null()

    def _rows(self, frame: pl.DataFrame | None, branch: int) -> pl.DataFrame | None:
        """The rows of `frame` that belong to `branch` (shared ones included), without BRANCH."""
        return None if frame is None else frame.filter(self._in(branch)).drop(BRANCH)

    def _kept(self, branch: int) -> pl.LazyFrame:
        """The branch's final rows, without the requests it left out for a missing outcome."""
        kept = self._finals.lazy().filter(self._in(branch))
        missing = self._rows(self._missing, branch)
        return kept if missing is None else kept.join(missing.lazy().select("__rid"), on="__rid", how="anti")

    def outcomes(self, branch: int, columns: list[pl.Expr]) -> pl.DataFrame:
        """One row per selected request, in rid order: `present` (the branch replays it: it is not left out
        for a missing outcome) and `columns`, expressions over the decisions' columns (README "Decisions"),
        null where not present."""
        kept = self._kept(branch)
        losses = self.cache_losses
        if losses is not None:  # the branch's own losses: its previous turns take the same branch
            own = (losses.lazy().filter((pl.col("branch") == branch) & (pl.col("previous_branch") == branch))
                   .group_by(pl.col("rid").alias("__rid")).agg(pl.col("cost_nano_usd").sum().alias("__loss")))
            kept = (kept.join(own, on="__rid", how="left", maintain_order="left")
                    .with_columns((pl.col("__cost") + pl.col("__loss").fill_null(0)).alias("__cost")))
        decided = kept.select(pl.col("__rid"),
                              *_decision_columns(self._start.policy, self._start.run.models_called()).values())
        found = decided.select(pl.col("__rid"), pl.lit(True).alias("present"), *columns).collect()
        return by_rid(found, self.requests_selected).with_columns(pl.col("present").fill_null(False))

    def at_step(self) -> pl.DataFrame:
        """One row per selected request, in rid order: `reached` (its plan is the forked one and it got an
        answer at the step), and that answer's `hard_check_ok` and recorded column as Float64 `value`."""
        found = self._at_step.with_columns(pl.lit(True).alias("reached"))
        return by_rid(found, self.requests_selected).with_columns(pl.col("reached").fill_null(False))

    def replay(self, branch: int) -> Replay:
        """The branch's Replay, as `replay` of its scenario gives it (built once, on first use)."""
        if branch not in self._replays:
            self._replays[branch] = _result(self._start, self._scenarios[branch], self._rows(self._finals, branch),
                                            self._rows(self._calls, branch), self._rows(self._missing, branch),
                                            self._rows(self._exposure, branch))
        return self._replays[branch]

    @functools.cached_property
    def cache_losses(self) -> pl.DataFrame | None:
        """The prompt-cache losses of every request in either branch, for either branch its previous turn
        takes (crossed_losses); None without sessions."""
        if self._exposure is None or self._start.turns is None:
            return None
        states = {}
        for branch in (ACCEPTS, ESCALATES):
            missing, exposure = self._rows(self._missing, branch), self._rows(self._exposure, branch)
            kept = None
            if missing is not None and not missing.is_empty():
                kept = self._kept(branch).select(pl.col("__rid").alias("rid")).collect()
                exposure = exposure.join(kept, on="rid", how="semi", maintain_order="left")
            called = calls_to_models(self._rows(self._calls, branch))
            states[branch] = CacheState(kept=kept, called=called, exposure=exposure,
                                        models=tuple(self._scenarios[branch].policy.models()))
        return crossed_losses(self._start.turns, states)


def crossed_losses(turns: pl.DataFrame, states: dict[int, CacheState]) -> pl.DataFrame:
    """The prompt-cache losses (call rows, CALL_COLUMNS) of the requests of two replays that differ at a
    gate, keyed by branch (ACCEPTS, ESCALATES, the keys of `states`): for every request replayed in a branch
    (`branch`), its losses when its previous turn (`previous`, its rid) took either branch
    (`previous_branch`). A sweep mixes the two per request, so a turn's loss depends on the branch its
    previous turn took at each threshold. Rows of one (previous_branch, branch) pair are in call order."""
    pairs = [(branch, previous_branch) for branch in states for previous_branch in states]
    found = lost_crossed(turns, states, pairs)  # each branch's arrays made once for the four pairs
    parts = [loss_calls(found[branch, previous_branch]).with_columns(
        usd(pl.col("cost_nano_usd")).alias("cost_usd"),
        pl.lit(previous_branch, pl.Int8).alias("previous_branch"), pl.lit(branch, pl.Int8).alias("branch"))
        for branch, previous_branch in pairs]
    return pl.concat(parts, how="vertical").select(*CALL_COLUMNS, "previous", "previous_branch", "branch")


def replay_forked(scenario: Scenario, data: Dataset, sheet: PriceSheet | None, plan: int, step: int, value: str,
                  progress: Progress | None = None, *, part: bool = False, chunk: Chunk | None = None) -> ForkedReplay:
    """Replays `scenario` forked at step `step` (0-based, not the last) of plan `plan` (as `Policy.plans`
    numbers them): branch ACCEPTS as the scenario is, branch ESCALATES with that step's accept predicate
    `FALSE` (see ForkedReplay). Also records, for the requests reaching that step, the answer's outcome or
    traffic column `value` (as an accept predicate would read it). `part` and `chunk` as for `replay`.

    Raises RoutesimError as replaying either branch would (ACCEPTS' errors first), and for a policy with
    sticky sessions, whose later turns follow their first turn's branch, which a fork does not follow.
    """
    if scenario.policy.sticky == "session":
        raise RoutesimError("a replay forked at one step cannot follow sticky sessions: a later turn follows its "
                            "first turn's escalation", where=f"scenario '{scenario.name}', key 'policy.sticky'",
                            fix="replay each branch as its own scenario")
    progress = progress or (lambda _: None)
    start = _begin(scenario, data, sheet, progress, part=part, chunk=chunk, also_carry=(value,))
    run = start.run
    run.keep.append(BRANCH)
    fork = _Fork(plan=plan, step=step, value=value)
    staged = _overhead_stage(run, start.requests, scenario.policy.overheads())
    staged = staged.with_columns(pl.lit(SHARED, pl.Int8).alias(BRANCH))
    finals = _retry_stage(run, _plan_stage(run, staged, start.policy, progress, fork), start.policy, progress)
    run.answers = None
    # Router overheads are paid before the fork: their call records carry no branch (null: shared).
    calls = pl.concat(run.calls, how="diagonal_relaxed")
    missing = pl.concat(run.missing, how="diagonal_relaxed") if run.missing else None
    at_step = (pl.concat(fork.at_step, how="vertical") if fork.at_step else
               pl.DataFrame(schema={"__rid": pl.UInt32, "hard_check_ok": pl.Boolean, "value": pl.Float64}))
    scenarios = {ACCEPTS: scenario, ESCALATES: with_step_accept(scenario, plan, step, "FALSE")}
    return ForkedReplay(start, scenarios, finals, calls, missing, at_step, _exposure(run))
