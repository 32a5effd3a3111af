"""The log store on MongoDB (any server speaking its wire protocol, >= 6.0).

Run documents are keyed by ``<job>@<tick>#<attempt>`` and carry a ``seq``
(0 running, 1 a master's verdict: lost, or a run-now request nobody took;
2 finished by its worker): an update applies only to a
document with a lower ``seq``, so replays in any order never duplicate a run
and never turn a finished run back into a running one.

Retention: a finished run carries ``expire_at`` = ended + its job's
``retention_days`` (or the cluster default), computed when it is written; a
TTL index on ``expire_at`` deletes it after that. Running records have no
``expire_at`` and stay until they are finished (or marked lost).

Collections: ``runs`` (one document per attempt), ``audit``, and two rollups
kept by ``write_runs`` (_rollups.py): ``run_last`` (each job's newest run),
``run_trend`` (each job's newest runs, a few fields) and ``run_hours`` (counts
per status per hour). Pages of history: _history.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ExecutionTimeout, OperationFailure, PyMongoError

from ..common import (
    Clock,
    ConfigError,
    RunRecord,
    RunStatus,
    ServiceRefused,
    SystemClock,
    Trigger,
    from_ms,
    to_ms,
)
from ._abc import AuditEntry, LogStoreRejected, LogStoreUnavailable, RunPage, RunQuery
from ._history import SCAN_AT_ONCE, HistoryPager, encode_cursor
from ._rollups import DUPLICATE_KEY, RECENT_KEPT, HourlyCounts, LastRuns
from ._tls import CLOSED_AFTER_CONNECT, handshake_error, tls_refusal
from ._windows import FUTURE_MARGIN_MS, MAX_PROBES, windows

INDEX_NOT_FOUND = 27
UNAUTHORIZED = 13
AUTHENTICATION_FAILED = 18
DEFAULT_DATABASE = "cronswarm"
_SEQ = {RunStatus.RUNNING: 0, RunStatus.LOST: 1}
_FINAL_SEQ = 2
_LOST_FIELDS = ("status", "ended", "error", "seq", "expire_at", "duration")
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


def _seq(record: RunRecord) -> int:
    """A record's rank: running, a master's verdict (``lost``, or any record
    without a worker: a run-now request nobody took), then the worker's own
    final record, which nothing overrides."""
    if not record.worker and record.status is not RunStatus.RUNNING:
        return _SEQ[RunStatus.LOST]
    return _SEQ.get(record.status, _FINAL_SEQ)


def _dt(ms: int | None) -> dt.datetime | None:
    return None if ms is None else from_ms(ms)


def _ms(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return to_ms(value)


def _update_fields(doc: Doc) -> Doc:
    """What an update of an existing run document sets.

    A ``lost`` verdict (from a master) keeps what the worker already wrote —
    start, command, output so far — and adds only the end.
    """
    if doc["status"] == RunStatus.LOST.value:
        return {k: doc[k] for k in _LOST_FIELDS if k in doc}
    return {k: v for k, v in doc.items() if k != "_id"}


def record_to_doc(record: RunRecord, *, default_retention_days: int) -> Doc:
    doc: Doc = {
        "_id": record.record_id,
        "run_id": record.run_id,
        "job": record.job,
        "tick": from_ms(record.tick),
        "attempt": record.attempt,
        "worker": record.worker,
        "summary": record.summary,
        "status": record.status.value,
        "trigger": record.trigger.value,
        "started": _dt(record.started),
        "ended": _dt(record.ended),
        "duration": record.duration,
        "lag": record.lag,
        "exit_code": record.exit_code,
        "http_status": record.http_status,
        "error": record.error,
        "output": record.output,
        "output_tail": record.output_tail,
        "output_bytes": record.output_bytes,
        "truncated": record.truncated,
        "killed_by": record.killed_by,
        "seq": _seq(record),
    }
    if record.extra:
        doc["extra"] = record.extra
    if record.ended is not None:
        days = record.retention_days or default_retention_days
        # The TTL index deletes a document once expire_at has passed.
        doc["retention_days"] = days
        doc["expire_at"] = from_ms(record.ended) + dt.timedelta(days=days)
    elif record.retention_days is not None:
        doc["retention_days"] = record.retention_days
    return doc


def coalesce_records(records: Sequence[RunRecord]) -> list[RunRecord]:
    """One record per attempt: the one a sequence of writes would leave (the
    last of the highest ``seq``), in order of first appearance."""
    chosen: dict[str, RunRecord] = {}
    for record in records:
        held = chosen.get(record.record_id)
        if held is None or _seq(record) >= _seq(held):
            chosen[record.record_id] = record
    return list(chosen.values())


def doc_to_record(doc: Mapping[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=doc["run_id"],
        job=doc["job"],
        tick=_ms(doc["tick"]) or 0,
        attempt=int(doc["attempt"]),
        worker=doc.get("worker", ""),
        summary=doc.get("summary", ""),
        status=RunStatus(doc["status"]),
        trigger=Trigger(doc.get("trigger", "schedule")),
        started=_ms(doc.get("started")),
        ended=_ms(doc.get("ended")),
        exit_code=doc.get("exit_code"),
        http_status=doc.get("http_status"),
        error=doc.get("error"),
        output=doc.get("output", ""),
        output_tail=doc.get("output_tail", ""),
        output_bytes=doc.get("output_bytes", 0),
        truncated=doc.get("truncated", False),
        killed_by=doc.get("killed_by"),
        retention_days=doc.get("retention_days"),
        extra=doc.get("extra", {}),
    )


def _page(docs: list[Doc], limit: int) -> RunPage:
    runs = [doc_to_record(d) for d in docs[:limit]]
    next_cursor = None
    if len(docs) > limit:
        last = docs[limit - 1]
        next_cursor = encode_cursor(_ms(last["tick"]) or 0, last["_id"])
    return RunPage(runs, next_cursor)


def _open_client(uri: str, timeout_ms: int) -> AsyncMongoClient[Doc]:
    """A client for ``uri``; ConfigError for a URI that cannot work."""
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("MONGODB_URI", "must start with mongodb:// or mongodb+srv://")
    try:
        with warnings.catch_warnings():
            # pymongo only warns about an unknown or malformed option, then
            # ignores it: a tls=ture would silently mean no TLS.
            warnings.simplefilter("error", UserWarning)
            return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms,
                                    connectTimeoutMS=timeout_ms,
                                    socketTimeoutMS=max(timeout_ms * 6, 30000),
                                    appname="cronswarm")
    except (PyMongoError, UserWarning, ValueError, TypeError, OSError) as exc:
        raise ConfigError("MONGODB_URI", str(exc)) from None


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
            self.client: AsyncMongoClient[Doc] = _open_client(uri_or_client, timeout_ms)
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
        handshake fails for good (_tls.py), LogStoreUnavailable if it does not
        answer."""
        try:
            await self.runs.find_one({}, projection={"_id": 1})
        except OperationFailure as exc:
            reason = (exc.details or {}).get("errmsg") or str(exc)
            if exc.code == AUTHENTICATION_FAILED:
                raise ServiceRefused("MONGODB_URI", (
                    f"MongoDB refused the user in MONGODB_URI ({reason}) — check its user "
                    "name, password and authSource")) from None
            if exc.code == UNAUTHORIZED:
                raise ServiceRefused("MONGODB_URI", (
                    f"MongoDB does not let us read database {self.db.name!r} ({reason}) — "
                    "give MONGODB_URI a user (and authSource) with readWrite on it")) from None
            raise LogStoreUnavailable(str(exc)) from exc
        except PyMongoError as exc:
            text = str(exc)
            if self._uri is not None and CLOSED_AFTER_CONNECT in text:
                text = await asyncio.to_thread(handshake_error, self._uri, self._timeout_ms)
            refusal = tls_refusal(text)
            if refusal is not None:
                raise ServiceRefused("MONGODB_URI", refusal) from None
            raise LogStoreUnavailable(str(exc)) from exc

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
                                        {"$set": _update_fields(d)}, upsert=True)
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
        page = _page(docs, limit)
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
            AuditEntry(at=_ms(d["at"]) or 0, actor=d["actor"], action=d["action"],
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
