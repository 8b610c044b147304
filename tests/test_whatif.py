"""Price what-ifs: re-pricing equals replaying with the other prices, break-even rates by hand, rankings."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml

from simulator.core.prices import load_prices
from simulator.core.runner import Inputs, load_scenarios, run_scenario
from simulator.core.scenario import load_scenario
from tests.report_helpers import tiny_world

SMALL, BIG = 0.0012, 0.012


def _whatif(cli, *args) -> dict:
    result = cli("whatif", *args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_break_even_of_a_two_step_cascade_by_hand(cli, tmp_path):
    """small $0.0012 then big $0.012: e* = 1 - 0.0012 / 0.012 = 0.9. Halving big's prices gives
    1 - 0.0012 / 0.006 = 0.8; doubling small's too gives 1 - 0.0024 / 0.006 = 0.6."""
    cascade, _ = tiny_world(tmp_path)
    found = _whatif(cli, cascade, "--scale", "big=0.5")
    [now], [then] = found["current"][0]["cascades"], found["what_if"][0]["cascades"]
    assert now["break_even_rate"] == pytest.approx(0.9) and then["break_even_rate"] == pytest.approx(0.8)
    found = _whatif(cli, cascade, "--scale", "big=0.5", "--scale", "small=2")
    assert found["what_if"][0]["cascades"][0]["break_even_rate"] == pytest.approx(0.6)
    assert found["what_if"][0]["cost_per_request_usd"] == pytest.approx((3 * 2 * SMALL + 0.5 * BIG) / 3)


def test_cheaper_flagship_changes_the_ranking_and_the_cheapest_policy(cli, tmp_path):
    """The cascade ($0.0052/request) beats big-everywhere ($0.012) until big costs 5% of today:
    big-everywhere $0.0006 against the cascade's (3 x 0.0012 + 0.0006) / 3 = $0.0014."""
    paths = tiny_world(tmp_path)
    found = _whatif(cli, *paths, "--scale", "big=0.05")
    now = {row["policy"]: row for row in found["current"]}
    then = {row["policy"]: row for row in found["what_if"]}
    assert (now["cascade"]["rank"], now["big-everywhere"]["rank"]) == (1, 2)
    assert (then["cascade"]["rank"], then["big-everywhere"]["rank"]) == (2, 1)
    assert then["big-everywhere"]["cost_per_request_usd"] == pytest.approx(0.05 * BIG)
    assert found["cheapest_meeting_bar"] == {"current": "cascade", "what_if": "big-everywhere"}
    assert then["cascade"]["pass_rate"] == now["cascade"]["pass_rate"]  # routing is unchanged


def test_a_policy_replayed_on_other_requests_is_not_ranked_with_the_rest(cli, tmp_path):
    """As replay's ★: ranks and the cheapest rest on one request set. A sample of two of the three requests
    is cheaper than the cascade at any price, yet it is neither ranked nor the cheapest, and says why."""
    cascade, big = tiny_world(tmp_path)
    content = yaml.safe_load(cascade.read_text()) | {"name": "sampled", "sample": {"requests": 2, "seed": 1},
                                                     "policy": {"default": {"use": "small"}}}
    sampled = tmp_path / "sampled.yaml"
    sampled.write_text(yaml.safe_dump(content))
    found = _whatif(cli, sampled, cascade, big, "--scale", "big=0.05")
    for rows in (found["current"], found["what_if"]):
        by_name = {row["policy"]: row for row in rows}
        assert by_name["sampled"]["rank"] is None and "replayed on other requests" in by_name["sampled"]["not_ranked"]
        assert sorted(by_name[name]["rank"] for name in ("cascade", "big-everywhere")) == [1, 2]
    assert found["cheapest_meeting_bar"] == {"current": "cascade", "what_if": "big-everywhere"}
    shown = cli("whatif", sampled, cascade, big, "--scale", "big=0.05").out
    assert "sampled: not ranked: replayed on other requests (2 against 3)" in " ".join(shown.split())


