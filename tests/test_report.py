"""The report's tables (break-even, baselines, oracle), its chart specs, its escaping and `report --from`."""

from __future__ import annotations

import datetime as dt
import json
import re

import polars as pl
import pytest
import yaml

from simulator.analyses import tables as analysis
from simulator.core.contract import load_data
from simulator.core.prices import load_prices
from simulator.core.scenario import load_scenario
from simulator.report import charts
from simulator.report.build import BASELINES_FILE, TABLES_FILE, load_report_inputs
from tests.conftest import TINY_PRICES, World, tiny_outcomes, tiny_traffic
from tests.report_helpers import HOSTILE, build, hostile_world, shipped, tiny_world

SMALL, BIG = 0.0012, 0.012  # the tiny world's prices: 1,000 input + 100 output tokens


@pytest.fixture(scope="module")
def week(tmp_path_factory):
    """Report inputs over the shipped scenarios on the 50,000-request support week."""
    results = build(shipped(), tmp_path_factory.mktemp("week") / "week.html")
    return load_report_inputs(results)


@pytest.fixture
def tiny(tmp_path):
    return load_report_inputs(build(tiny_world(tmp_path), tmp_path / "tiny.html"))


def _rows(spec: dict) -> dict[str, int]:
    return {name: len(values) for name, values in spec.get("datasets", {}).items()}


def _marks(spec: dict) -> list[dict]:
    found = []
    for part in spec.get("layer", []) + spec.get("vconcat", []):
        found += _marks(part)
    if "mark" in spec:
        found.append(spec)
    return found


def _mark_type(layer: dict) -> str:
    return layer["mark"] if isinstance(layer["mark"], str) else layer["mark"]["type"]


def test_break_even_is_one_minus_first_over_last_step_cost():
    assert analysis.break_even(0.001, 0.01) == pytest.approx(0.9)
    assert analysis.break_even(0.001, 0.0) is None
    assert analysis.break_even(0.001, None) is None
    assert analysis.break_even(0.02, 0.01) == pytest.approx(-1.0)


def test_cascade_costs_worked_by_hand():
    """4 requests: small at $0.001 each (one also checked for $0.0005); 2 escalate to big at $0.01 and $0.02.

    c1 = (4 x 0.001 + 0.0005) / 4 = 0.001125; cL = (0.01 + 0.02) / 2 = 0.015; e* = 1 - 0.001125/0.015 = 0.925.
    The retry call is left out. At e = 0.5: 0.001125 + 0.5 x 0.015 = 0.008625 < 0.015, so the cascade is cheaper.
    """
    ts = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)
    decisions = pl.DataFrame({"rid": [0, 1, 2, 3], "plan": ["default"] * 4, "ts": [ts] * 4,
                              "steps_taken": [1, 2, 2, 1], "escalated": [False, True, True, False],
                              "multi_step": [True] * 4})
    calls = pl.DataFrame({
        "rid": [0, 1, 2, 3, 0, 1, 2, 3],
        "seq": [0, 0, 0, 0, 0, 1, 1, 1],
        "model": ["small"] * 4 + ["checker", "big", "big", "big"],
        "kind": ["step"] * 4 + ["checker", "step", "step", "retry"],
        "cost_nano_usd": [1_000_000] * 4 + [500_000, 10_000_000, 20_000_000, 500_000_000],
    })
    [cascade] = analysis.cascades(decisions, calls, [("default", ["small", "big"])])
    assert cascade["first_step_cost_usd"] == pytest.approx(0.001125)
    assert cascade["last_step_cost_usd"] == pytest.approx(0.015)
    assert cascade["reached_last"] == 2
    assert cascade["escalation_rate"] == 0.5
    assert cascade["break_even_rate"] == pytest.approx(0.925)
    assert cascade["cheaper_than_last"] is True
    assert cascade["over_time"] == [{"start": "2026-11-16T00:00:00Z", "requests": 4, "escalated": 2,
                                     "escalation_rate": 0.5}]


def test_replayed_cascade_break_even(tiny):
    """The tiny cascade: small ($0.0012) on a, b, c; b escalates to big ($0.012): e* = 1 - 0.0012/0.012."""
    [cascade] = tiny.tables[0]["cascades"]
    assert cascade["steps"] == ["small", "big"]
    assert cascade["first_step_cost_usd"] == pytest.approx(SMALL)
    assert cascade["last_step_cost_usd"] == pytest.approx(BIG)
    assert cascade["break_even_rate"] == pytest.approx(0.9)
    assert cascade["escalation_rate"] == pytest.approx(1 / 3)
    assert tiny.tables[1]["cascades"] == []


