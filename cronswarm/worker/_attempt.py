"""One attempt of a run: waiting for a slot, running the executor, the records.

An attempt that never starts (no slot within the misfire window, or killed
while it waited) is recorded with its reason; one that starts gets a running
record before the job starts and a final record after it ends.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from functools import partial
from typing import Any

from ..common import (
    LEASE_LOST,
    LEASE_LOST_REASON,
    RunRecord,
    RunStatus,
    Scrubber,
    SecretKeyError,
    loop_deadline,
    open_secrets,
)
from ._core import LiveRun, WorkerCore
from ._executor import ExecResult, RunContext
from ._gate import killed_before_start

log = logging.getLogger(__name__)


class Attempts(WorkerCore):
    """Attempts of runs, each in a slot (``_slots``), and their run records."""

    async def _attempt_in_slot(self, live: LiveRun, due: int) -> ExecResult | None:
        """Run the next attempt once a slot is free; None if it never started.

        Higher priorities get free slots first; an attempt still waiting when
        the job's misfire window after ``due`` has passed is recorded as skipped.
        """
        job = live.job
        deadline_ms = due + int(job.misfire_window * 1000)
        queued_at = self.clock.now_ms()
        granted = await self.slots.acquire(job.priority, cancel=live.kill.requested,
                                           deadline=loop_deadline(self.clock, deadline_ms))
        if not granted:
            waited = (self.clock.now_ms() - queued_at) / 1000
            if live.kill.requested.is_set():
                reason = LEASE_LOST_REASON if live.kill.reason == LEASE_LOST else "killed"
                await self._record_unstarted(
                    live, RunStatus.KILLED, killed_before_start(live.kill),
                    {"reason": reason, "waited": waited}, killed_by=live.kill.by)
            else:
                limit = self.settings.max_concurrent_runs
                await self._record_unstarted(
                    live, RunStatus.SKIPPED,
                    f"skipped: worker saturated ({limit} runs at once) for the whole "
                    f"misfire window ({job.misfire_window:g}s)",
                    {"reason": "saturated", "max_concurrent_runs": limit, "waited": waited})
            return None
        try:
            return await self._attempt(live)
        finally:
            self.slots.release()

    async def _record_unstarted(self, live: LiveRun, status: RunStatus, error: str,
                                extra: dict[str, Any], *, killed_by: str | None = None) -> None:
        job = live.job
        await self.sink.submit(RunRecord(
            run_id=live.run_id, job=job.name, tick=live.tick, attempt=live.attempt,
            worker=self.id, summary=job.summary, status=status, trigger=live.trigger,
            ended=self.clock.now_ms(), error=error, killed_by=killed_by,
            retention_days=job.retention_days, extra=extra,
        ))

    async def _attempt(self, live: LiveRun) -> ExecResult:
        job = live.job
        gate_at, live.gate_at = live.gate_at, None
        # Made ready before its instant: it starts at the gate (see RunContext.gate).
        started = max(self.clock.now_ms(), gate_at or 0)
        record = RunRecord(
            run_id=live.run_id, job=job.name, tick=live.tick, attempt=live.attempt,
            worker=self.id, summary=job.summary, status=RunStatus.RUNNING,
            trigger=live.trigger, started=started, retention_days=job.retention_days,
        )
        self.counters["runs_started"] += 1
        # The job starts while its running record's fsync is in flight: were
        # the worker to die before it lands, the running key in etcd still
        # names the run (the elected master records it lost). The final
        # record is submitted after it, never before.
        accepted = asyncio.ensure_future(self.sink.submit(replace(record)))
        ctx = RunContext(job, live.run_id, live.tick, live.attempt, self.id, kill=live.kill,
                         output=live.output, shell=self.settings.shell,
                         allow_run_as=self.settings.allow_run_as,
                         gate=None if gate_at is None else partial(self._until, gate_at),
                         now_ms=self.clock.now_ms)
        secret_error: str | None = None
        try:
            ctx.secrets = open_secrets(self.keyring, job.name, job.secrets)
        except SecretKeyError as exc:  # names the slot and key id, never a value
            secret_error = f"cannot open the job's secrets: {exc}"
            log.error("run %s: %s", live.run_id, secret_error)
        scrubber = Scrubber(ctx.secrets.values())
        live.output.scrubber = scrubber if scrubber else None
        with self.feeds.track(record.record_id, live.output) as feed:
            executor = self.executors.get(job.kind)
            if secret_error is not None:
                result = ExecResult(RunStatus.FAILED, error=secret_error)
            elif executor is None:
                result = ExecResult(RunStatus.FAILED,
                                    error=f"this worker cannot run {job.kind} jobs")
            else:
                try:
                    result = await executor.execute(ctx)
                except Exception as exc:  # an executor bug must not lose the record
                    log.exception("executor failed on %s", live.run_id)
                    result = ExecResult(RunStatus.FAILED, error=f"internal error: {exc!r}")
            live.output.flush()
            if result.error is not None:
                result.error = scrubber.text(result.error)
            head, tail = live.output.text()
            record.status = result.status
            record.started = ctx.started_ms or started  # the gate may have opened late
            record.ended = self.clock.now_ms()
            record.exit_code = result.exit_code
            record.http_status = result.http_status
            record.error = result.error
            record.killed_by = result.killed_by
            record.output, record.output_tail = head, tail
            record.output_bytes = live.output.total
            record.truncated = live.output.truncated
            record.extra = dict(result.details)
            if result.status is RunStatus.KILLED and live.kill.reason == LEASE_LOST:
                record.extra["reason"] = LEASE_LOST_REASON  # the master retries it as lost
            self.counters["runs_finished"] += 1
            try:
                await accepted
            except Exception:  # the final record carries everything it held
                log.exception("cannot accept the running record of %s", live.run_id)
            await self.sink.submit(record)
            feed.finish(result.status.value)
        return result
