"""What a worker does with the outcome of its claims: start the run, record
a skip, or settle a claim whose outcome was lost with etcd's reply.

A claim sent whose reply was lost may or may not have committed (``_Doubt``);
the next plan of its job finds out (``find_write``) before anything else, so
a tick is never lost and never run twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..common import (
    LEASE_LOST,
    LEASE_LOST_REASON,
    CronSchedule,
    Job,
    RunRecord,
    RunStatus,
    Trigger,
    decode_tick,
    run_id,
)
from ..coord import KeyValue
from ._claim import Claim, Outcome, find_write, recover_claim
from ._core import LiveRun
from ._output import BoundedOutput
from ._plan import in_time, still_due
from ._runner import Runner

log = logging.getLogger(__name__)

ON_TIME_MS = 2000  # a tick claimed at most this late is on time (not a misfire)


@dataclass(frozen=True, slots=True)
class _Doubt:
    """A claim sent whose reply was lost: it may or may not have committed.

    ``token`` is what it would have written to ``/last`` (unique: it names the
    claimant); ``since`` a revision seen before it was sent. A skip claim
    (``skip_count`` > 0) covers ``tick`` to the tick in its token.
    """

    tick: int
    token: bytes
    since: int
    run_id: str = ""
    info: bytes = b""
    skip_count: int = 0


class ClaimedTicks(Runner):
    """Claimed ticks: started, recorded skipped, or settled when in doubt."""

    _doubts: dict[str, _Doubt]  # by job: claims whose outcome is unknown
    _nonce: int

    def _claimant(self) -> str:
        self._nonce += 1
        return f"{self.id}/{self._nonce}"

    def _still_due(self, schedule: CronSchedule, job: Job, tick: int) -> bool:
        return still_due(schedule, job, tick, now=self.clock.now_ms(), on_time_ms=ON_TIME_MS)

    def _in_time(self, job: Job, tick: int) -> bool:
        return in_time(job, tick, now=self.clock.now_ms(), on_time_ms=ON_TIME_MS)

    async def _resolve_doubt(self, job: Job) -> LiveRun | None:
        """Settle a claim of ``job`` whose outcome was lost with etcd's reply.

        If it committed, its tick is ours: run it (if still due; the run is
        returned) or record it; a skip claim that committed is recorded. Never
        a tick without a record.
        """
        doubt = self._doubts.get(job.name)
        if doubt is None:
            return None
        write = await self._committed_write(job, doubt)
        del self._doubts[job.name]
        if write is None:
            return None  # it did not commit: its ticks are still unclaimed, planned as usual
        log.info("claim of %s@%d had committed (its reply was lost)", job.name, doubt.tick)
        if doubt.skip_count:
            self.counters["ticks_skipped"] += doubt.skip_count
            await self._record_skip(job, doubt.tick, reason="misfire", extra={
                "skipped_ticks": doubt.skip_count,
                "skipped_until": decode_tick(doubt.token), "misfire": job.misfire})
            return None
        result = await recover_claim(self.store, self.keys, job, doubt.info,
                                     write.mod_revision)
        if result.outcome is Outcome.WON and not self._in_time(job, doubt.tick):
            await self._claimed_too_late(job, doubt.tick, doubt.run_id, doubt.info)
            return None
        return self._start_claimed(job, doubt.tick, doubt.run_id, doubt.info, result,
                                   Trigger.CATCH_UP)

    async def _committed_write(self, job: Job, doubt: _Doubt) -> KeyValue | None:
        """Our write of ``doubt.token`` to ``/last``, if it ever happened: the key
        now, or else its history since ``doubt.since`` (the token is unique)."""
        return await find_write(self.store, self.keys.last(job.name), doubt.token, doubt.since)

    async def _claimed_too_late(self, job: Job, tick: int, rid: str, info: bytes) -> None:
        """A tick claimed after it became a misfire: record it skipped, free its keys."""
        self.counters["ticks_skipped"] += 1
        await self._release_keys(job, rid, info, info)
        await self._record_skip(job, tick, reason="misfire", extra={
            "skipped_ticks": 1, "skipped_until": tick, "misfire": job.misfire,
            "claimed_late_ms": self.clock.now_ms() - tick,
        })

    def _start_claimed(self, job: Job, tick: int, rid: str, info: bytes, result: Claim,
                       trigger: Trigger) -> LiveRun | None:
        if result.outcome is Outcome.WON and not self._owns(info):
            # Fenced while the claim was out: the tick is ours but the lease
            # may not be; it does not start (and has a record).
            self._spawn(self._fenced_claim(job, tick, rid, info, trigger), name=f"fenced:{rid}")
            return None
        if result.outcome is Outcome.TAKEN:
            self.counters["claims_lost"] += 1
            return None
        if result.outcome is Outcome.SKIP:
            self.counters["claims_skipped"] += 1
            holder = (result.holder or {}).get("run_id", "?")
            self._spawn(self._record_skip(job, tick, reason="overlap", extra={
                "overlap": "forbid", "running": holder}, trigger=trigger), name=f"skip:{rid}")
            return None
        self.counters["claims_won"] += 1
        live = LiveRun(job, tick, rid, trigger, created_revision=result.revision, info=info,
                       output=BoundedOutput(self.settings.output_head_bytes,
                                            self.settings.output_tail_bytes))
        self.runs[rid] = live
        self._runs_idle.clear()
        live.task = self._spawn(self._run(live, replacing=result.holder), name=f"run:{rid}")
        return live

    async def _fenced_claim(self, job: Job, tick: int, rid: str, info: bytes,
                            trigger: Trigger) -> None:
        live = LiveRun(job, tick, rid, trigger, info=info)
        live.kill.pull(f"worker:{self.id}", LEASE_LOST)
        await self._record_unstarted(
            live, RunStatus.KILLED, f"killed before it started: {LEASE_LOST} (by {live.kill.by})",
            {"reason": LEASE_LOST_REASON}, killed_by=live.kill.by)
        await self._release_keys(job, rid, info, info)

    async def _record_skip(self, job: Job, tick: int, *, reason: str, extra: dict[str, Any],
                           trigger: Trigger = Trigger.SCHEDULE) -> None:
        now = self.clock.now_ms()
        record = RunRecord(
            run_id=run_id(job.name, tick), job=job.name, tick=tick, attempt=1, worker=self.id,
            summary=job.summary, status=RunStatus.SKIPPED, trigger=trigger, started=None,
            ended=now, error=f"skipped: {reason}", retention_days=job.retention_days,
            extra={"reason": reason, **extra},
        )
        await self.sink.submit(record)
