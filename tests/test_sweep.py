"""Threshold sweeps: a 4-request world worked by hand, agreement with separate replays on random worlds,
the latency quantiles against a brute force, calibration (in and out of sample) and bad input."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest
import yaml

from simulator.analyses import sweep
from simulator.core.contract import load_data
from simulator.core.engine import ACCEPTS, ESCALATES, replay, replay_forked
from simulator.core.errors import RoutesimError
from simulator.core.metrics import aggregate
from simulator.core.prices import load_prices
from simulator.core.scenario import load_scenario, with_step_accept
from simulator.core.verdict import Admission
from tests.conftest import OUTCOME_SCHEMA, TINY_PRICES, World, outcome_row
from tests.worlds import random_world, write_frames

SMALL, BIG = 0.0012, 0.012  # 1,000 input + 100 output tokens at the tiny sheet's prices


def four_request_world(folder) -> World:
    """a, b on Nov 16; c, d on Nov 17. small answers with confidence 0.9, 0.5, 0.5, 0.2; b's answer fails,
    d's fails its hard check (so d always escalates). big (1,000 ms) passes everything."""
    world = World(folder)
    traffic = pl.DataFrame({
        "request_id": ["a", "b", "c", "d"],
        "ts": [dt.datetime(2026, 11, 16, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 16, 2, tzinfo=dt.UTC),
               dt.datetime(2026, 11, 17, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 17, 2, tzinfo=dt.UTC)],
        "slice": ["faq"] * 4, "input_tokens": [1000] * 4})
    rows = [outcome_row("a", "small", confidence=0.9), outcome_row("b", "small", confidence=0.5, passed=False),
            outcome_row("c", "small", confidence=0.5), outcome_row("d", "small", confidence=0.2, hard_check_ok=False)]
    rows += [outcome_row(request, "big", latency_ms=1000.0) for request in "abcd"]
    world.write_data(traffic, pl.DataFrame(rows, schema=OUTCOME_SCHEMA))
    world.prices.write_text(yaml.safe_dump(TINY_PRICES))
    return world


@pytest.fixture
def four(tmp_path):
    world = four_request_world(tmp_path)
    # Four requests prove no pass rate: targets are judged on the observed rate, as worked by hand.
    scenario = load_scenario(world.scenario("cascade", admission={"rule": "point"}))
    data, sheet = load_data(world.data), load_prices(world.prices)
    return world, scenario, data, sheet, sweep.resolve_gate(scenario, data)


def test_sweep_of_a_four_request_world_by_hand(four):
    """t = 0.5: a, b, c stop at small, d escalates: 4 x 0.0012 + 0.012 = 0.0168, 3 of 4 pass, latencies
    100, 100, 100, 1100 so p95 = 100 + 1000 x 0.85 = 950. t = 0.9: only a stops: 0.0048 + 3 x 0.012, all
    pass, p95 1100. Just above 0.9 nothing stops: 0.0048 + 4 x 0.012. 0.7 is the scenario's own threshold
    (same as 0.9 here, as no value lies between)."""
    _, scenario, data, sheet, gate = four
    assert (gate.plan, gate.step, gate.over, gate.models) == ("default", 0, "confidence", ("small", "big"))
    result = sweep.sweep(scenario, data, sheet, gate)
    points = result.points
    assert result.current == 0.7
    assert points["threshold"].to_list() == [0.5, 0.7, 0.9, np.nextafter(0.9, 1)]
    assert points["gate_accepted"].to_list() == [3, 1, 1, 0]
    assert points["requests"].to_list() == [4, 4, 4, 4]
    assert points["passed"].to_list() == [3, 4, 4, 4]
    assert points["escalated"].to_list() == [1, 3, 3, 4]
    assert points["strong_calls"].to_list() == [1, 3, 3, 4]
    assert points["total_cost_usd"].to_list() == pytest.approx(
        [4 * SMALL + BIG, 4 * SMALL + 3 * BIG, 4 * SMALL + 3 * BIG, 4 * SMALL + 4 * BIG], rel=1e-12)
    assert points["escalation_rate"].to_list() == [0.25, 0.75, 0.75, 1.0]
    assert points["latency_p95_ms"].to_list() == pytest.approx([950.0, 1100.0, 1100.0, 1100.0], rel=1e-12)


