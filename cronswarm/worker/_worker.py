"""The worker: holds the job table, claims ticks, runs them, reports them.

Life of one tick (DESIGN.md section 3):

1. the timetable wakes the scheduler at the earliest next tick;
2. the owner of the job (rendezvous hash over live matching workers) plans
   at once; other workers wait ``handoff_delay`` or until their mirror of
   ``/last`` shows the tick claimed;
3. the plan (``plan_ticks``) applies the misfire policy; each tick is claimed
   with the fencing-token transaction (``claim``);
4. a won tick runs as its own task (executor, kill switch, retries); its
   records go to the sink; its running key and lock live on the worker lease.

A worker that may have lost its lease fences itself (``_fence``): it claims
nothing and stops its runs until the lease is refreshed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..common import (
    LEASE_LOST,
    LEASE_LOST_REASON,
    Clock,
    ClusterClock,
    CronSchedule,
    Job,
    Keyring,
    Keyspace,
    RetryRequest,
    RunRecord,
    RunStatus,
    Scrubber,
    SecretKeyError,
    Settings,
    StreamLimits,
    SystemClock,
    Trigger,
    ValidationError,
    decode_tick,
    encode_tick,
    loop_deadline,
    may_own,
    open_secrets,
    run_id,
    start_floor,
)
from ..coord import (
    Compare,
    CoordStore,
    CoordUnavailable,
    Delete,
    KeyValue,
    LeaseKeeper,
    PrefixMirror,
    Put,
    Txn,
    load_cluster_key,
    wait_deleted,
)
from ..metrics import render, worker_registry
from ._claim import (
    Claim,
    Outcome,
    claim,
    claim_skip,
    find_write,
    in_time,
    plan_ticks,
    recover_claim,
    rendezvous_owner,
    run_info,
    still_due,
)
from ._clock_sync import ClockSync
from ._executor import ExecResult, Executor, KillSwitch, RunContext, ShellExecutor
from ._fence import Fenced, LeaseFence
from ._http import HttpExecutor
from ._live import LiveOutputServer, OutputFeeds
from ._output import BoundedOutput
from ._registry import WorkerInfo
from ._release import LINGER as RELEASE_LINGER
from ._release import ReleaseBatcher
from ._retry import HandOff, RetryBoard
from ._sink import RunSink
from ._slots import Slots
from ._stats import CountingSink, FlushStats, RunStats
from ._timetable import Timetable

log = logging.getLogger(__name__)

ON_TIME_MS = 2000  # a tick claimed at most this late is on time (not a misfire)
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


@dataclass(slots=True)
class LiveRun:
    """A run in progress on this worker."""

    job: Job
    tick: int
    run_id: str
    trigger: Trigger
    attempt: int = 1
    kill: KillSwitch = field(default_factory=KillSwitch)
    output: BoundedOutput = field(default_factory=BoundedOutput)
    created_revision: int = 0  # etcd revision of the claim (kill requests compare to it)
    info: bytes = b""  # the lock's value (fixed for the run)
    running_info: bytes = b""  # the running key's value (names the current attempt)
    task: asyncio.Task[None] | None = None
    lease: int = 0  # the lease its keys live on (set from ``info``)

    def __post_init__(self) -> None:
        if self.info and not self.lease:
            self.lease = _lease_of(self.info)


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: CoordStore,
        sink: RunSink,
        *,
        clock: Clock | None = None,
        executors: dict[str, Executor] | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.log_sink = sink  # the writer itself (its own counters, if any)
        self.run_stats = RunStats()  # what this worker recorded, for its metrics
        self.flush_stats = FlushStats()  # the writer's bulk writes, if it reports them
        self.flush_stats.follow(sink)
        self.sink: RunSink = CountingSink(sink, self.run_stats)
        self.id = worker_id or settings.worker_id
        self.keys = Keyspace(settings.key_prefix)
        self.fence = LeaseFence(settings.lease_ttl, self._on_fence)
        self.lease = LeaseKeeper(store, settings.lease_ttl, on_renewed=self._on_lease_renewed,
                                 on_refresh=self.fence.refreshed)
        # Everything below runs on the cluster's time: this clock less its offset.
        self.clock_sync = ClockSync(store, self.keys, self.id, clock or SystemClock(),
                                    self.lease, max_offset_ms=settings.max_clock_offset_ms,
                                    on_state=self._register)
        self.clock: ClusterClock = self.clock_sync.clock
        self.labels = dict(settings.worker_labels)
        # Opens the jobs' secrets when a run starts (None: jobs with secrets fail).
        self.keyring = Keyring.from_setting(settings.job_secret_keys)
        self.executors: dict[str, Executor] = executors or {
            "shell": ShellExecutor(), "http": HttpExecutor()}
        self.timetable = Timetable()  # enabled jobs this worker may run
        self.job_defs: dict[str, Job] = {}  # every job in etcd (run-now needs paused ones)
        self.runs: dict[str, LiveRun] = {}  # by run id
        self._doubts: dict[str, _Doubt] = {}  # by job: claims whose outcome is unknown
        self._nonce = 0
        # Runs stopped by the fence: nothing is claimed until they have ended.
        self._fenced_runs: set[str] = set()
        self.jobs = PrefixMirror(store, self.keys.jobs, on_change=self._on_job,
                                 keep_values=False)
        self.last = PrefixMirror(store, self.keys.last_dir, on_change=self._on_token)
        # Start markers (see _start) by job: the marker, and the loop time it was first seen.
        self._starts: dict[str, tuple[bytes, float]] = {}
        self.workers = PrefixMirror(store, self.keys.workers)
        self._members: dict[str, tuple[int, dict[str, str], bool]] = {}  # _owner's parse cache
        self.killers = PrefixMirror(store, self.keys.killer_dir, on_change=self._on_killer)
        self.once = PrefixMirror(store, self.keys.once_dir, on_change=self._on_once)
        self.info = WorkerInfo(self.id, self.labels, self.clock.now_ms())
        self.ready = asyncio.Event()
        self.draining = False
        self._drain = asyncio.Event()
        self.counters: dict[str, int] = {
            "claim_txns": 0, "claims_won": 0, "claims_lost": 0, "claims_skipped": 0,
            "claim_errors": 0, "handoffs_saved": 0,
            "ticks_skipped": 0, "runs_started": 0, "runs_finished": 0,
        }
        self._wake = asyncio.Event()
        self._job_locks = KeyedLock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runs_idle = asyncio.Event()
        self._runs_idle.set()
        # execution: slots, live output, retries on other workers
        self.slots = Slots(settings.max_concurrent_runs)
        self.feeds = OutputFeeds()
        streams = StreamLimits(settings.live_streams_per_viewer, settings.live_streams_total,
                               server="worker")
        self.metrics = worker_registry(self, streams)  # this worker's own registry
        self.live_server = LiveOutputServer(
            self.feeds, settings.worker_http_host, settings.worker_http_port,
            metrics=lambda: render(self.metrics), metrics_token=settings.metrics_token,
            limits=streams)
        self.releases = ReleaseBatcher(store, linger=RELEASE_LINGER)
        self.retries = RetryBoard(
            store, self.keys, self.id, self.lease, self.clock,
            handoff_delay=settings.handoff_delay, labels=self.labels, workers=self.workers,
            start=self._start_retry, draining=lambda: self.draining or not self._may_claim(),
        )

    # -- life cycle ---------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down gracefully."""
        await self.lease.grant()
        cluster_key = await load_cluster_key(self.store, self.keys, self.settings.secret_key)
        self.info.http = await self.live_server.start(cluster_key)
        await self._register()
        try:
            async with asyncio.TaskGroup() as tg:
                background = [
                    tg.create_task(self.lease.run(), name="lease"),
                    tg.create_task(self.fence.watch(), name="lease-fence"),
                    tg.create_task(self.sink.run(), name="sink"),
                    tg.create_task(self.workers.run(), name="workers-mirror"),
                    tg.create_task(self.last.run(), name="last-mirror"),
                    tg.create_task(self.killers.run(), name="killer-mirror"),
                    tg.create_task(self.retries.run(), name="retry-board"),
                    tg.create_task(self.clock_sync.run(), name="clock-sync"),
                ]
                for mirror in (self.workers, self.last, self.killers):
                    await mirror.ready.wait()
                await self.clock_sync.ready.wait()
                # Jobs come after /last is known, so the first plan of each job
                # sees its fencing token.
                background.append(tg.create_task(self.jobs.run(), name="jobs-mirror"))
                with _collector_paused():
                    await self.jobs.ready.wait()
                background.append(tg.create_task(self.once.run(), name="once-mirror"))
                background.append(tg.create_task(self._stats_loop(), name="stats"))
                scheduler = tg.create_task(self._schedule_loop(), name="scheduler")
                self.ready.set()
                log.info("worker %s ready with %d jobs", self.id, len(self.timetable))
                await stop.wait()
                await self._shutdown(scheduler)
                for task in background:
                    task.cancel()
        finally:
            await self.live_server.close()
            with contextlib.suppress(CoordUnavailable):
                await self.lease.revoke()

    async def _shutdown(self, scheduler: asyncio.Task[None]) -> None:
        log.info("worker %s draining: %d runs in progress", self.id, len(self.runs))
        self.draining = True
        self._drain.set()
        scheduler.cancel()
        # Plans in flight finish (they claim nothing new while draining): a
        # plan cancelled between its claim and its record would leave a gap.
        await asyncio.gather(*[t for t in self._tasks if t.get_name().startswith("plan:")],
                             return_exceptions=True)
        await self.retries.claims_settled()  # a retry claimed before the drain runs here
        grace = self.settings.shutdown_grace
        try:
            async with asyncio.timeout(grace):
                await self._runs_idle.wait()
        except TimeoutError:
            log.warning("killing %d runs still going after %.0fs", len(self.runs), grace)
            for live in list(self.runs.values()):
                live.kill.pull(f"worker:{self.id}", "worker shutdown")
            await self._runs_idle.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.releases.close()
        await self.sink.close()

    async def _register(self) -> None:
        self.info.clock = self.clock_sync.report.to_dict()
        value = self.info.encode(running=len(self.runs), now_ms=self.clock.now_ms(),
                                 max_runs=self.settings.max_concurrent_runs)
        await self.store.put(self.keys.worker(self.id), value, lease=self.lease.lease_id)

    async def _on_lease_renewed(self, lease: int) -> None:
        """The old lease expired (etcd or this worker was unreachable): register again.

        The keys of runs on the old lease went with it and are not written
        back (another worker may hold them now); those runs were stopped by
        the fence, and are stopped here if they somehow were not.
        """
        self._stop_runs(lambda live: live.lease != lease)
        await self._register()

    # -- self-fencing (see _fence) --------------------------------------------

    def _on_fence(self) -> None:
        self._stop_runs(lambda _: True)

    def _stop_runs(self, which: Callable[[LiveRun], bool]) -> None:
        for live in list(self.runs.values()):
            if which(live) and not live.kill.requested.is_set():
                log.warning("stopping %s: %s", live.run_id, LEASE_LOST)
                self._fenced_runs.add(live.run_id)
                live.kill.pull(f"worker:{self.id}", LEASE_LOST)

    @property
    def runs_idle(self) -> asyncio.Event:
        """Set while no run of this worker is live."""
        return self._runs_idle

    def _may_claim(self) -> bool:
        """Whether a claim may be sent now: the lease is safe, no run stopped by
        the fence is still ending (its processes may not be gone yet), and this
        worker's clock is within the cluster's maximum offset."""
        return self.fence.check() and not self._fenced_runs and self.clock_sync.may_claim

    def _owns(self, info: bytes) -> bool:
        """Whether keys written with ``info`` are still safely ours: the lease is
        safe now and is the one they were written on."""
        return self.fence.check() and _lease_of(info) == self.lease.lease_id

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval)  # refresh timer
            try:
                await self._register()
            except CoordUnavailable as exc:
                log.warning("cannot refresh worker registration: %s", exc)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- job table ----------------------------------------------------------

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

    def _claimant(self) -> str:
        self._nonce += 1
        return f"{self.id}/{self._nonce}"

    def _on_job(self, name: str, kv: KeyValue | None, _old: KeyValue | None) -> None:
        job: Job | None = None
        if kv is not None:
            try:
                job = Job.from_json(kv.value, stored_as=name)
                if job.name != name:
                    raise ValidationError.single("name", f"does not match its key {name!r}")
            except ValidationError as exc:
                log.error("ignoring invalid job %s in etcd: %s", name, exc)
                job = None
        if job is None:
            self.job_defs.pop(name, None)
            self.timetable.remove(name)
        else:
            known = name in self.job_defs
            self.job_defs[name] = job
            pending = self.once.items.get(name)
            if not known and pending is not None and not self.draining and job.matches(
                    self.labels):
                # A run-now request that arrived before its job (two watches).
                self._spawn(self._run_once(job, pending), name=f"once:{name}")
            if not job.enabled or not job.matches(self.labels):
                self.timetable.remove(name)
            else:
                now = self.clock.now_ms()
                last = self._last_of(name)
                # From the fencing token on: ticks missed since then are due at
                # once, and plan_ticks applies the misfire policy to them.
                self.timetable.set(job, min(now, last) if last is not None else now)
        self._wake.set()

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
                self._spawn(self._plan(entry.job, tick), name=f"plan:{entry.job.name}")

    def _owner(self, key: str, job: Job) -> str:
        candidates = []
        for name, kv in self.workers.items.items():
            member = self._members.get(name)
            if member is None or member[0] != kv.mod_revision:
                # Parsed once per registration, not once per tick.
                member = (kv.mod_revision, _labels_of(kv), may_own(kv.value))
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

    async def _plan(self, job: Job, tick: int) -> None:
        """Handle every unclaimed tick of ``job`` up to now (``tick`` is the oldest pending)."""
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
                    last = self._last_of(job.name)
                    return last is not None and last >= tick

                if claimed() or not await self._hand_off(job, job.name, claimed, self.last):
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

    async def _until(self, instant: int) -> None:
        """Return at ``instant`` by the cluster's clock (at once if it passed)."""
        for _ in range(3):  # the loop's timers may wake a millisecond early
            now = self.clock.now_ms()
            if now >= instant:
                return
            await asyncio.sleep((instant - now) / 1000)  # a tick's own time

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

    def _still_due(self, schedule: CronSchedule, job: Job, tick: int) -> bool:
        return still_due(schedule, job, tick, now=self.clock.now_ms(), on_time_ms=ON_TIME_MS)

    def _in_time(self, job: Job, tick: int) -> bool:
        return in_time(job, tick, now=self.clock.now_ms(), on_time_ms=ON_TIME_MS)

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
                result = await claim(self.store, self.keys, job, tick, run_id=rid, info=info,
                                     lease=self.lease.lease_id, claimant=claimant,
                                     since=since)
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

    # -- running ------------------------------------------------------------

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
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(loop_deadline(self.clock, live.tick)):
                        await live.kill.requested.wait()
                await self._until(live.tick)
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
                    live, RunStatus.KILLED,
                    f"killed before it started: {live.kill.reason} (by {live.kill.by})",
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
        started = self.clock.now_ms()
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
                         allow_run_as=self.settings.allow_run_as)
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
                if _lease_of(info) != self.lease.lease_id:  # first try, or a new lease
                    info = run_info(run_id=rid, worker=self.id, lease=self.lease.lease_id,
                                    tick=tick, started=self.clock.now_ms())
                result = await claim(self.store, self.keys, job, tick, run_id=rid, info=info,
                                     lease=self.lease.lease_id, claimant=self._claimant(),
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


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cycle collector while the job table loads.

    Loading 100,000 jobs creates objects that live as long as the worker; the
    collector would walk the growing heap again and again meanwhile (a fifth of
    the load's CPU time). Reference counting still frees the garbage of the load.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _lease_of(info: bytes) -> int:
    """The lease named in a lock or running key's value (``run_info``)."""
    try:
        return int(json.loads(info).get("lease") or 0)
    except (ValueError, AttributeError, TypeError):
        return 0


def _labels_of(kv: KeyValue) -> dict[str, str]:
    try:
        labels = json.loads(kv.value).get("labels") or {}
    except (ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


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
