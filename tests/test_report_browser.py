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
CHARTS = ["cost-quality", "cost-by-model", "cost-by-slice", "latency", "escalation", "frontier"]
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
    out = tmp_path_factory.mktemp("demo") / "demo.html"
    return out, build(shipped(), out)


def visit(browser: Browser, report: Path) -> Visit:
    """Opens `report` with every non-file request aborted and recorded, and waits for the charts."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
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
    return page.locator(f'#comparison-table td[data-scenario="{scenario}"][data-metric="{metric}"]').inner_text()


def test_demo_report_renders_offline_with_every_chart(browser, demo, tmp_path):
    report, _ = demo
    seen = visit(browser, report)
    try:
        assert seen.page.get_attribute("body", "data-charts") == "rendered"
        assert seen.aborted == [] and seen.errors == [] and seen.warnings == [] and seen.dialogs == []
        marks = marks_per_chart(seen.page)
        assert sorted(marks) == sorted(CHARTS)
        assert all(count > 0 for count in marks.values()), marks
        assert [seen.page.locator(f"#{key} h2").inner_text() for key in ("headline", "provenance")] == [
            "1. Headline", "8. Assumptions and provenance"]
        seen.page.screenshot(path=tmp_path / "demo-screenshot.png", full_page=True)
    finally:
        seen.page.close()


def test_headline_and_tables_show_the_summary_numbers(browser, demo):
    report, results = demo
    saved = summaries(results)
    # Least cost per request, as the headline ranks them: the drill's 30 sampled requests cost least in total.
    best = min((s for s in saved.values() if s["meets_bar"]), key=lambda s: (s["cost_per_request_usd"], s["scenario"]))
    reference = saved["flagship-everywhere"]
    seen = visit(browser, report)
    page = seen.page
    try:
        headline = page.locator("#headline")
        assert headline.locator('[data-field="policy"] strong').inner_text() == best["scenario"] == "rules-only"
        assert headline.locator('[data-field="total_cost_usd"]').inner_text() == formats.usd(best["total_cost_usd"])
        assert headline.locator('[data-field="saving_usd"]').inner_text() == formats.usd(
            reference["total_cost_usd"] - best["total_cost_usd"])
        assert f"{formats.pct(1 - best['total_cost_usd'] / reference['total_cost_usd'])} less" in headline.inner_text()
        assert headline.locator('[data-field="escalation_rate"]').inner_text() == formats.pct(best["escalation_rate"])
        assert headline.locator('[data-field="latency_p95_ms"]').inner_text() == formats.ms(best["latency_p95_ms"])
        for name, summary in saved.items():
            for metric in COMPARED:
                assert cell(page, name, metric) == formats.metric(metric, summary[metric]), (name, metric)
            tables = json.loads((results / name / TABLES_FILE).read_text())
            assert cell(page, name, "cost_per_1k_usd") == formats.usd(tables["cost_per_1k_usd"])
            for row in summary["by_model"]:
                share = f'#comparison-table [data-scenario="{name}"][data-metric="call_share:{row["model"]}"]'
                assert page.locator(share).inner_text() == f"{row['model']} {formats.pct(row['call_share'])}"
            verdict = cell(page, name, "meets_bar")
            assert verdict.startswith("✓") if summary["meets_bar"] else verdict.startswith("✗")
            for row in summary["by_slice"]:
                shown = page.locator(
                    f'#slices-table td[data-scenario="{name}"][data-slice="{row["slice"]}"]').inner_text()
                failing = any(f["slice"] == row["slice"] for f in summary["bar_failures"])
                assert shown.splitlines()[0] == formats.pct(row["pass_rate"]) + (" ✗" if failing else "")
    finally:
        page.close()


def test_names_that_look_like_html_render_as_text(browser, tmp_path):
    report = tmp_path / "hostile.html"
    build(hostile_world(tmp_path), report)
    seen = visit(browser, report)
    page = seen.page
    try:
        assert seen.dialogs == [] and seen.aborted == [] and seen.errors == []
        injected = "main script:not([type='application/json']), main img"
        assert page.locator(injected).count() == 0
        text = page.locator("main").inner_text()
        assert HOSTILE in text and HOSTILE_DESCRIPTION in text
        assert page.locator("#slices-table td", has_text=HOSTILE).count() >= 1
        assert page.locator("#comparison-table span.share", has_text=HOSTILE).count() == 1
        chart_text = page.evaluate("Array.from(document.querySelectorAll('div.vega svg text')).map(t => t.textContent)")
        assert HOSTILE in chart_text and f"{HOSTILE} only" in chart_text
        assert all(count > 0 for count in marks_per_chart(page).values())
    finally:
        page.close()
