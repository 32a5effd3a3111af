"""Run-now requests that no worker took are recorded, never dropped silently.

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

from ..alerts import retry_delay
from ..common import Clock, Job, Keyspace, RunRecord, RunStatus, Trigger, ValidationError, run_id
from ..coord import CoordStore, KeyValue, PrefixMirror
from ..logstore import LogStore
from ._reaper import RETRY_BASE_S, Duty, log_failures

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
        # (job, deleted request, tries so far)
        self._pending: asyncio.Queue[tuple[str, KeyValue, int]] = asyncio.Queue()

    def _on_change(self, name: str, kv: KeyValue | None, old: KeyValue | None) -> None:
        if kv is None and old is not None and old.lease:
            self._pending.put_nowait((name, old, 0))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.requests.run())
            tg.create_task(self._check_deleted())

    async def _check_deleted(self) -> None:
        while True:
            name, request, tries = await self._pending.get()
            settled = False
            async with self.duty("unclaimed-requests"):
                if await self.store.lease_ttl(request.lease) < 0:
                    await self._record(name, request)
                # else taken by a worker, or withdrawn with its job
                settled = True
            if not settled and tries < MAX_TRIES:
                # etcd or MongoDB failed (logged by the duty): asked again later,
                # so the request gets its record once they answer.
                asyncio.get_running_loop().call_later(
                    retry_delay(RETRY_BASE_S, tries + 1), self._pending.put_nowait,
                    (name, request, tries + 1))
            elif not settled:
                log.error("giving up on recording the expired run-now request of %s after "
                          "%d tries", name, tries + 1)

    async def _record(self, name: str, request: KeyValue) -> None:
        try:
            at = int(json.loads(request.value)["at"])
        except (ValueError, KeyError, TypeError):
            log.warning("run-now request of %s expired, unreadable: %r", name, request.value)
            return
        rid = run_id(name, at)
        if await self.logs.get_run(f"{rid}#1") is not None:
            return  # a worker took it after all
        summary = ""
        job_kv = await self.store.get(self.keys.job(name))
        if job_kv is not None:
            with contextlib.suppress(ValidationError):
                summary = Job.from_json(job_kv.value).summary
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
