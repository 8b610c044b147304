"""What a data folder can answer: which answers and grades it holds, and which scenarios it can replay how.

Per slice x model: the slice's requests, how many have that model's first answer, how many of those are
graded and by which grader (answers whose `passed` was assumed from a successful status, `passed_source =
assumed_from_status`, count as `assumed`, never as graded), and how many carry a gold grade.

Per scenario, the kind of number a replay can give (see "Served-only logs" in the README):
- `exact`: every request of the window has every outcome the policy reaches;
- `design-weighted`: the requests of a shadow sample (`inclusion_probability` set) have them, so
  whole-traffic figures are estimated from the sample;
- `off-policy`: a one-call policy on a log that records `served_model` and `logging_propensity`;
- `partial`: none of those; only the `share` of requests that have their outcomes could be replayed
  (`on_missing: skip`), which says nothing about the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from simulator.core.contract import Dataset
from simulator.core.engine import replay, select_requests
from simulator.core.errors import RoutesimError
from simulator.core.prices import PriceSheet
from simulator.core.scenario import Scenario

ASSUMED = "assumed_from_status"
EXACT, DESIGN_WEIGHTED, OFF_POLICY, PARTIAL = "exact", "design-weighted", "off-policy", "partial"


@dataclass(frozen=True)
class ScenarioCoverage:
    """How one scenario can be replayed on the data."""

    scenario: str
    kind: str
    requests: int  # requests of the window (or the scenario's sample)
    replayable: int  # of those, the requests with every outcome the policy reaches
    missing_by_model: dict[str, int] = field(default_factory=dict)
    sampled: int = 0  # requests of the shadow sample (inclusion_probability set)
    sampled_replayable: int = 0

    @property
    def share(self) -> float:
        return self.replayable / self.requests if self.requests else 0.0


def single_call(scenario: Scenario) -> bool:
    """Whether the policy makes exactly one call per request: one-step plans of one call each, and no retry."""
    policy = scenario.policy
    return policy.retry is None and all(len(steps) == 1 and len(steps[0].calls) == 1 for _, steps in policy.plans())


def answer_table(data: Dataset) -> pl.DataFrame:
    """Per slice x model: requests, answered, graded, assumed, gold, and one `grader:NAME` count per grader."""
    schema = data.outcomes.collect_schema()
    first = data.outcomes.filter(pl.col("sample") == 0)
    assumed = (pl.col("passed_source") == ASSUMED).fill_null(False) if "passed_source" in schema else pl.lit(False)
    gold = pl.col("gold_passed").is_not_null() if "gold_passed" in schema else pl.lit(False)
    answers = first.select(
        "request_id", "model", assumed.alias("assumed"), gold.alias("gold"),
        pl.when(assumed).then(pl.lit(ASSUMED)).otherwise(pl.col("grader").fill_null("unknown")).alias("by"),
    ).join(data.traffic.select("request_id", "slice"), on="request_id").collect()
    sizes = data.traffic.group_by("slice").agg(pl.len().alias("requests")).collect()
    counts = answers.group_by("slice", "model").agg(
        pl.len().alias("answered"), (~pl.col("assumed")).sum().alias("graded"),
        pl.col("assumed").sum().alias("assumed"), pl.col("gold").sum().alias("gold"))
    graders = (answers.filter(~pl.col("assumed")).group_by("slice", "model", "by").agg(pl.len().alias("n"))
               .sort("by").pivot("by", index=["slice", "model"], values="n"))
    graders = graders.rename({name: f"grader:{name}" for name in graders.columns if name not in ("slice", "model")})
    slices = sizes.select("slice")
    models = answers.select("model").unique()
    return (slices.join(models, how="cross").join(sizes, on="slice")
            .join(counts, on=["slice", "model"], how="left").join(graders, on=["slice", "model"], how="left")
            .with_columns(pl.exclude("slice", "model", "requests").fill_null(0).cast(pl.Int64))
            .sort("slice", "model"))


def scenario_coverage(scenario: Scenario, data: Dataset, sheet: PriceSheet | None) -> ScenarioCoverage:
    """Replays with `on_missing: skip` to count the requests that have what the policy needs."""
    skipping = scenario.model_copy(update={"on_missing": "skip"})
    outcome_schema, traffic_schema = data.outcomes.collect_schema(), data.traffic.collect_schema()
    try:
        result = replay(skipping, data, sheet)
        requests, replayable = result.coverage.requests_selected, result.coverage.requests_replayed
        missing, replayed_ids = result.coverage.missing_by_model, result.decisions.select("request_id")
        selected = result.requests.select("request_id")
    except RoutesimError as error:
        if "every request was skipped" not in error.what:
            raise
        # The requests the scenario selects (its window, its sample), none of them replayable.
        selected = select_requests(skipping, data, ["request_id", "ts"])[0].select("request_id")
        requests, replayable, missing, replayed_ids = selected.height, 0, {}, selected.clear()
    sampled = sampled_replayable = 0
    if "inclusion_probability" in outcome_schema:
        # The shadow sample's requests in the scenario's window: a window of the week holds only its share of
        # the drawn requests, and counting the others made every windowed scenario look unweighable.
        drawn = (data.outcomes.filter(pl.col("inclusion_probability").is_not_null()).select("request_id").unique()
                 .join(selected.lazy(), on="request_id"))
        sampled = drawn.select(pl.len()).collect().item()
        sampled_replayable = drawn.join(replayed_ids.lazy(), on="request_id").select(pl.len()).collect().item()
    if replayable == requests:
        kind = EXACT
    elif sampled and sampled_replayable == sampled:
        kind = DESIGN_WEIGHTED
    elif single_call(scenario) and {"served_model", "logging_propensity"} <= set(traffic_schema.names()):
        kind = OFF_POLICY
    else:
        kind = PARTIAL
    return ScenarioCoverage(scenario=scenario.name, kind=kind, requests=requests, replayable=replayable,
                            missing_by_model=dict(missing), sampled=sampled, sampled_replayable=sampled_replayable)

