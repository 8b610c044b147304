"""Every figure printed beside a threshold it is judged against (a quality bar, a target, a tolerance, a budget)
reads on its true side of it, so no output contradicts the verdict printed next to it: a Wilson interval end
just under a bar is not "90.0%" beside "undecided", a pass rate just under a target is not "90.0%" beside
"no threshold meets it", and a cost change just over its budget is not the budget's own number."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import yaml

from tests.conftest import OUTCOME_SCHEMA, World, outcome_row
from tests.report_helpers import build

PRICES = {"models": {"m": [{"effective_from": dt.date(2026, 1, 1), "input": 1.0, "output": 2.0}],
                     "m2": [{"effective_from": dt.date(2026, 1, 1), "input": 0.5, "output": 1.0}]}}


def slices_world(folder: Path, slices: dict[str, tuple[int, int]], *, slower_ms: float = 0.0) -> World:
    """Per slice NAME: (N, K), N requests of which the first K pass, on both models. `m2` costs half of `m`
    ($0.0006 against $0.0012 a call); `m` takes `slower_ms` longer on every request."""
    base = dt.datetime(2026, 11, 18, tzinfo=dt.UTC)
    traffic, outcomes = [], []
    for name, (requests, passing) in slices.items():
        for index in range(requests):
            rid = f"{name}-{index:06d}"
            traffic.append({"request_id": rid, "ts": base + dt.timedelta(seconds=37 * len(traffic)), "slice": name,
                            "input_tokens": 1000})
            latency = 100.0 + index % 50
            outcomes += [outcome_row(rid, "m", passed=index < passing, confidence=0.5, latency_ms=latency + slower_ms),
                         outcome_row(rid, "m2", passed=index < passing, confidence=0.5, latency_ms=latency)]
    world = World(folder)
    world.write_data(pl.DataFrame(traffic), pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA))
    world.prices.write_text(yaml.safe_dump(PRICES))
    return world


def page_text(path: Path) -> str:
    """The report's words: scripts, styles and tags dropped, whitespace collapsed."""
    page = re.sub(r"<(style|script)\b.*?</\1>", "", path.read_text(), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def near_the_bar(folder: Path) -> World:
    # x: 132 of 139 pass, Wilson 95% interval 0.89970 to 0.97507: the lower end is 0.03 points under a bar of
    # 0.9, so one decimal reads 90.0%. y: 304 of 350, interval 0.82908 to 0.9000007: the upper end is over
    # the bar by 7e-7, so it takes four decimals (90.0001%) to read over it.
    world = slices_world(folder, {"x": (139, 132), "y": (350, 304)})
    bars = {"default": 0.85, "slices": {"x": 0.9, "y": 0.9}}
    world.scenario("s", quality_bar=bars, policy={"default": {"use": "m"}})
    world.scenario("s2", quality_bar=bars, policy={"default": {"use": "m2"}})
    return world


def test_interval_ends_near_a_bar_read_on_their_side_of_it_in_replay_lanes_and_gate(cli, tmp_path):
    world = near_the_bar(tmp_path)
    replay = cli("replay", world.folder / "s.yaml")
    assert replay.code == 0, replay.err
    # Both slices are undecided: their intervals straddle the bar, and now read as straddling it.
    assert "x: 89.97–97.5% around the bar of 90.0%" in replay.out, replay.out
    lanes = cli("lanes", world.data, "--prices", world.prices, "--bars-from", world.folder / "s.yaml")
    assert lanes.code == 0, lanes.err
    # m's rows, x then y: neither is admitted, and each interval reads as straddling the bar.
    m_rows = [line for line in lanes.out.splitlines() if "│ m " in line and "m2" not in line]
    assert [("89.97% – 97.5%" in line, "82.9% – 90.0001%" in line, line.rstrip(" │").endswith("no"))
            for line in m_rows] == [(True, False, True), (False, True, True)], lanes.out
    gate = cli("gate", "--baseline", world.folder / "s2.yaml", "--candidate", world.folder / "s.yaml")
    assert gate.code == 1
    assert ("x: the candidate's pass rate 95.0% (95% interval 89.97% to 97.5%) does not clear the bar 90.0%: "
            "undecided") in gate.out
    assert "(95% interval 82.9% to 90.0001%) does not clear the bar 90.0%: undecided" in gate.out


def test_the_report_writes_interval_ends_on_their_side_of_the_bar_and_its_legend_for_the_rule(tmp_path):
    world = near_the_bar(tmp_path / "w")
    build([world.folder / "s.yaml"], tmp_path / "r.html")
    text = page_text(tmp_path / "r.html")
    # Per slice: x and y undecided, each interval end on its side of the bar; the why-not names the interval.
    assert "95.0% ? 89.97–97.5%" in text and "86.9% ? 82.9–90.0001%" in text, text
    assert "x: 89.97–97.5% around the bar of 90.0%" in text
    assert "the whole interval lies below it; ? undecided: the interval straddles it" in text
    assert "✗ shading: the whole interval lies below it" in text


def test_under_the_point_rule_the_report_legends_say_the_observed_rate_is_judged(tmp_path):
    # x alone, bar 0.9, point rule: 95.0% meets, and the headline gives the interval with its lower end under
    # the bar (0.89970), not "90.0–97.5%". ✗ means the observed rate is below the bar, not the interval.
    world = slices_world(tmp_path / "w", {"x": (139, 132)})
    path = world.scenario("s", quality_bar=0.9, admission={"rule": "point"}, policy={"default": {"use": "m"}})
    build([path], tmp_path / "r.html")
    text = page_text(tmp_path / "r.html")
    assert "meets : 95.0% (89.97–97.5%) against 90.0% overall" in text, text
    assert "whole interval" not in text
    assert "✗ fails the slice's bar: the observed pass rate lies below it" in text
    assert "✗ shading: the observed pass rate lies below it" in text


def just_under(folder: Path) -> World:
    # 4,499 of 5,000 pass: 0.8998, one decimal reads 90.0% against a bar and target of 0.9 that it misses
    # under the point rule. Every answer's confidence is 0.5, so thresholds 0.4 and 0.5 keep every request
    # on m (0.8998), and m2 answers alike.
    world = slices_world(folder, {"z": (5000, 4499)})
    point = {"rule": "point"}
    world.scenario("s", quality_bar=0.9, admission=point, policy={"default": {"use": "m"}})
    world.scenario("c", quality_bar=0.9, admission=point, policy={"default": {"cascade": [
        {"model": "m", "accept": "confidence >= 0.4"}, {"model": "m2"}]}})
    return world


def test_whatif_and_sweep_write_a_failing_rate_under_its_bar(cli, tmp_path):
    world = just_under(tmp_path)
    whatif = cli("whatif", world.folder / "s.yaml", "--scale", "m=2")
    assert whatif.code == 0, whatif.err
    [row] = [line for line in whatif.out.splitlines() if line.startswith("│ s ")]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    # Doubling m's prices doubles the policy's cost: the change reads +100.0%, signed like every change.
    assert (cells[1], cells[2], cells[7]) == ("89.98%", "fails", "+100.0%"), row
    sweep = cli("sweep", world.folder / "c.yaml", "--target-pass-rate", "0.9")
    assert sweep.code == 0, sweep.err
    assert "no threshold meets it" in sweep.out
    # Three thresholds (0.4, 0.5 and above every confidence), each at 0.8998 on m or on m2 alike.
    # 90.0% is the target, as given; no point reads it.
    assert sweep.out.count("89.98%") == 3 and sweep.out.count("90.0%") == 1, sweep.out
    assert "pass rate at least 90.0% on every request: no threshold meets it" in sweep.out


def test_gate_budgets_read_as_given_and_the_interval_ends_beside_them_on_their_side(cli, tmp_path):
    # m costs exactly twice m2 on every request and takes exactly 450 ms longer, so every bootstrap resample
    # gives a cost change of +100% and a p95 change of +450 ms: the intervals are those points. Budgets just
    # under them (99.999%, 449.6 ms) are exceeded, and used to read +100.0% and +450 ms, like the ends.
    world = slices_world(tmp_path, {"s": (40, 40)}, slower_ms=450.0)
    base = world.scenario("base", quality_bar=0.5, policy={"default": {"use": "m2"}})
    cand = world.scenario("cand", quality_bar=0.5, policy={"default": {"use": "m"}})
    gate = cli("gate", "--baseline", base, "--candidate", cand, "--max-cost-increase", "0.99999",
               "--max-p95-increase-ms", "449.6")
    assert gate.code == 1, gate.err
    assert "budgets: cost +99.999%, p95 +449.6 ms" in gate.out
    assert ("cost per request may rise by more than the budget of +99.999%: change +100.0%, 95% interval "
            "+100.0% to +100.0%") in gate.out
    assert ("p95 latency may rise by more than the budget of +449.6 ms: change +450 ms, 95% interval +450 ms to "
            "+450 ms") in gate.out
    markdown = cli("gate", "--baseline", base, "--candidate", cand, "--max-cost-increase", "0.99999",
                   "--max-p95-increase-ms", "449.6", "--markdown", tmp_path / "gate.md")
    assert markdown.code == 1
    assert "budgets: cost +99.999%, p95 +449.6 ms" in (tmp_path / "gate.md").read_text()


def escalating(folder: Path) -> World:
    # 10 requests, all passing; m2 answers the first 3 with confidence 0.1 (escalated to m), the rest with 0.9.
    # 100 input and 10 output tokens a call: m costs 120,000 nano-dollars, m2 84,006. So the cascade escalates
    # 30.000% against an e* of 1 − 84,006 / 120,000 = 29.995%, and costs 120,006 nano a request against
    # sending all to m's 120,000: both one decimal or one more digit apart from what they are judged against.
    base = dt.datetime(2026, 11, 18, tzinfo=dt.UTC)
    traffic, outcomes = [], []
    for index in range(10):
        rid = f"r{index:02d}"
        traffic.append({"request_id": rid, "ts": base + dt.timedelta(seconds=37 * index), "slice": "s",
                        "input_tokens": 100})
        outcomes += [outcome_row(rid, "m", input_tokens=100, output_tokens=10, confidence=0.9),
                     outcome_row(rid, "m2", input_tokens=100, output_tokens=10, confidence=0.1 if index < 3 else 0.9)]
    world = World(folder)
    world.write_data(pl.DataFrame(traffic), pl.DataFrame(outcomes, schema=OUTCOME_SCHEMA))
    world.prices.write_text(yaml.safe_dump({"models": {
        "m": [{"effective_from": dt.date(2026, 1, 1), "input": 1.0, "output": 2.0}],
        "m2": [{"effective_from": dt.date(2026, 1, 1), "input": 0.8, "output": 0.4006}]}}))
    point = {"rule": "point"}
    world.scenario("c", quality_bar=0.5, admission=point, policy={"default": {"cascade": [
        {"model": "m2", "accept": "confidence >= 0.5"}, {"model": "m"}]}})
    world.scenario("big", quality_bar=0.5, admission=point, policy={"default": {"use": "m"}})
    return world


def test_an_escalation_rate_and_its_break_even_read_apart_beside_costs_more(cli, tmp_path):
    world = escalating(tmp_path / "w")
    whatif = cli("whatif", world.folder / "c.yaml", "--scale", "m=1.0")
    assert whatif.code == 0, whatif.err
    [row] = [line for line in whatif.out.splitlines() if "m2 → m" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[3:] == ["30.0%", "29.995%", "29.995%", "costs more than its last step"], row
    build([world.folder / "c.yaml"], tmp_path / "r.html")
    text = page_text(tmp_path / "r.html")
    assert "30.0% 29.995% costs more than sending all to m" in text, text


def test_a_policy_that_costs_more_than_the_recommended_one_reads_more(cli, tmp_path):
    world = escalating(tmp_path / "w")
    replay = cli("replay", world.folder / "c.yaml", world.folder / "big.yaml")
    assert replay.code == 0, replay.err
    assert "c: costs more per request than big" in replay.out
    rows = {line.split()[0]: line.split()[1:] for line in replay.out.splitlines()
            if line.strip().startswith(("c ", "big "))}
    assert rows["c"][0] == "$0.00012001" and rows["big"][:2] == ["★", "$0.000120"], replay.out
    build([world.folder / "c.yaml", world.folder / "big.yaml"], tmp_path / "r.html")
    text = page_text(tmp_path / "r.html")
    assert "c $0.00012001 100.0%" in text and "big ★ $0.000120 100.0%" in text, text


def test_a_price_difference_reads_on_its_side_of_the_tolerance_and_the_tolerances_as_given(cli, tmp_path):
    # The sheet prices m 1.0101% above its recorded cost (flagged at 1%) and m2 0.999% above (not flagged):
    # both used to read "1.0%" beside "off by more than 1.0%".
    world = escalating(tmp_path)
    outcomes = pl.read_parquet(world.data / "outcomes.parquet").with_columns(
        cost_usd=pl.when(pl.col("model") == "m").then(0.0001188).otherwise(0.000084006 / 1.00999))
    outcomes.write_parquet(world.data / "outcomes.parquet")
    check = cli("prices", "check", world.data, "--prices", world.prices, "--tolerance-usd", "0.0000001234567")
    assert check.code == 0, check.err
    differences = [line.split(": ")[1] for line in check.out.splitlines() if line.strip().startswith("difference:")]
    assert "⚑ m\n" in check.out and "⚑ m2" not in check.out and differences == ["1.01%", "0.999%"], check.out
    assert "flagged: off by more than 1.0% and $0.0000001234567 per call" in check.out


def test_the_controls_and_frontier_write_pass_rates_on_their_side_of_the_bar(cli, tmp_path):
    # c passes 0.8998 against a bar of 0.9, and so do its controls (m and m2 answer alike): every one of them
    # used to read 90.0% in the controls and frontier tables beside 89.98% "fails" in the comparison.
    world = just_under(tmp_path / "w")
    replay = cli("replay", world.folder / "c.yaml")
    assert replay.code == 0, replay.err
    controls = replay.out[replay.out.index("Honest controls"):]
    assert "89.98%" in controls and "90.0%" not in controls, controls
    build([world.folder / "c.yaml"], tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    for table in ("controls-table", "frontier-table"):
        found = page_text_of(page, table)
        assert "89.98%" in found and "90.0%" not in found, found


def page_text_of(page: str, table: str) -> str:
    """The words of the table with id `table` in a report page."""
    body = re.search(rf'<table id="{table}">.*?</table>', page, flags=re.S)
    assert body, table
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body.group(0)))


def test_sweep_targets_read_in_their_unit_and_each_cost_column_to_one_precision(cli, tmp_path):
    world = escalating(tmp_path)
    budget = cli("sweep", world.folder / "c.yaml", "--budget", "0.0000842")
    assert budget.code == 0, budget.err
    assert "calibrated to cost per request at most $0.0000842 on every request" in budget.out, budget.out
    # Totals $0.00084006 and $0.00120006 both to six decimals, not $0.000840 above $0.00120.
    assert "$0.000840 " in budget.out and "$0.001200 " in budget.out and "$0.00120 " not in budget.out, budget.out
    rate = cli("sweep", world.folder / "c.yaml", "--target-pass-rate", "0.9")
    assert rate.code == 0, rate.err
    assert "calibrated to pass rate at least 90.0% on every request" in rate.out, rate.out


def test_the_report_names_the_reference_it_looked_for_and_what_the_point_rule_judges(tmp_path):
    world = escalating(tmp_path / "w")
    build([world.folder / "c.yaml"], tmp_path / "r.html")
    text = page_text(tmp_path / "r.html")
    assert ("No baseline was named (--baseline) and no scenario named flagship-everywhere (the reference without "
            "one) was replayed, so the saving is measured against sending every request to m") in text, text
    # Under the point rule the observed rate is the verdict: no verdict rests on the Wilson intervals.
    assert "(the observed rate is the verdict; the Wilson score interval beside it shows its uncertainty" in text
    assert "(Wilson score intervals)" not in text
