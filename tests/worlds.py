"""Seeded random worlds (traffic, outcomes, price sheet, scenario) for engine parity tests, and a helper
that replays in-memory frames through the real engine.

A world is small (3-60 requests, 2-4 models) but exercises every part of the policy semantics: rules over
traffic columns (with nulls), cascades of 1-4 steps (the same model may appear twice), accept predicates
over nullable outcome columns, checkers, retries, missing outcomes, extra samples, price changes in the
middle of the world, models priced from recorded costs, windows, seeded samples and time zones. Every world
carries sessions (some sticky), so turns switched between models lose their prompt cache.

Every world satisfies the data contract (contiguous samples, unit-interval scores, non-negative tokens,
cached <= input) so `load_data` accepts it; "missing" outcomes are whole request x model pairs (or the
tail of their samples) left out, never a gap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from simulator.core.contract import GRADERS, OUTCOMES_FILE, TRAFFIC_FILE, load_data
from simulator.core.engine import Replay, replay
from simulator.core.metrics import summarise
from simulator.core.prices import PriceSheet
from simulator.core.scenario import Scenario

MODEL_NAMES = ("small", "medium", "large", "flagship")
SLICE_NAMES = ("faq", "billing", "legal", "code")
TIERS = ("free", "pro", "enterprise")
CHECKER_NAMES = ("checker", "judge")
OVERHEAD_NAMES = ("router", "classifier", "intent", "length-clf")
FIRST_DAY = dt.date(2026, 3, 2)

TRAFFIC_SCHEMA = {
    "request_id": pl.String,
    "ts": pl.Datetime("us"),
    "slice": pl.String,
    "input_tokens": pl.Int64,
    "tier": pl.String,
    "priority": pl.Int64,
}

OUTCOME_SCHEMA = {
    "request_id": pl.String,
    "model": pl.String,
    "sample": pl.Int64,
    "input_tokens": pl.Int64,
    "cached_input_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "latency_ms": pl.Float64,
    "ttft_ms": pl.Float64,
    "passed": pl.Boolean,
    "score": pl.Float64,
    "confidence": pl.Float64,
    "checker_score": pl.Float64,
    "hard_check_ok": pl.Boolean,
    "cost_usd": pl.Float64,
    "grader": pl.String,
    "cache_write_input_tokens": pl.Int64,
    "cache_write_1h_input_tokens": pl.Int64,
    "reasoning_output_tokens": pl.Int64,
}
OPTIONAL_OUTCOME_COLUMNS = ("cache_write_input_tokens", "cache_write_1h_input_tokens", "reasoning_output_tokens")


# --------------------------------------------------------------------------------------------------
# Running the engine on in-memory frames


def write_frames(folder: Path, traffic: pl.DataFrame, outcomes: pl.DataFrame) -> Path:
    """Writes the two contract files into `folder` (created if needed) and returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    traffic.write_parquet(folder / TRAFFIC_FILE)
    outcomes.write_parquet(folder / OUTCOMES_FILE)
    return folder


def replay_frames(folder: Path, scenario: Scenario, traffic: pl.DataFrame, outcomes: pl.DataFrame,
                  sheet: PriceSheet | None = None) -> tuple[Replay, dict]:
    """Writes the frames to `folder`, loads them through the data contract and replays `scenario`.

    Returns the engine's Replay and `simulator.core.metrics.summarise` of it.
    """
    dataset = load_data(write_frames(folder, traffic, outcomes))
    result = replay(scenario, dataset, sheet)
    return result, summarise(result.decisions, result.calls)


def scenario_of(policy: dict, *, data: Path | str = "unused", **settings) -> Scenario:
    """A validated Scenario from a policy mapping and optional settings (window, sample, on_missing...)."""
    return Scenario.model_validate({"name": settings.pop("name", "test"), "data": Path(data),
                                    "policy": policy, **settings})


def sheet_of(models: dict[str, list[dict]]) -> PriceSheet:
    return PriceSheet.model_validate({"models": models})


def traffic_frame(rows: list[dict]) -> pl.DataFrame:
    """Traffic rows (request_id, ts, slice, input_tokens, and optional tier/priority) as a typed frame."""
    full = [{"tier": None, "priority": None, **row} for row in rows]
    return pl.DataFrame(full, schema=TRAFFIC_SCHEMA)