def test_baselines_and_oracle_worked_by_hand(world):
    """a: small passed but its hard check failed, big passed -> big. b: only big passed -> big.
    c: nobody passed -> a failure at small's cost. Oracle: 0.012 + 0.012 + 0.0012 = 0.0252, pass 2/3."""
    outcomes = pl.read_parquet(world.data / "outcomes.parquet").with_columns(
        pl.when((pl.col("request_id") == "a") & (pl.col("model") == "small")).then(False)
        .otherwise(pl.col("hard_check_ok")).alias("hard_check_ok"),
        pl.when(pl.col("request_id") == "c").then(False).otherwise(pl.col("passed")).alias("passed"))
    world.write_data(pl.read_parquet(world.data / "traffic.parquet"), outcomes)
    scenario = load_scenario(world.scenario(admission={"rule": "point"}))
    found = analysis.baselines(scenario, load_data(world.data), load_prices(world.prices))

    models = {row["model"]: row for row in found["models"]}
    assert models["small"]["total_cost_usd"] == pytest.approx(3 * SMALL)
    assert models["small"]["pass_rate"] == 0.0
    assert models["big"]["total_cost_usd"] == pytest.approx(3 * BIG)
    assert models["big"]["pass_rate"] == pytest.approx(2 / 3)
    assert models["big"]["bar_failures"] == ["overall", "contract"]
    oracle = found["oracle"]
    assert oracle["total_cost_usd"] == pytest.approx(2 * BIG + SMALL)
    assert oracle["cost_per_1k_usd"] == pytest.approx((2 * BIG + SMALL) / 3 * 1000)
    assert oracle["pass_rate"] == pytest.approx(2 / 3)
    assert oracle["failures"] == 1
    assert oracle["model_share"] == pytest.approx({"big": 2 / 3, "small": 1 / 3})
    assert found["requests"] == 3 and found["unpriced"] == {}


def test_flagship_baseline_matches_flagship_everywhere(week):
    flagship = next(m for m in week.baselines["models"] if m["model"] == "flagship")
    replayed = next(s for s in week.summaries if s["scenario"] == "flagship-everywhere")
    assert flagship["total_cost_usd"] == pytest.approx(replayed["total_cost_usd"])
    assert flagship["pass_rate"] == pytest.approx(replayed["pass_rate"])
    assert week.baselines["oracle"]["pass_rate"] >= flagship["pass_rate"]


def test_headline_against_most_expensive_baseline_without_flagship_everywhere(tiny):
    """Cascade $0.0156 for 3 requests against big at $0.012 a request: saves 0.0204, 56.7%."""
    top = tiny.headline
    assert top["policy"] == "cascade"
    assert top["reference"]["name"] == "big" and top["reference"]["kind"] == "baseline"
    assert top["saving_usd"] == pytest.approx(3 * BIG - (3 * SMALL + BIG))
    assert top["saving_share"] == pytest.approx(1 - (3 * SMALL + BIG) / (3 * BIG))


def test_headline_when_nothing_meets_the_bar(tiny):
    failing = [s | {"verdict": s["verdict"] | {"state": "fails"}} for s in tiny.summaries]
    top = analysis.headline(failing, tiny.baselines)
    assert top["policy"] is None and top["closest"] and top["closest"][0]["state"] == "fails"


def test_cost_quality_chart_draws_policies_baselines_oracle_and_the_bar(week):
    spec = charts.cost_quality(week).to_dict()
    marks = _marks(spec)
    rule = next(layer for layer in marks if _mark_type(layer) == "rule")
    assert rule["encoding"]["y"]["field"] == "bar"
    bars = spec["datasets"][rule["data"]["name"]]
    assert [row["bar"] for row in bars] == [0.9]
    dots = next(layer for layer in marks if _mark_type(layer) == "point" and layer["mark"].get("filled"))
    assert dots["encoding"]["x"]["field"] == "cost_per_1k_usd" and dots["encoding"]["y"]["field"] == "pass_rate"
    assert dots["encoding"]["x"]["scale"]["type"] == "log"
    names = {row["name"] for values in spec["datasets"].values() for row in values if "name" in row}
    assert names == {*(s["scenario"] for s in week.summaries), "small only", "medium only", "large only",
                     "flagship only", "oracle"}


