"""`routesim prices check`: the sheet-priced cost of logged calls against their recorded cost, per model
and day, with the likely cause of each difference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from simulator.analyses.reconcile import (
    CACHE_AS_FRESH,
    NO_ENTRY,
    NOT_IN_SHEET,
    PRICE_DIFFERS,
    TIER_BOUNDARY,
    ZERO_USAGE,
    Tolerance,
    reconcile,
)
from simulator.core.contract import load_data
from simulator.core.prices import PriceSheet, load_prices
from tests.conftest import tiny_outcomes, tiny_traffic
from tests.test_tiny_worlds import ans, at, req
from tests.worlds import outcome_frame, traffic_frame, write_frames

ROOT = Path(__file__).resolve().parent.parent
WEEK, SHEET = ROOT / "data" / "support-week", ROOT / "data" / "prices" / "support.yaml"


def flagged(result) -> set[tuple[str, str]]:
    return {(row["model"], str(row["day"])) for row in result.flagged.iter_rows(named=True)}


@pytest.fixture(scope="module")
def week():
    return load_data(WEEK), load_prices(SHEET)


def test_the_embedded_week_agrees_with_its_sheet(week):
    data, sheet = week
    result = reconcile(data, sheet)
    assert result.flagged.is_empty()
    assert result.calls_checked == 210_006 and result.calls_without_recorded_cost == 0


def test_a_changed_price_flags_exactly_that_model_on_every_day(week):
    data, sheet = week
    medium = sheet.models["medium"]
    changed = sheet.model_copy(update={"models": {**sheet.models,
                                                  "medium": tuple(e.model_copy(update={"input": e.input * 1.5})
                                                                  for e in medium)}})
    result = reconcile(data, changed)
    days = sorted({str(day) for day in result.groups["day"]})
    assert flagged(result) == {("medium", day) for day in days}
    assert set(result.flagged["cause"]) == {PRICE_DIFFERS}


def test_one_day_with_its_tokens_zeroed_flags_exactly_that_day(week, tmp_path):
    data, sheet = week
    traffic = pl.read_parquet(WEEK / "traffic.parquet")
    on_day = traffic.filter(pl.col("ts").dt.date() == pl.date(2026, 11, 18))["request_id"]
    outcomes = pl.read_parquet(WEEK / "outcomes.parquet").with_columns(
        pl.when(pl.col("request_id").is_in(on_day.implode())).then(0).otherwise(pl.col(name)).alias(name)
        for name in ("input_tokens", "cached_input_tokens", "output_tokens"))
    result = reconcile(load_data(write_frames(tmp_path, traffic, outcomes)), sheet)
    assert flagged(result) == {(model, "2026-11-18") for model in ("small", "medium", "large", "flagship")}
    assert set(result.flagged["cause"]) == {ZERO_USAGE}


SONNET = {"effective_from": "2026-01-01", "input": 3.0, "cached_input": 0.3, "output": 15.0,
          "tiers": [{"above_input_tokens": 200_000, "input": 6.0, "cached_input": 0.6, "output": 22.5}]}


def tiny(tmp_path, calls: list[dict], **sheet) -> tuple:
    traffic = traffic_frame([req(call["request_id"], at(1), input_tokens=call.get("input_tokens", 1000))
                             for call in calls])
    folder = write_frames(tmp_path / "data", traffic, outcome_frame(calls))
    sheet_path = tmp_path / "prices.yaml"
    sheet_path.write_text(yaml.safe_dump({"models": {"sonnet": [SONNET]}, **sheet}))
    return folder, sheet_path


def test_each_cause_told_apart_by_hand(tmp_path):
    """Per call, sheet vs recorded (USD per million x tokens / 1e6):
    - fine: 1,000 in, 100 out: 3,000 + 1,500 = $0.0045, recorded $0.0045;
    - cache as fresh: 2,459 in of which 2,455 cached, 23 out: sheet 4 x 3 + 2,455 x 0.3 + 23 x 15 = $0.0010935,
      recorded with the cache as fresh input 2,459 x 3 + 23 x 15 = $0.007722;
    - tier: 250,000 in, 100 out: sheet 250,000 x 6 + 100 x 22.5 = $1.50225, recorded without the tier
      250,000 x 3 + 100 x 15 = $0.7515;
    - zero usage: 0 / 0 tokens, recorded $0.00002, sheet $0;
    - unknown model: not in the sheet."""
    calls = [ans("fine", "sonnet", cost_usd=0.0045),
             ans("cache", "sonnet", input_tokens=2459, cached_input_tokens=2455, output_tokens=23, cost_usd=0.007722),
             ans("tier", "sonnet", input_tokens=250_000, output_tokens=100, cost_usd=0.7515),
             ans("lost", "sonnet", input_tokens=0, output_tokens=0, cost_usd=0.00002),
             ans("other", "haiku", cost_usd=0.001)]
    folder, sheet_path = tiny(tmp_path, calls)
    result = reconcile(load_data(folder), load_prices(sheet_path))
    by_model = {row["model"]: row for row in result.groups.iter_rows(named=True)}
    assert by_model["haiku"]["flagged"] and by_model["haiku"]["cause"] == NOT_IN_SHEET
    sonnet = by_model["sonnet"]
    assert sonnet["flagged"] and sonnet["differing_calls"] == 3
    assert {item["cause"]: item["calls"] for item in sonnet["causes"]} == {CACHE_AS_FRESH: 1, TIER_BOUNDARY: 1,
                                                                           ZERO_USAGE: 1}
    assert sonnet["examples"] == ["tier", "cache", "lost"]  # the largest differences first
    assert sonnet["recorded_usd"] == pytest.approx(0.0045 + 0.007722 + 0.7515 + 0.00002, rel=1e-12)
    assert sonnet["sheet_usd"] == pytest.approx(0.0045 + 0.0010935 + 1.50225, rel=1e-12)


# $ per million tokens: m has a long-context tier above 100,000 input tokens, p no tier at all, and q a tier at
# 128,000 for standard calls but none for batch.
TIERED = {"models": {
    "m": [{"effective_from": "2026-01-01", "input": 1.0, "output": 2.0,
           "tiers": [{"above_input_tokens": 100_000, "input": 2.0, "output": 4.0}]}],
    "p": [{"effective_from": "2026-01-01", "input": 1.0, "output": 2.0}],
    "q": [{"effective_from": "2026-01-01", "input": 1.0, "output": 2.0,
           "tiers": [{"above_input_tokens": 128_000, "input": 2.0, "output": 4.0}],
           "batch": {"input": 0.5, "output": 1.0}}]}}


def causes_per_call(tmp_path, calls: list[dict], service_tiers: list[str | None] | None = None) -> dict[str, str]:
    """The cause each call is given, with every call on a day of its own (a model/day holds one call)."""
    traffic = traffic_frame([req(call["request_id"], at(1, days=day), input_tokens=call["input_tokens"])
                             for day, call in enumerate(calls)])
    outcomes = outcome_frame(calls)
    if service_tiers:
        outcomes = outcomes.with_columns(pl.Series("service_tier", service_tiers, dtype=pl.String))
    sheet = PriceSheet.model_validate({**TIERED, "source": "tiered.yaml"})
    result = reconcile(load_data(write_frames(tmp_path, traffic, outcomes)), sheet)
    assert result.groups["flagged"].all()
    return {row["examples"][0]: row["cause"] for row in result.groups.iter_rows(named=True)}


def test_a_call_above_a_tier_the_sheet_prices_is_a_price_difference_not_a_tier_boundary(tmp_path):
    """m, 110,000 in and 1,000 out, above m's tier at 100,000: the sheet charges 110,000 x 2 + 1,000 x 4 =
    $0.224; billed 3 x that, $0.672. Without the tier it would be 110,000 x 1 + 1,000 x 2 = $0.112, not the
    bill either, and 110,000 is below every common threshold (128k): the sheet's price differs."""
    calls = [ans("billed", "m", input_tokens=110_000, output_tokens=1_000, cost_usd=0.672)]
    assert causes_per_call(tmp_path, calls) == {"billed": PRICE_DIFFERS}


