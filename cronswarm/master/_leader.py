"""What the elected master does, and only it: cluster duties that must happen once.

* lost runs: ``LostRunReaper`` marks the runs of dead workers ``lost``, and
  asks the workers for their next attempt when the job's policy allows it
  (``_lost_retry``);
* alerts: ``AlertMonitor`` follows finished runs, checks dead-man jobs and
  delivers alerts;
* unclaimed run-now requests: ``UnclaimedRequests`` records each request that
  expired without a worker as a ``skipped`` run;
* housekeeping: fencing tokens (``/last/<job>``) left by jobs that no longer
  exist are removed.

Each unit of work runs inside ``duty(name)``, which counts it and records it
in the ``leader_terms`` collection under the term (master, term number, first
start, last end, count per duty): the history of who led when and what it did,
and the evidence that two terms never act at once. Housekeeping writes to
etcd are fenced by the term (``Term.fence()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from ..alerts import AlertMonitor, AlertStats, AlertStore, MonitorConfig
from ..common import (
    Clock,
    Keyspace,
    RunRecord,
    ServiceUnavailable,
    Settings,
    check_name,
    from_ms,
    reraise_cancellation,
    to_ms,
)
from ..coord import Compare, CoordStore, Delete, Term
from ..logstore import LogStore, LogStoreUnavailable
from ._lost_retry import request_retry
from ._reaper import LostRunReaper
from ._unclaimed import UnclaimedRequests

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY = 10  # lease TTLs


def election_ttl(lease_ttl: int) -> int:
    """The leader's lease: 70 % of ``CRONSWARM_LEASE_TTL``, at least 2 s.

    etcd expires a lease up to half a second after its TTL (it checks twice a
    second); with this TTL a dead leader is replaced within
    ``CRONSWARM_LEASE_TTL`` all the same (for any TTL of 3 s or more).
    """
    return max(2, int(lease_ttl * 0.7))


class TermLog:
    """``leader_terms``: one document per term, updated by each duty it runs."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.terms = db["leader_terms"]

    async def start(self, term: Term, now_ms: int) -> None:
        await self.terms.update_one(
            {"_id": term.number},
            {"$setOnInsert": {"master": term.candidate, "won": from_ms(now_ms), "duties": {}}},
            upsert=True)

    async def record(self, term: Term, duty: str, started_ms: int, ended_ms: int) -> None:
        await self.terms.update_one(
            {"_id": term.number},
            {"$min": {"first_duty": from_ms(started_ms)},
             "$max": {"last_duty": from_ms(ended_ms)},
             "$inc": {f"duties.{duty}": 1},
             "$setOnInsert": {"master": term.candidate}},
            upsert=True)

    async def end(self, term: Term, now_ms: int) -> None:
        await self.terms.update_one({"_id": term.number}, {"$set": {"ended": from_ms(now_ms)}})

    async def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        try:
            docs = await self.terms.find({}).sort("_id", DESCENDING).limit(limit).to_list(None)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return [term_view(d) for d in docs]


def term_view(doc: dict[str, Any]) -> dict[str, Any]:
    def ms(key: str) -> int | None:
        value = doc.get(key)
        return None if value is None else to_ms(value)

    return {"term": doc["_id"], "master": doc.get("master"), "won": ms("won"),
            "first_duty": ms("first_duty"), "last_duty": ms("last_duty"),
            "ended": ms("ended"), "duties": dict(doc.get("duties") or {})}


