"""Time windows for "the newest N runs" queries (pure).

Run history is read newest first. Rather than asking the server to sort a
whole collection (or a whole job's history) and keep N, the log store reads
consecutive tick windows going back in time — small first, growing
geometrically — each on an index whose leading fields are the equality filters
and then ``tick``, and stops as soon as it has N. Each window's result is
bounded by what it holds, so a page costs about N documents on a busy
cluster and a few empty index probes on an idle one, on any server.
"""

from __future__ import annotations

from collections.abc import Iterator

FUTURE_MARGIN_MS = 24 * 3600 * 1000  # ticks of workers whose clocks run ahead
FIRST_WINDOW_MS = 5_000
GROWTH = 4
MAX_PROBES = 6  # then one last window down to the floor


def windows(hi: int, floor: int, first: int = FIRST_WINDOW_MS, growth: int = GROWTH,
            probes: int = MAX_PROBES) -> Iterator[tuple[int, int]]:
    """Consecutive ``[lo, hi)`` windows going back from ``hi`` down to ``floor``:
    the first ``first`` ms long, each ``growth`` times the previous, and after
    ``probes`` of them one window for all that is left."""
    size = max(1, first)
    for _ in range(probes):
        if hi <= floor:
            return
        lo = max(floor, hi - size)
        yield lo, hi
        hi = lo
        size *= growth
    if hi > floor:
        yield floor, hi
