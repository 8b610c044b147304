"""Eval-driven lanes: a model serves a slice's traffic only once it has passed that slice's evals.

Per slice (or any other string column of the traffic, `--by`), every model's first answer (`sample` 0) to
every request is an eval:
- A pass is `passed` AND `hard_check_ok`, as the engine counts a request's final answer.
- Cost per request is the mean cost of those answers, each priced like the engine prices a call
  (simulator.core.prices.price_calls, at the request's `ts`; the recorded `cost_usd` for models the sheet does
  not list). p95 latency interpolates linearly between order statistics, like every latency metric.
- A model is admitted to a slice when the lower bound of the Wilson interval of its pass rate meets the
  slice's bar (`--point`: when its observed pass rate does). The interval, not the point, is the default
  because a slice of 40 requests cannot prove a 95% pass rate: 40 passes of 40 give a lower bound of 0.912.
- A slice's lane is its cheapest admitted model (ties: the model name). A slice with no admitted model is
  routed to the model with the highest pass rate there (ties: cheaper, then the name), and says so.
- A model is judged on the requests it answered; the table shows how many of the slice's requests that is.

The lanes become a scenario: one rule per slice (`when: "slice = '...'"`) in slice order, and a default
plan for slices not seen when fitting, sent to the model with the highest pass rate over all fitted
traffic. With `cascade`, each lane is a cascade whose first step is the lane's model, accepted when the
answer's hard check passes and `accept` holds (default "confidence >= 0.7": the model's own confidence,
known when the call returns, never the grader's verdict), escalating to the model with the highest pass
rate overall (or `escalate_to`).

Honest validation (`fit_until`): lanes are admitted on the traffic before 00:00 UTC of that date, and the
lanes' scenario is replayed by the engine on the traffic from that date on. Each slice, and the whole
window against the default bar, is judged there by the admission rule the lanes were admitted by
(simulator.core.verdict: meets, undecided or fails), exactly as `routesim replay` of the emitted scenario
judges it; lanes admitted before the date that fail or are undecided after it are called out.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from pydantic import ValidationError

from simulator.analyses.estimates import (StratifiedSample, drawn_probabilities, has_shadow_sample, interval,
                                          shadow_subset)
from simulator.core.contract import Dataset, grade_columns, load_data
from simulator.core.engine import compile_policy, data_values, replay, with_utc_ts
from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.formats import confidence_level, counted, pct
from simulator.core.metrics import P95, grouped
from simulator.core.outputs import write_text_atomic
from simulator.core.paths import relative
from simulator.core.predicates import parse_predicate
from simulator.core.prices import PriceSheet, load_prices, price_calls, token_columns, usd_per_request
from simulator.core.scenario import DEFAULT_QUALITY_BAR, QualityBar, Scenario, load_scenario
from simulator.core.stats import check_confidence, clustered_wilson_interval, wilson_interval
from simulator.core.validation import from_pydantic_error, read_yaml
from simulator.core.verdict import (DEFAULT_ADMISSION, FAILS, MEETS, UNDECIDED, Admission, judge,
                                    judge_estimate)

GROUP = "_lane_group"
# What an eval's pass counts as a trial of: the request (default), or with --resample session the session, whose
# turns are not independent (a request without a session_id is a session of its own).
RESAMPLE_UNITS = ("request", "session")
UNIT = "_lane_session"
LATENCY_QUANTILE = P95
DEFAULT_ACCEPT = "confidence >= 0.7"
# The resamples and seed of a design-weighted replay (simulator.analyses.estimates.replay_or_estimate's
# defaults): the out-of-sample check on a shadow sample draws what a replay of the emitted scenario draws.
ESTIMATE_RESAMPLES, ESTIMATE_SEED = 1000, 0
SIMPLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class LaneOptions:
    by: str = "slice"
    confidence: float = 0.95
    point: bool = False
    fit_until: dt.date | None = None
    cascade: bool = False
    accept: str = DEFAULT_ACCEPT
    escalate_to: str | None = None
    name: str = "lanes"
    resample: str = "request"

    @property
    def criterion(self) -> str:
        return "point_estimate" if self.point else "wilson_lower_bound"


@dataclass(frozen=True)
class Bars:
    """The bars lanes must meet (`load_bars`): the bars, where they were given (named by an error about them),
    and the note the output carries when they are the default (none given, or a scenario stating none)."""

    quality_bar: QualityBar
    where: str = "--bar"
    note: str | None = None


def load_bars(bar: float | None = None, bars_file: Path | None = None, bars_from: Path | None = None) -> Bars:
    """The bars lanes must meet: one number, a bars file ({default:, slices: {...}}) or a scenario's
    quality_bar."""
    given = [name for name, value in (("--bar", bar), ("--bars", bars_file), ("--bars-from", bars_from))
             if value is not None]
    if len(given) > 1:
        raise RoutesimError(f"give one source of bars, not {' and '.join(given)}", where=", ".join(given),
                            fix="--bar 0.9 for one bar everywhere, --bars FILE.yaml for per-slice bars, or "
                                "--bars-from SCENARIO.yaml to use a scenario's quality_bar")
    if bars_from is not None:
        scenario = load_scenario(bars_from)
        return Bars(scenario.quality_bar, f"--bars-from {bars_from}, key quality_bar", scenario.unstated_bar_note())
    if bars_file is not None:
        raw = read_yaml(bars_file)
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = {"default": raw}
        if not isinstance(raw, dict):
            raise RoutesimError("a bars file is a YAML mapping: {default: 0.9, slices: {SLICE: BAR}}",
                                where=str(bars_file), fix="see 'routesim lanes' in the README")
        try:
            return Bars(QualityBar.model_validate(raw), f"--bars {bars_file}")
        except ValidationError as error:
            raise from_pydantic_error(error, QualityBar, file=bars_file) from None
    if bar is None:
        return Bars(QualityBar(default=DEFAULT_QUALITY_BAR), note=f"no bar given (--bar, --bars or --bars-from): the "
                                                                 f"default of {pct(DEFAULT_QUALITY_BAR)} applied")
    if not 0 <= bar <= 1:
        raise RoutesimError(f"a bar is a pass rate in 0..1, got {bar}", where="--bar", fix="e.g. --bar 0.9")
    return Bars(QualityBar(default=bar))


def _requests(data: Dataset, by: str, resample: str = "request") -> pl.DataFrame:
    """Every request with its UTC timestamp and its group (the value of the `by` column); by session, also
    its session (UNIT: its session_id, else its own request_id)."""
    schema = data.traffic.collect_schema()
    if resample not in RESAMPLE_UNITS:
        raise RoutesimError(f"--resample is one of {', '.join(RESAMPLE_UNITS)}, got '{resample}'", where="--resample",
                            fix="--resample request (default) or --resample session")
    unit = []
    if resample == "session":
        if "session_id" not in schema:
            raise RoutesimError("--resample session needs sessions, and the traffic has no session_id",
                                where="--resample", fix="fit on traffic that carries session_id, or leave out "
                                                        "--resample session")
        unit = [pl.coalesce(pl.col("session_id").cast(pl.String), pl.lit("request:") + pl.col("request_id"))
                .alias(UNIT)]
    if by not in schema:
        raise RoutesimError(f"the traffic has no column '{by}'.{did_you_mean(by, schema.names())}", where="--by",
                            fix=f"group by one of: {', '.join(schema.names())}")
    if schema[by] not in (pl.String, pl.Categorical) and not isinstance(schema[by], pl.Enum):
        raise RoutesimError(f"column '{by}' has type {schema[by]}; lanes group by a string column", where="--by",
                            fix="group by 'slice' or another string column such as 'feature'")
    requests = with_utc_ts(data.traffic.select("request_id", "ts", pl.col(by).cast(pl.String).alias(GROUP),
                                               *unit)).collect()
    nulls = requests.filter(pl.col(GROUP).is_null())
    if nulls.height:
        raise RoutesimError(f"column '{by}' has no value for {counted(nulls.height, 'request')} "
                            f"(e.g. {nulls['request_id'][0]})", where="--by",
                            fix="fill the column, or group by a column that is always set")
    return requests


def _evals(data: Dataset, sheet: PriceSheet | None, requests: pl.DataFrame) -> pl.DataFrame:
    """Every model's first answer to each request: group, pass, cost priced at the request's ts, latency."""
    answers = (data.outcomes.filter(pl.col("sample") == 0)
               .select("request_id", "model", *token_columns(data.outcomes.collect_schema().names()), "latency_ms",
                       "passed", "hard_check_ok", pl.col("cost_usd").alias("recorded_cost_usd"))
               .join(requests.lazy(), on="request_id", how="inner")
               .collect()
               .sort("request_id", "model"))  # a join's output order varies; sums must not
    priced = price_calls(answers, sheet, sheet_from="--prices")
    return priced.select(GROUP, "model", *([UNIT] if UNIT in priced.columns else []),
                         (pl.col("passed") & pl.col("hard_check_ok")).alias("ok"),
                         "cost_nano_usd",
                         pl.col("latency_ms").cast(pl.Float64))


def model_table(evals: pl.DataFrame, bars: QualityBar, confidence: float, point: bool) -> pl.DataFrame:
    """Per group and model: requests, passes, pass rate with its Wilson interval, cost, p95, admitted.

    With a session column (UNIT) in `evals`, the interval is the design-effect-adjusted Wilson interval of
    the sessions (stats.clustered_wilson_interval), for traffic whose turns are not independent."""
    table = grouped(evals, [GROUP, "model"], [
        pl.len().cast(pl.Int64).alias("requests"), pl.col("ok").sum().cast(pl.Int64).alias("passes"),
        usd_per_request(pl.col("cost_nano_usd")).alias("cost_per_request_usd"),
        pl.col("latency_ms").quantile(LATENCY_QUANTILE, interpolation="linear").alias("latency_p95_ms"),
    ]).sort(GROUP, "cost_per_request_usd", "model")
    if UNIT in evals.columns:
        sessions = (evals.group_by(GROUP, "model", UNIT)
                    .agg(pl.len().cast(pl.Float64).alias("m"), pl.col("ok").sum().cast(pl.Float64).alias("y"))
                    .join(table.select(GROUP, "model", (pl.col("passes") / pl.col("requests")).alias("p")),
                          on=[GROUP, "model"])
                    .sort(GROUP, "model", UNIT)  # a fixed order of the sum: the same bytes every run
                    .group_by(GROUP, "model", maintain_order=True)
                    .agg(((pl.col("y") - pl.col("p") * pl.col("m")) ** 2).sum().alias("squares"),
                         pl.col("m").max().alias("largest")))
        within = table.join(sessions, on=[GROUP, "model"], how="left", maintain_order="left")
        low, high = clustered_wilson_interval(within["passes"].to_numpy(), within["requests"].to_numpy(),
                                              within["squares"].to_numpy(), within["largest"].to_numpy(), confidence)
    else:
        low, high = wilson_interval(table["passes"].to_numpy(), table["requests"].to_numpy(), confidence)
    bar = pl.col(GROUP).replace_strict(bars.slices, default=bars.default, return_dtype=pl.Float64)
    # k / n in numpy, each pair correctly rounded as simulator.core.verdict.judge computes it: polars divides by
    # an operand it holds as one value by multiplying with its reciprocal, and 28 / 35 came out 0.7999999999999999,
    # which fails a bar of 0.8 that `replay --rule point` judges met.
    rate = table["passes"].to_numpy().astype(np.float64) / table["requests"].to_numpy().astype(np.float64)
    table = table.with_columns(pl.Series("pass_rate", rate, dtype=pl.Float64),
                               pl.Series("pass_rate_low", np.asarray(low)),
                               pl.Series("pass_rate_high", np.asarray(high)), bar.alias("bar"))
    # The admission rule of simulator.core.verdict.judge: `meets` under lower_bound (or point) admits.
    measure = pl.col("pass_rate") if point else pl.col("pass_rate_low")
    return table.with_columns((measure >= pl.col("bar")).alias("admitted"))


def choose_lanes(table: pl.DataFrame) -> pl.DataFrame:
    """Per group: the cheapest admitted model, else the model with the highest pass rate."""
    admitted = (table.filter("admitted").sort(GROUP, "cost_per_request_usd", "model")
                .group_by(GROUP, maintain_order=True).first()
                .select(GROUP, pl.col("model").alias("lane")))
    best = (table.sort(GROUP, pl.col("pass_rate"), "cost_per_request_usd", "model",
                       descending=[False, True, False, False])
            .group_by(GROUP, maintain_order=True).first()
            .select(GROUP, pl.col("model").alias("most_passing"), pl.col("pass_rate").alias("most_passing_rate")))
    return (best.join(admitted, on=GROUP, how="left")
            .with_columns(pl.coalesce("lane", "most_passing").alias("route_to"))
            .sort(GROUP))


def most_passing_overall(evals: pl.DataFrame) -> str:
    """The model with the highest pass rate over all fitted requests (ties: cheaper, then the name)."""
    pooled = grouped(evals, "model", [pl.col("ok").mean().alias("pass_rate"),
                                      usd_per_request(pl.col("cost_nano_usd")).alias("cost_usd")])
    return pooled.sort(pl.col("pass_rate"), "cost_usd", "model", descending=[True, False, False])["model"][0]


def _identifier(name: str) -> str:
    return name if SIMPLE_NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _Predicate(str):
    """A predicate, written double-quoted in YAML as the shipped scenarios write them."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Predicate, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", str(text), style='"'))


