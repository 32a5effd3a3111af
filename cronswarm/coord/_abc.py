"""The coordination store interface: the part of etcd cronswarm relies on.

Keys are ``str``, values ``bytes``. Transactions take ``_kv``'s ``Compare``
and operation objects, so callers never see the etcd client's types.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Protocol

from ..common import ServiceUnavailable
from ._kv import Compare, KeyValue, TxnOp, TxnResult, WatchEvent


class CoordUnavailable(ServiceUnavailable):
    """etcd could not be reached, or did not answer in time."""

    def __init__(self, reason: str) -> None:
        super().__init__("etcd", reason)


class WatchCompacted(Exception):
    """The watch cannot resume: etcd compacted the revisions it needed."""

    def __init__(self, compact_revision: int) -> None:
        self.compact_revision = compact_revision
        super().__init__(f"revisions before {compact_revision} were compacted")


class CoordStore(Protocol):
    """A strongly consistent key-value store with leases, txns and watches."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` and the store revision they were read at."""
        ...

    def scan_prefix(
        self, prefix: str, *, page_size: int = 1000, page_bytes: int = 0,
    ) -> AsyncGenerator[tuple[list[KeyValue], int], None]:
        """Every key under ``prefix``, in pages read at one revision (given with
        each page): the whole prefix is never held at once. Pages have at most
        ``page_size`` keys. With ``page_bytes``, a store read over the network
        reads, after the first page, about that many bytes at a time (several
        pages): fewer, larger reads."""
        ...

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write; returns the new revision."""
        ...

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete a key (or all under a prefix); returns how many were deleted."""
        ...

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[TxnOp],
        failure: Sequence[TxnOp] = (),
    ) -> TxnResult: ...

    async def grant_lease(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; returns its id."""
        ...

    async def keepalive(self, lease_id: int) -> int:
        """Refresh a lease; returns its remaining TTL, 0 if it has expired."""
        ...

    async def revoke_lease(self, lease_id: int) -> None: ...

    async def lease_ttl(self, lease_id: int) -> int:
        """The lease's remaining TTL in seconds, -1 if it has expired or was
        revoked (without refreshing it)."""
        ...

    def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        """Batches of events from ``start_revision`` on, for ever.

        Disconnects are survived: the watch resumes from the last revision seen
        plus one. Raises WatchCompacted when that revision is gone.
        """
        ...

    async def ping(self) -> None:
        """Raise CoordUnavailable unless the store answers."""
        ...

    async def close(self) -> None: ...
