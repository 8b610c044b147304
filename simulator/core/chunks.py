"""Chunks of one data folder's requests: each chunk replays on its own into a mergeable part
(simulator.core.sharded.replay_chunked), so a chunk must hold everything one of its requests depends on.

Without sessions a request depends on nothing but itself, and a chunk is a range of row numbers (the
layout's (ts, request_id) order; the traffic file's order for data without a layout). With `session_id`
in the traffic a turn may depend on its session's earlier turns (a sticky session's later turns follow its
first turn), so a chunk is a set of whole sessions: the requests whose hashed session id falls in one bucket, hashed as `routesim shard`
hashes them (simulator.core.shards.shard_of; a request without a session hashes its request_id). Either
way a chunk's requests keep their (ts, request_id) order, so its replay is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from simulator.core.shards import shard_of


@dataclass(frozen=True)
class Chunk:
    """A part of a data folder's requests: the row numbers `rows` = (start, end), start .. end - 1; or,
    with `of`, the requests whose hashed session (`shard_of(of, sessions=True)`) is `bucket`."""

    rows: tuple[int, int] | None = None
    bucket: int = 0
    of: int | None = None

    def __post_init__(self) -> None:
        if (self.rows is None) == (self.of is None) or (self.of is not None and not 0 <= self.bucket < self.of):
            raise ValueError(f"a chunk is a row range or a bucket of `of`, not {self}")

    def of_requests(self, requests: pl.LazyFrame) -> pl.LazyFrame:
        """The chunk's rows of `requests` (the traffic, or the layout's requests: every row, in row-number
        order, with `request_id` and, where the traffic has sessions, `session_id`), in their order."""
        if self.rows is not None:
            start, end = self.rows
            return requests.slice(start, end - start)
        sessions = "session_id" in requests.collect_schema().names()
        return requests.filter(shard_of(self.of, sessions) == self.bucket)


def chunks_of(total: int, count: int, sessions: bool) -> list[Chunk]:
    """`count` chunks covering the `total` requests of a data folder: row ranges of equal size, or, for
    traffic with sessions (`sessions`), `count` buckets of whole sessions (about total / count requests
    each when no session is a large share of the traffic)."""
    if sessions:
        return [Chunk(bucket=bucket, of=count) for bucket in range(count)]
    bounds = [total * index // count for index in range(count + 1)]
    return [Chunk(rows=(start, end)) for start, end in zip(bounds, bounds[1:])]
