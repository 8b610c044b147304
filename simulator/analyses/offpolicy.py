"""Off-policy estimates from a randomised logging router: IPS, SNIPS and doubly robust.

A served-only log holds, per request i, the answer of the one model a_i the logging router chose, with
probability p_i = pi_0(a_i | x_i) (`logging_propensity`). A new one-call policy picks model t_i for request
i. Its figures (pass rate; cost per request) are means over the window of y_i(t_i), observed only where
t_i = a_i. With weights w_i = 1[t_i = a_i] / pi_0(t_i | x_i) (Dudik, Langford & Li 2011; the formulas of
Open Bandit Pipeline's `ope.estimators`):

- IPS: (1/n) sum_i w_i y_i.
- SNIPS: sum_i w_i y_i / sum_i w_i (self-normalised; Swaminathan & Joachims 2015).
- DR: (1/n) sum_i [m(x_i, t_i) + w_i (y_i - m(x_i, t_i))], with m a reward model fitted with K-fold
  cross-fitting (each fold predicted by a model fitted on the other folds' logged answers; Chernozhukov et
  al. 2018): a classifier for pass, a regressor of output tokens priced with the sheet for cost.

The truth each estimate targets is the full-matrix figure of this week (the policy replayed exactly on
every request), so intervals are design-based: the logging draw is the only randomness. Given the week, the
event t_i = a_i happens independently per request with probability p_i(t_i), a Poisson sample, and the
estimators are Horvitz-Thompson (IPS, DR on the residuals y - m) and Hajek (SNIPS) estimators of that
sample, with the unbiased variance estimators sum_i w_i^2 (1 - p_i) r_i^2 / n^2 (r = y for IPS, y - m for
DR, y - estimate for SNIPS, with sum w in place of n). Intervals are normal at the given confidence.

Diagnostics, always reported: effective sample size (sum w)^2 / sum w^2 (Kish), the share of requests
whose target has logging propensity 0 (no support: nothing about them was ever observed), and the
largest weight. A request without support is refused by default (exit 2, pointing to plan-shadow);
`unsupported="dm"` fills it from the reward model alone and labels the estimate `dr+dm`. A logging router
that never randomised (every propensity 1) has no support off its own path and is refused.

Only one-call policies: a cascade's escalation needs the first model's answer and the second model's
answer to the same request, which a log of one answer per request never holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from simulator.analyses.coverage import single_call
from simulator.analyses.estimates import Estimate
from simulator.core.contract import PROPENSITY_PREFIX, TRAFFIC_FILE, Dataset
from simulator.core.draws import keyed_uniform
from simulator.core.engine import assign_plans, compile_policy, data_values, select_requests
from simulator.core.errors import RoutesimError
from simulator.core.formats import counted
from simulator.core.money import NANO_PER_USD
from simulator.core.prices import PriceSheet, price_calls, price_expr, usd
from simulator.core.stats import z_score

IPS, SNIPS, DR, DR_DM = "IPS", "SNIPS", "DR", "DR+DM"
REWARD_MODELS = ("logistic", "gbm")
FOLDS = 2
SUPPORT_FIX = ("re-run a stratified sample of the requests on the candidates with 'routesim plan-shadow' and "
               "replay it design-weighted, or pass --unsupported dm to fill them from the reward model")


@dataclass(frozen=True)
class Logged:
    """Per request of the window, as arrays: what the logger did and what the target policy would do.

    `target_propensity` is pi_0(t_i | x_i): the logger's probability of the target's choice, NaN where the
    log cannot say (no `propensity_<model>` column and the target is not the served model).
    `y` maps a figure's name to its observed value (meaningful where matched).
    """

    matched: np.ndarray
    target_propensity: np.ndarray
    y: dict[str, np.ndarray]
    dm: dict[str, np.ndarray]


def weights(logged: Logged) -> np.ndarray:
    return np.where(logged.matched, 1.0 / np.where(logged.matched, logged.target_propensity, 1.0), 0.0)


def diagnostics(logged: Logged) -> dict:
    w = weights(logged)
    supported = ~(logged.target_propensity == 0)
    square = float((w ** 2).sum())
    return {"requests": int(len(w)), "matched": int(logged.matched.sum()),
            "effective_sample_size": float(w.sum() ** 2 / square) if square > 0 else 0.0,
            "no_support_share": float((~supported).mean()) if len(w) else 0.0,
            "support_unknown_share": float(np.isnan(logged.target_propensity).mean()) if len(w) else 0.0,
            "max_weight": float(w.max()) if len(w) else 0.0}


def estimate(logged: Logged, metric: str, *, confidence: float = 0.95, unsupported: str = "refuse") -> list[Estimate]:
    """IPS, SNIPS and (with a reward model) DR estimates of the mean of `metric`, with normal intervals.

    With unsupported requests and `unsupported="dm"`, only DR+DM is given: IPS and SNIPS would silently
    count those requests as failures.
    """
    z = z_score(confidence)
    w = weights(logged)
    p = np.where(logged.matched, logged.target_propensity, 1.0)
    y = np.where(logged.matched, logged.y[metric], 0.0)
    n = len(w)
    frame = pl.DataFrame({"w": w, "y": y, "p": p, "matched": logged.matched,
                          "m": logged.dm.get(metric, np.full(n, np.nan)),
                          "supported": ~(logged.target_propensity == 0)})
    # Horvitz-Thompson variance of a Poisson sample: sum w^2 (1 - p) r^2 over the matched requests.
    def ht_variance(residual: pl.Expr) -> pl.Expr:
        return (pl.col("w") ** 2 * (1 - pl.col("p")) * residual ** 2).filter(pl.col("matched")).sum()

    unsupported_any = bool((~frame["supported"]).any())
    out = []
    if not unsupported_any:
        ips, ips_var, w_sum = frame.select(((pl.col("w") * pl.col("y")).sum() / n).alias("ips"),
                                           (ht_variance(pl.col("y")) / n ** 2).alias("var"),
                                           pl.col("w").sum().alias("w_sum")).row(0)
        out.append(_normal(metric, ips, ips_var, z, IPS))
        if w_sum > 0:
            snips = float((w * y).sum() / w_sum)
            snips_var = frame.select(ht_variance(pl.col("y") - snips)).item() / w_sum ** 2
            out.append(_normal(metric, snips, snips_var, z, SNIPS))
    if metric in logged.dm:
        kind = DR_DM if unsupported_any else DR
        dr, dr_var = frame.select(
            (pl.col("m") + pl.col("w") * (pl.col("y") - pl.col("m"))).mean().alias("dr"),
            (ht_variance(pl.col("y") - pl.col("m")) / n ** 2).alias("var")).row(0)
        out.append(_normal(metric, dr, dr_var, z, kind))
    return out


def _normal(metric: str, value: float, variance: float, z: float, kind: str) -> Estimate:
    half = z * float(np.sqrt(max(variance, 0.0)))
    return Estimate(metric, float(value), float(value) - half, float(value) + half, kind)


def _design_matrix(traffic: pl.DataFrame, slices: list[str]) -> np.ndarray:
    """Traffic features for the reward models: slice one-hot, log input tokens, low-cardinality string columns."""
    parts = [traffic.select((pl.col("slice") == name).alias(str(i)) for i, name in enumerate(slices)).cast(pl.Float64).to_numpy(),
             np.log1p(traffic["input_tokens"].to_numpy().astype(np.float64))[:, None]]
    skip = {"request_id", "slice", "served_model", "messages"}
    for name, dtype in traffic.schema.items():
        if name in skip or name.startswith(PROPENSITY_PREFIX) or dtype != pl.String:
            continue
        values = traffic[name].drop_nulls().unique().sort().to_list()
        if 1 < len(values) <= 20:
            parts.append(traffic.select((pl.col(name) == value).alias(str(i)) for i, value in enumerate(values[1:])).fill_null(False)
                         .cast(pl.Float64).to_numpy())
    return np.hstack(parts)


def cross_fit(features: np.ndarray, served: np.ndarray, target: np.ndarray, y: np.ndarray, *, classifier: bool,
              ids, reward_model: str = "logistic", seed: int = 0, folds: int = FOLDS) -> np.ndarray:
    """m(x_i, t_i) for every request: for each fold and each target model, a model fitted on the other folds'
    requests that the target model served (the logged answers), predicting this fold's requests.

    `ids` (one string per row, the request ids) key each request's fold: floor(folds x u(seed, "cross-fit
    fold", id)) from simulator.core.draws, so a request's fold does not depend on its row or on the other
    requests in the log.

    Fitted under threadpool_limits(1) with fixed seeds, so the predictions are the same bytes at any thread
    count. A training set with one class (or no rows) predicts its mean (or the overall mean).
    """
    from sklearn import config_context
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from threadpoolctl import threadpool_limits

    if reward_model not in REWARD_MODELS:
        raise RoutesimError(f"unknown reward model '{reward_model}'", where="--reward-model",
                            fix=f"use one of {', '.join(REWARD_MODELS)}")
    n = len(served)
    fold = np.minimum((keyed_uniform(seed, "cross-fit fold", ids) * folds).astype(np.int64), folds - 1)
    prediction = np.full(n, np.nan)
    overall = float(np.mean(y[served == target])) if np.any(served == target) else 0.0
    # Parameters are ours and features finite, so sklearn's per-fit checks are skipped: they cost more than
    # fitting a few hundred rows.
    with threadpool_limits(1), config_context(assume_finite=True, skip_parameter_validation=True):
        for k in range(folds):
            for model in np.unique(target[fold == k]):
                train = (fold != k) & (served == model)
                predict = (fold == k) & (target == model)
                labels = y[train]
                if train.sum() == 0:
                    prediction[predict] = overall
                    continue
                if (classifier and len(np.unique(labels)) < 2) or train.sum() < 5:
                    prediction[predict] = float(labels.mean())
                    continue
                if classifier:
                    fitted = (LogisticRegression(solver="newton-cholesky") if reward_model == "logistic"
                              else HistGradientBoostingClassifier(random_state=seed))
                    fitted.fit(features[train], labels.astype(np.int64))
                    prediction[predict] = fitted.predict_proba(features[predict])[:, 1]
                else:
                    fitted = Ridge(alpha=1.0, solver="cholesky") if reward_model == "logistic" else HistGradientBoostingRegressor(
                        random_state=seed)
                    fitted.fit(features[train], labels)
                    prediction[predict] = np.maximum(fitted.predict(features[predict]), 0.0)
    return prediction


@dataclass(frozen=True)
class OffPolicy:
    scenario: str
    estimates: list[Estimate]
    diagnostics: dict
    reward_model: str
    unsupported: str

    def as_dict(self) -> dict:
        return {"scenario": self.scenario, "kind": "off-policy", "estimates": [e.as_dict() for e in self.estimates],
                "diagnostics": self.diagnostics, "reward_model": self.reward_model, "unsupported": self.unsupported}


def off_policy(scenario, data: Dataset, sheet: PriceSheet | None, *, confidence: float = 0.95,
               unsupported: str = "refuse", reward_model: str = "logistic", seed: int = 0) -> OffPolicy:
    """IPS, SNIPS and DR estimates of a one-call policy's pass rate and cost per request from a served log."""
    where = f"scenario '{scenario.name}'"
    if unsupported not in ("refuse", "dm"):
        raise RoutesimError(f"unknown --unsupported '{unsupported}'", where="--unsupported", fix="use refuse or dm")
    if not single_call(scenario):
        raise RoutesimError(
            "off-policy estimates need a policy that makes one call per request; a cascade's escalations or a "
            "retry need several answers to the same request, which a served-only log never holds",
            where=where, fix="replay it on a shadow sample ('routesim plan-shadow'), design-weighted")
    traffic_schema = data.traffic.collect_schema()
    if not {"served_model", "logging_propensity"} <= set(traffic_schema.names()):
        raise RoutesimError("the traffic does not record the served model and its logging propensity",
                            where=str(data.folder), fix="add traffic columns served_model and logging_propensity")
    outcome_schema = data.outcomes.collect_schema()
    propensity_columns = [name for name in traffic_schema.names() if name.startswith(PROPENSITY_PREFIX)]
    # The candidates: models with answers, and models the router could have picked (even if it never did).
    models = sorted({*data_values(data.outcomes, "model"), *(c.removeprefix(PROPENSITY_PREFIX) for c in propensity_columns)})
    policy = compile_policy(scenario, traffic_schema, outcome_schema, models, data_values(data.traffic, "slice"))
    rule_columns = sorted(set().union(*(rule.columns for rule in policy.rules)))
    string_columns = [name for name, dtype in traffic_schema.items() if dtype == pl.String and name != "messages"]
    columns = list(dict.fromkeys(["request_id", "ts", "slice", "input_tokens", "served_model", "logging_propensity",
                                  *propensity_columns, *rule_columns, *string_columns]))
    requests, _ = select_requests(scenario, data, columns)
    requests = assign_plans(requests, policy.rules)
    plan_models = [steps[0].model for _, steps in policy.plans]
    requests = requests.with_columns(
        pl.col("__plan").replace_strict(list(range(len(plan_models))), plan_models, return_dtype=pl.String)
        .alias("__target"))
    _refuse_unlogged(requests, data)
    target_propensity = pl.lit(None, dtype=pl.Float64)
    for model in plan_models:
        column = f"{PROPENSITY_PREFIX}{model}"
        if column in propensity_columns:
            target_propensity = pl.when(pl.col("__target") == model).then(pl.col(column)).otherwise(target_propensity)
    matched = pl.col("__target") == pl.col("served_model")
    requests = requests.with_columns(
        pl.when(matched).then("logging_propensity")
        .when(pl.col("logging_propensity") >= 1).then(0.0)  # a logger sure of another model never picks this one
        .otherwise(target_propensity).alias("__p_target"))
    if (requests["logging_propensity"] >= 1).all() and not requests.select(matched.all()).item():
        raise RoutesimError(
            "the logging router is deterministic (every logging_propensity is 1): it has no support off its own "
            "path, so nothing in this log says how another choice would have done", where=where,
            fix="re-run a stratified sample on the candidates with 'routesim plan-shadow' and replay it design-weighted")
    served = (data.outcomes.filter(pl.col("sample") == 0)
              .join(requests.lazy().select("request_id", "ts", "served_model"), on="request_id")
              .filter(pl.col("model") == pl.col("served_model"))
              .select("request_id", "model", "ts", "input_tokens", "cached_input_tokens", "output_tokens",
                      (pl.col("passed") & pl.col("hard_check_ok")).alias("__pass"),
                      pl.col("cost_usd").alias("recorded_cost_usd")).collect())
    served = (price_calls(served, sheet).with_columns(usd(pl.col("cost_nano_usd")).alias("cost_usd"))
              .select("request_id", "__pass", "output_tokens", "cost_usd"))
    joined = requests.join(served, on="request_id", how="left", maintain_order="left")
    missing = joined.filter(pl.col("__pass").is_null())
    if missing.height:
        raise RoutesimError(f"{missing.height} request(s) have no answer from their served model",
                            where=f"{data.folder}, e.g. request {missing['request_id'][0]}",
                            fix="a served log holds the served model's answer to every request")
    logged = _logged(joined, sheet, reward_model, seed)
    diag = diagnostics(logged)
    if diag["no_support_share"] > 0 and unsupported == "refuse":
        raise RoutesimError(
            f"{diag['no_support_share']:.1%} of the requests get a model the logging router never picks there "
            "(propensity 0, no support), so the log says nothing about them", where=where, fix=SUPPORT_FIX)
    estimates = [e for metric in ("pass_rate", "cost_per_request_usd")
                 for e in estimate(logged, metric, confidence=confidence, unsupported=unsupported)]
    return OffPolicy(scenario=scenario.name, estimates=estimates, diagnostics=diag, reward_model=reward_model,
                     unsupported=unsupported)


