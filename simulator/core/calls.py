"""The outcome each call of a replay read, for analyses that need more of it than the replay keeps.

The k-th call of a model for one request read that model's outcome with `sample` = k (the engine's rule),
so a call's tokens and answer are found again at (request, model, k). When the requests carry their row id
in the data's compiled layout (`LAYOUT_ROW`, from a replay's `layout_rows`), the answer is read by position
from the layout's aligned (model, sample) columns (simulator.core.layout.Layout.gather), as the engine reads
it; otherwise by a join of (request_id, model, sample) to the outcomes. Both give the same rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from simulator.core.contract import Dataset
from simulator.core.engine import LAYOUT_ROW, MODEL_CALLS
from simulator.core.layout import PRESENT, rows_at


def with_layout_rows(requests: pl.DataFrame, layout_rows: np.ndarray | None) -> pl.DataFrame:
    """`requests` (with `rid`, a replay's request number) with `LAYOUT_ROW`, each request's row id in the
    data's layout (`layout_rows[rid]`, a replay's `layout_rows`); unchanged when there is none."""
    if layout_rows is None or LAYOUT_ROW in requests.columns:
        return requests
    return requests.with_columns(pl.Series(LAYOUT_ROW, layout_rows[requests["rid"].to_numpy()]))


def by_position(requests: pl.DataFrame, data: Dataset) -> bool:
    """Whether the answers to `requests` can be read from the data's layout by their `LAYOUT_ROW`."""
    return data.layout is not None and LAYOUT_ROW in requests.columns


def model_calls(calls: pl.DataFrame, requests: pl.DataFrame, data: Dataset, columns: list[str | pl.Expr]) -> pl.DataFrame:
    """Every model call (checker and router-overhead calls left out) with `requests`' columns and the outcome `columns` it read.

    `calls` has the replay's call columns (`rid`, `seq`, `model`, `kind`, ...); `requests` has `rid` and
    `request_id` (and whatever else should come along, such as `ts`; with `LAYOUT_ROW`, the answers are read
    by position, module doc, and `request_id` may be left out). Adds `sample`; keeps call order.
    """
    models = calls.filter(pl.col("kind").is_in(MODEL_CALLS))
    models = models.with_columns(pl.Series("sample", _samples(models), dtype=pl.Int64))
    if by_position(requests, data):
        return answers_read(_with_requests(models, requests), data, columns)
    outcomes = data.outcomes.select("request_id", "model", pl.col("sample").cast(pl.Int64), *columns)
    return (models.with_columns(pl.col("model").cast(pl.String)).join(requests, on="rid", how="left").lazy()
            .join(outcomes, on=["request_id", "model", "sample"], how="left", maintain_order="left").collect())


def _with_requests(models: pl.DataFrame, requests: pl.DataFrame) -> pl.DataFrame:
    """`models` (calls) with their request's columns, in call order: a left join on `rid`, or, when the
    requests' `rid` are their row numbers (a replay's decisions as they come), a gather at each call's `rid`."""
    rid = requests["rid"].to_numpy()
    called = models["rid"].to_numpy()
    if (rid.size and rid[0] == 0 and rid[-1] == rid.size - 1 and bool((np.diff(rid.astype(np.int64)) == 1).all())
            and (called.size == 0 or int(called.max()) < rid.size)):
        return pl.concat([models, requests.drop("rid")[called]], how="horizontal")
    return models.join(requests, on="rid", how="left", maintain_order="left")


def _samples(models: pl.DataFrame) -> np.ndarray:
    """The sample each model call read: how many calls of its model the request made before it (by `seq`,
    then by position)."""
    rid, seq = models["rid"].to_numpy().astype(np.int64), models["seq"].to_numpy()
    model = _codes(models["model"])  # equal names, equal codes
    step = np.diff(rid)
    if bool(((step > 0) | ((step == 0) & (np.diff(seq) >= 0))).all()):
        # Already by (rid, seq), as a replay's calls come: a stable sort by (rid, model) keeps that order.
        order = np.argsort(rid * (int(model.max(initial=0)) + 1) + model, kind="stable")
    else:
        order = np.lexsort((seq, model, rid))  # stable: equal seq keep their order
    rid, model = rid[order], model[order]
    first = np.r_[True, (rid[1:] != rid[:-1]) | (model[1:] != model[:-1])]
    position = np.arange(order.size)
    within = position - np.maximum.accumulate(np.where(first, position, 0))  # since its group's first call
    samples = np.empty(order.size, dtype=np.int64)
    samples[order] = within
    return samples


