"""Terminal views of served-only logs: the coverage tables and the estimates, each figure with its kind.

Beside views.py (the replay's tables); imported only once a command runs.
"""

from __future__ import annotations

import polars as pl
from rich.markup import escape
from rich.table import Table

from simulator.analyses.coverage import ScenarioCoverage
from simulator.cli.console import inert
from simulator.analyses.estimates import Estimate
from simulator.core.formats import DASH, against, confidence_level, count, counted, given, metric, pct, points, usd


def answers_table(answers: pl.DataFrame) -> Table:
    """Per slice x model: requests, answered, graded (by grader), assumed from status, gold-graded."""
    table = Table(title="Answers and grades per slice x model")
    graders = [name for name in answers.columns if name.startswith("grader:")]
    for column in ("slice", "model", "requests", "answered", "graded", *(g.removeprefix("grader:") for g in graders),
                   "assumed from status", "gold"):
        table.add_column(escape(column), justify="left" if column in ("slice", "model") else "right")
    for row in answers.iter_rows(named=True):
        table.add_row(inert(row["slice"]), inert(row["model"]), count(row["requests"]),
                      f"{count(row['answered'])} ({pct(row['answered'] / row['requests'] if row['requests'] else None)})",
                      count(row["graded"]), *(count(row[g]) for g in graders), count(row["assumed"]),
                      count(row["gold"]))
    return table


def scenarios_table(rows: list[ScenarioCoverage]) -> Table:
    table = Table(title="What each scenario can replay",
                  caption="exact: every request has what the policy needs; design-weighted: the shadow sample has "
                          "it; off-policy: a one-call policy on a randomised router's log; partial: neither")
    for column in ("scenario", "kind of number", "requests", "replayable", "share", "shadow sample", "missing"):
        table.add_column(column, justify="left" if column in ("scenario", "kind of number", "missing") else "right")
    for row in rows:
        missing = ", ".join(f"{inert(model)}: {count(n)}" for model, n in row.missing_by_model.items()) or "–"
        sample = f"{count(row.sampled_replayable)} of {count(row.sampled)}" if row.sampled else "–"
        table.add_row(inert(row.scenario), row.kind, count(row.requests), count(row.replayable), pct(row.share),
                      sample, missing)
    return table


def estimates_table(title: str, estimates: list[Estimate], confidence: float) -> Table:
    table = Table(title=escape(title))
    for column in ("figure", "kind", "estimate", f"{confidence_level(confidence)} interval"):
        table.add_column(column, justify="left" if column in ("figure", "kind") else "right")
    for e in estimates:
        table.add_row(e.metric, e.kind, metric(e.metric, e.value),
                      f"{metric(e.metric, e.low)} {DASH} {metric(e.metric, e.high)}")
    return table


def coverage_study_table(worlds: int) -> Table:
    """Runs the coverage study (simulator.analyses.coverage_study) and tabulates it per estimator and metric."""
    import time

    from simulator.analyses import coverage_study

    low, high = coverage_study.coverage_band(worlds)
    table = Table(title=f"Coverage of 95% intervals on {worlds:,} seeded served-only worlds per estimator",
                  caption=f"a correct 95% interval covers {pct(low)}{DASH}{pct(high)} of {worlds:,} worlds 99.9% of "
                          "the time")
    for column in ("estimator", "figure", "coverage", "mean error / MC SE", "mean width"):
        table.add_column(column, justify="left" if column in ("estimator", "figure") else "right")
    started = time.perf_counter()
    study = coverage_study.run_worlds(worlds)
    seconds = time.perf_counter() - started
    for estimator in coverage_study.ESTIMATORS:
        for row in coverage_study.summarise(study[estimator]):
            table.add_row(estimator, row["metric"], pct(row["coverage"]), f"{row['bias_in_se']:+.2f}",
                          metric(row["metric"], row["mean_width"]))
    table.caption += f"; {seconds:.0f} s"
    return table


