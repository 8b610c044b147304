"""How routesim writes numbers: the terminal table, the HTML report, and the browser tests that check it."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

DASH = "–"


def usd(value: float | None) -> str:
    """Dollars: cents from $1 up, four decimals below, and enough decimals to show a tiny amount.

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
    decimals = 2 if value >= 1 else min(8, max(4, 2 - math.floor(math.log10(value))))
    rounded = Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)
    if not rounded:
        return "$0.00"
    return f"{sign}${rounded:,.{decimals}f}"


def pct(value: float | None) -> str:
    """A share with one decimal; a share too small for that (20 retries in 50,000) keeps two significant
    digits, so it never reads as 0.0%."""
    if value is None:
        return DASH
    if 0 < abs(value) < 0.0005:
        return f"{value * 100:.2g}%".replace("-", "−")
    return f"{value:.1%}".replace("-", "−")


def pct_against(value: float | None, bar: float | None) -> str:
    """`pct(value)` beside a bar it is judged against: when the two differ but would read alike (a pass rate of
    0.8996 and a bar of 0.9 both read 90.0%), with as many more decimals, up to four, as tell them apart, and
    closer than that as '<90.0%' or '>90.0%', so a rate that fails its bar never reads as reaching it."""
    if value is None or bar is None or value == bar or pct(value) != pct(bar):
        return pct(value)
    for digits in range(2, 5):
        if f"{value:.{digits}%}" != f"{bar:.{digits}%}":
            return f"{value:.{digits}%}".replace("-", "−")
    return ("<" if value < bar else ">") + pct(bar)  # closer than four decimals: which side of the bar it is on


def confidence_level(confidence: float) -> str:
    """A confidence level (0 < confidence < 1) as a percentage with the digits it was given: 0.95 -> '95%',
    0.999 -> '99.9%', 0.9995 -> '99.95%'.

    The one formatter of every printed confidence level (not of rates: those are `pct`). Rounding to whole
    percent would print 0.999 as '100%', a level no interval has; the product is rounded to ten decimals so
    binary noise (0.95 * 100 is 94.99999999999999) does not show.
    """
    # Decimal's fixed notation: a tiny level reads 0.00001%, not 1e-05%
    return f"{Decimal(repr(round(confidence * 100, 10))).normalize():f}%"


def ms(value: float | None) -> str:
    return DASH if value is None else f"{value:,.0f} ms"


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


def _signed(value: float | None, text: str, unit: str) -> str:
    """`text` (a number formatted with an explicit sign) with a true minus sign, and no sign on zero."""
    if value is None:
        return DASH
    if float(text.replace(",", "")) == 0:
        text = text.lstrip("+-")
    return text.replace("-", "−") + unit


def points(value: float | None) -> str:
    """A pass-rate change in percentage points, signed."""
    return _signed(value, f"{value * 100:+.1f}" if value is not None else "", " pts")


def signed_pct(value: float | None) -> str:
    return _signed(value, f"{value * 100:+.1f}" if value is not None else "", "%")


def signed_ms(value: float | None) -> str:
    return _signed(value, f"{value:+,.0f}" if value is not None else "", " ms")


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
