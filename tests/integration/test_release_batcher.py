"""Group commit of finished runs' keys, on a real etcd: releases that wait
together are one transaction, each decided by its own compare."""

import asyncio

import pytest

from cronswarm.common import Job, Keyspace, Settings, encode_tick
from cronswarm.coord import Compare, CoordUnavailable, Delete, EtcdStore, Put, Txn
from cronswarm.worker._claim import Outcome, Ticket, claim
from cronswarm.worker._release import ReleaseBatcher


def release_of(lock: str, running: str, info: bytes) -> Txn:
    return Txn((Compare.value(lock, "==", info),), (Delete(lock), Delete(running)),
               (Delete(running),))


async def test_releases_waiting_together_commit_as_one_transaction(
        store: EtcdStore, settings: Settings) -> None:
    p = settings.key_prefix + "/rel/"
    for i in range(10):
        await store.put(f"{p}running/{i}", b"mine")
    before = (await store.put(p + "mark", b"0"))
    await store.put(p + "lock", b"ours")
    batcher = ReleaseBatcher(store, linger=3600)  # only the urgent one sends them
    # Tasks start in the order they were made: the ten wait, then the urgent
    # one comes and takes them along.
    await asyncio.gather(*[batcher.release(Txn((), (Delete(f"{p}running/{i}"),)), urgent=False)
                           for i in range(10)],
                         batcher.release(release_of(p + "lock", p + "running/x", b"ours"),
                                         urgent=True))
    after = await store.put(p + "mark", b"1")
    assert after == before + 3  # the lock's put, one release transaction, this put
    assert batcher.commits == 1
    kvs, _ = await store.get_prefix(p + "running/")
    assert kvs == [] and await store.get(p + "lock") is None


async def test_each_release_is_decided_by_its_own_compare(
        store: EtcdStore, settings: Settings) -> None:
    p = settings.key_prefix + "/rel2/"
    await store.put(p + "lock-a", b"ours")
    await store.put(p + "lock-b", b"taken by another run")
    for name in ("a", "b"):
        await store.put(f"{p}running-{name}", b"x")
    batcher = ReleaseBatcher(store, linger=0.01)
    await asyncio.gather(
        batcher.release(release_of(p + "lock-a", p + "running-a", b"ours"), urgent=False),
        batcher.release(release_of(p + "lock-b", p + "running-b", b"ours"), urgent=False))
    assert batcher.commits == 1
    assert await store.get(p + "lock-a") is None
    held = await store.get(p + "lock-b")
    assert held is not None and held.value == b"taken by another run"
    assert await store.get(p + "running-a") is None and await store.get(p + "running-b") is None


async def test_two_releases_of_one_key_go_in_two_transactions(
        store: EtcdStore, settings: Settings) -> None:
    p = settings.key_prefix + "/rel3/"
    await store.put(p + "lock", b"one")
    batcher = ReleaseBatcher(store, linger=0.01)
    await asyncio.gather(
        batcher.release(release_of(p + "lock", p + "r1", b"one"), urgent=False),
        batcher.release(release_of(p + "lock", p + "r2", b"two"), urgent=False))
    assert batcher.commits == 2 and await store.get(p + "lock") is None


async def test_a_release_etcd_refuses_fails_for_its_caller(settings: Settings,
                                                           store: EtcdStore) -> None:
    batcher = ReleaseBatcher(store, linger=0)
    too_many = Txn((), tuple(Put(f"{settings.key_prefix}/rel4/{i}", b"x") for i in range(200)))
    with pytest.raises(CoordUnavailable, match="too many operations"):
        await batcher.release(too_many, urgent=True)


@pytest.mark.parametrize("overlap", ["allow", "forbid"])
async def test_a_claim_carries_the_waiting_releases_in_its_own_transaction(
        store: EtcdStore, settings: Settings, overlap: str) -> None:
    keys = Keyspace(settings.key_prefix + f"/carry-{overlap}")
    job = Job.from_dict({"name": "j", "schedule": "* * * * * *", "command": "true",
                         "overlap": overlap})
    other = Job.from_dict({"name": "k", "schedule": "* * * * * *", "command": "true"})
    lease = await store.grant_lease(30)
    await store.put(keys.last(job.name), encode_tick(1000, "w/0"))
    finished = [keys.running(name, f"{name}@1000") for name in (job.name, other.name)]
    for key in finished:
        await store.put(key, b"done", lease=lease)
    batcher = ReleaseBatcher(store, linger=3600)  # nothing leaves by itself
    releases = [asyncio.ensure_future(batcher.release(
        Txn((Compare.value(key, "==", b"done"),), (Delete(key),)), urgent=False))
        for key in finished]
    await asyncio.sleep(0)
    before = await store.put(keys.prefix + "/mark", b"0")
    ticket = Ticket("j@2000", b"run", lease, "w/1")
    won = await claim(store, keys, job, 2000, ticket, carry=batcher)
    after = await store.put(keys.prefix + "/mark", b"1")
    assert won.outcome is Outcome.WON
    assert after == before + 2  # the claim and both releases: one revision
    await asyncio.gather(*releases)
    assert batcher.commits == 0 and batcher.carried == 2
    assert [await store.get(key) for key in finished] == [None, None]
    taken = await claim(store, keys, job, 2000, Ticket("j@2000b", b"run", lease, "w/2"),
                        carry=batcher)
    assert taken.outcome is Outcome.TAKEN  # a lost claim still carries (none wait now)