def test_charts_plot_small_aggregated_tables(week):
    for name, chart in charts.all_charts(week).items():
        rows = _rows(chart.to_dict())
        assert rows, name
        assert max(rows.values()) <= 1_000, (name, rows)  # a few hundred rows per chart, never per request
    escalation = charts.escalation(week).to_dict()
    assert len(escalation["vconcat"]) == 7
    hourly = [n for n in _rows(escalation).values() if n == 168]
    assert len(hourly) == 6  # cascade, stacked and 4 lanes: a week by the hour; the 30-request drill goes by day


def test_latency_and_escalation_chart_encodings(week):
    latency = charts.latency(week).to_dict()
    types = [_mark_type(layer) for layer in _marks(latency)]
    assert types == ["rule", "bar", "tick"]
    whisker = _marks(latency)[0]["encoding"]
    assert whisker["x"]["field"] == "p5_ms" and whisker["x2"]["field"] == "p99_ms"
    assert whisker["yOffset"]["field"] == "group"
    first_panel = _marks(charts.escalation(week).to_dict()["vconcat"][0])
    # The cascade's panel: the series, its break-even rule and label, and the drift alarm's rule and label
    # (the week's mix shift raises its escalation rate from 2026-11-21).
    assert [_mark_type(layer) for layer in first_panel] == ["line", "rule", "text", "rule", "text"]
    assert first_panel[3]["encoding"]["x"]["field"] == "start"
    assert first_panel[0]["encoding"]["x"]["type"] == "temporal"
    assert first_panel[1]["encoding"]["y"]["field"] == "rate"


def test_report_from_saved_results_is_byte_identical_without_the_data(cli, tmp_path):
    paths = tiny_world(tmp_path)
    first, again = tmp_path / "reports" / "tiny.html", tmp_path / "again.html"
    result = cli("report", *paths, "-o", first)
    assert result.code == 0, result.err
    results = tmp_path / "reports" / "tiny-results"
    assert str(first) in result.out and (results / BASELINES_FILE).is_file()
    assert (results / "cascade" / TABLES_FILE).is_file()
    (tmp_path / "data").rename(tmp_path / "gone")
    result = cli("report", "--from", results, "-o", again)
    assert result.code == 0, result.err
    assert again.read_bytes() == first.read_bytes()
    assert not list(first.parent.glob(".*.tmp"))


def test_a_report_written_again_with_fewer_scenarios_leaves_only_theirs(cli, tmp_path):
    paths = tiny_world(tmp_path)
    results, mine = tmp_path / "saved", tmp_path / "saved" / "notes"
    assert cli("report", *paths, "-o", tmp_path / "all.html", "--save", results).code == 0
    mine.mkdir()
    (mine / "summary.json").write_text("{}")  # not written by routesim: left alone
    assert cli("report", paths[0], "-o", tmp_path / "one.html", "--save", results).code == 0
    kept = sorted(path.parent.name for path in results.glob("*/summary.json"))
    assert kept == sorted([json.loads((results / "report.json").read_text())["scenarios"][0], "notes"])


def test_report_from_replay_save_results_computes_tables_from_parquet(cli, tmp_path):
    paths = tiny_world(tmp_path)
    assert cli("replay", *paths, "--save", tmp_path / "saved").code == 0
    result = cli("report", "--from", tmp_path / "saved", "-o", tmp_path / "saved.html")
    assert result.code == 0, result.err
    page = (tmp_path / "saved.html").read_text()
    assert "No baselines were saved" in page and "break-even" in page


