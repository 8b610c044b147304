"""The one admission rule: is a policy good enough, and which policy should ship?

Every place that says "meets the bar" (the ★ of `routesim replay`, the report's headline, `whatif`'s
cheapest, sweep calibration, lanes and the regression gate's bar check) asks `judge` here.

A pass rate of k passes in n requests is judged against a bar b at a confidence level (default 0.95) with
its Wilson score interval [low, high] (simulator.core.stats.wilson_interval):
- rule `lower_bound` (the default): *meets* when low >= b, *fails* when high < b, and *undecided* when
  the interval straddles b. `to_settle` says how many more requests, at the observed rate, would give an
  interval clear of the bar (None when the rate equals the bar: no number of requests settles it).
- rule `point`: *meets* when k / n >= b, else *fails*; the interval is still reported.

A policy's verdict is the worst of its scopes (overall against `quality_bar.default`, each slice against
its own bar): any *fails* makes it *fails*, else any *undecided* makes it *undecided*.

A policy is **deployable** when none of its predicates reads a grade: an outcome column not known when the
call returns (simulator.core.contract.grade_columns). A policy that reads one (an oracle gate such as
`accept: "passed"`) is a **bound**: what no deployable router can beat on these answers, never recommended.

`recommend` picks the policy to ship: the cheapest per request among those that are deployable, *meet*
every bar, were replayed on the same requests as the others they are ranked against, and, when a
baseline is named, pass the regression gate against it. Every other policy gets the reasons it was not
picked. The choice never depends on the order the policies are listed in: without a baseline they are
ranked on the largest request set, and when two different request sets tie for largest nothing is
recommended (policies replayed on different requests cannot be ranked against each other). Under the
`point` rule the recommendation says whether its intervals straddle a bar (`point_caveat`).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simulator.core.errors import RoutesimError
from simulator.core.formats import confidence_level, given, span_against

MEETS, FAILS, UNDECIDED = "meets", "fails", "undecided"
RULES = ("lower_bound", "point")
DEFAULT_RULE = "lower_bound"
DEFAULT_CONFIDENCE = 0.95
# Searching for the requests that settle a verdict stops here: beyond it the rate is all but the bar.
MAX_SETTLE = 10**12


class Admission(BaseModel):
    """How a pass rate is judged against a bar: `rule` and the interval's `confidence`. One per run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Literal["lower_bound", "point"] = DEFAULT_RULE
    confidence: float = Field(default=DEFAULT_CONFIDENCE, gt=0, lt=1)

    def describe(self) -> str:
        if self.rule == "point":
            return "the observed pass rate reaches the bar"
        return f"the {confidence_level(self.confidence)} Wilson lower bound of the pass rate reaches the bar"


DEFAULT_ADMISSION = Admission()


def resolve_admission(stated: list[tuple[str, Admission | None]], rule: str | None = None,
                      confidence: float | None = None) -> Admission:
    """The run's one admission setting: command-line `rule`/`confidence` override what scenarios state;
    scenarios of one run that state different settings are an error; else the defaults.

    `stated` holds (scenario name, its `admission` or None) for every scenario of the run.
    """
    given = [(name, admission) for name, admission in stated if admission is not None]
    if rule is None or confidence is None:
        for (first, a), (other, b) in zip(given, given[1:]):
            if (rule is None and a.rule != b.rule) or (confidence is None and a.confidence != b.confidence):
                raise RoutesimError(
                    f"scenarios '{first}' and '{other}' state different admission settings "
                    f"({a.rule} at {a.confidence:g} against {b.rule} at {b.confidence:g}); a run judges every "
                    "policy by one rule", where=f"scenario key 'admission' of '{first}' and '{other}'",
                    fix="state the same admission in both, or override it with --rule and --confidence")
    base = given[0][1] if given else DEFAULT_ADMISSION
    if rule is not None and rule not in RULES:
        raise RoutesimError(f"unknown admission rule '{rule}'", where="--rule", fix=f"use one of {', '.join(RULES)}")
    try:
        return Admission(rule=rule or base.rule, confidence=base.confidence if confidence is None else confidence)
    except ValueError:
        raise RoutesimError(f"confidence must lie strictly between 0 and 1, got {confidence!r}",
                            where="--confidence", fix="e.g. 0.95") from None


def _interval(passes: float, requests: float, confidence: float) -> tuple[float, float]:
    from simulator.core.stats import wilson_interval

    return wilson_interval(passes, requests, confidence)


