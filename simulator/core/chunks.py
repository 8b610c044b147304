"""Chunks of one data folder's requests: each chunk replays on its own into a mergeable part
(simulator.core.sharded.replay_chunked), so a chunk must hold everything one of its requests depends on.

Without sessions a request depends on nothing but itself, and a chunk is a range of row numbers (the
layout's (ts, request_id) order; the traffic file's order for data without a layout). With `session_id`
in the traffic a turn may depend on its session's earlier turns (a sticky session's later turns follow its
first turn), so a chunk is a set of whole sessions:

- from a layout, whose requests carry the row id of their session's first turn
  (simulator.core.layout.SESSION_FIRST): the sessions whose first turn falls in a range of row numbers,
  read from that range up to the last turn of any of them (`through`). A chunk then reads the layout's
  files over little more than its own range;
- otherwise, the requests whose hashed session id falls in one bucket, hashed as `routesim shard` hashes
  them (simulator.core.shards.shard_of; a request without a session hashes its request_id). Each such chunk
  spans every row of the data.

Either way a chunk's requests keep their (ts, request_id) order, so its replay is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from simulator.core.layout import SESSION_FIRST
from simulator.core.shards import shard_of


@dataclass(frozen=True)
class Chunk:
    """A part of a data folder's requests: the row numbers `rows` = (start, end), start .. end - 1, or with
    `through` the requests whose session's first turn (SESSION_FIRST) is in `rows`, all among rows start ..
    through - 1; or, with `of`, the requests whose hashed session (`shard_of(of, sessions=True)`) is
    `bucket`."""

    rows: tuple[int, int] | None = None
    bucket: int = 0
    of: int | None = None
    through: int | None = None

    def __post_init__(self) -> None:
        if ((self.rows is None) == (self.of is None) or (self.of is not None and not 0 <= self.bucket < self.of)
                or (self.through is not None and (self.rows is None or self.through < self.rows[1]))):
            raise ValueError(f"a chunk is a row range, or a bucket of `of`, not {self}")

    def of_requests(self, requests: pl.LazyFrame) -> pl.LazyFrame:
        """The chunk's rows of `requests` (the traffic, or the layout's requests: every row, in row-number
        order, with `request_id` and, where the traffic has sessions, `session_id`, and SESSION_FIRST for a
        chunk with `through`), in their order."""
        if self.rows is not None:
            start, end = self.rows
            if self.through is None:
                return requests.slice(start, end - start)
            return requests.slice(start, self.through - start).filter(
                pl.col(SESSION_FIRST).is_between(start, end, closed="left"))
        sessions = "session_id" in requests.collect_schema().names()
        return requests.filter(shard_of(self.of, sessions) == self.bucket)


def chunks_of(total: int, count: int, sessions: bool, requests: pl.LazyFrame | None = None) -> list[Chunk]:
    """`count` chunks covering the `total` requests of a data folder: row ranges of equal size; for traffic
    with sessions (`sessions`), ranges of sessions' first turns when `requests` (the layout's, in row order)
    carry SESSION_FIRST (one streaming pass over that column finds each range's `through`), else `count`
    buckets of whole sessions (about total / count requests each when no session is a large share of the
    traffic)."""
    bounds = [total * index // count for index in range(count + 1)]
    if sessions and (requests is None or SESSION_FIRST not in requests.collect_schema().names()):
        return [Chunk(bucket=bucket, of=count) for bucket in range(count)]
    if not sessions:
        return [Chunk(rows=(start, end)) for start, end in zip(bounds, bounds[1:])]
    # Only a later turn (first turn elsewhere) can lie past its chunk's end. Its chunk is the i with
    # bounds[i] <= first < bounds[i + 1]: as bounds[i] = floor(total i / count), i = ((first + 1) count - 1)
    # // total, integer arithmetic the streaming engine runs in a pass of about 0.5 s and 0.1 GB at 100M.
    first = pl.col(SESSION_FIRST).cast(pl.Int64)
    lasts = dict(requests.select(first).with_row_index("__row").filter(first != pl.col("__row"))
                 .group_by(((first + 1) * count - 1) // total).agg(pl.col("__row").max())
                 .collect(engine="streaming").iter_rows())
    return [Chunk(rows=(start, end), through=max(end, int(lasts.get(index, end - 1)) + 1))
            for index, (start, end) in enumerate(zip(bounds, bounds[1:]))]
