"""Runs whose worker died become ``lost``: never a silent gap in history.

A live run has a key ``/running/<job>/<run_id>`` on its worker's lease. When
the key disappears and the worker's lease is gone with it (its registry key
is absent, or now carries another lease), the worker died or was cut off for
longer than its lease: the run is recorded as ``lost``. The record is built
from the key's value, so a run claimed just before its worker died is
recorded even if the worker never wrote a word to MongoDB.

A run is declared ``lost`` only ``margin`` seconds after its key went with
the lease: a worker cut off from etcd fences itself before its lease may
expire (``worker._fence``) and stops its runs, and the margin is for that stop
to finish before the run's next attempt may start elsewhere. It is not
declared lost if, by then, someone holds its key again, or its worker has
recorded how the attempt ended (unless the worker stopped it because it lost
its lease: that attempt is retried as a lost one). Each attempt is declared
lost at most once per leader (and ``on_lost``, which may ask for a retry, is
called once with it).

A ``lost`` record never overrides a finished one (the log store orders them),
and a worker that was only cut off and later reports the real result
overrides ``lost``. A periodic sweep catches runs that ended while no master
was watching. Only the elected master reaps (``_leader``); writes are
idempotent all the same, so a run reaped twice is recorded once.

A verdict is never dropped because etcd or MongoDB failed at that moment: it
is kept and tried again, with backoff, until it is settled. That matters most
for a worker that dies while MongoDB is down: its own records are in its
spool, on its disk, so the reaper's verdict is the run's only trace. A
verdict goes in two steps, each retried on its own: first whether the
worker's lease is gone (decided once, as soon as etcd answers, so a worker
that released the key and died later is not taken for one that died during
the run); then, after the margin, the record (the checks above, read again at
each try: a final record that arrived meanwhile wins) and ``on_lost``.
Verdicts waiting are bounded (``MAX_UNSETTLED``) and live in the leader's
memory: a new leader finds the runs that have a ``running`` record by its
sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from ..common import (
    LEASE_LOST_REASON,
    Clock,
    Keyspace,
    RunRecord,
    RunStatus,
    ServiceUnavailable,
    backoff_delay,
    parse_run_id,
    reraise_cancellation,
)
from ..coord import CoordStore, KeyValue, PrefixMirror
from ..logstore import LogStore, RunQuery

log = logging.getLogger(__name__)

Duty = Callable[[str], AbstractAsyncContextManager[None]]
OnLost = Callable[[RunRecord], Awaitable[None]]

# Seconds between a run's key going with its worker's lease and the run being
# declared lost (and its next attempt offered): time for a fenced worker's stop
# of the run (a kill's grace is capped at 0.25 s) to have finished.
LOST_MARGIN_S = 2.0
JUDGED_KEPT = 10_000  # attempts remembered as already judged (bounded memory)
MAX_UNSETTLED = 10_000  # verdicts kept waiting for etcd or MongoDB (bounded memory)
RETRY_BASE_S = 0.5  # first wait before a verdict is tried again (doubling,
RETRY_CAP_S = 60.0  # at most a minute)
LEASE_EXPIRED = "worker lost (its lease expired) during the run"


def ended_on_its_own(record: RunRecord | None) -> bool:
    """Whether a stored record says how the attempt ended, so it is not lost:
    any final status except a stop by a worker that lost its lease (that
    attempt is lost for retries) — ``lost`` included, so never twice."""
    if record is None or not record.status.final:
        return False
    return not (record.status is RunStatus.KILLED
                and (record.extra or {}).get("reason") == LEASE_LOST_REASON)


@contextlib.asynccontextmanager
async def log_failures(name: str) -> AsyncIterator[None]:
    """The plainest duty: a step that fails for want of etcd or MongoDB is logged."""
    try:
        yield
    except ServiceUnavailable as exc:
        reraise_cancellation()
        log.warning("%s failed: %s", name, exc)
    reraise_cancellation()


def lost_record(run: dict[str, Any], *, job: str, now_ms: int, reason: str) -> RunRecord:
    run_id = str(run["run_id"])
    _, tick = parse_run_id(run_id)
    return RunRecord(
        run_id=run_id, job=job, tick=int(run.get("tick") or tick),
        attempt=int(run.get("attempt") or 1), worker=str(run.get("worker") or ""),
        summary=str(run.get("summary") or ""), status=RunStatus.LOST,
        started=run.get("started"), ended=now_ms, error=reason,
    )


@dataclass(slots=True)
class _Verdict:
    """A run whose running key went, on its way to being judged."""

    job: str
    run: dict[str, Any]  # the key's last value
    due: float  # loop time the margin ends
    reason: str = LEASE_EXPIRED
    lost: RunRecord | None = None  # recorded lost; ``on_lost`` still to follow
    failures: int = 0


class LostRunReaper:
    def __init__(self, store: CoordStore, logs: LogStore, keys: Keyspace, clock: Clock, *,
                 sweep_interval: float = 30.0, duty: Duty = log_failures,
                 on_lost: OnLost | None = None, margin: float = LOST_MARGIN_S,
                 retry_base: float = RETRY_BASE_S) -> None:
        """``duty(name)`` wraps each unit of work (the leader records and fences
        them); ``on_lost(record)`` follows each run marked lost."""
        self.store = store
        self.logs = logs
        self.keys = keys
        self.clock = clock
        self.sweep_interval = sweep_interval
        self.reaped = 0
        self.duty = duty
        self.on_lost = on_lost
        self.margin = margin
        self.retry_base = retry_base
        self.unsettled = 0  # verdicts not settled yet (waiting for etcd or MongoDB, or due)
        self.running = PrefixMirror(store, keys.running_dir, on_change=self._on_running)
        # Runs whose key went, in order of deletion: is their worker's lease gone?
        self._pending: asyncio.Queue[_Verdict] = asyncio.Queue()
        # Runs whose worker's lease is gone: record them lost once the margin ends.
        self._lost: asyncio.Queue[_Verdict] = asyncio.Queue()
        self._judged: OrderedDict[str, None] = OrderedDict()  # record ids
        self._retries: asyncio.TaskGroup | None = None

    def _on_running(self, name: str, kv: KeyValue | None, old: KeyValue | None) -> None:
        if kv is not None or old is None:
            return
        with contextlib.suppress(ValueError):
            run = json.loads(old.value)
            if isinstance(run, dict) and self._keep():
                due = asyncio.get_running_loop().time() + self.margin
                self._pending.put_nowait(_Verdict(name.split("/", 1)[0], run, due))

    def _keep(self) -> bool:
        """Count one more verdict waiting, unless there are too many already."""
        if self.unsettled >= MAX_UNSETTLED:
            log.error("%d lost-run verdicts are waiting for etcd or MongoDB; dropping one "
                      "more (the sweep may still find it)", self.unsettled)
            return False
        self.unsettled += 1
        return True

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._retries = tg
            tg.create_task(self.running.run())
            tg.create_task(self._check_deleted())
            tg.create_task(self._record_lost())
            tg.create_task(self._sweep_forever())

    def _retry_later(self, queue: asyncio.Queue[_Verdict], verdict: _Verdict) -> None:
        """Put ``verdict`` back on ``queue`` after a backoff (etcd or MongoDB failed)."""
        verdict.failures += 1
        delay = backoff_delay(verdict.failures, first=self.retry_base, cap=RETRY_CAP_S)
        log.info("verdict on run %s waits %.1fs for etcd or MongoDB (try %d)",
                 verdict.run.get("run_id"), delay, verdict.failures)

        async def later() -> None:
            await asyncio.sleep(delay)  # retry backoff
            queue.put_nowait(verdict)

        if self._retries is None:  # not running (a sweep called on its own): the next sweep
            self.unsettled -= 1
            return
        self._retries.create_task(later())

    async def _worker_alive(self, worker: str, lease: int | None) -> bool:
        kv = await self.store.get(self.keys.worker(worker))
        return kv is not None and (lease is None or kv.lease == lease)

    async def _check_deleted(self) -> None:
        """First step of a verdict: is the worker's lease gone? (At once: the
        answer is about the moment the key went.)"""
        while True:
            verdict = await self._pending.get()
            async with self.duty("lost-runs"):
                try:
                    alive = await self._worker_alive(str(verdict.run.get("worker")),
                                                     verdict.run.get("lease"))
                except ServiceUnavailable:
                    self._retry_later(self._pending, verdict)
                    raise
                if alive:
                    self.unsettled -= 1  # finished normally: its worker removed the key
                else:
                    self._lost.put_nowait(verdict)  # decided once: never asked again

    async def _record_lost(self) -> None:
        """Second step: once the margin has passed, record the run lost (unless
        the checks of ``_mark_lost`` say otherwise) and call ``on_lost``."""
        while True:
            verdict = await self._lost.get()
            # Deletions come in order, so a burst waits one margin, not one each.
            await asyncio.sleep(max(0.0, verdict.due - asyncio.get_running_loop().time()))
            async with self.duty("lost-runs"):
                try:
                    await self._settle(verdict)
                except ServiceUnavailable:
                    self._retry_later(self._lost, verdict)
                    raise
                except ValueError as exc:
                    log.warning("cannot check run %s: %s", verdict.run.get("run_id"), exc)
                self.unsettled -= 1

    async def _settle(self, verdict: _Verdict) -> None:
        """Record the run lost (or find it is not) and call ``on_lost``; a try
        after one that recorded it only calls ``on_lost``."""
        if verdict.lost is None:
            verdict.lost = await self._mark_lost(verdict.job, verdict.run, verdict.reason)
            if verdict.lost is None:
                return
        if self.on_lost is not None:
            await self.on_lost(verdict.lost)

    async def _mark_lost(self, job: str, run: dict[str, Any], reason: str) -> RunRecord | None:
        """Record the attempt lost unless it was judged already, is held again or
        ended on its own (see the module doc); the record if it was."""
        record = lost_record(run, job=job, now_ms=self.clock.now_ms(), reason=reason)
        record_id = record.record_id
        if record_id in self._judged:
            return None
        self._judged[record_id] = None  # before any await: the sweep may look at it too
        try:
            if await self.store.get(self.keys.running(job, record.run_id)) is not None:
                log.info("run %s is held again; attempt %d is not lost", record.run_id,
                         record.attempt)
                return None
            if ended_on_its_own(await self.logs.get_run(record_id)):
                return None
            await self.logs.write_runs([record])
        except BaseException:
            del self._judged[record_id]  # not judged after all: a later look may
            raise
        while len(self._judged) > JUDGED_KEPT:
            self._judged.popitem(last=False)
        self.reaped += 1
        log.warning("run %s (attempt %d) on %s is lost: %s", record.run_id, record.attempt,
                    record.worker, reason)
        return record

    async def sweep(self) -> int:
        """Mark ``running`` records whose worker is gone; returns how many."""
        page = await self.logs.query_runs(RunQuery(status=RunStatus.RUNNING, limit=1000))
        orphans = []
        for record in page.runs:
            key = self.keys.running(record.job, record.run_id)
            if record.record_id in self._judged or await self.store.get(key) is not None:
                continue
            if await self._worker_alive(record.worker, None):
                continue  # its final record is on the way
            orphans.append(record)
        if orphans:
            # Their keys may have gone just now: the same margin as a deletion seen.
            await asyncio.sleep(self.margin)
        count = 0
        now = asyncio.get_running_loop().time()
        for record in orphans:
            run = {"run_id": record.run_id, "tick": record.tick, "attempt": record.attempt,
                   "worker": record.worker, "summary": record.summary,
                   "started": record.started}
            verdict = _Verdict(record.job, run, now, "worker gone; the run never reported an end")
            try:
                await self._settle(verdict)
            except ServiceUnavailable:
                if self._keep():  # the rest: the next sweep
                    self._retry_later(self._lost, verdict)
                raise
            count += verdict.lost is not None
        return count

    async def _sweep_forever(self) -> None:
        await self.running.ready.wait()
        while True:
            async with self.duty("lost-run-sweep"):
                await self.sweep()
            await asyncio.sleep(self.sweep_interval)  # periodic duty timer