class LeaderDuties:
    """Runs the duties for as long as a term lasts (``Election.run(duties.lead)``)."""

    def __init__(self, settings: Settings, store: CoordStore, logs: LogStore,
                 alerts: AlertStore, terms: TermLog, keys: Keyspace, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.logs = logs
        self.alerts = alerts
        self.terms = terms
        self.keys = keys
        self.clock = clock
        self.term: Term | None = None
        self.monitor: AlertMonitor | None = None
        self.reaper: LostRunReaper | None = None
        self.unclaimed: UnclaimedRequests | None = None
        self.duty_runs: Counter[str] = Counter()
        self.duty_errors: Counter[str] = Counter()
        self.runs_lost = 0  # over every term of this process
        self.orphans_removed = 0
        self.retries_requested = 0  # of lost runs
        self.alert_stats = AlertStats()
        self._duty_done = asyncio.Event()
        self._units = 0  # duty units in flight
        self._idle = asyncio.Event()
        self._idle.set()
        self._quiescing = False
        self.config = MonitorConfig(
            cluster=settings.cluster_name, silence=settings.alert_silence,
            poll_interval=settings.alert_poll_interval, lookback=settings.alert_lookback,
            dead_man_interval=settings.dead_man_interval, attempts=settings.alert_attempts,
            retry_delay=settings.alert_retry_delay, timeout=settings.alert_timeout)

    @contextlib.asynccontextmanager
    async def duty(self, name: str) -> AsyncIterator[None]:
        """One unit of a duty: counted, recorded under the term, failures logged.

        Once ``quiesce`` has begun no unit starts (it waits to be cancelled),
        so a shutdown cancels the duties between units, never inside one.
        """
        if self._quiescing:
            await asyncio.Event().wait()
        self._units += 1
        self._idle.clear()
        try:
            async with self._recorded(name):
                yield
        finally:
            self._units -= 1
            if not self._units:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def _recorded(self, name: str) -> AsyncIterator[None]:
        term = self.term
        started = self.clock.now_ms()
        try:
            yield
        except ServiceUnavailable as exc:
            reraise_cancellation()
            self.duty_errors[name] += 1
            log.warning("leader duty %s failed: %s", name, exc)
            return
        reraise_cancellation()
        if term is not None:
            try:
                await self.terms.record(term, name, started, self.clock.now_ms())
            except PyMongoError as exc:
                log.warning("cannot record duty %s of term %d: %s", name, term.number, exc)
        self.duty_runs[name] += 1
        self._duty_done.set()
        self._duty_done = asyncio.Event()
        reraise_cancellation()

    async def quiesce(self, timeout: float) -> None:
        """Let the units in flight finish (at most ``timeout`` seconds) and start no
        more: MongoDB operations cancelled mid-flight can leave sockets open."""
        self._quiescing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()

    async def wait_duty(self, name: str, count: int = 1) -> None:
        """Return once ``count`` more units of duty ``name`` have completed here."""
        target = self.duty_runs[name] + count
        while self.duty_runs[name] < target:
            await self._duty_done.wait()

    async def lead(self, term: Term) -> None:
        self.term = term
        try:
            async with self.duty("term-start"):
                with contextlib.suppress(PyMongoError):
                    await self.terms.start(term, self.clock.now_ms())
            reaper = LostRunReaper(self.store, self.logs, self.keys, self.clock,
                                   sweep_interval=self.settings.lease_ttl * 3, duty=self.duty,
                                   on_lost=self._on_lost)
            monitor = AlertMonitor(self.store, self.alerts, self.keys, self.clock, self.config,
                                   self.alert_stats)
            unclaimed = UnclaimedRequests(self.store, self.logs, self.keys, self.clock,
                                          duty=self.duty)
            self.reaper, self.monitor, self.unclaimed = reaper, monitor, unclaimed
            async with asyncio.TaskGroup() as tg:
                tg.create_task(reaper.run(), name="lost-run-reaper")
                tg.create_task(unclaimed.run(), name="unclaimed-requests")
                tg.create_task(monitor.run(self.duty), name="alert-monitor")
                tg.create_task(self._housekeeping(term), name="housekeeping")
        finally:
            self.term = None
            with contextlib.suppress(PyMongoError, TimeoutError):
                async with asyncio.timeout(2):
                    await self.terms.end(term, self.clock.now_ms())

    async def _on_lost(self, record: RunRecord) -> None:
        self.runs_lost += 1
        term = self.term
        if term is not None and await request_retry(
                self.store, self.keys, term, record, self.clock,
                handoff_delay=self.settings.handoff_delay):
            self.retries_requested += 1

    async def _housekeeping(self, term: Term) -> None:
        while True:
            async with self.duty("housekeeping"):
                self.orphans_removed += await self.remove_orphan_tokens(term)
            await asyncio.sleep(self.settings.lease_ttl * HOUSEKEEPING_EVERY)  # duty period

    async def remove_orphan_tokens(self, term: Term) -> int:
        """Delete ``/last/<job>`` of jobs that do not exist (a job created meanwhile
        writes its token in the same transaction as itself: the compare keeps it)."""
        tokens, _ = await self.store.get_prefix(self.keys.last_dir)
        jobs, _ = await self.store.get_prefix(self.keys.jobs)
        names = {kv.key[len(self.keys.jobs):] for kv in jobs}
        removed = 0
        for kv in tokens:
            name = kv.key[len(self.keys.last_dir):]
            if name in names or check_name(name) is not None:
                continue
            result = await self.store.txn(
                [term.fence(), Compare.absent(self.keys.job(name)),
                 Compare.mod_revision(kv.key, "==", kv.mod_revision)],
                [Delete(kv.key)])
            if result.succeeded:
                removed += 1
                log.info("removed the fencing token of deleted job %s", name)
        return removed

