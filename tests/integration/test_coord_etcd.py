"""Contract of the coordination store, on a real etcd."""

import asyncio
import contextlib

import pytest

from cronswarm.common import Settings
from cronswarm.coord import (
    Compare,
    CoordUnavailable,
    Delete,
    EtcdStore,
    Get,
    LeaseKeeper,
    PrefixMirror,
    Put,
    Txn,
    wait_deleted,
)
from cronswarm.devservices import EtcdServer


async def test_put_get_delete_prefix(store: EtcdStore, settings: Settings) -> None:
    p = settings.key_prefix + "/kv/"
    rev = await store.put(p + "a", b"1")
    await store.put(p + "b", b"2")
    kv = await store.get(p + "a")
    assert kv is not None
    assert (kv.value, kv.mod_revision, kv.version) == (b"1", rev, 1)
    kvs, revision = await store.get_prefix(p)
    assert [(k.key, k.value) for k in kvs] == [(p + "a", b"1"), (p + "b", b"2")]
    assert revision >= rev
    assert await store.delete(p, prefix=True) == 2
    assert await store.get(p + "a") is None


async def test_value_compare_on_missing_key_fails(store: EtcdStore, settings: Settings) -> None:
    key = settings.key_prefix + "/missing"
    result = await store.txn([Compare.value(key, "<", b"9")], [Put(key, b"x")], [Get(key)])
    assert not result.succeeded
    assert result.gets == [[]]
    result = await store.txn([Compare.absent(key)], [Put(key, b"x")])
    assert result.succeeded


async def test_txn_fencing_compare_and_nested_txn(store: EtcdStore, settings: Settings) -> None:
    last, lock = settings.key_prefix + "/last", settings.key_prefix + "/lock"
    await store.put(last, b"0005")
    won = await store.txn([Compare.value(last, "<", b"0007")],
                          [Put(last, b"0007"), Txn((Compare.absent(lock),), (Put(lock, b"r"),),
                                                   (Get(lock),))], [Get(last)])
    assert won.succeeded and won.nested[0].succeeded
    again = await store.txn([Compare.value(last, "<", b"0007")], [Put(last, b"0007")],
                            [Get(last)])
    assert not again.succeeded
    assert again.gets[0][0].value == b"0007"
    busy = await store.txn([Compare.value(last, "<", b"0008")],
                           [Put(last, b"0008"), Txn((Compare.absent(lock),), (Put(lock, b"s"),),
                                                    (Get(lock),))])
    assert busy.succeeded and not busy.nested[0].succeeded
    assert busy.nested[0].gets[0][0].value == b"r"
    await store.txn([], [Delete(lock)])
    assert await store.get(lock) is None


async def test_lease_keys_vanish_on_revoke_and_expiry(store: EtcdStore,
                                                      settings: Settings) -> None:
    key = settings.key_prefix + "/leased"
    lease = await store.grant_lease(2)
    await store.put(key, b"x", lease=lease)
    assert await store.keepalive(lease) == 2
    await store.revoke_lease(lease)
    assert await store.get(key) is None
    assert await store.keepalive(lease) == 0
    await store.revoke_lease(lease)  # revoking twice is not an error
    short = await store.grant_lease(2)
    await store.put(key, b"y", lease=short)
    async with asyncio.timeout(10):
        await wait_deleted(store, key)  # expires after 2 s without keep-alive


async def test_lease_keeper_keeps_keys_alive(store: EtcdStore, settings: Settings) -> None:
    key = settings.key_prefix + "/kept"
    keeper = LeaseKeeper(store, 2)
    lease = await keeper.grant()
    await store.put(key, b"x", lease=lease)
    task = asyncio.create_task(keeper.run())
    try:
        watcher = asyncio.create_task(wait_deleted(store, key))
        done, _ = await asyncio.wait({watcher}, timeout=5)  # > 2 TTLs
        assert not done, "the key expired although its lease was kept alive"
        watcher.cancel()
        assert keeper.alive.is_set()
    finally:
        task.cancel()
        await keeper.revoke()
    assert await store.get(key) is None


