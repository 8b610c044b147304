"""The cost-quality frontier, and how far each policy is from it.

Points are (cost per request in USD, pass rate) on one set of requests. Definitions:

- Random mixtures. Sending each request to policy X with probability p and to policy Y otherwise costs and
  passes the p-weighted average of the two, so every point on the segment between two achievable points is
  achievable. The best achievable pass rate at a cost is therefore the upper concave envelope of the
  points, restricted to its non-decreasing part (paying more for less is never best): `envelope`.
- Best random mixture of two models: the envelope of the single-model baselines (the "lower convex hull" of
  their points when cost is read as a function of quality). Its vertices are single models; between two
  vertices the best policy mixes those two models.
- Frontier: the envelope of every achievable point of the report: the replayed policies, every sweep point
  and the single models. The oracle (the cheapest model that passes each request, chosen in hindsight) is
  a bound no router reaches, so it is shown beside the frontier, not on it.
- Distance from the frontier of a point (c, q), both >= 0 and 0 on the frontier:
  `quality_gap` = F(c) - q, the pass rate the frontier reaches at the same cost (F(c) is the envelope at c;
  beyond its most expensive vertex F stays at that vertex's pass rate); and
  `excess_cost` = c - C(q), where C(q) is the least cost at which the frontier reaches pass rate q
  (`excess_cost_share` = excess_cost / c). Differences within 1e-9 relative count as 0: the same policy
  reached two ways (a single model and a one-model scenario) can differ in the last bits of its sums.
- AIQ (RouterBench's average improvement in quality): the area under a policy family's envelope over a
  fixed cost range, divided by the range's width: AIQ = 1 / (c_hi - c_lo) x integral from c_lo to c_hi of
  H(c) dc. The range runs from the cheapest single model's cost (c_lo) to the most expensive one's (c_hi),
  the same for every policy, so AIQs compare. H is the envelope of the family's points (a sweep's points, or
  the policy's one point) together with those two single models, which any router can fall back to by
  mixing, so H is defined over the whole range. Unit: pass rate; higher is better. The single models' own
  envelope gives the AIQ of the best random mixture, the bar a router has to clear.
- CPT(x%) (RouteLLM's call-performance threshold), for two-model routing (a policy that calls exactly two
  models, weak then strong): with q_weak and q_strong the pass rates of each model alone on the same
  requests, a sweep point's performance gap recovered is PGR = (q - q_weak) / (q_strong - q_weak), and
  CPT(x%) is the least share of requests that called the strong model among the sweep points with
  PGR >= x%. Undefined when the strong model does not pass more than the weak one, or no point recovers x%.
  Over a grid of thresholds it is the least over the grid's points.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def envelope(points: Sequence[Point]) -> list[Point]:
    """Vertices of the non-decreasing upper concave envelope, by increasing cost and pass rate.

    Points that some cheaper (or equally cheap) point matches in pass rate are dominated and dropped; the
    rest form a staircase whose upper convex hull (Andrew's monotone chain) is the envelope.
    """
    ordered = sorted({(float(c), float(q)) for c, q in points}, key=lambda p: (p[0], -p[1]))
    staircase: list[Point] = []
    for point in ordered:
        if not staircase or point[1] > staircase[-1][1]:
            staircase.append(point)
    hull: list[Point] = []
    for point in staircase:
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], point) >= 0:
            hull.pop()
        hull.append(point)
    return hull


def quality_at(hull: Sequence[Point], cost: float) -> float | None:
    """F(cost): the envelope's pass rate at `cost`; None below its cheapest vertex."""
    if not hull or cost < hull[0][0]:
        return None
    for (c0, q0), (c1, q1) in zip(hull, hull[1:]):
        if cost <= c1:
            return q0 + (q1 - q0) * (cost - c0) / (c1 - c0)
    return hull[-1][1]


def cost_for(hull: Sequence[Point], quality: float) -> float | None:
    """C(quality): the least cost at which the envelope reaches `quality`; None above its best vertex."""
    if not hull or quality > hull[-1][1]:
        return None
    if quality <= hull[0][1]:
        return hull[0][0]
    for (c0, q0), (c1, q1) in zip(hull, hull[1:]):
        if quality <= q1:
            return c0 + (c1 - c0) * (quality - q0) / (q1 - q0)
    return hull[-1][0]


def _floor(difference: float, scale: float) -> float:
    """Differences within float noise (1e-9 relative: sums taken in another order) count as 0."""
    return 0.0 if difference <= 1e-9 * abs(scale) else difference


def distance(hull: Sequence[Point], cost: float, quality: float) -> dict:
    """How far (cost, quality) lies from the envelope: quality gap and excess cost (see the module doc)."""
    best_quality = quality_at(hull, cost)
    least_cost = cost_for(hull, quality)
    gap = None if best_quality is None else _floor(best_quality - quality, quality)
    excess = None if least_cost is None else _floor(cost - least_cost, cost)
    return {"quality_gap": gap, "excess_cost_usd": excess,
            "excess_cost_share": None if excess is None or cost <= 0 else excess / cost}


def area(hull: Sequence[Point], low: float, high: float) -> float | None:
    """Integral of the envelope over [low, high] (exact: it is piecewise linear); None if undefined there."""
    if not hull or high <= low or low < hull[0][0]:
        return None
    inside = sorted({low, high, *(c for c, _ in hull if low < c < high)})
    heights = [quality_at(hull, c) for c in inside]
    return sum((c1 - c0) * (h0 + h1) / 2 for c0, c1, h0, h1 in zip(inside, inside[1:], heights, heights[1:]))


def aiq(points: Sequence[Point], anchors: Sequence[Point], low: float, high: float) -> float | None:
    """RouterBench's AIQ of a family of points over [low, high], with `anchors` (the fallback models) added."""
    if high <= low:
        return None
    covered = area(envelope([*points, *anchors]), low, high)
    return None if covered is None else covered / (high - low)


def cpt(points: Sequence[dict], weak_quality: float, strong_quality: float, recovered: float) -> float | None:
    """RouteLLM's CPT: the strong-model call share at which the sweep first recovers `recovered` of the
    quality gap, interpolated linearly between the two bracketing sweep points as RouteLLM does.

    `points` hold `pass_rate` and `strong_call_share`. Walking the points by strong-call share, the first
    point that recovers the share is found; when the point before it recovers less, the share is read off
    the straight line between the two at the exact target pass rate.
    """
    gap = strong_quality - weak_quality
    if gap <= 0:
        return None
    target = weak_quality + recovered * gap
    usable = sorted((p["strong_call_share"], p["pass_rate"]) for p in points
                    if p["pass_rate"] is not None and p["strong_call_share"] is not None)
    previous = None
    for share, quality in usable:
        # Compared with a small slack: (0.7 - 0.5) / 0.4 is 0.49999999999999994 in floats, and a point that
        # recovers exactly the asked share must count.
        if quality - weak_quality >= recovered * gap - 1e-12:
            if previous is None or previous[1] >= quality or quality - target <= 1e-12:
                return share
            (share_0, quality_0) = previous
            return share_0 + (share - share_0) * (target - quality_0) / (quality - quality_0)
        previous = (share, quality)
    return None
