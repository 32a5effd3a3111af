"""The log store on MongoDB (any server speaking its wire protocol, >= 6.0).

Run documents are keyed by ``<job>@<tick>#<attempt>`` and carry a ``seq``
(0 running, 1 lost, 2 finished by its worker): an update applies only to a
document with a lower ``seq``, so replays in any order never duplicate a run
and never turn a finished run back into a running one.

Retention: a finished run carries ``expire_at`` = ended + its job's
``retention_days`` (or the cluster default), computed when it is written; a
TTL index on ``expire_at`` deletes it after that. Running records have no
``expire_at`` and stay until they are finished (or marked lost).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, ExecutionTimeout, PyMongoError

from ..common import RunRecord, RunStatus, Trigger, ValidationError, from_ms, to_ms
from ._abc import AuditEntry, LogStoreRejected, LogStoreUnavailable, RunPage, RunQuery

DUPLICATE_KEY = 11000
_SEQ = {RunStatus.RUNNING: 0, RunStatus.LOST: 1}
_FINAL_SEQ = 2
_MAX_PAGE = 1000
_LAST_RUNS_CONCURRENCY = 16

Doc = dict[str, Any]


def _seq(status: RunStatus) -> int:
    return _SEQ.get(status, _FINAL_SEQ)


def _dt(ms: int | None) -> dt.datetime | None:
    return None if ms is None else from_ms(ms)


def _ms(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return to_ms(value)


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
        "seq": _seq(record.status),
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
        if held is None or _seq(record.status) >= _seq(held.status):
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


def encode_cursor(tick_ms: int, record_id: str) -> str:
    raw = json.dumps([tick_ms, record_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tick, record_id = json.loads(raw)
        if not isinstance(tick, int) or not isinstance(record_id, str):
            raise TypeError("bad cursor fields")
    except (ValueError, TypeError) as exc:
        raise ValidationError.single("cursor", "is not a cursor returned by this API") from exc
    return tick, record_id


class MongoLogStore:
    """LogStore on MongoDB. Give it a URI (it owns the client) or a client."""

    def __init__(
        self,
        uri_or_client: str | AsyncMongoClient[Doc],
        *,
        database: str = "cronswarm",
        default_retention_days: int = 30,
        timeout_ms: int = 5000,
        query_time_ms: int = 10000,
    ) -> None:
        if isinstance(uri_or_client, str):
            self.client: AsyncMongoClient[Doc] = AsyncMongoClient(
                uri_or_client,
                tz_aware=True,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                socketTimeoutMS=max(timeout_ms * 6, 30000),
                appname="cronswarm",
            )
            self._owns_client = True
        else:
            self.client = uri_or_client
            self._owns_client = False
        self.db: AsyncDatabase[Doc] = self.client.get_default_database(default=database)
        self.runs: AsyncCollection[Doc] = self.db["runs"]
        self.audit: AsyncCollection[Doc] = self.db["audit"]
        self.default_retention_days = default_retention_days
        self.query_time_ms = query_time_ms  # server-side limit of one query

    async def ensure_indexes(self) -> None:
        try:
            await self.runs.create_index(
                [("job", ASCENDING), ("tick", ASCENDING), ("attempt", ASCENDING)],
                unique=True, name="job_tick_attempt_unique",
            )
            await self.runs.create_index([("job", ASCENDING), ("tick", DESCENDING)],
                                         name="job_tick")
            await self.runs.create_index([("status", ASCENDING), ("tick", DESCENDING)],
                                         name="status_tick")
            await self.runs.create_index([("worker", ASCENDING), ("tick", DESCENDING)],
                                         name="worker_tick")
            await self.runs.create_index([("tick", DESCENDING)], name="tick")
            await self.runs.create_index("expire_at", expireAfterSeconds=0, name="retention")
            await self.audit.create_index([("target", ASCENDING), ("at", DESCENDING)],
                                          name="target_at")
            await self.audit.create_index([("actor", ASCENDING), ("at", DESCENDING)],
                                          name="actor_at")
            await self.audit.create_index([("at", DESCENDING)], name="at")
        except PyMongoError as exc:
            raise LogStoreUnavailable(f"cannot create indexes: {exc}") from exc

    async def write_runs(self, records: Sequence[RunRecord]) -> None:
        if not records:
            return
        ops: list[InsertOne[Doc] | UpdateOne] = []
        ids: list[str] = []
        for record in coalesce_records(records):
            doc = record_to_doc(record, default_retention_days=self.default_retention_days)
            ids.append(doc["_id"])
            if doc["seq"] == 0:
                # Nothing is older than a running record: insert it, or leave
                # whatever is stored (the duplicate key error is the no-op).
                ops.append(InsertOne(doc))
                continue
            record_id = doc.pop("_id")
            ops.append(UpdateOne({"_id": record_id, "seq": {"$lt": doc["seq"]}},
                                 {"$set": doc}, upsert=True))
        try:
            await self.runs.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise LogStoreUnavailable(
                    f"write concern failed: {exc.details['writeConcernErrors'][:1]}") from exc
            # A duplicate key means the stored document is already as new or
            # newer (its seq was not lower): the write is a no-op by design.
            rejected = {ids[e["index"]]: str(e.get("errmsg", e.get("code")))
                        for e in exc.details.get("writeErrors", [])
                        if e.get("code") != DUPLICATE_KEY}
            if rejected:
                raise LogStoreRejected(rejected) from exc
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def get_run(self, record_id: str) -> RunRecord | None:
        try:
            doc = await self.runs.find_one({"_id": record_id})
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return None if doc is None else doc_to_record(doc)

    def _filter(self, query: RunQuery) -> Doc:
        flt: Doc = {}
        if query.job is not None:
            flt["job"] = query.job
        if query.status is not None:
            flt["status"] = query.status.value
        if query.worker is not None:
            flt["worker"] = query.worker
        tick: Doc = {}
        if query.since is not None:
            tick["$gte"] = from_ms(query.since)
        if query.until is not None:
            tick["$lt"] = from_ms(query.until)
        if tick:
            flt["tick"] = tick
        if query.text:
            pattern = {"$regex": re.escape(query.text), "$options": "i"}
            flt["$or"] = [{"output": pattern}, {"output_tail": pattern}, {"error": pattern}]
        if query.cursor is not None:
            tick_ms, record_id = decode_cursor(query.cursor)
            at = from_ms(tick_ms)
            page = {"$or": [{"tick": {"$lt": at}}, {"tick": at, "_id": {"$lt": record_id}}]}
            flt = {"$and": [flt, page]} if flt else page
        return flt

    async def query_runs(self, query: RunQuery) -> RunPage:
        limit = max(1, min(query.limit, _MAX_PAGE))
        try:
            cursor = (
                self.runs.find(self._filter(query))
                .sort([("tick", DESCENDING), ("_id", DESCENDING)])
                .limit(limit + 1)
                .max_time_ms(self.query_time_ms)
            )
            docs = await cursor.to_list(length=limit + 1)
        except PyMongoError as exc:
            raise self._query_error(exc) from exc
        runs = [doc_to_record(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = docs[limit - 1]
            next_cursor = encode_cursor(_ms(last["tick"]) or 0, last["_id"])
        return RunPage(runs, next_cursor)

    async def last_runs(self, jobs: Sequence[str]) -> dict[str, RunRecord]:
        # One indexed probe per job on (job, tick): each reads a single index
        # entry, whatever the size of the collection.
        limiter = asyncio.Semaphore(_LAST_RUNS_CONCURRENCY)

        async def newest(job: str) -> Doc | None:
            async with limiter:
                return await self.runs.find_one(
                    {"job": job}, sort=[("tick", DESCENDING), ("attempt", DESCENDING)])

        try:
            docs = await asyncio.gather(*(newest(job) for job in dict.fromkeys(jobs)))
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return {doc["job"]: doc_to_record(doc) for doc in docs if doc is not None}

    async def count_runs(self, *, since: int, until: int, job: str | None = None
                         ) -> dict[RunStatus, int]:
        window = {"$gte": from_ms(since), "$lt": from_ms(until)}
        if job is None:
            # One count per status, each a range of the (status, tick) index.
            async def count(status: RunStatus) -> int:
                return await self.runs.count_documents(
                    {"status": status.value, "tick": window}, maxTimeMS=self.query_time_ms)

            try:
                counts = await asyncio.gather(*(count(s) for s in RunStatus))
            except PyMongoError as exc:
                raise self._query_error(exc) from exc
            return dict(zip(RunStatus, counts, strict=True))
        # One job: its range of the (job, tick) index, grouped by status.
        pipeline: list[Doc] = [
            {"$match": {"job": job, "tick": window}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        out = dict.fromkeys(RunStatus, 0)
        try:
            cursor = await self.runs.aggregate(pipeline, maxTimeMS=self.query_time_ms)
            async for row in cursor:
                with contextlib.suppress(ValueError):
                    out[RunStatus(row["_id"])] = int(row["n"])
        except PyMongoError as exc:
            raise self._query_error(exc) from exc
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
        if self._owns_client:
            await self.client.close()
