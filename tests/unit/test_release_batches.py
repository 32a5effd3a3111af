"""How waiting releases are cut into commits, and carried by claims."""

import asyncio

from cronswarm.coord import Compare, Delete, MemoryCoordStore, Put, Txn
from cronswarm.worker._release import Queued, ReleaseBatcher, _Pending, batches


def pending(*keys: str) -> _Pending:
    txn = Txn((Compare.value(keys[0], "==", b"x"),), tuple(Delete(k) for k in keys))
    return Queued.of(txn)


async def test_releases_sharing_no_key_go_together_up_to_the_cap() -> None:
    items = [pending(f"lock/{i}", f"running/{i}") for i in range(10)]
    assert [len(b) for b in batches(items, max_ops=4)] == [4, 4, 2]
    assert [i for b in batches(items, max_ops=4) for i in b] == items  # in order


async def test_a_key_already_in_the_commit_starts_the_next() -> None:
    a, b, c = pending("lock/j", "running/1"), pending("running/2"), pending("lock/j", "running/3")
    assert batches([a, b, c]) == [[a, b], [c]]


async def test_a_claim_carries_the_waiting_releases_that_touch_none_of_its_keys() -> None:
    store = MemoryCoordStore()
    for key in ("running/1", "running/2", "lock/j"):
        await store.put(key, b"mine")
    batcher = ReleaseBatcher(store, linger=3600)  # nothing leaves by itself
    waiting = [asyncio.ensure_future(batcher.release(Txn((), (Delete(k),)), urgent=False))
               for k in ("running/1", "lock/j", "running/2")]
    await asyncio.sleep(0)  # the three are waiting
    carried = batcher.carry(frozenset({"lock/j", "last/j"}))
    assert [op.success[0].key for op in carried.ops] == ["running/1", "running/2"]
    before = store.revision
    await store.txn([], [Put("last/j", b"tick"), *carried.ops], [])
    carried.sent()
    assert store.revision == before + 1  # the claim and both releases: one revision
    await asyncio.gather(waiting[0], waiting[2])
    assert await store.get("running/1") is None and await store.get("running/2") is None
    assert not waiting[1].done() and batcher.commits == 0  # the lock's stays behind
    await batcher.close()
    await waiting[1]
    assert batcher.commits == 1 and await store.get("lock/j") is None


async def test_releases_a_failed_claim_carried_go_out_on_their_own() -> None:
    store = MemoryCoordStore()
    await store.put("running/1", b"mine")
    batcher = ReleaseBatcher(store, linger=3600)
    waiting = asyncio.ensure_future(batcher.release(Txn((), (Delete("running/1"),)),
                                                    urgent=False))
    await asyncio.sleep(0)
    carried = batcher.carry(frozenset(), room=8)
    assert len(carried.ops) == 1 and batcher.carry(frozenset()).ops == []  # taken once
    carried.give_back()  # the claim failed: it is not left waiting an hour
    await asyncio.wait_for(waiting, 5)
    assert batcher.commits == 1 and await store.get("running/1") is None
