"""An in-memory twin of the log store, with the semantics the interface promises.

For unit tests. The contract suite (tests/contract/test_logstore_contract.py)
runs the same promises against this twin and the real MongoDB-protocol server.

What it keeps of ``MongoLogStore``: records keyed by ``<job>@<tick>#<attempt>``,
ranked running < a master's verdict < the worker's final record, so replays in
any order never duplicate or downgrade a run; a ``lost`` verdict keeps what the
worker wrote and adds the end; a final record's ``retention_days`` defaults to
the store's. History newest first by (tick, record id) with the same cursors
(``encode_cursor``), text search case-insensitive over output, output tail and
error. ``recent_runs`` gives only what the real store's rollup keeps (run id,
job, tick, attempt, status, start, end), as the real store does once its
rollup holds a job. What it leaves out: expiry of old records (the TTL index);
text searches are never cut short by a time budget (``searched_to`` stays None).

``available = False`` makes every call raise ``LogStoreUnavailable``; record
ids in ``reject`` are refused for good (``LogStoreRejected``), the others of
the same write stored, as the real store does with documents it cannot take.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from ..common import RunRecord, RunStatus
from ._abc import AuditEntry, LogStoreRejected, LogStoreUnavailable, RunPage, RunQuery
from ._history import decode_cursor, encode_cursor
from ._run_docs import coalesce_records, seq_of

_MAX_PAGE = 1000  # as the real store: a page holds 1 to 1000 records


def _copy(record: RunRecord, **changes: object) -> RunRecord:
    """A record that shares nothing mutable with ``record`` (a stored document)."""
    return dataclasses.replace(record, extra=copy.deepcopy(record.extra), **changes)  # type: ignore[arg-type]


def _summary(record: RunRecord) -> RunRecord:
    return dataclasses.replace(record, output="", output_tail="", extra={})


def _trend_point(record: RunRecord) -> RunRecord:
    """What ``recent_runs`` promises of a record (the real store's rollup keeps no more)."""
    return RunRecord(run_id=record.run_id, job=record.job, tick=record.tick,
                     attempt=record.attempt, worker="", summary="", status=record.status,
                     started=record.started, ended=record.ended)


def _newest_first(record: RunRecord) -> tuple[int, str]:
    return record.tick, record.record_id


def _clamp(limit: int) -> int:
    return max(1, min(limit, _MAX_PAGE))


class MemoryLogStore:
    """LogStore in memory (see the module docstring for what it keeps)."""

    def __init__(self, *, default_retention_days: int = 30) -> None:
        self.default_retention_days = default_retention_days
        self.available = True
        self.reject: set[str] = set()  # record ids refused for good
        self.runs: dict[str, RunRecord] = {}
        self.audit: list[AuditEntry] = []  # in order of writing
        self._closed = False

    async def ensure_indexes(self) -> None:
        self._enter()

    async def write_runs(self, records: Sequence[RunRecord]) -> None:
        self._enter()
        rejected: dict[str, str] = {}
        for record in coalesce_records(records):
            if record.record_id in self.reject:
                rejected[record.record_id] = "refused by the test"
                continue
            self._store(record)
        if rejected:
            raise LogStoreRejected(rejected)

    def _store(self, record: RunRecord) -> None:
        if record.ended is not None:
            record = _copy(record, retention_days=(
                record.retention_days or self.default_retention_days))
        held = self.runs.get(record.record_id)
        if held is None:
            self.runs[record.record_id] = _copy(record)
        elif seq_of(held) < seq_of(record):
            if record.status is RunStatus.LOST:
                # A master's verdict: the worker's start, command and output stay.
                self.runs[record.record_id] = _copy(
                    held, status=record.status, ended=record.ended, error=record.error)
            else:
                self.runs[record.record_id] = _copy(record)

    async def get_run(self, record_id: str) -> RunRecord | None:
        self._enter()
        held = self.runs.get(record_id)
        return None if held is None else _copy(held)

    async def query_runs(self, query: RunQuery) -> RunPage:
        self._enter()
        limit = _clamp(query.limit)
        older: Callable[[RunRecord], bool] = lambda r: True  # noqa: E731
        if query.cursor is not None:
            at, after_id, _ = decode_cursor(query.cursor)
            older = lambda r: (r.tick, r.record_id) < (at, after_id)  # noqa: E731
        found = sorted((r for r in self._matching(query) if older(r)),
                       key=_newest_first, reverse=True)
        runs = [_copy(r) for r in found[:limit]]
        next_cursor = None
        if len(found) > limit:
            last = runs[-1]
            next_cursor = encode_cursor(last.tick, last.record_id)
        return RunPage(runs, next_cursor)

    def _matching(self, query: RunQuery) -> Iterable[RunRecord]:
        pattern = None if not query.text else re.compile(re.escape(query.text), re.IGNORECASE)
        for r in self.runs.values():
            if ((query.job is not None and r.job != query.job)
                    or (query.status is not None and r.status is not query.status)
                    or (query.worker is not None and r.worker != query.worker)
                    or (query.since is not None and r.tick < query.since)
                    or (query.until is not None and r.tick >= query.until)):
                continue
            if pattern is None or any(pattern.search(text or "") for text in (
                    r.output, r.output_tail, r.error)):
                yield r

    def _newest_of(self, job: str) -> list[RunRecord]:
        """A job's records, newest first by (tick, attempt, rank)."""
        return sorted((r for r in self.runs.values() if r.job == job),
                      key=lambda r: (r.tick, r.attempt, seq_of(r)), reverse=True)

    async def last_runs(self, jobs: Sequence[str]) -> dict[str, RunRecord]:
        self._enter()
        newest = {job: self._newest_of(job)[:1] for job in dict.fromkeys(jobs)}
        return {job: _summary(runs[0]) for job, runs in newest.items() if runs}

    async def last_statuses(self, jobs: Sequence[str]) -> dict[str, RunStatus]:
        return {job: run.status for job, run in (await self.last_runs(jobs)).items()}

    async def count_runs(self, *, since: int, until: int, job: str | None = None
                         ) -> dict[RunStatus, int]:
        self._enter()
        out = dict.fromkeys(RunStatus, 0)
        for r in self.runs.values():
            if since <= r.tick < until and (job is None or r.job == job):
                out[r.status] += 1
        return out

    async def recent_runs(self, jobs: Mapping[str, int], per_job: int
                          ) -> dict[str, list[RunRecord]]:
        self._enter()
        limit = _clamp(per_job)
        recent = {job: self._newest_of(job)[:limit] for job in jobs}
        return {job: [_trend_point(r) for r in runs] for job, runs in recent.items() if runs}

    async def write_audit(self, entry: AuditEntry) -> None:
        self._enter()
        self.audit.append(copy.deepcopy(entry))

    async def query_audit(self, *, target: str | None = None, actor: str | None = None,
                          action: str | None = None, since: int | None = None,
                          until: int | None = None, limit: int = 100) -> list[AuditEntry]:
        self._enter()
        wanted = {"target": target, "actor": actor, "action": action}
        found = [e for e in self.audit
                 if all(v is None or getattr(e, k) == v for k, v in wanted.items())
                 and (since is None or e.at >= since) and (until is None or e.at < until)]
        found.sort(key=lambda e: e.at, reverse=True)
        return [copy.deepcopy(e) for e in found[:_clamp(limit)]]

    async def ping(self) -> None:
        self._enter()

    async def close(self) -> None:
        self._closed = True

    def _enter(self) -> None:
        if self._closed:
            raise LogStoreUnavailable("the store is closed")
        if not self.available:
            raise LogStoreUnavailable("switched unavailable")