def _plan(model: str, escalate_to: str | None, accept: str) -> dict:
    if escalate_to is None or escalate_to == model:
        return {"use": model}
    return {"cascade": [{"model": model, "accept": _Predicate(accept)}, {"model": escalate_to}]}


def _missing_outcomes(data: Dataset, requests: pl.DataFrame, needed: pl.DataFrame) -> int:
    """Requests that lack a first answer from a model their plan may call (`needed`: group -> model)."""
    wanted = requests.select("request_id", GROUP).join(needed, on=GROUP, how="inner")
    have = data.outcomes.filter(pl.col("sample") == 0).select("request_id", "model").collect()
    return wanted.join(have, on=["request_id", "model"], how="anti").select("request_id").n_unique()


def _models_needed(chosen: pl.DataFrame, unseen: list[str], default_model: str,
                   escalate_to: str | None) -> pl.DataFrame:
    """group -> model for every model the lanes' plans may call in that group."""
    needed = chosen.select(GROUP, pl.col("route_to").alias("model"))
    parts = [needed, pl.DataFrame({GROUP: unseen, "model": [default_model] * len(unseen)}, schema=needed.schema)]
    if escalate_to:
        parts.append(chosen.select(GROUP, pl.lit(escalate_to).alias("model")))
    return pl.concat(parts).unique()


