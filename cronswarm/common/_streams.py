"""Live output streams open at once, limited per viewer and in total.

Masters and workers each keep one ``StreamLimits``: a stream holds a slot from
before it opens anything (a connection to a worker, a subscription to an
output) until it ends, so a process's memory and file descriptors for live
output stay bounded by ``total``, and one viewer cannot take all of them. A
refused stream raises ``TooManyStreams`` (answered 429 with ``Retry-After``).

``stall_timeout`` bounds how long one write to a reader may wait: a reader
that takes nothing for that long (gone without a FIN, or stopped reading) is
disconnected, so it cannot hold its slot and its buffers for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from ._errors import TooManyStreams

STREAMS_PER_VIEWER = 4
STREAMS_TOTAL = 64
RETRY_AFTER_S = 5  # streams end when their run does or their reader leaves: no window to wait
STALL_TIMEOUT_S = 30.0  # twice the workers' heartbeat interval
MAX_VIEWER_CHARS = 200
# Whom a master asks a worker's stream for (the worker counts per master and viewer).
VIEWER_HEADER = "X-Cronswarm-Viewer"


class StreamLimits:
    """Counts of open streams by viewer; refuses beyond ``per_viewer`` or ``total``."""

    def __init__(self, per_viewer: int = STREAMS_PER_VIEWER, total: int = STREAMS_TOTAL, *,
                 server: str, stall_timeout: float = STALL_TIMEOUT_S) -> None:
        if per_viewer < 1 or total < 1:
            raise ValueError("stream limits must be at least 1")
        self.per_viewer = per_viewer
        self.total = total
        self.server = server
        self.stall_timeout = stall_timeout
        self._open: dict[str, int] = {}  # only viewers with a stream open: at most `total`
        self._count = 0
        self.refused = {"per_viewer": 0, "total": 0}  # streams refused, by limit reached

    @property
    def open_streams(self) -> int:
        return self._count

    def open_for(self, viewer: str) -> int:
        return self._open.get(viewer[:MAX_VIEWER_CHARS], 0)

    @contextmanager
    def slot(self, viewer: str) -> Iterator[None]:
        """Hold one stream slot of ``viewer`` for the block; raise ``TooManyStreams``
        (before the block runs) when a limit is reached."""
        viewer = viewer[:MAX_VIEWER_CHARS]
        mine = self._open.get(viewer, 0)
        if mine >= self.per_viewer:
            self.refused["per_viewer"] += 1
            raise TooManyStreams("per_viewer", self.per_viewer, self.server, RETRY_AFTER_S)
        if self._count >= self.total:
            self.refused["total"] += 1
            raise TooManyStreams("total", self.total, self.server, RETRY_AFTER_S)
        self._open[viewer] = mine + 1
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            left = self._open[viewer] - 1
            if left:
                self._open[viewer] = left
            else:
                del self._open[viewer]


class ReaderStalled(Exception):
    """A write to a live output reader waited longer than the stall timeout."""


async def write_within(write: Callable[[bytes], Awaitable[None]], data: bytes,
                       timeout: float) -> None:
    """``write(data)``, raising ``ReaderStalled`` if the reader takes nothing for
    ``timeout`` seconds (aiohttp's write waits while the socket buffer is full)."""
    try:
        async with asyncio.timeout(timeout):
            await write(data)
    except TimeoutError:
        raise ReaderStalled from None
