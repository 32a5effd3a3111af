"""Bounded output capture: a head, a tail, and the true byte count.

Memory stays within ``head + tail`` bytes however much a job prints; live
subscribers see every chunk as it arrives (for the dashboard's live tail).

With a ``Scrubber`` (a job with secrets) every chunk goes through it first,
so the head, the tail, the byte count and the live subscribers all see the
scrubbed stream; ``flush`` releases the bytes it held back at the end.
"""

from __future__ import annotations

from collections.abc import Callable

from ..common import Scrubber


class BoundedOutput:
    def __init__(self, head_limit: int = 65536, tail_limit: int = 65536) -> None:
        if head_limit < 0 or tail_limit < 0:
            raise ValueError("limits must be non-negative")
        self.head_limit = head_limit
        self.tail_limit = tail_limit
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0
        self._listeners: list[Callable[[bytes], None]] = []
        self.scrubber: Scrubber | None = None

    def subscribe(self, listener: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``listener(chunk)`` for each new chunk; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def feed(self, chunk: bytes) -> None:
        if self.scrubber is not None:
            chunk = self.scrubber.feed(chunk)
        self._take(chunk)

    def flush(self) -> None:
        """The output has ended: release what the scrubber held back."""
        if self.scrubber is not None:
            self._take(self.scrubber.flush())

    def _take(self, chunk: bytes) -> None:
        if not chunk:
            return
        original = chunk
        self.total += len(chunk)
        room = self.head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self.tail_limit:
            if len(chunk) >= self.tail_limit:
                self._tail[:] = chunk[-self.tail_limit:]
            else:
                self._tail += chunk
                excess = len(self._tail) - self.tail_limit
                if excess > 0:
                    del self._tail[:excess]
        for listener in list(self._listeners):
            listener(original)

    @property
    def truncated(self) -> bool:
        """True when bytes were dropped between head and tail."""
        return self.total > len(self._head) + len(self._tail)

    @property
    def head(self) -> bytes:
        return bytes(self._head)

    @property
    def tail(self) -> bytes:
        return bytes(self._tail)

    def text(self) -> tuple[str, str]:
        """(head, tail) decoded as UTF-8, undecodable bytes replaced."""
        return (self._head.decode("utf-8", errors="replace"),
                self._tail.decode("utf-8", errors="replace"))

