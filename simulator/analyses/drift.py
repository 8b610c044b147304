"""Escalation drift: a cascade's escalation rate, pass rate and cost over time, and a test for a sustained rise.

The test is a one-sided Bernoulli CUSUM on escalations, run over time buckets. Modelling assumptions:

- Requests of the cascade's plan escalate independently, with a rate p0 that holds through the reference
  part of the window: the buckets that start in its first `reference_share` (default a third) of the span
  from the first bucket's start to the last bucket's end. p0 is estimated as (escalated + 0.5) /
  (requests + 1) there, which stays inside 0..1.
- The rise the test is designed to find is p1 = p0 + `min_rise` (default 5 percentage points; capped at
  (1 + p0) / 2). Each monitored bucket adds the log-likelihood ratio of its counts, w = e x ln(p1 / p0) +
  (n - e) x ln((1 - p1) / (1 - p0)) for e escalations of n requests, and the statistic is the running sum
  minus its running minimum (the CUSUM recursion S = max(0, S + w), computed with cumulative sums). An alarm
  is raised at the first bucket where S exceeds the threshold h.
- h is set for a stated false-alarm rate (`false_alarm`, default 1%): the probability of any alarm in the
  monitored part of the window when nothing changed. It is the (1 - false_alarm) quantile of the largest S
  over seeded simulations of the window under no change, with the observed request counts per bucket and
  the reference re-estimated in each simulation, so the uncertainty of p0 is part of the rate, rounded up to two
  decimals (the h printed is the h used). The same
  inputs give the same h.
- The rise is taken to have started just after the last bucket before the alarm where the running sum was
  at its minimum (where S last stood at 0): the usual CUSUM estimate of the change point.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import numpy as np
import polars as pl

from simulator.core.errors import RoutesimError
from simulator.core.formats import given
from simulator.core.metrics import grouped
from simulator.core.prices import usd, usd_per_row

REFERENCE_SHARE = 1 / 3
MIN_RISE = 0.05
FALSE_ALARM = 0.01
SIMULATIONS = 4000
SEED = 20261121
EVERY_PATTERN = re.compile(r"^[1-9][0-9]*(m|h|d|w)$")
EVERY_SECONDS = {"m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
ISO = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class DriftSettings:
    reference_share: float = REFERENCE_SHARE
    min_rise: float = MIN_RISE
    false_alarm: float = FALSE_ALARM
    simulations: int = SIMULATIONS

    def check(self) -> DriftSettings:
        if not 0 < self.reference_share < 1:
            raise RoutesimError(f"the reference share must lie strictly between 0 and 1, got {self.reference_share}",
                                where="--reference-share", fix="e.g. 0.33 for the first third of the window")
        if not 0 < self.min_rise < 1:
            raise RoutesimError(f"the rise to detect must lie strictly between 0 and 1, got {self.min_rise}",
                                where="--min-rise", fix="e.g. 0.05 for 5 percentage points")
        if not 0 < self.false_alarm < 0.5:
            raise RoutesimError(f"the false-alarm rate must lie strictly between 0 and 0.5, got {self.false_alarm}",
                                where="--false-alarm", fix="e.g. 0.01 for 1%")
        return self


def check_every(every: str) -> str:
    if not EVERY_PATTERN.match(every or ""):
        raise RoutesimError(f"cannot read the bucket size {every!r}", where="--every",
                            fix="a number and a unit: m (minutes), h (hours), d (days) or w (weeks), e.g. 1h")
    return every


def every_seconds(every: str) -> int:
    return int(every[:-1]) * EVERY_SECONDS[every[-1]]


def series(rows: pl.DataFrame, every: str) -> pl.DataFrame:
    """Per bucket of `every` (UTC): requests, escalations, passes, cost, and their rates."""
    return (grouped(rows, pl.col("ts").dt.truncate(every).alias("start"),
                    [pl.len().cast(pl.Int64).alias("requests"),
                     pl.col("escalated").sum().cast(pl.Int64).alias("escalated"),
                     pl.col("passed").sum().cast(pl.Int64).alias("passed"),
                     pl.col("cost_nano_usd").sum().alias("cost_nano_usd")])
            .with_columns(usd(pl.col("cost_nano_usd")).alias("cost_usd"),
                          (pl.col("escalated") / pl.col("requests")).alias("escalation_rate"),
                          (pl.col("passed") / pl.col("requests")).alias("pass_rate"),
                          usd_per_row(pl.col("cost_nano_usd"), pl.col("requests")).alias("cost_per_request_usd"))
            .drop("cost_nano_usd"))


def _log_ratios(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.log(p1 / p0), np.log((1 - p1) / (1 - p0))


def _design(escalated: np.ndarray, requests: np.ndarray, min_rise: float) -> tuple[np.ndarray, np.ndarray]:
    p0 = (escalated + 0.5) / (requests + 1.0)
    return p0, np.minimum(p0 + min_rise, (1 + p0) / 2)


def _cusum(increments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S = running sum minus its running minimum (0 included), along the last axis; and the running sum."""
    running = np.cumsum(increments, axis=-1)
    floor = np.minimum(np.minimum.accumulate(running, axis=-1), 0.0)
    return running - floor, running