async def test_scan_prefix_reads_pages_of_one_snapshot(store: EtcdStore,
                                                       settings: Settings) -> None:
    p = settings.key_prefix + "/scan/"
    for i in range(7):
        await store.put(f"{p}{i}", str(i).encode())
    await store.put(settings.key_prefix + "/scan0", b"outside the prefix")
    pages: list[list[str]] = []
    revisions: set[int] = set()
    async for kvs, revision in store.scan_prefix(p, page_size=3):
        pages.append([kv.key.removeprefix(p) for kv in kvs])
        revisions.add(revision)
        if len(pages) == 1:
            # Written after the first page: not in the snapshot the pages come from.
            await store.put(p + "5", b"changed")
            await store.put(p + "9", b"new")
            await store.delete(p + "6")
    assert pages == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    assert len(revisions) == 1
    assert [kv.value for kv in (await store.get_prefix(p))[0]][5:] == [b"changed", b"new"]
    pages = [[kv.key for kv in kvs] async for kvs, _ in store.scan_prefix(p + "none/")]
    assert pages == [[]]
    # Left after one page: the read of the next one (already asked for) is dropped.
    async with contextlib.aclosing(store.scan_prefix(p, page_size=2)) as scan:
        async for kvs, _ in scan:
            assert [kv.key.removeprefix(p) for kv in kvs] == ["0", "1"]
            assert any(t.get_coro().__qualname__ == "EtcdStore.scan_prefix.<locals>.page"  # type: ignore[union-attr]
                       for t in asyncio.all_tasks())
            break
    assert not any(t.get_coro().__qualname__ == "EtcdStore.scan_prefix.<locals>.page"  # type: ignore[union-attr]
                   for t in asyncio.all_tasks())


async def test_scan_prefix_reads_about_page_bytes_at_a_time(store: EtcdStore,
                                                             settings: Settings) -> None:
    p = settings.key_prefix + "/bulk/"
    for i in range(60):
        await store.put(f"{p}{i:02d}", b"x" * 100)
    before = store.stats["range"]
    keys = [kv.key async for kvs, _ in store.scan_prefix(p, page_size=5, page_bytes=2000)
            for kv in kvs]
    assert keys == [f"{p}{i:02d}" for i in range(60)]
    # 5 keys first, then about 2000 bytes (some 15 keys of 130 bytes) a read:
    # a handful of reads, where pages of 5 would take 12.
    assert 3 <= store.stats["range"] - before <= 6