def outcome_frame(rows: list[dict]) -> pl.DataFrame:
    """Outcome rows as a typed frame; unspecified optional columns default to sensible values."""
    defaults = {"sample": 0, "cached_input_tokens": None, "ttft_ms": None, "score": None, "confidence": None,
                "checker_score": None, "hard_check_ok": True, "cost_usd": None, "grader": "deterministic",
                **dict.fromkeys(OPTIONAL_OUTCOME_COLUMNS)}
    return pl.DataFrame([{**defaults, **row} for row in rows], schema=OUTCOME_SCHEMA)


# --------------------------------------------------------------------------------------------------
# Random worlds


@dataclass(frozen=True)
class World:
    seed: int
    scenario: Scenario
    traffic: pl.DataFrame
    outcomes: pl.DataFrame
    sheet: PriceSheet | None

    def describe(self) -> str:
        """Everything needed to reproduce a failure by eye."""
        with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=250):
            return (f"seed {self.seed}\nscenario: {self.scenario.model_dump_json(exclude_none=True)}\n"
                    f"sheet: {self.sheet.model_dump_json() if self.sheet else None}\n"
                    f"traffic:\n{self.traffic}\noutcomes:\n{self.outcomes}")


class _Gen:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def int(self, low: int, high: int) -> int:
        """Uniform integer in [low, high] (both included)."""
        return int(self.rng.integers(low, high + 1))

    def uniform(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))


def _traffic(g: _Gen, days: int) -> pl.DataFrame:
    n = g.int(3, 60)
    slices = list(SLICE_NAMES[:g.int(2, 4)])
    ids = [f"q{int(x):04d}" for x in g.rng.choice(10_000, size=n, replace=False)]
    start = dt.datetime.combine(FIRST_DAY, dt.time())
    stamps: list[dt.datetime] = []
    for _ in range(n):
        if stamps and g.chance(0.15):  # ties on ts: the order falls back to request_id
            stamps.append(g.pick(stamps))
        elif g.chance(0.1):  # exactly midnight: on a window edge or a price change
            stamps.append(start + dt.timedelta(days=g.int(0, days)))
        else:
            stamps.append(start + dt.timedelta(seconds=g.int(0, days * 86_400 - 1)))
    frame = pl.DataFrame({
        "request_id": ids,
        "ts": stamps,
        "slice": [g.pick(slices) for _ in range(n)],
        "input_tokens": [g.int(0, 8000) for _ in range(n)],
        "tier": [None if g.chance(0.2) else g.pick(TIERS) for _ in range(n)],
        "priority": [None if g.chance(0.3) else g.int(0, 3) for _ in range(n)],
    }, schema=TRAFFIC_SCHEMA)
    # The contract's timestamp: naive (taken as UTC), UTC, or another zone that the engine converts.
    unit = g.pick(["us", "ms", "ns"])
    zone = g.pick([None, None, "UTC", "Europe/Berlin", "America/New_York"])
    ts = pl.col("ts").cast(pl.Datetime(unit))
    if zone is not None:
        ts = ts.dt.replace_time_zone("UTC").dt.convert_time_zone(zone)
    return frame.with_columns(ts).sample(fraction=1.0, shuffle=True, seed=g.int(0, 2**31))


def _score(g: _Gen, null_share: float) -> float | None:
    if g.chance(null_share):
        return None
    # Often on a coarse grid, so values hit the predicates' thresholds exactly.
    return round(g.uniform(0, 1), 1) if g.chance(0.5) else g.uniform(0, 1)


def _outcome(g: _Gen, request: dict, model: str, sample: int, quality: float) -> dict:
    if g.chance(0.6):  # billed prompt tokens usually differ from the logged request's (other tokenizers)
        input_tokens = request["input_tokens"]
    else:
        input_tokens = g.int(0, 9000)
    latency = g.uniform(20, 9000) if g.chance(0.7) else float(g.int(20, 9000))
    passed = g.chance(quality)
    output_tokens = g.int(0, 2500)
    if g.chance(0.03):  # a call whose usage was lost: zero tokens beside its recorded cost
        input_tokens = output_tokens = 0
    # Cache reads and writes are parts of the input, reasoning part of the output.
    cached = None if g.chance(0.3) else g.int(0, input_tokens)
    write = None if g.chance(0.5) else g.int(0, input_tokens - (cached or 0))
    write_1h = None if g.chance(0.6) else g.int(0, input_tokens - (cached or 0) - (write or 0))
    return {
        "request_id": request["request_id"],
        "model": model,
        "sample": sample,
        "input_tokens": input_tokens,
        "cached_input_tokens": cached,
        "cache_write_input_tokens": write,
        "cache_write_1h_input_tokens": write_1h,
        "reasoning_output_tokens": None if g.chance(0.5) else g.int(0, output_tokens),
        "output_tokens": output_tokens,
        "latency_ms": latency,
        "ttft_ms": None if g.chance(0.5) else latency * g.uniform(0, 1),
        "passed": passed,
        "score": _score(g, 0.25),
        "confidence": _score(g, 0.15),
        "checker_score": _score(g, 0.3),
        "hard_check_ok": g.chance(0.8),
        "cost_usd": g.uniform(0, 0.05) if g.chance(0.9) else float(g.int(0, 3)) / 100,
        "grader": None if g.chance(0.2) else g.pick(GRADERS),
    }