def test_a_value_only_a_failed_hard_check_holds_is_no_threshold_as_it_changes_no_point(four):
    """d's answer (confidence 0.2) fails its hard check, so d escalates at every threshold: 0.2 is not swept.
    At t = 0.2 the gate accepts a, b and c, as at 0.5, so the curve there is the 0.5 point, and a replay
    with `confidence >= 0.2` gives that point's figures."""
    world, scenario, data, sheet, gate = four
    result = sweep.sweep(scenario, data, sheet, gate)
    assert 0.2 not in result.points["threshold"].to_list()
    at = sweep.curve(result.data, np.array([0.2, 0.5]))
    assert at.drop("threshold").row(0) == at.drop("threshold").row(1)
    accepted = with_step_accept(scenario, gate.plan_index, gate.step, "confidence >= 0.2")
    replayed = aggregate(replay(accepted, data, sheet).decisions).row(0, named=True)
    point = result.points.filter(pl.col("threshold") == 0.5).row(0, named=True)
    assert (replayed["requests"], replayed["pass_rate"], replayed["total_cost_usd"]) == (
        point["requests"], point["pass_rate"], point["total_cost_usd"])


def test_a_sweep_bills_a_turns_prompt_cache_loss_by_the_branch_its_previous_turn_takes(tmp_path):
    """One session, a (turn 0, small confidence 0.9) then b (turn 1, 0.5). Every call reads 1,000 input
    tokens, 400 cached, writes 100: small (600 x 1 + 400 x 0.5 + 100 x 2) / 1e6 = 0.001, big (600 x 10 +
    400 x 2.5 + 100 x 20) / 1e6 = 0.009, and big's 400 cached tokens at its input rate 0.003 more.
    t = 0.5: both stop at small: 0.002. t = 0.9: a stops, b escalates to big, which a did not call: a's
    accepting branch makes b's escalating one lose the cache, 0.001 + 0.001 + 0.009 + 0.003 = 0.014. Above
    0.9 both escalate and b calls what a called: 2 x 0.010 = 0.020."""
    world = World(tmp_path)
    traffic = pl.DataFrame({
        "request_id": ["a", "b"], "ts": [dt.datetime(2026, 11, 16, hour, tzinfo=dt.UTC) for hour in (1, 2)],
        "slice": ["faq"] * 2, "input_tokens": [1000] * 2, "session_id": ["s", "s"], "turn": [0, 1]})
    rows = [outcome_row("a", "small", confidence=0.9, cached_input_tokens=400),
            outcome_row("b", "small", confidence=0.5, cached_input_tokens=400)]
    rows += [outcome_row(request, "big", cached_input_tokens=400) for request in "ab"]
    world.write_data(traffic, pl.DataFrame(rows, schema=OUTCOME_SCHEMA))
    world.prices.write_text(yaml.safe_dump({"models": {
        "small": [{"effective_from": dt.date(2026, 11, 1), "input": 1.0, "cached_input": 0.5, "output": 2.0}],
        "big": [{"effective_from": dt.date(2026, 11, 1), "input": 10.0, "cached_input": 2.5, "output": 20.0}]}}))
    scenario = load_scenario(world.scenario("cascade"))
    data, sheet = load_data(world.data), load_prices(world.prices)
    gate = sweep.resolve_gate(scenario, data)
    prepared = sweep.prepare(scenario, data, sheet, gate)
    points = sweep.curve(prepared, np.array([0.5, 0.9, np.nextafter(0.9, 1)]))
    assert points["total_cost_usd"].to_list() == pytest.approx([0.002, 0.014, 0.020], rel=1e-12)
    assert sweep.decisions_at(prepared, 0.9)["cost_nano_usd"].to_list() == [1_000_000, 13_000_000]
    assert sweep.calls_at(prepared, 0.9).filter(pl.col("kind") == "cache_loss").select(
        "rid", "model", "cost_nano_usd").rows() == [(1, "big", 3_000_000)]
    separate = replay(sweep.with_accept(scenario, gate, "confidence >= 0.9"), data, sheet)
    assert sweep.calls_at(prepared, 0.9).equals(separate.calls)