def test_other_sheet_gives_what_a_replay_with_it_gives(cli, tmp_path):
    """--prices OTHER.yaml re-prices every call as a replay whose scenario points at OTHER.yaml does."""
    paths = tiny_world(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"models": {
        "small": [{"effective_from": "2026-11-01", "input": 3.0, "cached_input": 1.0, "output": 7.0, "per_request": 0.001}],
        "big": [{"effective_from": "2026-11-01", "input": 2.0, "output": 4.0},
                {"effective_from": "2026-11-16", "input": 1.0, "output": 30.0}]}}))
    found = _whatif(cli, *paths, "--prices", other)
    for path, row in zip(paths, found["what_if"]):
        scenario = load_scenario(path).model_copy(update={"prices": other})
        replayed = run_scenario(scenario, Inputs()).summary
        # Summed per request in another order than the replay adds calls: equal to the last bits.
        assert row["total_cost_usd"] == pytest.approx(replayed["total_cost_usd"], rel=1e-12)


def test_at_prices_every_call_as_of_a_date_and_calibration_is_redone(cli, tmp_path):
    """The tiny world's requests are on 2026-11-16; a sheet whose only entry starts 2026-11-20 cannot price
    them at their time, but can as of 2026-11-20."""
    paths = tiny_world(tmp_path)
    later = tmp_path / "later.yaml"
    sheet = yaml.safe_load((tmp_path / "prices.yaml").read_text())
    for entries in sheet["models"].values():
        entries[0]["effective_from"] = "2026-11-20"
    later.write_text(yaml.safe_dump(sheet))
    result = cli("whatif", *paths, "--prices", later, "--json")
    assert result.code == 2 and "cannot be priced" in result.err
    found = _whatif(cli, *paths, "--prices", later, "--at", "2026-11-20", "--target-pass-rate", "0.9")
    calibrated = [row for row in found["what_if"] if row["kind"] == "calibrated"]
    assert [row["threshold"] for row in calibrated] == [0.7]  # cheapest threshold passing all: b escalates
    assert found["what_if"][0]["total_cost_usd"] == pytest.approx(3 * SMALL + BIG)


def test_at_prices_the_break_even_rate_as_of_that_date_too(cli, tmp_path):
    """The requests are on 2026-11-16. big gets a later entry at 2026-11-20 with prices ten times today's, so
    as of then cL is 10 x 0.012 = 0.12 and e* = 1 - 0.0012 / 0.12 = 0.99 (today's 0.9)."""
    cascade, _ = tiny_world(tmp_path)
    sheet = yaml.safe_load((tmp_path / "prices.yaml").read_text())
    first = sheet["models"]["big"][0]
    sheet["models"]["big"].append({**first, "effective_from": "2026-11-20", "input": first["input"] * 10,
                                   "output": first["output"] * 10})
    (tmp_path / "prices.yaml").write_text(yaml.safe_dump(sheet))
    found = _whatif(cli, cascade, "--at", "2026-11-20")
    [now], [then] = found["current"][0]["cascades"], found["what_if"][0]["cascades"]
    assert now["last_step_cost_usd"] == pytest.approx(BIG) and now["break_even_rate"] == pytest.approx(0.9)
    assert then["last_step_cost_usd"] == pytest.approx(10 * BIG) and then["break_even_rate"] == pytest.approx(0.99)


@pytest.mark.parametrize(("args", "message"), [
    ([], "nothing to change"),
    (["--scale", "bigg=0.5"], "Did you mean 'big'?"),
    (["--scale", "big"], "cannot read --scale"),
    (["--scale", "big=-1"], "a factor is from 0 to 1,000,000, got -1"),
    (["--scale", "big=1e308"], "a factor is from 0 to 1,000,000"),  # past the largest factor, not an internal error
    (["--prices", "missing.yaml"], "price sheet not found"),
    (["--at", "tomorrow"], "as a date"),
])
def test_whatif_bad_input(cli, tmp_path, args, message):
    paths = tiny_world(tmp_path)
    result = cli("whatif", *paths, *args)
    assert result.code == 2 and message in result.err, result.err