def _outcomes(g: _Gen, traffic: pl.DataFrame, models: list[str], listed: set[str]) -> pl.DataFrame:
    miss = g.pick([0.0, 0.0, 0.0, 0.03, 0.1])
    quality = {model: g.uniform(0.3, 0.95) for model in models}
    rows = []
    requests = traffic.sort("request_id").to_dicts()
    for model in models:
        present = 0
        for request in requests:
            draw = g.rng.random()
            samples = 0 if draw < miss else 1 if draw < 0.55 else 2 if draw < 0.85 else 3
            if request is requests[-1] and present == 0:
                samples = max(samples, 1)  # every model answers something, or the policy cannot name it
            present += samples
            rows.extend(_outcome(g, request, model, sample, quality[model]) for sample in range(samples))
    frame = pl.DataFrame(rows, schema=OUTCOME_SCHEMA)
    # A recorded cost may be missing where the sheet prices the model anyway.
    null_cost = pl.col("model").is_in(sorted(listed)) & pl.Series([g.chance(0.2) for _ in rows], dtype=pl.Boolean)
    frame = frame.with_columns(pl.when(null_cost).then(None).otherwise(pl.col("cost_usd")).alias("cost_usd"))
    if g.chance(0.3):  # a log without the optional columns
        frame = frame.drop(OPTIONAL_OUTCOME_COLUMNS)
    return frame.sample(fraction=1.0, shuffle=True, seed=g.int(0, 2**31))


def _sheet(g: _Gen, models: list[str], days: int) -> tuple[PriceSheet | None, set[str]]:
    if g.chance(0.15):
        return None, set()
    listed = [model for model in models if g.chance(0.7)]
    everywhere = {tier for tier in SERVICE_TIERS if g.chance(0.6)}  # service tiers every entry prices
    sheet = {}
    for model in listed:
        first = FIRST_DAY - dt.timedelta(days=g.int(0, 30))
        if g.chance(0.03):  # a listed model with no entry in force for the first requests: unpriceable
            first = FIRST_DAY + dt.timedelta(days=1)
        starts = {first}
        for _ in range(g.int(0, 2)):  # price changes in the middle of the world
            starts.add(FIRST_DAY + dt.timedelta(days=g.int(1, days)))
        entries = []
        for start in sorted(starts):
            entry = {"effective_from": start, **_rates(g),
                     "per_request": 0.0 if g.chance(0.6) else g.uniform(0, 0.01)}
            if g.chance(0.4):
                entry["tiers"] = _context_tiers(g)
            for tier in SERVICE_TIERS:
                if tier in everywhere or g.chance(0.3):
                    entry[tier] = {**_rates(g), **({"tiers": _context_tiers(g)} if g.chance(0.3) else {})}
            if g.chance(0.2):
                entry["discount"] = g.pick([0.0, 0.1, 0.25, g.uniform(0, 0.5)])
            entries.append(entry)
        if g.chance(0.5):
            entries.reverse()  # the sheet sorts its entries itself
        sheet[model] = entries
    discount = {"discount": g.uniform(0, 0.3)} if g.chance(0.2) else {}
    return PriceSheet.model_validate({"models": sheet, "source": "random world", **discount}), set(listed)


SERVICE_TIERS = ("batch", "flex", "priority")


def _rates(g: _Gen) -> dict:
    """USD per million tokens of each kind; the optional kinds are often left to their fallbacks."""
    return {"input": g.uniform(0.05, 20), "output": g.uniform(0.1, 60),
            "cached_input": None if g.chance(0.4) else g.uniform(0.01, 5),
            "cache_write_input": None if g.chance(0.5) else g.uniform(0.05, 25),
            "cache_write_1h_input": None if g.chance(0.6) else g.uniform(0.1, 40),
            "reasoning_output": None if g.chance(0.6) else g.uniform(0.1, 80)}