def test_calibration_picks_the_cheapest_threshold_meeting_the_target(four):
    _, scenario, data, sheet, gate = four
    points = sweep.sweep(scenario, data, sheet, gate).points
    point = scenario.admission
    assert sweep.calibrate(points, "pass_rate", 0.9, point)["threshold"] == 0.7  # 0.7 and 0.9 tie: the lower one
    assert sweep.calibrate(points, "pass_rate", 0.7, point)["threshold"] == 0.5
    # Under the default rule the Wilson lower bound of 4 passes in 4 (0.51) must reach the target.
    assert sweep.calibrate(points, "pass_rate", 0.5)["threshold"] == 0.7
    assert sweep.calibrate(points, "pass_rate", 0.6) is None
    assert sweep.calibrate(points, "escalation_rate", 0.5)["threshold"] == 0.5
    assert sweep.calibrate(points, "budget", 0.02)["threshold"] == 0.7  # all pass 100% from 0.7: least cost
    assert sweep.calibrate(points, "budget", 0.005)["threshold"] == 0.5
    assert sweep.calibrate(points, "budget", 0.001) is None


def test_fit_until_reports_the_calibrated_threshold_on_later_days(four):
    """Fit on a, b: 0.5 passes 1 of 2, 0.7 passes both -> 0.7. On c, d at 0.7 both escalate:
    (2 x 0.0012 + 2 x 0.012) / 2 per request, all pass. In hindsight c, d alone would take 0.5
    (c stops at small and passes): (2 x 0.0012 + 0.012) / 2."""
    _, scenario, data, sheet, gate = four
    held = sweep.holdout(scenario, data, sheet, gate, ("pass_rate", 0.9), dt.date(2026, 11, 17))
    assert held.fit["threshold"] == 0.7 and held.fit["requests"] == 2
    assert held.later["requests"] == 2 and held.later["pass_rate"] == 1.0
    assert held.later["cost_per_request_usd"] == pytest.approx((2 * SMALL + 2 * BIG) / 2, rel=1e-12)
    assert [row["day"] for row in held.later_by_day] == ["2026-11-17"]
    assert held.hindsight["threshold"] == 0.5
    assert held.hindsight["cost_per_request_usd"] == pytest.approx((2 * SMALL + BIG) / 2, rel=1e-12)


def test_sweep_command_prints_calibration_and_writes_every_point(cli, four, tmp_path):
    world, *_ = four
    out = tmp_path / "points.csv"
    result = cli("sweep", world.folder / "cascade.yaml", "--over", "confidence", "--target-pass-rate", "0.9",
                 "--fit-until", "2026-11-17", "-o", out)
    assert result.code == 0, result.err
    assert "calibrated to pass rate at least 90.0% on requests before 2026-11-17: t = 0.7" in result.out
    assert ("A threshold meets it when the observed pass rate reaches the bar, the target being the bar "
            "(the admission rule).") in result.out
    assert "target held out of sample" in result.out
    assert pl.read_csv(out)["threshold"].to_list()[:3] == [0.5, 0.7, 0.9]
    result = cli("sweep", world.folder / "cascade.yaml", "--json")
    assert [p["threshold"] for p in json.loads(result.out)["points"]][:3] == [0.5, 0.7, 0.9]


def test_sweep_json_states_the_admission_rule_that_picked(cli, four):
    world, *_ = four
    path = world.folder / "cascade.yaml"
    found = json.loads(cli("sweep", path, "--over", "confidence", "--target-pass-rate", "0.9", "--json").out)
    assert found["calibration"]["chosen"]["threshold"] == 0.7
    assert found["calibration"]["admission"] == {"rule": "point", "confidence": 0.95,
                                                 "meets_when": "the observed pass rate reaches the bar"}
    strict = world.scenario("strict", admission={"rule": "lower_bound", "confidence": 0.999})
    found = json.loads(cli("sweep", strict, "--over", "confidence", "--target-pass-rate", "0.5", "--json").out)
    assert found["calibration"]["admission"] == {
        "rule": "lower_bound", "confidence": 0.999,
        "meets_when": "the 99.9% Wilson lower bound of the pass rate reaches the bar"}
    budget = json.loads(cli("sweep", path, "--over", "confidence", "--budget", "0.02", "--json").out)
    assert budget["calibration"]["admission"] is None  # a budget picks by cost, not by the admission rule



