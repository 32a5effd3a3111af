"""Scheduling: wake at the earliest tick, wait for the owner, plan, claim.

The timetable wakes the scheduler at the earliest next tick; the owner of the
job (rendezvous hash over live matching workers) plans at once, the others
after ``handoff_delay`` unless their mirror of ``/last`` shows the tick
claimed meanwhile; the plan (``plan_ticks``) applies the misfire policy, and
each tick is claimed with the fencing-token transaction (``claim``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from ..common import (
    CronSchedule,
    Job,
    Trigger,
    decode_tick,
    encode_tick,
    loop_deadline,
    may_own,
    run_id,
    start_floor,
)
from ..coord import CoordUnavailable, KeyValue, PrefixMirror
from ._claim import Outcome, Ticket, claim, claim_skip, run_info
from ._claimed import ON_TIME_MS, ClaimedTicks, _Doubt
from ._core import LiveRun
from ._fence import Fenced
from ._plan import plan_ticks, rendezvous_owner
from ._registry import registered_labels

log = logging.getLogger(__name__)

# Ticks of ``overlap: allow`` jobs are claimed this long before they are due, and
# their runs start at the tick (by the cluster's clock): the claim's round trip
# to etcd is not in the run's lag. Under forbid and replace a tick is claimed
# when due: its claim decides on the overlap, which an earlier claim would
# judge too soon.
CLAIM_AHEAD_MS = 250
PLAN_RETRY_MS = 1000  # while etcd is unreachable, plans are retried this often


class KeyedLock:
    """One asyncio lock per key, kept only while someone holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Scheduler(ClaimedTicks):
    """Plans and claims the ticks of the jobs in the timetable."""

    _starts: dict[str, tuple[bytes, float]]  # start markers by job, and when first seen
    _members: dict[str, tuple[int, dict[str, str], bool]]  # _owner's parse cache
    _wake: asyncio.Event
    _job_locks: KeyedLock
    _waited: dict[str, int]  # job -> the tick whose owner it gave its hand-off time

    # -- fencing tokens -------------------------------------------------------

    def _token_of(self, name: str) -> bytes | None:
        """The job's fencing token as this worker last saw it."""
        kv = self.last.items.get(name)
        return kv.value if kv is not None else None

    def _last_of(self, name: str) -> int | None:
        """The job's last claimed tick as this worker last saw it; for a start
        marker, the start (every tick up to it counts as claimed)."""
        token = self._token_of(name)
        if token is None:
            return None
        return decode_tick(token) if start_floor(token) is None else self._start(name, token)

    def _on_token(self, name: str, kv: KeyValue | None, _old: KeyValue | None) -> None:
        if kv is not None and start_floor(kv.value) is not None:
            self._start(name, kv.value)  # note when it was seen
        else:
            self._starts.pop(name, None)

    def _start(self, name: str, marker: bytes) -> int:
        """Where a job whose token is the start marker ``marker`` starts: the
        cluster's time when this worker first saw the marker (and never below
        the marker's floor).

        A master writes the marker when it creates, reschedules or resumes the
        job (``encode_start``): the ticks before are not missed ones. Not the
        master's clock but this one says when that was, as it says when every
        tick is due: a worker watching sees the marker milliseconds after it
        was committed and reads the earliest the cluster's time can be (a
        tick within a watch's latency of the write may count as before it: a
        worker whose watch lags finds the marker when its claim of that tick
        fails, and starts from then). Workers that
        saw it at different times (one that started later, a watch that
        lagged) may disagree: the first plan that claims writes its own start
        over the marker (one compare on the marker's bytes) and the others
        plan from that token; a worker that saw the marker earlier and finds a
        tick of its own unclaimed claims it after the hand-off as usual. If no
        worker is up when the job is written, it starts when the first one
        comes up.

        The time of first sight is kept as loop time, so a start seen before
        this worker's clock was measured is still right once it is.
        """
        loop_now = asyncio.get_running_loop().time()
        seen = self._starts.get(name)
        if seen is None or seen[0] != marker:
            seen = self._starts[name] = (marker, loop_now)
        elapsed_ms = int((loop_now - seen[1]) * 1000)
        return max(start_floor(marker) or 0, self.clock.now_ms() - elapsed_ms)

    async def _claim_start(self, job: Job, marker: bytes) -> bytes | None:
        """Replace the start marker with this worker's start (``_start``);
        returns the token now in ``/last`` (ours, or one written meanwhile)."""
        if not self._may_claim():
            raise Fenced
        start = self._start(job.name, marker)
        claimant = self._claimant()
        result = await claim_skip(self.store, self.keys, job, fence=marker, until=start,
                                  claimant=claimant, since=self.last.revision)
        # Nothing to record: the ticks before the start were never due.
        return encode_tick(start, claimant) if result.outcome is Outcome.WON else result.last

    # -- scheduling ---------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while True:
            self._wake.clear()
            due_at = self.timetable.next_due()
            now = self.clock.now_ms() + CLAIM_AHEAD_MS  # planned this far ahead
            if due_at is None or due_at > now:
                deadline = (None if due_at is None
                            else loop_deadline(self.clock, due_at - CLAIM_AHEAD_MS))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._wake.wait()
                continue
            for entry, tick in self.timetable.pop_due(now):
                if self._settled_without_plan(entry.job, tick):
                    continue
                waited = self._waited.pop(entry.job.name, None) == tick
                self._spawn(self._plan(entry.job, tick, waited=waited),
                            name=f"plan:{entry.job.name}")

    def _settled_without_plan(self, job: Job, tick: int) -> bool:
        """Handle a due tick of an ``allow`` job without a plan task when that
        is all its plan would do: the tick is claimed already (move past it),
        or another worker owns it (look again once its ``handoff_delay`` is
        over; the plan then claims at once). With several workers, that is
        most ticks of each: no task, lock or timer per tick for them."""
        if job.overlap != "allow" or job.name in self._doubts or not self.clock_sync.may_claim:
            return False
        last = self._taken(job.name, tick)
        if last is not None:
            self.counters["handoffs_saved"] += 1
            self._waited.pop(job.name, None)
            self.timetable.advance(job.name, last)
            return True
        if self._waited.get(job.name) == tick or self._owner(job.name, job) == self.id:
            return False
        self._waited[job.name] = tick
        # Due again then (the loop plans CLAIM_AHEAD_MS before what is due).
        self.timetable.defer(job.name, self.clock.now_ms() + CLAIM_AHEAD_MS
                             + int(self.settings.handoff_delay * 1000))
        return True

    def _taken(self, name: str, tick: int) -> int | None:
        """The job's claimed tick if it covers ``tick`` (claimed already), else None."""
        last = self._last_of(name)
        return last if last is not None and last >= tick else None

    def _owner(self, key: str, job: Job) -> str:
        candidates = []
        for name, kv in self.workers.items.items():
            member = self._members.get(name)
            if member is None or member[0] != kv.mod_revision:
                # Parsed once per registration, not once per tick.
                member = (kv.mod_revision, registered_labels(kv), may_own(kv.value))
                self._members[name] = member
            if member[2] and job.matches(member[1]):
                candidates.append(name)
        if len(self._members) > 2 * len(self.workers.items) + 16:
            self._members = {n: m for n, m in self._members.items() if n in self.workers.items}
        return rendezvous_owner(key, candidates) or self.id

    async def _hand_off(self, job: Job, key: str, claimed: Callable[[], bool],
                        mirror: PrefixMirror) -> bool:
        """Wait for our turn; returns False if the owner claimed meanwhile."""
        if self._owner(key, job) == self.id:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.handoff_delay):
                await mirror.wait_for_key(job.name, claimed)  # the job's own key
        return not claimed()

    async def _plan(self, job: Job, tick: int, *, waited: bool = False) -> None:
        """Handle every unclaimed tick of ``job`` up to now (``tick`` is the oldest
        pending); ``waited``: its owner has had its hand-off time already."""
        retry = False
        covered = tick  # every tick up to here is claimed or handled
        try:
            async with self._job_locks.hold(job.name):
                if job.overlap != "allow":
                    await self._until(tick)  # claimed when due (CLAIM_AHEAD_MS)
                # A run the doubt turns out to have claimed: a run_all catch-up
                # under forbid/replace claims its next tick once it has ended.
                resolved = await self._resolve_doubt(job)
                if not self.clock_sync.may_claim:
                    return  # off the cluster's clock: the others claim it

                def claimed() -> bool:
                    return self._taken(job.name, tick) is not None

                if claimed() or (not waited and not await self._hand_off(
                        job, job.name, claimed, self.last)):
                    self.counters["handoffs_saved"] += 1  # no claim sent: already taken
                    covered = max(tick, self._last_of(job.name) or tick)
                    return
                planned = await self._execute_plan(job, after=resolved)
                if planned is None:
                    retry = True  # the token kept moving: plan again soon
                else:
                    covered = max(tick, planned)
        except CoordUnavailable as exc:
            self.counters["claim_errors"] += 1
            retry = True
            # The lease keeper and the mirrors already report the outage once.
            log.debug("cannot claim %s@%d (%s); retrying until etcd answers", job.name,
                      tick, exc)
        finally:
            entry = self.timetable.get(job.name)
            if entry is not None and entry.job is job and not self.draining:
                if retry:
                    # Plan again soon: once etcd answers, the plan covers every
                    # tick missed meanwhile, by the job's misfire policy.
                    self.timetable.defer(job.name, self.clock.now_ms() + PLAN_RETRY_MS)
                else:
                    # Not from now: ticks that fell due while this plan waited
                    # (hand-off, a slow claim) are still pending, and due at once.
                    self.timetable.advance(job.name, covered)
                self._wake.set()

    def _horizon(self, job: Job) -> int:
        """The newest tick of ``job`` that may be claimed now."""
        ahead = CLAIM_AHEAD_MS if job.overlap == "allow" else 0
        return self.clock.now_ms() + ahead

    async def _execute_plan(self, job: Job, *, after: LiveRun | None = None) -> int | None:
        """Claim (or skip) the job's ticks up to its horizon; returns the instant
        planned up to, or None if five plans in a row were overtaken (nothing is
        covered). ``after``: a run of the job this plan's first claim follows."""
        entry = self.timetable.get(job.name)
        now = self._horizon(job)
        if entry is None:
            return now
        token = self._token_of(job.name)
        for _ in range(5):  # re-plan when the token moved or a tick became a misfire
            if token is not None and start_floor(token) is not None:
                token = await self._claim_start(job, token)
                if token is None:
                    return now  # the job was deleted meanwhile
                if start_floor(token) is not None:
                    return None  # rewritten meanwhile (another edit): plan again soon
            now = self._horizon(job)
            if token is None:
                # No token seen (a job written without one, or its start
                # marker not mirrored yet): only the newest due tick.
                due = list(entry.schedule.fires_between(now - ON_TIME_MS - 1, now))
                if await self._claim_and_run(job, entry.schedule, tuple(due[-1:])):
                    return now
                # A start marker (or a misfire) came first: plan from the key.
                kv = await self.store.get(self.keys.last(job.name))
                token = kv.value if kv is not None else None
                continue
            plan = plan_ticks(entry.schedule, job, last=decode_tick(token), now=now,
                              on_time_ms=ON_TIME_MS)
            if plan.skip_count and not self.draining:
                assert plan.skip_first is not None
                assert plan.skip_until is not None
                if not self._may_claim():
                    raise Fenced
                claimant = self._claimant()
                since = self.last.revision
                try:
                    result = await claim_skip(self.store, self.keys, job, fence=token,
                                              until=plan.skip_until, claimant=claimant,
                                              since=since)
                except CoordUnavailable:
                    self._doubts[job.name] = _Doubt(
                        plan.skip_first, encode_tick(plan.skip_until, claimant), since,
                        skip_count=plan.skip_count)
                    raise
                if result.outcome is Outcome.STALE:
                    if result.last is None:
                        return now
                    token = result.last
                    continue
                self.counters["ticks_skipped"] += plan.skip_count
                await self._record_skip(job, plan.skip_first, reason="misfire", extra={
                    "skipped_ticks": plan.skip_count, "skipped_until": plan.skip_until,
                    "misfire": job.misfire,
                })
            # Under run_all a run the doubt started is the first of the catch-up.
            first = after if job.misfire == "run_all" else None
            if await self._claim_and_run(job, entry.schedule, plan.run, previous=first):
                return now
            # A tick became a misfire before its claim went out (etcd was
            # slow): plan again from the token as it is now.
            kv = await self.store.get(self.keys.last(job.name))
            token = kv.value if kv is not None else None
        return None

    async def _claim_and_run(self, job: Job, schedule: CronSchedule,
                             ticks: tuple[int, ...], *, previous: LiveRun | None = None) -> bool:
        """Claim and start ``ticks``, oldest first.

        Returns False, with the rest unclaimed, when a tick is no longer due by
        the misfire policy before its claim is sent (the caller re-plans).
        """
        for tick in ticks:
            if previous is not None and previous.task is not None and job.overlap != "allow":
                # Catching up under forbid/replace: missed ticks run one after
                # another, not into each other's lock.
                drain = asyncio.ensure_future(self._drain.wait())
                await asyncio.wait({previous.task, drain}, return_when=asyncio.FIRST_COMPLETED)
                drain.cancel()
            if self.draining:
                return True
            if not self._still_due(schedule, job, tick):
                return False
            if not self._may_claim():
                raise Fenced  # as if etcd were down: planned again once the lease is safe
            rid = run_id(job.name, tick)
            info = run_info(run_id=rid, worker=self.id, lease=self.lease.lease_id, tick=tick,
                            started=max(tick, self.clock.now_ms()))
            claimant = self._claimant()
            since = self.last.revision
            self.counters["claim_txns"] += 1
            try:
                ticket = Ticket(rid, info, self.lease.lease_id, claimant)
                result = await claim(self.store, self.keys, job, tick, ticket, since=since,
                                     carry=self.releases, send=self.claims)
            except CoordUnavailable:
                # It may have committed with its reply lost: the next plan of
                # this job finds out before anything else (_resolve_doubt).
                self._doubts[job.name] = _Doubt(tick, encode_tick(tick, claimant), since,
                                                rid, info)
                raise
            if result.outcome is Outcome.TAKEN and result.last is not None and start_floor(
                    result.last) is not None:
                return False  # the job was written since the plan: it starts afresh
            trigger = Trigger.CATCH_UP if len(ticks) > 1 or tick < self.clock.now_ms() - (
                ON_TIME_MS) else Trigger.SCHEDULE
            if result.outcome is Outcome.WON and not self._in_time(job, tick):
                # Claimed, but the reply came after the tick became a misfire.
                await self._claimed_too_late(job, tick, rid, info)
                previous = None
                continue
            previous = self._start_claimed(job, tick, rid, info, result, trigger)
        return True
