"""Shadow-sample plans: which logged requests to re-run on which candidate models, and at what probability.

A plan stratifies the window's requests by slice and draws a seeded simple random sample without
replacement in each (`core.sampling.stratified_sample`), so every request of slice h is drawn with
inclusion probability n_h / N_h.

Sizing. For each slice and candidate model the sample must make the 95% (`confidence`) Wilson interval of
the model's pass rate no wider than +-`halfwidth`; the slice takes the largest size its models need, capped
at its requests. The pass rate expected is the one observed on the model's graded answers in the slice
(passed and hard_check_ok; answers assumed from status do not count), or 0.5 where there are none (the
widest interval). Wilson's half-width at n trials and rate p is
z sqrt(p(1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n) (Wilson 1927), which falls as n grows, so the smallest n
meeting the target is found by bisection. Sizing leaves out the finite-population correction, which would
only shrink the intervals: the plan is conservative.

Budget. Each drawn request is re-run on every candidate that has not already answered it (the served
model's answer is in the log). A re-run is priced with the sheet at the request's `ts` from its logged
input tokens (none cached) and the model's mean output tokens in the slice (else the slice's mean over all
answers). When the expected cost exceeds `budget`, every slice's size is scaled down by the same factor
(at least one request each), and the plan reports the half-widths it then reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from simulator.core.contract import Dataset
from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.money import NANO_PER_USD
from simulator.core.prices import PriceSheet, price_expr
from simulator.core.draws import keyed_uniform
from simulator.core.sampling import stratified_sample
from simulator.core.stats import check_confidence, z_score

ASSUMED = "assumed_from_status"
UNKNOWN_PASS_RATE = 0.5
_PLAN_PURPOSE = "shadow-plan"  # the keyed draws' purpose (simulator.core.draws)


def wilson_halfwidth(n, p, z: float):
    """Half the width of the Wilson score interval at n trials and pass rate p (vectorised)."""
    n = np.asarray(n, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    z2 = z * z
    return z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)


def required_size(p: np.ndarray, halfwidth: float, z: float, cap: np.ndarray) -> np.ndarray:
    """Smallest n <= cap whose Wilson half-width at rate p is at most `halfwidth` (cap where none is)."""
    low = np.ones_like(cap, dtype=np.int64)
    high = np.maximum(cap.astype(np.int64), 1)
    meets_high = wilson_halfwidth(high, p, z) <= halfwidth
    while np.any(low < high):
        middle = (low + high) // 2
        ok = wilson_halfwidth(middle, p, z) <= halfwidth
        high = np.where(ok & (low < high), middle, high)
        low = np.where(~ok & (low < high), middle + 1, low)
    return np.where(meets_high, low, np.maximum(cap.astype(np.int64), 1))


@dataclass(frozen=True)
class ShadowPlan:
    """The drawn (request, model) pairs and a per-slice account of the plan."""

    manifest: pl.DataFrame  # request_id, model, stratum, inclusion_probability, rerun
    strata: pl.DataFrame  # slice, requests, drawn, inclusion_probability, expected pass rates, half-width reached
    settings: dict
    expected_cost_usd: float | None

    def summary(self) -> dict:
        return {"settings": self.settings, "expected_cost_usd": self.expected_cost_usd,
                "requests_drawn": int(self.manifest["request_id"].n_unique()),
                "reruns": int(self.manifest["rerun"].sum()), "strata": self.strata.to_dicts()}


def _answers(data: Dataset, models: list[str]) -> pl.DataFrame:
    schema = data.outcomes.collect_schema()
    graded = ((pl.col("passed_source") != ASSUMED).fill_null(True) if "passed_source" in schema else pl.lit(True))
    return (data.outcomes.filter((pl.col("sample") == 0))
            .select("request_id", "model", "output_tokens", (pl.col("passed") & pl.col("hard_check_ok")).alias("ok"),
                    graded.alias("graded"))
            .join(data.traffic.select("request_id", "slice"), on="request_id").collect())


def plan_shadow(data: Dataset, models: list[str], halfwidth: float, seed: int, *, sheet: PriceSheet | None = None,
                budget: float | None = None, confidence: float = 0.95) -> ShadowPlan:
    """Sizes, caps and draws a stratified shadow sample of `data`'s requests for `models`."""
    z = z_score(check_confidence(confidence))
    if not 0 < halfwidth < 0.5:
        raise RoutesimError(f"the half-width must lie in (0, 0.5), got {halfwidth}", where="--halfwidth",
                            fix="e.g. 0.02 for ±2 percentage points")
    if not models:
        raise RoutesimError("no candidate models given", where="--models", fix="e.g. --models small,flagship")
    if budget is not None and budget <= 0:
        raise RoutesimError(f"the budget must be positive, got {budget}", where="--budget", fix="e.g. --budget 50")
    if budget is not None and sheet is None:
        raise RoutesimError("a budget needs a price sheet to price the re-runs", where="--budget",
                            fix="add --prices SHEET.yaml")
    if sheet is not None:
        for model in models:
            if model not in sheet.models:
                raise RoutesimError(f"model '{model}' is not in the price sheet.{did_you_mean(model, sheet.models)}",
                                    where=f"--models, {sheet.source}", fix="price every candidate in the sheet")
    traffic = data.traffic.select("request_id", "ts", "slice", "input_tokens").collect().sort("request_id")
    answers = _answers(data, models)
    if sheet is None:  # without a sheet the data's answers are the only record of which models exist
        known = set(data.outcomes.select(pl.col("model").unique()).collect()["model"])
        for model in models:
            if model not in known:
                raise RoutesimError(f"model '{model}' has no answer in the data folder.{did_you_mean(model, known)}",
                                    where="--models", fix="name models the data holds answers of, or add --prices "
                                                          "SHEET.yaml to plan re-runs on a model the data never called")
    slices = sorted(set(traffic["slice"]))
    grid = pl.DataFrame({"slice": slices}).join(pl.DataFrame({"model": models}), how="cross")
    rates = (answers.filter(pl.col("graded") & pl.col("model").is_in(models))
             .group_by("slice", "model").agg(pl.col("ok").mean().alias("pass_rate"), pl.len().alias("graded")))
    grid = grid.join(rates, on=["slice", "model"], how="left").with_columns(
        pl.col("pass_rate").fill_null(UNKNOWN_PASS_RATE).alias("expected"), pl.col("graded").fill_null(0))
    population = traffic.group_by("slice").agg(pl.len().alias("requests"))
    grid = grid.join(population, on="slice")
    grid = grid.with_columns(pl.Series("needed", required_size(grid["expected"].to_numpy(), halfwidth, z,
                                                               grid["requests"].to_numpy())))
    sizes = grid.group_by("slice").agg(pl.col("needed").max(), pl.col("requests").first()).sort("slice")
    full_sizes = dict(zip(sizes["slice"], sizes["needed"].clip(upper_bound=sizes["requests"])))
    expected_cost = None
    budget_factor = None
    if sheet is not None:
        per_request = _rerun_cost(traffic, answers, models, sheet)
        mean_cost = per_request.group_by("slice").agg(pl.col("cost").mean()).sort("slice")
        sizes = sizes.join(mean_cost, on="slice")
        expected_cost = float((sizes["needed"] * sizes["cost"]).sum())
        if budget is not None and expected_cost > budget:
            budget_factor = budget / expected_cost
            scaled = np.maximum(1, np.floor(sizes["needed"].to_numpy() * budget_factor)).astype(np.int64)
            sizes = sizes.with_columns(pl.Series("needed", scaled))
            expected_cost = float((sizes["needed"] * sizes["cost"]).sum())
            if expected_cost > budget:
                raise RoutesimError(f"even one request per slice costs about ${expected_cost:,.2f}, over the budget "
                                    f"of ${budget:,.2f}", where="--budget", fix="raise the budget or drop models")
    codes = traffic["slice"].replace_strict(slices, list(range(len(slices))), return_dtype=pl.Int64).to_numpy()
    size_of = dict(zip(sizes["slice"], sizes["needed"]))
    drawn, probability = stratified_sample(codes, np.array([size_of[s] for s in slices]),
                                           keyed_uniform(seed, _PLAN_PURPOSE, traffic["request_id"]))
    chosen = traffic.filter(pl.Series(drawn)).select(
        "request_id", pl.col("slice").alias("stratum"), pl.Series("inclusion_probability", probability[drawn]))
    answered = answers.select("request_id", "model").with_columns(pl.lit(False).alias("rerun"))
    manifest = (chosen.join(pl.DataFrame({"model": models}), how="cross")
                .join(answered, on=["request_id", "model"], how="left")
                .with_columns(pl.col("rerun").fill_null(True))
                .select("request_id", "model", "stratum", "inclusion_probability", "rerun")
                .sort("stratum", "request_id", "model"))
    drawn_sizes = dict(zip(sizes["slice"], sizes["needed"].clip(upper_bound=sizes["requests"])))
    reached = grid.with_columns(
        pl.col("slice").replace_strict(drawn_sizes, return_dtype=pl.Int64).alias("drawn")).with_columns(
        pl.Series("halfwidth", wilson_halfwidth(np.maximum(grid["slice"].replace_strict(drawn_sizes, return_dtype=pl.Int64)
                                                            .to_numpy(), 1), grid["expected"].to_numpy(), z)))
    # Why a slice's widest half-width is above the target, if it is: the whole slice drawn would still miss it
    # (its size), or the budget's scaling drew fewer than the target needs.
    whole = wilson_halfwidth(np.maximum(grid["slice"].replace_strict(full_sizes, return_dtype=pl.Int64).to_numpy(), 1),
                             grid["expected"].to_numpy(), z)
    reached = reached.with_columns(pl.Series("whole_misses", whole > halfwidth))
    strata = (reached.group_by("slice").agg(
        pl.col("requests").first(), pl.col("drawn").first(), pl.col("halfwidth").max().alias("halfwidth_reached"),
        pl.struct("model", "expected", "graded").sort_by("model").alias("models"), pl.col("whole_misses").any())
        .with_columns((pl.col("drawn") / pl.col("requests")).alias("inclusion_probability"),
                      pl.when(pl.col("halfwidth_reached") <= halfwidth).then(None)
                      .when(pl.col("whole_misses")).then(pl.lit("slice size"))
                      .otherwise(pl.lit("budget")).alias("short_of_target"))
        .drop("whole_misses").sort("slice"))
    settings = {"models": models, "halfwidth": halfwidth, "confidence": confidence, "budget_usd": budget,
                "budget_scale": budget_factor, "seed": seed, "prices": str(sheet.source) if sheet is not None else None}
    return ShadowPlan(manifest=manifest, strata=strata, settings=settings, expected_cost_usd=expected_cost)