async def test_scan_prefix_halves_a_read_whose_reply_is_over_the_limit(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from cronswarm.coord import _etcd_channel
    options = [(k, v) for k, v in _etcd_channel._CHANNEL_OPTIONS
               if k != "grpc.max_receive_message_length"]
    monkeypatch.setattr(_etcd_channel, "_CHANNEL_OPTIONS",
                        (*options, ("grpc.max_receive_message_length", 64 << 10)))
    small = EtcdStore(settings.etcd_endpoints)
    try:
        p = settings.key_prefix + "/big/"
        for i in range(12):
            await small.put(f"{p}{i:02d}", b"x" * (10 << 10))
        keys = [kv.key async for kvs, _ in small.scan_prefix(p, page_size=12)
                for kv in kvs]
        assert keys == [f"{p}{i:02d}" for i in range(12)]  # 120 KiB in replies under 64
        assert small.stats["errors"] >= 1  # the read of all 12 was refused once
    finally:
        await small.close()


async def test_mirror_reload_reports_keys_gone_meanwhile(store: EtcdStore,
                                                         settings: Settings) -> None:
    # What a reload after the watch history was compacted does.
    p = settings.key_prefix + "/reload/"
    await store.put(p + "a", b"1")
    await store.put(p + "b", b"2")
    seen: list[tuple[str, bytes | None, bytes | None]] = []
    mirror = PrefixMirror(store, p, on_change=lambda n, kv, old: seen.append(
        (n, None if kv is None else kv.value, None if old is None else old.value)))
    await mirror._load()
    await store.delete(p + "a")
    await store.put(p + "b", b"3")
    await store.put(p + "c", b"4")
    await mirror._load()
    assert seen[:2] == [("a", b"1", None), ("b", b"2", None)]
    assert sorted(seen[2:], key=repr) == [("a", None, b"1"), ("b", b"3", b"2"),
                                          ("c", b"4", None)]
    assert {n: kv.value for n, kv in mirror.items.items()} == {"b": b"3", "c": b"4"}
    assert mirror.revision == (await store.get_prefix(p))[1]


async def test_mirror_without_values_reports_only_what_changed(
        store: EtcdStore, settings: Settings) -> None:
    p = settings.key_prefix + "/novalues/"
    for name in "abc":
        await store.put(p + name, b"1")
    seen: list[tuple[str, bytes | None]] = []
    mirror = PrefixMirror(store, p, keep_values=False, on_change=lambda n, kv, _old: seen.append(
        (n, None if kv is None else kv.value)))
    await mirror._load()
    await store.put(p + "b", b"2")
    await store.delete(p + "c")
    await mirror._load()  # a reload: "a" did not change and is not reported again
    assert seen == [("a", b"1"), ("b", b"1"), ("c", b"1"), ("b", b"2"), ("c", None)]
    assert sorted(mirror.items) == ["a", "b"]
    assert all(kv.value == b"" for kv in mirror.items.values())
    task = asyncio.create_task(mirror.run())
    try:
        async with asyncio.timeout(5):
            await mirror.ready.wait()
            await store.put(p + "a", b"3")
            await mirror.wait_for(lambda: len(seen) == 6)
    finally:
        task.cancel()
    assert seen[5:] == [("a", b"3")]


async def test_mirror_follows_changes(store: EtcdStore, settings: Settings) -> None:
    p = settings.key_prefix + "/m/"
    await store.put(p + "a", b"1")
    seen: list[tuple[str, bytes | None]] = []
    mirror = PrefixMirror(store, p, on_change=lambda n, kv, _old: seen.append(
        (n, None if kv is None else kv.value)))
    task = asyncio.create_task(mirror.run())
    try:
        async with asyncio.timeout(5):
            await mirror.ready.wait()
            assert set(mirror.items) == {"a"}
            await store.put(p + "b", b"2")
            await store.delete(p + "a")
            await mirror.wait_for(lambda: "b" in mirror.items and "a" not in mirror.items)
    finally:
        task.cancel()
    assert seen == [("a", b"1"), ("b", b"2"), ("a", None)]


async def test_unreachable_etcd_raises_coord_unavailable() -> None:
    from cronswarm.devservices import free_port

    dead = EtcdStore([f"127.0.0.1:{free_port()}"], timeout=0.5)
    with pytest.raises(CoordUnavailable):
        await dead.get("/x")
    await dead.close()


async def test_a_watch_resumes_after_etcd_restarts_missing_and_repeating_nothing(
    own_etcd: EtcdServer,
) -> None:
    watcher = EtcdStore([own_etcd.endpoint], timeout=1)
    writer = EtcdStore([own_etcd.endpoint], timeout=1)
    events: list[tuple[str, str, int]] = []
    changed = asyncio.Event()

    async def follow() -> None:
        async for batch in watcher.watch_prefix("/w/", 1):
            events.extend((e.type, e.key, e.mod_revision) for e in batch)
            changed.set()

    async def until(count: int) -> None:
        async with asyncio.timeout(30):
            while len(events) < count:
                changed.clear()
                await changed.wait()

    task = asyncio.create_task(follow())
    try:
        await writer.put("/w/a", b"1")
        await until(1)
        own_etcd.stop()  # the watch's stream breaks
        own_etcd.start()
        # Written before the watch is back: it must resume from the revision
        # after the last event it delivered, so it gets these, once each.
        await writer.put("/w/b", b"2")
        await writer.delete("/w/a")
        await until(3)
    finally:
        task.cancel()
        await watcher.close()
        await writer.close()
    assert [(t, k) for t, k, _ in events] == [("put", "/w/a"), ("put", "/w/b"),
                                              ("delete", "/w/a")]
    revisions = [r for _, _, r in events]
    assert revisions == sorted(set(revisions))


async def test_a_kept_lease_survives_an_etcd_restart(own_etcd: EtcdServer) -> None:
    store = EtcdStore([own_etcd.endpoint], timeout=1)
    keeper = LeaseKeeper(store, 4)
    lease = await keeper.grant()
    await store.put("/kept", b"x", lease=lease)
    task = asyncio.create_task(keeper.run())
    try:
        own_etcd.stop()  # keep-alives fail meanwhile; the keeper retries
        own_etcd.start()
        watcher = asyncio.create_task(wait_deleted(store, "/kept"))
        done, _ = await asyncio.wait({watcher, task}, timeout=10)  # > 2 TTLs
        assert not done, "the key expired or the keeper stopped"
        watcher.cancel()
        assert keeper.alive.is_set() and keeper.renewals == 0  # the same lease, kept
        kv = await store.get("/kept")
        assert kv is not None and kv.lease == lease
    finally:
        task.cancel()
        await keeper.revoke()
        await store.close()
