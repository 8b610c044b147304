"""Judge grades calibrated against gold grades: prediction-powered inference of pass rates.

Most answers are graded by an LLM judge (`passed`, `grader = llm_judge`); a random subset also carries a
gold grade (`gold_passed` from a `human` or `deterministic` grader), drawn uniformly or with a recorded
`gold_inclusion_probability` pi_i. The figure estimated is the pass rate the gold graders would give to
every answer of a group (a model in a slice). Prediction-powered inference (Angelopoulos, Bates, Fannjiang,
Jordan & Zrnic 2023, Science 382:669) takes the judge's mean over all N answers and adds the
gold-minus-judge correction measured on the subset:

    estimate = mean_N(judge) + sum_gold w_i (gold_i - judge_i) / sum_gold w_i,   w_i = 1 / pi_i

Given the answers, the only randomness is which of them were drawn for gold grading, so the error is the
subset's mean of the differences d = gold - judge minus their mean over all N answers: a Hajek estimator
of a Poisson (or, with equal pi, a simple random) sample of d. Its variance is estimated by
sum_gold w_i^2 (1 - pi_i) (d_i - dbar)^2 / (sum w)^2, but at least sum_gold w_i^2 (1 - pi_i) p (1 - p) /
(sum w)^2 with p = 1 / (n + 1) for n gold grades (the add-one rule: a subset that never disagrees does not
claim an exact judge), and the interval is normal. Where pi is not
recorded the subset is taken as a simple random sample of the group: pi = n / N.

A pass rate is a proportion, but the estimate is not bounded: a judge that passes 21% of answers with a
correction of -26 points gives -5%. The interval is computed around the unclipped estimate and clipped to
[0, 1]; the estimate is clipped to [0, 1] too, so it always lies within its interval, and the row says so
(`clipped`). The correction stays as measured, so judge + correction shows the unclipped value.

Scope. The correction is computed per (model, slice) where the group has at least `min_gold` gold grades,
pooled over the model's slices where the model has, and over every answer otherwise; each row says which
(`cell`, `model`, `all`). A pooled correction assumes the judge errs alike across the pooled groups.

Answers whose `passed` was assumed from status (`passed_source = assumed_from_status`) are never
calibrated: they are counted apart and stay labelled as assumed. Answers graded by a human or a
deterministic grader are gold already: they enter with their difference fixed at 0.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from simulator.core.contract import Dataset
from simulator.core.errors import RoutesimError
from simulator.core.stats import z_score

CALIBRATED = "calibrated judge"
ASSUMED = "assumed_from_status"
JUDGE = "llm_judge"
MIN_GOLD = 30
# A mean plus a correction that is exactly 1 (or 0) can land an ulp outside: not worth a `clipped` flag.
ROUNDING = 1e-9


def _correction(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Per group of `keys`: gold count, Hajek mean of d over the gold subset, and its variance.

    The variance is at least what a subset with a disagreement rate of p = 1 / (n + 1) would give, for n
    gold grades (the add-one rule): a subset in which judge and gold never disagree otherwise has a
    variance of 0 and claims the judge is exact.
    """
    gold = frame.filter(pl.col("gold").is_not_null())
    mean = (pl.col("w") * pl.col("d")).sum() / pl.col("w").sum()
    design = pl.col("w") ** 2 * (1 - pl.col("pi"))
    one_in = 1.0 / (pl.len() + 1)
    variance = pl.max_horizontal((design * (pl.col("d") - pl.col("dbar")) ** 2).sum(),
                                 design.sum() * one_in * (1 - one_in)) / pl.col("w").sum() ** 2
    return gold.with_columns(mean.over(keys).alias("dbar")).group_by(keys).agg(
        pl.len().alias("gold_n"), pl.col("dbar").first(), variance.alias("var"))