def test_a_sweep_over_a_grade_is_a_bound_and_never_a_pick(cli, four):
    # score is a grade (known only after the answer is graded): a gate on it is what a replay calls a bound,
    # so the sweep says so everywhere and marks no threshold with the ★ of a threshold to ship.
    world, *_ = four
    path = world.folder / "cascade.yaml"
    graded = json.loads(cli("sweep", path, "--over", "score", "--target-pass-rate", "0.5", "--json").out)
    assert graded["deployable"] is False and graded["reads_grades"] == ["score"]
    assert graded["calibration"]["deployable"] is False and graded["calibration"]["chosen"] is not None
    served = json.loads(cli("sweep", path, "--over", "confidence", "--target-pass-rate", "0.5", "--json").out)
    assert served["deployable"] is True and served["reads_grades"] == []
    assert served["calibration"]["deployable"] is True
    shown = " ".join(cli("sweep", path, "--over", "score", "--target-pass-rate", "0.5").out.split())
    assert "★" not in shown and "◇ calibrated on a grade (a bound, not deployable) to pass rate" in shown
    assert "bound: the swept policy reads the grade column(s) score" in shown
    assert "★ calibrated to pass rate" in cli("sweep", path, "--over", "confidence", "--target-pass-rate", "0.5").out
    # Without a target no threshold is calibrated, and the legend does not say one is.
    assert "calibrated" not in cli("sweep", path, "--over", "confidence").out

def test_the_accept_nothing_threshold_prints_above_the_largest_value(cli, four):
    """The last point's threshold is the float just above 0.9; rounded to 6 digits it would read 0.9, the
    threshold that accepts a."""
    world, *_ = four
    result = cli("sweep", world.folder / "cascade.yaml", "--over", "confidence")
    assert result.code == 0, result.err
    rows = [line for line in result.out.splitlines() if "0.9" in line]
    assert any("> 0.9 " in line for line in rows) and any(" 0.9 " in line and "> 0.9" not in line for line in rows)


@pytest.mark.parametrize(("args", "message"), [
    (["--step", "1"], "is the last step of plan 'default'"),
    (["--step", "5"], "there is no step 5"),
    (["--over", "confidenc"], "Did you mean 'confidence'?"),
    (["--over", "slice"], "is not a numeric column"),
    (["--plan", "defualt"], "Did you mean 'default'?"),
    (["--points", "1"], "--points must be at least 2 (got 1)"),
    (["--fit-until", "2026-11-17"], "--fit-until needs a calibration target"),
    (["--target-pass-rate", "0.9", "--fit-until", "2027-01-01"], "leaves no requests on one side"),
    (["--target-pass-rate", "0.9", "--budget", "0.1"], "give one calibration target"),
    (["--target-pass-rate", "1.5"], "must lie in 0..1"),
    (["--target-pass-rate", "0.9", "--fit-until", "17/11/2026"], "as a date"),
    (["-o", "points.xlsx"], "cannot tell how to write"),
])
def test_sweep_bad_input_is_a_clear_error(cli, four, args, message):
    world, *_ = four
    result = cli("sweep", world.folder / "cascade.yaml", *args)
    assert result.code == 2 and message in result.err, result.err
    assert "Traceback" not in result.err


def test_a_plan_without_a_gate_cannot_be_swept(cli, four):
    world, *_ = four
    path = world.scenario("big", policy={"default": {"use": "big"}})
    result = cli("sweep", path)
    assert result.code == 2 and "no multi-step plan" in result.err


def _brute_quantiles(base, a, b, a_switch, b_switch, thresholds, q):
    found = []
    for j in range(thresholds):
        values = np.concatenate([base, a[j < a_switch], b[j >= b_switch]])
        found.append(pl.Series(values).quantile(q, interpolation="linear") if values.size else math.nan)
    return np.array(found, dtype=np.float64)


