"""LiteLLM router configs in and out: loaded as LiteLLM loads them, round-tripped, replayed by hand."""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from pathlib import Path

import polars as pl
import pytest
import yaml

from simulator.core.runner import Inputs, run_scenario
from simulator.core.scenario import load_scenario
from tests.conftest import OUTCOME_SCHEMA, outcome_row, tiny_traffic

# LiteLLM fetches its price map over the network on import unless told to use the copy it ships; reading
# that copy uses a deprecated importlib call, which is LiteLLM's to fix, not a failure of ours.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import litellm
    from litellm.router_strategy.tag_based_routing import get_deployments_for_tag

SMALL, BIG = 0.0012, 0.012

TAGGED = {
    "model_list": [
        {"model_name": "assistant", "litellm_params": {"model": "openai/gpt-4o-mini", "tags": ["free"], "rpm": 100},
         "model_info": {"id": "small"}},
        {"model_name": "assistant", "litellm_params": {"model": "openai/gpt-4o", "tags": ["default"]},
         "model_info": {"id": "big"}},
        {"model_name": "big", "litellm_params": {"model": "openai/gpt-4o"}},
    ],
    "router_settings": {"enable_tag_filtering": True, "fallbacks": [{"assistant": ["big"]}]},
}

RETRYING = {
    "model_list": [{"model_name": "small", "litellm_params": {"model": "openai/gpt-4o-mini", "tpm": 50000}},
                   {"model_name": "big", "litellm_params": {"model": "openai/gpt-4o"}}],
    "router_settings": {"num_retries": 2, "fallbacks": [{"small": ["big"]}]},
    "litellm_settings": {"content_policy_fallbacks": [{"small": ["big"]}]},
}

PROVIDERS = ["--deployment", "small=openai/gpt-4o-mini", "--deployment", "big=openai/gpt-4o"]


@pytest.fixture
def failing(world):
    """The tiny world (a: free, b and c: pro) where small hits a rate limit on c, and answers c again
    (sample 1) without one; big answers everything."""
    rows = [outcome_row("a", "small"), outcome_row("b", "small"),
            outcome_row("c", "small", hard_check_ok=False, passed=False, error_type="rate_limit"),
            outcome_row("c", "small", sample=1, error_type=None)]
    rows += [outcome_row(r, "big") for r in "abc"]
    schema = OUTCOME_SCHEMA | {"error_type": pl.String}
    world.write_data(tiny_traffic(), pl.DataFrame(rows, schema=schema))
    return world


def _write(path, content) -> str:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return str(path)


def _router(path: Path) -> litellm.Router:
    """The config loaded as the LiteLLM proxy does: its model_list and router_settings make the Router."""
    config = yaml.safe_load(Path(path).read_text())
    return litellm.Router(model_list=config["model_list"], **config.get("router_settings", {}))


def _import(cli, world, config, out, *extra):
    result = cli("import-config", "litellm", config, "-o", out, "--data", world.data, "--prices", world.prices,
                 "--name", "gateway", *extra)
    assert result.code == 0, result.err
    return result


def test_tag_routing_with_fallbacks_imports_as_rules_and_a_retry(cli, failing):
    out = failing.folder / "gateway.yaml"
    _import(cli, failing, _write(failing.folder / "config.yaml", TAGGED), out, "--tag-column", "tier")
    content = yaml.safe_load(out.read_text())
    assert content["policy"] == {"rules": [{"name": "tag free", "when": "tier = 'free'", "use": "small"}],
                                 "default": {"use": "big"},
                                 "retry": {"when": "error_type IS NOT NULL", "to": ["big"]}}
    assert content["capacity"] == {"small": {"rpm": 100}}


