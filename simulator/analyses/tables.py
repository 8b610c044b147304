"""The report's numbers: small aggregated tables computed from a replay's decisions, calls and summary.

Every function here is pure: frames and dicts in, plain dicts and lists out (JSON-ready), so the tables can
be saved with the results and the report rendered again without the data. The report itself only reads
and formats them.

Definitions and assumptions:
- Cost per 1,000 requests is total cost / requests x 1,000 (the exact nano-dollar sum, correctly rounded
  once: simulator.core.money.usd_per), so policies replayed on different numbers of requests (a sample,
  another window) can be set side by side.
- Break-even escalation rate of a multi-step plan: with c1 = mean cost of the first step's calls per request
  of the plan and cL = mean cost of the last step's calls per request that reached the last step, the plan
  costs c1 + e x cL per request at escalation rate e, and sending the same traffic straight to the last
  step costs cL. They cost the same at e* = 1 - c1 / cL. e* is undefined when no request reached the last
  step or cL = 0. A step's checker calls count as part of that step; retries are left out. For plans of
  three or more steps the middle steps are left out too, so the true break-even lies below e*.
- Baselines send every request of the window (or sample) to one model, using its first answer
  (`sample` 0), priced like the engine does (simulator.core.prices.price_calls). A model with no outcome for a
  request is measured on the requests it has. A model that cannot be priced is listed as unpriced.
- The oracle picks, for every request, the cheapest model whose answer passed (passed and hard_check_ok).
  When no model passes, the request counts as a failure at the cheapest model's cost.
- The frontier, distances from it, AIQ and CPT are defined in simulator.analyses.frontier. They are computed over the
  requests the baselines ran on (the first scenario's); a scenario replayed on other requests (another
  window or sample, or with requests skipped for missing outcomes) is listed without them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from simulator.analyses import drift, frontier
from simulator.core.calls import by_position
from simulator.core.contract import Dataset
from simulator.core.engine import LAYOUT_ROW, select_requests
from simulator.core.layout import PRESENT
from simulator.core.errors import RoutesimError
from simulator.core.metrics import grouped
from simulator.core.money import NANO_PER_USD, usd_per
from simulator.core.prices import (SERVICE_STANDARD, PriceSheet, cost_line, price_calls, token_columns, usd,
                                   usd_per_request, usd_per_row)
from simulator.core.results import bar_failures
from simulator.core.scenario import QualityBar, Scenario
from simulator.core.verdict import DEFAULT_ADMISSION, Admission, recommend, request_set

PER_THOUSAND = 1000
LATENCY_QUANTILES = (0.05, 0.25, 0.50, 0.75, 0.95, 0.99)
ALL_REQUESTS = "all requests"
# Time buckets for escalation over time, finest first: the finest with at most MAX_BUCKETS buckets and
# at least MIN_PER_BUCKET requests per bucket on average is used, else the coarsest. Minutes come first so
# that traffic spanning less than an hour (the public datasets) still shows a series, not one point.
BUCKETS = (("minute", "1m", 60), ("hour", "1h", 3_600), ("day", "1d", 86_400), ("week", "1w", 604_800))
MAX_BUCKETS = 500
MIN_PER_BUCKET = 3
# The first answers' columns read besides the tokens, the recorded cost, `passed` and `hard_check_ok`.
ANSWER_EXTRAS = ("latency_ms", "score")


def per_thousand(cost_nano_usd: int, requests: int) -> float | None:
    """USD per 1,000 requests of `requests` that cost `cost_nano_usd` nano-dollars in all."""
    return usd_per(cost_nano_usd, requests, PER_THOUSAND)


def break_even(first_step_cost: float | None, last_step_cost: float | None) -> float | None:
    """e* = 1 - c1 / cL: the escalation rate above which the cascade costs more than its last step alone."""
    if first_step_cost is None or not last_step_cost:
        return None
    return 1 - first_step_cost / last_step_cost


def _step_costs(calls: pl.DataFrame, step: int) -> pl.DataFrame:
    """Cost per request of one plan step (its model call plus any checker call); the first step also carries
    the router overhead paid before it, so a break-even is net of what the routing decision costs."""
    in_step = pl.col("kind").is_in(["step", "checker"]) & (pl.col("seq") == step)
    return (calls.filter(in_step | ((pl.col("kind") == "router") & (step == 0)))
            .group_by("rid", maintain_order=True).agg(pl.col("cost_nano_usd").sum()))


StraightCost = Callable[[pl.DataFrame, str], "float | None"]


def straight_cost(data: Dataset, sheet: PriceSheet | None, scales: dict[str, float] | None = None,
                  priced_at: pl.Expr | None = None) -> StraightCost:
    """What sending requests straight to a model costs per request: its first answer to each of them,
    priced like the engine prices a call (recorded costs of unlisted models multiplied by `scales`), at the
    request's arrival or at `priced_at` (a what-if's pricing date: an expression giving `ts`)."""
    def mean_cost(rows: pl.DataFrame, model: str) -> float | None:
        answers = (data.outcomes.filter((pl.col("model") == model) & (pl.col("sample") == 0))
                   .select("request_id", "model", *token_columns(data.outcomes.collect_schema().names()),
                           (pl.col("cost_usd") * (scales or {}).get(model, 1.0)).alias("recorded_cost_usd"))
                   .join(rows.lazy().select("request_id", "ts"), on="request_id", how="inner")
                   .with_columns(priced_at if priced_at is not None else pl.col("ts"))
                   .collect().sort("request_id"))
        if answers.is_empty():
            return None
        try:
            return price_calls(answers, sheet).select(usd_per_request(pl.col("cost_nano_usd"))).item()
        except RoutesimError:  # some first answers cannot be priced: fall back to what the replay paid
            return None
    return mean_cost


def cascades(decisions: pl.DataFrame, calls: pl.DataFrame,
             plans: list[tuple[str, list[str]]] | None = None, straight: StraightCost | None = None) -> list[dict]:
    """Each multi-step plan's first/last step costs, escalation rate, break-even and escalation over time.

    `plans` gives each plan's label and step models; without it (results saved by `routesim replay`) a
    plan's length is taken as the most steps any of its requests took. cL is what sending every request
    of the plan straight to its last model would cost (`straight`, from the data); without the data it
    falls back to the mean last-step cost of the requests that escalated, which are the harder and
    longer ones, so e* then comes out too high (`last_step_cost_basis` says which).
    """
    if plans is None:
        lengths = decisions.filter("multi_step").group_by("plan").agg(pl.col("steps_taken").max()).sort("plan")
        plans = [(label, [""] * length) for label, length in lengths.iter_rows()]
    found = []
    for label, steps in plans:
        if len(steps) < 2:
            continue
        rows = decisions.filter(pl.col("plan") == label)
        if rows.height == 0:
            continue
        in_plan = calls.join(rows.select("rid"), on="rid", how="semi")
        first, last = _step_costs(in_plan, 0), _step_costs(in_plan, len(steps) - 1)
        c1 = usd_per(first["cost_nano_usd"].sum(), rows.height)
        cl = straight(rows, steps[-1]) if straight is not None and steps[-1] else None
        basis = "every request of the plan, sent straight to the last model"
        if cl is None:
            cl = usd_per(last["cost_nano_usd"].sum(), last.height)
            basis = "the escalated requests only (the data was not at hand)"
        e_star = break_even(c1, cl)
        rate = rows["escalated"].cast(pl.Float64).mean()
        found.append({
            "plan": label,
            "steps": steps,
            "requests": rows.height,
            "first_step_cost_usd": c1,
            "last_step_cost_usd": cl,
            "last_step_cost_basis": basis,
            "reached_last": last.height,
            "escalation_rate": rate,
            "break_even_rate": e_star,
            "cheaper_than_last": None if e_star is None else rate < e_star,
            **escalation_over_time(rows),
        })
    return found


def _bucket(rows: pl.DataFrame) -> tuple[str, str]:
    span = (rows["ts"].max() - rows["ts"].min()).total_seconds()
    for name, every, seconds in BUCKETS:
        buckets = span / seconds + 1
        if buckets <= MAX_BUCKETS and rows.height / buckets >= MIN_PER_BUCKET:
            return name, every
    return BUCKETS[-1][0], BUCKETS[-1][1]


def escalation_over_time(rows: pl.DataFrame) -> dict:
    """Escalation rate per time bucket (UTC), at the finest bucket size that keeps the series readable,
    and the drift test over those buckets (simulator.analyses.drift: a sustained rise against the window's start)."""
    name, every = _bucket(rows)
    buckets = grouped(rows, pl.col("ts").dt.truncate(every).alias("start"),
                      [pl.len().alias("requests"), pl.col("escalated").sum().cast(pl.Int64).alias("escalated")])
    series = buckets.with_columns((pl.col("escalated") / pl.col("requests")).alias("escalation_rate"),
                                  pl.col("start").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {"bucket": name, "over_time": series.to_dicts(), "drift": drift.detect(buckets, every)}


def pass_rate_drift(decisions: pl.DataFrame) -> dict:
    """The drift test on failures over the whole replay, at the bucket size escalation uses: a sustained
    drop in pass rate (simulator.analyses.drift.failure_drift)."""
    name, every = _bucket(decisions)
    return {"bucket": name, "drift": drift.failure_drift(drift.series(decisions, every), every)}


def measured_break_even(points: list[dict], straight_cost_usd: float | None) -> float | None:
    """The escalation rate at which the cascade, along its own threshold sweep, costs as much per request
    as sending every request straight to its last model: the first crossing of cost per request and
    `straight_cost_usd`, read off the straight line between the two bracketing sweep points. Unlike
    e* = 1 - c1 / cL it accounts for which requests escalate (often the longer, dearer ones). None when the
    sweep never crosses it."""
    if straight_cost_usd is None:
        return None
    usable = sorted((p["escalation_rate"], p["cost_per_request_usd"]) for p in points
                    if p.get("requests") and p["escalation_rate"] is not None and p["cost_per_request_usd"] is not None)
    for (rate_0, cost_0), (rate_1, cost_1) in zip(usable, usable[1:]):
        below_0, below_1 = cost_0 - straight_cost_usd, cost_1 - straight_cost_usd
        if below_0 == 0:
            return rate_0
        if (below_0 < 0) != (below_1 < 0) or below_1 == 0:
            return rate_0 + (rate_1 - rate_0) * (-below_0) / (below_1 - below_0)
    return None


def attach_break_even(sweeps: list[dict], cascades_found: list[dict], requests: int) -> None:
    """Adds, to each sweep of a plan that holds every request of the replay, e* from costs and the
    break-even measured on the sweep (the sweep's costs cover the whole replay, so a plan sharing it with
    other plans is left without)."""
    by_plan = {c["plan"]: c for c in cascades_found}
    for found in sweeps:
        cascade = by_plan.get(found["plan"])
        whole = cascade is not None and cascade["requests"] == requests
        found["break_even_formula"] = cascade["break_even_rate"] if cascade else None
        found["break_even_measured"] = (measured_break_even(found["points"], cascade["last_step_cost_usd"])
                                        if whole and cascade["last_step_cost_basis"].startswith("every") else None)


def latency_groups(decisions: pl.DataFrame) -> list[dict]:
    """Latency quantiles per policy, overall and by how many model calls ran one after another."""
    calls_made = pl.col("steps_taken") + pl.col("retry_attempts")
    group = (pl.when(calls_made == 1).then(pl.lit("1 model call"))
             .when(calls_made == 2).then(pl.lit("2 model calls"))
             .otherwise(pl.lit("3+ model calls")).alias("group"))
    quantiles = [pl.col("latency_ms").quantile(q, interpolation="linear").alias(f"p{round(q * 100)}_ms")
                 for q in LATENCY_QUANTILES]
    overall = decisions.select(pl.lit(ALL_REQUESTS).alias("group"), pl.len().alias("requests"), *quantiles)
    split = grouped(decisions, group, [pl.len().alias("requests"), *quantiles])
    table = pl.concat([overall, split], how="vertical_relaxed")
    return table.with_columns((pl.col("requests") / decisions.height).alias("share")).to_dicts()


def cost_breakdown(decisions: pl.DataFrame, calls: pl.DataFrame) -> dict:
    """Cost by model (from the calls; prompt-cache losses as a line of their own) and by slice (from the requests),
    with shares and per-1,000 costs."""
    total, requests = decisions["cost_nano_usd"].sum() / NANO_PER_USD, decisions.height

    def shares(frame: pl.DataFrame) -> list[dict]:
        return frame.with_columns(
            usd(pl.col("cost_nano_usd")).alias("cost_usd"),
            (usd(pl.col("cost_nano_usd")) / total if total else pl.lit(None, pl.Float64)).alias("cost_share"),
            usd_per_row(pl.col("cost_nano_usd"), pl.lit(requests), PER_THOUSAND).alias("cost_per_1k_usd"),
        ).drop("cost_nano_usd").to_dicts()

    cost = pl.col("cost_nano_usd").sum()
    by_model = grouped(calls.with_columns(cost_line().alias("model")), "model", [pl.len().alias("calls"), cost])
    by_slice = grouped(decisions, "slice", [pl.len().alias("requests"), cost])
    return {"by_model": shares(by_model), "by_slice": shares(by_slice)}


def scenario_tables(summary: dict, decisions: pl.DataFrame, calls: pl.DataFrame,
                    plans: list[tuple[str, list[str]]] | None = None, straight: StraightCost | None = None) -> dict:
    """Everything the report shows about one scenario beyond its summary."""
    return {
        "scenario": summary["scenario"],
        "scenario_hash": summary["provenance"]["scenario_hash"],
        "cost_per_1k_usd": per_thousand(decisions["cost_nano_usd"].sum(), decisions.height),
        "cost": cost_breakdown(decisions, calls),
        "latency": latency_groups(decisions),
        "cascades": cascades(decisions, calls, plans, straight),
        "pass_rate_drift": pass_rate_drift(decisions),
    }


def plan_steps(scenario: Scenario) -> list[tuple[str, list[str]]]:
    return [(label, [step.label for step in steps]) for label, steps in scenario.policy.plans()]


def _bar_failures(by_slice: pl.DataFrame, overall: float, bar: QualityBar,
                  admission: Admission = DEFAULT_ADMISSION) -> list[str]:
    """The scopes where a baseline misses its bar: 'overall' and slice names."""
    requests = int(by_slice["requests"].sum()) if by_slice.height else 0
    failures = bar_failures({"pass_rate": overall, "requests": requests, "by_slice": by_slice.to_dicts()}, bar,
                            admission)
    return [failure["slice"] or "overall" for failure in failures]


def priced_answers(requests: pl.DataFrame, data: Dataset, sheet: PriceSheet | None) -> tuple[pl.DataFrame, dict]:
    """Every model's first answer (`sample` 0) to each of `requests` (`request_id`, `rid`, `ts`, `slice`), priced
    at the request's `ts`, with `ok` (passed and hard_check_ok); sorted by `model`, `rid`. Models that cannot be
    priced are left out and returned with the reason. Requests carrying `LAYOUT_ROW` (their row id in the
    data's layout, simulator.core.calls.with_layout_rows) have their answers read by position."""
    priced, unpriced, empty = priced_by_model(requests, data, sheet)
    if not priced:
        return empty, unpriced
    return pl.concat([part for _, part in priced], how="vertical"), unpriced


def priced_by_model(requests: pl.DataFrame, data: Dataset, sheet: PriceSheet | None, *,
                    extras: tuple[str, ...] = ANSWER_EXTRAS, service_tier: str = SERVICE_STANDARD,
                    ) -> tuple[list[tuple[str, pl.DataFrame]], dict, pl.DataFrame]:
    """priced_answers one model at a time, in name order: (model, its priced answers in `rid` order) per
    model with answers to `requests`; the unpriced models with the reason; an empty frame of the columns.
    `extras`: the answers' columns read beside what pricing and `ok` need (ANSWER_EXTRAS: latency and score);
    `service_tier`: the tier every answer is priced on. Two models are read and priced at a time, on two
    threads: polars and numpy work outside the GIL."""
    reads, empty = _first_answers(requests, data, extras)
    tier = [] if service_tier == SERVICE_STANDARD else [pl.lit(service_tier).alias("service_tier")]

    def priced(read: Callable[[], pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame | None, str | None]:
        part = read()
        if not part.height:
            return part, None, None
        try:
            return part, (price_calls(part.with_columns(tier), sheet).drop("service_tier", strict=False)
                          .with_columns(usd(pl.col("cost_nano_usd")).alias("cost_usd"))), None
        except RoutesimError as error:
            return part, None, error.what

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(priced, [read for _, read in reads]))
    found = [(model, *result) for (model, _), result in zip(reads, done) if result[0].height]
    return ([(model, frame) for model, _, frame, _ in found if frame is not None],
            {model: reason for model, _, frame, reason in found if frame is None},
            empty.with_columns(pl.lit(0, pl.Int64).alias("cost_nano_usd"), pl.lit(0.0).alias("cost_usd"),
                               pl.lit("").alias("price_source")))


def _first_answers(requests: pl.DataFrame, data: Dataset, extras: tuple[str, ...] = ANSWER_EXTRAS
                   ) -> tuple[list[tuple[str, Callable[[], pl.DataFrame]]], pl.DataFrame]:
    """Per model with answers in the data, in name order, what reads its first answers to `requests` in
    `rid` order (priced_answers' columns but the prices, `extras` of ANSWER_EXTRAS only; no rows for a
    model that answered none of them); and an empty frame of those columns."""
    names = data.outcomes.collect_schema().names()
    outcome = [*token_columns(names), *[name for name in ("latency_ms", "passed", "hard_check_ok", "score")
                                        if name in extras or name not in ANSWER_EXTRAS],
               pl.col("cost_usd").alias("recorded_cost_usd")]
    keyed = ["request_id", "rid", "ts", "slice"]
    ok = (pl.col("passed") & pl.col("hard_check_ok")).alias("ok")
    if not by_position(requests, data):
        answers = (data.outcomes.filter(pl.col("sample") == 0)
                   .select("request_id", "model", *outcome)
                   .join(requests.lazy().select(keyed), on="request_id", how="inner")
                   .with_columns(ok)
                   .collect()
                   .sort("rid", "model"))  # a join's output order varies; sums must not
        return [(model, lambda part=part: part)
                for (model,), part in sorted(answers.partition_by("model", as_dict=True).items())], answers.clear()
    layout = data.layout
    if not requests["rid"].is_sorted():
        requests = requests.sort("rid")
    rows, beside = requests[LAYOUT_ROW].to_numpy(), requests.select(keyed)

    def read(model: str, rows: np.ndarray = rows, beside: pl.DataFrame = beside) -> pl.DataFrame:
        part = pl.concat([layout.gather(model, 0, outcome, rows), beside], how="horizontal").filter(PRESENT)
        return part.select("request_id", pl.lit(model).alias("model"),
                           *[column for column in part.columns if column not in keyed and column != PRESENT],
                           *keyed[1:], ok)

    models = sorted({model for model, sample in layout.slots if sample == 0})
    return [(model, lambda model=model: read(model)) for model in models], read(models[0], rows[:0], beside.clear())


def baselines(scenario: Scenario, data: Dataset, sheet: PriceSheet | None) -> dict:
    """Every single-model baseline and the oracle, on the window (or sample) of `scenario`."""
    requests = select_requests(scenario, data, ["request_id", "ts", "slice"])[0].rename({"__rid": "rid"})
    answers, unpriced = priced_answers(requests, data, sheet)
    bar, admission = scenario.quality_bar, scenario.admission or DEFAULT_ADMISSION
    metrics = [pl.len().alias("requests"), usd(pl.col("cost_nano_usd").sum()).alias("total_cost_usd"),
               pl.col("ok").cast(pl.Float64).mean().alias("pass_rate"), pl.col("score").mean().alias("mean_score")]
    models = []
    for (model,), part in sorted(answers.partition_by("model", as_dict=True).items()):
        row = part.select(*metrics, pl.col("latency_ms").quantile(0.95, interpolation="linear").alias("latency_p95_ms"),
                          pl.col("price_source").first()).to_dicts()[0]
        failing = _bar_failures(grouped(part, "slice", metrics), row["pass_rate"], bar, admission)
        nano = part["cost_nano_usd"].sum()
        models.append(row | {"model": model, "missing": requests.height - row["requests"],
                             "cost_per_request_usd": usd_per(nano, row["requests"]),
                             "cost_per_1k_usd": per_thousand(nano, row["requests"]),
                             "meets_bar": not failing, "bar_failures": failing})
    return {
        "window_of": scenario.name,
        "requests": requests.height,
        "quality_bar": bar.default,
        "models": models,
        "unpriced": unpriced,
        "oracle": oracle(answers, bar, admission),
    }


def oracle(answers: pl.DataFrame, bar: QualityBar, admission: Admission = DEFAULT_ADMISSION) -> dict | None:
    """The cheapest passing answer per request, else a failure at the cheapest answer's cost."""
    if answers.height == 0:
        return None
    chosen = (answers.sort("rid", pl.col("ok").not_(), "cost_nano_usd", "model")
              .unique("rid", keep="first", maintain_order=True))
    metrics = [pl.len().alias("requests"), usd(pl.col("cost_nano_usd").sum()).alias("total_cost_usd"),
               pl.col("ok").cast(pl.Float64).mean().alias("pass_rate"), pl.col("score").mean().alias("mean_score")]
    row = chosen.select(*metrics, (~pl.col("ok")).sum().cast(pl.Int64).alias("failures")).to_dicts()[0]
    failing = _bar_failures(grouped(chosen, "slice", metrics), row["pass_rate"], bar, admission)
    shares = chosen.group_by("model").agg((pl.len() / chosen.height).alias("share")).sort("model")
    nano = chosen["cost_nano_usd"].sum()
    return row | {"cost_per_request_usd": usd_per(nano, row["requests"]),
                  "cost_per_1k_usd": per_thousand(nano, row["requests"]),
                  "meets_bar": not failing, "bar_failures": failing,
                  "model_share": dict(shares.iter_rows())}


def headline(summaries: list[dict], baseline: dict | None, recommendation: dict | None = None,
             gates: dict | None = None) -> dict:
    """The recommended policy (simulator.core.verdict.recommend), its verdict, its gate against the named
    baseline, and its saving against a reference.

    The reference is the gate's baseline when one is named, else the scenario named `flagship-everywhere`,
    else the most expensive single-model baseline. A saving is given only when the reference ran on the
    same requests as the policy (it is never extrapolated from a subset): the difference in cost per
    request times the policy's requests. When the named reference is the recommended policy itself, there is
    no reference (`reference` None): a saving against itself says nothing. `kept_baseline` is True when the
    recommended policy is the gate's baseline; `uncertainty`, `straddling` and `tied` are the recommendation's.
    """
    recommendation = recommendation or recommend(summaries)
    by_name = {s["scenario"]: s for s in summaries}
    best = by_name.get(recommendation["policy"])
    if best is None:
        closest = [{"policy": name, "state": by_name[name]["verdict"]["state"],
                    "reasons": next(c["reasons"] for c in recommendation["candidates"] if c["scenario"] == name)}
                   for name in recommendation["closest"]]
        return {"policy": None, "closest": closest, "baseline": recommendation.get("baseline"),
                "tied": recommendation.get("tied")}
    named = (gates or {}).get("baseline") or "flagship-everywhere"
    reference = None
    if named in by_name and named != best["scenario"]:
        other = by_name[named]
        reference = {"name": named, "kind": "scenario", "cost_per_request_usd": other["cost_per_request_usd"],
                     "requests": other["requests"], "same_requests": request_set(other) == request_set(best)}
    elif named not in by_name and baseline and baseline["models"]:
        top = max(baseline["models"], key=lambda m: (m["cost_per_request_usd"], m["model"]))
        # The baselines ran on the requests of the scenario they name: the same set as the policy's, not
        # merely as many (two samples of one size hold different requests).
        ran_on = by_name.get(baseline.get("window_of"))
        same = (ran_on is not None and request_set(ran_on) == request_set(best)
                and top["requests"] == best["requests"])
        # `sought`: the scenario looked for first (the gate's baseline, else flagship-everywhere), which the
        # report names when it falls back to a single-model baseline.
        reference = {"name": top["model"], "kind": "baseline", "cost_per_request_usd": top["cost_per_request_usd"],
                     "requests": top["requests"], "same_requests": same, "sought": named}
    saving = share = None
    if reference is not None and reference["same_requests"]:
        saving = (reference["cost_per_request_usd"] - best["cost_per_request_usd"]) * best["requests"]
        if reference["cost_per_request_usd"]:
            share = 1 - best["cost_per_request_usd"] / reference["cost_per_request_usd"]
    gate = next((g for g in (gates or {}).get("gates", []) if g["candidate"]["name"] == best["scenario"]), None)
    return {"policy": best["scenario"], "total_cost_usd": best["total_cost_usd"], "requests": best["requests"],
            "pass_rate": best["pass_rate"], "verdict": best["verdict"], "escalation_rate": best["escalation_rate"],
            "cost_per_request_usd": best["cost_per_request_usd"],
            "latency_p95_ms": best["latency_p95_ms"], "reference": reference, "saving_usd": saving,
            "saving_share": share, "assumed_grades_share": best.get("assumed_grades_share"),
            "late_misses": best.get("over_time", {}).get("late_misses", []),
            "late_bucket": best.get("over_time", {}).get("bucket", "day"),
            "kept_baseline": best["scenario"] == (gates or {}).get("baseline"),
            "uncertainty": recommendation.get("uncertainty"), "straddling": recommendation.get("straddling", []),
            "gate": None if gate is None else {
                "baseline": gate["baseline"]["name"], "passed": gate["passed"], "tolerance": gate["tolerance"],
                "confidence": gate["confidence"], "pass_rate_change": gate["overall"]["pass_rate_change"],
                "cost_per_request_change_usd": gate["overall"]["cost_per_request_change_usd"],
                "cost_relative_change": gate["overall"]["cost_relative_change"],
                "latency_p95_change_ms": gate["overall"]["latency_p95_change_ms"]}}


def _same_requests(summary: dict, reference: dict | None, baseline: dict) -> bool:
    """Whether a scenario ran on exactly the requests the baselines ran on."""
    if reference is None:
        return False
    mine, theirs = summary["provenance"], reference["provenance"]
    return (mine["data_fingerprint"] == baseline.get("data_fingerprint", theirs["data_fingerprint"])
            and mine["window"] == theirs["window"] and mine["sample"] == theirs["sample"]
            and summary["requests"] == baseline["requests"]
            and summary["coverage"]["requests_replayed"] == summary["coverage"]["requests_selected"])


def frontier_table(summaries: list[dict], tables: list[dict], baseline: dict | None) -> dict | None:
    """The cost-quality frontier over policies, sweep points and single models, and each policy's place.

    Costs are per request (USD); quality is the pass rate. See simulator.analyses.frontier for the definitions of
    the envelope, the distance from it, AIQ and CPT.
    """
    if not baseline or not baseline.get("models"):
        return None
    models = {m["model"]: m for m in baseline["models"]}
    model_points = [(m["cost_per_request_usd"], m["pass_rate"]) for m in models.values()]
    low = min(models.values(), key=lambda m: (m["cost_per_request_usd"], -m["pass_rate"]))
    high = max(models.values(), key=lambda m: (m["cost_per_request_usd"], m["pass_rate"]))
    anchors = [(low["cost_per_request_usd"], low["pass_rate"]), (high["cost_per_request_usd"], high["pass_rate"])]
    c_lo, c_hi = anchors[0][0], anchors[1][0]
    reference = next((s for s in summaries if s["scenario"] == baseline["window_of"]), None)
    labelled = [(m["cost_per_request_usd"], m["pass_rate"], f"{name} only", "single model")
                for name, m in models.items()]
    policies = []
    for summary, table in zip(summaries, tables):
        comparable = _same_requests(summary, reference, baseline)
        sweeps = table.get("sweeps", [])
        point = (summary["cost_per_request_usd"], summary["pass_rate"])
        entry = {"scenario": summary["scenario"], "comparable": comparable, "cost_per_request_usd": point[0],
                 "pass_rate": point[1], "sweep": None}
        if comparable:
            labelled.append((*point, summary["scenario"], "policy"))
            family = [point]
            if sweeps:
                first = sweeps[0]
                curve = [p for p in first["points"] if p["requests"] == summary["requests"]]
                family += [(p["cost_per_request_usd"], p["pass_rate"]) for p in curve]
                labelled += [(p["cost_per_request_usd"], p["pass_rate"],
                              f"{summary['scenario']} at {first['over']} >= {p['threshold']:.4g}", "sweep point")
                             for p in curve]
                entry["sweep"] = {"plan": first["plan"], "over": first["over"], "points": len(curve)}
                if first.get("two_models"):
                    weak, strong = models.get(first["models"][0]), models.get(first["models"][-1])
                    if weak and strong:
                        entry["cpt"] = {"weak": first["models"][0], "strong": first["models"][-1],
                                        "weak_pass_rate": weak["pass_rate"], "strong_pass_rate": strong["pass_rate"],
                                        **{f"cpt_{round(x * 100)}": frontier.cpt(curve, weak["pass_rate"],
                                                                                 strong["pass_rate"], x)
                                           for x in (0.5, 0.8)}}
            entry["aiq"] = frontier.aiq(family, anchors, c_lo, c_hi)
        policies.append(entry)
    hull = frontier.envelope([(c, q) for c, q, _, _ in labelled])
    priority = {"policy": 0, "single model": 1, "sweep point": 2}
    ranked = sorted(labelled, key=lambda point: priority[point[3]])

    def name_of(c: float, q: float, among: list = ranked) -> tuple[str, str]:
        """The vertex's name: a policy, else a single model, else a sweep point at the same place (to 1e-9
        relative, as the same point reached two ways can differ in the last bits of its sums)."""
        return next((name, kind) for pc, pq, name, kind in among
                    if math.isclose(pc, c, rel_tol=1e-9) and math.isclose(pq, q, rel_tol=1e-9))

    singles = [point for point in labelled if point[3] == "single model"]

    for entry in policies:
        if entry["comparable"]:
            entry |= frontier.distance(hull, entry["cost_per_request_usd"], entry["pass_rate"])
    oracle = baseline.get("oracle")
    mixture = frontier.envelope(model_points)
    return {
        "requests_of": baseline["window_of"],
        "requests": baseline["requests"],
        "cost_range_usd": [c_lo, c_hi],
        "frontier": [{"cost_per_request_usd": c, "pass_rate": q, "name": name_of(c, q)[0], "kind": name_of(c, q)[1]}
                     for c, q in hull],
        "mixture": [{"cost_per_request_usd": c, "pass_rate": q, "name": name_of(c, q, singles)[0]} for c, q in mixture],
        "mixture_aiq": frontier.aiq(model_points, anchors, c_lo, c_hi),
        "oracle": None if not oracle else {
            "cost_per_request_usd": oracle["cost_per_request_usd"], "pass_rate": oracle["pass_rate"],
            "aiq": frontier.aiq([(oracle["cost_per_request_usd"], oracle["pass_rate"])], anchors, c_lo, c_hi),
            "frontier_pass_rate_at_same_cost": frontier.quality_at(hull, oracle["cost_per_request_usd"])},
        "policies": policies,
    }