@pytest.mark.parametrize("block", [3, sweep.THRESHOLD_BLOCK])
@pytest.mark.parametrize("seed", range(12))
def test_mixed_quantiles_match_a_brute_force(seed, block, monkeypatch):
    """Against polars' own quantile of each multiset, bit for bit; small blocks exercise the carry."""
    monkeypatch.setattr(sweep, "THRESHOLD_BLOCK", block)
    rng = np.random.default_rng(seed)
    n, thresholds = int(rng.integers(0, 300)), int(rng.integers(1, 12))
    values = rng.choice([10.0, 20.0, 35.5, 100.0], size=3 * n) if seed % 2 else rng.uniform(0, 5000, 3 * n)
    base, a, b = values[:n // 3], values[n:2 * n], values[2 * n:]
    a_switch, b_switch = rng.integers(0, thresholds + 1, n), rng.integers(0, thresholds + 1, n)
    q = float(rng.choice([0.5, 0.95, 0.99, 0.0, 1.0]))
    got = sweep.mixed_quantiles(base, a, b, a_switch, b_switch, thresholds, q)
    want = _brute_quantiles(base, a, b, a_switch, b_switch, thresholds, q)
    assert np.array_equal(got, want, equal_nan=True), (got, want)


AGREEMENT_WORLDS = 36


def _agreement_cases():
    """Random worlds with a gate to sweep: the first multi-step plan's gates in turn, over confidence or
    checker_score."""
    cases = []
    for seed in range(400):
        world = random_world(seed)
        plans = world.scenario.policy.plans()
        multi = [label for label, steps in plans if len(steps) > 1]
        if multi:
            steps = dict(plans)[multi[0]]
            step = seed % (len(steps) - 1)
            if len(steps[step].calls) > 1 or world.scenario.policy.sticky == "session":  # a sweep refuses these
                continue
            cases.append((seed, multi[0], step, ("confidence", "checker_score")[seed % 2]))
        if len(cases) == AGREEMENT_WORLDS:
            return cases
    return cases


EXACT = ("total_cost_usd", "cost_per_request_usd")  # sums of whole nano-dollars, in any order
FLOATS = ("pass_rate", "mean_score", "escalation_rate", "retry_rate",
          "latency_p95_ms")


def test_sweep_agrees_with_separate_replays_on_random_worlds(tmp_path):
    """Every sweep point equals a separate replay with the gate `OVER >= t`: the same decisions row for row,
    the same counts, and the same metrics. Costs are integer nano-dollar sums and compared exactly; the
    other float metrics to rel 1e-9 because the sweep adds B's totals and A-minus-B differences, an order of
    summation other than the replay's request order (they differ in the last bits at most);
    the p95 latency is the same order statistics with the same formula.
    Under on_missing=error a threshold whose replay would fail is reported with missing requests. Every
    world has sessions: at some points a turn takes another branch than its previous turn and loses its
    prompt cache for it; lining up the two branch replays again (as a what-if does) gives the same points."""
    kinds = {"compared": 0, "skipped requests": 0, "would fail": 0, "loss across branches": 0}
    for seed, plan, step, over in _agreement_cases():
        world = random_world(seed)
        data = load_data(write_frames(tmp_path / str(seed), world.traffic, world.outcomes))
        gate = sweep.resolve_gate(world.scenario, data, step=step, over=over, plan=plan)
        try:
            prepared = sweep.prepare(world.scenario, data, world.sheet, gate)
        except RoutesimError:  # unpriceable or empty worlds: the replay itself fails too
            with pytest.raises(RoutesimError):
                replay(world.scenario, data, world.sheet)
            continue
        values = prepared.frame.filter("switchable")["value"].to_numpy()
        points = sweep.curve(prepared, sweep.thresholds_for(values, 5))
        if prepared.cache_loss is not None and not prepared.cache_loss.is_empty():
            lined = sweep.line_up(prepared, prepared.accept_all, prepared.accept_none)
            assert sweep.curve(lined, points["threshold"].to_numpy()).equals(points), world.describe()
        for point in points.iter_rows(named=True):
            variant = sweep.with_accept(world.scenario, gate, sweep.gate_predicate(over, point["threshold"]))
            if world.scenario.on_missing == "error" and point["missing_requests"]:
                with pytest.raises(RoutesimError, match="missing from the data"):
                    replay(variant, data, world.sheet)
                kinds["would fail"] += 1
                continue
            separate = replay(variant, data, world.sheet)
            context = (seed, point["threshold"], world.describe())
            assert sweep.decisions_at(prepared, point["threshold"]).equals(separate.decisions), context
            assert sweep.calls_at(prepared, point["threshold"]).equals(separate.calls), context
            expected = aggregate(separate.decisions).to_dicts()[0]
            decisions = separate.decisions
            assert point["requests"] == decisions.height, context
            assert point["passed"] == decisions["passed"].sum(), context
            assert point["escalated"] == (decisions["escalated"] & decisions["multi_step"]).sum(), context
            assert point["multi_step"] == decisions["multi_step"].sum(), context
            assert point["missing_requests"] == separate.coverage.requests_selected - decisions.height, context
            for name in EXACT:
                assert point[name] == expected[name], (name, point[name], expected[name], context)
            for name in FLOATS:
                got, want = point[name], expected[name]
                assert (got is None) == (want is None), (name, got, want, context)
                if got is not None:
                    assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15), (name, got, want, context)
            kinds["compared"] += 1
            kinds["skipped requests"] += bool(point["missing_requests"])
            kinds["loss across branches"] += _losses_across_branches(prepared, point["threshold"])
    assert all(count > 0 for count in kinds.values()), kinds