def prepare(frame: pl.DataFrame) -> pl.DataFrame:
    """Judge-graded answers with d = gold - judge where gold is known, and each gold row's pi and weight.

    Reads `model`, `slice`, `judge` (boolean), `gold` (boolean, nullable), `gold_pi` (nullable) and `exact`
    (true where `judge` is a gold grade already). Missing pi is n / N of the answer's (model, slice) group.
    """
    frame = frame.with_columns(
        pl.when(pl.col("exact")).then(pl.col("judge")).otherwise(pl.col("gold")).alias("gold"))
    counts = pl.col("gold").is_not_null().sum().over("model", "slice") / pl.len().over("model", "slice")
    return frame.with_columns(
        pl.when(pl.col("exact")).then(1.0).otherwise(pl.coalesce("gold_pi", counts)).alias("pi"),
    ).with_columns(
        (1.0 / pl.col("pi")).alias("w"),
        (pl.col("gold").cast(pl.Float64) - pl.col("judge").cast(pl.Float64)).alias("d"),
    )


def calibrate_frame(frame: pl.DataFrame, *, confidence: float = 0.95, min_gold: int = MIN_GOLD) -> pl.DataFrame:
    """Per (model, slice): answers, judge pass rate, calibrated pass rate with its interval and scope.

    `pass_rate`, `low` and `high` are clipped to [0, 1], so low <= pass_rate <= high; `clipped` is true where
    judge_pass_rate + correction (the unclipped estimate; `correction` is never clipped) lies outside [0, 1] by
    more than rounding (ROUNDING).
    """
    z = z_score(confidence)
    prepared = prepare(frame)
    cell = _correction(prepared, ["model", "slice"])
    by_model = _correction(prepared, ["model"])
    overall = _correction(prepared.with_columns(pl.lit(1).alias("_all")), ["_all"])
    groups = prepared.group_by("model", "slice").agg(
        pl.len().alias("answers"), pl.col("judge").cast(pl.Float64).mean().alias("judge_pass_rate"),
        pl.col("gold").is_not_null().sum().alias("gold_graded"))
    scoped = groups.join(cell.rename({c: f"{c}_cell" for c in cell.columns if c not in ("model", "slice")}),
                         on=["model", "slice"], how="left").join(
        by_model.rename({c: f"{c}_model" for c in by_model.columns if c != "model"}), on="model", how="left")
    if overall.height:
        row = overall.row(0, named=True)
        scoped = scoped.with_columns(pl.lit(row["gold_n"]).alias("gold_n_all"), pl.lit(row["dbar"]).alias("dbar_all"),
                                     pl.lit(row["var"]).alias("var_all"))
    else:
        raise RoutesimError("no answer carries a gold grade, so the judge cannot be calibrated",
                            fix="grade a random subset by hand (gold_passed, gold_grader) and merge it with --merge")
    use_cell = pl.col("gold_n_cell").fill_null(0) >= min_gold
    use_model = pl.col("gold_n_model").fill_null(0) >= min_gold
    pick = lambda name: (pl.when(use_cell).then(pl.col(f"{name}_cell"))  # noqa: E731
                         .when(use_model).then(pl.col(f"{name}_model")).otherwise(pl.col(f"{name}_all")))
    result = scoped.with_columns(
        pl.when(use_cell).then(pl.lit("cell")).when(use_model).then(pl.lit("model")).otherwise(pl.lit("all"))
        .alias("correction_scope"),
        pick("dbar").alias("correction"), pick("var").alias("variance"))
    half = z * pl.col("variance").clip(lower_bound=0).sqrt()
    estimate = pl.col("judge_pass_rate") + pl.col("correction")
    # Clipping the interval's ends and the estimate alike keeps the estimate inside its interval.
    return result.with_columns(
        estimate.clip(0, 1).alias("pass_rate"), ((estimate < -ROUNDING) | (estimate > 1 + ROUNDING)).alias("clipped"),
        (estimate - half).clip(0, 1).alias("low"), (estimate + half).clip(0, 1).alias("high"),
        pl.lit(CALIBRATED).alias("kind"),
    ).select("model", "slice", "answers", "gold_graded", "judge_pass_rate", "correction", "correction_scope",
             "pass_rate", "clipped", "low", "high", "kind").sort("model", "slice")