def _context_tiers(g: _Gen) -> list[dict]:
    """One or two long-context tiers, at input sizes the worlds' calls reach (some exactly)."""
    bounds = sorted({g.pick([1000, 3000, 6000, 8000]) for _ in range(g.int(1, 2))})
    return [{"above_input_tokens": bound, **_rates(g)} for bound in bounds]


def _comparison(g: _Gen, column: str) -> str:
    return f"{column} {g.pick(['<', '<=', '>', '>=', '=', '<>'])} {g.pick([0.2, 0.3, 0.5, 0.7, 0.9])}"


def _rule_atom(g: _Gen, slices: list[str]) -> str:
    kind = g.int(0, 6)
    if kind <= 1:
        return f"input_tokens {g.pick(['<', '<=', '>', '>='])} {g.pick([500, 2000, 4000, 6000])}"
    if kind == 2:
        chosen = sorted({g.pick(slices) for _ in range(g.int(1, 2))})
        return "slice IN (" + ", ".join(f"'{name}'" for name in chosen) + ")"
    if kind == 3:
        return f"slice = '{g.pick(slices)}'"
    if kind == 4:
        return f"tier = '{g.pick(TIERS)}'"
    if kind == 5:
        return g.pick(["tier IS NULL", "tier <> 'free'", "priority >= 2", "priority IS NOT NULL"])
    return f"tier IN ('{g.pick(TIERS)}', '{g.pick(TIERS)}')"


def _accept_atom(g: _Gen) -> str:
    kind = g.int(0, 7)
    if kind <= 2:
        return f"confidence {g.pick(['>=', '>'])} {g.pick([0.3, 0.5, 0.7, 0.9])}"
    if kind == 3:
        return f"checker_score {g.pick(['>=', '>'])} {g.pick([0.2, 0.5, 0.8])}"
    if kind == 4:
        return g.pick(["passed", "NOT passed", "score >= 0.5"])
    if kind == 5:
        return f"input_tokens {g.pick(['<', '>='])} {g.pick([1000, 3000, 6000])}"
    if kind == 6:
        return g.pick(["tier = 'pro'", "slice = 'faq'", "coalesce(confidence, 0) >= 0.5",
                       "cached_input_tokens IS NULL", "output_tokens > 1000"])
    return _comparison(g, g.pick(["confidence", "checker_score"]))


def _combine(g: _Gen, atom, depth: int = 0) -> str:
    kind = g.int(0, 5) if depth < 2 else 0
    if kind <= 2:
        return atom()
    if kind == 3:
        return f"({_combine(g, atom, depth + 1)}) AND ({_combine(g, atom, depth + 1)})"
    if kind == 4:
        return f"({_combine(g, atom, depth + 1)}) OR ({_combine(g, atom, depth + 1)})"
    return f"NOT ({_combine(g, atom, depth + 1)})"


def _plan(g: _Gen, models: list[str], tiers: tuple[str, ...] = ()) -> dict:
    if g.chance(0.35):
        return {"use": g.pick(models), **({"service_tier": g.pick(tiers)} if g.chance(0.2) and tiers else {})}
    steps = []
    length = g.int(1, 4)
    for position in range(length):
        step: dict = {"model": g.pick(models)}
        if position < length - 1:
            step["accept"] = _combine(g, lambda: _accept_atom(g))
        if g.chance(0.25):
            step["checker"] = {"name": g.pick(CHECKER_NAMES), "cost_usd": g.uniform(0, 0.003),
                               "latency_ms": g.uniform(0, 400) if g.chance(0.7) else float(g.int(0, 400))}
        if g.chance(0.15):
            step["service_tier"] = g.pick(["standard", *tiers])
        steps.append(step)
    plan = {"cascade": steps}
    if g.chance(0.2) and tiers:
        plan["service_tier"] = g.pick(tiers)
    return plan


