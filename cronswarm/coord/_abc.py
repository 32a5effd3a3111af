"""The coordination store interface: the part of etcd cronswarm relies on.

Keys are ``str``, values ``bytes``. Transactions take this module's ``Compare``
and operation objects, so callers never see the etcd client's types.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..common import ServiceUnavailable

CompareOp = Literal["==", "!=", "<", ">"]
CompareTarget = Literal["value", "version", "create", "mod"]


class CoordUnavailable(ServiceUnavailable):
    """etcd could not be reached, or did not answer in time."""

    def __init__(self, reason: str) -> None:
        super().__init__("etcd", reason)


class WatchCompacted(Exception):
    """The watch cannot resume: etcd compacted the revisions it needed."""

    def __init__(self, compact_revision: int) -> None:
        self.compact_revision = compact_revision
        super().__init__(f"revisions before {compact_revision} were compacted")


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["put", "delete"]
    kv: KeyValue  # for deletes: the key, an empty value and the deletion revision

    @property
    def key(self) -> str:
        return self.kv.key

    @property
    def value(self) -> bytes:
        return self.kv.value

    @property
    def mod_revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction on one key."""

    key: str
    target: CompareTarget
    op: CompareOp
    operand: bytes | int

    @classmethod
    def value(cls, key: str, op: CompareOp, operand: bytes) -> Compare:
        """Compares the stored bytes. etcd fails it when ``key`` does not exist."""
        return cls(key, "value", op, operand)

    @classmethod
    def create_revision(cls, key: str, op: CompareOp, operand: int) -> Compare:
        return cls(key, "create", op, operand)

    @classmethod
    def mod_revision(cls, key: str, op: CompareOp, operand: int) -> Compare:
        return cls(key, "mod", op, operand)

    @classmethod
    def absent(cls, key: str) -> Compare:
        """Version 0 means the key does not exist."""
        return cls(key, "version", "==", 0)

    def holds_for(self, kv: KeyValue | None) -> bool:
        """What etcd would decide for ``kv`` (None: absent); used by the twin."""
        if self.target == "value":
            if kv is None:
                return False
            left: bytes | int = kv.value
        elif kv is None:
            left = 0
        else:
            left = {"version": kv.version, "create": kv.create_revision,
                    "mod": kv.mod_revision}[self.target]
        right = self.operand
        if self.op == "==":
            return left == right
        if self.op == "!=":
            return left != right
        if self.op == "<":
            return left < right  # type: ignore[operator]
        return left > right  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Txn:
    """A transaction nested in a branch of another (etcd >= 3.3)."""

    compare: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...] = ()


TxnOp = Put | Delete | Get | Txn


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    # For each Get of the branch that ran, in order: the key-values it found.
    gets: list[list[KeyValue]] = field(default_factory=list)
    # For each nested Txn of the branch that ran, in order: its result.
    nested: list[TxnResult] = field(default_factory=list)


class CoordStore(Protocol):
    """A strongly consistent key-value store with leases, txns and watches."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` and the store revision they were read at."""
        ...

    def scan_prefix(
        self, prefix: str, *, page_size: int = 1000,
    ) -> AsyncGenerator[tuple[list[KeyValue], int], None]:
        """Every key under ``prefix``, in pages of at most ``page_size`` read at
        one revision (given with each page): the whole prefix is never held at once."""
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
