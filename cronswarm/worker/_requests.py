"""Requests that reach a worker through etcd: kill, run now, and retries
another worker (or the elected master) offered (see ``_retry``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from ..common import LEASE_LOST, LEASE_LOST_REASON, Job, RetryRequest, RunStatus, Trigger, run_id
from ..coord import CoordUnavailable, KeyValue
from ._claim import Claim, Outcome, Ticket, claim, lease_of, run_info
from ._core import LiveRun
from ._fence import Fenced
from ._output import BoundedOutput
from ._scheduler import PLAN_RETRY_MS, Scheduler

log = logging.getLogger(__name__)


class Requests(Scheduler):
    """Kill and run-now requests, and retries claimed from ``/retry/``."""

    # -- kill and run-now requests -------------------------------------------

    def _on_killer(self, name: str, kv: KeyValue | None, _old: KeyValue | None) -> None:
        if kv is None:
            return
        try:
            request = json.loads(kv.value)
        except ValueError:
            log.error("ignoring malformed kill request for %s", name)
            return
        target = request.get("run_id")
        by = str(request.get("by", "unknown"))
        for live in list(self.runs.values()):
            if live.job.name != name or (target and target != live.run_id):
                continue
            if live.created_revision < kv.mod_revision:
                log.info("killing %s at the request of %s", live.run_id, by)
                live.kill.pull(by, str(request.get("reason", "kill requested")))

    def _on_once(self, name: str, kv: KeyValue | None, _old: KeyValue | None) -> None:
        if kv is None or self.draining:
            return
        job = self.job_defs.get(name)
        if job is None or not job.matches(self.labels):
            return
        self._spawn(self._run_once(job, kv), name=f"once:{name}")

    async def _run_once(self, job: Job, kv: KeyValue) -> None:
        if not self.clock_sync.may_claim:
            return  # off the cluster's clock: another worker takes the request
        try:
            request = json.loads(kv.value)
            tick = int(request["at"])
        except (ValueError, KeyError, TypeError):
            log.error("ignoring malformed run-now request for %s", job.name)
            return

        def claimed() -> bool:
            current = self.once.items.get(job.name)
            return current is None or current.mod_revision != kv.mod_revision

        if not await self._hand_off(job, f"{job.name}@{tick}", claimed, self.once):
            return
        rid = run_id(job.name, tick)
        info = b""
        while not self.draining:
            try:
                if not self._may_claim():
                    raise Fenced
                if lease_of(info) != self.lease.lease_id:  # first try, or a new lease
                    info = run_info(run_id=rid, worker=self.id, lease=self.lease.lease_id,
                                    tick=tick, started=self.clock.now_ms())
                ticket = Ticket(rid, info, self.lease.lease_id, self._claimant())
                result = await claim(self.store, self.keys, job, tick, ticket,
                                     once_revision=kv.mod_revision)
            except CoordUnavailable as exc:
                # The request stays in etcd until claimed or expired: try
                # again while it is there. An attempt that committed with its
                # reply lost shows as our running key.
                log.warning("cannot claim run-now of %s yet: %s", job.name, exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PLAN_RETRY_MS / 1000):
                        await self.once.wait_for(claimed)
                try:
                    mine = await self.store.get(self.keys.running(job.name, rid))
                except CoordUnavailable:
                    continue
                if mine is not None and mine.value == info:
                    result = Claim(Outcome.WON, revision=mine.create_revision)
                elif claimed():
                    return
                else:
                    continue
            self._start_claimed(job, tick, rid, info, result, Trigger.RUN_NOW)
            return

    # -- retries on any worker (see _retry) -----------------------------------

    def _start_retry(self, job: Job, request: RetryRequest, revision: int, info: bytes) -> None:
        """Continue a run another worker (or this one) offered; the claim is won."""
        if not self._owns(info):
            self._spawn(self._fenced_retry(job, request, info), name=f"fenced:{request.run_id}")
            return
        live = LiveRun(job, request.tick, request.run_id, Trigger.RETRY, attempt=request.attempt,
                       created_revision=revision, info=info,
                       output=BoundedOutput(self.settings.output_head_bytes,
                                            self.settings.output_tail_bytes))
        self.runs[request.run_id] = live
        self._runs_idle.clear()
        self._pull_pending_kill(live)
        live.task = self._spawn(self._run(live, replacing=None), name=f"run:{request.run_id}")

    async def _fenced_retry(self, job: Job, request: RetryRequest, info: bytes) -> None:
        live = LiveRun(job, request.tick, request.run_id, Trigger.RETRY, attempt=request.attempt,
                       info=info)
        live.kill.pull(f"worker:{self.id}", LEASE_LOST)
        await self._record_unstarted(
            live, RunStatus.KILLED, f"killed before it started: {LEASE_LOST} (by {live.kill.by})",
            {"reason": LEASE_LOST_REASON}, killed_by=live.kill.by)
        await self._release_keys(job, request.run_id, info, info)

    def _pull_pending_kill(self, live: LiveRun) -> None:
        """A kill asked for after the retry was offered (and missed) applies here too."""
        kv = self.killers.items.get(live.job.name)
        if kv is None or kv.mod_revision <= live.created_revision:
            return
        try:
            request = json.loads(kv.value)
        except ValueError:
            return
        if request.get("run_id") in (None, live.run_id):
            live.kill.pull(str(request.get("by", "unknown")),
                           str(request.get("reason", "kill requested")))