def _rerun_cost(traffic: pl.DataFrame, answers: pl.DataFrame, models: list[str], sheet: PriceSheet) -> pl.DataFrame:
    """Per request: the expected cost of re-running it on every candidate that has not answered it."""
    by_model = answers.group_by("slice", "model").agg(pl.col("output_tokens").mean().alias("tokens"))
    by_slice = answers.group_by("slice").agg(pl.col("output_tokens").mean().alias("slice_tokens"))
    calls = (traffic.join(pl.DataFrame({"model": models}), how="cross")
             .join(answers.select("request_id", "model"), on=["request_id", "model"], how="anti")
             .join(by_model, on=["slice", "model"], how="left").join(by_slice, on="slice", how="left")
             .with_columns(pl.coalesce("tokens", "slice_tokens", pl.lit(0.0)).alias("output_tokens"),
                           pl.lit(0).alias("cached_input_tokens")))
    # An expected cost, not money charged: dollars as floats are precise enough here.
    priced = calls.with_columns((price_expr(sheet) / NANO_PER_USD).alias("cost"))
    unpriced = priced.filter(pl.col("cost").is_null())
    if unpriced.height:
        row = unpriced.row(0, named=True)
        raise RoutesimError(f"no price entry for model '{row['model']}' at {row['ts']:%Y-%m-%d %H:%M} UTC",
                            where=str(sheet.source), fix="add an entry in force over the traffic's dates")
    per_request = priced.group_by("request_id").agg(pl.col("cost").sum())
    return traffic.select("request_id", "slice").join(per_request, on="request_id", how="left").with_columns(
        pl.col("cost").fill_null(0.0))


