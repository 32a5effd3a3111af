"""Self-fencing: a worker stops acting on its lease before the lease may have expired.

Everything a worker owns in etcd — a tick's lock, a run's running key, its
registration — lives on its lease. A worker cut off from etcd, or stalled (GC,
SIGSTOP, an overloaded host), cannot tell whether the lease still exists; once
it has expired, another worker may take the same job or the next attempt of the
same run. So the worker decides from its own monotonic clock alone:

* etcd counts the TTL from when it *received* the last refresh, which is after
  the worker *sent* it: the lease lives at least until ``sent_at + ttl``;
* the worker acts on it only until ``sent_at + ttl * FENCE_FRACTION``. Past that
  instant it is *fenced*: it claims nothing (no tick, no run-now, no retry), and
  stops every run it has (the whole process tree, as a kill does; recorded
  ``killed``, "lease lost"). The rest of the TTL (a third) is the time the kill
  has before etcd may expire the lease and the elected master may hand the run
  to another worker (which it does only a margin later still: master._reaper).

The fence lifts when a refresh sent after the fence instant succeeds (the same
lease, or a new one). Runs of an expired lease are never resumed: their keys
are gone and may already be another worker's; the elected master records the
stopped attempt lost and offers the next one. When the refresh that lifts the
fence is on the *same* lease, the lease never expired and nobody else may have
the run: the worker itself goes on with the run's next attempt, as the job's
retry policy allows (the stopped attempt counts as a failed one), since the
master, seeing the lease alive, never judges it.

The decision is re-made at every action that relies on the lease (a claim, a
run's start, its next attempt), from the clock as it is then, not only by a
timer: CLOCK_MONOTONIC keeps counting while a process is stopped, so after a
SIGSTOP the first of these checks — whichever task asyncio happens to resume
first — sees the time that passed and fences before it acts. What remains is a
process frozen past its lease while its job keeps running: the job runs on
until the worker wakes (and fences at once), possibly alongside the attempt the
master handed to another worker meanwhile. ``CRONSWARM_RUN_ID`` is what lets a
job's side effects be idempotent across that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..coord import CoordUnavailable

log = logging.getLogger(__name__)

# The share of the lease TTL after the last refresh was sent during which a
# worker still acts on the lease. Refreshes go out every quarter of the TTL
# (coord.LeaseKeeper), so two of them may fail or be slow before the fence;
# the last third leaves the fenced runs time to be stopped before the lease
# can expire (a kill takes at most its grace cap, 0.25 s, plus the tree walk).
FENCE_FRACTION = 2 / 3


def fence_due(sent_at: float | None, ttl: float, now: float,
              fraction: float = FENCE_FRACTION) -> bool:
    """Whether a worker whose last successful lease refresh was sent at
    ``sent_at`` must stop acting on the lease at ``now`` (monotonic seconds).

    Never refreshed (``None``) counts as due: nothing may rely on a lease not
    granted yet.
    """
    return sent_at is None or now >= sent_at + ttl * fraction


class Fenced(CoordUnavailable):
    """Raised instead of sending a claim while fenced: to the scheduler it is
    as if etcd could not be reached (nothing claimed, planned again soon)."""

    def __init__(self) -> None:
        super().__init__("this worker's lease may have expired: fenced until it is refreshed")


class LeaseFence:
    """Tracks the fence of one worker; ``on_fence()`` runs (synchronously) once
    each time the worker becomes fenced."""

    def __init__(self, ttl: float, on_fence: Callable[[], None], *,
                 fraction: float = FENCE_FRACTION,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.fraction = fraction
        self.sent_at: float | None = None
        self.fenced = False
        self.fences = 0  # how many times this worker fenced itself
        self._on_fence = on_fence
        self._monotonic = monotonic
        self._changed = asyncio.Event()
        self.lifted = asyncio.Event()  # set while not fenced
        self.lifted.set()

    @property
    def deadline(self) -> float | None:
        """The monotonic instant the fence falls (None before the first grant)."""
        return None if self.sent_at is None else self.sent_at + self.ttl * self.fraction

    def check(self) -> bool:
        """True if the worker may act on its lease now; fences it if not."""
        if fence_due(self.sent_at, self.ttl, self._monotonic(), self.fraction):
            self._fence()
            return False
        return True

    def refreshed(self, sent: float) -> None:
        """A lease refresh (or grant) sent at ``sent`` succeeded (``LeaseKeeper.on_refresh``).

        The check comes first, against the previous refresh: a lapse between
        the two (a freeze, an outage) fences even though the lease is fine now.
        """
        if self.sent_at is not None:
            self.check()
        self.sent_at = sent if self.sent_at is None else max(self.sent_at, sent)
        if self.fenced and not fence_due(self.sent_at, self.ttl, self._monotonic(),
                                         self.fraction):
            self.fenced = False
            self.lifted.set()
            log.warning("lease refreshed: claiming again")
        self._changed.set()

    def _fence(self) -> None:
        if self.fenced or self.sent_at is None:
            return
        self.fenced = True
        self.lifted.clear()
        self.fences += 1
        late = self._monotonic() - self.sent_at
        log.warning("lease not refreshed for %.1fs (TTL %gs): fenced, stopping every run "
                    "and claiming nothing until it is", late, self.ttl)
        self._on_fence()

    async def watch(self) -> None:
        """Fence at the instant it falls even if nothing else acts (etcd cut off)."""
        while True:
            self._changed.clear()
            deadline = self.deadline
            if deadline is None or self.fenced:
                await self._changed.wait()
                continue
            delay = deadline - self._monotonic()
            if delay <= 0:
                self.check()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # the fence instant, or a refresh
                    await self._changed.wait()