def test_its_replay_equals_the_hand_written_scenario(cli, failing):
    """a (free) goes to small; b and c (pro) to big. Nothing big answers fails, so no fallback fires."""
    out = failing.folder / "gateway.yaml"
    _import(cli, failing, _write(failing.folder / "config.yaml", TAGGED), out, "--tag-column", "tier")
    by_hand = failing.scenario("by-hand", policy={
        "rules": [{"when": "tier = 'free'", "use": "small", "name": "tag free"}], "default": {"use": "big"},
        "retry": {"when": "error_type IS NOT NULL", "to": ["big"]}})
    inputs = Inputs()
    imported, written = (run_scenario(load_scenario(path), inputs).replay for path in (out, by_hand))
    assert imported.decisions.drop("rid").equals(written.decisions.drop("rid"))
    assert imported.decisions["final_model"].to_list() == ["small", "big", "big"]
    assert imported.decisions["cost_usd"].sum() == pytest.approx(SMALL + 2 * BIG)


def test_retries_then_fallbacks_read_the_next_sample(cli, failing):
    """num_retries 2 then big: c's rate-limited first answer is retried on small's sample 1, which answers;
    the second retry and the fallback are not needed. c costs two small calls."""
    out = failing.folder / "retrying.yaml"
    result = _import(cli, failing, _write(failing.folder / "config.yaml", RETRYING), out)
    assert "content_policy_fallbacks: not expressed" in result.err
    scenario = load_scenario(out)
    assert scenario.policy.retry.to == ("small", "small", "big") and scenario.capacity["small"].tpm == 50000
    decisions = run_scenario(scenario, Inputs()).replay.decisions
    assert decisions["retry_attempts"].to_list() == [0, 0, 1]
    assert decisions["cost_usd"].to_list() == pytest.approx([SMALL, SMALL, 2 * SMALL])
    assert decisions["passed"].all()


@pytest.mark.parametrize("config, extra", [(TAGGED, ["--tag-column", "tier"]), (RETRYING, [])],
                         ids=["tags-and-fallbacks", "retries-and-fallbacks"])
def test_import_export_import_round_trips_and_litellm_loads_the_export(cli, failing, config, extra):
    first, exported, second = (failing.folder / name for name in ("first.yaml", "litellm.yaml", "second.yaml"))
    source = _write(failing.folder / "config.yaml", config)
    _import(cli, failing, source, first, *extra)
    result = cli("export", "litellm", first, "-o", exported, *PROVIDERS, "--group", "assistant")
    assert result.code == 0, result.err
    _import(cli, failing, exported, second, *extra)
    assert load_scenario(first) == load_scenario(second)
    router, original = _router(exported), _router(source)
    assert router.fallbacks == original.fallbacks and router.num_retries == original.num_retries
    assert router.enable_tag_filtering == original.enable_tag_filtering


def test_litellm_routes_the_exported_tags_as_the_scenario_does(cli, failing):
    """LiteLLM's own tag filter sends a 'free' request to small and an untagged one to the default, big."""
    lanes = failing.scenario("lanes", policy={"rules": [{"when": "tier = 'free'", "use": "small"}],
                                              "default": {"use": "big"}})
    exported = failing.folder / "litellm.yaml"
    assert cli("export", "litellm", lanes, "-o", exported, *PROVIDERS).code == 0
    router = _router(exported)
    group = router.get_model_list(model_name="lanes")

    def picked(tags):
        found = asyncio.run(get_deployments_for_tag(router, "lanes", group, {"metadata": {"tags": tags}}))
        return sorted(d["model_info"]["id"] for d in found)

    assert picked(["free"]) == ["small"] and picked(["pro"]) == ["big"] and picked([]) == ["big"]


