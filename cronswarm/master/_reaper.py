"""Runs whose worker died become ``lost``: never a silent gap in history.

A live run has a key ``/running/<job>/<run_id>`` on its worker's lease. When
the key disappears and the worker's lease is gone with it (its registry key
is absent, or now carries another lease), the worker died or was cut off for
longer than its lease: the run is recorded as ``lost``. The record is built
from the key's value, so a run claimed just before its worker died is
recorded even if the worker never wrote a word to MongoDB.

A ``lost`` record never overrides a finished one (the log store orders them),
and a worker that was only cut off and later reports the real result
overrides ``lost``. A periodic sweep catches runs that ended while no master
was watching. Only the elected master reaps (``_leader``); writes are
idempotent all the same, so a run reaped twice is recorded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..common import (
    Clock,
    Keyspace,
    RunRecord,
    RunStatus,
    ServiceUnavailable,
    parse_run_id,
    reraise_cancellation,
)
from ..coord import CoordStore, KeyValue, PrefixMirror
from ..logstore import LogStore, RunQuery

log = logging.getLogger(__name__)

Duty = Callable[[str], AbstractAsyncContextManager[None]]
OnLost = Callable[[RunRecord], Awaitable[None]]


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


class LostRunReaper:
    def __init__(self, store: CoordStore, logs: LogStore, keys: Keyspace, clock: Clock, *,
                 sweep_interval: float = 30.0, duty: Duty = log_failures,
                 on_lost: OnLost | None = None) -> None:
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
        self.running = PrefixMirror(store, keys.running_dir, on_change=self._on_running)
        self._pending: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    def _on_running(self, name: str, kv: KeyValue | None, old: KeyValue | None) -> None:
        if kv is not None or old is None:
            return
        with contextlib.suppress(ValueError):
            run = json.loads(old.value)
            if isinstance(run, dict):
                self._pending.put_nowait((name, run))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.running.run())
            tg.create_task(self._check_deleted())
            tg.create_task(self._sweep_forever())

    async def _worker_alive(self, worker: str, lease: int | None) -> bool:
        kv = await self.store.get(self.keys.worker(worker))
        return kv is not None and (lease is None or kv.lease == lease)

    async def _check_deleted(self) -> None:
        while True:
            name, run = await self._pending.get()
            job = name.split("/", 1)[0]
            async with self.duty("lost-runs"):
                try:
                    if await self._worker_alive(str(run.get("worker")), run.get("lease")):
                        continue  # finished normally: its worker removed the key
                    await self._mark_lost(job, run,
                                          "worker lost (its lease expired) during the run")
                except ValueError as exc:
                    log.warning("cannot check run %s: %s", name, exc)

    async def _mark_lost(self, job: str, run: dict[str, Any], reason: str) -> None:
        record = lost_record(run, job=job, now_ms=self.clock.now_ms(), reason=reason)
        await self.logs.write_runs([record])
        self.reaped += 1
        log.warning("run %s (attempt %d) on %s is lost: %s", record.run_id, record.attempt,
                    record.worker, reason)
        if self.on_lost is not None:
            await self.on_lost(record)

    async def sweep(self) -> int:
        """Mark ``running`` records whose worker is gone; returns how many."""
        page = await self.logs.query_runs(RunQuery(status=RunStatus.RUNNING, limit=1000))
        count = 0
        for record in page.runs:
            key = self.keys.running(record.job, record.run_id)
            if await self.store.get(key) is not None:
                continue
            if await self._worker_alive(record.worker, None):
                continue  # its final record is on the way
            run = {"run_id": record.run_id, "tick": record.tick, "attempt": record.attempt,
                   "worker": record.worker, "summary": record.summary,
                   "started": record.started}
            await self._mark_lost(record.job, run, "worker gone; the run never reported an end")
            count += 1
        return count

    async def _sweep_forever(self) -> None:
        await self.running.ready.wait()
        while True:
            async with self.duty("lost-run-sweep"):
                await self.sweep()
            await asyncio.sleep(self.sweep_interval)  # periodic duty timer
