"""Run slots: at most N attempts run at once on a worker, higher priority first.

``SlotBook`` is the pure bookkeeping (who waits, who runs, who is next);
``Slots`` puts asyncio futures and deadlines around it. A waiter that is not
granted a slot by its deadline gives up (the caller records the run as
skipped); among waiters, the highest ``priority`` starts first and equal
priorities start in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True, slots=True)
class Ticket:
    """One request for a slot; orders by (higher priority, earlier arrival)."""

    rank: tuple[int, int]
    priority: int = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    @property
    def seq(self) -> int:
        """Arrival number, unique per book."""
        return self.rank[1]


class SlotBook:
    """Pure bookkeeping of ``capacity`` slots and a priority queue of waiters."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.busy = 0
        self.waiting = 0
        self._queue: list[Ticket] = []
        self._arrivals = itertools.count()

    def request(self, priority: int) -> Ticket:
        """Queue a request; ``grant`` decides when it gets a slot."""
        ticket = Ticket((-priority, next(self._arrivals)), priority)
        heapq.heappush(self._queue, ticket)
        self.waiting += 1
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Withdraw a request that has not been granted."""
        if not ticket.cancelled:
            ticket.cancelled = True
            self.waiting -= 1

    def grant(self) -> list[Ticket]:
        """Give free slots to the best waiters; returns them, best first."""
        granted = []
        while self.busy < self.capacity and self._queue:
            ticket = heapq.heappop(self._queue)
            if ticket.cancelled:
                continue
            ticket.cancelled = True  # no longer waiting
            self.waiting -= 1
            self.busy += 1
            granted.append(ticket)
        return granted

    def release(self) -> None:
        """A slot is free again (call ``grant`` next)."""
        if self.busy <= 0:
            raise RuntimeError("release without a granted slot")
        self.busy -= 1


class Slots:
    """``SlotBook`` for asyncio tasks."""

    def __init__(self, capacity: int) -> None:
        self.book = SlotBook(capacity)
        self._futures: dict[int, asyncio.Future[None]] = {}
        self._changed = asyncio.Event()

    @property
    def busy(self) -> int:
        return self.book.busy

    @property
    def waiting(self) -> int:
        return self.book.waiting

    def _dispatch(self) -> None:
        for ticket in self.book.grant():
            future = self._futures.pop(ticket.seq)
            future.set_result(None)
        self._changed.set()
        self._changed = asyncio.Event()

    async def acquire(self, priority: int, *, deadline: float | None = None,
                      cancel: asyncio.Event | None = None) -> bool:
        """Wait for a slot until ``deadline`` (loop time) or until ``cancel`` is set.

        True: the caller holds a slot and must ``release`` it. False: it gave up.
        """
        ticket = self.book.request(priority)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures[ticket.seq] = future
        self._dispatch()
        waits: set[asyncio.Future[None] | asyncio.Task[bool]] = {future}
        if cancel is not None:
            waits.add(asyncio.ensure_future(cancel.wait()))
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._give_up(ticket, future)
            raise
        finally:
            for waiter in waits - {future}:
                waiter.cancel()
        if future.done() and not (cancel is not None and cancel.is_set()):
            return True  # granted (perhaps at the very moment the deadline passed)
        self._give_up(ticket, future)
        return False

    def _give_up(self, ticket: Ticket, future: asyncio.Future[None]) -> None:
        if future.done():
            self.release()  # granted meanwhile: hand it on
        else:
            self._futures.pop(ticket.seq, None)
            self.book.cancel(ticket)
            self._dispatch()

    def release(self) -> None:
        self.book.release()
        self._dispatch()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds (checked after every change)."""
        while not predicate():
            await self._changed.wait()
