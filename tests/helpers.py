"""Waiting on real services by their own notifications, with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from cronswarm.coord import CoordStore, KeyValue, PrefixMirror

CHANGE_STREAM_NEEDS_REPLICA_SET = 40573  # MongoDB's error on a standalone server


async def wait_for_count(
    collection: AsyncCollection[dict[str, Any]],
    query: Mapping[str, Any],
    done: Callable[[int], bool],
    *,
    timeout: float,
) -> int:
    """Wait (on a change stream) until ``done(count of query)``; returns the count.

    Raises TimeoutError with the last count if the deadline passes first.
    """
    count = -1
    try:
        async with asyncio.timeout(timeout):
            async with await collection.watch() as stream:
                count = await collection.count_documents(dict(query))
                while not done(count):
                    await stream.next()
                    count = await collection.count_documents(dict(query))
    except TimeoutError:
        raise TimeoutError(f"condition not met within {timeout}s (count={count})") from None
    except OperationFailure as exc:
        if exc.code == CHANGE_STREAM_NEEDS_REPLICA_SET:
            raise RuntimeError(
                "the tests wait on MongoDB change streams, which a standalone mongod does "
                "not offer: give CRONSWARM_TEST_MONGODB_URI a replica set (a single-node "
                "one, mongod --replSet, is enough)") from exc
        raise
    return count


async def wait_for_prefix(
    store: CoordStore, prefix: str, done: Callable[[dict[str, KeyValue]], bool], *,
    timeout: float,
) -> dict[str, KeyValue]:
    """Wait (on an etcd watch) until ``done(keys under prefix)``; returns them."""
    mirror = PrefixMirror(store, prefix)
    task = asyncio.create_task(mirror.run())
    try:
        async with asyncio.timeout(timeout):
            await mirror.ready.wait()
            await mirror.wait_for(lambda: done(mirror.items))
    except TimeoutError:
        raise TimeoutError(f"{prefix}: condition not met within {timeout}s "
                           f"(keys: {sorted(mirror.items)})") from None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return dict(mirror.items)
