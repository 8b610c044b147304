"""Turns of a session across requests: each request's previous turn, and the prompt cache a policy loses
when it switches a session to another model (README "Policy semantics", prompt-cache loss).

Modelling assumptions:
- A request's previous turn is the preceding request of its session among those the replay selected, in
  the order of the session's turns: turn (nulls last), then ts, then request_id, as sticky sessions order
  them. The first turn of a session, and a request without a session, has none.
- A model call (a plan step, an escalation, a call of a fan-out, race or best-of-n, a retry) loses the
  prompt cache when the previous turn was replayed and called no model of its own: its cached input tokens
  bill at the input rate instead of the cached one. The loss is a call row of its own (kind `cache_loss`,
  simulator.core.prices.CACHE_LOSS). A previous turn left out for missing outcomes called nothing the
  replay knows of: the turn after it bills as logged.
- Latency is unchanged (the slower uncached prefill is not modelled) and the cache write a switch
  triggers is not billed, so the loss is a lower bound where a provider charges for writes.

Everything is vectorised over the calls, indexed by the requests' dense numbers: no loop over requests or
sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# What a model call costs more when it loses its prompt cache (`loss`: Int64 nano-dollars, null for a call
# priced at its recorded cost), per call with cached input tokens: rid, seq (its call's), model, loss. A
# replay's own exposure names its models in the Enum of its call records instead of a String.
EXPOSURE_SCHEMA = {"rid": pl.UInt32, "seq": pl.Int32, "model": pl.String, "loss": pl.Int64}


def in_turn_order(requests: pl.DataFrame) -> pl.DataFrame:
    """`session_id` and `__rid` of the requests that have a session, by session, then in the order of its
    turns (module doc). `__rid` runs in (ts, request_id) order, so it stands for both. A sort on a string:
    compute it once per replay and hand it to previous_turns and session_leaders."""
    turn = [pl.col("turn")] if "turn" in requests.columns else []
    return (requests.filter(pl.col("session_id").is_not_null())
            .select("session_id", *turn, "__rid")
            .sort("session_id", *turn, "__rid", nulls_last=True))


def _same_session() -> pl.Expr:
    """Whether a row of `in_turn_order` belongs to the session of the row before it."""
    return (pl.col("session_id") == pl.col("session_id").shift(1)).fill_null(False)


def previous_turns(requests: pl.DataFrame, ordered: pl.DataFrame | None = None) -> pl.DataFrame | None:
    """`rid` and `previous` (both UInt32) of every request that has a previous turn (module doc), from the
    replay's requests (`__rid`, numbered in (ts, request_id) order, `session_id` and, when the traffic has
    it, `turn`), or their `ordered` in_turn_order; None when the traffic has no sessions."""
    if "session_id" not in requests.columns:
        return None
    return ((in_turn_order(requests) if ordered is None else ordered)
            .select(pl.col("__rid").alias("rid"), pl.when(_same_session()).then(pl.col("__rid").shift(1)).alias("previous"))
            .drop_nulls("previous").sort("rid"))


def session_leaders(requests: pl.DataFrame, ordered: pl.DataFrame | None = None) -> np.ndarray:
    """Per request, in `__rid` order (requests numbered 0..n-1), the `__rid` of its session's first turn
    (module doc), itself for a first turn, or -1 without a session: the turn sticky sessions follow.
    `ordered`: the requests' in_turn_order, when already known."""
    found = (in_turn_order(requests) if ordered is None else ordered).select(
        "__rid", pl.when(_same_session()).then(None).otherwise(pl.col("__rid")).forward_fill().alias("leader"))
    leaders = np.full(requests.height, -1, dtype=np.int64)
    leaders[found["__rid"].to_numpy()] = found["leader"].to_numpy()
    return leaders


@dataclass(frozen=True)
class CacheState:
    """What the prompt-cache loss reads of one replay (or one branch of a forked replay): `kept`, the `rid`s
    it replayed (not left out for missing outcomes; None when it left none out); `called`, `rid` and `model`
    of model calls (plan steps and retries; calls of requests left out may be among them); `exposure`, the
    model calls of the kept requests with cached input tokens (EXPOSURE_SCHEMA); `models`, every model the
    policy may call."""

    kept: pl.DataFrame | None
    called: pl.DataFrame
    exposure: pl.DataFrame
    models: tuple[str, ...]


