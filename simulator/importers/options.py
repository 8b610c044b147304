"""What the user tells an importer beyond the files: where slices and columns come from, and which
conventions to assume where a format leaves them open."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.core.contract import OUTCOME_COLUMNS, TRAFFIC_COLUMNS
from simulator.core.errors import RoutesimError
from simulator.importers.usage import AUTO, USAGE_STYLES

CONTRACT_NAMES = {column.name for column in (*TRAFFIC_COLUMNS, *OUTCOME_COLUMNS)}
COST_UNITS = {"usd": 1.0, "cents": 100.0}
LATENCY_UNITS = {"ms": 1.0, "s": 1000.0}
MODEL_FROM = ("request", "response")


@dataclass(frozen=True)
class ImportOptions:
    slice_key: str | None = None
    default_slice: str = "all"
    columns: tuple[tuple[str, str], ...] = ()  # (source key, column name)
    request_id_key: str | None = None
    model_from: str = "request"
    usage_style: str = AUTO
    cost_unit: str = "usd"
    assume_passed: bool = False
    assume_latency_ms: float | None = None
    # graded formats
    pass_threshold: float = 1.0
    scorer: str | None = None
    grader: str | None = None
    score_scale: float = 1.0
    latency_unit: str = "ms"
    column_map: dict[str, str] = field(default_factory=dict)
    custom_id_pattern: str | None = None
    cost_attribute: str | None = None

    @property
    def column_names(self) -> list[str]:
        return [name for _, name in self.columns]

    def request_id_source(self, kind: str, native: str) -> str:
        """For the report's mapping: where request ids come from."""
        return f"{kind} {self.request_id_key}" if self.request_id_key else native

    def slice_source(self, kind: str, native: str | None = None) -> str:
        return f"{kind} {self.slice_key}" if self.slice_key else native or f"'{self.default_slice}'"

    def cost(self, value: float | None) -> float | None:
        return None if value is None else value / COST_UNITS[self.cost_unit]


def parse_columns(specs: list[str]) -> tuple[tuple[str, str], ...]:
    """--column KEY or --column KEY=NAME: a tag or metadata key kept as a traffic column."""
    parsed = []
    for spec in specs:
        key, _, name = spec.partition("=")
        key, name = key.strip(), (name or key).strip().replace(".", "_")
        if not key or not name:
            raise RoutesimError(f"--column {spec!r}: give KEY or KEY=NAME", fix="e.g. --column customer_tier=tier")
        if name in CONTRACT_NAMES:
            raise RoutesimError(f"--column {spec!r}: '{name}' is a data-contract column",
                                fix=f"name the column differently, e.g. --column {key}=tag_{name}")
        parsed.append((key, name))
    names = [name for _, name in parsed]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RoutesimError(f"--column names '{repeated[0]}' twice", fix="give each column its own NAME")
    return tuple(parsed)


def check_choice(value: str, allowed, option: str) -> str:
    if value not in allowed:
        raise RoutesimError(f"{option} {value!r} is not one of {', '.join(allowed)}")
    return value


def check_options(options: ImportOptions) -> ImportOptions:
    check_choice(options.usage_style, USAGE_STYLES, "--usage")
    check_choice(options.cost_unit, COST_UNITS, "--cost-unit")
    check_choice(options.latency_unit, LATENCY_UNITS, "--latency-unit")
    check_choice(options.model_from, MODEL_FROM, "--model-from")
    if options.score_scale <= 0:
        raise RoutesimError("--score-scale must be positive", fix="give the score's maximum, e.g. 10 or 100")
    if not 0 <= options.pass_threshold <= 1:
        raise RoutesimError("--pass-threshold must lie in 0..1", fix="scores are scaled to 0..1 first")
    return options