def test_a_call_billed_the_price_without_the_sheets_tier_is_a_tier_boundary(tmp_path):
    # The same call billed $0.112: what the sheet gives without its tier (the provider has no such tier).
    calls = [ans("untiered", "m", input_tokens=110_000, output_tokens=1_000, cost_usd=0.112)]
    assert causes_per_call(tmp_path, calls) == {"untiered": TIER_BOUNDARY}


def test_a_call_above_a_common_threshold_the_sheet_lacks_is_a_tier_boundary(tmp_path):
    """p has no tier: 150,000 in and 1,000 out is $0.152 by the sheet, billed double ($0.304), as a tier above
    128k would; 120,000 in billed double ($0.244 for $0.122) is below every common threshold: a price
    difference. m's own tier is at 100,000 but it has none at 128k: 150,000 in billed 3 x its tier price
    (3 x (150,000 x 2 + 1,000 x 4) = $0.912) is a tier boundary too. q prices the 128k tier: the same call
    billed 3 x its tier price is a price difference; but q's batch prices have no tier, so a batch call of
    150,000 in billed double ($0.152 for 150,000 x 0.5 + 1,000 x 1 = $0.076) is a tier boundary."""
    calls = [ans("plain", "p", input_tokens=150_000, output_tokens=1_000, cost_usd=0.304),
             ans("short", "p", input_tokens=120_000, output_tokens=1_000, cost_usd=0.244),
             ans("above_128k", "m", input_tokens=150_000, output_tokens=1_000, cost_usd=0.912),
             ans("priced_tier", "q", input_tokens=150_000, output_tokens=1_000, cost_usd=0.912),
             ans("batch", "q", input_tokens=150_000, output_tokens=1_000, cost_usd=0.152)]
    assert causes_per_call(tmp_path, calls, [None, None, None, None, "batch"]) == {
        "plain": TIER_BOUNDARY, "short": PRICE_DIFFERS, "above_128k": TIER_BOUNDARY, "priced_tier": PRICE_DIFFERS,
        "batch": TIER_BOUNDARY}