def test_a_factor_that_makes_a_call_too_costly_is_blamed_not_the_sheet(cli, tmp_path):
    """big at $10,000 and $20,000 per million tokens costs $12 a call; a millionfold is $12 million, past the
    9 million USD a call may cost with exact int64 money. The sheet itself is fine, so --scale is named."""
    paths = tiny_world(tmp_path)
    sheet = yaml.safe_load((tmp_path / "prices.yaml").read_text())
    sheet["models"]["big"][0].update(input=10_000.0, output=20_000.0)
    (tmp_path / "prices.yaml").write_text(yaml.safe_dump(sheet))
    assert cli("whatif", *paths, "--scale", "big=1000").code == 0
    result = cli("whatif", *paths, "--scale", "big=1000000")
    assert result.code == 2 and "9 million USD" in result.err, result.err
    assert "where: --scale big=1e+06" in result.err and "prices.yaml" not in result.err


def test_whatif_prints_side_by_side(cli, tmp_path):
    paths = tiny_world(tmp_path)
    result = cli("whatif", *paths, "--scale", "big=0.05")
    assert result.code == 0, result.err
    assert "cheapest meeting its bar: cascade now → big-everywhere at what-if prices" in result.out
    assert "Break-even" in result.out and "small → big" in result.out
    # Two rank columns, each named for its prices (a tester found two columns both labelled "rank").
    assert "rank now" in result.out and "rank what-if" in result.out
    load_prices(tmp_path / "prices.yaml")  # the input sheet is untouched and still valid
    assert load_scenarios(paths)


def test_break_even_is_net_of_the_router_overhead_and_scales_with_it(cli, tmp_path):
    """A $0.0012 router before the cascade: c1 = 0.0012 + 0.0012, so e* = 1 - 0.0024 / 0.012 = 0.8. At
    half the router's price c1 = 0.0018 and e* = 0.85; the cost per request falls by 0.0006."""
    cascade, _ = tiny_world(tmp_path)
    content = yaml.safe_load(cascade.read_text())
    content["policy"]["overhead"] = {"name": "router", "cost_usd": 0.0012}
    cascade.write_text(yaml.safe_dump(content))
    found = _whatif(cli, cascade, "--scale", "router=0.5")
    [now], [then] = found["current"][0]["cascades"], found["what_if"][0]["cascades"]
    assert now["break_even_rate"] == pytest.approx(0.8) and then["break_even_rate"] == pytest.approx(0.85)
    assert (found["current"][0]["cost_per_request_usd"] - found["what_if"][0]["cost_per_request_usd"]
            == pytest.approx(0.0006))


REPRICED_WORLDS = 4


def test_repricing_bills_prompt_cache_losses_again_as_a_replay_at_those_prices_would(tmp_path):
    """On random worlds with sessions (turns switch models and lose their prompt cache), doubling a listed
    model's prices and repricing gives the decisions and calls, loss rows included, of a replay with the
    doubled sheet, row for row (worlds whose classifier overheads the sheet prices are left out: a what-if
    keeps their replayed cost)."""
    from simulator.analyses.whatif import PriceChange, reprice, scaled_sheet
    from simulator.core.contract import load_data
    from simulator.core.engine import replay
    from simulator.core.errors import RoutesimError
    from tests.worlds import random_world, write_frames

    compared = losses = 0
    for seed in (168, *range(200)):  # 168: sticky sessions (plans `sticky: MODEL`) and retries on another tier
        world = random_world(seed)
        # a classifier overhead keeps its replayed cost in a what-if (module doc), a replay reprices it
        if world.sheet is None or any(overhead.model for _, overhead in world.scenario.policy.overheads()):
            continue
        data = load_data(write_frames(tmp_path / str(seed), world.traffic, world.outcomes))
        try:
            result = replay(world.scenario, data, world.sheet)
        except RoutesimError:
            continue
        model = sorted(world.sheet.models)[seed % len(world.sheet.models)]
        doubled = replay(world.scenario, data, scaled_sheet(world.sheet, {model: 2.0}))
        repriced = reprice(result, data, world.sheet, PriceChange(scales=((model, 2.0),)))
        assert repriced.calls.equals(doubled.calls), world.describe()
        assert repriced.decisions.equals(doubled.decisions), world.describe()
        assert repriced.price_sources == doubled.price_sources
        losses += doubled.calls.filter(pl.col("kind") == "cache_loss").height
        compared += 1
        if compared == REPRICED_WORLDS:
            break
    assert compared == REPRICED_WORLDS and losses > 0
