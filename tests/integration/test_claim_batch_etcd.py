"""The claims of one loop turn, batched, on the real etcd: one revision, each
claim decided by its own compares on the store as it was before the commit
(etcd evaluates nested compares before any write), as if it had gone alone."""

import asyncio

from cronswarm.common import Keyspace
from cronswarm.coord import Compare, Delete, EtcdStore, Get, Put, Txn, TxnOp
from cronswarm.worker._claim_batch import MAX_BATCH, ClaimBatcher
from cronswarm.worker._release import MAX_OPS


def claim_of(keys: Keyspace, job: str, tick: bytes
             ) -> tuple[list[Compare], list[TxnOp], list[TxnOp]]:
    last, lock = keys.last(job), keys.lock(job)
    return ([Compare.value(last, "<", tick)],
            [Put(last, tick), Txn((Compare.absent(lock),), (Put(lock, tick),), (Get(lock),))],
            [Get(last)])


async def test_a_batch_of_claims_is_one_revision_and_each_claim_its_own(
        store: EtcdStore, keys: Keyspace) -> None:
    await store.put(keys.last("a"), b"0001")
    await store.put(keys.last("b"), b"0009")
    await store.put(keys.last("c"), b"0002")
    await store.put(keys.lock("c"), b"held")
    batcher = ClaimBatcher(store)
    before = (await store.get(keys.last("a"))).mod_revision  # type: ignore[union-attr]
    a, b, c = await asyncio.gather(*(batcher.txn(*claim_of(keys, job, b"0005"))
                                     for job in "abc"))
    assert batcher.commits == 1
    assert a.succeeded and a.nested[0].succeeded  # won, and took its lock
    assert not b.succeeded and b.gets[0][0].value == b"0009"  # a newer token: taken
    assert c.succeeded and not c.nested[0].succeeded  # won, its lock held: skip
    assert c.nested[0].gets[0][0].value == b"held"
    assert a.revision == b.revision == c.revision > before
    for job, token in (("a", b"0005"), ("b", b"0009"), ("c", b"0005")):
        kv = await store.get(keys.last(job))
        assert kv is not None and kv.value == token
        if job != "b":
            assert kv.mod_revision == a.revision  # one revision for the batch


async def test_etcd_takes_a_full_batch_of_claims_each_carrying_full_releases(
        store: EtcdStore, keys: Keyspace) -> None:
    # The deepest and widest commit a worker sends: MAX_BATCH claims, each
    # carrying MAX_OPS releases nested as the runner builds them (etcd
    # counts a nested transaction's operations against what its parent's
    # branch leaves of the 128).
    batcher = ClaimBatcher(store)
    claims = []
    for j in range(MAX_BATCH):
        await store.put(keys.last(f"j{j}"), b"0001")
        releases: list[TxnOp] = []
        for r in range(MAX_OPS):
            running, lock = keys.running(f"j{j}", f"r{r}"), keys.lock(f"j{j}-{r}")
            release_lock = Txn((Compare.value(lock, "==", b"x"),), (Delete(lock),))
            releases.append(Txn((Compare.value(running, "==", b"x"),),
                                (Delete(running), release_lock), (release_lock,)))
        compare, success, failure = claim_of(keys, f"j{j}", b"0005")
        claims.append((compare, [*success, *releases], [*failure, *releases]))
    results = await asyncio.gather(*(batcher.txn(*ops) for ops in claims))
    assert batcher.commits == 1 and all(r.succeeded for r in results)