def test_a_sheet_without_an_entry_in_force_is_out_of_date(tmp_path):
    folder, sheet_path = tiny(tmp_path, [ans("early", "sonnet", cost_usd=0.0045)])
    late = load_prices(sheet_path)
    late = PriceSheet.model_validate({"models": {"sonnet": [{**SONNET, "effective_from": "2026-06-01"}]}})
    result = reconcile(load_data(folder), late)
    assert result.flagged["cause"].to_list() == [NO_ENTRY]


def test_the_tolerance_can_be_changed_and_the_command_prints_each_flag(cli, tmp_path):
    """2% off: flagged at the default 1%, not at --tolerance 0.05; a negotiated discount in the sheet
    makes the invoice agree."""
    folder, sheet_path = tiny(tmp_path, [ans("r1", "sonnet", cost_usd=0.0045 * 0.98)])
    result = cli("prices", "check", folder, "--prices", sheet_path)
    assert result.code == 0, result.err
    assert "⚑ sonnet on 2026-03-02: " + PRICE_DIFFERS + ": 1; e.g. request(s) r1" in result.out
    loose = cli("prices", "check", folder, "--prices", sheet_path, "--tolerance", "0.05", "--json")
    assert json.loads(loose.out)["flagged"] == 0
    discounted = tmp_path / "discounted.yaml"
    discounted.write_text(yaml.safe_dump({"discount": 0.02, "models": {"sonnet": [SONNET]}}))
    assert "agrees with the recorded costs of 1 call(s)" in cli("prices", "check", folder, "--prices", discounted).out


def test_bad_tolerance_and_missing_sheet_are_clear_errors(cli, tmp_path):
    folder, sheet_path = tiny(tmp_path, [ans("r1", "sonnet", cost_usd=0.0045)])
    assert cli("prices", "check", folder, "--prices", sheet_path, "--tolerance", "-1").code == 2
    missing = cli("prices", "check", folder, "--prices", tmp_path / "nope.yaml")
    assert missing.code == 2 and "price sheet not found" in missing.err


def test_the_report_saves_the_check_and_shows_it_in_its_provenance(tmp_path):
    """The tiny world records what its sheet charges ($0.0012 a small call, $0.012 a big one) except c's
    big call, billed $0.02: the report flags big on 2026-11-16 and names c."""
    from tests.conftest import TINY_PRICES, World, tiny_outcomes, tiny_traffic  # noqa: PLC0415
    from tests.report_helpers import build  # noqa: PLC0415

    world = World(tmp_path)
    recorded = (pl.when(pl.col("model") == "small").then(0.0012)
                .when(pl.col("request_id") == "c").then(0.02).otherwise(0.012))
    world.write_data(tiny_traffic(), tiny_outcomes().with_columns(recorded.alias("cost_usd")))
    world.prices.write_text(yaml.safe_dump(TINY_PRICES))
    results = build([world.scenario("cascade")], tmp_path / "report.html")
    (check,) = json.loads((results / "price-checks.json").read_text())["checks"]
    assert (check["calls_checked"], check["model_days"], check["flagged"]) == (6, 2, 1)
    assert (check["prices"], check["data"]) == (world.prices.name, world.data.name)  # no path of the machine
    assert [(group["model"], group["day"], group["examples"]) for group in check["groups"]] == \
        [("big", "2026-11-16", ["c"])]
    html = (tmp_path / "report.html").read_text()
    assert 'id="price-checks-table"' in html and "big on 2026-11-16: " + PRICE_DIFFERS in html


def test_a_check_of_no_recorded_cost_is_bad_input_not_a_pass(cli, world):
    # The tiny world's outcomes record no cost_usd: nothing to check the sheet against, so no "agrees".
    result = cli("prices", "check", world.data, "--prices", world.prices)
    assert result.code == 2
    assert "nothing to check the sheet against: none of its 6 call(s) records cost_usd" in result.err
    world.write_data(tiny_traffic().clear(), tiny_outcomes().clear())
    result = cli("prices", "check", world.data, "--prices", world.prices)
    assert result.code == 2 and "it holds no calls" in result.err


@pytest.mark.parametrize(("option", "value", "where"), [
    ("--tolerance", "-1", "where: --tolerance\n"), ("--tolerance", "1", "where: --tolerance\n"),
    ("--tolerance-usd", "-0.5", "where: --tolerance-usd\n")])
def test_a_bad_tolerance_names_its_option_and_the_value_given(cli, tmp_path, option, value, where):
    folder, sheet_path = tiny(tmp_path, [ans("r1", "sonnet", cost_usd=0.0045)])
    result = cli("prices", "check", folder, "--prices", sheet_path, option, value)
    assert result.code == 2 and where in result.err and f"got {float(value)}" in result.err, result.err