def test_export_names_what_litellm_cannot_express(cli, failing):
    result = cli("export", "litellm", failing.scenario(), "-o", failing.folder / "out.yaml", *PROVIDERS)
    assert result.code == 2 and "a confidence-gated cascade" in result.err
    assert not (failing.folder / "out.yaml").exists()
    gated = failing.scenario("gated", policy={"rules": [{"when": "input_tokens > 10", "use": "big"}],
                                              "default": {"use": "small"},
                                              "retry": {"when": "NOT passed", "to": ["big"]}})
    result = cli("export", "litellm", gated, "-o", failing.folder / "out.yaml", *PROVIDERS)
    assert result.code == 2 and "is not COLUMN = 'VALUE'" in result.err and "policy.retry.when" in result.err
    sticky = failing.scenario("sticky", policy={"default": {"use": "small"}, "sticky": "session"})
    result = cli("export", "litellm", sticky, "-o", failing.folder / "out.yaml", *PROVIDERS)
    assert result.code == 2 and "policy.sticky: session" in result.err


def test_export_needs_a_provider_model_for_each_model(cli, failing):
    path = failing.scenario("single", policy={"default": {"use": "small"}})
    result = cli("export", "litellm", path, "-o", failing.folder / "out.yaml")
    assert result.code == 2 and "no provider model for small" in result.err and "--deployment" in result.err


def test_unknown_entry_group_gets_a_suggestion(cli, failing):
    config = _write(failing.folder / "config.yaml", RETRYING)
    result = cli("import-config", "litellm", config, "-o", failing.folder / "s.yaml", "--data", failing.data,
                 "--entry", "smal")
    assert result.code == 2 and "Did you mean 'small'?" in result.err


def test_an_output_never_replaces_its_input(cli, failing):
    path = failing.scenario("single", policy={"default": {"use": "small"}})
    before = path.read_text()
    result = cli("export", "litellm", path, "-o", path, *PROVIDERS)
    assert result.code == 2 and "an input of this run" in result.err and path.read_text() == before
    config = _write(failing.folder / "config.yaml", RETRYING)
    result = cli("import-config", "litellm", config, "-o", config, "--data", failing.data)
    assert result.code == 2 and "an input of this run" in result.err


GATEWAY = Path(__file__).resolve().parent.parent / "scenarios" / "gateway"


def test_the_shipped_gateway_config_imports_to_the_shipped_scenario_and_shows_its_quota(cli, tmp_path):
    """scenarios/gateway/litellm-config.yaml (tag routing on `feature`, the small model under rpm/tpm
    limits) is what scenarios/gateway/litellm.yaml was imported from; LiteLLM routes its tags as the
    scenario's rules do, and the replay's peak load on small is the busiest minute of chat and email
    requests, counted here from the traffic alone."""
    config, shipped = GATEWAY / "litellm-config.yaml", GATEWAY / "litellm.yaml"
    out = tmp_path / "litellm.yaml"
    result = cli("import-config", "litellm", config, "-o", out, "--data", GATEWAY.parent.parent / "data" / "support-week",
                 "--prices", GATEWAY.parent.parent / "data" / "prices" / "support.yaml", "--tag-column", "feature")
    assert result.code == 0, result.err
    assert load_scenario(out) == load_scenario(shipped)

    router = _router(config)
    group = router.get_model_list(model_name="support")

    def picked(tags):
        found = asyncio.run(get_deployments_for_tag(router, "support", group, {"metadata": {"tags": tags}}))
        return sorted(d["model_info"]["id"] for d in found)

    assert picked(["chat"]) == picked(["email_assist"]) == ["small"] and picked(["search"]) == ["flagship"]

    scenario = load_scenario(shipped)
    replayed = cli("replay", "--json", shipped)
    assert replayed.code == 0, replayed.err
    capacity = json.loads(replayed.out)[0]["capacity"]
    small = next(row for row in capacity["models"] if row["model"] == "small")
    traffic = pl.read_parquet(scenario.data / "traffic.parquet")
    busiest = (traffic.filter(pl.col("feature").is_in(["chat", "email_assist"]))
               .group_by(pl.col("ts").dt.truncate("1m")).len()["len"].max())
    assert small["peak_calls_per_minute"] == busiest > small["rpm"] == 15
    assert small["minutes_over_rpm"] > 0 and not capacity["within_limits"]