def _checked_scenario(content: dict, data: Dataset, prices: Path | None) -> Scenario:
    """The emitted content as a Scenario, validated and compiled against the data like any scenario file."""
    try:
        scenario = Scenario.model_validate(content).model_copy(update={
            "data": Path(data.folder).resolve(), "prices": Path(prices).resolve() if prices else None})
    except ValidationError as error:
        raise from_pydantic_error(error, Scenario, file="the lanes scenario") from None
    compile_policy(scenario, data.traffic.collect_schema(), data.outcomes.collect_schema(),
                   data_values(data.outcomes, "model"))
    return scenario


def _policy(chosen: pl.DataFrame, by: str, default_model: str, options: LaneOptions,
            escalate_to: str | None) -> dict:
    rules = [{"name": f"lane {group}", "when": _Predicate(f"{_identifier(by)} = {_literal(group)}"),
              **_plan(model, escalate_to, options.accept)}
             for group, model in chosen.select(GROUP, "route_to").iter_rows()]
    return {"rules": rules, "default": {"use": default_model}}


def _description(result: dict, options: LaneOptions, by: str, missing: int) -> str:
    criterion = ("whose observed pass rate meets its bar" if options.point else
                 f"whose pass rate's {confidence_level(options.confidence)} Wilson lower bound meets its bar")
    fitted = (f"on traffic before {options.fit_until} ({counted(result['fit']['requests'], 'request')})"
              if options.fit_until else f"on all {counted(result['fit']['requests'], 'request')} of the data")
    text = f"Eval-driven lanes: each {by} goes to the cheapest model {criterion}, admitted {fitted}."
    fallback = [group for group in result["groups"] if group["lane"] is None]
    if fallback:
        listed = ", ".join(f"{group['group']} ({group['route_to']})" for group in fallback)
        text += f" No model is admitted in {listed}: they go to the model with the highest pass rate there."
    text += (f" A {by} not seen when fitting goes to {result['default_model']}, the model with the highest pass "
             "rate overall.")
    if options.cascade:
        target = result["escalate_to"]
        alone = sorted({group["route_to"] for group in result["groups"] if group["route_to"] == target})
        text += (f" Each lane is a cascade: its model first, final when its hard check passes and "
                 f"'{options.accept}' holds, else escalated to {target}"
                 + (f" (a lane of {target} itself calls it alone)." if alone else "."))
    if options.fit_until:
        text += (f" The window covers the traffic from {options.fit_until} on, which the lanes were not fitted on: "
                 "replaying it is an out-of-sample check.")
    else:
        text += " Replaying it on the same traffic is in-sample: use --fit-until for an honest check."
    if missing:
        text += (f" Left out (on_missing: skip): {counted(missing, 'request')} without a first answer from a model "
                 "their lane may call.")
    return text


