"""A run of one tick: its attempts and the retries between them, ``replace``,
and releasing the run's keys when it ends.

A failed attempt is retried here after the backoff delay, or offered to any
worker (``retry.any_worker``, see ``_retry``). An attempt stopped by the fence
is retried only if the fence lifted on the lease the run's keys live on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from ..common import LEASE_LOST, Job, RetryRequest, RunStatus, Trigger, loop_deadline
from ..coord import Compare, CoordUnavailable, Delete, Put, Txn, wait_deleted
from ._attempt import Attempts
from ._core import LiveRun
from ._executor import ExecResult, KillSwitch
from ._output import BoundedOutput
from ._retry import HandOff

log = logging.getLogger(__name__)

START_LEAD_MS = 150  # how long before its tick a run claimed ahead is made ready


class Runner(Attempts):
    """Runs of claimed ticks, from their first attempt to their release."""

    async def _run(self, live: LiveRun, *, replacing: Mapping[str, Any] | None) -> None:
        """Attempts of one tick, each in a slot, retried as the job's policy says."""
        job = live.job
        handed_off = False
        try:
            if replacing and replacing.get("run_id") and replacing.get("run_id") != live.run_id:
                old_run = str(replacing["run_id"])
                if not await self._replace(job, old_run, live.run_id):
                    await self._record_unstarted(
                        live, RunStatus.SKIPPED,
                        f"skipped: could not ask {old_run} to stop (etcd unreachable)",
                        {"reason": "replace_unreachable", "running": old_run})
                    return
            if live.tick > self.clock.now_ms():  # claimed ahead: starts at its tick
                # Made ready START_LEAD_MS before it (slot, records, a shell
                # run's process waiting at its gate): at the tick itself a run
                # costs little more than the job, however many share the tick.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(
                            loop_deadline(self.clock, live.tick - START_LEAD_MS)):
                        await live.kill.requested.wait()
                live.gate_at = live.tick
            policy = job.retry
            due = live.tick
            while True:
                result = await self._attempt_in_slot(live, due)
                self._check_owned(live)
                if (live.kill.reason == LEASE_LOST and live.attempt < policy.attempts
                        and (result is None or result.status is RunStatus.KILLED)):
                    if not await self._outlived_fence(live):
                        break  # the keys went with the lease: the master's to retry
                    live.kill = KillSwitch()  # the next attempt may be stopped again
                    self._fenced_runs.discard(live.run_id)
                elif (result is None or live.kill.requested.is_set() or self.draining
                      or live.attempt >= policy.attempts or not _retryable(job, result)):
                    break
                delay = policy.delay_after(live.attempt)
                due = self.clock.now_ms() + int(delay * 1000)
                if policy.any_worker:
                    request = RetryRequest(live.run_id, job.name, live.tick, live.attempt + 1,
                                           due, self.id, dict(job.targets))
                    # Not taken within the misfire window (plus the hand-off): run here.
                    give_up_at = due + int((job.misfire_window + self.settings.handoff_delay)
                                           * 1000)
                    # The running key as it is now (a kept attempt rewrote it).
                    outcome = await self.retries.offer(job, request,
                                                       live.running_info or live.info,
                                                       live.kill.requested,
                                                       give_up_at=give_up_at)
                    if outcome is not HandOff.KEPT:
                        handed_off = outcome is HandOff.HANDED_OFF
                        break
                    due = max(due, self.clock.now_ms())  # kept: a slot window from now
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(loop_deadline(self.clock, due)):
                        await live.kill.requested.wait()
                self._check_owned(live)
                if live.kill.requested.is_set():
                    break
                live.attempt += 1
                live.trigger = Trigger.RETRY
                await self._note_attempt(live)
                live.output = BoundedOutput(self.settings.output_head_bytes,
                                            self.settings.output_tail_bytes)
        except Exception:  # a worker bug must end the run visibly, not in a lost task
            log.exception("run %s stopped by an internal error", live.run_id)
        finally:
            if not handed_off:  # a run handed off is the claimer's to release
                await self._release(live)
            if self.runs.get(live.run_id) is live:
                del self.runs[live.run_id]
                self._fenced_runs.discard(live.run_id)
            if not self.runs:
                self._runs_idle.set()

    async def _outlived_fence(self, live: LiveRun) -> bool:
        """After the fence stopped an attempt of ``live``: whether the fence
        lifted on the lease the run's keys are on (it never expired, so the run
        is still this worker's alone). False once the worker drains."""
        lifted = asyncio.ensure_future(self.fence.lifted.wait())
        drain = asyncio.ensure_future(self._drain.wait())
        try:
            await asyncio.wait((lifted, drain), return_when=asyncio.FIRST_COMPLETED)
        finally:
            lifted.cancel()
            drain.cancel()
        return not self.draining and self._owns(live.info)

    def _check_owned(self, live: LiveRun) -> None:
        """Stop ``live`` if its lease is not safely ours any more."""
        if not self._owns(live.info) and not live.kill.requested.is_set():
            self._stop_runs(lambda other: other is live)

    async def _note_attempt(self, live: LiveRun) -> None:
        """Keep the attempt number in the running key, so a lost run names it.

        Only over our own value, on the run's own lease: a key that is not
        ours any more is not written back.
        """
        info = {**json.loads(live.info), "attempt": live.attempt}
        previous = live.running_info or live.info
        live.running_info = json.dumps(info, separators=(",", ":")).encode()
        key = self.keys.running(live.job.name, live.run_id)
        try:
            await self.store.txn([Compare.value(key, "==", previous)],
                                 [Put(key, live.running_info, live.lease)])
        except CoordUnavailable as exc:
            log.warning("cannot record attempt %d of %s in etcd: %s", live.attempt,
                        live.run_id, exc)

    async def _replace(self, job: Job, old_run: str, new_run: str) -> bool:
        """``replace`` policy: ask the live run to stop, wait (bounded) until it has.

        False if the request could not be written within the bound (etcd
        unreachable): the old run was never asked to stop, so the new one
        must not start next to it.
        """
        request = json.dumps({"run_id": old_run, "by": f"replace:{new_run}",
                              "at": self.clock.now_ms()}).encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + job.kill_grace + 5
        delay = 0.1
        while True:
            try:
                await self.store.put(self.keys.killer(job.name), request,
                                     lease=self.lease.lease_id)
                break
            except CoordUnavailable as exc:
                if loop.time() + delay > deadline:
                    log.warning("cannot ask %s to stop (%s); %s does not start", old_run, exc,
                                new_run)
                    return False
                await asyncio.sleep(delay)  # retry backoff while etcd fails over
                delay = min(delay * 2, 1.0)
        try:
            async with asyncio.timeout_at(deadline):
                await wait_deleted(self.store, self.keys.running(job.name, old_run))
        except TimeoutError:
            log.warning("%s still running after kill_grace; %s starts anyway", old_run, new_run)
        except CoordUnavailable as exc:
            log.warning("cannot tell whether %s stopped (%s); %s starts anyway (it was asked "
                        "to stop)", old_run, exc, new_run)
        return True

    async def _release(self, live: LiveRun) -> None:
        await self._release_keys(live.job, live.run_id, live.info, live.running_info or live.info)

    async def _release_keys(self, job: Job, rid: str, info: bytes, running_info: bytes) -> None:
        """Delete the run's lock and running key, each only if it still holds our
        value: ``replace`` may have taken the lock, and after our lease expired
        another worker may hold either (the same run id, a later attempt)."""
        lock = self.keys.lock(job.name)
        running = self.keys.running(job.name, rid)
        release_lock = Txn((Compare.value(lock, "==", info),), (Delete(lock),))
        try:
            # Committed with the releases of other runs (see _release.py); one
            # that may free a lock goes at once, for the job's next tick.
            await self.releases.release(
                Txn((Compare.value(running, "==", running_info),),
                    (Delete(running), release_lock), (release_lock,)),
                urgent=job.overlap != "allow")
        except CoordUnavailable as exc:
            # The keys live on our lease: they vanish when it expires.
            log.warning("cannot release %s now (%s); the lease will", rid, exc)


def _retryable(job: Job, result: ExecResult) -> bool:
    """Whether a finished attempt may be retried under ``job.retry``.

    Only failures and timeouts retry, never a kill or a success. When the
    policy lists exit codes (shell jobs) or HTTP statuses (HTTP jobs), only an
    attempt that ended with a listed one retries; a timeout, a signal or a
    connection error then does not.
    """
    if result.status not in (RunStatus.FAILED, RunStatus.TIMEOUT):
        return False
    policy = job.retry
    if job.kind == "http":
        listed = policy.on_http_statuses
        return listed is None or result.http_status in listed
    codes = policy.on_exit_codes
    return codes is None or result.exit_code in codes
