"""Keeping one etcd lease alive through transient errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ._abc import CoordStore, CoordUnavailable

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Grants a lease and refreshes it every ``ttl / 4`` seconds.

    When etcd is unreachable it keeps retrying; if the lease expired meanwhile
    (keys attached to it are gone), it grants a new one and awaits
    ``on_renewed(new_id)`` so the owner can write its own keys again.
    ``alive`` is set while the lease is believed to exist.

    ``sent_at`` is the monotonic time at which the last successful refresh (or
    the grant) was *sent*: etcd counts the TTL from when it received it, later,
    so the lease cannot expire before ``sent_at + ttl``. ``on_refresh(sent_at)``
    is called (synchronously) after each success, before anything else uses
    it: an owner that must stop acting before the lease may have expired
    compares the previous ``sent_at`` with the clock first (see
    ``worker._fence``).
    """

    def __init__(
        self,
        store: CoordStore,
        ttl: int,
        *,
        on_renewed: Callable[[int], Awaitable[None]] | None = None,
        on_refresh: Callable[[float], None] | None = None,
    ) -> None:
        if ttl < 2:
            raise ValueError("a lease TTL below 2 s cannot be kept alive reliably")
        self.store = store
        self.ttl = ttl
        self.lease_id = 0
        self.alive = asyncio.Event()
        self.renewals = 0
        self._on_renewed = on_renewed
        self._on_refresh = on_refresh
        self.sent_at = 0.0  # monotonic: see the class docstring

    def _refreshed(self, sent: float) -> None:
        if self._on_refresh is not None:
            self._on_refresh(sent)
        self.sent_at = max(self.sent_at, sent)
        self.alive.set()

    async def grant(self) -> int:
        sent = time.monotonic()
        self.lease_id = await self.store.grant_lease(self.ttl)
        self._refreshed(sent)
        return self.lease_id

    async def run(self) -> None:
        """Keep the lease alive until cancelled."""
        if not self.lease_id:
            await self.grant()
        # A quarter of the TTL: an owner that stops acting at two thirds of it
        # (worker._fence) still has two refreshes, and their round trips, before.
        interval = self.ttl / 4
        retry = min(1.0, self.ttl / 6)
        wait = interval
        while True:
            await asyncio.sleep(wait)  # a refresh timer, not synchronisation
            try:
                sent = time.monotonic()
                remaining = await self.store.keepalive(self.lease_id)
                if remaining <= 0:
                    log.warning("lease %x expired; granting a new one", self.lease_id)
                    self.alive.clear()
                    await self.grant()
                    self.renewals += 1
                    if self._on_renewed is not None:
                        await self._on_renewed(self.lease_id)
                else:
                    self._refreshed(sent)
                wait = max(0.0, sent + interval - time.monotonic())
            except CoordUnavailable as exc:
                if time.monotonic() - self.sent_at > self.ttl:
                    self.alive.clear()
                log.warning("lease keep-alive failed (%s); retrying in %.1fs", exc, retry)
                wait = retry

    async def revoke(self) -> None:
        if self.lease_id:
            lease, self.lease_id = self.lease_id, 0
            self.alive.clear()
            await self.store.revoke_lease(lease)
