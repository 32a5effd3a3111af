"""The CoordStore contract: each test one promise, on the twin and on a real etcd."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cronswarm.coord import Compare, CoordUnavailable, Delete, Get, KeyValue, Put, Txn
from cronswarm.coord._abc import WatchCompacted
from cronswarm.coord._kv import CompareOp, CompareTarget

from .conftest import Coord

DEADLINE = 10.0  # seconds for anything a real etcd does by itself (a lease expiring)


Seen = tuple[str, str, bytes, int]  # an event: type, key, value, mod revision


@contextlib.asynccontextmanager
async def watching(coord: Coord, prefix: str, start_revision: int
                   ) -> AsyncIterator[Callable[[int], Awaitable[list[Seen]]]]:
    """A watch, read through ``take(n)``: its next ``n`` events (deadline: DEADLINE)."""
    watch = coord.store.watch_prefix(prefix, start_revision)
    pending: list[Seen] = []

    async def take(count: int) -> list[Seen]:
        async with asyncio.timeout(DEADLINE):
            while len(pending) < count:
                pending.extend((e.type, e.key, e.value, e.mod_revision)
                               for e in await anext(watch))
        taken = pending[:count]
        del pending[:count]
        return taken

    try:
        yield take
    finally:
        await watch.aclose()  # type: ignore[attr-defined]


async def test_put_creates_at_version_1_and_each_put_bumps_version_and_revision(
        coord: Coord) -> None:
    key = coord.key("k")
    first = await coord.store.put(key, b"1")
    second = await coord.store.put(key, b"2")
    assert second > first
    kv = await coord.store.get(key)
    assert kv == KeyValue(key, b"2", create_revision=first, mod_revision=second, version=2)


async def test_a_deleted_key_is_created_again_at_version_1(coord: Coord) -> None:
    key = coord.key("k")
    await coord.store.put(key, b"1")
    assert await coord.store.delete(key) == 1
    assert await coord.store.get(key) is None
    again = await coord.store.put(key, b"2")
    assert await coord.store.get(key) == KeyValue(key, b"2", again, again, 1)


async def test_a_write_that_changes_nothing_does_not_bump_the_revision(coord: Coord) -> None:
    key = coord.key("k")
    written = await coord.store.put(key, b"1")
    assert await coord.store.delete(coord.key("missing")) == 0
    assert await coord.store.delete(coord.key("none/"), prefix=True) == 0
    failed = await coord.store.txn([Compare.absent(key)], [Put(key, b"2")])
    read = await coord.store.txn([], [Get(key)])
    assert not failed.succeeded and failed.revision == written
    assert read.revision == written
    assert (await coord.store.get_prefix(coord.prefix))[1] == written


async def test_get_prefix_is_sorted_by_key_and_holds_only_the_prefix(coord: Coord) -> None:
    for name in ("p/b", "p/a", "p/ab", "p0", "q/a", "p"):
        last = await coord.store.put(coord.key(name), name.encode())
    kvs, revision = await coord.store.get_prefix(coord.key("p/"))
    assert [kv.value for kv in kvs] == [b"p/a", b"p/ab", b"p/b"]
    assert revision == last
    assert await coord.store.get_prefix(coord.key("none/")) == ([], last)


async def test_scan_prefix_pages_come_from_one_snapshot(coord: Coord) -> None:
    p = coord.key("scan/")
    for i in range(5):
        await coord.store.put(f"{p}{i}", b"v")
    await coord.store.put(coord.key("scan0"), b"outside the prefix")
    pages: list[list[str]] = []
    revisions: set[int] = set()
    async for kvs, revision in coord.store.scan_prefix(p, page_size=2):
        pages.append([kv.key.removeprefix(p) for kv in kvs])
        revisions.add(revision)
        if len(pages) == 1:  # written after the first page: not in the pages
            await coord.store.put(p + "9", b"new")
            await coord.store.delete(p + "4")
    assert pages == [["0", "1"], ["2", "3"], ["4"]]
    assert len(revisions) == 1
    assert [[kv.key for kv in kvs] async for kvs, _ in coord.store.scan_prefix(p + "x/")] == [[]]


async def test_scan_prefix_pages_stay_within_page_size_whatever_is_read_at_once(
        coord: Coord) -> None:
    p = coord.key("bulk/")
    for i in range(30):
        await coord.store.put(f"{p}{i:02d}", b"x" * 100)
    pages = [[kv.key.removeprefix(p) for kv in kvs]
             async for kvs, _ in coord.store.scan_prefix(p, page_size=4, page_bytes=2000)]
    assert all(1 <= len(page) <= 4 for page in pages)
    assert [k for page in pages for k in page] == [f"{i:02d}" for i in range(30)]


async def test_delete_prefix_deletes_only_under_it_and_counts(coord: Coord) -> None:
    for name in ("d/a", "d/b", "d/c/d", "d0", "e"):
        await coord.store.put(coord.key(name), b"v")
    assert await coord.store.delete(coord.key("d/"), prefix=True) == 3
    kvs, _ = await coord.store.get_prefix(coord.prefix)
    assert [kv.key for kv in kvs] == [coord.key("d0"), coord.key("e")]


@pytest.mark.parametrize("op", ["==", "!=", "<", ">"])
async def test_a_value_compare_on_a_missing_key_is_false_whatever_its_operator(
        coord: Coord, op: CompareOp) -> None:
    key = coord.key("missing")
    result = await coord.store.txn([Compare(key, "value", op, b"x")],
                                   [Put(key, b"won")], [Get(key)])
    assert not result.succeeded
    assert result.gets == [[]]
    assert await coord.store.get(key) is None


@pytest.mark.parametrize(("target", "op", "holds"), [
    ("version", "==", True), ("version", ">", False), ("create", "==", True),
    ("mod", "==", True), ("mod", "!=", False),
])
async def test_a_missing_key_has_version_and_revisions_0(
        coord: Coord, target: CompareTarget, op: CompareOp, holds: bool) -> None:
    compare = Compare(coord.key("missing"), target, op, 0)
    assert (await coord.store.txn([compare], [])).succeeded is holds


@pytest.mark.parametrize(("target", "op", "operand", "holds"), [
    ("value", "==", b"0005", True),
    ("value", "<", b"0007", True),
    ("value", ">", b"0007", False),
    ("value", "!=", b"0005", False),
    ("value", "<", b"01", True),  # bytes compare: "0005" < "01"
    ("version", "==", 2, True),
    ("version", ">", 2, False),
    ("create", "==", "created", True),
    ("create", "<", "written", True),
    ("mod", "==", "written", True),
    ("mod", ">", "created", True),
    ("mod", "!=", "written", False),
])
async def test_compares_on_an_existing_key(coord: Coord, target: CompareTarget, op: CompareOp,
                                           operand: bytes | int | str, holds: bool) -> None:
    key = coord.key("last")
    created = await coord.store.put(key, b"0001")
    written = await coord.store.put(key, b"0005")
    revisions = {"created": created, "written": written}
    compare = Compare(key, target, op,
                      revisions[operand] if isinstance(operand, str) else operand)
    assert (await coord.store.txn([compare], [])).succeeded is holds


async def test_a_txn_applies_its_branch_at_one_revision_and_reads_its_own_writes(
        coord: Coord) -> None:
    a, b, old = coord.key("a"), coord.key("b"), coord.key("old")
    await coord.store.put(old, b"x")
    result = await coord.store.txn([Compare.absent(a)],
                                   [Put(a, b"1"), Put(b, b"2"), Delete(old), Get(a)],
                                   [Get(a)])
    assert result.succeeded
    got_a, got_b = await coord.store.get(a), await coord.store.get(b)
    assert got_a is not None and got_b is not None
    assert got_a.mod_revision == got_b.mod_revision == result.revision
    assert [[kv.value for kv in kvs] for kvs in result.gets] == [[b"1"]]
    assert result.gets[0][0] == got_a
    assert await coord.store.get(old) is None


async def test_a_failed_txn_runs_its_failure_branch(coord: Coord) -> None:
    last, lost = coord.key("last"), coord.key("lost")
    await coord.store.put(last, b"0007")
    result = await coord.store.txn([Compare.value(last, "<", b"0007")],
                                   [Put(last, b"0007")], [Get(last), Put(lost, b"y")])
    assert not result.succeeded
    assert [kv.value for kv in result.gets[0]] == [b"0007"]
    held = await coord.store.get(lost)
    assert held is not None and held.mod_revision == result.revision


async def test_a_nested_txn_decides_on_its_own_compares(coord: Coord) -> None:
    last, lock = coord.key("last"), coord.key("lock")

    def claim(tick: bytes, holder: bytes) -> Txn:
        return Txn((Compare.value(last, "<", tick),),
                   (Put(last, tick), Txn((Compare.absent(lock),), (Put(lock, holder),),
                                         (Get(lock),))), (Get(last),))

    await coord.store.put(last, b"0005")
    for tick, holder, won, nested_won in ((b"0007", b"r", True, True),
                                          (b"0007", b"s", False, None),
                                          (b"0008", b"s", True, False)):
        outer = claim(tick, holder)
        result = await coord.store.txn(outer.compare, outer.success, outer.failure)
        assert result.succeeded is won
        assert [n.succeeded for n in result.nested] == ([] if nested_won is None
                                                        else [nested_won])
    assert result.nested[0].gets[0][0].value == b"r"
    assert result.nested[0].revision == result.revision


async def test_a_txn_writing_a_key_twice_is_refused_whole(coord: Coord) -> None:
    key, other = coord.key("twice"), coord.key("other")
    for ops in ([Put(other, b"1"), Put(key, b"1"), Put(key, b"2")],
                [Put(key, b"1"), Txn((), (Put(key, b"2"),))],
                [Put(key, b"1"), Delete(coord.key("tw"), prefix=True)]):
        with pytest.raises(CoordUnavailable, match="duplicate key"):
            await coord.store.txn([], ops)
    assert (await coord.store.get_prefix(coord.prefix))[0] == []


async def test_a_put_on_an_unknown_lease_is_refused(coord: Coord) -> None:
    lease = await coord.store.grant_lease(5)
    await coord.store.revoke_lease(lease)
    key = coord.key("k")
    with pytest.raises(CoordUnavailable, match="lease not found"):
        await coord.store.put(key, b"v", lease=lease)
    with pytest.raises(CoordUnavailable, match="lease not found"):
        await coord.store.txn([], [Put(coord.key("other"), b"v"), Put(key, b"v", lease)])
    assert (await coord.store.get_prefix(coord.prefix))[0] == []


async def test_a_lease_reports_its_ttl_and_keepalive_renews_it(coord: Coord) -> None:
    lease = await coord.store.grant_lease(5)
    key = coord.key("k")
    await coord.store.put(key, b"v", lease=lease)
    assert 0 < await coord.store.lease_ttl(lease) <= 5
    assert await coord.store.keepalive(lease) == 5
    held = await coord.store.get(key)
    assert held is not None and held.lease == lease
    await coord.store.revoke_lease(lease)


async def test_revoking_a_lease_deletes_its_keys_in_one_revision(coord: Coord) -> None:
    lease = await coord.store.grant_lease(5)
    a, b, kept = coord.key("a"), coord.key("b"), coord.key("kept")
    for key in (a, b, kept):
        written = await coord.store.put(key, b"v", lease=lease)
    detached = await coord.store.put(kept, b"detached")  # a put without the lease detaches
    async with watching(coord, coord.prefix, detached + 1) as take:
        await coord.store.revoke_lease(lease)
        seen = await take(2)
    assert [(t, k, v) for t, k, v, _ in seen] == [("delete", a, b""), ("delete", b, b"")]
    assert seen[0][3] == seen[1][3] > written
    assert await coord.store.get(kept) is not None
    assert await coord.store.keepalive(lease) == 0
    assert await coord.store.lease_ttl(lease) == -1
    await coord.store.revoke_lease(lease)  # revoking twice is not an error


async def test_an_expired_lease_deletes_its_keys_and_watches_see_it(coord: Coord) -> None:
    lease = await coord.store.grant_lease(1)  # etcd may grant more (its minimum TTL)
    key = coord.key("leased")
    written = await coord.store.put(key, b"v", lease=lease)
    async with watching(coord, coord.prefix, written + 1) as take:
        coord.let_time_pass(3)
        seen = await take(1)  # on etcd: once it expires, within the deadline
    assert [(t, k, v) for t, k, v, _ in seen] == [("delete", key, b"")]
    assert seen[0][3] > written
    assert await coord.store.get(key) is None
    assert await coord.store.keepalive(lease) == 0
    assert await coord.store.lease_ttl(lease) == -1


async def test_a_watch_replays_history_from_a_revision_in_order_then_goes_live(
        coord: Coord) -> None:
    a, b = coord.key("w/a"), coord.key("w/b")
    start = await coord.store.put(a, b"1")
    second = await coord.store.put(b, b"2")
    await coord.store.put(coord.key("x"), b"outside")
    both = (await coord.store.txn([], [Delete(a), Put(b, b"3")])).revision
    async with watching(coord, coord.key("w/"), second) as take:
        assert await take(3) == [("put", b, b"2", second), ("delete", a, b"", both),
                                 ("put", b, b"3", both)]
        live = await coord.store.put(a, b"4")
        assert await take(1) == [("put", a, b"4", live)]
    async with watching(coord, coord.key("w/"), start) as take:
        assert [e[3] for e in await take(5)] == [start, second, both, both, live]


async def test_a_watch_event_carries_the_key_value_revisions_and_lease(coord: Coord) -> None:
    key = coord.key("k")
    first = await coord.store.put(key, b"1")
    lease = await coord.store.grant_lease(5)
    second = await coord.store.put(key, b"2", lease=lease)
    watch = coord.store.watch_prefix(key, first)
    try:
        async with asyncio.timeout(DEADLINE):
            seen = list(await anext(watch))
            while len(seen) < 2:
                seen += await anext(watch)
    finally:
        await watch.aclose()  # type: ignore[attr-defined]
    assert [e.kv for e in seen] == [KeyValue(key, b"1", first, first, 1),
                                    KeyValue(key, b"2", first, second, 2, lease)]
    await coord.store.revoke_lease(lease)


async def test_a_watch_below_the_compacted_revision_raises(coord: Coord, compacts: None
                                                          ) -> None:
    key = coord.key("k")
    first = await coord.store.put(key, b"1")
    second = await coord.store.put(key, b"2")
    await coord.compact(second)
    with pytest.raises(WatchCompacted) as raised:
        async with watching(coord, key, first) as take:
            await take(1)
    assert raised.value.compact_revision == second
    async with watching(coord, key, second) as take:
        assert await take(1) == [("put", key, b"2", second)]


async def test_ping_answers(coord: Coord) -> None:
    await coord.store.ping()
