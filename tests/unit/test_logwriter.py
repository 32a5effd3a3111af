"""The batching writer's logic against the in-memory twin of the log store.

The twin keeps the store's contract (tests/contract: idempotent, never
downgrades) and can be switched unavailable or made to reject records; the
spool is a real one on a temporary directory. The same writer against the
real MongoDB-protocol server is tested in tests/integration.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from cronswarm.common import RunRecord, RunStatus, Trigger
from cronswarm.logstore import LogStoreRejected, MemoryLogStore
from cronswarm.worker import FlushEvent, LogWriter, Spool, decode_record, encode_record


class TwinStore(MemoryLogStore):
    """The log store's twin, noting the record ids of each write it took."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[str]] = []  # record ids of each successful write
        self.changed = asyncio.Condition()

    async def write_runs(self, records: Sequence[RunRecord]) -> None:
        try:
            await super().write_runs(records)
        except LogStoreRejected:
            await self._taken(records)
            raise
        await self._taken(records)

    async def _taken(self, records: Sequence[RunRecord]) -> None:
        self.writes.append([r.record_id for r in records])
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, done: Callable[[], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(done)


def rec(i: int, status: RunStatus = RunStatus.SUCCEEDED, output: str = "") -> RunRecord:
    tick = 1_700_000_000_000 + i * 1000
    return RunRecord(run_id=f"job@{tick}", job="job", tick=tick, attempt=1, worker="w",
                     summary="echo", status=status, started=tick + 3,
                     ended=None if status is RunStatus.RUNNING else tick + 40, output=output)


@contextlib.asynccontextmanager
async def running(writer: LogWriter) -> AsyncIterator[LogWriter]:
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        await writer.close()
        task.cancel()
        await asyncio.wait([task])


def make(store: TwinStore, path: Path, **options: object) -> LogWriter:
    defaults: dict[str, object] = {"batch_size": 10, "flush_interval": 0.05,
                                   "retry_delay": 0.01, "retry_max_delay": 0.05}
    return LogWriter(store, Spool(path, max_bytes=1 << 24),
                     **{**defaults, **options})  # type: ignore[arg-type]


def test_records_round_trip_through_the_spool_encoding() -> None:
    record = rec(1, RunStatus.FAILED, output="héllo\x00")
    record.trigger = Trigger.RETRY
    record.extra = {"reason": "x", "n": [1, 2]}
    record.retention_days = 3
    assert decode_record(encode_record(record)) == record
    with pytest.raises(ValueError, match="not a run record"):
        decode_record(b'{"job": "x"}')


async def test_submit_takes_a_snapshot(tmp_path: Path) -> None:
    store = TwinStore()
    async with running(make(store, tmp_path)) as writer:
        record = rec(1, RunStatus.RUNNING)
        await writer.submit(record)
        record.status = RunStatus.SUCCEEDED  # the worker reuses its object
        record.ended = record.tick + 50
        await writer.submit(record)
        stored = replace(record, retention_days=store.default_retention_days)  # final: it has one
        await store.wait_for(lambda: store.runs.get(record.record_id) == stored)
    assert writer.counters.written == 2


async def test_outage_overflows_to_disk_and_replays_in_order_exactly_once(
        tmp_path: Path) -> None:
    store = TwinStore()
    writer = make(store, tmp_path, batch_size=4, queue_records=8)
    async with running(writer):
        for i in range(6):
            await writer.submit(rec(i))
        await store.wait_for(lambda: len(store.runs) == 6)
        store.available = False
        for i in range(6, 40):  # acknowledged although MongoDB is down
            await writer.submit(rec(i, RunStatus.RUNNING))
            await writer.submit(rec(i))
        assert writer.counters.spooled > 0 and writer.backlog
        assert writer.queue_depth <= 8  # memory stays bounded
        store.available = True
        await store.wait_for(lambda: len(store.runs) == 40)
        await store.wait_for(lambda: not writer.backlog)
    assert all(store.runs[r.record_id].status is RunStatus.SUCCEEDED
               for r in map(rec, range(40)))
    order = [rid for write in store.writes for rid in write]
    firsts = list(dict.fromkeys(order))
    assert firsts == [rec(i).record_id for i in range(40)]  # in submission order
    c = writer.counters
    assert c.replayed > 0 and c.failed == 0
    assert c.queued + c.spooled == 6 + 68
    assert c.written >= 6 + 68
    assert list(writer.spool.path.glob("*.seg")) == []  # drained and closed


async def test_a_restarted_writer_replays_what_the_last_one_left(tmp_path: Path) -> None:
    store = TwinStore()
    store.available = False
    first = make(store, tmp_path, close_timeout=0.5)
    async with running(first):
        for i in range(5):
            await first.submit(rec(i))
    assert store.runs == {}
    store.available = True
    events: list[FlushEvent] = []
    second = make(store, tmp_path, on_flush=events.append)
    assert second.backlog
    async with running(second):
        await store.wait_for(lambda: len(store.runs) == 5)
    assert second.counters.replayed == 5
    assert events[0].from_spool and events[0].reason == "spool"


async def test_rejected_records_are_logged_in_full_and_the_rest_written(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = TwinStore()
    store.reject = {rec(2).record_id}
    async with running(make(store, tmp_path)) as writer:
        for i in range(4):
            await writer.submit(rec(i, output=f"out {i}"))
        await store.wait_for(lambda: len(store.runs) == 3)
    assert writer.counters.failed == 1 and writer.counters.written == 3
    assert any("rejected run record job@1700000002000#1" in r.message
               and '"output":"out 2"' in r.message for r in caplog.records)


async def test_a_full_spool_writes_straight_to_mongodb_or_logs_the_record(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = TwinStore()
    writer = LogWriter(store, Spool(tmp_path, max_bytes=4096),
                       batch_size=1000, flush_interval=60)
    big = "x" * 1500
    await writer.submit(rec(1, output=big))
    await writer.submit(rec(2, output=big))
    await writer.submit(rec(3, output=big))  # no room: written directly
    assert rec(3).record_id in store.runs and writer.counters.written == 1
    store.available = False
    await writer.submit(rec(4, output=big))  # no room, no MongoDB: logged as lost
    assert writer.counters.failed == 1
    lost = [r for r in caplog.records if "is lost" in r.message]
    assert len(lost) == 1 and "job@1700000004000#1" in lost[0].message and big in lost[0].message
    assert any("is full" in r.message for r in caplog.records)
    await writer.close()  # never ran: the two spooled records stay for the next start
    again = LogWriter(store, Spool(tmp_path, max_bytes=4096))
    assert again.backlog
    await again.close()


async def test_submit_after_close_is_an_error(tmp_path: Path) -> None:
    writer = make(TwinStore(), tmp_path)
    await writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        await writer.submit(rec(1))
