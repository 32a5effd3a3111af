"""The log writer's data: what it reports (counters, flush events) and what
waits in it (records being committed to the spool, queued, or in a batch)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..common import RunRecord
from ._spool_files import Position


@dataclass(slots=True)
class WriterCounters:
    """Cumulative counts of records (for metrics)."""

    queued: int = 0  # accepted and kept in memory for the next batch
    spooled: int = 0  # accepted while the queue was full: kept on disk only
    written: int = 0  # written to MongoDB (replayed ones included)
    replayed: int = 0  # written to MongoDB after being read back from the spool
    failed: int = 0  # stored nowhere, or rejected by MongoDB (each logged at ERROR)
    write_errors: int = 0  # bulk writes that failed and were retried


@dataclass(frozen=True, slots=True)
class FlushEvent:
    """One successful bulk write."""

    reason: str  # "size", "time", "spool" (read back from disk) or "close"
    records: int
    from_spool: bool
    seconds: float  # how long the write took


@dataclass(slots=True)
class Commit:
    record: RunRecord
    payload: bytes
    done: asyncio.Future[None]


@dataclass(slots=True)
class Queued:
    record: RunRecord
    end: Position  # where the record ends in the spool
    size: int
    at: float  # loop time it was queued


@dataclass(slots=True)
class Batch:
    records: list[RunRecord]
    end: Position
    from_spool: bool