def threshold(reference_requests: int, reference_rate: float, monitored: np.ndarray, settings: DriftSettings
              ) -> float:
    """h for the stated false-alarm rate, by seeded simulation of the window with no change (module doc)."""
    rng = np.random.default_rng(SEED)
    sims = settings.simulations
    reference = rng.binomial(reference_requests, reference_rate, size=sims)
    p0, p1 = _design(reference.astype(np.float64), float(reference_requests), settings.min_rise)
    up, down = _log_ratios(p0, p1)
    escalated = rng.binomial(monitored.astype(np.int64)[None, :], reference_rate, size=(sims, monitored.size)).astype(np.float64)
    increments = escalated * up[:, None] + (monitored[None, :] - escalated) * down[:, None]
    peaks = _cusum(increments)[0].max(axis=1)
    # Rounded up to the two decimals it is printed with, so the h a reader sees is the h the test uses (a
    # statistic printed beside it is then on its true side); rounding up only lowers the false-alarm rate.
    quantile = Decimal(repr(float(np.quantile(peaks, 1 - settings.false_alarm, method="higher"))))
    return float(quantile.quantize(Decimal("0.01"), rounding=ROUND_CEILING))


def _iso(value: dt.datetime) -> str:
    return value.strftime(ISO)


def detect(buckets: pl.DataFrame, every: str, settings: DriftSettings = DriftSettings()) -> dict:
    """The CUSUM test on a bucketed series (from `series`); JSON-ready."""
    settings = settings.check()
    result: dict = {"test": "one-sided Bernoulli CUSUM", "every": every, "false_alarm": settings.false_alarm,
                    "min_rise": settings.min_rise, "reference_share": settings.reference_share, "alarm": False}
    if buckets.height < 2:
        return result | {"status": "too few time buckets to test"}
    starts = buckets["start"]
    span_end = starts.max() + dt.timedelta(seconds=every_seconds(every))
    split = starts.min() + (span_end - starts.min()) * settings.reference_share
    is_reference = (starts < split).to_numpy()
    requests = buckets["requests"].to_numpy().astype(np.float64)
    escalated = buckets["escalated"].to_numpy().astype(np.float64)
    monitored = ~is_reference
    reference_requests = int(requests[is_reference].sum())
    if reference_requests == 0 or not monitored.any():
        return result | {"status": "no requests in the reference part, or nothing after it"}
    # Simulate at the smoothed reference rate, never at 0: with no escalation in the reference a raw rate
    # of 0 would make every simulated week quiet and the threshold 0, so one escalation would alarm.
    reference_rate = float(escalated[is_reference].sum() / reference_requests)
    p0, p1 = _design(escalated[is_reference].sum(), float(reference_requests), settings.min_rise)
    up, down = _log_ratios(p0, p1)
    increments = escalated[monitored] * up + (requests[monitored] - escalated[monitored]) * down
    statistic, running = _cusum(increments)
    h = threshold(reference_requests, float(p0), requests[monitored], settings)
    monitored_starts = starts.filter(pl.Series(monitored))
    result |= {
        "status": "tested",
        "reference_until": _iso(monitored_starts[0]),
        "reference_requests": reference_requests,
        "reference_rate": reference_rate,  # observed: escalated / requests in the reference part
        "p0": float(p0),  # what the test uses: (escalated + 0.5) / (requests + 1), never 0
        "design_rate": float(p1),
        "threshold": h,
        "monitored_requests": int(requests[monitored].sum()),
        "monitored_rate": float(escalated[monitored].sum() / requests[monitored].sum()),
        "peak_statistic": float(statistic.max()),
        "statistic": [{"start": _iso(start), "cusum": float(value)} for start, value in zip(monitored_starts, statistic)],
    }
    # Strictly above h: P(max S > h) <= false_alarm for the (1 - false_alarm) quantile h, even where h is 0.
    crossed = np.flatnonzero(statistic > h)
    if crossed.size == 0:
        return result
    alarm = int(crossed[0])
    # The change point: just after the running sum's last minimum (0 before monitoring) up to the alarm.
    sums = np.concatenate([[0.0], running[: alarm + 1]])
    lowest = int(len(sums) - 1 - np.argmin(sums[::-1]))  # the last index of the minimum
    began = lowest  # bucket index (in the monitored part) where the rise starts
    since = slice(began, None)
    return result | {
        "alarm": True,
        "alarm_at": _iso(monitored_starts[alarm]),
        "alarm_bucket_end": _iso(monitored_starts[alarm] + dt.timedelta(seconds=every_seconds(every))),
        "started_at": _iso(monitored_starts[began]),
        "rate_since_start": float(escalated[monitored][since].sum() / max(requests[monitored][since].sum(), 1.0)),
    }