def _policy(g: _Gen, models: list[str], slices: list[str], tiers: tuple[str, ...] = ()) -> dict:
    """A random policy; `tiers`: the service tiers every listed model's entries price (a tier the sheet does
    not price is an error the tiny worlds test; here it would also break the sweep's what-if replays)."""
    rules = []
    for index in range(g.pick([0, 0, 1, 1, 2, 3])):
        rule = {"when": _combine(g, lambda: _rule_atom(g, slices)), **_plan(g, models, tiers)}
        if g.chance(0.5):
            rule["name"] = f"rule-{index}-{g.int(0, 99)}"
        rules.append(rule)
    policy: dict = {"rules": rules, "default": _plan(g, models, tiers)}
    if g.chance(0.45):
        retry: dict = {
            "when": g.pick(["NOT hard_check_ok", "NOT passed", f"checker_score < {g.pick([0.3, 0.5, 0.8])}",
                            "NOT hard_check_ok OR NOT passed"]),
            "to": [g.pick(models) for _ in range(g.int(1, 3))],
        }
        if g.chance(0.5):
            retry["max_attempts"] = g.int(1, len(retry["to"]))
        if g.chance(0.15) and tiers:
            retry["service_tier"] = g.pick(tiers)
        policy["retry"] = retry
    return policy


def _add_overheads(seed: int, policy: dict, models: list[str]) -> None:
    """Router overheads from a stream of their own, so the rest of each world stays as it was: fixed,
    classifier-priced (by a model the sheet may not list: then unpriceable) or both, on the policy and rules."""
    g = _Gen(seed + 1_000_003)
    names = [str(name) for name in g.rng.permutation(OVERHEAD_NAMES)]

    def overhead() -> dict:
        made: dict = {"name": names.pop()}
        kind = g.int(0, 2)
        if kind != 1:
            made["cost_usd"] = g.uniform(0, 0.002)
        if kind >= 1:
            made["model"] = g.pick(models)
            made["output_tokens"] = g.int(0, 5)
        if g.chance(0.6) or kind == 0:
            made["latency_ms"] = g.uniform(1, 300)
        return made

    if g.chance(0.3):
        policy["overhead"] = overhead()
    for rule in policy["rules"]:
        if names and g.chance(0.3):
            rule["overhead"] = overhead()


def _add_best_of(seed: int, policy: dict) -> None:
    """Best-of-n steps from a stream of their own: some cascade steps draw 2 or 3 samples and keep the
    highest of a column or the first passing a predicate."""
    g = _Gen(seed + 2_000_003)
    for plan in [*policy["rules"], policy["default"]]:
        for step in plan.get("cascade", []):
            if g.chance(0.2):
                step["samples"] = g.int(2, 3)
                step["select"] = ({"highest": g.pick(["confidence", "checker_score", "score", "latency_ms"])}
                                  if g.chance(0.5) else {"first": _combine(g, lambda: _accept_atom(g))})


def _add_fan_out(seed: int, policy: dict, models: list[str]) -> None:
    """Fan-out and race steps from a stream of their own: some single-model cascade steps call 2 or 3
    models at once (a model may repeat) and keep one answer by select; a race never runs on batch."""
    g = _Gen(seed + 3_000_017)
    for plan in [*policy["rules"], policy["default"]]:
        for step in plan.get("cascade", []):
            if "samples" in step or not g.chance(0.2):
                continue
            called = [step.pop("model"), *(g.pick(models) for _ in range(g.int(1, 2)))]
            if g.chance(0.5):
                step["race"] = called
                step["select"] = {"first": _combine(g, lambda: _accept_atom(g))}
                if step.get("service_tier", plan.get("service_tier")) == "batch":
                    step["service_tier"] = "standard"
            else:
                step["parallel"] = called
                step["select"] = ({"highest": g.pick(["confidence", "checker_score", "score", "latency_ms"])}
                                  if g.chance(0.5) else {"first": _combine(g, lambda: _accept_atom(g))})


def _add_answer_keys(seed: int, outcomes: pl.DataFrame) -> pl.DataFrame:
    """In some worlds, an answer_key column from a stream of its own: three keys, so answers often agree,
    and some nulls."""
    g = _Gen(seed + 4_000_037)
    if not g.chance(0.5):
        return outcomes
    picks = g.rng.choice(4, size=outcomes.height, p=[0.5, 0.25, 0.15, 0.1])
    keys = [None if pick == 3 else f"k{pick}" for pick in picks.tolist()]
    return outcomes.with_columns(pl.Series("answer_key", keys, dtype=pl.String))