def _estimated(decisions: pl.DataFrame, data: Dataset, population: dict, confidence: float) -> tuple[tuple, dict]:
    """The window's pass rate and each group's, as design-weighted estimates (value, low, high) from the
    drawn requests' `decisions` (with GROUP): the estimator, draws and intervals of
    simulator.analyses.estimates.design_weighted, with the resamples and seed `replay` gives it, so a
    replay of the lanes' scenario judges the same intervals."""
    names = sorted(population)
    drawn = decisions.join(drawn_probabilities(data), on="request_id", how="left")
    sample = StratifiedSample(
        strata=drawn[GROUP].replace_strict({name: code for code, name in enumerate(names)},
                                           return_dtype=pl.Int64).to_numpy(),
        weights=(1.0 / drawn["pi"]).to_numpy(),
        population=np.array([population[name] for name in names], dtype=np.float64),
        columns={"passed": drawn["passed"].cast(pl.Float64).to_numpy()}, keys=drawn["request_id"])
    boot = sample.draw_counts(ESTIMATE_RESAMPLES, ESTIMATE_SEED)
    point, replicates = sample.mean("passed", boot)
    per_group = sample.stratum_intervals("passed", boot, confidence)
    return (point, *interval(replicates, confidence)), dict(zip(names, per_group))


