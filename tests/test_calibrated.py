"""Judge grades calibrated against gold grades by prediction-powered inference."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from simulator.analyses.calibrated import calibrate_frame, simulate
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
    world.write_data(tiny_traffic(), outcomes.drop("gold_passed", "gold_grader"))
    missing = cli("calibrate", world.data)
    assert missing.code == 2 and "no gold grades" in missing.err
