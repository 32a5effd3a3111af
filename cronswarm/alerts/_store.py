"""The alert engine's MongoDB side: what it reads of run history, what it keeps.

Collections (in the run history's database):

* ``runs`` (the run history, read only): problems by end time, a job's newest
  success. Two indexes are added for these reads: ``(status, ended, _id)`` and
  ``(job, status, ended)``. Plain queries, no change streams: any MongoDB
  works, replica set or not;
* ``alert_state``: one document per job, the engine's state (``_engine``);
* ``alert_events``: one marker per event handled (id = the event's), so an
  event is decided once even if two terms of leadership both read it; kept
  7 days;
* ``alerts``: one document per notice and channel: its delivery (``pending``,
  ``sent`` or ``failed``, attempts, last error, the notice itself); kept 30
  days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from ..common import RunRecord, RunStatus, from_ms, to_ms
from ..logstore import LogStoreUnavailable, doc_to_record
from ._engine import PROBLEM_STATUSES, JobAlertState, Notice

Doc = dict[str, Any]
EVENT_DAYS = 7
DELIVERY_DAYS = 30
_PAGE = 500
DELIVERY_STATUSES = ("pending", "sent", "failed")


def _ms(value: Any) -> int | None:
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return to_ms(value)


def delivery_id(event_id: str, channel: str) -> str:
    return f"{event_id}>{channel}"


def delivery_view(doc: Doc) -> dict[str, Any]:
    """A delivery as the API shows it (times in epoch ms)."""
    notice = doc.get("notice") or {}
    return {
        "id": doc["_id"], "event_id": doc.get("event_id"), "job": doc.get("job"),
        "kind": doc.get("kind"), "channel": doc.get("channel"),
        "channel_type": doc.get("channel_type"), "status": doc.get("status"),
        "attempts": int(doc.get("attempts") or 0), "error": doc.get("error"),
        "created": _ms(doc.get("created")), "updated": _ms(doc.get("updated")),
        "title": notice.get("title"), "record_id": notice.get("record_id"),
    }


class AlertStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.runs = db["runs"]
        self.state = db["alert_state"]
        self.events = db["alert_events"]
        self.deliveries = db["alerts"]

    async def ensure_indexes(self) -> None:
        try:
            await self.runs.create_index(
                [("status", ASCENDING), ("ended", ASCENDING), ("_id", ASCENDING)],
                name="status_ended_id")
            await self.runs.create_index(
                [("job", ASCENDING), ("status", ASCENDING), ("ended", ASCENDING)],
                name="job_status_ended")
            await self.events.create_index("at", expireAfterSeconds=EVENT_DAYS * 86400,
                                           name="retention")
            await self.deliveries.create_index(
                "created", expireAfterSeconds=DELIVERY_DAYS * 86400, name="retention")
            await self.deliveries.create_index([("status", ASCENDING), ("created", ASCENDING)],
                                               name="status_created")
            await self.deliveries.create_index([("job", ASCENDING), ("created", ASCENDING)],
                                               name="job_created")
        except PyMongoError as exc:
            raise LogStoreUnavailable(f"cannot create alert indexes: {exc}") from exc

    # -- run history ------------------------------------------------------------

    async def problems_since(self, since_ms: int, seen: set[str]) -> list[RunRecord]:
        """Runs that ended ``failed``, ``timeout`` or ``lost`` at or after ``since_ms``,
        oldest first, except those whose record id is in ``seen``."""
        found: list[RunRecord] = []
        try:
            for status in PROBLEM_STATUSES:
                start = from_ms(since_ms)
                while True:
                    docs = await self.runs.find(
                        {"status": status.value, "ended": {"$gte": start}},
                    ).sort([("ended", ASCENDING), ("_id", ASCENDING)]).limit(
                        _PAGE).to_list(None)
                    fresh = [d for d in docs if d["_id"] not in seen]
                    found.extend(doc_to_record(d) for d in fresh)
                    seen.update(d["_id"] for d in fresh)
                    if len(docs) < _PAGE or not fresh:
                        break
                    start = docs[-1]["ended"]
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        found.sort(key=lambda r: (r.ended or 0, r.record_id))
        return found

    async def newest_success(self, job: str) -> RunRecord | None:
        try:
            doc = await self.runs.find_one(
                {"job": job, "status": RunStatus.SUCCEEDED.value},
                sort=[("ended", DESCENDING)])
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return None if doc is None else doc_to_record(doc)

    # -- engine state -------------------------------------------------------------

    async def load_states(self) -> dict[str, JobAlertState]:
        try:
            docs = await self.state.find({}).to_list(None)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        out = {}
        for doc in docs:
            job = str(doc.pop("_id"))
            out[job] = JobAlertState.from_doc({**doc, "job": job})
        return out

    async def save_state(self, state: JobAlertState) -> None:
        doc = state.to_doc()
        job = doc.pop("job")
        try:
            await self.state.replace_one({"_id": job}, doc, upsert=True)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def drop_states(self, jobs: Sequence[str]) -> None:
        if not jobs:
            return
        try:
            await self.state.delete_many({"_id": {"$in": list(jobs)}})
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def claim_event(self, event_id: str, at_ms: int) -> bool:
        """Mark an event handled; False if it already was (by this term or another)."""
        try:
            await self.events.insert_one({"_id": event_id, "at": from_ms(at_ms)})
        except DuplicateKeyError:
            return False
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return True

    # -- deliveries ---------------------------------------------------------------

    async def add_delivery(self, notice: Notice, channel: str, channel_type: str,
                           now_ms: int) -> str | None:
        """Record a pending delivery; None if this notice already went to ``channel``."""
        doc_id = delivery_id(notice.event_id, channel)
        doc: Doc = {
            "_id": doc_id, "event_id": notice.event_id, "job": notice.job,
            "kind": notice.kind.value, "channel": channel, "channel_type": channel_type,
            "status": "pending", "attempts": 0, "error": None,
            "created": from_ms(now_ms), "updated": from_ms(now_ms), "notice": notice.to_doc(),
        }
        try:
            await self.deliveries.insert_one(doc)
        except DuplicateKeyError:
            return None
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return doc_id

    async def finish_delivery(self, doc_id: str, *, status: str, attempts: int,
                              error: str | None, now_ms: int) -> None:
        try:
            await self.deliveries.update_one({"_id": doc_id}, {"$set": {
                "status": status, "attempts": attempts, "error": error,
                "updated": from_ms(now_ms)}})
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc

    async def pending(self, since_ms: int) -> list[tuple[str, str, Notice]]:
        """Deliveries still pending, created at or after ``since_ms``: (id, channel, notice)."""
        try:
            docs = await self.deliveries.find(
                {"status": "pending", "created": {"$gte": from_ms(since_ms)}},
            ).sort("created", ASCENDING).limit(1000).to_list(None)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return [(d["_id"], d["channel"], Notice.from_doc(d["notice"])) for d in docs]

    async def list_deliveries(self, *, job: str | None = None, status: str | None = None,
                              limit: int = 100) -> list[dict[str, Any]]:
        flt: Doc = {}
        if job is not None:
            flt["job"] = job
        if status is not None:
            flt["status"] = status
        try:
            docs = await self.deliveries.find(flt).sort("created", DESCENDING).limit(
                max(1, min(limit, 1000))).to_list(None)
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        return [delivery_view(d) for d in docs]
