"""Election on a real etcd: one leader at a time; a resigning leader is replaced at
once, a leader cut off from etcd steps down before anyone else is elected."""

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import (
    Compare,
    CoordUnavailable,
    Election,
    EtcdStore,
    Put,
    Term,
    TxnOp,
    TxnResult,
    WatchEvent,
    leader_of,
)

TTL = 3


class CutOff:
    """A CoordStore that can be cut off from etcd (every call fails) at will."""

    def __init__(self, inner: EtcdStore) -> None:
        self.inner = inner
        self.cut = False

    def _check(self) -> None:
        if self.cut:
            raise CoordUnavailable("cut off by the test")

    async def get(self, key: str) -> Any:
        self._check()
        return await self.inner.get(key)

    async def get_prefix(self, prefix: str) -> Any:
        self._check()
        return await self.inner.get_prefix(prefix)

    async def txn(self, compare: Sequence[Compare], success: Sequence[TxnOp],
                  failure: Sequence[TxnOp] = ()) -> TxnResult:
        self._check()
        return await self.inner.txn(compare, success, failure)

    async def grant_lease(self, ttl: int) -> int:
        self._check()
        return await self.inner.grant_lease(ttl)

    async def keepalive(self, lease_id: int) -> int:
        self._check()
        return await self.inner.keepalive(lease_id)

    async def revoke_lease(self, lease_id: int) -> None:
        self._check()
        await self.inner.revoke_lease(lease_id)

    async def watch_prefix(self, prefix: str, start_revision: int
                           ) -> AsyncIterator[list[WatchEvent]]:
        self._check()
        async for batch in self.inner.watch_prefix(prefix, start_revision):
            self._check()
            yield batch


class Candidate:
    def __init__(self, name: str, store: CutOff, key: str, log: list[tuple[str, str, float]]
                 ) -> None:
        self.name = name
        self.store = store
        self.election = Election(store, key, name, TTL)  # type: ignore[arg-type]
        self.log = log
        self.task: asyncio.Task[None] | None = None

    async def lead(self, term: Term) -> None:
        self.log.append((self.name, "start", time.monotonic()))
        try:
            await asyncio.Event().wait()
        finally:
            self.log.append((self.name, "end", time.monotonic()))

    def start(self) -> None:
        self.task = asyncio.create_task(self.election.run(self.lead))

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def wait_leader(candidates: list[Candidate], *, exclude: str | None = None,
                      timeout: float = 20) -> Candidate:
    async with asyncio.timeout(timeout):
        while True:
            leaders = [c for c in candidates if c.election.is_leader and c.name != exclude]
            if leaders:
                return leaders[0]
            await asyncio.wait([asyncio.ensure_future(c.election.changed.wait())
                                for c in candidates], return_when=asyncio.FIRST_COMPLETED)


def assert_never_two(log: list[tuple[str, str, float]]) -> None:
    leading: set[str] = set()
    for name, what, _ in sorted(log, key=lambda e: e[2]):
        if what == "start":
            assert not leading, f"{name} started while {leading} led: {log}"
            leading.add(name)
        else:
            leading.discard(name)


async def test_one_leader_resign_hands_over_at_once_and_cut_off_leader_steps_down_first(
    settings: Settings, store: EtcdStore, keys: Keyspace,
) -> None:
    log: list[tuple[str, str, float]] = []
    stores = [CutOff(EtcdStore(settings.etcd_endpoints)) for _ in range(3)]
    candidates = [Candidate(f"m{i}", s, keys.leader, log) for i, s in enumerate(stores)]
    try:
        for c in candidates:
            c.start()
        first = await wait_leader(candidates)
        assert leader_of(await store.get(keys.leader)) == first.name
        assert sum(c.election.is_leader for c in candidates) == 1
        term1 = first.election.term
        assert term1 is not None

        # Resigning (shutdown) revokes the lease: another is elected at once.
        resigned = time.monotonic()
        await first.stop()
        second = await wait_leader(candidates, exclude=first.name)
        handover = time.monotonic() - resigned
        assert handover < 1.5, handover
        term2 = second.election.term
        assert term2 is not None and term2.number > term1.number

        # Cut off from etcd, the leader stops leading before its lease can expire;
        # only after the expiry is a third candidate elected.
        cut_at = time.monotonic()
        second.store.cut = True
        third = await wait_leader(candidates, exclude=second.name, timeout=TTL * 4)
        takeover = time.monotonic() - cut_at
        assert takeover <= TTL + 1.5, takeover
        ends = [t for name, what, t in log if name == second.name and what == "end"]
        starts = [t for name, what, t in log if name == third.name and what == "start"]
        assert ends and starts and ends[-1] < starts[-1]
        assert not second.election.is_leader
        # A cut-off leader cannot write under its old term.
        term3 = third.election.term
        assert term3 is not None
        stale = await store.txn([term2.fence()], [Put(keys.prefix + "/x", b"1")])
        assert not stale.succeeded
        fresh = await store.txn([term3.fence()], [Put(keys.prefix + "/x", b"1")])
        assert fresh.succeeded
        second.store.cut = False
    finally:
        for c in candidates:
            if c.task is not None and not c.task.done():
                await c.stop()
        for s in stores:
            await s.inner.close()
    assert_never_two(log)