def test_report_from_shows_saved_results_in_the_order_they_were_saved(cli, tmp_path):
    """Not by name: the order each command named its scenarios, a later replay --save's after the earlier
    ones, and a scenario saved again moves to where it was saved last."""
    cascade, big = tiny_world(tmp_path)
    other = World(tmp_path).scenario("another", admission={"rule": "point"}, policy={"default": {"use": "small"}})
    saved = tmp_path / "saved"

    def order() -> list[str]:
        return [summary["scenario"] for summary in load_report_inputs(saved).summaries]

    assert cli("replay", big, cascade, "--save", saved).code == 0
    assert order() == ["big-everywhere", "cascade"]
    assert cli("replay", other, "--save", saved).code == 0
    assert order() == ["big-everywhere", "cascade", "another"]
    assert cli("replay", big, "--save", saved).code == 0
    assert order() == ["cascade", "another", "big-everywhere"]
    assert cli("report", "--from", saved, "-o", tmp_path / "r.html").code == 0
    (saved / "order.json").unlink()  # results an older routesim saved: by name
    assert order() == ["another", "big-everywhere", "cascade"]
    assert cli("report", cascade, big, "-o", tmp_path / "first.html", "--save", saved).code == 0
    assert cli("replay", other, "--save", saved).code == 0  # after the report's, in the report's order
    assert order() == ["cascade", "big-everywhere", "another"]


def test_replay_save_into_a_reports_folder_leaves_no_report_file_to_mix_with_its_results(cli, tmp_path):
    # A report's baselines and manifest describe its own run: after replay --save writes there, a re-render
    # shows the new results alone (no baselines), not beside the report's.
    paths = tiny_world(tmp_path)
    assert cli("report", *paths, "-o", tmp_path / "first.html").code == 0
    results = tmp_path / "first-results"
    assert (results / BASELINES_FILE).is_file()
    assert cli("replay", paths[0], "--save", results).code == 0
    assert not (results / BASELINES_FILE).exists() and not (results / "report.json").exists()
    result = cli("report", "--from", results, "-o", tmp_path / "again.html")
    assert result.code == 0, result.err
    assert "No baselines were saved" in (tmp_path / "again.html").read_text()


def test_a_reports_results_missing_their_tables_are_refused_not_rendered_without_them(cli, tmp_path):
    paths = tiny_world(tmp_path)
    assert cli("report", *paths, "-o", tmp_path / "first.html").code == 0
    results = tmp_path / "first-results"
    (results / "cascade" / TABLES_FILE).unlink()
    refused = cli("report", "--from", results, "-o", tmp_path / "again.html")
    assert refused.code == 2 and "lack the tables the report saved with them" in refused.err
    assert not (tmp_path / "again.html").exists()


def test_report_needs_scenarios_or_from(cli, tmp_path):
    result = cli("report", "-o", tmp_path / "x.html")
    assert result.code == 2 and "--from" in result.err


def test_a_re_render_names_the_options_it_cannot_take(cli, tmp_path):
    paths = tiny_world(tmp_path)
    assert cli("report", *paths, "-o", tmp_path / "first.html").code == 0
    refused = cli("report", "--from", tmp_path / "first-results", "-o", tmp_path / "x.html", "--rule", "point",
                  "--tolerance", "0")
    assert refused.code == 2 and "--tolerance, --rule go with scenario files" in refused.err
    assert "routesim report SCENARIO... --tolerance --rule ... -o FILE" in refused.err
    assert "--baseline A.yaml" not in refused.err and not (tmp_path / "x.html").exists()


def test_names_from_the_data_are_escaped_everywhere(tmp_path):
    build(hostile_world(tmp_path), tmp_path / "hostile.html")
    page = (tmp_path / "hostile.html").read_text()
    assert HOSTILE not in page and "<img src=x" not in page
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    specs = [block.split(">", 1)[1] for block in page.split('<script type="application/json"')[1:]]
    texts = [spec.split("</script>", 1)[0] for spec in specs]
    assert any("\\u003c/script\\u003e\\u003cimg src=x onerror=alert(1)\\u003e" in text for text in texts)
    assert any(HOSTILE in json.dumps(json.loads(text)) for text in texts)


def test_invisible_characters_in_names_are_shown_escaped_in_every_table(tmp_path):
    """A slice named 'con<newline>tract' reads as 'con tract' in HTML, like another slice: every cell writes
    it as the terminal does, con\\u000atract; the charts' JSON keeps the name exact."""
    world = World(tmp_path)
    world.write_data(tiny_traffic().with_columns(pl.Series("slice", ["con\ntract", "faq", "con\u200btract"])),
                     tiny_outcomes())
    world.prices.write_text(yaml.safe_dump(TINY_PRICES))
    build([world.scenario("cascade", admission={"rule": "point"})], tmp_path / "names.html")
    page = (tmp_path / "names.html").read_text()
    outside_scripts = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "con\\u000atract" in outside_scripts and "con\\u200btract" in outside_scripts
    assert "con\ntract" not in outside_scripts and "con\u200btract" not in outside_scripts
    assert outside_scripts.count("con\\u000atract") >= 2  # the slices table and the cost-quality table at least


