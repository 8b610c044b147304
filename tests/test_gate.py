"""`routesim gate`: hand-worked gates that pass, fail on one slice, and fail on a budget; bad input; outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.analyses.gate import (
    GateOptions,
    GateSide,
    gate_result,
    run_gate,
    side_from_saved,
)
from simulator.core.errors import RoutesimError
from simulator.core.results import load_results
from simulator.core.scenario import QualityBar
from simulator.report.gate import gate_html, gate_markdown
from tests.eval_worlds import (
    BIG_COST,
    SMALL_COST,
    answers_for,
    make_world,
    slice_requests,
)

ROOT = Path(__file__).resolve().parent.parent
BIG = {"default": {"use": "big"}}


def faq_to_small(bar=None) -> dict:
    return {"rules": [{"name": "faq to small", "when": "slice = 'faq'", "use": "small"}], "default": {"use": "big"}}


@pytest.fixture
def three_flips(tmp_path):
    """1,000 requests: 100 faq, 900 orders. `big` passes them all; `small` fails 3 faq and nothing else.

    Sending faq to small changes faq's pass rate by exactly -3/100 = -3 points and the overall one by
    -3/1000 = -0.3 points. Bootstrapped, faq's lower bound lies near -7 points, far below -1: faq fails.
    Overall, the resampled number of flipped requests stays near 3 of 1,000 (its 97.5th percentile is about 7),
    so the lower bound lies near -0.7 points, above -1: overall passes.
    """
    faq, orders = slice_requests("faq", 100), slice_requests("orders", 900)
    answers = answers_for(faq, "small", passes=97, latency_ms=100.0) + answers_for(orders, "small", passes=900,
                                                                                    latency_ms=100.0)
    answers += answers_for(faq + orders, "big", passes=1000, latency_ms=1000.0)
    return make_world(tmp_path, faq + orders, answers)


def test_gate_fails_on_the_one_slice_that_loses_more_than_its_tolerance(three_flips, cli):
    baseline = three_flips.scenario("baseline", policy=BIG)
    candidate = three_flips.scenario("candidate", policy=faq_to_small())
    result = cli("gate", "--baseline", baseline, "--candidate", candidate, "--json")
    assert result.code == 1, result.err
    gate = json.loads(result.out)
    assert gate["passed"] is False
    assert [(failure["slice"], failure["check"]) for failure in gate["failures"]] == [("faq", "non_inferiority")]
    faq, orders = gate["slices"]
    assert (faq["slice"], orders["slice"]) == ("faq", "orders")
    assert faq["pass_rate_change"]["estimate"] == pytest.approx(-0.03)
    assert faq["changed_verdicts"] == 3 and orders["changed_verdicts"] == 0
    assert faq["pass_rate_change"]["low"] < -0.05
    assert faq["pass_rate_change"]["high"] <= 0
    assert orders["pass_rate_change"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    overall = gate["overall"]
    assert overall["pass_rate_change"]["estimate"] == pytest.approx(-0.003)
    assert -0.01 < overall["pass_rate_change"]["low"] < -0.003
    assert overall["failures"] == []
    # Cost per request: faq 100 x $0.012 -> 100 x $0.0012; overall change -100 x $0.0108 / 1000 = -$0.00108.
    assert faq["cost_per_request_change_usd"]["estimate"] == pytest.approx(SMALL_COST - BIG_COST)
    assert overall["cost_per_request_change_usd"]["estimate"] == pytest.approx((SMALL_COST - BIG_COST) / 10)
    assert overall["baseline"]["cost_per_request_usd"] == pytest.approx(BIG_COST)


def test_a_wider_tolerance_for_that_slice_lets_the_gate_pass(three_flips, cli):
    baseline = three_flips.scenario("baseline", policy=BIG)
    candidate = three_flips.scenario("candidate", policy=faq_to_small())
    result = cli("gate", "--baseline", baseline, "--candidate", candidate, "--tolerance-slice", "faq=0.15")
    assert result.code == 0, result.out + result.err
    assert "gate passed" in result.out


def test_gate_passes_when_the_cheaper_model_answers_the_slice_as_well(tmp_path, cli):
    # small passes exactly the requests big passes in faq: no verdict changes, an interval of zero width,
    # and faq costs $0.0012 instead of $0.012 per request.
    faq, orders = slice_requests("faq", 50), slice_requests("orders", 50)
    answers = answers_for(faq + orders, "small", passes=95) + answers_for(faq + orders, "big", passes=95)
    world = make_world(tmp_path, faq + orders, answers)
    baseline = world.scenario("baseline", policy=BIG, quality_bar=0.5)
    candidate = world.scenario("candidate", policy=faq_to_small(), quality_bar=0.5)
    result = cli("gate", "--baseline", baseline, "--candidate", candidate, "--json", "--max-cost-increase", "0")
    assert result.code == 0, result.err
    gate = json.loads(result.out)
    assert gate["passed"] and gate["failures"] == []
    for row in [gate["overall"], *gate["slices"]]:
        assert row["pass_rate_change"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    faq_row = gate["slices"][0]
    assert faq_row["cost_relative_change"]["estimate"] == pytest.approx(SMALL_COST / BIG_COST - 1)  # -90%
    assert gate["overall"]["cost_relative_change"]["estimate"] == pytest.approx(
        (50 * SMALL_COST + 50 * BIG_COST) / (100 * BIG_COST) - 1)  # -45%


@pytest.fixture
def same_quality(tmp_path):
    """100 requests that both models pass; small costs $0.0012 in 100 ms, big $0.012 in 1,000 ms."""
    requests = slice_requests("faq", 60) + slice_requests("orders", 40)
    answers = answers_for(requests, "small", passes=100, latency_ms=100.0)
    answers += answers_for(requests, "big", passes=100, latency_ms=1000.0)
    world = make_world(tmp_path, requests, answers)
    return world.scenario("baseline", policy={"default": {"use": "small"}}), world.scenario("candidate", policy=BIG)


def test_gate_fails_on_the_cost_budget(same_quality, cli):
    # Every request costs 10 times as much: +900% in every resample, far above a budget of +5%.
    baseline, candidate = same_quality
    assert cli("gate", "--baseline", baseline, "--candidate", candidate).code == 0
    result = cli("gate", "--baseline", baseline, "--candidate", candidate, "--max-cost-increase", "0.05", "--json")
    assert result.code == 1
    gate = json.loads(result.out)
    assert gate["overall"]["cost_relative_change"] == pytest.approx({"estimate": 9.0, "low": 9.0, "high": 9.0})
    assert [(failure["slice"], failure["check"]) for failure in gate["failures"]] == [(None, "cost_budget")]


def test_gate_fails_on_the_latency_budget(same_quality, cli):
    # Every request takes 900 ms longer, so the p95 rises by exactly 900 ms in every resample.
    baseline, candidate = same_quality
    within = json.loads(cli("gate", "--baseline", baseline, "--candidate", candidate, "--json",
                            "--max-p95-increase-ms", "900").out)
    assert within["passed"]
    assert within["overall"]["latency_p95_change_ms"] == pytest.approx({"estimate": 900, "low": 900, "high": 900})
    result = cli("gate", "--baseline", baseline, "--candidate", candidate, "--max-p95-increase-ms", "500")
    assert result.code == 1
    assert "p95 latency may rise by more than the budget" in result.out


def test_gate_fails_a_slice_below_its_bar_even_without_a_loss(tmp_path, cli):
    # orders passes 88 of 100 under both policies: no loss, but below the candidate's bar of 0.9.
    faq, orders = slice_requests("faq", 100), slice_requests("orders", 100)
    answers = answers_for(faq, "small", passes=100) + answers_for(orders, "small", passes=88)
    answers += answers_for(faq, "big", passes=100) + answers_for(orders, "big", passes=88)
    world = make_world(tmp_path, faq + orders, answers)
    baseline = world.scenario("baseline", policy=BIG, quality_bar={"default": 0.5})
    candidate = world.scenario("candidate", policy=faq_to_small(),
                               quality_bar={"default": 0.5, "slices": {"orders": 0.9}})
    gate = json.loads(cli("gate", "--baseline", baseline, "--candidate", candidate, "--json").out)
    assert [(failure["slice"], failure["check"]) for failure in gate["failures"]] == [("orders", "bar")]
    assert gate["slices"][1]["pass_rate_change"]["low"] == 0.0
    assert gate["notes"] == ["the two scenarios have different quality bars; the candidate's are applied"]



def test_the_gate_judges_the_bar_by_the_rule_given(tmp_path, cli):
    # orders passes 95 of 100 under both policies against a bar of 0.9: the observed rate clears it, the
    # 95% Wilson lower bound (0.888) does not, so the default rule fails the bar and --rule point passes it.
    faq, orders = slice_requests("faq", 100), slice_requests("orders", 100)
    answers = answers_for(faq, "small", passes=100) + answers_for(orders, "small", passes=95)
    answers += answers_for(faq, "big", passes=100) + answers_for(orders, "big", passes=95)
    world = make_world(tmp_path, faq + orders, answers)
    bars = {"default": 0.5, "slices": {"orders": 0.9}}
    baseline = world.scenario("baseline", policy=BIG, quality_bar=bars)
    candidate = world.scenario("candidate", policy=faq_to_small(), quality_bar=bars)
    judged = {}
    for rule in ("lower_bound", "point"):
        result = cli("gate", "--baseline", baseline, "--candidate", candidate, "--rule", rule, "--json")
        judged[rule] = (result.code, json.loads(result.out))
    assert judged["lower_bound"][0] == 1 and judged["lower_bound"][1]["rule"] == "lower_bound"
    assert [(f["slice"], f["check"]) for f in judged["lower_bound"][1]["failures"]] == [("orders", "bar")]
    assert judged["point"][0] == 0 and judged["point"][1]["rule"] == "point" and judged["point"][1]["passed"]
    shown = cli("gate", "--baseline", baseline, "--candidate", candidate, "--rule", "point").out
    assert "a bar is met when the observed pass rate reaches the bar" in " ".join(shown.split())
    # orders passes 95 of 100: a bar of 0.96 fails on the observed rate alone under --rule point, and says so
    strict = world.scenario("strict", policy=faq_to_small(), quality_bar={"default": 0.5, "slices": {"orders": 0.96}})
    failed = json.loads(cli("gate", "--baseline", baseline, "--candidate", strict, "--rule", "point", "--json").out)
    assert [f["message"] for f in failed["failures"]] == [
        "the candidate's observed pass rate 95.0% (its 95% interval 88.8% to 97.8% is not judged) is below the bar "
        "96.0%: fails"]
    unknown = cli("gate", "--baseline", baseline, "--candidate", candidate, "--rule", "upper")
    assert unknown.code == 2 and "unknown admission rule 'upper'" in unknown.err and "--rule" in unknown.err

def test_gate_needs_the_same_requests(three_flips, cli):
    baseline = three_flips.scenario("baseline", policy=BIG)
    windowed = three_flips.scenario("candidate", policy=faq_to_small(),
                                    window={"start": "2026-11-16", "end": "2026-11-17"})
    result = cli("gate", "--baseline", baseline, "--candidate", windowed)
    assert result.code == 2
    assert "different 'window'" in result.err and "Traceback" not in result.err
    sampled = three_flips.scenario("sampled", policy=BIG, sample={"requests": 10, "seed": 1})
    assert "different 'sample'" in cli("gate", "--baseline", baseline, "--candidate", sampled).err


def test_gate_needs_the_same_data(three_flips, tmp_path, cli):
    other = make_world(tmp_path / "other", slice_requests("faq", 5),
                       answers_for(slice_requests("faq", 5), "big", passes=5))
    result = cli("gate", "--baseline", three_flips.scenario("baseline", policy=BIG),
                 "--candidate", other.scenario("candidate", policy=BIG))
    assert result.code == 2 and "different data" in result.err


def test_gate_decisions_that_cover_different_requests_are_rejected():
    import polars as pl

    rows = {"request_id": ["a", "b"], "slice": ["faq", "faq"], "passed": [True, True], "cost_nano_usd": [1, 1],
            "latency_ms": [1.0, 1.0]}
    base = GateSide("base", pl.DataFrame(rows), QualityBar(default=0.5))
    cand = GateSide("cand", pl.DataFrame(rows).head(1), QualityBar(default=0.5))
    from simulator.core.errors import RoutesimError

    with pytest.raises(RoutesimError, match="1 only in the baseline \\(e.g. b\\)"):
        gate_result(base, cand)


def test_gate_decisions_listing_a_request_twice_are_rejected_when_they_must_be_joined():
    # In another order than the baseline's, the candidate's rows are joined by request_id, and a repeated
    # id cannot be paired with one request.
    import polars as pl

    rows = {"request_id": ["a", "b", "c"], "slice": ["faq"] * 3, "passed": [True] * 3, "cost_nano_usd": [1] * 3,
            "latency_ms": [1.0] * 3}
    base = GateSide("base", pl.DataFrame(rows), QualityBar(default=0.5))
    repeated = pl.DataFrame(rows).with_columns(pl.Series("request_id", ["c", "a", "c"])).vstack(
        pl.DataFrame(rows).slice(1, 1))
    with pytest.raises(RoutesimError, match="'cand' list request 'c' more than once"):
        gate_result(base, GateSide("cand", repeated, QualityBar(default=0.5)))


@pytest.mark.parametrize("arguments, message", [
    (["--tolerance-slice", "fqa=0.02"], "Did you mean 'faq'?"),
    (["--tolerance-slice", "faq"], "write SLICE=TOLERANCE"),
    (["--tolerance", "1.5"], "a tolerance is a pass-rate margin in [0, 1): at least 0 and below 1, got 1.5"),
    (["--confidence", "95"], "confidence must lie strictly between 0 and 1"),
    (["--resamples", "0"], "--resamples must be at least 1"),
    # a 95% interval's ends need a resample beyond each: 2 / 0.05 = 40 at least (one gave zero width)
    (["--resamples", "1"], "1 resamples are too few for a 95% interval"),
    (["--resamples", "39"], "at least 40 for one to lie beyond each end"),
    (["--resamples", "199", "--confidence", "0.99"], "at least 200"),
])
def test_gate_rejects_bad_options(three_flips, cli, arguments, message):
    baseline = three_flips.scenario("baseline", policy=BIG)
    candidate = three_flips.scenario("candidate", policy=faq_to_small())
    result = cli("gate", "--baseline", baseline, "--candidate", candidate, *arguments)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("arguments, where", [
    (["--tolerance", "1.0"], "--tolerance"), (["--tolerance", "-0.1"], "--tolerance"),
    (["--tolerance-slice", "faq=1.0"], "--tolerance-slice faq"),
    (["--tolerance-slice", "faq=-0.5"], "--tolerance-slice faq"),
])
def test_a_tolerance_outside_its_half_open_range_is_refused_alike_for_the_replay_and_a_slice(
        three_flips, cli, arguments, where):
    """1.0 lies outside [0, 1) (a margin of 1 would pass any drop), and one check words every refusal."""
    baseline = three_flips.scenario("baseline", policy=BIG)
    candidate = three_flips.scenario("candidate", policy=faq_to_small())
    result = cli("gate", "--baseline", baseline, "--candidate", candidate, *arguments)
    value = arguments[1].rpartition("=")[2]
    assert result.code == 2 and "Traceback" not in result.err
    assert f"a tolerance is a pass-rate margin in [0, 1): at least 0 and below 1, got {float(value)}" in result.err
    assert f"where: {where}\n" in result.err
    assert "fix: give a margin from 0 up to (not including) 1, e.g. 0.01 for one percentage point" in result.err


def test_gate_is_deterministic_and_writes_markdown(three_flips, cli, tmp_path):
    baseline = three_flips.scenario("baseline", policy=BIG)
    candidate = three_flips.scenario("candidate", policy=faq_to_small())
    runs = [cli("gate", "--baseline", baseline, "--candidate", candidate, "--json", "--seed", "7").out
            for _ in range(2)]
    assert runs[0] == runs[1]
    other_seed = cli("gate", "--baseline", baseline, "--candidate", candidate, "--json", "--seed", "8").out
    assert json.loads(other_seed)["slices"][0]["pass_rate_change"]["estimate"] == pytest.approx(-0.03)
    markdown = tmp_path / "comment" / "gate.md"
    assert cli("gate", "--baseline", baseline, "--candidate", candidate, "--markdown", markdown).code == 1
    text = markdown.read_text()
    assert text.startswith("### ❌ Regression gate FAILED: candidate 'candidate' against baseline 'baseline'")
    assert "| faq | 100 | 3 | 90.0% | 100.0% → 97.0% | −3.0 \\[" in text
    assert "**Failures**" in text and "- faq: the pass rate may have dropped" in text
    assert [path.name for path in markdown.parent.iterdir()] == ["gate.md"]  # no temporary file left


def test_gate_markdown_on_stdout_is_alone_there(three_flips, cli, tmp_path):
    # `gate --markdown - > comment.md`: the table, the failures and "gate failed" go to stderr.
    baseline = three_flips.scenario("baseline", policy=BIG)
    candidate = three_flips.scenario("candidate", policy=faq_to_small())
    filed = tmp_path / "gate.md"
    assert cli("gate", "--baseline", baseline, "--candidate", candidate, "--markdown", filed).code == 1
    streamed = cli("gate", "--baseline", baseline, "--candidate", candidate, "--markdown", "-")
    assert streamed.code == 1
    assert streamed.out == filed.read_text()
    assert "gate failed" in streamed.err and "faq" in streamed.err
    # the table's own line breaks stay line breaks (only a name's would be shown as \\u000a)
    assert "\\u000a" not in streamed.err
    assert any(line.strip("│ ").startswith("bar ") for line in streamed.err.splitlines())
    both = cli("gate", "--baseline", baseline, "--candidate", candidate, "--markdown", "-", "--json")
    assert both.code == 2 and both.out == ""
    assert "--markdown and --json would both write to stdout" in both.err


def test_html_fragment_escapes_every_string_from_the_data():
    import polars as pl

    name = "<script>alert('x')</script>"
    rows = {"request_id": ["a", "b", "c"], "slice": [name, name, "faq"], "passed": [True, False, True],
            "cost_nano_usd": [1, 1, 1], "latency_ms": [1.0, 2.0, 3.0]}
    base = GateSide("<b>base</b>", pl.DataFrame(rows), QualityBar(default=0.5), description="<i>x</i>")
    cand = GateSide("cand & co", pl.DataFrame(rows).with_columns(pl.lit(False).alias("passed")),
                    QualityBar(default=0.5))
    result = gate_result(base, cand, GateOptions(resamples=50))
    json.dumps(result)  # plain data
    fragment = gate_html(result)
    assert "<script>" not in fragment and "<b>base" not in fragment
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in fragment and "cand &amp; co" in fragment
    assert fragment.startswith('<section id="gate" class="gate gate-fail">')
    assert "<script>" not in gate_markdown(result)


def test_gate_from_saved_results_matches_the_gate_from_scenarios(three_flips, cli, tmp_path):
    # The report builds the gate from saved results; it must agree with `routesim gate`.
    baseline = three_flips.scenario("baseline", policy=BIG)
    candidate = three_flips.scenario("candidate", policy=faq_to_small())
    assert cli("replay", baseline, candidate, "--save", tmp_path / "results").code == 0
    saved = {result.summary["scenario"]: result for result in load_results(tmp_path / "results")}
    from_saved = gate_result(side_from_saved(saved["baseline"]), side_from_saved(saved["candidate"]))
    direct = run_gate(baseline, candidate)
    for key in ("passed", "overall", "slices", "failures"):
        assert from_saved[key] == direct[key]
    assert from_saved["overall"]["baseline"]["latency_p95_ms"] == pytest.approx(
        saved["baseline"].summary["latency_p95_ms"])


def test_gate_on_the_shipped_week(cli):
    # The stacked policy's cascade gives up the long tail that flagship-everywhere serves.
    result = cli("gate", "--baseline", ROOT / "scenarios" / "flagship-everywhere.yaml",
                 "--candidate", ROOT / "scenarios" / "stacked.yaml", "--json", "--resamples", "200")
    assert result.code == 1
    gate = json.loads(result.out)
    failing = {failure["slice"] for failure in gate["failures"]}
    assert {"refund_dispute", "renewal_email", "research_synthesis"} <= failing
    assert "faq" not in failing and gate["requests"] == 50_000


def _decisions(seed: int, n: int = 400):
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    return pl.DataFrame({"request_id": [f"r{i:04d}" for i in range(n)],
                         "session_id": [f"s{i // 4:03d}" for i in range(n)],
                         "slice": ["refund" if i % 3 == 0 else "faq" for i in range(n)], "passed": rng.random(n) < 0.9,
                         "cost_nano_usd": rng.integers(1_000, 90_000, n),
                         "latency_ms": np.where(rng.random(n) < 0.1, None, rng.lognormal(7, 1, n))})


def test_gate_result_does_not_depend_on_row_order_or_chunking():
    import polars as pl

    base, cand = _decisions(1).drop("session_id"), _decisions(2).drop("session_id")
    bar = QualityBar(default=0.5)
    options = GateOptions(resamples=60, seed=3)
    first = gate_result(GateSide("b", base, bar), GateSide("c", cand, bar), options)
    # The same decisions shuffled, and the candidate's as three chunks in another order.
    shuffled = base.sample(fraction=1.0, shuffle=True, seed=5)
    chunked = pl.concat([cand.slice(250), cand.slice(0, 100), cand.slice(100, 150)], rechunk=False)
    second = gate_result(GateSide("b", shuffled, bar), GateSide("c", chunked, bar), options)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    # Requests without a latency (batch answers) are left out of the p95s, in the estimate and the bootstrap.
    import numpy as np

    timed = base.filter(pl.col("latency_ms").is_not_null())
    assert first["overall"]["baseline"]["latency_p95_ms"] == np.quantile(timed["latency_ms"].to_numpy(), 0.95)
    assert first["overall"]["latency_p95_change_ms"]["low"] is not None


def test_gate_resamples_whole_sessions_when_asked():
    # Four requests a session: with --resample session the session is the resampling unit, so the intervals
    # differ from the ones that resample requests one by one (the default, sessions or not).
    base, cand = _decisions(1), _decisions(2)
    bar = QualityBar(default=0.5)
    options = GateOptions(resamples=60, seed=3)
    by_session = gate_result(GateSide("b", base, bar), GateSide("c", cand, bar),
                             GateOptions(resamples=60, seed=3, resample="session"))
    by_request = gate_result(GateSide("b", base.drop("session_id"), bar), GateSide("c", cand.drop("session_id"), bar),
                             options)
    default = gate_result(GateSide("b", base, bar), GateSide("c", cand, bar), options)
    assert default["overall"] == by_request["overall"] and default["resample"] == "request"
    assert by_session["overall"]["pass_rate_change"] != by_request["overall"]["pass_rate_change"]
    assert by_session["overall"]["pass_rate_change"]["estimate"] == by_request["overall"]["pass_rate_change"]["estimate"]


def test_resampling_by_session_keys_weights_by_the_session_alone():
    import polars as pl

    # The same sessions under other request ids get the same weights: only the session id is drawn on.
    base, cand = _decisions(1), _decisions(2)
    bar, options = QualityBar(default=0.5), GateOptions(resamples=60, seed=3, resample="session")
    renamed = [frame.with_columns(pl.concat_str(pl.lit("x"), "request_id").alias("request_id")) for frame in (base, cand)]
    first = gate_result(GateSide("b", base, bar), GateSide("c", cand, bar), options)
    second = gate_result(GateSide("b", renamed[0], bar), GateSide("c", renamed[1], bar), options)
    assert first["overall"] == second["overall"] and first["slices"] == second["slices"]


def test_resampling_by_session_needs_sessions_and_a_known_unit():
    base, cand = _decisions(1).drop("session_id"), _decisions(2).drop("session_id")
    bar = QualityBar(default=0.5)
    with pytest.raises(RoutesimError, match="--resample session needs sessions"):
        gate_result(GateSide("b", base, bar), GateSide("c", cand, bar), GateOptions(resamples=50, resample="session"))
    with pytest.raises(RoutesimError, match="--resample is 'turn'"):
        gate_result(GateSide("b", base, bar), GateSide("c", cand, bar), GateOptions(resamples=50, resample="turn"))


def _side(name: str, rows: dict) -> GateSide:
    import polars as pl

    return GateSide(name, pl.DataFrame(rows), QualityBar(default=0.0))


def test_cost_intervals_stay_within_what_the_resamples_can_reach():
    # A tiny world with skewed costs (one request carries almost all of the spread): the bootstrap-t
    # standardises by resampled standard errors near zero and used to give lower bounds of -$412,288 per
    # request. A resampled mean change lies between the smallest and largest per-request change, and a
    # resampled cost ratio is >= 0, so every interval must too.
    ids = ["a", "b", "c", "d", "e", "f"]
    base_cost = [13_000_000, 12_000_000, 14_000_000, 13_000_000, 100, 12_500_000]
    cand_cost = [13_100_000, 2_000_000, 14_000_000, 900_000_000, 90, 1_000]
    rows = {"request_id": ids, "slice": ["x", "x", "x", "y", "y", "y"], "passed": [True] * 6,
            "latency_ms": [1.0] * 6}
    for resamples, seed in ((400, 0), (400, 1), (1000, 7)):
        result = gate_result(_side("b", {**rows, "cost_nano_usd": base_cost}),
                             _side("c", {**rows, "cost_nano_usd": cand_cost}),
                             GateOptions(resamples=resamples, seed=seed, tolerance=0.5))
        for row in [result["overall"], *result["slices"]]:
            members = [i for i, name in enumerate(rows["slice"]) if row["slice"] in (None, name)]
            changes = [(cand_cost[i] - base_cost[i]) / 1e9 for i in members]
            dollars, relative = row["cost_per_request_change_usd"], row["cost_relative_change"]
            assert min(changes) - 1e-12 <= dollars["low"] <= dollars["estimate"] <= dollars["high"] \
                <= max(changes) + 1e-12, (row["slice"], dollars)
            if relative["low"] is not None:
                assert -1 <= relative["low"] <= relative["estimate"] <= relative["high"], (row["slice"], relative)


def test_a_one_request_slice_has_too_few_requests_for_an_interval():
    # With one request every resample repeats it: no interval, an undecided check, and it says so.
    rows = {"request_id": ["a", "b", "c", "d"], "slice": ["one", "many", "many", "many"],
            "latency_ms": [1.0] * 4}
    base = _side("b", {**rows, "passed": [True] * 4, "cost_nano_usd": [10, 20, 30, 40]})
    cand = _side("c", {**rows, "passed": [False, True, True, False], "cost_nano_usd": [5, 20, 30, 20]})
    result = gate_result(base, cand, GateOptions(resamples=200, seed=0, tolerance=0.5))
    one = next(row for row in result["slices"] if row["slice"] == "one")
    assert one["too_few_requests"] and one["requests"] == 1
    for name in ("pass_rate_change", "cost_per_request_change_usd", "cost_relative_change", "latency_p95_change_ms"):
        assert one[name]["low"] is None and one[name]["high"] is None, name
    assert one["pass_rate_change"]["estimate"] == -1.0
    assert result["undecided"] == ["one"]
    assert not result["overall"]["too_few_requests"] and result["overall"]["pass_rate_change"]["low"] is not None
    markdown = gate_markdown(result)
    assert "too few requests" in markdown and "undecided" in markdown


def test_gate_on_the_routing_drill_gives_bounded_cost_intervals(cli):
    result = cli("gate", "--baseline", ROOT / "scenarios" / "routing-drill-flagship.yaml",
                 "--candidate", ROOT / "scenarios" / "routing-drill.yaml", "--json", "--resamples", "300")
    assert result.code in (0, 1), result.err
    gate = json.loads(result.out)
    for row in [gate["overall"], *gate["slices"]]:
        relative = row["cost_relative_change"]
        if relative["low"] is not None:
            # The studentized interval gave -110.9% to +36,341,990,371% here.
            assert -1 <= relative["low"] <= relative["estimate"] <= relative["high"] < 1, (row["slice"], relative)
        dollars = row["cost_per_request_change_usd"]
        if dollars["low"] is not None:
            # Each request's change is at most a request's cost either way: far below a dollar here.
            assert -1 < dollars["low"] <= dollars["high"] < 1, (row["slice"], dollars)
        assert row["too_few_requests"] == (row["requests"] < 2)
