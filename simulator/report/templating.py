"""The Jinja2 environment every report template renders in: autoescape on, strict about undefined names,
and simulator.core.formats as filters, so a template writes `{{ row.pass_rate|pct }}`. Every string it writes
has its invisible characters escaped (`shown`).

`|tojson` (sorted keys, compact) is the only way data enters a `<script>` block: it writes `<`, `>`, `&`
and `'` as \\u escapes, so nothing in the data can end the block.
"""

from __future__ import annotations

import datetime as dt
import functools

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from simulator.core import formats
from simulator.core.errors import visible


def instant(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def interval(verdict: dict | None, bar: float | None = None) -> str:
    """A pass rate's interval as '89.97–90.4%', each end on its side of the bar it is judged against: the
    verdict's own `bar`, else `bar` (an over-time row carries none)."""
    if not verdict:
        return formats.DASH
    return formats.span_against(verdict["low"], verdict["high"], verdict.get("bar", bar))


def shown(value):
    """What every `{{ ... }}` writes: a string with its invisible characters (a newline or zero-width space in
    a slice or model name from the data) escaped as the terminal shows them, so no two names look alike on
    the page; markup a filter already built (`|tojson`) as it is."""
    return visible(value) if isinstance(value, str) and not isinstance(value, Markup) else value


@functools.cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("simulator.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, finalize=shown)
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False}
    env.filters.update(usd=formats.usd, pct=formats.pct, pct_against=formats.pct_against, against=formats.against,
                       given=formats.given, ms=formats.ms, count=formats.count,
                       score=formats.score, confidence_level=formats.confidence_level, points=formats.points,
                       signed_pct=formats.signed_pct, signed_ms=formats.signed_ms, instant=instant, interval=interval)
    env.globals.update(metric=formats.metric, usd_decimals=formats.usd_decimals)
    return env
