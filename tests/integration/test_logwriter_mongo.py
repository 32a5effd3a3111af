"""The batching writer against the real MongoDB-protocol server: when batches flush."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from cronswarm.common import RunRecord, RunStatus
from cronswarm.logstore import MongoLogStore
from cronswarm.worker import FlushEvent, LogWriter, Spool

DEADLINE = 30  # seconds; generous for a slow shared machine


def rec(i: int, status: RunStatus = RunStatus.SUCCEEDED) -> RunRecord:
    tick = 1_700_000_000_000 + i * 1000
    return RunRecord(run_id=f"flush@{tick}", job="flush", tick=tick, attempt=1, worker="w",
                     summary="true", status=status, started=tick + 1,
                     ended=None if status is RunStatus.RUNNING else tick + 9)


class Flushes:
    """Collects flush events; ``next()`` waits for the next one with a deadline."""

    def __init__(self) -> None:
        self.events: list[FlushEvent] = []
        self._queue: asyncio.Queue[FlushEvent] = asyncio.Queue()

    def __call__(self, event: FlushEvent) -> None:
        self.events.append(event)
        self._queue.put_nowait(event)

    async def next(self) -> FlushEvent:
        async with asyncio.timeout(DEADLINE):
            return await self._queue.get()


@contextlib.asynccontextmanager
async def writer_for(logs: MongoLogStore, spool_dir: Path, flushes: Flushes, *,
                     batch_size: int, flush_interval: float) -> AsyncIterator[LogWriter]:
    writer = LogWriter(logs, Spool(spool_dir, max_bytes=1 << 24), batch_size=batch_size,
                       flush_interval=flush_interval, on_flush=flushes)
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        await writer.close()
        task.cancel()
        await asyncio.wait([task])


async def test_a_full_batch_flushes_at_once(logs: MongoLogStore, tmp_path: Path) -> None:
    flushes = Flushes()
    # The timer is an hour: only the size can trigger these flushes.
    async with writer_for(logs, tmp_path, flushes, batch_size=5, flush_interval=3600) as writer:
        for i in range(4):
            await writer.submit(rec(i))
        assert flushes.events == [] and writer.queue_depth == 4  # 4 < 5: nothing due
        assert await logs.runs.count_documents({"job": "flush"}) == 0
        await writer.submit(rec(4))
        event = await flushes.next()
        assert (event.reason, event.records, event.from_spool) == ("size", 5, False)
        assert await logs.runs.count_documents({"job": "flush"}) == 5
        for i in range(5, 15):
            await writer.submit(rec(i))
        assert [(await flushes.next()).records for _ in range(2)] == [5, 5]
    assert await logs.runs.count_documents({"job": "flush"}) == 15
    assert writer.counters.written == 15


async def test_a_partial_batch_flushes_when_its_first_record_is_old_enough(
        logs: MongoLogStore, tmp_path: Path) -> None:
    flushes = Flushes()
    interval = 0.4
    loop = asyncio.get_running_loop()
    # The size is a thousand: only the timer can trigger this flush.
    async with writer_for(logs, tmp_path, flushes, batch_size=1000,
                          flush_interval=interval) as writer:
        first = loop.time()
        for i in range(3):
            await writer.submit(rec(i, RunStatus.RUNNING))
        event = await flushes.next()
        flushed = loop.time()
        assert (event.reason, event.records) == ("time", 3)
        assert flushed - first >= interval  # not before the timer...
        assert flushed - first < interval + DEADLINE  # ...and it did fire
        docs = await logs.runs.find({"job": "flush"}).to_list(None)
        assert sorted(d["status"] for d in docs) == ["running"] * 3
        # A new batch starts its own timer.
        await writer.submit(rec(0))
        event = await flushes.next()
        assert (event.reason, event.records) == ("time", 1)
    got = await logs.get_run(rec(0).record_id)
    assert got is not None and got.status is RunStatus.SUCCEEDED


async def test_close_flushes_what_is_queued(logs: MongoLogStore, tmp_path: Path) -> None:
    flushes = Flushes()
    async with writer_for(logs, tmp_path, flushes, batch_size=1000,
                          flush_interval=3600) as writer:
        for i in range(7):
            await writer.submit(rec(i))
    assert [(e.reason, e.records) for e in flushes.events] == [("close", 7)]
    assert await logs.runs.count_documents({"job": "flush"}) == 7
    assert list(writer.spool.path.glob("*.seg")) == []  # a clean close leaves no spool
