"""Where a worker sends its run records (the log writer's interface).

The worker's implementation is ``LogWriter`` (``_logwriter.py``): records are
fsync'd to a local spool before ``submit`` returns, and written to MongoDB in
batches.
"""

from __future__ import annotations

from typing import Protocol

from ..common import RunRecord


class RunSink(Protocol):
    async def submit(self, record: RunRecord) -> None:
        """Accept a record; returns once it is safe to forget it (durable on
        local disk or in MongoDB). The caller may change its object afterwards."""
        ...

    async def run(self) -> None:
        """Background work (flushing) until cancelled, or until closed and drained."""
        ...

    async def close(self) -> None:
        """Stop accepting records; write what can be written within the sink's
        own time limit (the rest is kept for the next start)."""
        ...