def _refuse_unlogged(requests: pl.DataFrame, data: Dataset) -> None:
    """Raises RoutesimError when a request of the window has no served_model or no logging_propensity
    (null): its answer cannot be weighed. Says how many per column and the first such request of each."""
    unlogged = {column: requests.filter(pl.col(column).is_null())["request_id"]
                for column in ("served_model", "logging_propensity")}
    unlogged = {column: ids for column, ids in unlogged.items() if ids.len()}
    if not unlogged:
        return
    counts = " and ".join(f"{ids.len()} {'has' if ids.len() == 1 else 'have'} no {column}"
                          for column, ids in unlogged.items())
    columns = " and ".join(f"'{column}'" for column in unlogged)
    examples = "; ".join(f"request {ids[0]} ({column} null)" for column, ids in unlogged.items())
    raise RoutesimError(
        f"of the window's {counted(requests.height, 'request')}, {counts} (null): an off-policy estimate weighs each "
        "request's served answer by the probability the logging router served it",
        where=f"{data.folder / TRAFFIC_FILE}, column{'s' if len(unlogged) > 1 else ''} {columns}, e.g. {examples}",
        fix="record served_model and logging_propensity on every request (the router's choice and its "
            "probability), or leave the requests it did not route out of the data or the scenario's window")


