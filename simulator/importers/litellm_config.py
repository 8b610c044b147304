"""LiteLLM router configs in and out: a proxy `config.yaml` as a scenario, and a scenario as a config.

What maps, in both directions (the README's "LiteLLM router configs" has the table):
- A model group (`model_name`) is a routesim model of the same name. Requests enter at one group (`entry`,
  by default the first in `model_list`), as the client names it.
- Tag routing (`router_settings.enable_tag_filtering` and `litellm_params.tags` on the entry group's
  deployments): each tagged deployment is a routesim model named by its `model_info.id` (else its
  `litellm_params.model`), and each of its tags a rule `TAG_COLUMN = 'TAG'`; the deployment tagged
  `default` is the default plan. A request carries one tag, in the traffic column `tag_column`.
- `num_retries` retries the entry group on an error, then `fallbacks` of the entry group are tried in
  order: a routesim retry `when: "error_type IS NOT NULL"`, `to: [ENTRY x num_retries, FALLBACK...]`.
  `context_window_fallbacks` alone map to `when: "error_type = 'context_window'"`. A retry of the same
  model reads its next sample, as any routesim retry does.
- Deployment `rpm` and `tpm` (in `litellm_params` or beside it) are the scenario's `capacity`, summed over
  a group's deployments.

Anything else (load balancing across different models, a retry with tag routing, content-policy and
default fallbacks, the auto/complexity router, fallbacks of groups other than the entry) is named in the
import's notes or, on export, refused with the construct named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from simulator.core.errors import RoutesimError, did_you_mean
from simulator.core.scenario import Scenario

ON_ERROR = "error_type IS NOT NULL"
ON_CONTEXT_WINDOW = "error_type = 'context_window'"
DEFAULT_TAG = "default"
TAG_RULE = re.compile(r"""^\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_]*)\s*=\s*'((?:[^']|'')*)'\s*$""")


@dataclass
class Converted:
    """The result of a conversion and what it could not express."""

    content: dict
    notes: list[str] = field(default_factory=list)