def _out_of_sample(scenario: Scenario, data: Dataset, sheet: PriceSheet | None, requests: pl.DataFrame,
                   result: dict, bars: QualityBar, admission: Admission, population: dict | None = None) -> dict:
    """Replays the lanes on the later traffic and judges every group's bar there, and the overall bar, by
    the run's `admission` (simulator.core.verdict): each gets the `state` a replay of the emitted scenario
    gives its slice (meets, undecided or fails), with the same interval and `to_settle`.

    With `population` (each slice's requests in the later window, when `data` holds only a shadow sample's
    drawn requests), the pass rates are the design-weighted estimates `replay` makes of that window
    (`_estimated`): overall and the cost per request weigh each slice's drawn requests by its share of the
    window (a stratified estimate) instead of averaging the drawn requests, and the intervals judged are the
    estimates'."""
    replayed = replay(scenario, data, sheet)
    decisions = replayed.decisions.join(requests.select("request_id", GROUP), on="request_id", how="left",
                                        maintain_order="left")
    per_group = grouped(decisions, GROUP, [
        pl.len().cast(pl.Int64).alias("requests"), pl.col("passed").sum().cast(pl.Int64).alias("passes"),
        usd_per_request(pl.col("cost_nano_usd")).alias("cost_per_request_usd")])
    estimated = _estimated(decisions, data, population, admission.confidence) if population else None
    fitted = {group["group"]: group for group in result["groups"]}
    groups = []
    for row in per_group.iter_rows(named=True):
        name = row[GROUP]
        bar = bars.for_slice(name)
        if estimated:
            rate, low, high = estimated[1][name]
            verdict = judge_estimate(rate, low, high, row["requests"], bar, admission)
        else:
            verdict = judge(row["passes"], row["requests"], bar, admission)
        fit = fitted.get(name)
        status = "not seen when fitting" if fit is None else ("admitted" if fit["lane"] else "none admitted")
        fitted_rate = (next(model["pass_rate"] for model in fit["models"] if model["model"] == fit["route_to"])
                       if fit else None)
        groups.append({"group": name, "route_to": fit["route_to"] if fit else result["default_model"],
                       "in_sample": status, "in_sample_pass_rate": fitted_rate, "requests": row["requests"],
                       "pass_rate": verdict["pass_rate"], "pass_rate_low": verdict["low"],
                       "pass_rate_high": verdict["high"], "bar": bar, "state": verdict["state"],
                       "to_settle": verdict["to_settle"], "holds": verdict["state"] == MEETS,
                       "clearly_below": bool(verdict["high"] < bar),
                       "cost_per_request_usd": row["cost_per_request_usd"]})
    window = scenario.window
    cost = float(decisions.select(usd_per_request(pl.col("cost_nano_usd"))).item())
    requests_shown = decisions.height
    if estimated:
        shares = {name: size / sum(population.values()) for name, size in population.items()}
        cost = sum(shares[g["group"]] * g["cost_per_request_usd"] for g in groups)
        requests_shown = sum(population.values())
        overall = judge_estimate(*estimated[0], decisions.height, bars.default, admission)
    else:
        overall = judge(int(decisions["passed"].sum()), decisions.height, bars.default, admission)
    admitted = [g for g in groups if g["in_sample"] == "admitted"]
    return {"window": {"start": str(window.start), "end": str(window.end)},
            "requests": requests_shown, "drawn": decisions.height if population else None,
            "rule": admission.rule, "confidence": admission.confidence,
            "pass_rate": overall["pass_rate"], "pass_rate_low": overall["low"], "pass_rate_high": overall["high"],
            "bar": bars.default, "state": overall["state"], "to_settle": overall["to_settle"],
            "holds": overall["state"] == MEETS, "cost_per_request_usd": cost, "groups": groups,
            "failed_out_of_sample": [g["group"] for g in admitted if g["state"] == FAILS],
            "undecided_out_of_sample": [g["group"] for g in admitted if g["state"] == UNDECIDED]}


