"""Money as whole nano-dollars (int64, 1e-9 USD), without heavy imports.

Every call's cost is rounded half to even to a whole nano-dollar once, when it is priced
(`simulator.core.prices.price_calls`); from there on money is added as integers, so every total is exact
and the same whatever order, thread count or chunking adds it. Dollars are shown by one division of the
exact integer sum by NANO_PER_USD, and money per unit (per request, per session) by one correctly
rounded division of that sum by the count (`usd_per`).
"""

from __future__ import annotations

from fractions import Fraction

NANO_PER_USD = 1_000_000_000


def to_nano_usd(usd: float) -> int:
    """USD as whole nano-dollars, rounded half to even (Python's round): a recorded or checker cost."""
    return round(usd * NANO_PER_USD)


def usd_of(nano_usd: int) -> float:
    """Whole nano-dollars as USD, divided as `simulator.core.prices.usd` divides a column (float64)."""
    return float(nano_usd) / NANO_PER_USD


def usd_per(nano_usd: int, count: int, per: int = 1) -> float | None:
    """USD per `per` units (requests, sessions; `per=1000` for a cost per 1,000 requests) of `count` units
    that cost `nano_usd` whole nano-dollars in all: the exact rational nano_usd x per / (count x 1e9),
    correctly rounded once to float64 (a Fraction's float), so 2,436,000 nano-dollars over 5 requests is
    0.0004872. Dividing the dollars by the count rounds twice (0.00048719999999999997). None for no units.

    Every money-per-unit figure (`cost_per_request_usd`, `cost_per_session_usd`, `cost_per_1k_usd`, a gate's
    costs per request and their change) is this quotient; `usd_per_array` is its vectorised form."""
    if not count:
        return None
    return float(Fraction(int(nano_usd) * per, int(count) * NANO_PER_USD))


def usd_per_array(nano_usd, counts, per: int = 1):
    """`usd_per` elementwise over float64 numpy arrays of integer-valued nano-dollar sums and counts (numpy's
    nan or inf where a count is 0: divide under `np.errstate`); `per` divides 1e9. It is one IEEE division
    of two exact operands, nano_usd / (count x 1e9 / per), hence correctly rounded, while every sum is below
    2^53 nano-dollars (about $9 million) and every count below 2^53 / 5^9 (4.6e9), which keeps the divisor
    exact (1e9 = 2^9 x 5^9)."""
    return nano_usd / (counts * float(NANO_PER_USD // per))
