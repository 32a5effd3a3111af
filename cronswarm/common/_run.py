"""Run records: one per attempt of one tick of one job."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    KILLED = "killed"
    LOST = "lost"
    SKIPPED = "skipped"

    @property
    def final(self) -> bool:
        return self is not RunStatus.RUNNING


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    RUN_NOW = "run_now"
    RETRY = "retry"
    CATCH_UP = "catch_up"


@dataclass(slots=True)
class RunRecord:
    """What happened to one attempt. Times are epoch ms; durations seconds."""

    run_id: str  # <job>@<tick>, shared by all attempts
    job: str
    tick: int  # the scheduled instant
    attempt: int
    worker: str
    summary: str  # the command, or "METHOD url"
    status: RunStatus
    trigger: Trigger = Trigger.SCHEDULE
    started: int | None = None
    ended: int | None = None
    exit_code: int | None = None
    http_status: int | None = None
    error: str | None = None
    output: str = ""  # head of the captured output (stdout and stderr merged)
    output_tail: str = ""  # tail, when the output was truncated
    output_bytes: int = 0  # the true byte count
    truncated: bool = False
    killed_by: str | None = None
    retention_days: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def record_id(self) -> str:
        """Unique per attempt: ``<job>@<tick>#<attempt>``."""
        return f"{self.run_id}#{self.attempt}"

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started) / 1000

    @property
    def lag(self) -> float | None:
        """Seconds from the scheduled instant to the start."""
        return None if self.started is None else (self.started - self.tick) / 1000

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy is most of a record's encoding cost.
        out = {name: getattr(self, name) for name in _FIELDS}
        out["extra"] = dict(self.extra)
        out["status"] = self.status.value
        out["trigger"] = self.trigger.value
        out["duration"] = self.duration
        out["lag"] = self.lag
        return out


_FIELDS = tuple(f.name for f in fields(RunRecord))
