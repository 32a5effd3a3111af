"""Waiting on etcd keys through watches (no polling)."""

from __future__ import annotations

from ._abc import CoordStore


async def wait_deleted(store: CoordStore, key: str) -> None:
    """Return once ``key`` does not exist (at once if it does not now)."""
    kvs, revision = await store.get_prefix(key)
    if not any(kv.key == key for kv in kvs):
        return
    async for batch in store.watch_prefix(key, revision + 1):
        if any(e.type == "delete" and e.key == key for e in batch):
            return
