"""The log store interface: where run records and the audit trail live."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..common import CronswarmError, RunRecord, RunStatus, ServiceUnavailable


class LogStoreUnavailable(ServiceUnavailable):
    """MongoDB could not be reached, or did not answer in time."""

    def __init__(self, reason: str) -> None:
        super().__init__("mongodb", reason)


class LogStoreRejected(CronswarmError):
    """MongoDB refused some records for good (retrying cannot help); the others
    of the same write were stored."""

    def __init__(self, rejected: Mapping[str, str]) -> None:
        self.rejected = dict(rejected)  # record id -> reason
        first = next(iter(self.rejected.items()), ("", ""))
        super().__init__(f"{len(self.rejected)} run records rejected, e.g. {first[0]}: "
                         f"{first[1]}")


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters for run history; all optional, combined with AND."""

    job: str | None = None
    status: RunStatus | None = None
    worker: str | None = None
    since: int | None = None  # tick >= since (epoch ms)
    until: int | None = None  # tick < until (epoch ms)
    text: str | None = None  # substring of output or error, case-insensitive
    limit: int = 50
    cursor: str | None = None  # from RunPage.next_cursor


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[RunRecord]
    next_cursor: str | None  # None: no further page
    # A text search that ran out of its time budget: runs older than this tick
    # (epoch ms) were not searched yet; ``next_cursor`` goes on from there.
    searched_to: int | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One mutating call: who did what to which object, before and after."""

    at: int  # epoch ms
    actor: str
    action: str  # e.g. "job.create", "job.kill", "token.create"
    target: str
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at, "actor": self.actor, "action": self.action, "target": self.target,
            "before": self.before, "after": self.after, "details": dict(self.details),
        }


class LogStore(Protocol):
    async def ensure_indexes(self) -> None:
        """Create the indexes (idempotent)."""
        ...

    async def write_runs(self, records: Sequence[RunRecord]) -> None:
        """Insert or update records; idempotent, and never downgrades a final
        record to ``running`` whatever the order of replays.

        Raises ``LogStoreUnavailable`` (nothing or part was written: write
        again) or ``LogStoreRejected`` (the named records can never be written;
        the others were)."""
        ...

    async def get_run(self, record_id: str) -> RunRecord | None: ...

    async def query_runs(self, query: RunQuery) -> RunPage: ...

    async def last_runs(self, jobs: Sequence[str]) -> dict[str, RunRecord]:
        """The newest record of each job that has one, without its output
        (``output``, ``output_tail`` and ``extra`` are empty; ``get_run`` has
        them)."""
        ...

    async def last_statuses(self, jobs: Sequence[str]) -> dict[str, RunStatus]:
        """The status of the newest record of each job that has one (what
        ``last_runs`` says, read for many jobs at less cost)."""
        ...

    async def count_runs(self, *, since: int, until: int, job: str | None = None
                         ) -> dict[RunStatus, int]:
        """Records per status with ``since <= tick < until`` (epoch ms), of one
        job or of all; every status is a key (0 when none)."""
        ...

    async def recent_runs(self, jobs: Mapping[str, int], per_job: int
                          ) -> dict[str, list[RunRecord]]:
        """The newest ``per_job`` records of each job in ``jobs`` (newest first),
        holding only run id, job, tick, attempt, status, start and end (what a
        trend shows; the rest may be empty); ``jobs`` maps each job to a hint of how far back
        (ms) those records reach (looked up only for jobs read from the runs).
        Jobs without records are left out."""
        ...

    async def write_audit(self, entry: AuditEntry) -> None: ...

    async def query_audit(self, *, target: str | None = None, actor: str | None = None,
                          action: str | None = None, since: int | None = None,
                          until: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first; ``since <= at < until`` (epoch ms). To page back, pass the
        ``at`` of the last entry as ``until``."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
