"""Judge grades calibrated against gold grades by prediction-powered inference."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from simulator.analyses.calibrated import calibrate_frame, simulate
from simulator.core.formats import DASH
from tests.conftest import OUTCOME_SCHEMA, outcome_row, tiny_traffic
from tests.test_served_coverage import check


def _frame(model, slice_name, judge, gold, exact=None, gold_pi=None):
    n = len(judge)
    return pl.DataFrame({"model": [model] * n, "slice": [slice_name] * n, "judge": judge,
                         "gold": pl.Series(gold, dtype=pl.Boolean),
                         "gold_pi": pl.Series(gold_pi or [None] * n, dtype=pl.Float64),
                         "exact": exact or [False] * n})


def test_the_correction_by_hand():
    # Judge passes 3 of 4; gold on the first two says pass, fail: d = 0, -1, pi = 2/4, weights 2.
    # Correction = (2 x 0 + 2 x -1) / 4 = -0.5, so 0.75 - 0.5 = 0.25. Variance: sum w^2 (1 - pi) (d - dbar)^2
    # / (sum w)^2 = 2 x 4 x 0.5 x 0.25 / 16 = 1/16, so the 95% interval is 0.25 +- 1.96 x 0.25 (clipped to 0..1).
    row = calibrate_frame(_frame("m", "s", [True, True, True, False], [True, False, None, None]),
                          min_gold=1).row(0, named=True)
    assert row["judge_pass_rate"] == 0.75 and row["correction"] == pytest.approx(-0.5)
    assert row["pass_rate"] == pytest.approx(0.25) and row["kind"] == "calibrated judge"
    assert row["low"] == 0.0 and row["high"] == pytest.approx(0.25 + 1.959964 * 0.25, rel=1e-6)
    assert row["clipped"] is False


def test_an_estimate_below_zero_is_clipped_into_its_interval():
    # Judge passes 3 of 4; gold on the first two says fail, fail: d = -1, -1, pi = 2/4, w = 2, so the
    # correction is -1 and judge + correction = 0.75 - 1 = -0.25, below what a pass rate can be. The d never
    # differ from their mean, so the add-one floor sets the variance: p = 1/3, 2 x 4 x 0.5 x 2/9 / 16 = 1/18,
    # and the interval is -0.25 +- 1.96 x 0.2357 clipped: 0 .. 0.2120.
    row = calibrate_frame(_frame("m", "s", [True, True, True, False], [False, False, None, None]),
                          min_gold=1).row(0, named=True)
    assert row["correction"] == pytest.approx(-1.0)  # the correction is reported as measured
    assert row["pass_rate"] == 0.0 and row["clipped"] is True
    assert row["low"] == 0.0 and row["high"] == pytest.approx(-0.25 + 1.959964 * (1 / 18) ** 0.5, abs=1e-5)
    assert row["low"] <= row["pass_rate"] <= row["high"]


def test_an_estimate_below_zero_whose_whole_interval_is_below_zero_reads_zero_to_zero():
    # Judge passes 2 of 4, gold says fail on both it passed: correction -1, estimate -0.5; the same variance
    # of 1/18 gives -0.5 +- 0.4620, entirely below 0: the interval clips to 0 .. 0 and the estimate with it.
    row = calibrate_frame(_frame("m", "s", [True, True, False, False], [False, False, None, None]),
                          min_gold=1).row(0, named=True)
    assert (row["pass_rate"], row["low"], row["high"], row["clipped"]) == (0.0, 0.0, 0.0, True)


def test_an_estimate_above_one_is_clipped_into_its_interval():
    # Judge passes 1 of 4; gold on two it failed says pass, pass: d = +1, +1, correction +1, and
    # judge + correction = 1.25. Variance 1/18 as above: 1.25 +- 0.4620 clipped: 0.7880 .. 1.
    row = calibrate_frame(_frame("m", "s", [False, False, False, True], [True, True, None, None]),
                          min_gold=1).row(0, named=True)
    assert row["correction"] == pytest.approx(1.0)
    assert row["pass_rate"] == 1.0 and row["clipped"] is True
    assert row["high"] == 1.0 and row["low"] == pytest.approx(1.25 - 1.959964 * (1 / 18) ** 0.5, abs=1e-5)
    assert row["low"] <= row["pass_rate"] <= row["high"]


def test_a_subset_that_never_disagrees_does_not_claim_an_exact_judge():
    # 4 answers, all passed by the judge; gold on two agrees: d = 0, 0; pi = 2/4, w = 2. The add-one floor:
    # p = 1/3, variance = sum w^2 (1 - pi) p (1 - p) / (sum w)^2 = 2 x 4 x 0.5 x 2/9 / 16 = 1/18.
    row = calibrate_frame(_frame("m", "s", [True] * 4, [True, True, None, None]), min_gold=1).row(0, named=True)
    assert row["pass_rate"] == 1.0 and row["high"] == 1.0
    assert row["low"] == pytest.approx(1 - 1.959964 * (1 / 18) ** 0.5, abs=1e-5)


def test_a_recorded_gold_probability_weighs_the_subset():
    # The failing-gold answer was drawn at pi = 1 (always graded), the passing one at 0.25 (weight 4):
    # correction = (4 x 0 + 1 x -1) / 5 = -0.2.
    row = calibrate_frame(_frame("m", "s", [True, True, True, False], [True, False, None, None],
                                 gold_pi=[0.25, 1.0, None, None]), min_gold=1).row(0, named=True)
    assert row["correction"] == pytest.approx(-0.2)


def test_thin_groups_borrow_the_models_correction_and_say_so():
    frame = pl.concat([_frame("m", "a", [True] * 4, [False, False, None, None]),
                       _frame("m", "b", [True] * 4, [True, None, None, None])])
    rows = {row["slice"]: row for row in calibrate_frame(frame, min_gold=2).iter_rows(named=True)}
    assert rows["a"]["correction_scope"] == "cell" and rows["a"]["correction"] == pytest.approx(-1.0)
    # b has one gold grade: the model's pooled correction, (-1 x 2 x 2 + 0 x 4) / (4 + 4) = -0.5 (pi = 2/4, 1/4).
    assert rows["b"]["correction_scope"] == "model" and rows["b"]["correction"] == pytest.approx(-0.5)


def test_gold_graders_need_no_correction():
    row = calibrate_frame(_frame("m", "s", [True, False], [None, None], exact=[True, True]), min_gold=1
                          ).row(0, named=True)
    assert (row["pass_rate"], row["low"], row["high"]) == (0.5, 0.5, 0.5)


def test_calibrated_intervals_cover_the_gold_pass_rate():
    rows = [simulate(seed) for seed in range(200)]
    check([(truth, row["pass_rate"], row["low"], row["high"]) for truth, row in rows])
    judge_bias = np.mean([row["judge_pass_rate"] - truth for truth, row in rows])
    assert judge_bias > 0.05  # the judge alone is far off: 0.3 x 0.25 - 0.7 x 0.02 = 0.061 too high


def test_calibrate_command(cli, world):
    rows = [outcome_row(r, "small", grader="llm_judge", passed=r != "c", gold_passed=(r == "a") if r != "b" else None,
                        gold_grader="human" if r != "b" else None) for r in "abc"]
    rows.append(outcome_row("a", "big", grader="llm_judge"))
    schema = OUTCOME_SCHEMA | {"gold_passed": pl.Boolean, "gold_grader": pl.String}
    outcomes = pl.DataFrame(rows, schema=schema).with_columns(
        pl.Series("passed_source", ["graded", "graded", "graded", "assumed_from_status"]))
    world.write_data(tiny_traffic(), outcomes)
    result = cli("calibrate", world.data, "--min-gold", "1", "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert [(r["model"], r["slice"], r["correction_scope"]) for r in found["groups"]] == [
        ("small", "contract", "cell"), ("small", "faq", "cell")]
    assert found["assumed_from_status"] == [{"model": "big", "slice": "faq", "len": 1}]
    assert {r["slice"]: r["agreement"] for r in found["agreement"]} == {"contract": 1.0, "faq": 1.0}
    # The terminal states the --min-gold that decides the `from` column, the default 30 too.
    for args, gold in ((("--min-gold", "1"), "1 gold grade"), ((), "30 gold grades")):
        text = " ".join(cli("calibrate", world.data, *args).out.split())
        assert f"the cell's own when it has at least {gold} (--min-gold)" in text, text
    world.write_data(tiny_traffic(), outcomes.drop("gold_passed", "gold_grader"))
    missing = cli("calibrate", world.data)
    assert missing.code == 2 and "no gold grades" in missing.err


def test_an_estimate_of_exactly_zero_is_not_flagged_for_a_rounding_error():
    # 27 answers, the judge passes 9 (1/3); a uniform 15 are gold-graded, all failing, 5 of them passed by the
    # judge: correction -5/15 = -1/3, so the estimate is exactly 0, which floats give as -5.6e-17.
    judge = [True] * 5 + [False] * 10 + [True] * 4 + [False] * 8
    row = calibrate_frame(_frame("m", "s", judge, [False] * 15 + [None] * 12), min_gold=1).row(0, named=True)
    assert row["pass_rate"] == 0.0 and row["clipped"] is False


def test_calibrate_command_marks_a_clipped_rate_and_gives_the_unclipped_one(cli, world):
    # faq: the judge passes a (gold: fail) and fails b (no gold): judge 50%, correction -1 on a subset of
    # 1 of 2 (pi = 1/2), so judge + correction = -50%, shown as 0.0%*. contract: c passes both, not clipped.
    rows = [outcome_row("a", "small", grader="llm_judge", passed=True, gold_passed=False, gold_grader="human"),
            outcome_row("b", "small", grader="llm_judge", passed=False),
            outcome_row("c", "small", grader="llm_judge", passed=True, gold_passed=True, gold_grader="human")]
    schema = OUTCOME_SCHEMA | {"gold_passed": pl.Boolean, "gold_grader": pl.String}
    world.write_data(tiny_traffic(), pl.DataFrame(rows, schema=schema))
    found = json.loads(cli("calibrate", world.data, "--min-gold", "1", "--json").out)
    assert {r["slice"]: (r["pass_rate"], r["clipped"]) for r in found["groups"]} == {
        "contract": (1.0, False), "faq": (0.0, True)}
    shown = cli("calibrate", world.data, "--min-gold", "1")
    assert shown.code == 0, shown.err
    assert "0.0%*" in shown.out and "100.0%*" not in shown.out
    assert "* clipped into 0..100%: judge + correction lies outside it (small, faq: −50.0%)" in shown.out
    # faq's correction of -1 reads with a true minus in points, as every signed change does, and intervals
    # with the dash of every other table.
    [faq] = [line for line in shown.out.splitlines() if "│ faq" in line and "pts" in line]
    assert "−100.0 pts" in faq and "-" not in faq and f"0.0% {DASH} " in faq and ".." not in faq, faq


def test_generate_gives_a_random_share_of_the_judged_answers_a_gold_grade_for_calibrate(cli, tmp_path):
    from scipy.stats import binom

    from simulator.datasets.generate import JUDGE_PASSES_FAILURES, generate_week

    plain = pl.concat([o for _, o in generate_week(3000, 2, 4)])
    judged = pl.concat([o for _, o in generate_week(3000, 2, 4, gold_rate=0.2)])
    gold_columns = ["gold_passed", "gold_grader", "gold_inclusion_probability"]
    # Only the judged answers' verdicts change; every other column is the week without gold.
    assert judged.drop("passed", *gold_columns).equals(plain.drop("passed"))
    by_judge = (plain["grader"] == "llm_judge").to_numpy()
    assert judged.filter(~by_judge)["passed"].equals(plain.filter(~by_judge)["passed"])
    assert judged.filter(~by_judge)["gold_passed"].null_count() == int((~by_judge).sum())
    # The gold subset: judged answers only, each with probability 0.2 (inside the 99.9% binomial band),
    # graded by a human with the true verdict.
    gold = judged.with_columns(plain["passed"].alias("true")).filter(pl.col("gold_passed").is_not_null())
    assert set(gold["grader"]) == {"llm_judge"} and set(gold["gold_grader"]) == {"human"}
    assert set(gold["gold_inclusion_probability"]) == {0.2}
    assert gold["gold_passed"].equals(gold["true"], check_names=False)
    n = int(by_judge.sum())
    assert binom.ppf(0.0005, n, 0.2) <= gold.height <= binom.isf(0.0005, n, 0.2)
    # The judge is generous: it passes about a quarter of the true failures.
    failures = judged.with_columns(plain["passed"].alias("true"), pl.Series("by_judge", by_judge)).filter(
        pl.col("by_judge") & ~pl.col("true"))
    share = failures["passed"].mean()
    assert abs(share - JUDGE_PASSES_FAILURES) <= 4 * np.sqrt(0.25 * 0.75 / failures.height)
    # `routesim calibrate` corrects the judge: its 99% intervals contain each cell's true pass rate.
    result = cli("generate", tmp_path / "judged", "--requests", "3000", "--days", "2", "--seed", "4",
                 "--gold-rate", "0.2")
    assert result.code == 0, result.err
    found = cli("calibrate", tmp_path / "judged", "--confidence", "0.99", "--json")
    assert found.code == 0, found.err
    traffic = pl.concat([t for t, _ in generate_week(3000, 2, 4)]).select("request_id", "slice")
    truth = (plain.filter(pl.col("sample") == 0).join(traffic, on="request_id").group_by("model", "slice")
             .agg(pl.col("passed").mean().alias("truth")))
    truth = {(m, s): t for m, s, t in truth.iter_rows()}
    groups = [g for g in json.loads(found.out)["groups"] if g["correction_scope"] == "cell" and g["gold_graded"]
              < g["answers"]]
    assert len(groups) == 24
    missed = [g for g in groups if not g["low"] <= truth[g["model"], g["slice"]] <= g["high"]]
    assert len(missed) <= 2, missed  # 24 cells at 99%: more than two misses has probability below 0.3%
