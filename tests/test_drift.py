"""Escalation drift: the CUSUM on hand-made series, the embedded week's mix shift, and a week without one."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from simulator.analyses import drift
from simulator.core.contract import load_data
from simulator.core.engine import replay
from simulator.core.prices import load_prices
from simulator.core.scenario import load_scenario
from simulator.datasets.generate import write_week

CASCADE = Path(__file__).resolve().parents[1] / "scenarios" / "cascade.yaml"
START = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)


def buckets(rates: list[float], requests: int = 1000) -> pl.DataFrame:
    return pl.DataFrame({"start": [START + dt.timedelta(hours=h) for h in range(len(rates))],
                         "requests": [requests] * len(rates),
                         "escalated": [round(rate * requests) for rate in rates]})


def test_cusum_by_hand():
    """Reference: the first 3 of 9 hours at 20% (p0 = 600.5 / 3001). From hour 6 the rate is 40%: each such
    hour adds 400 x ln(p1/p0) + 600 x ln((1-p1)/(1-p0)) with p1 = p0 + 0.05 > 0, so the alarm comes at hour
    6 and the rise is dated to its start; before it every hour at 20% adds a negative amount (S stays 0)."""
    found = drift.detect(buckets([0.2] * 6 + [0.4] * 3), "1h")
    p0 = 600.5 / 3001
    p1 = p0 + 0.05
    step = 400 * np.log(p1 / p0) + 600 * np.log((1 - p1) / (1 - p0))
    assert found["reference_rate"] == pytest.approx(0.2) and found["design_rate"] == pytest.approx(p1)
    assert found["reference_until"] == "2026-11-16T03:00:00Z"
    assert [row["cusum"] for row in found["statistic"]] == pytest.approx([0, 0, 0, step, 2 * step, 3 * step])
    assert found["alarm"] and found["alarm_at"] == "2026-11-16T06:00:00Z"
    assert found["started_at"] == "2026-11-16T06:00:00Z" and found["rate_since_start"] == pytest.approx(0.4)
    quiet = drift.detect(buckets([0.2] * 9), "1h")
    assert quiet["status"] == "tested" and not quiet["alarm"] and quiet["peak_statistic"] == 0.0
    assert drift.detect(buckets([0.2]), "1h")["status"] == "too few time buckets to test"


def test_threshold_is_seeded_and_grows_with_a_stricter_false_alarm_rate():
    monitored = np.full(100, 300.0)
    loose = drift.threshold(20_000, 0.25, monitored, drift.DriftSettings(false_alarm=0.05))
    strict = drift.threshold(20_000, 0.25, monitored, drift.DriftSettings(false_alarm=0.01))
    assert 0 < loose < strict
    assert strict == drift.threshold(20_000, 0.25, monitored, drift.DriftSettings(false_alarm=0.01))


def _cascade_decisions(folder: Path | None = None) -> pl.DataFrame:
    scenario = load_scenario(CASCADE)
    if folder is not None:
        scenario = scenario.model_copy(update={"data": folder})
    return replay(scenario, load_data(scenario.data), load_prices(scenario.prices)).decisions


def test_the_embedded_week_shows_the_late_week_mix_shift():
    """From 2026-11-21 the cascade's escalation rate climbs from about 27% to about 45%. The alarm comes on
    the day of the shift; the rise is dated from where the statistic last stood at 0, which the noise of
    the hours before can put a few hours early (on the embedded week: 2026-11-20 20:00)."""
    found = drift.cascade_drift(_cascade_decisions(), "default", "1h")["drift"]
    assert found["alarm"]
    assert "2026-11-20T18:00:00Z" <= found["started_at"] < "2026-11-21T06:00:00Z"
    assert found["alarm_at"].startswith("2026-11-21")
    assert 0.25 <= found["reference_rate"] <= 0.30 and found["rate_since_start"] >= 0.40


def test_the_same_test_on_failures_finds_the_late_week_drop_in_pass_rate():
    """The harder requests of the late week fail more often: the cascade's failures double from about 8.5%
    of requests, from 2026-11-21 on. The reference rate reported is the observed one; p0, the rate the test
    uses, is (escalated + 0.5) / (requests + 1)."""
    found = drift.cascade_drift(_cascade_decisions(), "default", "1h")
    failing = found["pass_rate_drift"]
    assert failing["alarm"] and failing["started_at"].startswith("2026-11-21")
    assert 0.07 <= failing["reference_rate"] <= 0.10 and failing["rate_since_start"] >= 0.15
    escalation = found["drift"]
    assert escalation["p0"] == pytest.approx(escalation["reference_rate"], abs=1e-4)
    assert escalation["p0"] != escalation["reference_rate"]


def test_a_week_without_mix_shift_raises_no_alarm(tmp_path):
    folder = tmp_path / "steady"
    write_week(folder, 20_000, 7, 2026, mix_shift=False)
    decisions = _cascade_decisions(folder)
    for every in ("1h", "6h", "1d"):
        found = drift.cascade_drift(decisions, "default", every)
        for test in (found["drift"], found["pass_rate_drift"]):
            assert test["status"] == "tested" and not test["alarm"], (every, test["peak_statistic"], test["threshold"])


def test_drift_command(cli):
    result = cli("drift", CASCADE, "--every", "1d")
    assert result.code == 0, result.err
    assert "sustained rise from 2026-11-21" in result.out and "ALARM" in result.out
    header = next(line for line in result.out.splitlines() if "CUSUM" in line and "from (UTC)" in line)
    assert header.replace("┃", " ").split()[-1] == "alarm"  # every column is named, the notes' one too
    result = cli("drift", CASCADE, "--every", "6h", "--json")
    [cascade] = json.loads(result.out)["cascades"]
    assert cascade["drift"]["alarm"] and len(cascade["series"]) == 28


@pytest.mark.parametrize(("args", "message"), [
    (["--every", "hourly"], "cannot read the bucket size"),
    (["--false-alarm", "0.7"], "false-alarm rate must lie"),
    (["--reference-share", "1"], "reference share must lie"),
    (["--min-rise", "0"], "rise to detect must lie"),
])
def test_drift_bad_input(cli, args, message):
    result = cli("drift", CASCADE, *args)
    assert result.code == 2 and message in result.err, result.err


def test_no_alarm_from_one_escalation_after_a_reference_without_any():
    """A reference with no escalation must not set a zero threshold: a lone escalation later is no rise."""
    rates = [0.0] * 6 + [0.25] + [0.0] * 5  # 4 requests an hour: one escalation in hour 6
    found = drift.detect(buckets(rates, requests=4), "1h")
    assert found["status"] == "tested" and not found["alarm"]


def test_threshold_is_written_as_used_two_decimals_rounded_up():
    """h is printed with two decimals; it is rounded up to them so the printed h is the h of the decision."""
    monitored = np.full(100, 300.0)
    h = drift.threshold(20_000, 0.25, monitored, drift.DriftSettings(false_alarm=0.01))
    assert h == round(h, 2) and h > 0


def test_drift_prints_its_settings_as_given(cli):
    """--false-alarm 0.005 is 0.5% (not 0%), --min-rise 0.025 2.5 points (not 2), in the caption and the h line."""
    result = cli("drift", CASCADE, "--every", "1d", "--false-alarm", "0.005", "--min-rise", "0.025")
    assert result.code == 0, result.err
    text = " ".join(result.out.split())
    assert "false-alarm rate 0.5%" in text and "false-alarm rate 0%" not in text
    assert "designed for a rise of 2.5 points" in text
    assert "for a 0.5% false-alarm rate" in text


def test_a_statistic_just_below_h_does_not_print_as_h(cli, monkeypatch):
    """A CUSUM within 0.005 below h would print equal to h with two decimals: it is written against h."""
    [cascade] = json.loads(cli("drift", CASCADE, "--every", "1h", "--json").out)["cascades"]
    below = next(row["cusum"] for row in cascade["drift"]["statistic"] if round(row["cusum"], 2) > row["cusum"])
    h = round(below, 2)
    monkeypatch.setattr(drift, "threshold", lambda *args, **kwargs: h)
    result = cli("drift", CASCADE, "--every", "1h")
    assert result.code == 0, result.err
    assert f"h = {h:.2f}" in result.out
    cells = [line.split("│")[-3].strip() for line in result.out.splitlines() if line.count("│") > 6]
    assert f"{h:.2f}" not in cells and any(cell.startswith(f"{below:.3f}"[:5]) for cell in cells), cells