def fit_lanes(data_folder: Path, prices: Path | None, given: Bars, options: LaneOptions | None = None,
              emit: Path | None = None) -> dict:
    """Admits lanes, builds their scenario (written to `emit` if given) and, with `fit_until`, checks them
    out of sample. Returns everything as plain JSON-ready data; `scenario` is the emitted file's content.
    `given`: the bars (`load_bars`)."""
    bars = given.quality_bar
    options = options or LaneOptions()
    confidence = check_confidence(options.confidence)
    data = load_data(Path(data_folder))
    sheet = load_prices(Path(prices)) if prices else None
    shadow = has_shadow_sample(data)
    if shadow:
        # A served log's answers follow its router; the shadow sample's drawn requests are a simple random
        # sample of each slice, so every model's pass rate there, and its Wilson interval, is the slice's.
        if options.by != "slice":
            raise RoutesimError("lanes on a shadow-sampled served log are fitted per slice, the sample's strata: "
                                f"the drawn requests of a '{options.by}' mix slices drawn at different rates",
                                where="--by", fix="fit lanes --by slice on this data")
        population = _requests(data, options.by, options.resample)
        data = shadow_subset(data, drawn_probabilities(data).select("request_id"))
    requests = _requests(data, options.by, options.resample)
    if requests.height == 0:
        raise RoutesimError(f"no requests to fit lanes on: the data folder {data_folder} holds none (its traffic "
                            "has no rows)", where=str(data_folder),
                            fix="point lanes at a folder whose traffic holds requests, or import logs into this one "
                                "(routesim import)")
    groups_in_data = sorted(requests[GROUP].unique().to_list())
    for name in bars.slices:
        if name not in groups_in_data:
            raise RoutesimError(f"a bar is set for '{name}', which is no {options.by} in the data."
                                f"{did_you_mean(name, groups_in_data)}", where=given.where,
                                fix=f"{options.by} values: {', '.join(groups_in_data)}")

    first_day, last_day = requests["ts"].min().date(), requests["ts"].max().date()
    fitted_requests = requests
    if options.fit_until:
        cut = dt.datetime.combine(options.fit_until, dt.time(), tzinfo=dt.UTC)
        fitted_requests = requests.filter(pl.col("ts") < cut)
        if fitted_requests.height == 0 or fitted_requests.height == requests.height:
            raise RoutesimError(f"--fit-until {options.fit_until} leaves no traffic on one side: the data runs from "
                                f"{first_day} to {last_day}", where="--fit-until",
                                fix=f"pick a date after {first_day} and not after {last_day}")
    evals = _evals(data, sheet, fitted_requests)
    if evals.height == 0:
        raise RoutesimError("no model answered any of the requests the lanes are fitted on", where=str(data_folder),
                            fix="check that outcomes.parquet holds sample-0 answers for these requests")
    models = sorted(evals["model"].unique().to_list())
    if options.escalate_to is not None and options.escalate_to not in models:
        raise RoutesimError(f"--escalate-to names the model '{options.escalate_to}', which has no answers in the data."
                            f"{did_you_mean(options.escalate_to, models)}", where="--escalate-to",
                            fix=f"models: {', '.join(models)}")
    accept_grades: list[str] = []
    if options.cascade:
        # Checked here as well as in the scenario, which holds it only for lanes whose model is not the last step.
        outcome_names = data.outcomes.collect_schema().names()
        accept = parse_predicate(options.accept, key="--accept", columns=sorted(
            set(data.traffic.collect_schema().names()) | set(outcome_names)))
        # A gate on a grade is known only after grading: the lanes' replay is then a bound, and said so here.
        accept_grades = grade_columns(accept.columns, outcome_names, data.serving_signals)
    table = model_table(evals, bars, confidence, options.point)
    chosen = choose_lanes(table)
    default_model = most_passing_overall(evals)
    escalate_to = (options.escalate_to or default_model) if options.cascade else None
    group_sizes = dict(fitted_requests.group_by(GROUP).len().iter_rows())
    result: dict = {
        "data": str(data.folder), "prices": str(prices) if prices else None, "by": options.by,
        "confidence": confidence, "criterion": options.criterion, "resample": options.resample,
        "bars": {"default": bars.default, "slices": dict(bars.slices), "note": given.note},
        "fit": {"first_request": fitted_requests["ts"].min().isoformat(),
                "last_request": fitted_requests["ts"].max().isoformat(),
                "until": str(options.fit_until) if options.fit_until else None,
                "requests": fitted_requests.height,
                "shadow_sample": shadow},  # fitted on the drawn requests of a shadow-sampled served log
        "default_model": default_model, "escalate_to": escalate_to,
        "cascade": {"accept": options.accept, "escalate_to": escalate_to, "reads_grades": accept_grades}
        if options.cascade else None,
        "groups": [],
    }
    for lane in chosen.iter_rows(named=True):
        name = lane[GROUP]
        rows = table.filter(pl.col(GROUP) == name).drop(GROUP).to_dicts()
        result["groups"].append({"group": name, "bar": bars.for_slice(name), "requests": group_sizes[name],
                                 "lane": lane["lane"], "route_to": lane["route_to"],
                                 "reason": "cheapest admitted" if lane["lane"] else "none admitted: highest pass rate",
                                 "models": rows})

    unseen = [group for group in groups_in_data if group not in group_sizes]
    missing = _missing_outcomes(data, requests, _models_needed(chosen, unseen, default_model, escalate_to))
    content = {"name": options.name, "description": _description(result, options, options.by, missing),
               "data": None, "prices": None}
    # The window the scenario replays: the later traffic when fitted until a date, else every day fitted on,
    # so the scenario is gated against others of the same window without editing it.
    content["window"] = {"start": options.fit_until or first_day, "end": last_day + dt.timedelta(days=1)}
    content["quality_bar"] = ({"default": bars.default, "slices": dict(bars.slices)} if options.by == "slice"
                              else {"default": bars.default})
    if missing:
        content["on_missing"] = "skip"
    admitted_by = Admission(rule="point" if options.point else "lower_bound", confidence=confidence)
    if admitted_by != DEFAULT_ADMISSION:  # replayed, its bars are judged as the lanes were admitted
        content["admission"] = {"rule": admitted_by.rule, "confidence": admitted_by.confidence}
    content["policy"] = _policy(chosen, options.by, default_model, options, escalate_to)

    base = Path(emit).parent if emit else Path.cwd()
    content["data"] = relative(data.folder, base)
    if prices:
        content["prices"] = relative(Path(prices), base)
    else:
        del content["prices"]
    scenario = _checked_scenario(content, data, prices)
    result["scenario"] = _yaml_ready(content)
    later = None
    if shadow and options.fit_until:  # each slice's requests in the later window, to weigh the drawn ones
        cut = dt.datetime.combine(options.fit_until, dt.time(), tzinfo=dt.UTC)
        later = dict(population.filter(pl.col("ts") >= cut).group_by(GROUP).len().iter_rows())
    result["out_of_sample"] = (_out_of_sample(scenario, data, sheet, requests, result, bars, admitted_by, later)
                               if options.fit_until else None)
    result["emitted"] = None
    if emit:
        header = ("# Written by `routesim lanes`: eval-driven lanes as a routing policy. Replay, report or gate it\n"
                  "# like any scenario; `routesim lanes` writes it again from the data.\n")
        body = yaml.dump(content, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
        write_text_atomic(Path(emit), header + body)
        result["emitted"] = str(emit)
    return result


def _yaml_ready(content: dict) -> dict:
    """The scenario content with dates as ISO strings, for JSON."""
    if "window" not in content:
        return dict(content)
    return {**content, "window": {key: str(value) for key, value in content["window"].items()}}