def failure_drift(buckets: pl.DataFrame, every: str, settings: DriftSettings = DriftSettings()) -> dict:
    """The same test on failures (requests that did not pass) instead of escalations: a sustained drop in
    pass rate. `buckets` come from `series`."""
    failures = buckets.select("start", "requests", (pl.col("requests") - pl.col("passed")).alias("escalated"))
    return detect(failures, every, settings)


def cascade_drift(decisions: pl.DataFrame, plan: str, every: str, settings: DriftSettings = DriftSettings()) -> dict:
    """Series and tests (escalations, and failures) for the requests of one multi-step plan."""
    rows = decisions.filter(pl.col("plan") == plan)
    buckets = series(rows, every)
    found = detect(buckets, every, settings)
    table = buckets.with_columns(pl.col("start").dt.strftime(ISO)).to_dicts()
    return {"plan": plan, "requests": rows.height, "series": table, "drift": found,
            "pass_rate_drift": failure_drift(buckets, every, settings)}


def describe(found: dict) -> str:
    """One sentence on a test result, for the CLI and the report. The false-alarm rate is written as it was
    given (0.005 reads 0.5%, not 0%)."""
    if found.get("status") != "tested":
        return f"not tested: {found.get('status', 'no result')}"
    reference = f"reference {found['reference_rate']:.1%} until {found['reference_until'][:16].replace('T', ' ')}"
    false_alarm = given(found["false_alarm"])
    if not found["alarm"]:
        return f"no sustained rise ({reference}; {found['monitored_rate']:.1%} since; false-alarm rate {false_alarm})"
    return (f"sustained rise from {found['started_at'][:16].replace('T', ' ')} UTC "
            f"(alarm in the bucket from {found['alarm_at'][:16].replace('T', ' ')}): {found['reference_rate']:.1%} "
            f"→ {found['rate_since_start']:.1%}; {reference}, false-alarm rate {false_alarm}")