def requests_to_settle(rate: float, requests: int, bar: float, confidence: float) -> int | None:
    """More requests (beyond `requests`) that, passing at `rate`, give a Wilson interval clear of `bar`.

    None when `rate` equals the bar (no number settles it) or the interval is already clear.
    """
    if math.isclose(rate, bar, rel_tol=0, abs_tol=1e-12):
        return None

    def clear(n: float) -> bool:
        low, high = _interval(rate * n, n, confidence)
        return low >= bar or high < bar

    if clear(requests):
        return None
    low, high = requests, max(2 * requests, 1)
    while not clear(high):
        low, high = high, high * 2
        if high > MAX_SETTLE:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if clear(middle) else (middle, high)
    return int(high - requests)


def admit(rate: float, low: float, high: float, bar: float, admission: Admission = DEFAULT_ADMISSION,
          requests: int = 1) -> str:
    """The admission rule itself: the state of a pass rate with interval [low, high] against `bar`.

    Every verdict goes through here, whether the interval is a Wilson interval of an exact replay (`judge`)
    or the interval of an estimate (`estimated_verdict`). No requests (`requests` 0) never meets.
    """
    if admission.rule == "point":
        return MEETS if requests and rate >= bar else FAILS
    if low >= bar and requests:
        return MEETS
    if high < bar:
        return FAILS
    return UNDECIDED


def judge(passes: int, requests: int, bar: float, admission: Admission = DEFAULT_ADMISSION) -> dict:
    """The verdict of `passes` out of `requests` against `bar`: state, rate, interval and what settles it."""
    rate = passes / requests if requests else 0.0
    low, high = _interval(passes, requests, admission.confidence)
    state = admit(rate, low, high, bar, admission, requests)
    return {"state": state, "passes": passes, "requests": requests, "pass_rate": rate, "low": low, "high": high,
            "bar": bar, "to_settle": (requests_to_settle(rate, requests, bar, admission.confidence)
                                      if state == UNDECIDED else None)}


def judge_estimate(rate: float, low: float | None, high: float | None, sampled: int, bar: float,
                   admission: Admission = DEFAULT_ADMISSION) -> dict:
    """The verdict of an estimated pass rate with its interval (a design-weighted estimate from `sampled`
    drawn requests) against `bar`, by the same rule as `judge`. An estimate without an interval is
    undecided under `lower_bound`. `to_settle` is None: more drawn requests, not more traffic, settle it."""
    low = rate if low is None else low
    high = rate if high is None else high
    state = admit(rate, low, high, bar, admission, sampled)
    return {"state": state, "passes": None, "requests": sampled, "pass_rate": rate, "low": low, "high": high,
            "bar": bar, "to_settle": None}


def passes_of(row: dict) -> int:
    """Passes from a row's `pass_rate` and `requests` (the rate is k / n in floating point; rounding gives k)."""
    return round(row["pass_rate"] * row["requests"]) if row["requests"] else 0


def worst(states: list[str]) -> str:
    return FAILS if FAILS in states else UNDECIDED if UNDECIDED in states else MEETS


def policy_verdict(summary: dict, default_bar: float, slice_bar, admission: Admission = DEFAULT_ADMISSION) -> dict:
    """Overall and per-slice verdicts of one policy.

    `summary` needs `requests`, `pass_rate` and `by_slice` (rows with `slice`, `requests`, `pass_rate`);
    `slice_bar(name)` gives a slice's bar. Returns `state`, `rule`, `confidence`, `overall` (a `judge`
    result) and `slices` (`judge` results with `slice`).
    """
    overall = judge(passes_of(summary), summary["requests"], default_bar, admission)
    slices = [{"slice": row["slice"], **judge(passes_of(row), row["requests"], slice_bar(row["slice"]), admission)}
              for row in summary["by_slice"]]
    return {"state": worst([overall["state"], *(s["state"] for s in slices)]), "rule": admission.rule,
            "confidence": admission.confidence, "overall": overall, "slices": slices}


def estimated_verdict(overall: dict, slices: list[dict], default_bar: float, slice_bar,
                      admission: Admission = DEFAULT_ADMISSION) -> dict:
    """Overall and per-slice verdicts of a policy whose pass rates are estimates with intervals.

    `overall` and each of `slices` (which also carry `slice`) hold `pass_rate`, `low`, `high` and `sampled`
    (the drawn requests behind it). Returns the same shape as `policy_verdict`, judged by `judge_estimate`.
    """
    def one(row: dict, bar: float) -> dict:
        return judge_estimate(row["pass_rate"], row["low"], row["high"], row["sampled"], bar, admission)

    first = one(overall, default_bar)
    per_slice = [{"slice": row["slice"], **one(row, slice_bar(row["slice"]))} for row in slices]
    return {"state": worst([first["state"], *(s["state"] for s in per_slice)]), "rule": admission.rule,
            "confidence": admission.confidence, "overall": first, "slices": per_slice}


