"""The worker's timetable: every job's next tick in one heap.

Pure data structure: callers pass ``now``. Adding, replacing or removing a
job is O(log n); the scheduler sleeps until ``next_due()`` and pops only the
jobs that are due, never scanning the whole table. Replaced and removed
entries stay in the heap as stale tuples and are skipped when popped.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ..common import CronSchedule, Job, next_fire


@dataclass(slots=True)
class Entry:
    job: Job
    next_tick: int | None  # None: the expression never fires again
    generation: int

    @property
    def schedule(self) -> CronSchedule:
        # Not kept per entry: a worker may hold 100,000 jobs, and most share
        # a few schedules (the cache holds those in use).
        return CronSchedule.shared(self.job.schedule, self.job.timezone)


class Timetable:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._heap: list[tuple[int, int, str]] = []  # (due, generation, name)
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def jobs(self) -> list[Job]:
        return [e.job for e in self._entries.values()]

    def set(self, job: Job, after_ms: int) -> Entry:
        """Add or replace ``job``; its next tick is the first after ``after_ms``."""
        self._generation += 1
        entry = Entry(job, next_fire(job.schedule, job.timezone, after_ms), self._generation)
        self._entries[job.name] = entry
        if entry.next_tick is not None:
            heapq.heappush(self._heap, (entry.next_tick, entry.generation, job.name))
        self._compact_if_stale()
        return entry

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)
        self._compact_if_stale()

    def advance(self, name: str, after_ms: int) -> int | None:
        """Move ``name`` to its first tick after ``after_ms``; returns that tick."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        self._generation += 1
        entry.generation = self._generation
        entry.next_tick = entry.schedule.next_after(after_ms)
        if entry.next_tick is not None:
            heapq.heappush(self._heap, (entry.next_tick, entry.generation, name))
        return entry.next_tick

    def defer(self, name: str, due_ms: int) -> None:
        """Make ``name`` due again at ``due_ms`` with the same pending tick (a retry)."""
        entry = self._entries.get(name)
        if entry is None or entry.next_tick is None:
            return
        self._generation += 1
        entry.generation = self._generation
        heapq.heappush(self._heap, (due_ms, entry.generation, name))

    def _drop_stale(self) -> None:
        while self._heap:
            _, generation, name = self._heap[0]
            entry = self._entries.get(name)
            if entry is not None and entry.generation == generation:
                return
            heapq.heappop(self._heap)

    def next_due(self) -> int | None:
        """When the next job is due (epoch ms), or None if nothing is scheduled."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int) -> list[tuple[Entry, int]]:
        """Every (entry, pending tick) due by ``now_ms``, removed from the heap.

        A popped job has no heap entry until ``advance`` (or ``defer``) puts it back.
        """
        due: list[tuple[Entry, int]] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now_ms:
                return due
            _, _, name = heapq.heappop(self._heap)
            entry = self._entries[name]
            assert entry.next_tick is not None
            due.append((entry, entry.next_tick))

    def _compact_if_stale(self) -> None:
        # Keep the heap within a small factor of the live entries (bounded memory
        # under constant edits).
        if len(self._heap) > 2 * len(self._entries) + 1024:
            self._heap = [
                (e.next_tick, e.generation, name)
                for name, e in self._entries.items()
                if e.next_tick is not None
            ]
            heapq.heapify(self._heap)