def _losses_across_branches(prepared: sweep.SweepData, threshold: float) -> int:
    """The prompt-cache losses billed at the threshold to a turn whose previous turn takes the other branch."""
    takes_a = prepared.frame.filter(pl.col("switchable") & (pl.col("value") >= threshold))["rid"].implode()
    own = pl.when(pl.col("rid").is_in(takes_a)).then(ACCEPTS).otherwise(ESCALATES)
    before = pl.when(pl.col("previous").is_in(takes_a)).then(ACCEPTS).otherwise(ESCALATES)
    return prepared.cache_loss.filter((pl.col("branch") == own) & (pl.col("previous_branch") == before)
                                      & (own != before)).height


FORKED_WORLDS = 8


def _fork_cases():
    """Random worlds (rules, overheads, retries, best-of-n and fan-out steps, named steps, missing outcomes)
    with a step to fork at: the default plan's first step when it has several, else one of another
    multi-step plan's steps but the last."""
    for seed in range(1000, 1600):
        world = random_world(seed)
        if world.scenario.policy.sticky == "session":  # a fork refuses these
            continue
        plans = world.scenario.policy.plans()
        if len(plans[-1][1]) > 1:
            yield world, len(plans) - 1, 0
            continue
        forks = [(plan, step) for plan, (_, steps) in enumerate(plans) for step in range(len(steps) - 1)]
        if forks:
            yield world, *forks[seed % len(forks)]


def test_a_forked_replay_gives_each_branch_as_its_own_replay_would(tmp_path):
    """replay_forked's branches equal two separate replays: ACCEPTS the scenario as it is, ESCALATES with the
    forked step accepting nothing: the same decisions and calls row for row and the same coverage; when
    either replay fails, the forked one fails too. Its record of the step's answers lists exactly the
    requests of that plan that got an answer there, with the column a predicate would read."""
    compared, values = 0, 0
    for world, plan, step in _fork_cases():
        seed = world.seed
        data = load_data(write_frames(tmp_path / str(seed), world.traffic, world.outcomes))
        escalating = with_step_accept(world.scenario, plan, step, "FALSE")
        context = (seed, plan, step, world.describe())
        try:
            separate = [replay(world.scenario, data, world.sheet), replay(escalating, data, world.sheet)]
        except RoutesimError:
            with pytest.raises(RoutesimError):
                replay_forked(world.scenario, data, world.sheet, plan, step, "confidence")
            continue
        forked = replay_forked(world.scenario, data, world.sheet, plan, step, "confidence")
        for branch, alone in zip((ACCEPTS, ESCALATES), separate):
            got = forked.replay(branch)
            assert got.decisions.equals(alone.decisions), context
            assert got.calls.equals(alone.calls), context
            assert got.coverage == alone.coverage, context
            assert got.scenario == alone.scenario, context
        # Every request of the plan that went past the step in a branch got an answer there (a request may
        # also have reached it and then been left out for a later missing outcome).
        label, steps = world.scenario.policy.plans()[plan]
        reached = forked.at_step().with_row_index("rid").filter("reached")
        for alone in separate:
            taken = alone.decisions.filter(pl.col("plan") == label, pl.col("steps_taken") > step)
            assert set(taken["rid"]) <= set(reached["rid"]), context
        if len(steps[step].calls) == 1:  # the answer's own confidence (a step of several keeps one answer)
            sample = sum(earlier.calls.count(steps[step].model) for earlier in steps[:step])
            answers = world.outcomes.filter(pl.col("model") == steps[step].model, pl.col("sample") == sample)
            request_ids = separate[1].decisions.select("rid", "request_id")
            expected = reached.join(request_ids, on="rid").join(answers, on="request_id", how="left")
            assert expected["value"].equals(expected["confidence"].cast(pl.Float64), check_names=False), context
            assert expected["hard_check_ok"].equals(expected["hard_check_ok_right"], check_names=False), context
            values += expected.height
        compared += 1
        if compared == FORKED_WORLDS:
            break
    assert compared == FORKED_WORLDS and values > 0


