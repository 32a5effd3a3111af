"""An in-memory twin of the coordination store, with etcd's semantics.

For unit tests, and for tests that need what a real etcd cannot give at will:
a lease that expires the moment the test says so. The contract suite
(tests/contract/test_coord_contract.py) runs the same promises against this
twin and a real etcd, so where the twin and etcd differ, it says.

What it keeps from etcd:

* one global revision, starting at 1, bumped once by each write that changes
  something (a txn's writes share one revision; a delete that finds nothing,
  a failed txn and a txn of reads do not bump it);
* per key: create and mod revision, version (1 on create, +1 per put), lease;
* txn compares as etcd decides them (``Compare.holds_for``: a value compare on
  a missing key is false), branches applied in order, reads in a branch seeing
  its earlier writes; a branch that writes one key twice is refused whole;
* leases: a put with an unknown lease is refused (as etcd: the error comes out
  as ``CoordUnavailable``), a lease's keys are deleted together, in one
  revision, when it is revoked or expires; ``keepalive`` of a gone lease is 0,
  ``lease_ttl`` -1;
* watches: events in revision order, replayed from any revision not
  compacted (``compact``), ``WatchCompacted`` below it; a delete event carries
  the key, an empty value and the deletion revision.

Time: ``clock`` (monotonic seconds) decides when leases expire. Expired leases
are collected before every call, by a timer on the running loop at the
earliest deadline, and by ``expire_leases()`` — which a test with a manual
clock calls after moving it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence

from ._abc import CoordUnavailable, WatchCompacted
from ._kv import Compare, Delete, Get, KeyValue, Put, Txn, TxnOp, TxnResult, WatchEvent

_FIRST_LEASE_ID = 0x7A11_0000_0001


class _Lease:
    __slots__ = ("deadline", "keys", "ttl")

    def __init__(self, ttl: int, deadline: float) -> None:
        self.ttl = ttl
        self.deadline = deadline
        self.keys: set[str] = set()


def _under(key: str, prefix: str) -> bool:
    # UTF-8 keeps code point order and prefixes: str rules equal etcd's byte rules.
    return key.startswith(prefix)


def _written_keys(ops: Iterable[TxnOp]) -> tuple[set[str], list[Delete]]:
    """The keys one branch puts (nested txns' branches included) and its deletes;
    CoordUnavailable where etcd refuses the txn as a whole ("duplicate key given
    in txn request": one key written twice in a branch)."""
    puts: set[str] = set()
    deletes: list[Delete] = []
    for op in ops:
        if isinstance(op, Put):
            if op.key in puts:
                raise CoordUnavailable("Txn: duplicate key given in txn request")
            puts.add(op.key)
        elif isinstance(op, Delete):
            deletes.append(op)
        elif isinstance(op, Txn):
            nested: set[str] = set()
            for branch in (op.success, op.failure):
                branch_puts, branch_deletes = _written_keys(branch)
                nested |= branch_puts
                deletes += branch_deletes
            if nested & puts:
                raise CoordUnavailable("Txn: duplicate key given in txn request")
            puts |= nested
    for d in deletes:
        if any((_under(k, d.key) if d.prefix else k == d.key) for k in puts):
            raise CoordUnavailable("Txn: duplicate key given in txn request")
    return puts, deletes


class _Batch:
    """The writes of one revision, staged until they are all known to apply."""

    def __init__(self, store: MemoryCoordStore) -> None:
        self.store = store
        self.changes: dict[str, KeyValue | None] = {}  # None: deleted
        self.events: list[WatchEvent] = []
        self.revision = store.revision + 1

    def get(self, key: str) -> KeyValue | None:
        return self.changes[key] if key in self.changes else self.store._kv.get(key)

    def keys(self, key: str, prefix: bool) -> list[str]:
        if not prefix:
            return [key] if self.get(key) is not None else []
        held = {k for k in self.store._kv if _under(k, key)}
        held |= {k for k in self.changes if _under(k, key)}
        return sorted(k for k in held if self.get(k) is not None)

    def put(self, key: str, value: bytes, lease: int) -> None:
        if lease and lease not in self.store._leases:
            raise CoordUnavailable("Put: NOT_FOUND: etcdserver: requested lease not found")
        held = self.get(key)
        kv = KeyValue(key, value, held.create_revision if held else self.revision,
                      self.revision, held.version + 1 if held else 1, lease)
        self.changes[key] = kv
        self.events.append(WatchEvent("put", kv))

    def delete(self, key: str, prefix: bool) -> int:
        found = self.keys(key, prefix)
        for k in found:
            self.changes[k] = None
            self.events.append(WatchEvent("delete", KeyValue(k, b"", 0, self.revision, 0)))
        return len(found)

    def run(self, compare: Sequence[Compare], success: Sequence[TxnOp],
            failure: Sequence[TxnOp]) -> TxnResult:
        succeeded = all(c.holds_for(self.get(c.key)) for c in compare)
        gets: list[list[KeyValue]] = []
        nested: list[TxnResult] = []
        for op in success if succeeded else failure:
            if isinstance(op, Put):
                self.put(op.key, op.value, op.lease)
            elif isinstance(op, Delete):
                self.delete(op.key, op.prefix)
            elif isinstance(op, Get):
                found = (self.get(k) for k in self.keys(op.key, op.prefix))
                gets.append([kv for kv in found if kv is not None])
            else:
                nested.append(self.run(op.compare, op.success, op.failure))
        return TxnResult(succeeded, 0, gets, nested)


def _with_revision(result: TxnResult, revision: int) -> TxnResult:
    return TxnResult(result.succeeded, revision, result.gets,
                     [_with_revision(n, revision) for n in result.nested])


class MemoryCoordStore:
    """CoordStore in memory (see the module docstring for what it keeps of etcd).

    ``available = False`` makes every call raise ``CoordUnavailable``, and
    watches wait (then resume, missing nothing), as with an unreachable etcd.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.revision = 1
        self.compacted = 0  # watches cannot start below this revision
        self._available = True
        self._kv: dict[str, KeyValue] = {}
        self._leases: dict[int, _Lease] = {}
        self._next_lease = _FIRST_LEASE_ID
        self._history: list[WatchEvent] = []  # in revision order
        self._changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- the CoordStore interface --------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        self._enter()
        return self._kv.get(key)

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._enter()
        return self._range(prefix), self.revision

    async def scan_prefix(
        self, prefix: str, *, page_size: int = 1000, page_bytes: int = 0,
    ) -> AsyncGenerator[tuple[list[KeyValue], int], None]:
        # page_bytes sizes etcd's range reads; the twin has none to size.
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._enter()
        snapshot, revision = self._range(prefix), self.revision  # one revision, as etcd's
        for start in range(0, len(snapshot), page_size):
            yield snapshot[start:start + page_size], revision
            self._enter()
        if not snapshot:
            yield [], revision

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        self._enter()
        batch = _Batch(self)
        batch.put(key, value, lease)
        self._commit(batch)
        return self.revision

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        self._enter()
        batch = _Batch(self)
        deleted = batch.delete(key, prefix)
        self._commit(batch)
        return deleted

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[TxnOp],
        failure: Sequence[TxnOp] = (),
    ) -> TxnResult:
        self._enter()
        _written_keys(success)
        _written_keys(failure)
        batch = _Batch(self)
        result = batch.run(compare, success, failure)
        self._commit(batch)
        return _with_revision(result, self.revision)

    async def grant_lease(self, ttl: int) -> int:
        self._enter()
        if ttl < 1:
            raise ValueError("a lease's ttl is at least 1 s")
        lease_id, self._next_lease = self._next_lease, self._next_lease + 1
        self._leases[lease_id] = _Lease(ttl, self.clock() + ttl)
        self._arm()
        return lease_id

    async def keepalive(self, lease_id: int) -> int:
        self._enter()
        lease = self._leases.get(lease_id)
        if lease is None:
            return 0
        lease.deadline = self.clock() + lease.ttl
        self._arm()
        return lease.ttl

    async def revoke_lease(self, lease_id: int) -> None:
        self._enter()
        self._end_lease(lease_id)

    async def lease_ttl(self, lease_id: int) -> int:
        self._enter()
        lease = self._leases.get(lease_id)
        # etcd truncates the remaining time to whole seconds.
        return -1 if lease is None else int(lease.deadline - self.clock())

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[list[WatchEvent]]:
        # etcd: revision 0 means "from the next write on".
        next_revision = start_revision or self.revision + 1
        while True:
            changed = self._changed
            if self._closed:
                raise CoordUnavailable("the store is closed")
            # Unavailable, the watch waits and then goes on where it was, as
            # EtcdStore's resumes after a disconnect.
            if self._available:
                self.expire_leases()
                if next_revision < self.compacted:
                    raise WatchCompacted(self.compacted)
                at = bisect.bisect_left(self._history, next_revision,
                                        key=lambda e: e.mod_revision)
                events = [e for e in self._history[at:] if _under(e.key, prefix)]
                next_revision = max(next_revision, self.revision + 1)
                if events:
                    yield events
                    continue
            await changed.wait()

    async def ping(self) -> None:
        self._enter()

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()

    # -- for tests -------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._available

    @available.setter
    def available(self, value: bool) -> None:
        self._available = value
        self._wake()  # waiting watches look again

    def expire_leases(self) -> int:
        """Revoke every lease whose deadline has passed by ``clock``; how many."""
        now = self.clock()
        due = [lease_id for lease_id, lease in self._leases.items() if lease.deadline <= now]
        for lease_id in due:
            self._end_lease(lease_id)
        return len(due)

    def compact(self, revision: int) -> None:
        """Forget the events of revisions below ``revision``, as etcd's compaction."""
        if revision > self.revision:
            raise ValueError(f"cannot compact beyond the current revision {self.revision}")
        self.compacted = max(self.compacted, revision)
        at = bisect.bisect_left(self._history, self.compacted, key=lambda e: e.mod_revision)
        del self._history[:at]
        self._wake()

    # -- inside ------------------------------------------------------------------

    def _enter(self) -> None:
        if self._closed:
            raise CoordUnavailable("the store is closed")
        if not self._available:
            raise CoordUnavailable("switched unavailable")
        self.expire_leases()

    def _range(self, prefix: str) -> list[KeyValue]:
        return [self._kv[k] for k in sorted(k for k in self._kv if _under(k, prefix))]

    def _commit(self, batch: _Batch) -> None:
        if not batch.changes:
            return
        self.revision = batch.revision
        for key, kv in batch.changes.items():
            held = self._kv.pop(key, None)
            if held is not None and held.lease in self._leases:
                self._leases[held.lease].keys.discard(key)
            if kv is not None:
                self._kv[key] = kv
                if kv.lease:
                    self._leases[kv.lease].keys.add(key)
        self._history += batch.events
        self._wake()

    def _end_lease(self, lease_id: int) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            return
        batch = _Batch(self)
        for key in sorted(lease.keys):
            batch.delete(key, prefix=False)
        self._commit(batch)
        del self._leases[lease_id]

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _arm(self) -> None:
        """A timer at the earliest lease deadline, so leases expire unwatched."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._leases and not self._closed:
            deadline = min(lease.deadline for lease in self._leases.values())
            self._timer = loop.call_later(max(deadline - self.clock(), 0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.expire_leases() or self._leases:
            self._arm()
