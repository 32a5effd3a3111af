"""Keeping one etcd lease alive through transient errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ._abc import CoordStore, CoordUnavailable

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Grants a lease and refreshes it every ``ttl / 3`` seconds.

    When etcd is unreachable it keeps retrying; if the lease expired meanwhile
    (keys attached to it are gone), it grants a new one and awaits
    ``on_renewed(new_id)`` so the owner can write its keys again.
    ``alive`` is set while the lease is believed to exist.
    """

    def __init__(
        self,
        store: CoordStore,
        ttl: int,
        *,
        on_renewed: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        if ttl < 2:
            raise ValueError("a lease TTL below 2 s cannot be kept alive reliably")
        self.store = store
        self.ttl = ttl
        self.lease_id = 0
        self.alive = asyncio.Event()
        self.renewals = 0
        self._on_renewed = on_renewed
        self._last_ok = 0.0

    async def grant(self) -> int:
        self.lease_id = await self.store.grant_lease(self.ttl)
        self._last_ok = time.monotonic()
        self.alive.set()
        return self.lease_id

    async def run(self) -> None:
        """Keep the lease alive until cancelled."""
        if not self.lease_id:
            await self.grant()
        interval = self.ttl / 3
        retry = min(1.0, self.ttl / 6)
        wait = interval
        while True:
            await asyncio.sleep(wait)  # a refresh timer, not synchronisation
            try:
                remaining = await self.store.keepalive(self.lease_id)
                if remaining <= 0:
                    log.warning("lease %x expired; granting a new one", self.lease_id)
                    self.alive.clear()
                    await self.grant()
                    self.renewals += 1
                    if self._on_renewed is not None:
                        await self._on_renewed(self.lease_id)
                self._last_ok = time.monotonic()
                self.alive.set()
                wait = interval
            except CoordUnavailable as exc:
                if time.monotonic() - self._last_ok > self.ttl:
                    self.alive.clear()
                log.warning("lease keep-alive failed (%s); retrying in %.1fs", exc, retry)
                wait = retry

    async def revoke(self) -> None:
        if self.lease_id:
            lease, self.lease_id = self.lease_id, 0
            self.alive.clear()
            await self.store.revoke_lease(lease)
