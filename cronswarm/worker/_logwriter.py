"""The batching run-record writer of a worker: a spool on disk, bulk writes to MongoDB.

Acknowledgement. ``submit`` returns once the record is appended to the spool
and fsync'd. Submits that arrive while one fsync runs share the next one
(group commit), so this costs about one fsync of latency and never waits for
MongoDB. The worker submits a run's ``running`` record as the job starts (the
job does not wait for that fsync; the final record waits for it) and its final
record before it releases the run's keys in etcd, so neither a job's start nor
its overlap lock waits for a batch timer or for MongoDB.

Batching. The records also wait in a bounded in-memory queue; one task (``run``)
writes them in bulk when ``batch_size`` are waiting or ``flush_interval``
seconds after the first of them arrived. Writes are idempotent (unique index on
job, tick, attempt and the ``seq`` rule of the store), so anything may be
written twice and nothing is written twice as two documents.

No silent loss. When MongoDB is unreachable, or slower than ``write_timeout``,
the batch is retried with a growing delay. Meanwhile the queue fills and later
records are kept on disk only (backpressure goes to the spool, never a drop);
when MongoDB answers again the writer reads them back from the spool in order.
Spool segments are deleted once MongoDB has all their records. A record that
neither the spool (full, or a disk error) nor MongoDB will take is logged in
full at ERROR level and counted as ``failed``; so is one that MongoDB rejects
for good.

What ``kill -9`` can lose: no acknowledged record. A record whose ``submit``
had not returned may be lost (its fsync was in flight); the worker had not
yet released that run's keys in etcd, so the run still shows as running under
a dead lease and is reported lost. A worker restarted with the same
``spool_dir`` writes what the dead one had not (see _spool_files.py for how slots
are adopted).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..common import (
    RunRecord,
    ServiceUnavailable,
    Settings,
    backoff_delay,
)
from ..logstore import LogStore, LogStoreRejected
from ._logwriter_types import Batch, Commit, FlushEvent, Queued, WriterCounters
from ._spool import Spool
from ._spool_files import SpoolError
from ._spool_records import decode_record, encode_record

log = logging.getLogger(__name__)


class LogWriter:
    """A ``RunSink``: ``submit`` records, ``run`` the writer task, ``close`` at the end."""

    def __init__(
        self,
        store: LogStore,
        spool: Spool,
        *,
        batch_size: int = 200,
        flush_interval: float = 0.5,
        queue_records: int | None = None,
        queue_bytes: int = 32 << 20,
        batch_bytes: int = 8 << 20,
        write_timeout: float = 15.0,
        retry_delay: float = 0.25,
        retry_max_delay: float = 5.0,
        close_timeout: float = 10.0,
        on_flush: Callable[[FlushEvent], None] | None = None,
    ) -> None:
        self.store = store
        self.spool = spool
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue_records = max(queue_records or 4 * batch_size, batch_size)
        self.queue_bytes = queue_bytes
        self.batch_bytes = batch_bytes
        self.write_timeout = write_timeout
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.close_timeout = close_timeout
        self.on_flush = on_flush
        self.counters = WriterCounters()
        self.available = True  # MongoDB took the last write
        self._queue: deque[Queued] = deque()
        self._queue_size = 0
        self._read_from = spool.start  # everything before it is in MongoDB
        self._disk_tail = spool.has_records_after(spool.start)  # records not in the queue
        self._disk_appends = 0  # appends in flight whose records are disk-only
        self._replaying = self._disk_tail
        self._replayed_run = 0
        self._commits: list[Commit] = []
        self._committer: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._stopped = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._closed = False
        self._spool_trouble: str | None = None

    @classmethod
    def open(cls, store: LogStore, settings: Settings, **options: Any) -> LogWriter:
        """A writer with the spool and batching of ``settings`` (opens the spool)."""
        spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes)
        return cls(store, spool, batch_size=settings.log_batch_size,
                   flush_interval=settings.log_flush_interval, **options)

    # -- gauges --------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def spool_bytes(self) -> int:
        return self.spool.size_bytes

    @property
    def backlog(self) -> bool:
        """Records are waiting on disk only (MongoDB was slow, down, or a restart)."""
        return self._disk_tail

    # -- accepting records ---------------------------------------------------

    async def submit(self, record: RunRecord) -> None:
        """Return once the record is fsync'd in the spool (or, if the spool
        cannot take it, written to MongoDB or logged as lost)."""
        if self._closed:
            raise RuntimeError("the log writer is closed")
        payload = encode_record(record)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A snapshot: the caller may reuse and change its record object.
        self._commits.append(Commit(decode_record(payload), payload, done))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_loop(), name="spool-commit")
        await asyncio.shield(done)

    async def _commit_loop(self) -> None:
        try:
            while self._commits:
                group, self._commits = self._commits, []
                try:
                    await self._commit(group)
                except Exception as exc:  # a bug here must not leave submitters waiting
                    log.exception("cannot accept %d run records", len(group))
                    for commit in group:
                        if not commit.done.done():
                            commit.done.set_exception(exc)
        finally:
            self._committer = None

    async def _commit(self, group: list[Commit]) -> None:
        # Decide before appending which records the queue keeps, so that the
        # writer never sees a record both in the queue and on disk.
        keep: list[bool] = []
        count, size = len(self._queue), self._queue_size
        room = not self._disk_tail
        for commit in group:
            room = room and count < self.queue_records and \
                size + len(commit.payload) <= self.queue_bytes
            keep.append(room)
            if room:
                count, size = count + 1, size + len(commit.payload)
        disk_only = not all(keep)
        if disk_only:
            self._disk_tail = True
            self._disk_appends += 1
        try:
            try:
                ends = await asyncio.to_thread(self.spool.append, [c.payload for c in group])
                problem: SpoolError | None = None
            except SpoolError as exc:  # SpoolFull included
                ends, problem = exc.written, exc
        finally:
            if disk_only:
                self._disk_appends -= 1
        now = asyncio.get_running_loop().time()
        for commit, end, queued in zip(group, ends, keep, strict=False):
            if queued:
                self._queue.append(Queued(commit.record, end, len(commit.payload), now))
                self._queue_size += len(commit.payload)
                self.counters.queued += 1
            else:
                self.counters.spooled += 1
        self._changed.set()
        if problem is not None:
            await self._store_directly([c.record for c in group[len(ends):]], problem)
        elif self._spool_trouble is not None:
            log.info("the spool takes run records again")
            self._spool_trouble = None
        for commit in group:
            if not commit.done.done():
                commit.done.set_result(None)

    async def _store_directly(self, records: Sequence[RunRecord], problem: SpoolError) -> None:
        """The spool refused ``records``: write them to MongoDB now, or log them."""
        if self._spool_trouble is None:
            log.error("%s; writing run records straight to MongoDB", problem)
        self._spool_trouble = str(problem)
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.store.write_runs(records)
        except (ServiceUnavailable, LogStoreRejected, TimeoutError) as exc:
            for record in records:
                self.counters.failed += 1
                log.error("run record %s is lost: the spool refused it (%s) and MongoDB did "
                          "too (%s); the record: %s", record.record_id, problem,
                          exc or "timeout", encode_record(record).decode())
            return
        self.counters.written += len(records)

    # -- writing to MongoDB --------------------------------------------------

    async def run(self) -> None:
        """Write batches until closed (and drained) or cancelled."""
        self._run_task = asyncio.current_task()
        failures = 0
        try:
            while (reason := await self._next_flush()) is not None:
                try:
                    batch = await self._take()
                except SpoolError as exc:
                    log.error("cannot read the spool: %s", exc)
                    written = False
                else:
                    if batch is None:
                        continue
                    written = await self._write(batch, reason)
                if written:
                    failures = 0
                    continue
                if self._closing.is_set():
                    return  # what is left stays in the spool for the next start
                failures += 1
                delay = backoff_delay(failures, first=self.retry_delay, cap=self.retry_max_delay,
                                      jitter=0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # retry backoff, cut short by close()
                        await self._closing.wait()
        finally:
            self._stopped.set()

    async def _next_flush(self) -> str | None:
        """Wait until a batch is due; why it is (None: closing, nothing left)."""
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            due: float | None = None
            if self._queue:
                if len(self._queue) >= self.batch_size or self._disk_tail:
                    return "size"
                if self._closing.is_set():
                    return "close"
                due = self._queue[0].at + self.flush_interval
                if loop.time() >= due:
                    return "time"
            elif self._disk_tail:
                return "spool"
            elif self._closing.is_set():
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await self._changed.wait()

    async def _take(self) -> Batch | None:
        if self._queue:
            items = list(itertools.islice(self._queue, self.batch_size))
            return Batch([i.record for i in items], items[-1].end, from_spool=False)
        self._changed.clear()
        payloads, end = await asyncio.to_thread(
            self.spool.read, self._read_from, self.batch_size, self.batch_bytes)
        records = []
        for payload in payloads:
            try:
                records.append(decode_record(payload))
            except ValueError as exc:
                self.counters.failed += 1
                log.error("dropping an unreadable spool record (%s): %r", exc, payload[:200])
        if records:
            return Batch(records, end, from_spool=True)
        if end != self._read_from:  # only bytes that are not records (a torn tail)
            self._read_from = end
            await asyncio.to_thread(self.spool.release, end)
        if not self._caught_up():
            await self._changed.wait()  # an append to disk is in flight
        return None

    def _caught_up(self) -> bool:
        if self._disk_appends or self._read_from < self.spool.head:
            return False
        self._disk_tail = False
        if self._replaying:
            log.info("replayed %d run records from the spool; writing from memory again",
                     self._replayed_run)
            self._replaying = False
            self._replayed_run = 0
        return True

    async def _write(self, batch: Batch, reason: str) -> bool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        failed: set[str] = set()
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.store.write_runs(batch.records)
        except LogStoreRejected as exc:
            failed = set(exc.rejected)
            for record in batch.records:
                if record.record_id in failed:
                    self.counters.failed += 1
                    log.error("MongoDB rejected run record %s for good (%s); the record: %s",
                              record.record_id, exc.rejected[record.record_id],
                              encode_record(record).decode())
        except (ServiceUnavailable, TimeoutError) as exc:
            self.counters.write_errors += 1
            if self.available:
                log.warning("MongoDB does not take run records (%s); they wait in the spool "
                            "%s until it does", exc or "write timed out", self.spool.path)
            self.available = False
            return False
        seconds = loop.time() - started
        written = sum(1 for r in batch.records if r.record_id not in failed)
        if not self.available:
            log.info("MongoDB takes run records again")
            self.available = True
        self.counters.written += written
        if batch.from_spool:
            self.counters.replayed += written
            self._replayed_run += written
            self._replaying = True
            self._read_from = batch.end
        else:
            for _ in batch.records:
                item = self._queue.popleft()
                self._queue_size -= item.size
            self._read_from = batch.end
        if batch.from_spool:
            self._caught_up()
        await asyncio.to_thread(self.spool.release, self._read_from)
        if self.on_flush is not None:
            self.on_flush(FlushEvent(reason, len(batch.records), batch.from_spool, seconds))
        return True

    # -- closing -------------------------------------------------------------

    async def close(self) -> None:
        """Stop accepting records, write what MongoDB takes within
        ``close_timeout``, and close the spool (what is left stays in it)."""
        if self._closed:
            return
        self._closed = True
        if self._committer is not None:
            await asyncio.wait([self._committer])
        self._closing.set()
        self._changed.set()
        task = self._run_task
        if task is not None and not self._stopped.is_set():
            try:
                async with asyncio.timeout(self.close_timeout):
                    await self._stopped.wait()
            except TimeoutError:
                task.cancel()
                await asyncio.wait([task])
        drained = not self._queue and not self._disk_tail
        if not drained:
            log.warning("closing with run records not yet in MongoDB; they stay in the spool "
                        "%s for the next start", self.spool.path)
        await asyncio.to_thread(self.spool.close, drained=drained)