def test_baseline_adds_a_gate_section_that_survives_rerendering(cli, tmp_path):
    scenarios = tiny_world(tmp_path)  # cascade, big-everywhere
    out = tmp_path / "gated.html"
    result = cli("report", scenarios[0], "--baseline", scenarios[1], "-o", out)
    assert result.code == 0, result.err
    gates = json.loads((tmp_path / "gated-results" / "gates.json").read_text())
    assert gates["baseline"] == "big-everywhere" and gates["skipped"] == []
    [gate] = gates["gates"]
    assert gate["candidate"]["name"] == "cascade" and gate["requests"] == 3
    html = out.read_text()
    assert 'id="gate"' in html and "Regression gate against big-everywhere" in html
    assert ("Regression gate passed" if gate["passed"] else "Regression gate FAILED") in html
    # The folded gate's <summary> is its headline; the detail beneath does not say it a second time.
    headline = re.search(r"<summary>(Regression gate [^<]*)</summary>", html).group(1)
    assert html.count(headline) == 1

    again = tmp_path / "again.html"
    assert cli("report", "--from", tmp_path / "gated-results", "-o", again).code == 0
    assert again.read_bytes() == out.read_bytes()


def test_no_gate_section_without_a_baseline(cli, tmp_path):
    out = tmp_path / "plain.html"
    assert cli("report", *tiny_world(tmp_path), "-o", out).code == 0
    assert 'id="gate"' not in out.read_text()
    assert not (tmp_path / "plain-results" / "gates.json").exists()


def test_break_even_compares_with_every_request_sent_straight_to_the_last_model(tmp_path):
    """The cascade escalates only b, whose flagship answer is long. Sending all of a, b, c straight to big
    costs (0.012 + 0.020 + 0.012) / 3 per request, not b's 0.020: with c1 = 0.0012 (small, 1,000 in + 100
    out at $1/$2 per M), e* = 1 - 0.0012 / 0.014667 = 0.9182, not 1 - 0.0012 / 0.020 = 0.94."""
    from tests.conftest import World

    world = World(tmp_path)
    outcomes = tiny_outcomes().with_columns(
        pl.when((pl.col("model") == "big") & (pl.col("request_id") == "b")).then(500)
        .otherwise(pl.col("output_tokens")).alias("output_tokens"))
    world.write_data(tiny_traffic(), outcomes)
    world.prices.write_text(yaml.safe_dump(TINY_PRICES))
    tables = load_report_inputs(build([world.scenario("cascade")], tmp_path / "r.html")).tables[0]
    [cascade] = tables["cascades"]
    assert cascade["last_step_cost_usd"] == pytest.approx((0.012 + 0.020 + 0.012) / 3)
    assert cascade["break_even_rate"] == pytest.approx(1 - 0.0012 / ((0.012 + 0.020 + 0.012) / 3))
    assert cascade["last_step_cost_basis"].startswith("every request")


def test_cost_by_slice_writes_each_policy_s_column_to_one_precision(tmp_path):
    # The cascade pays small ($0.0012) on a, b and c and big ($0.012) on b: faq (a, b) $0.0144, contract (c)
    # $0.0012; per 1,000 of its 3 requests $4.80 and $0.40. Written alone they read $4.80 beside $0.4000 and
    # $0.0144 beside $0.00120; a column takes the decimals its smallest amount needs.
    build(tiny_world(tmp_path), tmp_path / "tiny.html")
    page = (tmp_path / "tiny.html").read_text()
    table = page.split('id="cost-slice-table"', 1)[1].split("</table>", 1)[0]

    def cell(name: str) -> tuple[str, str]:
        found = re.search(rf'data-scenario="cascade" data-metric="cost:{name}">([^<]*)<small>[^<]* · ([^<]*)/1k',
                          table)
        return found.group(1), found.group(2)

    assert (cell("faq"), cell("contract")) == (("$0.01440", "$4.8000"), ("$0.00120", "$0.4000"))
