"""Run-now requests (and retries of lost runs) that no worker took are
recorded, never dropped silently.

A run-now request is the key ``/once/<job>`` on a lease of its own
(``CRONSWARM_REQUEST_TTL`` seconds). A worker takes it by deleting it in its
claim transaction; from then on the run is that worker's to record. When no
worker takes it (none alive, none matching the job's targets, or a worker
draining), etcd deletes it as its lease expires. Both are a delete event; the
lease tells them apart: a claim (or the job's deletion) leaves the lease
alive, an expiry ends it. The elected master records each expired request as
a ``skipped`` run of trigger ``run_now``, so "I pressed Run now and nothing
happened" has an answer in the run history.

A claim in the last instant before the expiry could look expired: the
record is written only if MongoDB holds no record of that run yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from ..common import (
    Clock,
    Job,
    Keyspace,
    RetryRequest,
    RunRecord,
    RunStatus,
    Trigger,
    ValidationError,
    backoff_delay,
    run_id,
)
from ..coord import CoordStore, KeyValue, PrefixMirror
from ..logstore import LogStore
from ._reaper import RETRY_BASE_S, RETRY_CAP_S, Duty, log_failures

log = logging.getLogger(__name__)

MAX_TRIES = 100  # a record kept waiting for etcd and MongoDB (backoff up to a minute)


class UnclaimedRequests:
    def __init__(self, store: CoordStore, logs: LogStore, keys: Keyspace, clock: Clock, *,
                 duty: Duty = log_failures) -> None:
        self.store = store
        self.logs = logs
        self.keys = keys
        self.clock = clock
        self.duty = duty
        self.recorded = 0
        self.requests = PrefixMirror(store, keys.once_dir, on_change=self._on_change)
        self.retries = PrefixMirror(store, keys.retry_dir, on_change=self._on_retry_change)
        # (run-now or retry, job or run key, deleted request, tries so far)
        self._pending: asyncio.Queue[tuple[str, str, KeyValue, int]] = asyncio.Queue()

    def _on_change(self, name: str, kv: KeyValue | None, old: KeyValue | None) -> None:
        if kv is None and old is not None and old.lease:
            self._pending.put_nowait(("once", name, old, 0))

    def _on_retry_change(self, name: str, kv: KeyValue | None, old: KeyValue | None) -> None:
        if kv is None and old is not None and old.lease:
            self._pending.put_nowait(("retry", name, old, 0))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.requests.run())
            tg.create_task(self.retries.run())
            tg.create_task(self._check_deleted())

    async def _check_deleted(self) -> None:
        while True:
            kind, name, request, tries = await self._pending.get()
            settled = False
            async with self.duty("unclaimed-requests"):
                if await self.store.lease_ttl(request.lease) < 0:
                    if kind == "once":
                        await self._record(name, request)
                    else:
                        await self._record_retry(request)
                # else taken by a worker, or withdrawn with its job
                settled = True
            if not settled and tries < MAX_TRIES:
                # etcd or MongoDB failed (logged by the duty): asked again later,
                # so the request gets its record once they answer.
                asyncio.get_running_loop().call_later(
                    backoff_delay(tries + 1, first=RETRY_BASE_S, cap=RETRY_CAP_S),
                    self._pending.put_nowait,
                    (kind, name, request, tries + 1))
            elif not settled:
                log.error("giving up on recording the expired %s request %s after %d tries",
                          kind, name, tries + 1)

    async def _record_retry(self, kv: KeyValue) -> None:
        """The next attempt of a lost run, asked for by a leader, that no worker
        took before its request expired (a newer run held the job's lock all
        along, or no live worker matched): recorded, not silently dropped.
        A worker's own request goes with its lease when the worker dies; its
        run is then lost, and that verdict is recorded instead."""
        try:
            request = RetryRequest.decode(kv.value)
        except (ValueError, KeyError, TypeError):
            log.warning("retry request %s expired, unreadable: %r", kv.key, kv.value)
            return
        if not request.lost:
            return
        record_id = f"{request.run_id}#{request.attempt}"
        if await self.logs.get_run(record_id) is not None:
            return  # a worker took it after all
        now = self.clock.now_ms()
        record = RunRecord(
            run_id=request.run_id, job=request.job, tick=request.tick,
            attempt=request.attempt, worker="", summary=await self._summary(request.job),
            status=RunStatus.SKIPPED, trigger=Trigger.RETRY, ended=now,
            error=("not retried: no worker could take this attempt before its request "
                   "expired (a newer run held the job's lock, or no live worker matched "
                   "its targets)"),
            extra={"reason": "retry_unclaimed"})
        await self.logs.write_runs([record])
        self.recorded += 1
        log.warning("retry %s of a lost run expired without a worker", record_id)

    async def _summary(self, name: str) -> str:
        job_kv = await self.store.get(self.keys.job(name))
        if job_kv is not None:
            with contextlib.suppress(ValidationError):
                return Job.from_json(job_kv.value).summary
        return ""

    async def _record(self, name: str, request: KeyValue) -> None:
        try:
            at = int(json.loads(request.value)["at"])
        except (ValueError, KeyError, TypeError):
            log.warning("run-now request of %s expired, unreadable: %r", name, request.value)
            return
        rid = run_id(name, at)
        if await self.logs.get_run(f"{rid}#1") is not None:
            return  # a worker took it after all
        summary = await self._summary(name)
        now = self.clock.now_ms()
        waited = max(0, round((now - at) / 1000))
        record = RunRecord(
            run_id=rid, job=name, tick=at, attempt=1, worker="", summary=summary,
            status=RunStatus.SKIPPED, trigger=Trigger.RUN_NOW, ended=now,
            error=(f"no worker took the run-now request within {waited} s (none alive "
                   f"and matching the job's targets)"))
        await self.logs.write_runs([record])
        self.recorded += 1
        log.warning("run-now request %s expired without a worker", rid)