def _logged(joined: pl.DataFrame, sheet: PriceSheet | None, reward_model: str, seed: int) -> Logged:
    slices = sorted(set(joined["slice"]))
    features = _design_matrix(joined.drop([c for c in joined.columns if c.startswith("__")]), slices)
    served = joined["served_model"].to_numpy()
    target = joined["__target"].to_numpy()
    passed = joined["__pass"].cast(pl.Float64).to_numpy()
    ids = joined["request_id"]
    m_pass = cross_fit(features, served, target, passed, classifier=True, ids=ids, reward_model=reward_model,
                       seed=seed)
    tokens = joined["output_tokens"].cast(pl.Float64).to_numpy()
    m_tokens = cross_fit(features, served, target, tokens, classifier=False, ids=ids, reward_model=reward_model,
                         seed=seed)
    listed = set(sheet.models) if sheet else set()
    priced = joined.select(pl.col("__target").alias("model"), "ts", "input_tokens",
                           pl.lit(0).alias("cached_input_tokens"), pl.Series("output_tokens", m_tokens)
                           ).with_columns(price_expr(sheet).alias("__m_cost"))["__m_cost"].to_numpy() / NANO_PER_USD
    m_cost = np.where(np.isin(target, list(listed)), priced, np.nan)
    if np.isnan(m_cost).any():  # models priced by recorded cost only: regress the recorded cost itself
        cost = joined["cost_usd"].to_numpy()
        m_cost = np.where(np.isnan(m_cost), cross_fit(features, served, target, cost, classifier=False,
                                                      ids=ids, reward_model=reward_model, seed=seed), m_cost)
    return Logged(matched=(served == target), target_propensity=joined["__p_target"].to_numpy().astype(np.float64),
                  y={"pass_rate": passed, "cost_per_request_usd": joined["cost_usd"].to_numpy()},
                  dm={"pass_rate": m_pass, "cost_per_request_usd": m_cost})
