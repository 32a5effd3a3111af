"""The log store interface: where run records and the audit trail live."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..common import RunRecord, RunStatus, ServiceUnavailable


class LogStoreUnavailable(ServiceUnavailable):
    """MongoDB could not be reached, or did not answer in time."""

    def __init__(self, reason: str) -> None:
        super().__init__("mongodb", reason)


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
        record to ``running`` whatever the order of replays."""
        ...

    async def get_run(self, record_id: str) -> RunRecord | None: ...

    async def query_runs(self, query: RunQuery) -> RunPage: ...

    async def last_runs(self, jobs: Sequence[str]) -> dict[str, RunRecord]:
        """The newest record of each job that has one."""
        ...

    async def recent_runs(self, jobs: Mapping[str, int], per_job: int
                          ) -> dict[str, list[RunRecord]]:
        """The newest ``per_job`` records of each job in ``jobs`` (newest first,
        without their output); ``jobs`` maps each job to a hint of how far back
        (ms) those records reach. Jobs without records are left out."""
        ...

    async def latest_since(self, since_ms: int) -> dict[str, RunRecord]:
        """The newest record (without output) of each job that has one at or after
        ``since_ms``."""
        ...

    async def write_audit(self, entry: AuditEntry) -> None: ...

    async def query_audit(self, *, target: str | None = None, limit: int = 100
                          ) -> list[AuditEntry]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
