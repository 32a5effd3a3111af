"""Run records as MongoDB run documents, and back.

Run documents are keyed by ``<job>@<tick>#<attempt>`` and carry a ``seq``
(0 running, 1 a master's verdict: lost, or a run-now request nobody took;
2 finished by its worker): an update applies only to a
document with a lower ``seq``, so replays in any order never duplicate a run
and never turn a finished run back into a running one.

Retention: a finished run carries ``expire_at`` = ended + its job's
``retention_days`` (or the cluster default), computed when it is written; a
TTL index on ``expire_at`` deletes it after that. Running records have no
``expire_at`` and stay until they are finished (or marked lost).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ..common import RunRecord, RunStatus, Trigger, from_ms, to_ms
from ._abc import RunPage
from ._history import encode_cursor

Doc = dict[str, Any]

_SEQ = {RunStatus.RUNNING: 0, RunStatus.LOST: 1}
_FINAL_SEQ = 2
_LOST_FIELDS = ("status", "ended", "error", "seq", "expire_at", "duration")


def seq_of(record: RunRecord) -> int:
    """A record's rank: running, a master's verdict (``lost``, or any record
    without a worker: a run-now request nobody took), then the worker's own
    final record, which nothing overrides."""
    if not record.worker and record.status is not RunStatus.RUNNING:
        return _SEQ[RunStatus.LOST]
    return _SEQ.get(record.status, _FINAL_SEQ)


def _dt(ms: int | None) -> dt.datetime | None:
    return None if ms is None else from_ms(ms)


def ms_or_none(value: dt.datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return to_ms(value)


def update_fields(doc: Doc) -> Doc:
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
        "seq": seq_of(record),
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
        if held is None or seq_of(record) >= seq_of(held):
            chosen[record.record_id] = record
    return list(chosen.values())


def doc_to_record(doc: Mapping[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=doc["run_id"],
        job=doc["job"],
        tick=ms_or_none(doc["tick"]) or 0,
        attempt=int(doc["attempt"]),
        worker=doc.get("worker", ""),
        summary=doc.get("summary", ""),
        status=RunStatus(doc["status"]),
        trigger=Trigger(doc.get("trigger", "schedule")),
        started=ms_or_none(doc.get("started")),
        ended=ms_or_none(doc.get("ended")),
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


def run_page(docs: list[Doc], limit: int) -> RunPage:
    runs = [doc_to_record(d) for d in docs[:limit]]
    next_cursor = None
    if len(docs) > limit:
        last = docs[limit - 1]
        next_cursor = encode_cursor(ms_or_none(last["tick"]) or 0, last["_id"])
    return RunPage(runs, next_cursor)
