"""Policies with thousands of rules replay correctly: the rules are compiled once, evaluated in flat passes
(simulator.core.engine.assign_plans) and plans sharing a step are replayed together, so time and memory
grow linearly with the rule count. How fast is `routesim bench`'s business; these tests check the answers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from simulator.core import engine
from tests.reference import reference_replay
from tests.test_parity import check_world
from tests.worlds import World, _Gen, _plan, _rule_atom, random_world, scenario_of

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "many-rules"


@pytest.mark.parametrize("form, rules", [("input_tokens = {}", 3000), ("input_tokens + 0 = {}", 1000)],
                         ids=["lookup", "passes"])
def test_thousands_of_rules_on_one_column_pick_the_first_match(cli, tmp_path, monkeypatch, form, rules):
    """The shared reliability case F03 (fixtures/many-rules, from ../shared/cases/reliability/F03-many-rules):
    rule i is `input_tokens = i`, so each request (100, 200, 300, 400 input tokens) matches rule
    input_tokens + 1 only and goes to small; the default is flagship. A rule placed last for 300 tokens
    must lose to the earlier `input_tokens = 300`. As written the rules become one lookup table; with
    `+ 0` they are general predicates, evaluated in passes (of 64 rules here, so the matches lie in the
    second to the seventh pass)."""
    monkeypatch.setattr(engine, "RULES_PER_PASS", 64)
    shutil.copytree(FIXTURE, tmp_path / "case")
    rules = [{"when": form.format(i), "use": "small"} for i in range(rules)]
    rules.append({"when": "input_tokens = 300", "use": "flagship", "name": "too late"})
    scenario = {"name": "s", "data": "w", "prices": "prices.yaml",
                "policy": {"rules": rules, "default": {"use": "flagship"}}}
    path = tmp_path / "case" / "s.yaml"
    path.write_text(yaml.safe_dump(scenario))
    decisions = tmp_path / "decisions.parquet"
    result = cli("replay", path, "--decisions", decisions)
    assert result.code == 0, result.err
    got = pl.read_parquet(decisions).select("request_id", "plan", "final_model").rows()
    assert got == [("r1", "rule 101", "small"), ("r2", "rule 201", "small"), ("r3", "rule 301", "small"),
                   ("r4", "rule 401", "small")]


def _many_rules_world(seed: int, rules: int) -> World:
    """A random world (tests/worlds.py) whose policy has `rules` rules over a pool of eight plans: most
    match one exact input_tokens value of the traffic, some combined with a random traffic predicate."""
    world = random_world(seed)
    g = _Gen(seed + 1)
    models = sorted(set(world.outcomes["model"]))
    slices = sorted(set(world.traffic["slice"]))
    tokens = world.traffic["input_tokens"].to_list()
    plans = [_plan(g, models) for _ in range(8)]
    policy_rules = []
    for index in range(rules):
        when = f"input_tokens = {g.pick(tokens)}"
        if g.chance(0.2):
            when = f"({_rule_atom(g, slices)}) AND {when}"
        policy_rules.append({"when": when, **g.pick(plans)})
    policy = {"rules": policy_rules, "default": _plan(g, models)}
    scenario = scenario_of(policy, name=f"many-rules-{seed}", data="random-world", on_missing="skip")
    return World(seed=seed, scenario=scenario, traffic=world.traffic, outcomes=world.outcomes, sheet=world.sheet)


def test_thousands_of_rules_agree_with_the_reference_replay(tmp_path):
    kinds = []
    for seed in (3,):
        world = _many_rules_world(seed, 2500)
        kinds.append(check_world(world, tmp_path / str(seed)))
        decisions, _ = reference_replay(world.scenario, world.traffic, world.outcomes, world.sheet)
        # Not only the default and the first rules: requests are spread over many plans.
        assert len({decision["plan"] for decision in decisions}) >= 5, world.describe()
    assert set(kinds) <= {"replayed", "skipped-some"}, kinds
