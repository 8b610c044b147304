"""The one admission rule: three states on the Wilson interval, the recommendation, and who may be ★."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import polars as pl
import pytest

from simulator.core.errors import RoutesimError
from simulator.core.stats import wilson_interval
from simulator.core.verdict import Admission, judge, recommend, resolve_admission
from tests.conftest import OUTCOME_SCHEMA, outcome_row, tiny_traffic

POINT = Admission(rule="point")


def test_a_pass_rate_whose_interval_straddles_the_bar_is_undecided():
    # rules-only on the embedded week: 45,092 of 50,000 (90.18%), 95% interval 89.92-90.44%, bar 90%.
    found = judge(45_092, 50_000, 0.90)
    assert found["state"] == "undecided"
    assert (round(found["low"], 4), round(found["high"], 4)) == (0.8992, 0.9044)
    assert judge(45_092, 50_000, 0.90, POINT)["state"] == "meets"  # the point rule admits it


def test_meets_when_the_lower_bound_reaches_the_bar_and_fails_when_the_upper_bound_is_below():
    # 40 of 40: lower bound 0.912, so a 0.90 bar is met and a 0.95 bar is not settled.
    assert judge(40, 40, 0.90)["state"] == "meets"
    assert judge(40, 40, 0.95)["state"] == "undecided"
    # 8 of 10: interval 0.490-0.943, entirely below 0.95.
    assert judge(8, 10, 0.95)["state"] == "fails"
    assert judge(8, 10, 0.80, POINT)["state"] == "meets" and judge(7, 10, 0.80, POINT)["state"] == "fails"


def test_an_undecided_verdict_says_how_many_more_requests_would_settle_it():
    found = judge(45_092, 50_000, 0.90)
    more = found["to_settle"]
    rate = 45_092 / 50_000
    n = 50_000 + more
    assert wilson_interval(rate * n, n)[0] >= 0.90 > wilson_interval(rate * (n - 1), n - 1)[0]
    assert judge(40, 40, 0.90)["to_settle"] is None
    assert judge(9, 10, 0.90)["to_settle"] is None  # the rate is the bar: no number of requests settles it


def test_the_requests_to_settle_a_verdict_are_counted_in_words_that_agree():
    from simulator.core.verdict import UNDECIDED, describe_shortfalls

    def shortfall(more):
        return [{"slice": None, "state": UNDECIDED, "low": 0.85, "high": 0.95, "bar": 0.9, "to_settle": more}]

    assert "about 1 more request at this rate" in describe_shortfalls(shortfall(1))
    assert "about 1,200 more requests at this rate" in describe_shortfalls(shortfall(1200))


def test_one_admission_per_run():
    stated = [("a", Admission(rule="point")), ("b", None)]
    assert resolve_admission(stated) == Admission(rule="point")
    assert resolve_admission(stated, rule="lower_bound", confidence=0.9) == Admission(confidence=0.9)
    assert resolve_admission([("a", None)]) == Admission(rule="lower_bound", confidence=0.95)
    with pytest.raises(RoutesimError, match="state different admission settings"):
        resolve_admission([("a", Admission(rule="point")), ("b", Admission())])
    assert resolve_admission([("a", Admission(rule="point")), ("b", Admission())], rule="point").rule == "point"


def _summary(name: str, state: str, cost: float, *, deployable=True, requests=100, fingerprint="x") -> dict:
    scope = {"state": state, "pass_rate": 0.9, "low": 0.85, "high": 0.95, "bar": 0.9, "to_settle": None}
    return {"scenario": name, "verdict": {"state": state, "overall": {"slice": None, **scope}, "slices": []},
            "deployable": deployable, "grade_columns_read": [] if deployable else ["passed"],
            "cost_per_request_usd": cost, "requests": requests, "requests_fingerprint": fingerprint,
            "provenance": {"data_fingerprint": "d"}}


def test_only_a_deployable_policy_that_meets_every_bar_on_the_common_requests_is_recommended():
    summaries = [_summary("flagship", "meets", 10.0), _summary("undecided", "undecided", 1.0),
                 _summary("oracle", "meets", 0.5, deployable=False),
                 _summary("sampled", "meets", 0.1, requests=30, fingerprint="y"), _summary("lanes", "meets", 8.0)]
    found = recommend(summaries)
    assert found["policy"] == "lanes"
    reasons = {c["scenario"]: c["reasons"] for c in found["candidates"]}
    assert reasons["oracle"] == ["a bound, not a policy: it reads the grade column(s) passed"]
    assert reasons["sampled"] == ["replayed on other requests (30 against 100), so not ranked with the others"]
    assert reasons["flagship"] == ["costs more per request than lanes"]
    assert reasons["undecided"][0].startswith("undecided: overall")


def test_of_equal_costs_the_first_by_name_is_recommended_and_the_other_is_not_said_to_cost_more():
    found = recommend([_summary("twin", "meets", 2.0), _summary("copy", "meets", 2.0), _summary("dear", "meets", 3.0)])
    assert found["policy"] == "copy"
    reasons = {c["scenario"]: c["reasons"] for c in found["candidates"]}
    assert reasons["twin"] == ["costs the same per request as copy; of equal costs the first by name is recommended"]
    assert reasons["dear"] == ["costs more per request than copy"]


def test_with_a_baseline_the_recommendation_also_passes_the_gate():
    summaries = [_summary("flagship", "meets", 10.0), _summary("cheap", "meets", 1.0), _summary("mid", "meets", 5.0)]
    gates = {"cheap": {"passed": False, "failures": [{"slice": "faq"}, {"slice": None}]}, "mid": {"passed": True}}
    found = recommend(summaries, baseline="flagship", gates=gates)
    assert found["policy"] == "mid"
    cheap = next(c for c in found["candidates"] if c["scenario"] == "cheap")
    assert cheap["reasons"] == ["fails the regression gate against flagship in overall, faq"]
    assert recommend([_summary("a", "fails", 1.0)])["policy"] is None
    assert recommend([_summary("a", "fails", 1.0)])["closest"] == ["a"]


@pytest.fixture
def coverage_world(world):
    """The tiny world plus a `cheap` model that answered only requests a and b (and passed both)."""
    outcomes = pl.read_parquet(world.data / "outcomes.parquet")
    cheap = pl.DataFrame([outcome_row(r, "cheap", confidence=0.9, cost_usd=0.0001) for r in "ab"], schema=OUTCOME_SCHEMA)
    world.write_data(tiny_traffic(), pl.concat([outcomes, cheap]))
    return world


def _replayed(cli, *paths, rule="point") -> list[dict]:
    result = cli("replay", *paths, "--json", "--rule", rule)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_a_world_whose_best_policy_straddles_its_bar_recommends_nothing(cli, world):
    # big passes all three requests: 100%, but the 95% interval of 3 of 3 starts at 0.438, below a 0.5 bar.
    path = world.scenario("big-everywhere", quality_bar=0.5, policy={"default": {"use": "big"}})
    summaries = _replayed(cli, path, rule="lower_bound")
    assert summaries[0]["verdict"]["state"] == "undecided"
    assert summaries[0]["verdict"]["overall"]["to_settle"] > 0
    assert recommend(summaries)["policy"] is None
    table = cli("replay", path)
    assert "No policy qualifies" in table.out and "undecided: overall" in table.out


def test_an_oracle_gate_is_a_bound_and_never_starred(cli, world):
    oracle = world.scenario("oracle", policy={"default": {"cascade": [{"model": "small", "accept": "passed"},
                                                                      {"model": "big"}]}})
    big = world.scenario("big-everywhere", policy={"default": {"use": "big"}})
    summaries = _replayed(cli, oracle, big)
    by_name = {s["scenario"]: s for s in summaries}
    assert by_name["oracle"]["verdict"]["state"] == "meets"
    assert by_name["oracle"]["cost_per_request_usd"] < by_name["big-everywhere"]["cost_per_request_usd"]
    assert (by_name["oracle"]["deployable"], by_name["oracle"]["grade_columns_read"]) == (False, ["passed"])
    assert recommend(summaries)["policy"] == "big-everywhere"
    table = cli("replay", oracle, big, "--rule", "point")
    assert "big-everywhere ★" in table.out and "bound" in table.out


def test_a_serving_time_signal_declared_by_the_data_folder_is_deployable(cli, world):
    outcomes = pl.read_parquet(world.data / "outcomes.parquet").with_columns(pl.col("passed").alias("judge_ok"))
    world.write_data(tiny_traffic(), outcomes)
    gated = world.scenario("judged", policy={"default": {"cascade": [{"model": "small", "accept": "judge_ok"},
                                                                     {"model": "big"}]}})
    assert _replayed(cli, gated)[0]["grade_columns_read"] == ["judge_ok"]  # undeclared: a grade
    (world.data / "columns.json").write_text(json.dumps({"serving_time": ["judge_ok"]}))
    assert _replayed(cli, gated)[0]["deployable"] is True


def test_a_policy_replayed_on_half_the_requests_is_not_ranked_with_the_rest(cli, coverage_world):
    world = coverage_world
    cheap = world.scenario("cheap-everywhere", on_missing="skip", policy={"default": {"use": "cheap"}})
    big = world.scenario("big-everywhere", policy={"default": {"use": "big"}})
    summaries = _replayed(cli, cheap, big)
    assert [s["requests"] for s in summaries] == [2, 3]
    found = recommend(summaries)
    assert found["policy"] == "big-everywhere"
    reasons = next(c["reasons"] for c in found["candidates"] if c["scenario"] == "cheap-everywhere")
    assert reasons == ["replayed on other requests (2 against 3), so not ranked with the others"]


def test_policies_on_different_request_sets_of_the_largest_size_are_ranked_in_neither_order():
    # A tester replayed a $0.0133 policy and a $0.00156 one on different 3-request samples: listed first, the
    # dearer was ★ "the cheapest" and the cheaper "replayed on other requests (3 against 3)".
    dear, cheap = _summary("dear", "meets", 10.0, fingerprint="x"), _summary("cheap", "meets", 1.0, fingerprint="y")
    small = _summary("small", "meets", 0.1, requests=30, fingerprint="z")
    found = [recommend(order) for order in ([dear, cheap, small], [small, cheap, dear])]
    assert [f["policy"] for f in found] == [None, None]
    assert found[0]["tied"] == found[1]["tied"] == {"requests": 100, "sets": [["cheap"], ["dear"]]}
    assert found[0]["closest"] == found[1]["closest"] == []
    reasons = [{c["scenario"]: c["reasons"] for c in f["candidates"]} for f in found]
    assert reasons[0] == reasons[1]
    assert reasons[0]["dear"] == ["replayed on one of 2 different request sets tied for the largest (100 requests), "
                                  "so not ranked"]
    assert reasons[0]["small"] == ["replayed on other requests (30 against 100), so not ranked with the others"]
    # Two policies on one request set are still ranked: a tie needs two different sets of the largest size.
    assert recommend([dear, _summary("twin", "meets", 5.0, fingerprint="x")])["policy"] == "twin"
    # A named baseline's requests are the ones ranked on, whatever the other sets' sizes.
    assert recommend([dear, cheap], baseline="cheap", gates={"dear": {"passed": True}})["policy"] == "cheap"


@pytest.fixture
def split_world(world):
    """The tiny world plus `cheap` ($0.0001, answered a and b) and `dear` ($0.01, answered b and c), both
    passing: each replayed with on_missing skip holds 2 requests, and the two sets differ."""
    outcomes = pl.read_parquet(world.data / "outcomes.parquet")
    added = pl.DataFrame([outcome_row(r, "cheap", cost_usd=0.0001) for r in "ab"]
                         + [outcome_row(r, "dear", cost_usd=0.01) for r in "bc"], schema=OUTCOME_SCHEMA)
    world.write_data(tiny_traffic(), pl.concat([outcomes, added]))
    return world


def test_a_tie_of_request_sets_gives_the_same_words_in_either_order_in_every_output(cli, split_world, tmp_path):
    world = split_world
    paths = [world.scenario(name, on_missing="skip", quality_bar=0.0, policy={"default": {"use": name}})
             for name in ("dear", "cheap")]
    orders = [paths, paths[::-1]]
    flags = [{s["scenario"]: s["recommended"] for s in _replayed(cli, *order)} for order in orders]
    assert flags[0] == flags[1] == {"dear": False, "cheap": False}
    words = []
    for order in orders:
        lines = [line for line in cli("replay", *order, "--rule", "point").out.splitlines()
                 if line.startswith(("No policy", "★", "  dear:", "  cheap:"))]
        words.append((lines[0], sorted(lines[1:])))
    assert words[0] == words[1]
    assert words[0][0].startswith("No policy is recommended: the largest request sets tie (2 requests each, "
                                  "different requests: cheap; dear)")
    leads = []
    for index, order in enumerate(orders):
        out = tmp_path / f"order{index}.html"
        assert cli("report", *order, "-o", out, "--rule", "point").code == 0
        leads.append(re.search(r'<p class="lead" data-field="none">(.*?)</p>', out.read_text()).group(1))
    assert leads[0] == leads[1] and "the largest request sets tie" in leads[0] and "★" not in leads[0]


def test_under_the_point_rule_the_recommendation_says_its_interval_straddles_the_bar(cli, world, tmp_path):
    # small passes 2 of 3 (66.7%; 95% interval 20.8-93.9%), faq 1 of 2 and contract 1 of 1 (lower bound 0.21): at
    # a bar of 0.5 each meets on its observed rate only.
    small = world.scenario("small", quality_bar=0.5, policy={"default": {"use": "small"}})
    found = recommend(_replayed(cli, small))
    assert found["policy"] == "small" and [s["slice"] for s in found["straddling"]] == [None, "contract", "faq"]
    assert found["uncertainty"].startswith("a point estimate only: its 95% interval straddles the bar, so the "
                                           "lower_bound rule would leave it undecided: overall, contract, faq "
                                           "(overall: ")
    star = next(line for line in cli("replay", small, "--rule", "point").out.splitlines() if line.startswith("★"))
    assert star.endswith("(the observed pass rate at or above it); " + found["uncertainty"])
    assert cli("report", small, "-o", tmp_path / "small.html", "--rule", "point").code == 0
    page = (tmp_path / "small.html").read_text()
    assert f'data-field="uncertainty">Its verdict rests on {found["uncertainty"]}.</p>' in page.replace("&#39;", "'")
    # Under lower_bound a verdict that meets already says its interval clears the bar: no caveat.
    assert recommend(_replayed(cli, small, rule="lower_bound"))["uncertainty"] is None
    # At a bar the whole interval clears, the point rule's recommendation says so.
    low = world.scenario("low", quality_bar=0.1, policy={"default": {"use": "big"}})
    clear = recommend(_replayed(cli, low))["uncertainty"]
    assert clear == "a point estimate, and its 95% interval clears every bar too"


def test_a_recommended_baseline_is_kept_not_said_to_pass_a_gate_against_itself_or_to_save_nothing(cli, world,
                                                                                                 tmp_path):
    # small fails the 0.9 bar (2 of 3); big passes all 3 and is the baseline: the baseline is kept.
    big = world.scenario("big-everywhere", quality_bar=0.9, policy={"default": {"use": "big"}})
    small = world.scenario("small-everywhere", quality_bar=0.9, policy={"default": {"use": "small"}})
    shown = cli("replay", small, "--baseline", big, "--rule", "point").out
    star = next(line for line in shown.splitlines() if line.startswith("★"))
    assert star.startswith("★ big-everywhere (the baseline, kept): its pass rate meets every bar")
    assert "passes the regression gate against big-everywhere" not in star
    out = tmp_path / "kept.html"
    assert cli("report", small, big, "--baseline", big, "-o", out, "--rule", "point").code == 0
    page = out.read_text()
    assert "★ Keep <strong>big-everywhere</strong>, the baseline" in page and "★ Ship" not in page
    assert 'data-field="saving_usd"' not in page and "Saving vs" not in page
    assert "it is not gated against itself" in page


def test_cli_flags_override_the_scenarios_and_disagreeing_scenarios_are_an_error(cli, world):
    strict = world.scenario("strict", admission={"rule": "lower_bound"},
                            policy={"default": {"use": "big"}})
    loose = world.scenario("loose", admission={"rule": "point"}, policy={"default": {"use": "big"}})
    result = cli("replay", strict, loose)
    assert result.code == 2 and "state different admission settings" in result.err
    summaries = _replayed(cli, strict, loose, rule="point")
    assert {s["admission"]["rule"] for s in summaries} == {"point"}


def test_an_unstated_quality_bar_says_which_default_applied(cli, world):
    path = world.scenario("big-everywhere", policy={"default": {"use": "big"}})
    assert _replayed(cli, path)[0]["quality_bar_stated"] is False
    assert "no quality_bar stated, the default of 90.0% applied" in cli("replay", path).out


def test_every_output_judging_an_unstated_bar_says_the_default_applied(cli, world, tmp_path):
    """gate (terminal, JSON, Markdown), whatif and lanes judge against the default bar too, and say so (README,
    'Scenario reference': "every output says so"); a scenario stating its bar gets no such note."""
    note = "no quality_bar stated, the default of 90.0% applied"
    unstated = world.scenario("big-everywhere", policy={"default": {"use": "big"}})
    stated = world.scenario("small-everywhere", quality_bar=0.9, policy={"default": {"use": "small"}})
    gate = ("gate", "--baseline", stated, "--candidate", unstated)
    assert f"big-everywhere: {note}" in cli(*gate).out
    assert f"big-everywhere: {note}" in json.loads(cli(*gate, "--json").out)["notes"]
    assert "no quality\\_bar stated" in cli(*gate, "--markdown", "-").out
    assert note not in cli("gate", "--baseline", unstated, "--candidate", stated).out
    whatif = cli("whatif", unstated, stated, "--scale", "big=0.5", "--json")
    assert json.loads(whatif.out)["notes"] == [f"big-everywhere: {note}"]
    assert f"big-everywhere: {note}" in cli("whatif", unstated, "--scale", "big=0.5").out
    lanes = json.loads(cli("lanes", world.data, "--prices", world.prices, "--bars-from", unstated, "--json").out)
    assert lanes["bars"]["note"] == f"big-everywhere: {note}"
    assert "the default of 90.0% applied" in cli("lanes", world.data, "--prices", world.prices).out
    for given in (("--bar", "0.9"), ("--bars-from", stated)):
        assert "default" not in cli("lanes", world.data, "--prices", world.prices, *given).out
    assert cli("report", unstated, stated, "-o", tmp_path / "r.html").code == 0
    assert (tmp_path / "r.html").read_text().count("no quality_bar stated: the default of 90.0% applied") == 1


def test_break_even_measured_on_the_sweep_by_hand():
    """Cost per request 1.0, 2.0, 3.0 at escalation 0, 0.5, 1 against 2.5 straight to the last model: the
    sweep crosses it halfway between the last two points, at 0.75."""
    from simulator.analyses.tables import measured_break_even

    points = [{"requests": 10, "escalation_rate": e, "cost_per_request_usd": c}
              for e, c in ((0.5, 2.0), (0.0, 1.0), (1.0, 3.0))]
    assert measured_break_even(points, 2.5) == pytest.approx(0.75)
    assert measured_break_even(points, 2.0) == 0.5
    assert measured_break_even(points, 9.0) is None and measured_break_even(points, None) is None


def _recording(width: int):
    from rich.console import Console

    return Console(width=width, record=True, file=io.StringIO())


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_gate_table_keeps_every_number_whole_at_any_width(cli, width):
    # rich squeezes a table wider than the console with ellipses ("−3…"); the CLI's one printer measures
    # the table's natural width and falls back to one block per scope instead.
    from simulator.cli.console import print_table
    from simulator.cli.views import GATE_COLUMNS, gate_table

    root = Path(__file__).resolve().parent.parent
    result = cli("gate", "--baseline", root / "scenarios" / "flagship-everywhere.yaml", "--candidate",
                 root / "scenarios" / "lanes.yaml", "--resamples", "50", "--json")
    console = _recording(width)
    print_table(console, gate_table(json.loads(result.out)))
    text = console.export_text()
    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines())
    from simulator.report import gate as gate_text

    gate = json.loads(result.out)
    for row in [gate["overall"], *gate["slices"]]:
        for key, value in gate_text.cells(row).items():
            assert key not in GATE_COLUMNS or all(word in text for word in value.split()), (key, value)


@pytest.mark.parametrize("width", [60, 80])
@pytest.mark.parametrize("wide", [False, True])
def test_the_comparison_keeps_every_name_and_number_whole_on_a_narrow_terminal(cli, world, width, wide):
    from simulator.cli.views import print_comparison
    from simulator.core.formats import metric
    from simulator.core.metrics import METRICS

    names = ["the-small-model-first-then-the-big-one-when-unsure", "the-big-model-on-every-request-of-the-week"]
    paths = [world.scenario(names[0]),
             world.scenario(names[1], policy={"default": {"use": "big"}})]
    summaries = _replayed(cli, *paths, rule="lower_bound")
    console = _recording(width)
    print_comparison(console, summaries, wide=wide)
    text = console.export_text()
    assert "…" not in text
    for summary in summaries:
        assert summary["scenario"] in text
        for m in METRICS:
            if wide or m.name in ("cost_per_request_usd", "pass_rate", "latency_p95_ms"):
                assert metric(m.name, summary[m.name]) in text
    if width == 60:
        # Too narrow for the table: one block per policy, `name: value` lines.
        assert f"\n{names[1]}\n" in text and "  verdict: " in text


@pytest.mark.parametrize("width", [60, 100])
def test_the_verdict_lines_wrap_at_the_console_width(cli, world, width):
    # A tester found the lines under the comparison (recommendation, why each other policy is not, warnings)
    # running past the terminal's edge: they wrap at its width (COLUMNS), continued two columns further in.
    from simulator.cli.views import comparison_lines, print_comparison
    from simulator.core.verdict import recommend

    names = ["the-small-model-first-then-the-big-one-when-unsure", "the-big-model-on-every-request-of-the-week"]
    paths = [world.scenario(names[0]), world.scenario(names[1], policy={"default": {"use": "big"}})]
    summaries = _replayed(cli, *paths, rule="lower_bound")
    console = _recording(width)
    print_comparison(console, summaries)
    text = console.export_text()
    lines = comparison_lines(summaries, recommend(summaries))
    assert max(len(line) for line in lines) > width  # something to wrap
    printed = text[text.index(lines[0][:20]):].splitlines()
    assert all(len(line) <= width for line in printed)
    assert " ".join(printed).split() == " ".join(lines).split()  # every word, in order
    # The recommendation starts at column 0, so its continuation is indented by two; a reason line starts
    # at two, so its continuation is indented by four.
    first_parts = next(i for i, line in enumerate(printed[1:], start=1) if line.startswith(lines[1][:20]))
    assert all(line.startswith("  ") and not line.startswith("   ") for line in printed[1:first_parts])
    assert first_parts > 1 or len(lines[0]) <= width


def test_a_table_that_fits_prints_as_a_table_and_one_that_does_not_as_blocks():
    from rich.table import Table

    from simulator.cli.console import natural_width, print_table

    table = Table(title="t")
    table.add_column("model")
    table.add_column("cost", justify="right")
    table.add_row("flagship-with-a-long-name", "$123,456.789")
    wide = _recording(80)
    print_table(wide, table)
    assert "$123,456.789" in wide.export_text() and "cost: " not in wide.export_text()
    narrow = _recording(natural_width(_recording(200), table) - 1)
    print_table(narrow, table)
    assert narrow.export_text().splitlines()[1:] == ["flagship-with-a-long-name", "  cost: $123,456.789"]


def test_off_a_terminal_columns_sets_the_width(monkeypatch):
    from simulator.cli.console import WIDTH_OFF_TERMINAL, _LazyConsole

    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.setenv("COLUMNS", "80")
    assert _LazyConsole(stderr=False).rich.width == 80
    monkeypatch.delenv("COLUMNS")
    assert _LazyConsole(stderr=False).rich.width == WIDTH_OFF_TERMINAL


def test_replay_with_a_baseline_shows_the_gate_verdict_the_gate_command_gives(cli, world):
    cascade = world.scenario("cascade", admission={"rule": "point"})
    big = world.scenario("big-everywhere", admission={"rule": "point"}, policy={"default": {"use": "big"}})
    result = cli("replay", cascade, "--baseline", big, "--tolerance", "0.05", "--json")
    assert result.code == 0, result.err
    by_name = {s["scenario"]: s for s in json.loads(result.out)}
    assert list(by_name) == ["big-everywhere", "cascade"]  # the baseline is replayed too, first
    gate = json.loads(cli("gate", "--baseline", big, "--candidate", cascade, "--tolerance", "0.05", "--json").out)
    assert by_name["cascade"]["gate"]["state"] == ("passed" if gate["passed"] else "failed")
    assert by_name["cascade"]["gate"]["failures"] == gate["failures"]
    assert by_name["big-everywhere"]["gate"] == {"baseline": "big-everywhere", "tolerance": 0.05, "state": "baseline",
                                                 "failures": []}
    # the cascade meets its bar on the observed rate; it is recommended exactly when it passes the gate too
    assert by_name["cascade"]["verdict"]["state"] == "meets"
    assert by_name["cascade"]["recommended"] is gate["passed"]
    assert by_name["big-everywhere"]["recommended"] is not gate["passed"]
    assert cli("replay", cascade, "--tolerance", "0.05").code == 2



def test_a_confidence_level_keeps_the_digits_it_was_given():
    from simulator.core.formats import confidence_level

    assert confidence_level(0.95) == "95%"
    assert confidence_level(0.999) == "99.9%"  # not "100%", a level no interval has
    assert confidence_level(0.995) == "99.5%"
    assert confidence_level(0.9995) == "99.95%"
    assert confidence_level(0.57) == "57%"  # 0.57 x 100 is 56.99999999999999 in binary
    assert confidence_level(0.8) == "80%"
    assert confidence_level(0.0000001) == "0.00001%"  # never in scientific notation
    assert confidence_level(0.9) == "90%" and confidence_level(0.99999999) == "99.999999%"


def test_every_output_states_a_confidence_of_0_999_as_99_9_percent(cli, world, tmp_path):
    # Whole percents printed 0.999 as "100%": the replay's rule and interval column, the gate's settings and
    # interval lines, the lanes' title and column, and the report.
    cascade = world.scenario("cascade")
    big = world.scenario("big-everywhere", policy={"default": {"use": "big"}})
    outputs = [cli("replay", cascade, "--confidence", "0.999"),
               cli("gate", "--baseline", big, "--candidate", cascade, "--confidence", "0.999"),
               cli("lanes", world.data, "--prices", world.prices, "--bar", "0.5", "--confidence", "0.999")]
    report = cli("report", cascade, "-o", tmp_path / "report.html", "--confidence", "0.999")
    assert report.code == 0, report.err
    page = re.sub(r"<(style|script)\b.*?</\1>", "", (tmp_path / "report.html").read_text(), flags=re.S)
    for text in [result.out for result in outputs] + [page]:
        assert "99.9%" in text, text
        assert "100%" not in text


def test_one_confidence_per_run_in_the_gate_and_in_the_reports_gate(cli, world, tmp_path):
    # `gate --confidence` set only the bootstrap's intervals, `report --baseline --confidence` only the bar
    # check's: the same flag meant different things and one output showed two levels.
    cascade = world.scenario("cascade")
    big = world.scenario("big-everywhere", policy={"default": {"use": "big"}})
    gate = cli("gate", "--baseline", big, "--candidate", cascade, "--confidence", "0.999", "--json")
    result = json.loads(gate.out)
    assert result["confidence"] == 0.999
    failures = [failure["message"] for failure in result["failures"]]
    assert any("99.9% interval" in message for message in failures), failures
    assert not any("95% interval" in message for message in failures), failures
    stated = world.scenario("cascade-99", admission={"rule": "lower_bound", "confidence": 0.99})
    assert json.loads(cli("gate", "--baseline", big, "--candidate", stated, "--json").out)["confidence"] == 0.99
    report = cli("report", big, cascade, "--baseline", big, "-o", tmp_path / "r.html", "--confidence", "0.999")
    assert report.code == 0, report.err
    page = re.sub(r"<(style|script)\b.*?</\1>", "", (tmp_path / "r.html").read_text(), flags=re.S)
    assert "99.9% paired bootstrap intervals" in page and "95% paired bootstrap" not in page


def test_a_pass_rate_never_reads_as_the_bar_it_fails():
    from simulator.core.formats import pct_against

    assert pct_against(0.8996, 0.9) == "89.96%"  # one decimal would read 90.0%, as if it met the bar
    assert pct_against(0.90004, 0.9) == "90.004%" and pct_against(0.899999999, 0.9) == "<90.0%"
    assert pct_against(0.9, 0.9) == "90.0%" and pct_against(0.95, 0.9) == "95.0%" and pct_against(0.5, None) == "50.0%"


def test_the_replay_table_and_report_show_the_digits_that_tell_a_failing_rate_from_its_bar(cli, world, tmp_path):
    # small passes 2 of 3 (66.67%), against a bar of 66.7%: both read 66.7% with one decimal.
    small = world.scenario("small", policy={"default": {"use": "small"}}, quality_bar={"default": 0.667})
    shown = cli("replay", small, "--rule", "point")
    row = next(line for line in shown.out.splitlines() if line.strip().startswith("small"))
    assert shown.code == 0 and "66.67%" in row and "fails (2)" in row
    assert cli("report", small, "-o", tmp_path / "small.html", "--rule", "point").code == 0
    page = (tmp_path / "small.html").read_text()
    assert 'data-scenario="small" data-metric="pass_rate">66.67%</span>' in page  # the comparison table
    assert 'data-scenario="small" data-metric="pass_rate">66.67%</td>' in page  # the verdicts' table
