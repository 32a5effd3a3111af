"""The leader's alert duty: follow finished runs, decide, deliver.

Every ``poll_interval`` the monitor reads the problems (runs ended
``failed``, ``timeout`` or ``lost``) of the last ``lookback`` seconds from the
run history, skipping those it has already handled, and feeds each to the
engine; then, for each job with an open episode, its newest success. Every
``dead_man_interval`` it checks the jobs that have ``expect_success_within``.
Decisions are pure (``_engine``); the state they change is saved per job, so
a new leader goes on where the last one stopped.

A run recorded later than ``lookback`` after it ended (replayed from a
worker's spool after a long MongoDB outage) is not alerted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ..common import (
    DEFAULT_ALERT_RULE,
    AlertRule,
    Clock,
    Job,
    Keyspace,
    RunRecord,
    ValidationError,
    registered_clock,
)
from ..coord import CoordStore, KeyValue, PrefixMirror
from ._channels import Channel
from ._clocks import clock_notice
from ._delivery import AlertStats, Dispatcher, Duty, resolve_channels
from ._engine import JobAlertState, Notice, check_dead_man, on_problem, on_success
from ._senders import Sender
from ._store import AlertStore

log = logging.getLogger(__name__)

RESUME_MS = 3600_000  # deliveries left pending by an earlier term are resumed for an hour


@dataclass(frozen=True, slots=True)
class Watched:
    """What the monitor needs of a job."""

    rule: AlertRule
    expect_s: float | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    cluster: str
    silence: float  # seconds, when the job's rule has none
    poll_interval: float
    lookback: float
    dead_man_interval: float
    attempts: int
    retry_delay: float
    timeout: float


class ChannelBook:
    """The channels as the leader sees them (a mirror of ``/alerts/channels/``)."""

    def __init__(self, store: CoordStore, keys: Keyspace) -> None:
        self.mirror = PrefixMirror(store, keys.alert_channels)
        self._cache: dict[str, tuple[int, Channel]] = {}

    def get(self, name: str) -> Channel | None:
        kv = self.mirror.items.get(name)
        if kv is None:
            return None
        cached = self._cache.get(name)
        if cached is not None and cached[0] == kv.mod_revision:
            return cached[1]
        try:
            channel = Channel.from_stored(kv.value)
        except ValidationError as exc:
            log.error("ignoring invalid alert channel %s: %s", name, exc)
            return None
        self._cache[name] = (kv.mod_revision, channel)
        return channel

    def all(self) -> list[Channel]:
        return [c for name in sorted(self.mirror.items) if (c := self.get(name)) is not None]


class AlertMonitor:
    def __init__(self, store: CoordStore, alerts: AlertStore, keys: Keyspace, clock: Clock,
                 config: MonitorConfig, stats: AlertStats | None = None) -> None:
        self.alerts = alerts
        self.clock = clock
        self.config = config
        self.jobs: dict[str, Watched] = {}
        self.job_mirror = PrefixMirror(store, keys.jobs, on_change=self._on_job,
                                       keep_values=False)
        self.channels = ChannelBook(store, keys)
        self.workers = PrefixMirror(store, keys.workers)  # their clock reports
        self._clock_events: set[str] = set()  # clock alerts decided in this term
        self.sender = Sender(cluster=config.cluster, timeout=config.timeout)
        self.stats = stats or AlertStats()
        self.dispatcher = Dispatcher(alerts, self.sender, self.channels.get, clock,
                                     attempts=config.attempts, base_delay=config.retry_delay,
                                     stats=self.stats)
        self.states: dict[str, JobAlertState] = {}
        self.polls = 0
        self._seen: dict[str, int] = {}  # record id -> ended, within the lookback

    def _on_job(self, name: str, kv: KeyValue | None, _old: KeyValue | None) -> None:
        if kv is None:
            self.jobs.pop(name, None)
            return
        try:
            job = Job.from_json(kv.value)
        except ValidationError:
            self.jobs.pop(name, None)
            return
        self.jobs[name] = Watched(job.alerts or DEFAULT_ALERT_RULE, job.expect_success_within,
                                  job.enabled)

    def rule_of(self, job: str) -> AlertRule:
        watched = self.jobs.get(job)
        return watched.rule if watched is not None else DEFAULT_ALERT_RULE

    def silence_of(self, rule: AlertRule) -> float:
        return rule.silence if rule.silence is not None else self.config.silence

    async def run(self, duty: Duty) -> None:
        """Monitor until cancelled (at the end of the leader's term)."""
        self.dispatcher.duty = duty
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.job_mirror.run(), name="alert-jobs-mirror")
                tg.create_task(self.channels.mirror.run(), name="alert-channels-mirror")
                tg.create_task(self.dispatcher.run(), name="alert-dispatcher")
                tg.create_task(self.workers.run(), name="alert-workers-mirror")
                await self.job_mirror.ready.wait()
                await self.channels.mirror.ready.wait()
                tg.create_task(self._loop(duty), name="alert-monitor")
        finally:
            await self.sender.close()

    async def _start(self) -> None:
        self.states = await self.alerts.load_states()
        resumed = await self.dispatcher.resume(self.clock.now_ms() - RESUME_MS)
        if resumed:
            log.info("resuming %d alert deliveries left pending", resumed)

    async def _loop(self, duty: Duty) -> None:
        started = False
        loop = asyncio.get_running_loop()
        next_dead_man = loop.time()
        while True:
            async with duty("alerts"):
                if not started:
                    await self._start()
                    started = True
                await self.poll()
            if started and loop.time() >= next_dead_man:
                async with duty("dead-man"):
                    await self.check_dead_men()
                next_dead_man = loop.time() + self.config.dead_man_interval
            self.polls += 1
            await asyncio.sleep(self.config.poll_interval)  # the duty's period

    # -- one poll ---------------------------------------------------------------

    async def poll(self) -> None:
        since = self.clock.now_ms() - int(self.config.lookback * 1000)
        for record_id in [r for r, ended in self._seen.items() if ended < since]:
            del self._seen[record_id]
        seen = set(self._seen)
        for record in await self.alerts.problems_since(since, seen):
            await self._problem(record)
            self._seen[record.record_id] = record.ended or since
        for job, state in list(self.states.items()):
            if state.failing:
                success = await self.alerts.newest_success(job)
                if success is not None:
                    await self._success(success)
        await self.check_clocks()

    async def check_clocks(self) -> None:
        """Alert once per episode on each worker whose clock is beyond the maximum offset."""
        current: set[str] = set()
        now = self.clock.now_ms()
        for worker_id, kv in list(self.workers.items.items()):
            report = registered_clock(kv.value)
            notice = clock_notice(worker_id, report, now) if report is not None else None
            if notice is None:
                continue
            current.add(notice.event_id)
            if notice.event_id in self._clock_events:
                continue
            if await self.alerts.claim_event(notice.event_id, notice.at):
                await self._send(notice, DEFAULT_ALERT_RULE)
            self._clock_events.add(notice.event_id)
        self._clock_events &= current  # episodes that ended need no memory

    async def _problem(self, run: RunRecord) -> None:
        if not await self.alerts.claim_event(f"{run.status.value}:{run.record_id}",
                                             run.ended or self.clock.now_ms()):
            return  # decided already (by an earlier term)
        rule = self.rule_of(run.job)
        state = self.states.get(run.job) or JobAlertState(run.job)
        new, notice = on_problem(state, run, rule, self.silence_of(rule))
        if notice is None and new.suppressed > state.suppressed:
            self.stats.suppressed += 1
        await self._apply(state, new, notice, rule)

    async def _success(self, run: RunRecord) -> None:
        rule = self.rule_of(run.job)
        state = self.states.get(run.job) or JobAlertState(run.job)
        new, notice = on_success(state, run, rule)
        await self._apply(state, new, notice, rule)

    async def _apply(self, state: JobAlertState, new: JobAlertState, notice: Notice | None,
                     rule: AlertRule) -> None:
        if new != state:
            await self.alerts.save_state(new)
            self.states[new.job] = new
        if notice is not None:
            await self._send(notice, rule)

    async def _send(self, notice: Notice, rule: AlertRule) -> None:
        self.stats.notices[notice.kind.value] += 1
        names = resolve_channels(rule, self.channels.all())
        if not names:
            log.info("alert %s has no channel to go to", notice.event_id)
            return
        log.info("alert %s: %s (to %s)", notice.event_id, notice.title, ", ".join(names))
        await self.dispatcher.dispatch(notice, names)

    # -- dead-man ---------------------------------------------------------------

    async def check_dead_men(self) -> None:
        now = self.clock.now_ms()
        for job, watched in list(self.jobs.items()):
            state = self.states.get(job)
            if watched.expect_s is None and (state is None or state.watch_since is None):
                continue
            state = state or JobAlertState(job)
            if watched.expect_s is not None and watched.enabled:
                success = await self.alerts.newest_success(job)
                if success is not None:
                    await self._success(success)
                    state = self.states.get(job, state)
            new, notice = check_dead_man(state, expect_s=watched.expect_s,
                                         enabled=watched.enabled, now=now, rule=watched.rule,
                                         silence_s=self.silence_of(watched.rule))
            await self._apply(state, new, notice, watched.rule)
        gone = [job for job in self.states if job not in self.jobs]
        if gone:
            await self.alerts.drop_states(gone)
            for job in gone:
                del self.states[job]