def lost(turns: pl.DataFrame, own: CacheState, before: CacheState) -> pl.DataFrame:
    """The calls of `own`'s exposure (in its order, with `previous`, `model` as String) that lose the prompt
    cache: those whose previous turn (`turns`) was replayed in `before` without calling their model.
    `before` is `own` for a replay; a forked replay also crosses its branches (`lost_crossed`)."""
    if own is before:  # a replay: one state
        return lost_crossed(turns, {0: own}, [(0, 0)])[0, 0]
    return lost_crossed(turns, {0: own, 1: before}, [(0, 1)])[0, 1]


def lost_crossed(turns: pl.DataFrame, states: dict, pairs: list[tuple]) -> dict[tuple, pl.DataFrame]:
    """`lost(turns, states[a], states[b])` for every (a, b) in `pairs`, each state's arrays made once.

    Requests are numbered densely (`rid`), so every lookup is an array indexed by rid (a previous turn, a
    kept request) or by (rid, model) (a model called), not a hash of 20M calls: one scatter of each state's
    calls and one gather of each state's exposure."""
    numbered = [turns["rid"], turns["previous"]]
    for state in states.values():
        numbered += [state.exposure["rid"], state.called["rid"], *([] if state.kept is None else [state.kept["rid"]])]
    size = 1 + max([-1, *(int(rids.max()) for rids in numbered if rids.len())])
    previous_of = np.full(size, -1, dtype=np.int64)
    previous_of[turns["rid"].to_numpy()] = turns["previous"].to_numpy()
    used = sorted({key for pair in pairs for key in pair})
    codes, count = _model_codes([series for key in used for series in (states[key].exposure["model"],
                                                                        states[key].called["model"])],
                                {model for key in used for model in states[key].models})
    exposed, made = {}, {}
    for index, key in enumerate(used):
        state = states[key]
        model, called_model = codes[2 * index], codes[2 * index + 1]
        if any(own == key for own, _ in pairs):
            exposed[key] = previous_of[state.exposure["rid"].to_numpy()], model
        if any(before == key for _, before in pairs):
            # calls[rid * count + code]: the request called that model
            calls = np.zeros(size * count, dtype=bool)
            calls[state.called["rid"].to_numpy().astype(np.int64) * count + called_model] = True
            replayed = None
            if state.kept is not None:
                replayed = np.zeros(size, dtype=bool)
                replayed[state.kept["rid"].to_numpy()] = True
            made[key] = calls, replayed
    found = {}
    for own, before in pairs:
        (previous, model), (calls, replayed) = exposed[own], made[before]
        follows = previous >= 0  # the call's request has a previous turn...
        if replayed is not None:  # ...which was replayed
            follows &= replayed[np.maximum(previous, 0)]
        kept_cache = np.zeros(previous.size, dtype=bool)  # the previous turn called the call's model
        kept_cache[follows] = calls[previous[follows] * count + model[follows]]
        losing = follows & ~kept_cache
        found[own, before] = states[own].exposure.filter(pl.Series(losing)).with_columns(
            pl.col("model").cast(pl.String), pl.Series("previous", previous[losing], dtype=pl.UInt32))
    return found


def _model_codes(names: list[pl.Series], models: set[str]) -> tuple[list[np.ndarray], int]:
    """Model names (exposures' and calls made) as codes of one Enum, and its size. One replay's records
    share an Enum of the policy's names (engine._Run.call_names), read as is: casting 20M names costs more
    than the lookup itself."""
    first = names[0].dtype
    if not (isinstance(first, pl.Enum) and all(series.dtype == first for series in names)):
        first = pl.Enum(sorted(models))
        names = [series.cast(first) for series in names]
    return [series.to_physical().to_numpy().astype(np.int64) for series in names], len(first.categories)
