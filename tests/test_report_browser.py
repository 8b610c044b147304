"""The HTML report in a real browser (Debian's Chromium via playwright), opened from file:// offline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from simulator.core import formats
from simulator.report.build import TABLES_FILE
from tests.report_helpers import (
    DEMO_TOLERANCE,
    HOSTILE,
    HOSTILE_DESCRIPTION,
    build,
    hostile_world,
    shipped,
    summaries,
)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
CHARTS = ["over-time", "cost-quality", "cost-by-model", "cost-by-slice", "latency", "escalation", "frontier"]
WIDTHS = (1024, 1400)
COMPARED = ["requests", "total_cost_usd", "pass_rate", "mean_score", "latency_p50_ms", "latency_p95_ms",
            "latency_p99_ms", "escalation_rate", "retry_rate"]


@dataclass
class Visit:
    page: Page
    aborted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path]:
    """The demo's report: the shipped week's scenarios, gated against flagship-everywhere at one point."""
    out = tmp_path_factory.mktemp("demo") / "demo.html"
    return out, build(shipped(), out, baseline="flagship-everywhere", tolerance=DEMO_TOLERANCE)


def visit(browser: Browser, report: Path, width: int = 1280) -> Visit:
    """Opens `report` with every non-file request aborted and recorded, and waits for the charts."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    seen = Visit(page)

    def route(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            seen.aborted.append(route.request.url)
            route.abort()

    def console(message):
        if message.type == "error":
            seen.errors.append(message.text)
        elif message.type == "warning":
            seen.warnings.append(message.text)

    def dialog(opened):
        seen.dialogs.append(opened.message)
        opened.dismiss()

    page.route("**/*", route)
    page.on("console", console)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on("dialog", dialog)
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-charts]", timeout=30_000)
    return seen