# OpenAI Batch API input files: at most 50,000 requests and 200 MB per file
# (https://platform.openai.com/docs/guides/batch).
BATCH_MAX_LINES = 50_000
BATCH_MAX_BYTES = 200 * 1024 * 1024
BATCH_URL = "/v1/chat/completions"


def batch_files(plan: ShadowPlan, data: Dataset, *, max_lines: int = BATCH_MAX_LINES,
                max_bytes: int = BATCH_MAX_BYTES) -> dict[str, list[bytes]]:
    """OpenAI Batch input files for the plan's re-runs, one model per file: name -> JSON lines (bytes).

    Each line is `{"custom_id": REQUEST_ID, "method": "POST", "url": "/v1/chat/completions",
    "body": {"model": MODEL, "messages": [...]}}`, the messages parsed from the traffic's `messages` column.
    A file is split before it would pass `max_lines` lines or `max_bytes` bytes. The messages are read
    here and written only into these lines.
    """
    import json

    if "messages" not in data.traffic.collect_schema():
        return {}
    reruns = plan.manifest.filter("rerun").select("request_id", "model")
    texts = (data.traffic.select("request_id", "messages").join(reruns.select("request_id").unique().lazy(),
                                                               on="request_id", how="semi").collect())
    missing = reruns.join(texts.filter(pl.col("messages").is_not_null()), on="request_id", how="anti")
    if missing.height:
        raise RoutesimError(f"{missing['request_id'].n_unique()} drawn request(s) have no messages to re-run",
                            where=f"{data.folder}, traffic column 'messages', e.g. request {missing['request_id'][0]}",
                            fix="log every request's messages, or leave the column out to plan without Batch files")
    files: dict[str, list[bytes]] = {}
    joined = reruns.join(texts, on="request_id").sort("model", "request_id")
    for (model,), part in joined.group_by("model", maintain_order=True):
        chunks: list[list[bytes]] = [[]]
        size = 0
        for request_id, messages in part.select("request_id", "messages").iter_rows():
            try:
                parsed = json.loads(messages)
            except json.JSONDecodeError as error:
                raise RoutesimError(f"the messages of request {request_id} are not JSON: {error.msg}",
                                    where=f"{data.folder}, traffic column 'messages'",
                                    fix="store each request's chat messages as a JSON array") from None
            line = (json.dumps({"custom_id": request_id, "method": "POST", "url": BATCH_URL,
                                "body": {"model": model, "messages": parsed}}, ensure_ascii=False) + "\n").encode()
            if len(line) > max_bytes:
                raise RoutesimError(f"request {request_id} alone is larger than a Batch file may be",
                                    fix="re-run it outside the Batch API")
            if len(chunks[-1]) >= max_lines or size + len(line) > max_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(line)
            size += len(line)
        for index, lines in enumerate(chunks, start=1):
            files[f"{model}-{index:03d}.jsonl"] = lines
    return files
