"""Where a worker sends its run records (the log writer's interface)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ..common import RunRecord, ServiceUnavailable
from ..logstore import LogStore

log = logging.getLogger(__name__)


class RunSink(Protocol):
    async def submit(self, record: RunRecord) -> None:
        """Accept a record for writing; returns once it is safe to forget it."""
        ...

    async def run(self) -> None:
        """Background work (flushing), until cancelled."""
        ...

    async def close(self) -> None:
        """Write everything accepted so far (bounded by the caller's timeout)."""
        ...


class DirectSink:
    """Writes each record at once, retrying while MongoDB is unavailable."""

    def __init__(self, store: LogStore, *, attempts: int = 5) -> None:
        self.store = store
        self.attempts = attempts

    async def submit(self, record: RunRecord) -> None:
        delay = 0.1
        for attempt in range(1, self.attempts + 1):
            try:
                await self.store.write_runs([record])
                return
            except ServiceUnavailable as exc:
                if attempt == self.attempts:
                    log.error("dropping run record %s after %d attempts: %s",
                              record.record_id, attempt, exc)
                    return
                await asyncio.sleep(delay)  # retry backoff
                delay *= 2

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None
