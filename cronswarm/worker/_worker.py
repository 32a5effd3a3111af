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

This module holds the life cycle and the job table; the layers below are
listed in ``_core``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
from collections.abc import Iterator

from ..common import (
    Clock,
    Job,
    Keyring,
    Keyspace,
    Settings,
    StreamLimits,
    SystemClock,
    ValidationError,
)
from ..coord import (
    CoordStore,
    CoordUnavailable,
    KeyValue,
    LeaseKeeper,
    PrefixMirror,
    load_cluster_key,
)
from ..metrics import render, worker_registry
from ._claim_batch import ClaimBatcher
from ._clock_sync import ClockSync
from ._executor import Executor, ShellExecutor
from ._fence import LeaseFence
from ._http import HttpExecutor
from ._live import LiveOutputServer, OutputFeeds
from ._registry import WorkerInfo
from ._release import LINGER as RELEASE_LINGER
from ._release import ReleaseBatcher
from ._requests import Requests
from ._retry import RetryBoard
from ._scheduler import KeyedLock
from ._sink import RunSink
from ._slots import Slots
from ._stats import CountingSink, FlushStats, RunStats
from ._timetable import Timetable

log = logging.getLogger(__name__)


class Worker(Requests):
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
        self.sink = CountingSink(sink, self.run_stats)
        self.id = worker_id or settings.worker_id
        self.keys = Keyspace(settings.key_prefix)
        self.fence = LeaseFence(settings.lease_ttl, self._on_fence)
        self.lease = LeaseKeeper(store, settings.lease_ttl, on_renewed=self._on_lease_renewed,
                                 on_refresh=self.fence.refreshed)
        # Everything below runs on the cluster's time: this clock less its offset.
        self.clock_sync = ClockSync(store, self.keys, self.id, clock or SystemClock(),
                                    self.lease, max_offset_ms=settings.max_clock_offset_ms,
                                    on_state=self._register)
        self.clock = self.clock_sync.clock
        self.labels = dict(settings.worker_labels)
        # Opens the jobs' secrets when a run starts (None: jobs with secrets fail).
        self.keyring = Keyring.from_setting(settings.job_secret_keys)
        self.executors = executors or {
            "shell": ShellExecutor(), "http": HttpExecutor()}
        self.timetable = Timetable()  # enabled jobs this worker may run
        self.job_defs = {}  # every job in etcd (run-now needs paused ones)
        self.runs = {}  # by run id
        self._doubts = {}  # by job: claims whose outcome is unknown
        self._nonce = 0
        # Runs stopped by the fence: nothing is claimed until they have ended.
        self._fenced_runs = set()
        self.jobs = PrefixMirror(store, self.keys.jobs, on_change=self._on_job,
                                 keep_values=False)
        self.last = PrefixMirror(store, self.keys.last_dir, on_change=self._on_token)
        # Start markers (see _start) by job: the marker, and the loop time it was first seen.
        self._starts = {}
        self.workers = PrefixMirror(store, self.keys.workers)
        self._members = {}  # _owner's parse cache
        self.killers = PrefixMirror(store, self.keys.killer_dir, on_change=self._on_killer)
        self.once = PrefixMirror(store, self.keys.once_dir, on_change=self._on_once)
        self.info = WorkerInfo(self.id, self.labels, self.clock.now_ms())
        self.ready = asyncio.Event()
        self.draining = False
        self._drain = asyncio.Event()
        self.counters = {
            "claim_txns": 0, "claims_won": 0, "claims_lost": 0, "claims_skipped": 0,
            "claim_errors": 0, "handoffs_saved": 0,
            "ticks_skipped": 0, "runs_started": 0, "runs_finished": 0,
        }
        self._wake = asyncio.Event()
        self._job_locks = KeyedLock()
        self._waited = {}
        self._tasks = set()
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
        self.claims = ClaimBatcher(store)
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
                _return_free_memory()
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

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_interval)  # refresh timer
            try:
                await self._register()
            except CoordUnavailable as exc:
                log.warning("cannot refresh worker registration: %s", exc)

    # -- job table ----------------------------------------------------------

    def _unschedule(self, name: str) -> None:
        self.timetable.remove(name)
        self._waited.pop(name, None)  # a hand-off it was waiting for

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
            self._unschedule(name)
        else:
            known = name in self.job_defs
            self.job_defs[name] = job
            pending = self.once.items.get(name)
            if not known and pending is not None and not self.draining and job.matches(
                    self.labels):
                # A run-now request that arrived before its job (two watches).
                self._spawn(self._run_once(job, pending), name=f"once:{name}")
            if not job.enabled or not job.matches(self.labels):
                self._unschedule(name)
            else:
                now = self.clock.now_ms()
                last = self._last_of(name)
                # From the fencing token on: ticks missed since then are due at
                # once, and plan_ticks applies the misfire policy to them.
                self.timetable.set(job, min(now, last) if last is not None else now)
        self._wake.set()


def _return_free_memory() -> None:
    """Give the memory freed by the job table's load back to the system.

    The load reads etcd in replies of megabytes; glibc keeps what they freed
    in its heaps, among the jobs that stay (a quarter of the worker's memory
    after loading 100,000 jobs). ``malloc_trim`` returns the free pages; where
    the C library has none (not glibc), nothing is done.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cycle collector while the job table loads, then set aside
    (``gc.freeze``) what is alive once it has.

    Loading 100,000 jobs creates objects that live as long as the worker (or
    until their job changes, and reference counting frees them: jobs hold no
    cycles). The collector would walk the growing heap again and again during
    the load (a fifth of its CPU time), then once more in one piece just after
    it (a quarter of a second for 100,000 jobs), and again at every full
    collection. Frozen, they are never walked. The price: a reference cycle
    that becomes garbage during the load stays (the load makes none); one
    collection before it clears those made earlier (30 ms).
    """
    was_enabled = gc.isenabled()
    gc.collect()  # garbage found now is not frozen with the rest
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
