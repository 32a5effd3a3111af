"""How waiting releases are cut into commits (pure)."""

import asyncio

from cronswarm.coord import Compare, Delete, Txn
from cronswarm.worker._release import _keys_of, _Pending, batches


def pending(*keys: str) -> _Pending:
    txn = Txn((Compare.value(keys[0], "==", b"x"),), tuple(Delete(k) for k in keys))
    return _Pending(txn, _keys_of(txn), asyncio.get_running_loop().create_future())


async def test_releases_sharing_no_key_go_together_up_to_the_cap() -> None:
    items = [pending(f"lock/{i}", f"running/{i}") for i in range(10)]
    assert [len(b) for b in batches(items, max_ops=4)] == [4, 4, 2]
    assert [i for b in batches(items, max_ops=4) for i in b] == items  # in order


async def test_a_key_already_in_the_commit_starts_the_next() -> None:
    a, b, c = pending("lock/j", "running/1"), pending("running/2"), pending("lock/j", "running/3")
    assert batches([a, b, c]) == [[a, b], [c]]