def _identifier(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _settings(config: dict, key: str, where: str):
    """A router setting: `router_settings` first, then `litellm_settings`, as the proxy reads them."""
    for section in ("router_settings", "litellm_settings"):
        block = config.get(section) or {}
        if not isinstance(block, dict):
            raise RoutesimError(f"'{section}' must be a mapping", where=where, fix="see LiteLLM's proxy config docs")
        if block.get(key) is not None:
            return block[key]
    return None


def _fallbacks_of(config: dict, key: str, group: str, where: str) -> tuple[list[str], list[str]]:
    """The fallback groups listed for `group`, and the groups with fallbacks of their own (not followed)."""
    listed = _settings(config, key, where) or []
    mine, others = [], []
    for entry in listed:
        if not isinstance(entry, dict):
            raise RoutesimError(f"each of '{key}' must be a mapping {{group: [fallbacks]}}", where=where,
                                fix=f"write {key}: [{{\"{group}\": [\"other-group\"]}}]")
        for source, targets in entry.items():
            targets = [targets] if isinstance(targets, str) else list(targets or [])
            (mine.extend(targets) if source == group else others.append(str(source)))
    return mine, others


def _deployments(config: dict, where: str) -> list[dict]:
    models = config.get("model_list")
    if not isinstance(models, list) or not models:
        raise RoutesimError("the config has no 'model_list'", where=where,
                            fix="give a LiteLLM proxy config.yaml with a model_list of deployments")
    for index, deployment in enumerate(models):
        if not isinstance(deployment, dict) or not isinstance(deployment.get("model_name"), str):
            raise RoutesimError(f"model_list[{index}] has no 'model_name'", where=where,
                                fix="every deployment names its model group in model_name")
    return models


def _params(deployment: dict) -> dict:
    return deployment.get("litellm_params") or {}


def _limit(deployment: dict, key: str) -> int | None:
    value = _params(deployment).get(key, deployment.get(key))
    return int(value) if value is not None else None


def _deployment_name(deployment: dict) -> str:
    return str((deployment.get("model_info") or {}).get("id") or _params(deployment).get("model"))


def _capacity(named: list[tuple[str, dict]]) -> dict:
    """rpm/tpm per routesim model, summed over the deployments behind it."""
    capacity: dict[str, dict] = {}
    for name, deployment in named:
        for key in ("rpm", "tpm"):
            value = _limit(deployment, key)
            if value is not None:
                limits = capacity.setdefault(name, {})
                limits[key] = limits.get(key, 0) + value
    return capacity


def config_to_scenario(config: dict, *, name: str, data: str, prices: str | None = None, entry: str | None = None,
                       tag_column: str = "tag", where: str = "config") -> Converted:
    """A LiteLLM proxy config (parsed YAML) as scenario content, with notes on what it could not express."""
    if not isinstance(config, dict):
        raise RoutesimError("a LiteLLM config is a YAML mapping", where=where, fix="give the proxy's config.yaml")
    deployments = _deployments(config, where)
    groups = list(dict.fromkeys(d["model_name"] for d in deployments))
    entry = entry or groups[0]
    if entry not in groups:
        raise RoutesimError(f"no model group '{entry}' in the config.{did_you_mean(entry, groups)}", where="--entry",
                            fix=f"model groups: {', '.join(groups)}")
    notes: list[str] = []
    tagging = bool(_settings(config, "enable_tag_filtering", where))
    mine = [d for d in deployments if d["model_name"] == entry]
    tagged = tagging and any(_params(d).get("tags") for d in mine)
    rules, default, named = [], entry, []
    for group in groups:
        members = [d for d in deployments if d["model_name"] == group]
        if any(str(_params(d).get("model", "")).startswith("auto_router/") for d in members):
            notes.append(f"group '{group}' is LiteLLM's auto (complexity) router: not expressed; it is replayed "
                         "as a model of that name")
        if group == entry and tagged:
            continue
        if len({_params(d).get("model") for d in members}) > 1:
            notes.append(f"group '{group}' balances load across {len(members)} deployments of different models: "
                         "routesim replays the group as one model named '{group}'")
        named += [(group, d) for d in members]
    if tagged:
        defaults = []
        for deployment in mine:
            model, tags = _deployment_name(deployment), list(_params(deployment).get("tags") or [])
            named.append((model, deployment))
            for tag in tags:
                if tag == DEFAULT_TAG:
                    defaults.append(model)
                else:
                    rules.append({"name": f"tag {tag}", "when": f"{_identifier(tag_column)} = {_literal(tag)}",
                                  "use": model})
        if defaults:
            default = defaults[0]
            if len(defaults) > 1:
                notes.append(f"several deployments are tagged 'default' ({', '.join(defaults)}): untagged requests "
                             f"go to the first, {default}")
        else:
            default = _deployment_name(mine[0])
            notes.append(f"no deployment of '{entry}' is tagged 'default': LiteLLM balances untagged requests "
                         f"across all of them; routesim sends them to the first, {default}")
    elif len(mine) > 1 and any(_params(d).get("tags") for d in mine):
        notes.append("deployments carry tags but enable_tag_filtering is off: tags ignored, as LiteLLM does")
    retries = int(_settings(config, "num_retries", where) or 0)
    fallbacks, other_groups = _fallbacks_of(config, "fallbacks", entry, where)
    window, window_others = _fallbacks_of(config, "context_window_fallbacks", entry, where)
    for key in ("content_policy_fallbacks", "default_fallbacks"):
        if _settings(config, key, where):
            notes.append(f"{key}: not expressed")
    if sorted(set(other_groups + window_others)):
        notes.append("fallbacks of groups other than the entry group ("
                     + ", ".join(sorted(set(other_groups + window_others))) + "): not used, requests enter at "
                     f"'{entry}'")
    if tagged and retries:
        notes.append(f"num_retries: {retries} with tag routing: not expressed (a retry of the same deployment "
                     "differs per tag); the fallbacks are kept")
        retries = 0
    retry = None
    if retries or fallbacks:
        retry = {"when": ON_ERROR, "to": [default] * retries + fallbacks}
        if window:
            notes.append("context_window_fallbacks beside fallbacks or retries: not expressed (one retry list "
                         "serves every error)")
    elif window:
        retry = {"when": ON_CONTEXT_WINDOW, "to": window}
    missing = sorted({m for m in (retry or {}).get("to", []) if m not in groups and m not in {n for n, _ in named}})
    if missing:
        raise RoutesimError(f"fallback group(s) not in model_list: {', '.join(missing)}", where=where,
                            fix="add the group to model_list or drop it from the fallbacks")
    policy: dict = {}
    if rules:
        policy["rules"] = rules
    policy["default"] = {"use": default}
    if retry:
        policy["retry"] = retry
    content = {"name": name, "description": f"LiteLLM router config, requests entering at model group '{entry}'",
               "data": data}
    if prices:
        content["prices"] = prices
    content["policy"] = policy
    capacity = _capacity(named)
    if capacity:
        content["capacity"] = capacity
    return Converted(content=content, notes=notes)


def _tag_rules(scenario: Scenario) -> tuple[str | None, list[tuple[str, str]], list[str]]:
    """(column, [(tag, model)], problems) when every rule is `COLUMN = 'VALUE'` with `use: MODEL`."""
    column, pairs, problems = None, [], []
    for index, rule in enumerate(scenario.policy.rules):
        match = TAG_RULE.match(rule.when)
        label = f"policy.rules[{index}]"
        if rule.cascade is not None:
            problems.append(f"{label}: a cascade (LiteLLM sends a request to one group and falls back only on "
                            "errors; it cannot accept or escalate by an answer's content)")
        if not match:
            problems.append(f"{label}: the rule '{rule.when}' is not COLUMN = 'VALUE' (LiteLLM routes by one "
                            "request tag)")
            continue
        found = match.group(1)
        found = found[1:-1].replace('""', '"') if found.startswith('"') else found
        if column not in (None, found):
            problems.append(f"{label}: rules read two columns ({column}, {found}); LiteLLM routes by one tag")
        column = found
        if rule.use is not None:
            pairs.append((match.group(2).replace("''", "'"), rule.use))
    return column, pairs, problems


def _retry_shape(scenario: Scenario, default: str, tagged: bool) -> tuple[dict, list[str]]:
    retry = scenario.policy.retry
    if retry is None:
        return {}, []
    problems = []
    if retry.max_attempts is not None and retry.max_attempts < len(retry.to):
        problems.append("policy.retry.max_attempts: LiteLLM tries every fallback it lists")
    targets = list(retry.to)
    repeats = 0
    while not tagged and repeats < len(targets) and targets[repeats] == default:
        repeats += 1
    rest = targets[repeats:]
    if (not tagged and default in rest) or len(set(rest)) < len(rest):
        problems.append("policy.retry.to: a model listed twice among the fallbacks (LiteLLM retries a group "
                        "num_retries times before its fallbacks, and tries each fallback once)")
    normalised = " ".join(retry.when.split())
    if normalised == ON_ERROR:
        settings = {"num_retries": repeats} if repeats else {}
        if rest:
            settings["fallbacks"] = rest
        return settings, problems
    if normalised == ON_CONTEXT_WINDOW and not repeats:
        return {"context_window_fallbacks": rest}, problems
    problems.append(f"policy.retry.when: '{retry.when}' (LiteLLM falls back on errors: write "
                    f"\"{ON_ERROR}\", or \"{ON_CONTEXT_WINDOW}\" for context-window fallbacks)")
    return {}, problems


def scenario_to_config(scenario: Scenario, *, deployments: dict[str, str], group: str | None = None) -> Converted:
    """A scenario as a LiteLLM proxy config. `deployments` maps a routesim model to its provider model
    (`openai/gpt-4o-mini`); a model whose name already holds a `/` is its own provider model.

    Raises RoutesimError naming every construct LiteLLM cannot express, and every model without a provider
    model.
    """
    policy = scenario.policy
    problems = []
    if policy.default.cascade is not None:
        problems.append("policy.default: a cascade (LiteLLM cannot accept or escalate by an answer's content, "
                        "e.g. a confidence-gated cascade)")
    if policy.sticky == "session":
        problems.append("policy.sticky: session (LiteLLM routes each request on its own, not a conversation's "
                        "later turns after its first)")
    column, pairs, rule_problems = _tag_rules(scenario)
    problems += rule_problems
    default = policy.default.use or policy.default.steps[0].calls[0]
    tagged = bool(policy.rules)
    retry_settings, retry_problems = _retry_shape(scenario, default, tagged)
    problems += retry_problems
    if problems:
        raise RoutesimError("LiteLLM cannot express this scenario:\n  - " + "\n  - ".join(problems),
                            where=f"scenario '{scenario.name}'",
                            fix="export lanes (rules COLUMN = 'VALUE' with use: MODEL), a single model, and a retry "
                                f"when: \"{ON_ERROR}\" as fallbacks")
    models = list(dict.fromkeys([*(model for _, model in pairs), default, *policy.models()]))
    unnamed = [model for model in models if model not in deployments and "/" not in model]
    if unnamed:
        raise RoutesimError(f"no provider model for {', '.join(unnamed)}", where="--deployment",
                            fix="name each, e.g. --deployment " + f"{unnamed[0]}=openai/gpt-4o-mini")

    def deployment(model_name: str, model: str, **extra) -> dict:
        params = {"model": deployments.get(model, model), **extra}
        limit = scenario.capacity.get(model)
        if limit is not None:
            params |= {key: value for key, value in (("rpm", limit.rpm), ("tpm", limit.tpm)) if value is not None}
        return {"model_name": model_name, "litellm_params": params}

    model_list: list[dict] = []
    router: dict = {}
    notes = []
    if tagged:
        entry = group or scenario.name
        tags: dict[str, list[str]] = {}
        for tag, model in pairs:
            if not any(tag in values for values in tags.values()):  # a repeated value never matches again
                tags.setdefault(model, []).append(tag)
        tags.setdefault(default, []).append(DEFAULT_TAG)
        for model, values in tags.items():
            model_list.append(deployment(entry, model, tags=values) | {"model_info": {"id": model}})
        router["enable_tag_filtering"] = True
        notes.append(f"requests must carry metadata tags with the value of their '{column}' column; untagged "
                     f"requests go to {default}")
    else:
        entry = default
        model_list.append(deployment(entry, default))
    for model in dict.fromkeys(retry_settings.get("fallbacks", []) + retry_settings.get("context_window_fallbacks", [])):
        if model not in {d["model_name"] for d in model_list}:
            model_list.append(deployment(model, model))
    if "num_retries" in retry_settings:
        router["num_retries"] = retry_settings["num_retries"]
    for key in ("fallbacks", "context_window_fallbacks"):
        if retry_settings.get(key):
            router[key] = [{entry: retry_settings[key]}]
    config = {"model_list": model_list}
    if router:
        config["router_settings"] = router
    return Converted(content=config, notes=notes)