def _add_named_steps(seed: int, policy: dict, agreement_column: str) -> None:
    """Named steps read by later accepts (an agreement gate on `agreement_column`), and final: best, from a
    stream of their own."""
    g = _Gen(seed + 5_000_011)
    for plan in [*policy["rules"], policy["default"]]:
        steps = plan.get("cascade", [])
        if len(steps) >= 3 and g.chance(0.4):
            steps[0]["name"] = "first"
            if g.chance(0.5):
                steps[1]["name"] = "second"
            for position in range(1, len(steps) - 1):
                read = g.pick(["first", "second"]) if position >= 2 and "name" in steps[1] else "first"
                gate = (f"{agreement_column} = {read}.{agreement_column}" if agreement_column == "answer_key"
                        else f"{agreement_column} >= {read}.{agreement_column}")
                steps[position]["accept"] = (f"({steps[position]['accept']}) OR ({gate})" if g.chance(0.5)
                                             else gate)
        if steps and g.chance(0.2):
            plan["final"] = "best"
            plan["best_by"] = g.pick(["confidence", "checker_score", "latency_ms"])


def _add_sessions(seed: int, traffic: pl.DataFrame) -> pl.DataFrame:
    """session_id and turn from a stream of their own: sessions of 1-4 requests, some requests on their own,
    turns numbered in arrival order (sometimes null, sometimes out of order; in some worlds no turn column).
    Every world has sessions, so every world's random plans switch some sessions between models and lose
    their prompt cache (the outcomes' cached_input_tokens)."""
    g = _Gen(seed + 6_000_023)
    with_turns = g.chance(0.85)
    sessions = [None if g.chance(0.2) else f"s{g.int(0, max(1, traffic.height // 4))}" for _ in range(traffic.height)]
    order = traffic.with_row_index("__i").sort("ts", "request_id")["__i"].to_list()
    seen: dict[str, int] = {}
    turns = [None] * traffic.height
    for index in order:
        session = sessions[index]
        if session is not None:
            turns[index] = None if g.chance(0.1) else seen.get(session, 0) + (g.int(0, 1) if g.chance(0.1) else 0)
            seen[session] = seen.get(session, 0) + 1
    return traffic.with_columns(pl.Series("session_id", sessions, dtype=pl.String),
                                *([pl.Series("turn", turns, dtype=pl.Int64)] if with_turns else []))


def _add_turn_rule(seed: int, policy: dict, models: list[str], traffic: pl.DataFrame) -> None:
    """In some worlds with a turn column, a rule of its own (from a stream of its own) that sends a session's
    first or later turns elsewhere, so sessions switch models between turns and lose their prompt cache."""
    g = _Gen(seed + 8_000_009)
    if "turn" not in traffic.columns or not g.chance(0.5):
        return
    rule = {"when": g.pick(["turn >= 1", "turn = 0", "turn IS NULL OR turn >= 2"]), "use": g.pick(models)}
    policy["rules"].insert(g.int(0, len(policy["rules"])), rule)


def random_world(seed: int) -> World:
    """A reproducible random world: same seed, same frames, sheet and scenario."""
    g = _Gen(seed)
    days = g.int(1, 4)
    traffic = _traffic(g, days)
    models = [str(m) for m in g.rng.choice(MODEL_NAMES, size=g.int(2, 4), replace=False)]
    sheet, listed = _sheet(g, models, days)
    outcomes = _add_answer_keys(seed, _outcomes(g, traffic, models, listed))
    slices = sorted(set(traffic["slice"]))
    settings: dict = {"on_missing": g.pick(["error", "skip"])}
    if g.chance(0.3):
        start = FIRST_DAY + dt.timedelta(days=g.int(-1, days - 1))
        settings["window"] = {"start": start, "end": start + dt.timedelta(days=g.int(1, days))}
    if g.chance(0.25):
        settings["sample"] = {"requests": g.int(1, traffic.height), "seed": g.int(0, 10_000)}
    tiers = tuple(tier for tier in SERVICE_TIERS if sheet is None or all(
        getattr(entry, tier) is not None for entries in sheet.models.values() for entry in entries))
    policy = _policy(g, models, slices, tiers)
    _add_overheads(seed, policy, models)
    _add_best_of(seed, policy)
    _add_fan_out(seed, policy, models)
    _add_named_steps(seed, policy, "answer_key" if "answer_key" in outcomes.columns else "confidence")
    traffic = _add_sessions(seed, traffic)
    _add_turn_rule(seed, policy, models, traffic)
    if _Gen(seed + 7_000_003).chance(0.4):
        policy["sticky"] = "session"
    scenario = scenario_of(policy, name=f"world-{seed}", data="random-world", **settings)
    return World(seed=seed, scenario=scenario, traffic=traffic, outcomes=outcomes, sheet=sheet)
