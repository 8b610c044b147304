"""How routesim writes numbers: the terminal table, the HTML report, and the browser tests that check it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal

DASH = "–"
WIDE = Context(prec=400)  # decimal digits enough for any float64 written in full


def usd(value: float | None, decimals: int | None = None) -> str:
    """Dollars: cents from $1 up, four decimals below, and enough decimals to show a tiny amount; `decimals`
    (from `usd_decimals`) writes every amount of a column with the same number.

    The one dollar formatter of every output. It rounds the value's shortest decimal form (repr) half to
    even, as money is rounded (simulator.core.money), not its binary approximation: 0.02175 (held as
    0.0217499999...) and the same amount an ulp off (0.021750000000000002) both show as $0.0218.
    """
    if value is None:
        return DASH
    sign = "−" if value < 0 else ""
    value = abs(value)
    if value == 0:
        return "$0.00"
    decimals = _usd_decimals(value) if decimals is None else decimals
    # In a context wide enough for any float64 (up to 309 integer digits): the default 28 digits refuse to
    # round a huge amount (a budget of 1e308 given on the command line) to cents.
    rounded = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN,
                                                   context=WIDE)
    if not rounded:
        return "$0.00"
    return f"{sign}${rounded:,.{decimals}f}"


def _usd_decimals(value: float) -> int:
    value = abs(value)
    return 2 if value >= 1 else min(8, max(4, 2 - math.floor(math.log10(value))))


def usd_decimals(values) -> int:
    """The decimals `usd` gives the smallest nonzero amount of `values` (2 when there is none). Passed to
    `usd`, every amount of a column is written to one precision: $1.2963 above $0.9898, not $1.30."""
    return max((_usd_decimals(value) for value in values if value), default=2)


def pct(value: float | None, decimals: int | None = None) -> str:
    """A share with one decimal (or `decimals`); a share too small for one (20 retries in 50,000) keeps two
    significant digits, so it never reads as 0.0%."""
    if value is None:
        return DASH
    if decimals is None and 0 < abs(value) < 0.0005:
        return f"{value * 100:.2g}%".replace("-", "−")
    return _fixed(value, "pct", decimals)


@dataclass(frozen=True)
class _Unit:
    """How a figure of one unit is written: `scale` turns the value into the printed number (100 for a share
    written in percent), with `decimals` by default, then `suffix`; `signed` writes + on a rise, `grouped`
    thousands separators. Dollars are written by `usd`, which rounds as money is."""

    scale: int
    decimals: int
    suffix: str = ""
    signed: bool = False
    grouped: bool = False


UNITS = {"pct": _Unit(100, 1, "%"), "signed_pct": _Unit(100, 1, "%", signed=True),
         "points": _Unit(100, 1, " pts", signed=True), "ms": _Unit(1, 0, " ms", grouped=True),
         "signed_ms": _Unit(1, 0, " ms", signed=True, grouped=True), "usd": _Unit(1, 2), "number": _Unit(1, 2)}


def _fixed(value: float | None, unit: str, decimals: int | None = None) -> str:
    """`value` in `unit` with `decimals` (the unit's own by default), with a true minus sign."""
    if value is None:
        return DASH
    spec = UNITS[unit]
    places = spec.decimals if decimals is None else decimals
    text = f"{value * spec.scale:{'+' if spec.signed else ''}{',' if spec.grouped else ''}.{places}f}"
    if float(text.replace(",", "")) == 0:  # no sign on a zero: −0.0% reads as a loss
        text = text.lstrip("+-")
    return text.replace("-", "−") + spec.suffix


def _decimals(text: str) -> int:
    """How many decimals a written figure shows ('89.96%' -> 2, '+450 ms' -> 0)."""
    return len(re.sub(r"[^0-9.]", "", text).partition(".")[2])


def _number(text: str) -> Decimal:
    """The number a written figure shows ('−1,234.5 ms' -> -1234.5, '$0.0012' -> 0.0012, '+12.5%' -> 12.5)."""
    return Decimal(re.sub(r"[^0-9.e+-]", "", text.replace("−", "-")))


def given(value: float | None, unit: str = "pct") -> str:
    """A threshold (a quality bar, a tolerance, a budget, a target) as it was given: with the fewest decimals,
    at least the unit's own (2 for dollars) and at most six more than usual, that write its shortest decimal
    form (repr) in `unit` (a key of UNITS) exactly. A cost budget of 0.1883 reads '+18.83%' in signed_pct, a
    p95 budget of 449.6 '+449.6 ms' in signed_ms, a bar of 0.9 '90.0%' in pct, a tolerance of 1e-6 USD
    '$0.000001'; a value with no such form (binary noise, 0.30000000000000004) is written as usual. A figure
    judged against it is written by `against`."""
    if value is None:
        return DASH
    write = BY_UNIT[unit]
    exact = WIDE.multiply(Decimal(repr(float(value))), UNITS[unit].scale)
    usual = _decimals(write(value))
    # From the unit's own decimals (a dollar's 2), which a small amount's usual form exceeds: a tolerance of
    # 1e-6 USD reads $0.000001, as given, not the $0.00000100 a figure that size is written as.
    fewest = min(usual, UNITS[unit].decimals)
    written = (write(value, decimals) for decimals in range(fewest, usual + 7))
    return next((text for text in written if _number(text) == exact), write(value))


def against(value: float | None, bar: float | None, unit: str = "pct", *, slack: float = 0.0) -> str:
    """`value` in `unit` (a key of UNITS) beside a threshold `bar` it is judged against (written by `given`):
    the number printed lies on the same side of the bar as the value, and equals the bar only when the value
    does, so no figure reads as meeting a bar it misses (or as missing one it meets).

    The unit's own formatter when that already holds; else with as many more decimals, up to three, as it
    takes: a pass rate of 0.8996 against a bar of 0.9 reads 89.96%, a Wilson lower bound of 0.89997
    89.997%, a cost change of 0.188357 against a budget of 0.1883 +18.84%; closer than that, '<90.0%' or
    '>90.0%'. A value within `slack` of the bar is on it, for a decision that allows that much
    floating-point noise (the gate's tolerance), so the text agrees with the decision.
    """
    write = BY_UNIT[unit]
    if value is None or bar is None:
        return write(value)
    if abs(value - bar) <= slack:  # on the bar: written as the bar is, its usual form when that is exact
        usual = write(bar)
        exact = WIDE.multiply(Decimal(repr(float(bar))), UNITS[unit].scale)
        return usual if _number(usual) == exact else given(bar, unit)
    side = 1 if value > bar else -1
    scaled = WIDE.multiply(Decimal(repr(float(bar))), UNITS[unit].scale)
    usual = _decimals(write(value))
    for decimals in (None, *range(usual + 1, usual + 4)):
        text = write(value, decimals)
        shown = _number(text)
        if (shown > scaled) - (shown < scaled) == side:
            return text
    return (">" if side > 0 else "<") + given(bar, unit)


def pct_against(value: float | None, bar: float | None) -> str:
    """A share beside the bar it is judged against: `against` in percent."""
    return against(value, bar)


def span_against(low: float | None, high: float | None, bar: float | None) -> str:
    """A pass rate's interval beside the bar it is judged against, the percent sign written once:
    '89.97–97.5%', each end written by `against`."""
    if low is None or high is None:
        return DASH
    return f"{against(low, bar).removesuffix('%')}{DASH}{against(high, bar)}"


def confidence_level(confidence: float) -> str:
    """A confidence level (0 < confidence < 1) as a percentage with the digits it was given: 0.95 -> '95%',
    0.999 -> '99.9%', 0.9995 -> '99.95%'.

    The one formatter of every printed confidence level (not of rates: those are `pct`). Rounding to whole
    percent would print 0.999 as '100%', a level no interval has; the product is rounded to ten decimals so
    binary noise (0.95 * 100 is 94.99999999999999) does not show.
    """
    # Decimal's fixed notation: a tiny level reads 0.00001%, not 1e-05%
    return f"{Decimal(repr(round(confidence * 100, 10))).normalize():f}%"


def ms(value: float | None, decimals: int | None = None) -> str:
    return _fixed(value, "ms", decimals)


def count(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def counted(value: int, noun: str, plural: str | None = None) -> str:
    """A count with its noun in the number it needs: '1 request', '0 requests', '1,234 requests'.
    `plural`: for a noun that does not take an s."""
    return f"{value:,} {noun if value == 1 else plural or noun + 's'}"


def score(value: float | None) -> str:
    return DASH if value is None else f"{value:.3f}"


def threshold(value: float | None, digits: int = 6) -> str:
    """A gate threshold to `digits` significant digits. The sweep's "accept nothing" threshold is the float
    just above the largest value, which would round onto that value: it reads "> VALUE" instead."""
    if value is None:
        return DASH
    text = f"{value:.{digits}g}"
    below = float(text)
    return f"> {text}" if below < value and math.nextafter(value, -math.inf) == below else text


def number(value: float | None, decimals: int | None = None) -> str:
    """A plain statistic (a CUSUM sum, its threshold) with two decimals, or `decimals`."""
    return _fixed(value, "number", decimals)


def points(value: float | None, decimals: int | None = None) -> str:
    """A pass-rate change in percentage points, signed."""
    return _fixed(value, "points", decimals)


def signed_pct(value: float | None, decimals: int | None = None) -> str:
    return _fixed(value, "signed_pct", decimals)


def signed_ms(value: float | None, decimals: int | None = None) -> str:
    return _fixed(value, "signed_ms", decimals)


# The formatter of each unit `against` and `given` write in; each takes the decimals to write.
BY_UNIT = {"pct": pct, "signed_pct": signed_pct, "points": points, "ms": ms, "signed_ms": signed_ms, "usd": usd,
           "number": number}

BY_KIND = {"usd": usd, "pct": pct, "ms": ms, "count": count, "score": score}

# The kind of each summary metric (see simulator.core.metrics.METRICS) and of the report's own columns.
METRIC_KINDS = {
    "requests": "count", "total_cost_usd": "usd", "cost_per_request_usd": "usd", "cost_per_1k_usd": "usd",
    "pass_rate": "pct", "mean_score": "score", "latency_p50_ms": "ms", "latency_p95_ms": "ms",
    "latency_p99_ms": "ms", "escalation_rate": "pct", "retry_rate": "pct", "retry_exhausted": "count",
    "call_share": "pct",
    "sessions": "count", "turns_per_session": "score", "session_success_rate": "pct", "cost_per_session_usd": "usd",
    "session_latency_p50_ms": "ms", "session_latency_p95_ms": "ms", "session_escalation_rate": "pct",
}


def metric(name: str, value) -> str:
    """A summary metric formatted as the report shows it."""
    return BY_KIND[METRIC_KINDS[name]](value)


def bytes_text(value: int) -> str:
    """A size in bytes, in the largest binary unit that keeps it at or above 1 (1,536 -> '1.5 KiB')."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:,} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
