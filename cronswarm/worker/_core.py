"""What the parts of the worker share: a run in progress, the worker's state,
and the checks that keep a fenced worker from claiming or running.

The worker is built in layers, each a class in a module of its own that uses
only the layers below it:

* ``_core.WorkerCore``: shared state, self-fencing, task spawning;
* ``_attempt.Attempts``: one attempt of a run, in a slot, and its records;
* ``_runner.Runner``: a run's attempts and retries, ``replace``, releasing keys;
* ``_claimed.ClaimedTicks``: what a claim's outcome starts or records, and
  claims whose outcome was lost with etcd's reply;
* ``_scheduler.Scheduler``: timetable wake-ups, fencing tokens, hand-off, plans;
* ``_requests.Requests``: kill, run-now and retry requests from etcd;
* ``_worker.Worker``: the life cycle and the job table (it builds the state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..common import LEASE_LOST, ClusterClock, Job, Keyring, Keyspace, Settings, Trigger
from ..coord import CoordStore, LeaseKeeper, PrefixMirror
from ._claim import lease_of
from ._claim_batch import ClaimBatcher
from ._clock_sync import ClockSync
from ._executor import Executor, KillSwitch
from ._fence import LeaseFence
from ._live import LiveOutputServer, OutputFeeds
from ._output import BoundedOutput
from ._registry import WorkerInfo
from ._release import ReleaseBatcher
from ._retry import RetryBoard
from ._sink import RunSink
from ._slots import Slots
from ._stats import FlushStats, RunStats
from ._timetable import Timetable

log = logging.getLogger(__name__)


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
    # The instant its next attempt may start at, when the attempt is made
    # ready before it (claimed ahead of its tick); taken by that attempt.
    gate_at: int | None = None

    def __post_init__(self) -> None:
        if self.info and not self.lease:
            self.lease = lease_of(self.info)


class WorkerCore:
    """The worker's state (built by ``Worker.__init__``) and what every layer uses."""

    settings: Settings
    store: CoordStore
    log_sink: RunSink  # the writer itself (its own counters, if any)
    run_stats: RunStats  # what this worker recorded, for its metrics
    flush_stats: FlushStats  # the writer's bulk writes, if it reports them
    sink: RunSink  # the writer, counting what this worker records
    id: str
    keys: Keyspace
    fence: LeaseFence
    lease: LeaseKeeper
    clock_sync: ClockSync
    clock: ClusterClock  # the cluster's time: this machine's clock less its offset
    labels: dict[str, str]
    keyring: Keyring | None  # opens the jobs' secrets when a run starts
    executors: dict[str, Executor]
    timetable: Timetable  # enabled jobs this worker may run
    job_defs: dict[str, Job]  # every job in etcd (run-now needs paused ones)
    runs: dict[str, LiveRun]  # by run id
    _fenced_runs: set[str]  # runs stopped by the fence: nothing is claimed until they end
    jobs: PrefixMirror
    last: PrefixMirror
    workers: PrefixMirror
    killers: PrefixMirror
    once: PrefixMirror
    info: WorkerInfo
    ready: asyncio.Event
    draining: bool
    _drain: asyncio.Event
    counters: dict[str, int]
    _tasks: set[asyncio.Task[Any]]
    _runs_idle: asyncio.Event
    slots: Slots
    feeds: OutputFeeds
    live_server: LiveOutputServer
    releases: ReleaseBatcher
    claims: ClaimBatcher  # sends the claims of one loop turn together
    retries: RetryBoard

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
        return self.fence.check() and lease_of(info) == self.lease.lease_id

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Start a plan, run, request or record task, tracked in ``_tasks``.

        Not in ``Worker.run``'s task group, on purpose: there, one such task
        failing would cancel the whole worker (here it fails alone, and a
        plan's ``finally`` still reschedules its job); and ``_shutdown`` ends
        them in an order of its own (plans, retry claims, runs within the
        grace, then the rest) before the group's background tasks stop.
        """
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _until(self, instant: int) -> None:
        """Return at ``instant`` by the cluster's clock (at once if it passed)."""
        for _ in range(3):  # the loop's timers may wake a millisecond early
            now = self.clock.now_ms()
            if now >= instant:
                return
            await asyncio.sleep((instant - now) / 1000)  # a tick's own time