def marks_per_chart(page: Page) -> dict[str, int]:
    """Data marks (not axes, legends or titles) drawn in each chart's SVG."""
    return page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('div.vega')).map(
        element => [element.id.replace('chart-', ''),
                    element.querySelector('svg') ? element.querySelectorAll(
                        'svg g.role-mark > path, svg g.role-mark > line, svg g.role-mark > text').length : 0]))""")


def cell(page: Page, scenario: str, metric: str) -> str:
    return page.locator(f'#comparison-table [data-scenario="{scenario}"][data-metric="{metric}"]').inner_text()


def test_demo_report_renders_offline_with_every_chart(browser, demo, tmp_path):
    report, _ = demo
    seen = visit(browser, report)
    try:
        assert seen.page.get_attribute("body", "data-charts") == "rendered"
        assert seen.aborted == [] and seen.errors == [] and seen.warnings == [] and seen.dialogs == []
        marks = marks_per_chart(seen.page)
        assert sorted(marks) == sorted(CHARTS)
        assert all(count > 0 for count in marks.values()), marks
        assert [seen.page.locator(f"#{key} h2").inner_text() for key in ("headline", "gate", "provenance")] == [
            "1. Verdict", "2. Regression gate against flagship-everywhere", "11. Assumptions and provenance"]
        # The gate's details are folded under its summary.
        assert seen.page.locator("#gate details").count() == len(SHIPPED_GATED)
        assert seen.page.locator("#gate details[open]").count() == 0
    finally:
        seen.page.close()


SHIPPED_GATED = ["cascade", "lanes", "rules-only", "small-everywhere", "stacked"]  # routing-drill: other requests


def test_headline_table_and_gate_agree_about_every_policy(browser, demo):
    """On the embedded week the ★, the headline, every verdict cell and the gate tell one story."""
    report, results = demo
    saved = summaries(results)
    seen = visit(browser, report)
    page = seen.page
    try:
        headline = page.locator("#headline")
        assert headline.locator('[data-field="policy"] strong').inner_text() == "lanes"
        lanes, flagship = saved["lanes"], saved["flagship-everywhere"]
        assert headline.locator('[data-field="total_cost_usd"]').inner_text() == formats.usd(lanes["total_cost_usd"])
        assert headline.locator('[data-field="saving_usd"]').inner_text() == formats.usd(
            flagship["total_cost_usd"] - lanes["total_cost_usd"])
        assert headline.locator('[data-field="bar_verdict"] .state').inner_text() == "meets"
        assert headline.locator('[data-field="gate_verdict"] .state').inner_text() == "passed"
        assert "the bar was missed on the latest 2 days" in headline.inner_text().lower()
        states = {name: page.locator(f'#verdict-table td[data-scenario="{name}"][data-metric="verdict"]').inner_text()
                  for name in saved}
        assert states == {"flagship-everywhere": "meets", "lanes": "meets", "rules-only": "undecided",
                          "stacked": "fails", "cascade": "fails", "small-everywhere": "fails",
                          # the drill's 30 requests are the keyed draw u(seed, "sample", request_id): too few to decide
                          "routing-drill": "undecided"}
        assert states == {name: summary["verdict"]["state"] for name, summary in saved.items()}
        for name, summary in saved.items():  # beside its verdict, a pass rate has the digits that tell it from the bar
            rate = page.locator(f'#verdict-table td[data-scenario="{name}"][data-metric="pass_rate"]').inner_text()
            assert rate == formats.pct_against(summary["pass_rate"], summary["verdict"]["overall"]["bar"]), name
        reasons = {name: page.locator(f'#verdict-table td[data-scenario="{name}"][data-metric="reasons"]').inner_text()
                   for name in saved}
        assert reasons["lanes"] == "recommended"
        assert "a bound, not a policy" in reasons["routing-drill"] and "30 against 50,000" in reasons["routing-drill"]
        assert reasons["rules-only"].startswith("undecided: overall")
        assert "fails the regression gate" in reasons["rules-only"]
        gate = {name: page.locator(f'#gate-summary td[data-scenario="{name}"][data-metric="gate"]').inner_text()
                for name in SHIPPED_GATED}
        assert gate == {"cascade": "FAILED", "lanes": "passed", "rules-only": "FAILED", "small-everywhere": "FAILED",
                        "stacked": "FAILED"}
        for name, summary in saved.items():
            for metric in COMPARED:  # the pass rate with the digits that tell it from its bar
                shown = (formats.pct_against(summary[metric], summary["verdict"]["overall"]["bar"])
                         if metric == "pass_rate" else formats.metric(metric, summary[metric]))
                assert cell(page, name, metric) == shown, (name, metric)
            low, high = summary["verdict"]["overall"]["low"], summary["verdict"]["overall"]["high"]
            assert cell(page, name, "pass_rate_interval") == f"{low * 100:.1f}–{high * 100:.1f}%"
            tables = json.loads((results / name / TABLES_FILE).read_text())
            assert cell(page, name, "cost_per_1k_usd") == formats.usd(tables["cost_per_1k_usd"])
            for row in summary["by_model"]:
                share = f'#comparison-table [data-scenario="{name}"][data-metric="call_share:{row["model"]}"]'
                if row["call_share"] is None:  # the prompt-cache loss line makes no calls of its own
                    assert page.locator(share).count() == 0
                    continue
                assert page.locator(share).inner_text() == f"{row['model']} {formats.pct(row['call_share'])}"
            for row in summary["verdict"]["slices"]:
                shown = page.locator(f'#slices-table td[data-scenario="{name}"][data-slice="{row["slice"]}"]')
                marker = {"meets": "", "fails": " ✗", "undecided": " ?"}[row["state"]]
                assert shown.inner_text().splitlines()[0] == formats.pct_against(row["pass_rate"], row["bar"]) + marker
    finally:
        page.close()


def test_the_terminal_and_whatif_recommend_what_the_headline_does(cli, demo):
    """The comparison `routesim demo` and `replay --baseline` print for the demo's results stars the headline's
    policy and shows each bar verdict beside its gate verdict; `whatif` (prices unchanged) names the same
    cheapest policy meeting its bar, with the same verdicts."""
    import io
    import re

    from rich.console import Console

    from simulator.cli.views import print_comparison
    from simulator.report.build import load_report_inputs

    _, results = demo
    inputs = load_report_inputs(results)
    console = Console(width=160, record=True, file=io.StringIO())  # the fixed width off a terminal (CI logs)
    print_comparison(console, inputs.summaries, recommendation=inputs.recommendation, gates=inputs.gates)
    cells = {}
    for line in console.export_text().splitlines():
        found = re.fullmatch(r"(\S+)( ★)? .* (meets|fails \(\d+\)|undecided \(\d+\)|bound) "
                             r"(baseline|passed|FAILED \(\d+\)|–)", " ".join(line.split()))
        if found:
            cells[found[1]] = (bool(found[2]), found[3].split()[0], found[4].split()[0])
    assert cells == {"cascade": (False, "fails", "FAILED"), "flagship-everywhere": (False, "meets", "baseline"),
                     "lanes": (True, "meets", "passed"), "rules-only": (False, "undecided", "FAILED"),
                     "small-everywhere": (False, "fails", "FAILED"), "stacked": (False, "fails", "FAILED"),
                     "routing-drill": (False, "bound", "–")}
    assert inputs.headline["policy"] == inputs.recommendation["policy"] == "lanes"
    names = ["flagship-everywhere", "lanes", "rules-only", "stacked"]
    whatif = cli("whatif", *shipped(names), "--scale", "flagship=1", "--json")
    assert whatif.code == 0, whatif.err
    found = json.loads(whatif.out)
    assert found["cheapest_meeting_bar"] == {"current": "lanes", "what_if": "lanes"}
    assert {row["policy"]: row["verdict"]["state"] for row in found["current"]} == {
        name: cells[name][1] for name in names}


def test_names_that_close_a_script_block_run_nothing(browser, tmp_path):
    # Slice, model and scenario description hold "</script><img src=x onerror=alert(1)>" (a scenario's name
    # cannot: it names a results folder, so it is limited to letters, digits, '.', '_' and '-').
    report = tmp_path / "hostile.html"
    build(hostile_world(tmp_path), report)
    seen = visit(browser, report)
    page = seen.page
    try:
        assert seen.dialogs == [] and seen.aborted == [] and seen.errors == []
        assert page.locator("img").count() == 0
        assert page.locator("script:not([type='application/json'])").count() == 2  # the Vega bundle and its start
        text = page.locator("main").inner_text()
        assert HOSTILE in text and HOSTILE_DESCRIPTION in text
        assert page.locator("#slices-table td", has_text=HOSTILE).count() >= 1
        assert page.locator("#comparison-table span.share", has_text=HOSTILE).count() == 1
        chart_text = page.evaluate("Array.from(document.querySelectorAll('div.vega svg text')).map(t => t.textContent)")
        assert HOSTILE in chart_text and f"{HOSTILE} only" in chart_text
        assert all(count > 0 for count in marks_per_chart(page).values())
    finally:
        page.close()


# Display faults, each checked at both widths on the demo report.

TOO_WIDE = """() => Array.from(document.querySelectorAll('main table, main div.vega > svg')).filter(element => {
    const container = element.closest('section').getBoundingClientRect();
    const box = element.getBoundingClientRect();
    return box.left < container.left - 1 || box.right > container.right + 1;
}).map(element => (element.id || element.closest('[id]').id) + ' ' + Math.round(element.getBoundingClientRect().width))"""

# Text of marks (labels and annotations): Vega draws them in `g.mark-text.role-mark`; axis ticks and
# titles, legends and chart titles sit in other groups and are left out.
LABEL_OVERLAPS = """() => {
    const found = [];
    for (const chart of document.querySelectorAll('div.vega')) {
        const boxes = Array.from(chart.querySelectorAll('svg g.mark-text.role-mark text'))
            .filter(text => text.textContent.trim() !== '')
            .map(text => [text.textContent, text.getBoundingClientRect()]);
        for (let i = 0; i < boxes.length; i++) {
            for (let j = i + 1; j < boxes.length; j++) {
                const [a, p] = boxes[i], [b, q] = boxes[j];
                if (p.left < q.right - 0.5 && q.left < p.right - 0.5 && p.top < q.bottom - 0.5 && q.top < p.bottom - 0.5) {
                    found.push(chart.id + ': ' + a + ' / ' + b);
                }
            }
        }
    }
    return found;
}"""


@pytest.fixture(scope="module", params=WIDTHS, ids=lambda width: f"{width}px")
def demo_page(request, browser, demo):
    seen = visit(browser, demo[0], width=request.param)
    yield seen.page
    seen.page.close()


def test_no_table_or_chart_is_wider_than_its_section(demo_page):
    assert demo_page.evaluate(TOO_WIDE) == []


def test_the_nav_bar_and_the_page_fit_the_window(demo_page):
    assert demo_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert demo_page.evaluate("(() => { const nav = document.querySelector('nav'); "
                              "return nav.scrollWidth <= nav.clientWidth; })()")


def test_no_two_mark_labels_or_annotations_intersect(demo_page):
    assert demo_page.evaluate(LABEL_OVERLAPS) == []


def test_time_axes_never_repeat_a_label(demo_page):
    # Hourly ticks of one day used to all read that day's date.
    repeated = demo_page.evaluate("""() => Array.from(document.querySelectorAll(
        '#chart-over-time svg g.role-axis, #chart-escalation svg g.role-axis')).map(axis =>
        Array.from(axis.querySelectorAll('g.role-axis-label text')).map(t => t.textContent).filter(t => t !== ''))
        .filter(labels => new Set(labels).size < labels.length)""")
    assert repeated == []


def test_every_escalation_panel_draws_a_series(demo_page):
    # A panel of one time bucket draws a single point, not a series.
    series = demo_page.evaluate("""() => Array.from(document.querySelectorAll('#chart-escalation svg g.mark-symbol.role-mark'))
        .map(group => group.querySelectorAll('path').length)""")
    assert series and min(series) >= 2


def test_no_two_legend_entries_share_a_colour_and_shape(demo_page):
    clashes = demo_page.evaluate("""() => Array.from(document.querySelectorAll('div.vega svg g.role-legend')).map(legend => {
        const labels = Array.from(legend.querySelectorAll('g.role-legend-label text')).map(t => t.textContent);
        const symbols = Array.from(legend.querySelectorAll('g.role-legend-symbol path')).map(path =>
            [path.getAttribute('fill'), path.getAttribute('stroke'), path.getAttribute('stroke-dasharray'),
             path.getAttribute('d')].join('|'));
        const seen = {};
        labels.forEach((label, index) => { (seen[symbols[index]] = seen[symbols[index]] || new Set()).add(label); });
        return Object.values(seen).filter(names => names.size > 1).map(names => Array.from(names).join(' = '));
    }).flat()""")
    assert clashes == []


def test_no_text_is_left_with_unbalanced_brackets(demo_page):
    text = demo_page.locator("main").inner_text()
    assert "))" not in text and "((" not in text
