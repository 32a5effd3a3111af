"""Claims made in one turn of the event loop go out as one transaction, each
decided by its own compares as if it had gone alone."""

import asyncio
from collections.abc import Sequence

import pytest

from cronswarm.coord import (
    Compare,
    CoordUnavailable,
    Get,
    MemoryCoordStore,
    Put,
    Txn,
    TxnOp,
    TxnResult,
)
from cronswarm.worker._claim_batch import ClaimBatcher


class Recording(MemoryCoordStore):
    """A store that keeps the transactions it was sent (and may fail them)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[tuple[Compare, ...], tuple[TxnOp, ...]]] = []
        self.down = False

    async def txn(self, compare: Sequence[Compare], success: Sequence[TxnOp],
                  failure: Sequence[TxnOp] = ()) -> TxnResult:
        self.sent.append((tuple(compare), tuple(success)))
        if self.down:
            raise CoordUnavailable("etcd is down")
        return await super().txn(compare, success, failure)


def claim_of(job: str, tick: bytes) -> tuple[list[Compare], list[TxnOp], list[TxnOp]]:
    """A claim's shape: move /last forward if it is older, else read it."""
    key = f"last/{job}"
    return ([Compare.value(key, "<", tick)],
            [Put(key, tick), Txn((Compare.absent(f"lock/{job}"),), (Put(f"lock/{job}", tick),))],
            [Get(key)])


async def stores_with_tokens() -> tuple[Recording, MemoryCoordStore]:
    batched, alone = Recording(), MemoryCoordStore()
    for store in (batched, alone):
        await store.put("last/a", b"0001")
        await store.put("last/b", b"0009")
        await store.put("last/c", b"0002")
    return batched, alone


async def test_the_claims_of_one_turn_are_one_commit_each_decided_as_if_alone() -> None:
    batched, alone = await stores_with_tokens()
    batcher = ClaimBatcher(batched)
    claims = [claim_of("a", b"0005"), claim_of("b", b"0005"), claim_of("c", b"0005")]
    before = batched.revision
    results = await asyncio.gather(*(batcher.txn(*ops) for ops in claims))
    assert batcher.commits == 1 and len(batched.sent) == 1
    assert batched.revision == before + 1  # one revision for the three
    expected = [await alone.txn(*ops) for ops in claims]
    for got, want in zip(results, expected, strict=True):
        assert got.succeeded == want.succeeded and got.revision == batched.revision
        assert [[(kv.key, kv.value) for kv in found] for found in got.gets] == \
            [[(kv.key, kv.value) for kv in found] for found in want.gets]
        assert [n.succeeded for n in got.nested] == [n.succeeded for n in want.nested]
    assert [r.succeeded for r in results] == [True, False, True]  # b's token is newer
    for job in "abc":
        assert (await batched.get(f"last/{job}")) is not None
        assert (await batched.get(f"last/{job}")).value == (  # type: ignore[union-attr]
            await alone.get(f"last/{job}")).value  # type: ignore[union-attr]


async def test_claims_sharing_a_key_go_in_separate_commits_in_order() -> None:
    store = Recording()
    batcher = ClaimBatcher(store)
    first = ([Compare.absent("lock/j")], [Put("lock/j", b"1")], [Get("lock/j")])
    second = ([Compare.absent("lock/j")], [Put("lock/j", b"2")], [Get("lock/j")])
    other = ([Compare.absent("lock/k")], [Put("lock/k", b"3")], [])
    one, two, three = await asyncio.gather(
        batcher.txn(*first), batcher.txn(*second), batcher.txn(*other))
    assert batcher.commits == 2  # [first, other] then [second]
    assert one.succeeded and three.succeeded and not two.succeeded
    assert two.gets[0][0].value == b"1"


async def test_a_lone_claim_goes_out_as_it_is() -> None:
    store, _ = await stores_with_tokens()
    batcher = ClaimBatcher(store)
    ops = claim_of("a", b"0005")
    result = await batcher.txn(*ops)
    assert result.succeeded and store.sent == [(tuple(ops[0]), tuple(ops[1]))]


async def test_a_failed_commit_fails_each_claim_in_it() -> None:
    store = Recording()
    store.down = True
    batcher = ClaimBatcher(store)
    outcomes = await asyncio.gather(batcher.txn(*claim_of("a", b"1")),
                                    batcher.txn(*claim_of("b", b"1")), return_exceptions=True)
    assert [type(o) for o in outcomes] == [CoordUnavailable, CoordUnavailable]
    assert batcher.commits == 1


async def test_a_claim_cancelled_before_its_turn_ends_is_not_sent() -> None:
    store, _ = await stores_with_tokens()
    batcher = ClaimBatcher(store)
    gone = asyncio.ensure_future(batcher.txn(*claim_of("a", b"0005")))
    kept = asyncio.ensure_future(batcher.txn(*claim_of("c", b"0005")))
    await asyncio.sleep(0)  # both wait for the end of the turn
    gone.cancel()
    assert (await kept).succeeded
    with pytest.raises(asyncio.CancelledError):
        await gone
    last_a = await store.get("last/a")
    assert last_a is not None and last_a.value == b"0001" and len(store.sent) == 1