def shortfalls(verdict: dict) -> list[dict]:
    """The scopes that do not meet their bar: `slice` (None overall), `state`, `pass_rate`, `low`, `high`, `bar`."""
    scopes = [{"slice": None, **verdict["overall"]}, *verdict["slices"]]
    return [{key: scope[key] for key in ("slice", "state", "pass_rate", "low", "high", "bar", "to_settle")}
            for scope in scopes if scope["state"] != MEETS]


def describe_shortfalls(failures: list[dict], limit: int | None = None) -> str:
    """'fails: faq, contract; undecided: overall (89.9–90.4% around 90.0%; ~55,000 more requests at this
    rate would settle it)'. With `limit`, at most that many names per state, then '+N more'."""
    parts = []
    for state in (FAILS, UNDECIDED):
        chosen = [f for f in failures if f.get("state", FAILS) == state]
        if not chosen:
            continue
        names = ["overall" if f["slice"] is None else f["slice"] for f in chosen]
        shown = names if limit is None else names[:limit]
        text = ", ".join(shown) + (f" +{len(names) - len(shown)} more" if len(names) > len(shown) else "")
        first = chosen[0]
        if state == UNDECIDED and first.get("low") is not None:
            settle = (f"; about {first['to_settle']:,} more request{'' if first['to_settle'] == 1 else 's'} at this "
                      "rate would settle it" if first.get("to_settle") else "")
            # Each end on its side of the bar: 89.97–97.5%, never 90.0–97.5% "around" a bar of 90.0%.
            text += (f" ({names[0]}: {span_against(first['low'], first['high'], first['bar'])} around the bar of "
                     f"{given(first['bar'])}{settle})")
        parts.append(f"{state}: {text}")
    return "; ".join(parts)


def straddling(verdict: dict) -> list[dict]:
    """The scopes of a `policy_verdict` whose interval straddles their bar, as `shortfalls` gives them with
    state *undecided*: what the `lower_bound` rule, at the verdict's confidence, would leave unsettled.

    Under the `point` rule a scope meets on its observed rate alone; these are the ones its interval does
    not settle. `to_settle` is counted for an exact replay's scope (one with `passes`), else None."""
    lower = Admission(rule="lower_bound", confidence=verdict.get("confidence", DEFAULT_CONFIDENCE))
    found = []
    for scope in [{"slice": None, **verdict["overall"]}, *verdict["slices"]]:
        requests = scope.get("requests", 1)
        if admit(scope["pass_rate"], scope["low"], scope["high"], scope["bar"], lower, requests) != UNDECIDED:
            continue
        settle = (requests_to_settle(scope["pass_rate"], requests, scope["bar"], lower.confidence)
                  if scope.get("passes") is not None else None)
        found.append({"slice": scope["slice"], "state": UNDECIDED, "pass_rate": scope["pass_rate"],
                      "low": scope["low"], "high": scope["high"], "bar": scope["bar"], "to_settle": settle})
    return found


def point_caveat(verdict: dict) -> str | None:
    """What a verdict that *meets* under the `point` rule rests on, in words: a point estimate, and whether
    its interval clears every bar or straddles some. None under `lower_bound`, whose *meets* already says
    the interval's lower end reaches every bar."""
    if verdict.get("rule") != "point":
        return None
    level = confidence_level(verdict.get("confidence", DEFAULT_CONFIDENCE))
    unsettled = straddling(verdict)
    if not unsettled:
        return f"a point estimate, and its {level} interval clears every bar too"
    # The same words as an undecided verdict's (describe_shortfalls), so the numbers read alike everywhere.
    return (f"a point estimate only: its {level} interval straddles the bar, so the lower_bound rule would leave "
            f"it {describe_shortfalls(unsettled)}")


def request_set(summary: dict) -> tuple:
    """What identifies the requests a policy was replayed on: policies are ranked only within one set."""
    provenance = summary["provenance"]
    return (provenance["data_fingerprint"], summary.get("requests_fingerprint"), summary["requests"])


