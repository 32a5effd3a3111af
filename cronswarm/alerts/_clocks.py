"""Alerts on workers whose clock is beyond the maximum offset (pure decision)."""

from __future__ import annotations

from ..common import AlertKind, ClockReport, ClockState
from ._engine import Notice, iso

# A state this short alerts nobody: while workers start, one that has measured
# only a bad peer sits at the midpoint of the two clocks until a third answers.
CLOCK_ALERT_AFTER_MS = 10_000


def clock_notice(worker_id: str, report: ClockReport, now: int) -> Notice | None:
    """The alert for a worker out of bounds for ``CLOCK_ALERT_AFTER_MS``: one per
    episode (``since`` names it)."""
    if report.state is not ClockState.OUT_OF_BOUNDS:
        return None
    if now - report.since < CLOCK_ALERT_AFTER_MS:
        return None
    offset = f"{report.offset_ms:+.0f} ms (± {report.uncertainty_ms:.0f})"
    text = (f"Worker {worker_id}'s clock is {offset} off the cluster's, measured against "
            f"{report.peers} peers; the maximum is {report.max_offset_ms:.0f} ms. It claims "
            f"no tick until its clock is back within. Since {iso(report.since)}.")
    fields = (("Worker", worker_id), ("Offset", offset),
              ("Maximum", f"{report.max_offset_ms:.0f} ms"), ("Since", iso(report.since)))
    return Notice(f"clock_offset:{worker_id}:{report.since}", AlertKind.CLOCK_OFFSET, "",
                  report.since, f"worker {worker_id}'s clock is off by {offset}", text, fields)
