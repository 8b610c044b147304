"""Scenario files: a routing policy and the data, prices and quality bar it is replayed against.

Scenarios are frozen values validated by pydantic with unknown keys rejected. Predicates stay text here;
the engine compiles them, so two scenarios can be compared and hashed like any value.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from simulator.core.errors import Origin, RoutesimError
from simulator.core.limits import MAX_SEED, MAX_YAML_BYTES
from simulator.core.validation import NAME_PATTERN, from_pydantic_error, read_yaml
from simulator.core.verdict import Admission


class Frozen(BaseModel):
    # NaN and infinity are refused wherever a number enters (costs, latencies, bars, seeds).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Checker(Frozen):
    """A separate cheap check of a step's answer (the source of `checker_score`).

    It runs on every call of its step, adding its cost and latency to that call's request.
    """

    name: str = "checker"
    # Below 2**53 nano-dollars (about 9 million USD), so a checked call's cost stays exact as an integer.
    cost_usd: float = Field(ge=0, lt=9_000_000, description="USD per checked call")
    latency_ms: float = Field(ge=0, description="added to the request's latency per checked call")


ServiceTier = Literal["standard", "batch", "flex", "priority"]


class Overhead(Frozen):
    """What a routing decision costs each request it is made for: a fixed `cost_usd` and `latency_ms`,
    and/or a classifier `model` priced by the price sheet from the request's `input_tokens` (none cached)
    and the `output_tokens` it writes. Its calls are listed in by_model under `name`.
    """

    name: str = "router"
    # Below 2**53 nano-dollars (about 9 million USD), as a checker's, so the cost stays exact as an integer.
    cost_usd: float = Field(default=0.0, ge=0, lt=9_000_000, description="USD per decision")
    latency_ms: float = Field(default=0.0, ge=0, description="added to the request's latency per decision")
    model: str | None = None
    output_tokens: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _priced_somehow(self):
        if self.model is None and (self.cost_usd, self.latency_ms) == (0, 0):
            raise ValueError("give a classifier 'model' priced by the sheet, a fixed 'cost_usd', 'latency_ms', or both")
        return self


class Select(Frozen):
    """Which of a step's answers it keeps: the one with the `highest` value of an outcome column (nulls
    lowest; ties: the earlier call), or the `first` answer whose hard check passes and that satisfies a
    predicate (none: the last in list order). `first` runs in list (sample) order, and in a race in latency
    order."""

    highest: str | None = None
    first: str | None = None

    @model_validator(mode="after")
    def _one_rule(self):
        if (self.highest is None) == (self.first is None):
            raise ValueError("give exactly one of 'highest: COLUMN' or 'first: PREDICATE'")
        return self


MAX_STEP_CALLS = 16  # calls one step may make at once (samples, or models of a fan-out or race)


class Step(Frozen):
    """One call of a plan, or several at once. `accept` decides, on a non-final step, whether its answer is
    final. `service_tier` is the tier the calls are priced at (else its plan's, else standard).

    Exactly one of `model` (one model), `parallel` (a fan-out: every model of the list called at once) or
    `race` (every model called at once; the first answer in latency order that passes `select.first`
    wins). With `samples: n` a `model` step draws n answers of its model at once (best-of-n). A step of
    several calls bills every call and keeps one answer by `select`.
    """

    # A later step's accept may read this step's answer as NAME.COLUMN (an agreement gate).
    name: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64,
                             exclude_if=lambda value: value is None)
    model: str | None = Field(default=None, exclude_if=lambda value: value is None)
    parallel: tuple[str, ...] | None = Field(default=None, min_length=2, max_length=MAX_STEP_CALLS,
                                             exclude_if=lambda value: value is None)
    race: tuple[str, ...] | None = Field(default=None, min_length=2, max_length=MAX_STEP_CALLS,
                                         exclude_if=lambda value: value is None)
    accept: str | None = None
    checker: Checker | None = None
    service_tier: ServiceTier | None = None
    # Left out of dumps at their defaults, so a scenario without them hashes as it did before they existed.
    samples: int = Field(default=1, ge=1, le=MAX_STEP_CALLS, exclude_if=lambda value: value == 1)
    select: Select | None = Field(default=None, exclude_if=lambda value: value is None)

    @model_validator(mode="after")
    def _one_kind(self):
        given = [key for key in ("model", "parallel", "race") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'model: MODEL', 'parallel: [models]' or 'race: [models]'")
        if self.samples > 1 and self.model is None:
            raise ValueError("'samples' draws several answers of one 'model'; list a model twice in "
                             "'parallel' or 'race' to call it twice")
        if (len(self.calls) > 1) != (self.select is not None):
            raise ValueError("a step of several calls ('samples' above 1, 'parallel' or 'race') needs 'select' "
                             "(which answer to keep), and 'select' needs several calls")
        if self.race is not None and self.select.first is None:
            raise ValueError("a race keeps the first answer, in latency order, that passes: give "
                             "'select: {first: PREDICATE}'")
        if self.race is not None and self.service_tier == "batch":
            raise ValueError("a race orders answers by latency, which batch calls do not have")
        return self

    @property
    def calls(self) -> tuple[str, ...]:
        """The models the step calls, in list order (a model listed twice, or drawn n times, reads its next
        sample each time)."""
        if self.model is not None:
            return (self.model,) * self.samples
        return self.parallel if self.parallel is not None else self.race

    @property
    def label(self) -> str:
        """How the step is named in messages: its model, or `parallel[a, b]` / `race[a, b]`."""
        if self.model is not None:
            return self.model if self.samples == 1 else f"{self.model} x{self.samples}"
        kind = "parallel" if self.parallel is not None else "race"
        return f"{kind}[{', '.join(self.calls)}]"


class PlanSpec(Frozen):
    """Exactly one of `use` (a single model) or `cascade` (ordered steps)."""

    use: str | None = None
    cascade: tuple[Step, ...] | None = None
    service_tier: ServiceTier | None = None  # of every step that names none
    # `final: best` keeps the answer with the highest `best_by` among the steps called, not the last one.
    final: Literal["last", "best"] = Field(default="last", exclude_if=lambda value: value == "last")
    best_by: str | None = Field(default=None, exclude_if=lambda value: value is None)

    @model_validator(mode="after")
    def _one_plan(self):
        if (self.use is None) == (self.cascade is None):
            raise ValueError("give exactly one of 'use: MODEL' or 'cascade: [steps]'")
        if self.cascade is not None:
            if not self.cascade:
                raise ValueError("a cascade needs at least one step")
            for position, step in enumerate(self.cascade[:-1]):
                if step.accept is None:
                    raise ValueError(f"cascade step {position} ({step.label}) needs 'accept': when is its answer final?")
            if self.cascade[-1].accept is not None:
                raise ValueError("the last cascade step's answer is always final: remove its 'accept'")
            names = [step.name for step in self.cascade if step.name is not None]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"two steps of one cascade are named '{repeated[0]}'; give each its own name")
        if (self.final == "best") != (self.best_by is not None):
            raise ValueError("'final: best' needs 'best_by: COLUMN' (which answer is best), and 'best_by' needs "
                             "'final: best'")
        if self.final == "best" and self.cascade is None:
            raise ValueError("'final: best' chooses among a cascade's steps: give 'cascade: [steps]'")
        if self.cascade is not None:
            if self.service_tier == "batch" and any(step.race and not step.service_tier for step in self.cascade):
                raise ValueError("a race orders answers by latency, which batch calls do not have: give the race "
                                 "step a service_tier of its own")
        return self

    @property
    def steps(self) -> tuple[Step, ...]:
        """The plan's steps, each with the service tier it runs on resolved (standard when none is named)."""
        tier = self.service_tier or "standard"
        if self.cascade is None:
            return (_single_step(self.use, tier),)
        return tuple(step if step.service_tier else step.model_copy(update={"service_tier": tier})
                     for step in self.cascade)


@functools.lru_cache(maxsize=4096)
def _single_step(model: str, service_tier: str) -> Step:
    """The one step of `use: MODEL`, built once per model and tier: a policy may have thousands of such rules."""
    return Step(model=model, service_tier=service_tier)


class Rule(PlanSpec):
    when: str
    name: str | None = None
    overhead: Overhead | None = Field(default=None, exclude_if=lambda value: value is None)  # paid by every
    # request this rule is evaluated for


class Retry(Frozen):
    """Resend a failing final answer to stronger models, one attempt at a time."""

    when: str
    to: tuple[str, ...] = Field(min_length=1)
    max_attempts: int | None = Field(default=None, ge=1)
    service_tier: ServiceTier = "standard"

    @model_validator(mode="after")
    def _attempts_within_targets(self):
        if self.max_attempts is not None and self.max_attempts > len(self.to):
            raise ValueError(f"max_attempts ({self.max_attempts}) is more than the {len(self.to)} model(s) in 'to', "
                             "which is walked once; list a model twice to try it twice")
        return self

    @property
    def attempts_allowed(self) -> int:
        return len(self.to) if self.max_attempts is None else self.max_attempts


class Policy(Frozen):
    rules: tuple[Rule, ...] = ()
    default: PlanSpec
    retry: Retry | None = None
    overhead: Overhead | None = Field(default=None, exclude_if=lambda value: value is None)  # paid by every request
    # `session`: a session's later turns follow its first turn (simulator.core.engine, README "Sessions").
    sticky: Literal["none", "session"] = Field(default="none", exclude_if=lambda value: value == "none")

    def overheads(self) -> list[tuple[int, Overhead]]:
        """(first plan index that pays it, overhead) in the order a request pays them: the policy's, then
        each rule's. Rule i is evaluated for every request whose plan index is i or more."""
        paid = [(0, self.overhead)] if self.overhead else []
        return paid + [(index, rule.overhead) for index, rule in enumerate(self.rules) if rule.overhead]

    def plan_specs(self) -> list[PlanSpec]:
        """Each rule's plan in order, then the default plan (as `plans` lists them)."""
        return [*self.rules, self.default]

    def plans(self) -> list[tuple[str, tuple[Step, ...]]]:
        """(label, steps) for each rule in order, then the default plan."""
        labelled = [(rule.name or f"rule {index + 1}", rule.steps) for index, rule in enumerate(self.rules)]
        return [*labelled, ("default", self.default.steps)]

    def checkers(self) -> set[str]:
        """The names of the checkers the plans' steps call."""
        return {step.checker.name for _, steps in self.plans() for step in steps if step.checker}

    def service_tiers(self) -> set[str]:
        """The service tiers the policy's calls run on: every plan step's (resolved) and the retry's."""
        tiers = {step.service_tier for _, steps in self.plans() for step in steps}
        return tiers | {self.retry.service_tier} if self.retry else tiers

    def service_tier_keys(self, model: str, tier: str) -> list[str]:
        """The scenario keys that put calls of `model` on service tier `tier`: a step's own `service_tier`,
        else its plan's, and the retry's."""
        keys = []
        prefixes = [*(f"policy.rules[{index}]" for index in range(len(self.rules))), "policy.default"]
        for prefix, spec in zip(prefixes, self.plan_specs()):
            for position, step in enumerate(spec.cascade or ()):
                if model in step.calls and step.service_tier == tier:
                    keys.append(f"{prefix}.cascade[{position}].service_tier")
            inherits = spec.use == model or any(model in step.calls and step.service_tier is None
                                                for step in spec.cascade or ())
            if spec.service_tier == tier and inherits:
                keys.append(f"{prefix}.service_tier")
        if self.retry and model in self.retry.to and self.retry.service_tier == tier:
            keys.append("policy.retry.service_tier")
        return list(dict.fromkeys(keys))

    def models(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, steps in self.plans():
            seen.update((model, None) for step in steps for model in step.calls)
        if self.retry:
            seen.update((model, None) for model in self.retry.to)
        return list(seen)


class Window(Frozen):
    """Replay requests with start <= ts < end (dates at 00:00 UTC)."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self):
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


# The bar of a scenario that states none (README, "Scenario reference"); every output judging one says so.
DEFAULT_QUALITY_BAR = 0.9


def default_bar_note(whose: str) -> str:
    """The line an output carries when `whose` bars are the default, so a verdict never rests on an unstated
    bar without saying it (README, "Scenario reference": "left out, 0.90 applies and every output says so")."""
    from simulator.core.formats import pct

    return f"{whose}: no quality_bar stated, the default of {pct(DEFAULT_QUALITY_BAR)} applied"


class QualityBar(Frozen):
    """The pass rate a policy must reach overall (`default`) and in each slice (overrides in `slices`)."""

    default: float = Field(ge=0, le=1)
    slices: dict[str, float] = Field(default_factory=dict)

    @field_validator("slices")
    @classmethod
    def _in_unit_interval(cls, slices: dict[str, float]):
        for name, bar in slices.items():
            if not 0 <= bar <= 1:
                raise ValueError(f"the bar of slice '{name}' must lie in 0..1")
        return slices

    def for_slice(self, name: str) -> float:
        return self.slices.get(name, self.default)


class RequestSample(Frozen):
    """Replay a seeded random subset of the window's requests (the routing drill uses 30)."""

    requests: int = Field(ge=1)
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="a whole number >= 0")


class RateLimit(Frozen):
    """A model's quota: calls (`rpm`) and tokens, input plus output (`tpm`), per minute, as LiteLLM names them."""

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _some_limit(self):
        if self.rpm is None and self.tpm is None:
            raise ValueError("give 'rpm' (calls per minute), 'tpm' (tokens per minute) or both")
        return self


class Scenario(Frozen):
    name: str = Field(pattern=NAME_PATTERN, max_length=120)
    description: str = ""
    data: Path
    prices: Path | None = None
    window: Window | None = None
    quality_bar: QualityBar = QualityBar(default=DEFAULT_QUALITY_BAR)
    sample: RequestSample | None = None
    on_missing: Literal["error", "skip"] = "error"
    admission: Admission | None = None  # how bars are judged; one per run (simulator.core.verdict)
    policy: Policy
    capacity: dict[str, RateLimit] = Field(default_factory=dict, exclude_if=lambda value: not value)
    # Where `data` and `prices` were written (load_scenario), for errors of the loaders; not a key of the file.
    _origins: dict[str, Origin] = PrivateAttr(default_factory=dict)

    def origin(self, key: str) -> Origin | None:
        """The scenario file and key that gave the path `data` or `prices`; None for a scenario not read from
        a file."""
        return self._origins.get(key)

    def __eq__(self, other: object) -> bool:
        # A scenario is a value: two with the same settings are equal wherever each was read from (pydantic's
        # own comparison would compare `_origins` too).
        if not isinstance(other, Scenario):
            return NotImplemented
        return type(self) is type(other) and all(self.__dict__[name] == other.__dict__[name]
                                                 for name in type(self).model_fields)

    @property
    def quality_bar_stated(self) -> bool:
        """False when the scenario left `quality_bar` out and the default of 0.90 applies."""
        return "quality_bar" in self.model_fields_set

    def unstated_bar_note(self) -> str | None:
        """`default_bar_note` for this scenario when it states no quality_bar, else None."""
        return None if self.quality_bar_stated else default_bar_note(self.name)

    @field_validator("quality_bar", mode="before")
    @classmethod
    def _bar_shorthand(cls, value):
        if isinstance(value, str):
            raise ValueError("must be a pass rate such as 0.9, or {default: 0.9, slices: {SLICE: 0.8}}")
        return {"default": value} if isinstance(value, (int, float)) else value

    def digest(self) -> str:
        """A hash of the policy and settings, stamped on saved results.

        Paths are left out so the same scenario hashes alike in every clone; the data and the price sheet
        are identified by their own content fingerprints.
        """
        content = self.model_dump_json(exclude={"data", "prices"})
        return hashlib.sha256(content.encode()).hexdigest()[:16]


# Scenarios already read in this process, by resolved path and content: a command checks its outputs
# against the scenarios' inputs before it replays them, and a policy of 10,000 rules takes a second to read.
_LOADED: dict[tuple[Path, str], Scenario] = {}
_LOADED_MAX = 64


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; `data` and `prices` are relative to the file.

    A file read before in this process with the same content gives the same (immutable) Scenario again.
    """
    path = Path(path)
    key = _content_key(path)
    if key in _LOADED:
        from simulator.core.outputs import note_input

        note_input(path)  # as read_yaml does: the run reads it
        return _LOADED[key]
    scenario = _read_scenario(path)
    if key is not None:
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.clear()
        _LOADED[key] = scenario
    return scenario


def _content_key(path: Path) -> tuple[Path, str] | None:
    """(resolved path, SHA-256 of the bytes) of a regular file; None when it cannot be read (read_yaml says why)."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_YAML_BYTES:
            return None
        return path.resolve(), hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _read_scenario(path: Path) -> Scenario:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise RoutesimError(f"a scenario or price sheet is a YAML mapping (key: value lines); this file holds a "
                            f"{type(raw).__name__ if raw is not None else 'nothing'}", where=str(path),
                            fix="start from one of the files in scenarios/ (a scenario) or data/prices/ (a price "
                                "sheet)")
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as error:
        raise from_pydantic_error(error, Scenario, file=path) from None
    base = path.parent
    resolved = scenario.model_copy(update={
        "data": (base / scenario.data).resolve(),
        "prices": (base / scenario.prices).resolve() if scenario.prices else None,
    })
    # Whether the paths can be loaded is checked where they are loaded, not here: a command that reads no data
    # (routesim export litellm) works without the data folder.
    resolved._origins = {key: Origin(path, key, str(getattr(scenario, key)))
                         for key in ("data", "prices") if getattr(scenario, key) is not None}
    return resolved


def with_step_accept(scenario: Scenario, plan_index: int, step: int, accept: str) -> Scenario:
    """The scenario with the accept predicate of step `step` (0-based) of plan `plan_index` (as
    `Policy.plans` numbers them) replaced by `accept`; everything else as it is."""
    policy = scenario.policy
    rules = list(policy.rules)
    spec = rules[plan_index] if plan_index < len(rules) else policy.default
    steps = list(spec.steps)
    steps[step] = steps[step].model_copy(update={"accept": accept})
    spec = spec.model_copy(update={"cascade": tuple(steps), "use": None})
    if plan_index < len(rules):
        rules[plan_index] = spec
        policy = policy.model_copy(update={"rules": tuple(rules)})
    else:
        policy = policy.model_copy(update={"default": spec})
    return scenario.model_copy(update={"policy": policy})