def recommend(summaries: list[dict], *, baseline: str | None = None, gates: dict | None = None,
              cost_key: str = "cost_per_request_usd") -> dict:
    """The policy to ship, and for every policy why it is or is not the one.

    Each summary needs `scenario`, `verdict` (policy_verdict), `deployable`, the cost under `cost_key`, and
    `provenance`/`requests_fingerprint`/`requests` (request_set). `gates` maps scenario names to the gate's
    result against `baseline` (the baseline is not gated against itself; it stays eligible, `gate` True).
    Policies are ranked among those replayed on the baseline's requests (without a baseline: the largest
    request set; when different request sets tie for largest, none is ranked and nothing is recommended).

    Returns `policy` (None when nothing qualifies), `baseline`,
    `candidates`: per summary `scenario`, `state`, `deployable`, `comparable`, `gate` (True, False or None),
    `eligible` and `reasons` (why not, in words; empty for the recommended one), `closest` (when nothing
    qualifies: up to three names), `tied` (None, or when the largest request sets tie: `requests`, their
    size, and `sets`, each set's scenario names, sorted), `uncertainty` (`point_caveat` of the recommended
    policy's verdict, or None), `straddling` (under the point rule, the recommended policy's scopes whose
    interval straddles the bar, as `straddling` gives them; else empty) and `mixed_kinds`: when the
    policies ranked together have figures of different kinds (`kind`: exact, design-weighted, ...), each
    one's kind, so every view can say so; else None.
    """
    if not summaries:
        return {"policy": None, "baseline": baseline, "candidates": [], "closest": [], "tied": None,
                "uncertainty": None, "straddling": [], "mixed_kinds": None}
    sets = [request_set(summary) for summary in summaries]
    names = [summary["scenario"] for summary in summaries]
    tied = None
    if baseline is not None and baseline in names:
        target = sets[names.index(baseline)]
    else:
        largest = max(key[2] for key in sets)
        tops = list(dict.fromkeys(key for key in sets if key[2] == largest))
        target = tops[0] if len(tops) == 1 else None
        if target is None:
            # Picking one of equal-sized sets would rank by the order the policies were listed in, and call a
            # policy "the cheapest" beside a cheaper one on the other requests: rank none instead.
            tied = {"requests": largest, "sets": sorted(sorted(name for name, key in zip(names, sets) if key == top)
                                                        for top in tops)}
    ranked_size = target[2] if target is not None else tied["requests"]
    candidates = []
    for summary, key in zip(summaries, sets):
        name, verdict = summary["scenario"], summary["verdict"]
        reasons = []
        if not summary.get("deployable", True):
            reasons.append("a bound, not a policy: it reads the grade column(s) "
                           + ", ".join(summary.get("grade_columns_read", [])))
        if verdict["state"] != MEETS:
            reasons.append(describe_shortfalls(shortfalls(verdict)))
        comparable = key == target
        if tied is not None and key[2] == tied["requests"]:
            reasons.append(f"replayed on one of {len(tied['sets'])} different request sets tied for the largest "
                           f"({tied['requests']:,} requests), so not ranked")
        elif not comparable:
            reasons.append(f"replayed on other requests ({summary['requests']:,} against {ranked_size:,}), so not "
                           "ranked with the others")
        gate = None
        if baseline is not None and name != baseline:
            result = (gates or {}).get(name)
            gate = None if result is None else bool(result["passed"])
            if gate is False:
                failed = sorted({f["slice"] or "overall" for f in result["failures"]},
                                key=lambda s: (s != "overall", s))
                reasons.append(f"fails the regression gate against {baseline} in "
                               + (", ".join(failed[:3]) + (f" +{len(failed) - 3} more" if len(failed) > 3 else "")))
            elif gate is None and comparable:
                reasons.append(f"not gated against {baseline}")
        elif baseline is not None:
            gate = True
        candidates.append({"scenario": name, "state": verdict["state"], "deployable": summary.get("deployable", True),
                           "comparable": comparable, "gate": gate, "cost": summary[cost_key],
                           "eligible": not reasons, "reasons": reasons})
    eligible = [c for c in candidates if c["eligible"]]
    chosen = min(eligible, key=lambda c: (c["cost"], c["scenario"])) if eligible else None
    best = chosen["scenario"] if chosen else None
    for candidate in candidates:
        if candidate["eligible"] and candidate["scenario"] != best:
            candidate["reasons"].append(
                f"costs more per request than {best}" if candidate["cost"] != chosen["cost"]
                else f"costs the same per request as {best}; of equal costs the first by name is recommended")
    closest = [] if best else sorted(
        (c for c in candidates if c["comparable"] and c["deployable"]),
        key=lambda c: (len(c["reasons"]), {MEETS: 0, UNDECIDED: 1, FAILS: 2}[c["state"]], c["cost"]))[:3]
    chosen_verdict = summaries[names.index(best)]["verdict"] if best else None
    kinds = {summary["scenario"]: summary.get("kind", "exact")
             for summary, candidate in zip(summaries, candidates) if candidate["comparable"]}
    return {"policy": best, "baseline": baseline, "candidates": candidates,
            "closest": [c["scenario"] for c in closest], "tied": tied,
            "uncertainty": point_caveat(chosen_verdict) if best else None,
            "straddling": straddling(chosen_verdict) if best and chosen_verdict.get("rule") == "point" else [],
            "mixed_kinds": kinds if len(set(kinds.values())) > 1 else None}
