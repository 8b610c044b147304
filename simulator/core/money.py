"""Money as whole nano-dollars (int64, 1e-9 USD), without heavy imports.

Every call's cost is rounded half to even to a whole nano-dollar once, when it is priced
(`simulator.core.prices.price_calls`); from there on money is added as integers, so every total is exact
and the same whatever order, thread count or chunking adds it. Dollars are shown by one division of the
exact integer sum by NANO_PER_USD.
"""

from __future__ import annotations

NANO_PER_USD = 1_000_000_000


def to_nano_usd(usd: float) -> int:
    """USD as whole nano-dollars, rounded half to even (Python's round): a recorded or checker cost."""
    return round(usd * NANO_PER_USD)


def usd_of(nano_usd: int) -> float:
    """Whole nano-dollars as USD, divided as `simulator.core.prices.usd` divides a column (float64)."""
    return float(nano_usd) / NANO_PER_USD


def usd_per_request_of(nano_usd_sum: int, requests: int) -> float:
    """USD per request from an exact integer sum: the sum turned into USD once, then divided by the count, as
    the `cost_per_request_usd` metric and `simulator.core.prices.usd_per_request` define it."""
    return usd_of(nano_usd_sum) / requests
