"""The log store on MongoDB (any server speaking its wire protocol, >= 6.0).

Run documents are keyed by ``<job>@<tick>#<attempt>`` and carry a ``seq``
(0 running, 1 lost, 2 finished by its worker): an update applies only to a
document with a lower ``seq``, so replays in any order never duplicate a run
and never turn a finished run back into a running one.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from ..common import (
    Clock,
    RunRecord,
    RunStatus,
    SystemClock,
    Trigger,
    ValidationError,
    from_ms,
    to_ms,
)
from ._abc import AuditEntry, LogStoreUnavailable, RunPage, RunQuery
from ._windows import FIRST_WINDOW_MS, FUTURE_MARGIN_MS, MAX_PROBES, windows

DUPLICATE_KEY = 11000
_SEQ = {RunStatus.RUNNING: 0, RunStatus.LOST: 1}
_FINAL_SEQ = 2
_LOST_FIELDS = ("status", "ended", "error", "seq", "expire_at", "duration")
_MAX_PAGE = 1000
_NO_OUTPUT = {"output": 0, "output_tail": 0, "extra": 0}

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
        doc["expire_at"] = from_ms(record.ended) + dt.timedelta(days=days)
    return doc


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
        clock: Clock | None = None,
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
        self.clock: Clock = clock or SystemClock()

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
            await self.audit.create_index([("at", DESCENDING)], name="at")
        except PyMongoError as exc:
            raise LogStoreUnavailable(f"cannot create indexes: {exc}") from exc

    async def write_runs(self, records: Sequence[RunRecord]) -> None:
        if not records:
            return
        ops = []
        for record in records:
            doc = record_to_doc(record, default_retention_days=self.default_retention_days)
            record_id, seq = doc.pop("_id"), doc["seq"]
            if record.status is RunStatus.LOST:
                # A master's verdict: keep what the worker already wrote (start,
                # command, output so far); add only the end.
                verdict = {k: doc.pop(k) for k in _LOST_FIELDS if k in doc}
                update: Doc = {"$set": verdict, "$setOnInsert": doc}
            else:
                update = {"$set": doc}
            ops.append(UpdateOne({"_id": record_id, "seq": {"$lt": seq}}, update, upsert=True))
        try:
            await self.runs.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            # A duplicate key means the stored document is already as new or
            # newer (its seq was not lower): the write is a no-op by design.
            serious = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if serious or exc.details.get("writeConcernErrors"):
                raise LogStoreUnavailable(f"bulk write failed: {serious[:3]}") from exc
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def get_run(self, record_id: str) -> RunRecord | None:
        try:
            doc = await self.runs.find_one({"_id": record_id})
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return None if doc is None else doc_to_record(doc)

    @staticmethod
    def _filter(query: RunQuery) -> Doc:
        """The equality and text filters of ``query`` (ticks and cursor apart)."""
        flt: Doc = {}
        if query.job is not None:
            flt["job"] = query.job
        if query.status is not None:
            flt["status"] = query.status.value
        if query.worker is not None:
            flt["worker"] = query.worker
        if query.text:
            pattern = {"$regex": re.escape(query.text), "$options": "i"}
            flt["$or"] = [{"output": pattern}, {"output_tail": pattern}, {"error": pattern}]
        return flt

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
        limit = max(1, min(query.limit, _MAX_PAGE))
        flt = self._filter(query)
        floor = max(0, query.since or 0)
        # Without an end, the first window starts now and reaches into the future
        # (workers whose clocks run ahead).
        hi, first = ((query.until, FIRST_WINDOW_MS) if query.until is not None
                     else (self.clock.now_ms() + FUTURE_MARGIN_MS,
                           FIRST_WINDOW_MS + FUTURE_MARGIN_MS))
        order = [("tick", DESCENDING), ("_id", DESCENDING)]
        docs: list[Doc] = []
        try:
            if query.cursor is not None:
                tick_ms, record_id = decode_cursor(query.cursor)
                if floor <= tick_ms < hi:  # the rest of the cursor's own tick
                    same = {**flt, "tick": from_ms(tick_ms), "_id": {"$lt": record_id}}
                    docs = await self.runs.find(same).sort(order).limit(limit + 1).to_list(
                        length=limit + 1)
                if tick_ms < hi:
                    hi, first = tick_ms, FIRST_WINDOW_MS
            # Running records are few by nature (the live runs): one query.
            probes = 0 if query.status is RunStatus.RUNNING else MAX_PROBES
            if len(docs) <= limit:
                docs += await self._newest(flt, limit + 1 - len(docs), hi=hi, floor=floor,
                                           first=first, sort=order, probes=probes)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        runs = [doc_to_record(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = docs[limit - 1]
            next_cursor = encode_cursor(_ms(last["tick"]) or 0, last["_id"])
        return RunPage(runs, next_cursor)

    async def last_runs(self, jobs: Sequence[str]) -> dict[str, RunRecord]:
        out: dict[str, RunRecord] = {}
        try:
            for job in jobs:
                doc = await self.runs.find_one(
                    {"job": job}, sort=[("tick", DESCENDING), ("attempt", DESCENDING)]
                )
                if doc is not None:
                    out[job] = doc_to_record(doc)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return out

    async def recent_runs(self, jobs: Mapping[str, int], per_job: int
                          ) -> dict[str, list[RunRecord]]:
        """``jobs`` maps each job to how far back (ms) its first window looks: about
        the span of its last ``per_job`` scheduled ticks, so one query usually does."""
        limit = max(1, min(per_job, _MAX_PAGE))
        hi = self.clock.now_ms() + FUTURE_MARGIN_MS
        order = [("tick", DESCENDING), ("attempt", DESCENDING)]

        async def newest(job: str, span: int) -> list[Doc]:
            return await self._newest({"job": job}, limit, hi=hi, floor=0,
                                      first=span + FUTURE_MARGIN_MS, sort=order,
                                      projection=_NO_OUTPUT)

        try:
            found = await asyncio.gather(*(newest(job, span) for job, span in jobs.items()))
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return {job: [doc_to_record(d) for d in docs]
                for job, docs in zip(jobs, found, strict=True) if docs}

    async def latest_since(self, since_ms: int) -> dict[str, RunRecord]:
        """The newest record of each job with a run at or after ``since_ms`` (one
        query on the tick index; the caller keeps the window short)."""
        window = {"tick": {"$gte": from_ms(since_ms)}}
        out: dict[str, RunRecord] = {}
        try:
            async for doc in self.runs.find(window, _NO_OUTPUT):
                record = doc_to_record(doc)
                best = out.get(record.job)
                if best is None or (record.tick, record.attempt) > (best.tick, best.attempt):
                    out[record.job] = record
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return out

    async def write_audit(self, entry: AuditEntry) -> None:
        doc = entry.to_dict()
        doc["at"] = from_ms(entry.at)
        try:
            await self.audit.insert_one(doc)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def query_audit(self, *, target: str | None = None, limit: int = 100
                          ) -> list[AuditEntry]:
        flt: Doc = {} if target is None else {"target": target}
        try:
            docs = await self.audit.find(flt).sort("at", DESCENDING).limit(
                max(1, min(limit, _MAX_PAGE))).to_list(None)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
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