def test_fit_until_says_when_no_threshold_meets_the_target_on_the_later_days(cli, four):
    """At most 40% escalated: on a, b t = 0.5 escalates neither; d always escalates (its hard check
    fails), so no threshold keeps c, d under 40%."""
    world, scenario, data, sheet, gate = four
    held = sweep.holdout(scenario, data, sheet, gate, ("escalation_rate", 0.4), dt.date(2026, 11, 17))
    assert held.fit["threshold"] == 0.5 and held.hindsight is None
    result = cli("sweep", world.folder / "cascade.yaml", "--target-escalation-rate", "0.4",
                 "--fit-until", "2026-11-17")
    assert result.code == 0, result.err
    assert "target NOT held out of sample" in result.out
    assert "In hindsight, no threshold meets escalation rate at most 40.0% on the later days alone." in result.out


def test_the_hindsight_line_shows_when_nothing_meets_the_target_before_the_date():
    from rich.console import Console

    from simulator.cli.views import _print_holdout

    point = {"threshold": 0.5, "pass_rate": 0.96, "cost_per_request_usd": 0.002, "escalation_rate": 0.1,
             "latency_p95_ms": 900.0}
    held = sweep.Holdout(until=dt.date(2026, 11, 17), fit=None, later=None, later_by_day=[], hindsight=point)
    console = Console(record=True, width=200)
    _print_holdout(console, held, ("pass_rate", 0.95))
    text = console.export_text()
    assert "Fitted before 2026-11-17: no threshold meets pass rate at least 95.0%." in text
    assert "In hindsight, the later days alone would pick t = 0.5: pass 96.0%" in text


def test_held_out_of_sample_is_judged_by_the_rule_that_picks():
    """2 passes in 2: the observed rate 1.0 meets 0.5, the 95% Wilson lower bound (0.34) does not, so under
    the default rule the later days do not hold a target of 0.5 that a pick would need the bound to reach."""
    point = {"threshold": 0.7, "requests": 2, "pass_rate": 1.0, "cost_per_request_usd": 0.01, "escalation_rate": 0.5}
    assert not sweep.meets(point, ("pass_rate", 0.5))
    assert sweep.meets(point, ("pass_rate", 0.5), Admission(rule="point"))
    assert sweep.meets(point, ("escalation_rate", 0.5)) and not sweep.meets(point, ("budget", 0.005))


def test_fit_until_json_says_whether_the_target_held(cli, four):
    world, *_ = four
    result = cli("sweep", world.folder / "cascade.yaml", "--target-pass-rate", "0.9", "--fit-until", "2026-11-17",
                 "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["holdout"]["held"] is True  # the scenario's rule is 'point': 2 of 2 pass


def test_with_fit_until_the_pick_is_the_threshold_fitted_before_the_date(cli, four):
    """At a target of 0.7, every request (a, b, c, d) would pick 0.5 (3 of 4 pass); fitted on a and b alone,
    0.5 passes 1 of 2, so the pick is 0.7: the threshold an honest validation ships, marked ★."""
    world, *_ = four
    path = world.folder / "cascade.yaml"
    everything = json.loads(cli("sweep", path, "--target-pass-rate", "0.7", "--json").out)["calibration"]
    assert (everything["chosen"]["threshold"], everything["fitted_on"]) == (0.5, "every request")
    result = cli("sweep", path, "--target-pass-rate", "0.7", "--fit-until", "2026-11-17", "--json")
    fitted = json.loads(result.out)
    assert fitted["calibration"]["chosen"] == fitted["holdout"]["fit"]
    assert fitted["calibration"]["chosen"]["threshold"] == 0.7
    assert fitted["calibration"]["fitted_on"] == "requests before 2026-11-17"
    shown = cli("sweep", path, "--target-pass-rate", "0.7", "--fit-until", "2026-11-17").out
    assert "★ calibrated to pass rate at least 70.0% on requests before 2026-11-17: t = 0.7" in shown
