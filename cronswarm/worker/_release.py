"""Group commit of the etcd keys of finished runs.

Every run ends by deleting its running key (and, under ``forbid`` and
``replace``, the lock, if it is still ours). One transaction per run doubles
the etcd writes of a fire: a fire would cost its claim and its release. When
runs are frequent, releases wait together for up to ``linger`` seconds and go
out as one transaction, each as a nested transaction with its own compare, so
one that finds its key no longer ours changes nothing but itself.

A release that frees a lock does not wait: the next tick of a ``forbid`` job
must find the lock free. It takes the releases waiting at that moment with it.

A claim is a transaction the worker sends anyway: it carries the releases
waiting at that moment (``carry``), in both of its branches, so that when
ticks are frequent most releases cost no transaction of their own. Linger is
therefore long enough to reach the next tick of a job firing every second.

A release that never commits (etcd unreachable) is not retried: the keys live
on the worker's lease and vanish with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..coord import CoordStore, Txn

MAX_OPS = 32  # releases per commit (etcd caps a txn at 128 operations by default)
# How long a release that frees no lock may wait for others or for a claim to
# carry it: past the next second's claims (nothing waits on these keys but the
# dashboard's count of live runs; the final record is written before the
# release).
LINGER = 1.0
T = TypeVar("T")


@dataclass(slots=True)
class Queued(Generic[T]):
    """A transaction waiting to go out in a commit with others (a release
    here; a claim in ``_claim_batch``), and what its sender awaits."""

    txn: Txn
    keys: frozenset[str]  # every key it reads or writes (see ``batches``)
    done: asyncio.Future[T]

    @classmethod
    def of(cls, txn: Txn) -> Queued[T]:
        return cls(txn, keys_of(txn), asyncio.get_running_loop().create_future())

    def succeed(self, result: T) -> None:
        if not self.done.done():
            self.done.set_result(result)

    def fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)


def keys_of(txn: Txn) -> frozenset[str]:
    keys = {c.key for c in txn.compare}
    for op in (*txn.success, *txn.failure):
        keys |= keys_of(op) if isinstance(op, Txn) else {op.key}
    return frozenset(keys)


def batches(pending: list[Queued[T]], max_ops: int = MAX_OPS) -> list[list[Queued[T]]]:
    """``pending`` in commits of at most ``max_ops``, none touching a key twice
    (etcd refuses a transaction that writes one key in two places)."""
    out: list[list[Queued[T]]] = []
    current: list[Queued[T]] = []
    seen: set[str] = set()
    for item in pending:
        if len(current) >= max_ops or not seen.isdisjoint(item.keys):
            out.append(current)
            current, seen = [], set()
        current.append(item)
        seen |= item.keys
    if current:
        out.append(current)
    return out


_Pending = Queued[None]  # a release


@dataclass(slots=True)
class Carried:
    """Releases taken along by another transaction (see ``ReleaseBatcher.carry``)."""

    batcher: ReleaseBatcher
    items: list[_Pending]

    @property
    def ops(self) -> list[Txn]:
        return [item.txn for item in self.items]

    def sent(self) -> None:
        """The carrying transaction committed: so did these releases."""
        _settle(self.items, None)
        self.items = []

    def give_back(self) -> None:
        """The carrying transaction failed or may not have committed: the
        releases go out on their own (each is decided by its own compare, so
        sending one twice changes nothing)."""
        items, self.items = self.items, []
        self.batcher._requeue(items)


def _settle(items: list[_Pending], error: BaseException | None) -> None:
    for item in items:
        if error is None:
            item.succeed(None)
        else:
            item.fail(error)


def _retrieve(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()


class ReleaseBatcher:
    """Commits releases together; ``release`` returns once its own has committed."""

    def __init__(self, store: CoordStore, *, linger: float) -> None:
        self.store = store
        self.linger = linger
        self.commits = 0  # transactions sent (for metrics)
        self.carried = 0  # releases sent in another transaction (a claim)
        self._pending: list[_Pending] = []
        self._now = asyncio.Event()  # an urgent release is waiting
        self._committer: asyncio.Task[None] | None = None

    async def release(self, txn: Txn, *, urgent: bool) -> None:
        """Commit ``txn`` (a nested transaction) with the others waiting.

        Raises CoordUnavailable when etcd did not take it.
        """
        item: _Pending = Queued.of(txn)
        self._pending.append(item)
        done = item.done
        if urgent or self.linger <= 0:
            self._now.set()
        self._start_committer()
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            done.add_done_callback(_retrieve)  # its outcome is nobody's now
            raise

    def carry(self, keys: frozenset[str], room: int = MAX_OPS) -> Carried:
        """Take up to ``room`` waiting releases that touch none of ``keys``, for
        another transaction to send (``Carried.ops``). The sender then calls
        ``Carried.sent`` once it committed, or ``Carried.give_back``."""
        taken: list[_Pending] = []
        kept: list[_Pending] = []
        seen = set(keys)
        for item in self._pending:
            if len(taken) < room and seen.isdisjoint(item.keys):
                taken.append(item)
                seen |= item.keys
            else:
                kept.append(item)
        self._pending = kept
        self.carried += len(taken)
        return Carried(self, taken)

    def _requeue(self, items: list[_Pending]) -> None:
        self.carried -= len(items)
        self._pending[:0] = items
        if items:
            self._now.set()  # they waited long enough
            self._start_committer()

    def _start_committer(self) -> None:
        if self._committer is None or self._committer.done():
            # The commit is owned by no caller: a caller cancelled while it
            # waits must not cancel the others' releases.
            self._committer = asyncio.get_running_loop().create_task(
                self._commit_pending(), name="release-commit")

    async def _commit_pending(self) -> None:
        while self._pending:
            if not self._now.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.linger):
                        await self._now.wait()
            self._now.clear()
            pending, self._pending = self._pending, []
            for batch in batches(pending):
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            self.commits += 1
            await self.store.txn([], [item.txn for item in batch], [])
        except Exception as exc:  # handed to each caller, who decides what it means
            _settle(batch, exc)
            return
        _settle(batch, None)

    async def close(self) -> None:
        """Commit what is waiting, now."""
        self._now.set()
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await self._committer
