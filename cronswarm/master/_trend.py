"""The jobs list's small chart: the last runs of a job as bars (pure data),
and the per-master cache of those runs (``TrendCache``).

Each bar is one run, oldest on the left; its height is the run's duration
relative to the slowest run shown, its class the run's status. The template
draws the bars as SVG ``<rect>`` elements; nothing here writes markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..common import RunRecord, RunStatus
from ._format import fmt_duration, fmt_time

WIDTH = 120
HEIGHT = 28
MIN_BAR = 2.0  # a zero-length run still shows
GAP = 1.0
_NOT_RATED = frozenset({RunStatus.RUNNING, RunStatus.SKIPPED})


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    status: str
    label: str  # the bar's tooltip (SVG <title>)


@dataclass(frozen=True, slots=True)
class Trend:
    bars: tuple[Bar, ...]
    runs: int
    rated: int  # finished runs that count for the success rate (not skipped)
    succeeded: int
    slowest: float | None  # seconds
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.rated if self.rated else None

    @property
    def summary(self) -> str:
        """What the chart shows, in words (its accessible name)."""
        if not self.runs:
            return "no runs yet"
        text = f"last {self.runs} runs: {self.succeeded} of {self.rated} succeeded"
        if self.slowest is not None:
            text += f", slowest {fmt_duration(self.slowest)}"
        return text


def run_trend(newest_first: Sequence[RunRecord], slots: int) -> Trend:
    """The trend of up to ``slots`` runs, given newest first (as the store returns them)."""
    runs = list(reversed(newest_first[:slots]))
    durations = [r.duration for r in runs if r.duration is not None]
    slowest = max(durations) if durations else None
    slot = WIDTH / max(slots, 1)
    bars = []
    for i, run in enumerate(runs):
        duration = run.duration
        if duration is None or not slowest:
            height = MIN_BAR
        else:
            height = max(MIN_BAR, HEIGHT * duration / slowest)
        label = f"{fmt_time(run.tick)}: {run.status.value}, {fmt_duration(duration)}"
        bars.append(Bar(x=round(WIDTH - (len(runs) - i) * slot, 2), y=round(HEIGHT - height, 2),
                        width=round(max(slot - GAP, 1.0), 2), height=round(height, 2),
                        status=run.status.value, label=label))
    rated = [r for r in runs if r.status not in _NOT_RATED]
    succeeded = sum(1 for r in rated if r.status is RunStatus.SUCCEEDED)
    return Trend(tuple(bars), len(runs), len(rated), succeeded, slowest)


Marker = tuple[str, str, int | None] | None


def _marker(last: RunRecord | None) -> Marker:
    """What changes whenever a job's history gains or completes a run."""
    return None if last is None else (last.record_id, last.status.value, last.ended)


@dataclass
class TrendCache:
    """The newest runs of each job as last read, valid while the job's last run
    (from the ``run_last`` rollup, read on every call) is the same one in the
    same state, and for at most ``max_age_ms`` (a verdict on an older run, say
    ``lost``, changes no last run)."""

    max_age_ms: int = 30_000
    max_jobs: int = 20_000
    entries: dict[str, tuple[int, Marker, int, list[RunRecord]]] = field(default_factory=dict)

    def get(self, job: str, runs: int, last: RunRecord | None, now_ms: int
            ) -> list[RunRecord] | None:
        hit = self.entries.get(job)
        if hit is None:
            return None
        size, marker, at, records = hit
        if size != runs or marker != _marker(last) or now_ms - at > self.max_age_ms:
            return None
        return records

    def put(self, job: str, runs: int, last: RunRecord | None, now_ms: int,
            records: list[RunRecord]) -> None:
        if len(self.entries) >= self.max_jobs:
            self.entries.clear()
        self.entries[job] = (runs, _marker(last), now_ms, records)
