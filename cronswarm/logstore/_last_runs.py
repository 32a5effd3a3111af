"""The ``run_last`` and ``run_trend`` rollups of the run history, exact
whatever the order or number of replays.

``run_last`` holds, per job, a summary of its newest run document (without
output): the newest by (tick, attempt, seq), kept as one comparable string
``order``. Every write is a
conditional "max" (``order`` below the new one), so replays and races leave
the newest and a stale write is a no-op (a duplicate key on the upsert). The jobs page asks
for the last run of every job: one read of this small collection instead of
one index probe per job.

``run_trend`` keeps, per job, a few fields of its newest ``RECENT_KEPT``
run documents (``recent``, oldest first), for the dashboard's trend charts:
one read of a page of jobs instead of one index range per job. It is its own
collection so that reading every job's last run stays a read of small
documents. A write first pulls the older (or same) states of its documents,
then pushes them (``$push`` with ``$sort`` and ``$slice``); a stale state that
arrives late is pushed too and discarded by the reader, which keeps the
highest ``seq`` of each document. An entry is ``complete`` once it was
filled from the runs themselves (``fill_recent``, the first time a job's
trend is read); until then it may lack runs written before it existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from pymongo import DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from ..common import backoff_delay
from ._abc import LogStoreUnavailable
from ._codes import DUPLICATE_KEY
from ._rollup_entries import RECENT_KEPT, Doc, Held, newest_states, recent_entry, run_order

log = logging.getLogger(__name__)

_FALLBACK_CONCURRENCY = 16
_READ_ALL_ABOVE = 64  # asked for more jobs than this: read the collection whole
_NOT_SUMMARISED = ("output", "output_tail", "extra")
_RECENT_ORDER = {"tick": 1, "attempt": 1, "seq": 1}
ROLLUP_EVERY_S = 30.0  # a job's rollups are written at most this often, status changes aside
RUNNING = "running"


def rewrite_delay(failures: int, every_s: float) -> float:
    """Seconds before writing held rollups again after ``failures`` failed
    writes in a row: 1, 2, 4, ... at most ``every_s``."""
    return backoff_delay(failures, first=1.0, cap=every_s, jitter=0)


class LastRuns:
    """The ``run_last`` and ``run_trend`` collections: one document per job each.

    Writes are held back per job: a job whose rollups were written less than
    ``every_s`` ago gets its next ones when that time is up (one write for
    the runs of a job that fires every second, instead of one per run), unless
    readers would see a change (the last write showed a run still running, or
    the newest run's status differs). Anything held is written by a timer, before
    this store reads the rollups, and at ``close``. A process killed with
    writes held back leaves its jobs' rollups up to ``every_s`` behind until
    their next runs; the runs themselves are written in full.
    """

    def __init__(self, runs: AsyncCollection[Doc], last: AsyncCollection[Doc],
                 trend: AsyncCollection[Doc], *, default_retention_days: int,
                 every_s: float = ROLLUP_EVERY_S) -> None:
        self.runs = runs
        self.last = last
        self.trend = trend
        self.keep = dt.timedelta(days=default_retention_days)
        self.every_s = every_s
        self._held: dict[str, Held] = {}
        self._shown: dict[str, tuple[float, str | None]] = {}  # job -> (written at, status)
        self._pruned_at = 0.0
        self._timer: asyncio.Task[None] | None = None

    async def ensure_indexes(self) -> None:
        await self.last.create_index("expire_at", expireAfterSeconds=0, name="retention")
        await self.trend.create_index("expire_at", expireAfterSeconds=0, name="retention")

    async def note(self, docs: Iterable[Mapping[str, Any]],
                   replaced: Collection[Any] = ()) -> None:
        """Make each job's entry the newest of what it holds and ``docs``, and
        add ``docs`` to the jobs' recent runs (``run_trend``), now or within
        ``every_s`` (see ``Held``). ``replaced``: the ids of ``docs`` that had
        an earlier state written (its trend entry is pulled)."""
        now = asyncio.get_running_loop().time()
        per_job: dict[str, list[Mapping[str, Any]]] = {}
        for doc in docs:
            per_job.setdefault(doc["job"], []).append(doc)
        due: list[Held] = []
        for job, job_docs in per_job.items():
            held = self._held.pop(job, None) or Held(job)
            held.add(job_docs, replaced, self.keep)
            shown = self._shown.get(job)
            if (shown is None or now - shown[0] >= self.every_s
                    or shown[1] == RUNNING or held.status != shown[1]):
                due.append(held)  # new to readers: shown at once
            else:
                held.due = shown[0] + self.every_s
                self._held[job] = held
        due += self._take_due(now)
        await self._write(due, now)
        self._prune(now)
        self._arm()

    def _take_due(self, now: float) -> list[Held]:
        ready = [h for h in self._held.values() if h.due <= now]
        for held in ready:
            del self._held[held.job]
        return ready

    async def flush(self) -> None:
        """Write everything held back (before reading the rollups, and at close)."""
        held, self._held = list(self._held.values()), {}
        await self._write(held, asyncio.get_running_loop().time())

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        try:
            await self.flush()
        except LogStoreUnavailable as exc:
            log.warning("closing with the rollups of %d jobs unwritten (each is written "
                        "again with its job's next run): %s", len(self._held), exc)

    def _arm(self) -> None:
        """Make sure a task writes what is held back when it is due."""
        if self._held and (self._timer is None or self._timer.done()):
            self._timer = asyncio.create_task(self._write_when_due(), name="rollups")

    async def _write_when_due(self) -> None:
        failures = 0
        while self._held:
            loop = asyncio.get_running_loop()
            wake = min(h.due for h in self._held.values())
            if failures:
                wake = max(wake, loop.time() + rewrite_delay(failures, self.every_s))
            await asyncio.sleep(max(0.0, wake - loop.time()))
            now = loop.time()
            try:
                await self._write(self._take_due(now), now)
                failures = 0
            except LogStoreUnavailable as exc:
                failures += 1
                log.warning("cannot write the run rollups (retrying): %s", exc)

    def _prune(self, now: float) -> None:
        """Forget jobs shown long ago (they are written at once next time)."""
        if now - self._pruned_at < self.every_s:
            return
        self._pruned_at = now
        self._shown = {job: shown for job, shown in self._shown.items()
                       if now - shown[0] < self.every_s or shown[1] == RUNNING}

    async def _write(self, held: Sequence[Held], now: float) -> None:
        if not held:
            return
        try:
            await self._write_last([h.newest for h in held if h.newest is not None])
            await self._write_recent(held)
        except LogStoreUnavailable:
            for h in held:  # kept, merged with anything held since, for the next write
                again = self._held.get(h.job)
                if again is not None:
                    h.merge(again)
                h.due = now
                self._held[h.job] = h
            self._arm()
            raise
        for h in held:
            self._shown[h.job] = (now, h.status)

    async def _write_last(self, newest: Sequence[Mapping[str, Any]]) -> None:
        ops = []
        for doc in newest:
            order = run_order(doc)
            summary = {k: v for k, v in doc.items() if k not in _NOT_SUMMARISED}
            ops.append(UpdateOne(
                {"_id": doc["job"], "order": {"$lt": order}},
                {"$set": {"order": order, "run": summary,
                          "expire_at": doc.get("expire_at") or doc["tick"] + self.keep}},
                upsert=True))
        if not ops:
            return
        try:
            await self.last.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            # A duplicate key: the stored entry is as new or newer (a no-op).
            others = [e for e in exc.details.get("writeErrors", [])
                      if e.get("code") != DUPLICATE_KEY]
            if others or exc.details.get("writeConcernErrors"):
                raise LogStoreUnavailable(f"cannot update run_last: {others[:1]}") from exc
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def _write_recent(self, held: Sequence[Held]) -> None:
        """Pull the older states of the replaced documents from their jobs'
        recent runs, then push the new states."""
        pulls = [UpdateOne({"_id": h.job}, {"$pull": {"recent": {
            "_id": entry["_id"], "seq": {"$lte": entry["seq"]}}}})
            for h in held for entry in h.recent.values() if entry["_id"] in h.pull]
        pushes = [UpdateOne({"_id": h.job}, {
            "$push": {"recent": {"$each": list(h.recent.values()), "$sort": _RECENT_ORDER,
                                 "$slice": -RECENT_KEPT}},
            "$max": {"expire_at": h.expire_at},
            "$setOnInsert": {"complete": False}}, upsert=True)
            for h in held if h.recent]
        if not pulls and not pushes:
            return
        try:
            await self.trend.bulk_write(pulls + pushes, ordered=True)
        except PyMongoError as exc:
            raise LogStoreUnavailable(f"cannot update run_trend: {exc}") from exc

    async def _reading(self, jobs: Sequence[str]) -> tuple[list[str], Doc]:
        """Write what this process holds back, then: ``jobs`` once each, and
        the filter that reads their documents."""
        if self._held:
            await self.flush()
        wanted = list(dict.fromkeys(jobs))
        # A long $in costs some servers a comparison per value and document;
        # the collection holds one small document per job, so read it whole.
        return wanted, {} if len(wanted) > _READ_ALL_ABOVE else {"_id": {"$in": wanted}}

    async def recent(self, jobs: Sequence[str]) -> dict[str, list[Doc] | None]:
        """The recent run documents (a few fields) of each of ``jobs``, newest
        first; None for a job whose entry is not known to be complete."""
        wanted, flt = await self._reading(jobs)
        found: dict[str, list[Doc] | None] = dict.fromkeys(wanted)
        try:
            async for d in self.trend.find(flt, {"recent": 1, "complete": 1}):
                if d["_id"] in found and d.get("complete"):
                    found[d["_id"]] = newest_states(d.get("recent") or [])
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return found

    async def fill_recent(self, job: str, newest_first: Sequence[Mapping[str, Any]]) -> None:
        """Complete a job's recent runs from the runs themselves (read by the caller).

        Merged like a write (pull the same or older states, push): a run
        written meanwhile stays."""
        if not newest_first:
            return
        entries = [recent_entry(d) for d in newest_first[:RECENT_KEPT]]
        until = max(d.get("expire_at") or d["tick"] + self.keep for d in newest_first)
        ops = [UpdateOne({"_id": job}, {"$pull": {"recent": {
            "_id": e["_id"], "seq": {"$lte": e["seq"]}}}}) for e in entries]
        ops.append(UpdateOne({"_id": job, "complete": {"$ne": True}}, {
            "$push": {"recent": {"$each": entries, "$sort": _RECENT_ORDER,
                                 "$slice": -RECENT_KEPT}},
            "$max": {"expire_at": until},
            "$set": {"complete": True}}, upsert=True))
        try:
            await self.trend.bulk_write(ops, ordered=True)
        except BulkWriteError as exc:
            # A duplicate key: complete already (filled by another reader meanwhile).
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise LogStoreUnavailable(f"cannot fill run_trend: {exc}") from exc
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def get(self, jobs: Sequence[str]) -> dict[str, Doc]:
        """A summary (no output) of the newest run of each of ``jobs`` that has one."""
        wanted, flt = await self._reading(jobs)
        chosen = set(wanted)
        try:
            found = {d["_id"]: d["run"] async for d in self.last.find(flt, {"run": 1})
                     if d["_id"] in chosen}
            missing = [job for job in wanted if job not in found]
            if missing:
                # History written before run_last existed: ask the runs
                # themselves, and remember the answers.
                backfill = await self._newest_runs(missing)
                await self.note(backfill)
                found.update({d["job"]: {k: v for k, v in d.items() if k not in _NOT_SUMMARISED}
                              for d in backfill})
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return found

    async def statuses(self, jobs: Sequence[str]) -> dict[str, str]:
        """The status of the newest run of each of ``jobs`` that has one (a
        projection of ``get``: a fraction of its cost for every job)."""
        wanted, flt = await self._reading(jobs)
        chosen = set(wanted)
        try:
            found = {d["_id"]: d["run"]["status"]
                     async for d in self.last.find(flt, {"run.status": 1})
                     if d["_id"] in chosen}
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        missing = [job for job in wanted if job not in found]
        if missing:
            found.update({job: doc["status"] for job, doc in (await self.get(missing)).items()})
        return found

    async def _newest_runs(self, jobs: Sequence[str]) -> list[Doc]:
        limiter = asyncio.Semaphore(_FALLBACK_CONCURRENCY)

        async def newest(job: str) -> Doc | None:
            async with limiter:
                return await self.runs.find_one(
                    {"job": job}, sort=[("tick", DESCENDING), ("attempt", DESCENDING)])

        docs = await asyncio.gather(*(newest(job) for job in jobs))
        return [d for d in docs if d is not None]