def agreement(frame: pl.DataFrame) -> pl.DataFrame:
    """Per slice: judge-gold agreement on the answers graded by both (judge-graded answers only)."""
    both = frame.filter(~pl.col("exact") & pl.col("gold").is_not_null())
    return both.group_by("slice").agg(
        pl.len().alias("graded_by_both"), (pl.col("judge") == pl.col("gold")).mean().alias("agreement"),
        (pl.col("judge") & ~pl.col("gold")).mean().alias("judge_passes_gold_fails"),
        (~pl.col("judge") & pl.col("gold")).mean().alias("judge_fails_gold_passes")).sort("slice")


def calibrate(data: Dataset, *, confidence: float = 0.95, min_gold: int = MIN_GOLD) -> dict:
    """Calibrated pass rates per (model, slice) of each model's first answers, agreement per slice, and the
    count of answers left out because their grade was assumed from status."""
    schema = data.outcomes.collect_schema()
    if "gold_passed" not in schema:
        raise RoutesimError("the outcomes carry no gold grades (column gold_passed)", where=str(data.folder),
                            fix="grade a random subset by hand and merge it: gold_passed, gold_grader")
    assumed = (pl.col("passed_source") == ASSUMED).fill_null(False) if "passed_source" in schema else pl.lit(False)
    gold_pi = pl.col("gold_inclusion_probability") if "gold_inclusion_probability" in schema else pl.lit(None)
    answers = (data.outcomes.filter(pl.col("sample") == 0)
               .join(data.traffic.select("request_id", "slice"), on="request_id")
               .select("model", "slice", (pl.col("passed") & pl.col("hard_check_ok")).alias("judge"),
                       (pl.col("gold_passed") & pl.col("hard_check_ok")).alias("gold"),
                       gold_pi.cast(pl.Float64).alias("gold_pi"),
                       pl.col("grader").is_in(["human", "deterministic"]).fill_null(False).alias("exact"),
                       assumed.alias("assumed")).collect())
    left_out = answers.filter("assumed")
    frame = answers.filter(~pl.col("assumed"))
    return {"kind": CALIBRATED, "confidence": confidence, "min_gold": min_gold,
            "groups": calibrate_frame(frame, confidence=confidence, min_gold=min_gold).to_dicts(),
            "agreement": agreement(frame).to_dicts(),
            "assumed_from_status": left_out.group_by("model", "slice").len().sort("model", "slice").to_dicts()}


def simulate(seed: int, answers: int = 400, gold_rate: float = 0.25, judge_error: tuple[float, float] = (0.25, 0.02)
             ) -> tuple[float, dict]:
    """One seeded world for the coverage study: a biased judge (passes 25% of gold failures, fails 2% of gold
    passes), a uniform gold subset. Returns (truth: the gold pass rate of all answers, the calibrated row)."""
    rng = np.random.default_rng([seed, 12])
    gold = rng.random(answers) < 0.7
    flip = np.where(gold, rng.random(answers) < judge_error[1], rng.random(answers) < judge_error[0])
    judge = gold ^ flip
    drawn = rng.random(answers) < gold_rate
    frame = pl.DataFrame({"model": ["m"] * answers, "slice": ["s"] * answers, "judge": judge, "gold": gold,
                          "drawn": drawn}).select(
        "model", "slice", "judge", pl.when("drawn").then("gold").alias("gold"),
        pl.lit(None, dtype=pl.Float64).alias("gold_pi"), pl.lit(False).alias("exact"))
    return float(gold.mean()), calibrate_frame(frame, min_gold=1).row(0, named=True)
