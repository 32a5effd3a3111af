"""What only the coordination store's twin offers: its clock, its switch and its
timers. What it shares with etcd is in tests/contract/test_coord_contract.py."""

import asyncio

import pytest

from cronswarm.coord import CoordUnavailable, MemoryCoordStore, wait_deleted
from tests.contract.conftest import ManualClock


async def test_a_lease_expires_by_the_injected_clock_and_keepalive_postpones_it() -> None:
    clock = ManualClock()
    store = MemoryCoordStore(clock=clock)
    lease = await store.grant_lease(2)
    await store.put("/k", b"v", lease=lease)
    clock.now += 1.5
    assert await store.lease_ttl(lease) == 0  # truncated to whole seconds, as etcd does
    assert await store.keepalive(lease) == 2
    clock.now += 1.5
    assert await store.get("/k") is not None  # 3 s after the grant: kept alive
    clock.now += 0.5
    assert store.expire_leases() == 1
    assert await store.get("/k") is None
    await store.close()


async def test_an_unwatched_lease_expires_on_time_without_calls() -> None:
    store = MemoryCoordStore()  # the machine's monotonic clock
    lease = await store.grant_lease(1)
    await store.put("/k", b"v", lease=lease)
    async with asyncio.timeout(5):  # its timer collects it after 1 s
        await wait_deleted(store, "/k")
    assert await store.lease_ttl(lease) == -1
    await store.close()


async def test_switched_unavailable_calls_fail_and_watches_wait_then_miss_nothing() -> None:
    store = MemoryCoordStore()
    revision = await store.put("/k", b"1")
    watch = store.watch_prefix("/", revision + 1)
    waiting = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)  # one turn of the loop: the watch is then waiting for writes
    store.available = False
    with pytest.raises(CoordUnavailable):
        await store.get("/k")
    await asyncio.sleep(0)  # one turn: the watch, woken by the switch, looks and waits on
    assert not waiting.done()
    store.available = True
    written = await store.put("/k", b"2")
    async with asyncio.timeout(5):
        assert [e.mod_revision for e in await waiting] == [written]
    await store.close()
    with pytest.raises(CoordUnavailable):
        await anext(watch)
    with pytest.raises(CoordUnavailable):
        await store.ping()


async def test_compaction_cannot_pass_the_current_revision() -> None:
    store = MemoryCoordStore()
    revision = await store.put("/k", b"v")
    with pytest.raises(ValueError, match="current revision"):
        store.compact(revision + 1)
    await store.close()
