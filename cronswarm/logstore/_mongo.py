"""The log store on MongoDB (any server speaking its wire protocol, >= 6.0).

Run documents and their ranks: _run_docs.py. Collections: ``runs`` (one
document per attempt), ``audit``, and rollups kept by ``write_runs``:
``run_last`` (each job's newest run) and ``run_trend`` (each job's newest
runs, a few fields), _last_runs.py, and ``run_hours`` (counts per status per
hour), _hourly_counts.py. Pages of history: _history.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ExecutionTimeout, OperationFailure, PyMongoError

from ..common import Clock, RunRecord, RunStatus, SystemClock, from_ms
from ._abc import AuditEntry, LogStoreRejected, LogStoreUnavailable, RunPage, RunQuery
from ._codes import DUPLICATE_KEY, INDEX_NOT_FOUND
from ._connect import check_access, open_client
from ._history import SCAN_AT_ONCE, HistoryPager, encode_cursor
from ._hourly_counts import HourlyCounts
from ._last_runs import LastRuns
from ._rollup_entries import RECENT_KEPT
from ._run_docs import (
    coalesce_records,
    doc_to_record,
    ms_or_none,
    record_to_doc,
    run_page,
    update_fields,
)
from ._windows import FUTURE_MARGIN_MS, MAX_PROBES, windows

DEFAULT_DATABASE = "cronswarm"
_MAX_PAGE = 1000
_NO_OUTPUT = {"output": 0, "output_tail": 0, "extra": 0}

# Listing indexes end in _id: history is sorted by (tick, _id) newest first, so
# a page is a walk of one index range that stops after ``limit`` entries, never
# a sort of every matching document. They are ascending: MongoDB walks them
# backwards for newest-first at the same cost, and the development server
# (SecantusDB 0.7) gets range bounds wrong on compound indexes with a
# descending key, or with an inclusive upper bound ($lte) before a trailing
# key; so queries here bound tick with $gte/$lt only (checked by the contract
# tests at the boundaries).
_RUN_INDEXES: list[tuple[str, list[tuple[str, int]], dict[str, Any]]] = [
    ("job_tick_attempt_unique",
     [("job", ASCENDING), ("tick", ASCENDING), ("attempt", ASCENDING)], {"unique": True}),
    ("job_tick_id", [("job", ASCENDING), ("tick", ASCENDING), ("_id", ASCENDING)], {}),
    ("status_tick_id", [("status", ASCENDING), ("tick", ASCENDING), ("_id", ASCENDING)], {}),
    ("worker_tick_id", [("worker", ASCENDING), ("tick", ASCENDING), ("_id", ASCENDING)], {}),
    ("tick_id", [("tick", ASCENDING), ("_id", ASCENDING)], {}),
    ("retention", [("expire_at", ASCENDING)], {"expireAfterSeconds": 0}),
]
_OBSOLETE_INDEXES = ("job_tick", "status_tick", "worker_tick", "tick")  # before _id was added
_AUDIT_INDEXES: list[tuple[str, list[tuple[str, int]]]] = [
    ("target_at", [("target", ASCENDING), ("at", DESCENDING)]),
    ("actor_at", [("actor", ASCENDING), ("at", DESCENDING)]),
    ("at", [("at", DESCENDING)]),
]

Doc = dict[str, Any]


class MongoLogStore:
    """LogStore on MongoDB. Give it a URI (it owns the client) or a client."""

    def __init__(
        self,
        uri_or_client: str | AsyncMongoClient[Doc],
        *,
        database: str | None = None,
        default_retention_days: int = 30,
        timeout_ms: int = 5000,
        query_time_ms: int = 10000,
        text_budget_ms: float | None = 150,
        text_scan_at_once: int = SCAN_AT_ONCE,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(uri_or_client, str):
            self.client: AsyncMongoClient[Doc] = open_client(uri_or_client, timeout_ms)
            self._owns_client = True
            self._uri: str | None = uri_or_client
        else:
            self.client = uri_or_client
            self._owns_client = False
            self._uri = None
        self._timeout_ms = timeout_ms
        # The database given wins, then the one named in the URI.
        self.db: AsyncDatabase[Doc] = (
            self.client[database] if database
            else self.client.get_default_database(default=DEFAULT_DATABASE))
        self.runs: AsyncCollection[Doc] = self.db["runs"]
        self.audit: AsyncCollection[Doc] = self.db["audit"]
        self.last = LastRuns(self.runs, self.db["run_last"], self.db["run_trend"],
                             default_retention_days=default_retention_days)
        self.hourly = HourlyCounts(self.runs, self.db["run_hours"],
                                   default_retention_days=default_retention_days)
        self.default_retention_days = default_retention_days
        self.query_time_ms = query_time_ms  # server-side limit of one query
        self.text_budget_ms = text_budget_ms  # time a text search reads for (_history.py)
        self.text_scan_at_once = text_scan_at_once  # runs it reads at once without it
        self.clock: Clock = clock or SystemClock()

    async def check_access(self) -> None:
        """Read one run: ServiceRefused if MongoDB refuses our user, or a TLS
        handshake fails for good, LogStoreUnavailable if it does not answer."""
        await check_access(self.runs, self._uri, self._timeout_ms)

    async def ensure_indexes(self) -> None:
        try:
            existing = await self.runs.index_information()
            for name in _OBSOLETE_INDEXES:
                if name in existing:
                    try:
                        await self.runs.drop_index(name)
                    except OperationFailure as exc:
                        if exc.code != INDEX_NOT_FOUND:  # another process dropped it first
                            raise
            for name, keys, options in _RUN_INDEXES:
                await self.runs.create_index(keys, name=name, **options)
            for name, keys in _AUDIT_INDEXES:
                await self.audit.create_index(keys, name=name)
            await self.last.ensure_indexes()
            await self.hourly.ensure_indexes()
        except PyMongoError as exc:
            raise LogStoreUnavailable(f"cannot create indexes: {exc}") from exc

    async def write_runs(self, records: Sequence[RunRecord]) -> None:
        if not records:
            return
        docs = [record_to_doc(r, default_retention_days=self.default_retention_days)
                for r in coalesce_records(records)]
        rejected: dict[str, str] = {}
        ticks = [d["tick"] for d in docs]
        # Before: a recount from now on may miss these (only hours a reader may cache).
        await self.hourly.touch(self.hourly.closed(ticks, from_ms(self.clock.now_ms())))
        # Most records are new documents (a running record, or a final one whose
        # running record was coalesced away in the same batch): insert them all,
        # then update the few that exist, only where the stored seq is lower.
        existing = await self._bulk([InsertOne(dict(d)) for d in docs], docs, rejected)
        updates = [d for d in existing if d["seq"] > 0]  # nothing is older than running
        if updates:
            await self._bulk([UpdateOne({"_id": d["_id"], "seq": {"$lt": d["seq"]}},
                                        {"$set": update_fields(d)}, upsert=True)
                              for d in updates], updates, rejected)
        replaced = {d["_id"] for d in existing}
        await self.last.note((d for d in docs if d["_id"] not in rejected), replaced)
        # After: counts taken meanwhile are stale (an hour may have closed meanwhile).
        await self.hourly.touch(self.hourly.closed(ticks, from_ms(self.clock.now_ms())))
        if rejected:
            raise LogStoreRejected(rejected)

    async def _bulk(self, ops: Sequence[InsertOne[Doc] | UpdateOne], docs: Sequence[Doc],
                    rejected: dict[str, str]) -> list[Doc]:
        """Run ``ops`` (one per doc); returns the docs that hit a duplicate key
        and adds those refused for another reason to ``rejected``."""
        try:
            await self.runs.bulk_write(list(ops), ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise LogStoreUnavailable(
                    f"write concern failed: {exc.details['writeConcernErrors'][:1]}") from exc
            duplicates = []
            for error in exc.details.get("writeErrors", []):
                doc = docs[error["index"]]
                if error.get("code") == DUPLICATE_KEY:
                    duplicates.append(doc)
                else:
                    rejected[doc["_id"]] = str(error.get("errmsg", error.get("code")))
            return duplicates
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return []

    async def get_run(self, record_id: str) -> RunRecord | None:
        try:
            doc = await self.runs.find_one({"_id": record_id})
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return None if doc is None else doc_to_record(doc)

    async def _newest(self, flt: Doc, limit: int, *, hi: int, floor: int, first: int,
                      sort: list[tuple[str, int]], projection: Doc | None = None,
                      probes: int = MAX_PROBES) -> list[Doc]:
        """Up to ``limit`` documents matching ``flt`` with floor <= tick < hi, newest
        first, read window by window (see ``_windows``)."""
        docs: list[Doc] = []
        for lo, top in windows(hi, floor, first, probes=probes):
            window = {**flt, "tick": {"$gte": from_ms(lo), "$lt": from_ms(top)}}
            need = limit - len(docs)
            docs += await self.runs.find(window, projection).sort(sort).limit(need).to_list(
                length=need)
            if len(docs) >= limit:
                break
        return docs

    async def query_runs(self, query: RunQuery) -> RunPage:
        """Newest first, a page at a time (see _history.py for the query plan)."""
        limit = max(1, min(query.limit, _MAX_PAGE))
        pager = HistoryPager(self.runs, query, now_ms=self.clock.now_ms(),
                             max_time_ms=self.query_time_ms,
                             text_budget_ms=self.text_budget_ms,
                             scan_at_once=self.text_scan_at_once)
        try:
            docs = await pager.page(limit)
        except PyMongoError as exc:
            raise self._query_error(exc) from exc
        page = run_page(docs, limit)
        if page.next_cursor is None and pager.stopped_at is not None:
            # Everything found is on this page; the search goes on below.
            return RunPage(page.runs, encode_cursor(pager.stopped_at, "", pager.next_width),
                           searched_to=pager.stopped_at)
        return page

    async def last_runs(self, jobs: Sequence[str]) -> dict[str, RunRecord]:
        return {job: doc_to_record(doc) for job, doc in (await self.last.get(jobs)).items()}

    async def last_statuses(self, jobs: Sequence[str]) -> dict[str, RunStatus]:
        return {job: RunStatus(status) for job, status in (await self.last.statuses(jobs)).items()}

    async def count_runs(self, *, since: int, until: int, job: str | None = None
                         ) -> dict[RunStatus, int]:
        out = dict.fromkeys(RunStatus, 0)
        start, end = from_ms(since), from_ms(until)
        if start >= end:
            return out
        if job is None:
            # Pre-aggregated per hour (run_hours): fast whatever the window.
            counts = await self.hourly.count(start, end, from_ms(self.clock.now_ms()))
        else:
            # One job: its range of the (job, tick, _id) index, grouped by status.
            counts = Counter()
            try:
                cursor = await self.runs.aggregate([
                    {"$match": {"job": job, "tick": {"$gte": start, "$lt": end}}},
                    {"$group": {"_id": "$status", "n": {"$sum": 1}}},
                ], maxTimeMS=self.query_time_ms)
                async for row in cursor:
                    counts[str(row["_id"])] = int(row["n"])
            except PyMongoError as exc:
                raise self._query_error(exc) from exc
        for status, n in counts.items():
            with contextlib.suppress(ValueError):
                out[RunStatus(status)] = n
        return out

    async def recent_runs(self, jobs: Mapping[str, int], per_job: int
                          ) -> dict[str, list[RunRecord]]:
        """The newest ``per_job`` runs (without output) of each of ``jobs``.

        Read from the ``run_trend`` rollup (one query for them all); a job
        whose entry is not known to be complete (its first read) is read from
        its index range, once: the answer completes its entry. ``jobs`` maps each job to how far
        back (ms) that first window looks: about the span of its last
        ``per_job`` scheduled ticks, so one query usually does."""
        limit = max(1, min(per_job, _MAX_PAGE))
        rolled = await self.last.recent(list(jobs)) if limit <= RECENT_KEPT else {}
        out = {job: [doc_to_record(d) for d in docs[:limit]]
               for job, docs in rolled.items() if docs}
        missing = {job: jobs[job] for job in jobs if rolled.get(job) is None}
        if not missing:
            return out
        hi = self.clock.now_ms() + FUTURE_MARGIN_MS
        order = [("tick", DESCENDING), ("attempt", DESCENDING)]

        async def newest(job: str, span: int) -> list[Doc]:
            return await self._newest({"job": job}, limit, hi=hi, floor=0,
                                      first=span + FUTURE_MARGIN_MS, sort=order,
                                      projection=_NO_OUTPUT)

        try:
            found = await asyncio.gather(*(newest(job, span) for job, span in missing.items()))
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        for job, docs in zip(missing, found, strict=True):
            if docs:
                out[job] = [doc_to_record(d) for d in docs]
                await self.last.fill_recent(job, docs)  # for next time (if it has an entry)
        return out

    def _query_error(self, exc: PyMongoError) -> LogStoreUnavailable:
        if isinstance(exc, ExecutionTimeout):
            return LogStoreUnavailable(
                f"the query took more than {self.query_time_ms} ms; narrow it "
                f"(a job, a status, a shorter time range)")
        return LogStoreUnavailable(str(exc))

    async def write_audit(self, entry: AuditEntry) -> None:
        doc = entry.to_dict()
        doc["at"] = from_ms(entry.at)
        try:
            await self.audit.insert_one(doc)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def query_audit(self, *, target: str | None = None, actor: str | None = None,
                          action: str | None = None, since: int | None = None,
                          until: int | None = None, limit: int = 100) -> list[AuditEntry]:
        flt: Doc = {}
        for name, value in (("target", target), ("actor", actor), ("action", action)):
            if value is not None:
                flt[name] = value
        at: Doc = {}
        if since is not None:
            at["$gte"] = from_ms(since)
        if until is not None:
            at["$lt"] = from_ms(until)
        if at:
            flt["at"] = at
        try:
            docs = await self.audit.find(flt).sort("at", DESCENDING).limit(
                max(1, min(limit, _MAX_PAGE))).max_time_ms(self.query_time_ms).to_list(None)
        except PyMongoError as exc:
            raise self._query_error(exc) from exc
        return [
            AuditEntry(at=ms_or_none(d["at"]) or 0, actor=d["actor"], action=d["action"],
                       target=d["target"], before=d.get("before"), after=d.get("after"),
                       details=d.get("details") or {})
            for d in docs
        ]

    async def ping(self) -> None:
        try:
            await self.client.admin.command("ping")
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self.last.close()  # what it holds back
        if self._owns_client:
            await self.client.close()
