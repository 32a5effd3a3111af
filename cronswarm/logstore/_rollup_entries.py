"""What the run rollups keep of run documents, and in what order (pure).

A run document's place is (tick, attempt, seq), kept as one comparable
string (``order``); ``recent`` keeps a few fields of a job's newest run
documents, one entry per state written, and a reader keeps the highest
``seq`` of each (see ``_last_runs.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ..common import to_ms

Doc = dict[str, Any]

RECENT_KEPT = 24  # runs kept per job in run_trend (the trend shows 20; room for stale states)
_RECENT_FIELDS = ("_id", "run_id", "job", "tick", "attempt", "seq", "status", "started",
                  "ended")  # what a trend shows (a bar's height is ended - started)


def run_order(doc: Mapping[str, Any]) -> str:
    tick = doc["tick"]
    if tick.tzinfo is None:
        tick = tick.replace(tzinfo=dt.UTC)
    return f"{to_ms(tick):016d}.{doc['attempt']:06d}.{doc['seq']}"


def recent_entry(doc: Mapping[str, Any]) -> Doc:
    """What ``recent`` keeps of a run document."""
    return {k: doc.get(k) for k in _RECENT_FIELDS}


def keep_newer(kept: dict[Any, Any], entry: Mapping[str, Any]) -> None:
    """Keep ``entry`` in ``kept`` (by run document id) unless a later state
    (higher ``seq``) of its run document is there already."""
    held = kept.get(entry["_id"])
    if held is None or (entry.get("seq") or 0) >= (held.get("seq") or 0):
        kept[entry["_id"]] = entry


def newest_states(entries: Iterable[Mapping[str, Any]]) -> list[Doc]:
    """``recent`` as stored (oldest first, maybe a stale state twice) to the
    newest state of each run document, newest first."""
    best: dict[Any, Mapping[str, Any]] = {}
    for entry in entries:
        keep_newer(best, entry)
    return sorted((dict(e) for e in best.values()),
                  key=lambda e: (e["tick"], e["attempt"]), reverse=True)


class Held:
    """What one job's rollups are to get: its newest run document and the
    newest state of each of its run documents seen since the last write."""

    __slots__ = ("due", "expire_at", "job", "newest", "pull", "recent")

    def __init__(self, job: str) -> None:
        self.job = job
        self.newest: Mapping[str, Any] | None = None
        self.recent: dict[Any, Doc] = {}
        self.pull: set[Any] = set()
        self.expire_at: dt.datetime | None = None
        self.due = 0.0  # loop time it is written at, held back

    @property
    def status(self) -> str | None:
        return None if self.newest is None else str(self.newest["status"])

    def add(self, docs: Iterable[Mapping[str, Any]], replaced: Collection[Any],
            keep: dt.timedelta) -> None:
        for doc in docs:
            if self.newest is None or run_order(doc) >= run_order(self.newest):
                self.newest = doc
            keep_newer(self.recent, recent_entry(doc))
            if doc["_id"] in replaced:
                self.pull.add(doc["_id"])
            until = doc.get("expire_at") or doc["tick"] + keep
            self.expire_at = until if self.expire_at is None else max(self.expire_at, until)
        if len(self.recent) > RECENT_KEPT:  # only the newest are kept anyway
            newest = sorted(self.recent.values(), key=lambda e: (e["tick"], e["attempt"]))
            self.recent = {e["_id"]: e for e in newest[-RECENT_KEPT:]}

    def merge(self, other: Held) -> None:
        """Add what ``other`` holds (of the same job)."""
        if other.newest is not None and (self.newest is None
                                         or run_order(other.newest) >= run_order(self.newest)):
            self.newest = other.newest
        for entry in other.recent.values():
            keep_newer(self.recent, entry)
        self.pull |= other.pull
        if other.expire_at is not None:
            self.expire_at = (other.expire_at if self.expire_at is None
                              else max(self.expire_at, other.expire_at))