def _codes(names: pl.Series) -> np.ndarray:
    """A number per name (equal names, equal numbers; in name order when no name is null)."""
    if names.null_count():
        return names.cast(pl.String).cast(pl.Categorical).to_physical().to_numpy()
    return name_codes(names)[0]


def name_codes(names: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Each of `names` (no nulls) as an int64 number, and the names (String) by number, in name order. A
    replay's call records name their models by an Enum of sorted names, read as they are: casting 20M names
    costs more than what is done with the numbers."""
    if not (isinstance(names.dtype, pl.Enum) and names.dtype.categories.is_sorted()):
        names = names.cast(pl.String)
        names = names.cast(pl.Enum(names.unique().sort()))
    return names.to_physical().to_numpy().astype(np.int64), names.dtype.categories


def _by_answer(called: pl.DataFrame) -> list[tuple[str, int, np.ndarray]]:
    """(model, sample, the positions of the rows of `called` naming that answer, ascending) for every answer
    named in `called` (rows with `model` and `sample`), in (model, sample) order."""
    if called["model"].null_count() or called["sample"].null_count():
        groups = (called.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("__call"), "model", "sample")
                  .group_by("model", "sample").agg("__call").sort("model", "sample"))
        return [(model, sample, np.asarray(at, dtype=np.int64)) for model, sample, at in groups.iter_rows()]
    code, names = name_codes(called["model"])
    sample = called["sample"].to_numpy().astype(np.int64)
    low = int(sample.min(initial=0))
    span = int(sample.max(initial=0)) - low + 1
    key = code * span + (sample - low)
    counts = np.bincount(key, minlength=len(names) * span)
    order = np.argsort(key.astype(np.uint16) if len(names) * span < 2**16 else key, kind="stable")
    ends = np.cumsum(counts)
    names = names.to_list()
    return [(names[group // span], group % span + low, order[ends[group] - counts[group]:ends[group]])
            for group in np.flatnonzero(counts).tolist()]


def answers_read(called: pl.DataFrame, data: Dataset, columns: list[str | pl.Expr]) -> pl.DataFrame:
    """`called` (rows with `model`, `sample` and `LAYOUT_ROW`) with the outcome `columns` of the answer each
    row names, in its order, `LAYOUT_ROW` dropped: one gather per (model, sample). A name `called` already
    has gets the suffix `_right`, as in a join; an answer the data lacks reads as nulls."""
    layout = data.layout
    rows = called[LAYOUT_ROW].to_numpy()
    pieces, order = [], []
    for model, sample, at in _by_answer(called):
        if (model, sample) in layout.slots:
            pieces.append(layout.gather(model, sample, columns, rows[at]).drop(PRESENT))
        else:  # no such answer anywhere in the data
            pieces.append(layout.gather(*layout.slots[0], columns, rows[:0]).drop(PRESENT).clear(at.size))
        order.append(at)
    called = called.drop(LAYOUT_ROW)
    if pieces:
        at = np.concatenate(order)
        back = np.empty(at.size, dtype=np.int64)  # row i of `called` is row back[i] of the pieces
        back[at] = np.arange(at.size, dtype=np.int64)
        read = pl.concat(pieces, how="vertical")[back]
    else:
        read = layout.gather(*layout.slots[0], columns, rows[:0]).drop(PRESENT)
    read = read.rename({name: f"{name}_right" for name in read.columns if name in called.columns})
    return pl.concat([called, read], how="horizontal")


def outcome_rows(requests: pl.DataFrame, data: Dataset, columns: list[str]) -> pl.DataFrame:
    """Every outcome row (each model and sample) of `requests`: `request_id` and `columns`, in no set order.
    With `LAYOUT_ROW` on `requests`, read by position (module doc)."""
    if not by_position(requests, data):
        return (data.outcomes.select("request_id", *columns)
                .join(requests.lazy().select("request_id"), on="request_id", how="semi").collect())
    rows, ids = requests[LAYOUT_ROW].to_numpy(), requests.select("request_id")
    return pl.concat([pl.concat([ids, data.layout.gather(model, sample, columns, rows)], how="horizontal")
                      .filter(PRESENT).drop(PRESENT) for model, sample in data.layout.slots], how="vertical")


def traffic_rows(requests: pl.DataFrame, data: Dataset, columns: list[str]) -> pl.DataFrame:
    """The traffic rows of `requests`: `columns`, in no set order. With `LAYOUT_ROW` on `requests`, read by
    position from the layout's requests when it holds those columns as the traffic file does (`ts` is kept
    in UTC there, so a frame reading it comes from the file), over the rows' span only (a chunk's); else by
    `request_id`."""
    layout = data.layout
    if (by_position(requests, data) and "ts" not in columns
            and set(columns) <= set(layout.scan_requests().collect_schema().names())):
        return rows_at(layout.scan_requests().select(columns), requests[LAYOUT_ROW].to_numpy())
    keyed = columns if "request_id" in columns else [*columns, "request_id"]
    return (data.traffic.select(keyed).join(requests.lazy().select("request_id"), on="request_id", how="semi")
            .select(columns).collect())


MINUTE = "1m"


def per_minute(calls: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """Calls and tokens per model and UTC minute of the request's arrival: `model`, `minute`, `calls`,
    `tokens` (input + output), sorted. Integer sums, so the load of parts of a replay (shards, chunks)
    adds up to the whole's (`merge_per_minute`). `calls`: a replay's call records or calls' table, whose
    model calls carry the `input_tokens` and `output_tokens` of the answer each read; `decisions`: `rid` and
    `ts` of the requests."""
    requests = decisions.select("rid", pl.col("ts").dt.truncate(MINUTE).alias("minute"))
    called = _with_requests(calls.filter(pl.col("kind").is_in(MODEL_CALLS))
                            .select("rid", "model", "input_tokens", "output_tokens"), requests)
    tokens = called.select((pl.col("input_tokens") + pl.col("output_tokens")).cast(pl.Int64).fill_null(0))
    tokens = tokens.to_series().to_numpy()
    minutes, minute = np.unique(called["minute"].to_physical().to_numpy(), return_inverse=True)
    models = called["model"].unique()
    size = models.len() * minutes.size
    # float sums would not be exact, or the table would be large
    if models.null_count() or int(np.abs(tokens).sum()) >= 2**53 or size > 4 * tokens.size + 2**20:
        return merge_per_minute([called.group_by(pl.col("model").cast(pl.String), "minute").agg(
            pl.len().cast(pl.Int64).alias("calls"),
            (pl.col("input_tokens") + pl.col("output_tokens")).sum().cast(pl.Int64).alias("tokens"))])
    # Calls and tokens counted per (model, minute) number, in a table: integer sums below 2^53, exact.
    model, models = name_codes(called["model"])
    size = models.len() * minutes.size
    key = model * minutes.size + minute.ravel()
    counts = np.bincount(key, minlength=size)
    found = np.flatnonzero(counts)
    return merge_per_minute([pl.DataFrame({
        "model": models.gather(found // minutes.size),
        "minute": pl.Series(minutes[found % minutes.size]).cast(called.schema["minute"]),
        "calls": counts[found].astype(np.int64),
        "tokens": np.bincount(key, weights=tokens, minlength=size)[found].astype(np.int64)})])


def merge_per_minute(many: list[pl.DataFrame]) -> pl.DataFrame:
    """The per-minute load of the whole from its parts' (`per_minute`)."""
    return (pl.concat(many, how="vertical_relaxed").group_by("model", "minute")
            .agg(pl.col("calls").sum().cast(pl.Int64), pl.col("tokens").sum().cast(pl.Int64))
            .sort("model", "minute"))