def plan_table(plan) -> Table:
    """Per slice: requests, drawn, inclusion probability and the widest Wilson half-width expected, written
    against the target; the caption states the target, the confidence, the budget's cut and which slices the
    budget or their size keeps above the target."""
    settings = plan.settings
    target = settings["halfwidth"]
    widths = "±" + given(target, "points").lstrip("+")
    lines = [f"target: each candidate's {confidence_level(settings['confidence'])} Wilson interval no wider than "
             f"{widths} in every slice"]
    cost = plan.expected_cost_usd
    lines.append(f"expected cost of the re-runs: {usd(cost)}" if cost is not None
                 else "no price sheet: cost not estimated")
    if settings.get("budget_scale") is not None:
        lines.append(f"the budget of {usd(settings['budget_usd'])} cut every slice's sample to "
                     f"{against(settings['budget_scale'], 1.0)} of what the target needs")
    for reason, why in (("budget", "the budget keeps above the target"),
                        ("slice size", "too few requests to reach the target, every one drawn")):
        short = [row["slice"] for row in plan.strata.iter_rows(named=True) if row.get("short_of_target") == reason]
        if short:
            lines.append(f"{why}: {', '.join(short)}")
    table = Table(title="Shadow-sample plan", caption=escape("\n".join(lines)), caption_justify="left")
    for column in ("slice", "requests", "drawn", "inclusion probability", "half-width reached"):
        table.add_column(column, justify="left" if column == "slice" else "right")
    for row in plan.strata.iter_rows(named=True):
        reached = "±" + against(row["halfwidth_reached"], target, "points").lstrip("+")
        table.add_row(inert(row["slice"]), count(row["requests"]), count(row["drawn"]),
                      f"{row['inclusion_probability']:.4f}", reached)
    return table


def calibrated_table(result: dict) -> Table:
    """Per model x slice: the judge's rate, the correction, the calibrated rate and its interval. A rate clipped
    into 0..100% is marked *, and the caption gives judge + correction, the value it was clipped from."""
    level = confidence_level(result["confidence"])
    clipped = [row for row in result["groups"] if row["clipped"]]
    # The setting that decides the `from` column, stated: without it "model" or "all" reads as unexplained.
    lines = [f"from: the gold grades the correction is measured on: the cell's own when it has at least "
             f"{counted(result['min_gold'], 'gold grade')} (--min-gold), else the model's over its slices, else all"]
    if clipped:
        outside = "; ".join(f"{row['model']}, {row['slice']}: {pct(row['judge_pass_rate'] + row['correction'])}"
                            for row in clipped)
        lines.append(f"* clipped into 0..100%: judge + correction lies outside it ({outside})")
    caption = escape("\n".join(lines))
    table = Table(title=f"Judge pass rates calibrated against gold grades ({level} intervals)", caption=caption,
                  caption_justify="left")
    for column in ("model", "slice", "answers", "gold graded", "judge", "correction", "from", "calibrated", "interval"):
        table.add_column(column, justify="left" if column in ("model", "slice", "from") else "right")
    for row in result["groups"]:
        table.add_row(inert(row["model"]), inert(row["slice"]), count(row["answers"]), count(row["gold_graded"]),
                      pct(row["judge_pass_rate"]), points(row["correction"]), row["correction_scope"],
                      pct(row["pass_rate"]) + ("*" if row["clipped"] else ""),
                      f"{pct(row['low'])} {DASH} {pct(row['high'])}")
    return table


def agreement_table(result: dict) -> Table:
    table = Table(title="Judge-gold agreement per slice")
    for column in ("slice", "graded by both", "agreement", "judge passes, gold fails", "judge fails, gold passes"):
        table.add_column(column, justify="left" if column == "slice" else "right")
    for row in result["agreement"]:
        table.add_row(inert(row["slice"]), count(row["graded_by_both"]), pct(row["agreement"]),
                      pct(row["judge_passes_gold_fails"]), pct(row["judge_fails_gold_passes"]))
    return table
