"""What a worker has recorded: final runs by status and the fire lag of each run.

``CountingSink`` sits in front of the worker's run sink and counts every
record as it is handed over, so the counts are exactly what this worker
wrote to the run history (a lost run is recorded by the master, not here).
Plain counters: the metrics module turns them into Prometheus families.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from ..common import RunRecord, RunStatus, Trigger
from ._sink import RunSink

# Seconds from the scheduled instant to the start of the run's first attempt.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Records per bulk write of the log writer, and how long a write took.
FLUSH_SIZE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
FLUSH_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0)
_LAGGED = frozenset({Trigger.SCHEDULE, Trigger.CATCH_UP})


class LagHistogram:
    def __init__(self, buckets: tuple[float, ...] = LAG_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, count at or below it) per bucket, ``+Inf`` last."""
        out = []
        total = 0
        for bound, n in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class FlushStats:
    """The log writer's bulk writes (its ``on_flush`` events, which carry ``records``
    and ``seconds``): how many records each wrote and how long it took."""

    def __init__(self) -> None:
        self.sizes = LagHistogram(FLUSH_SIZE_BUCKETS)
        self.seconds = LagHistogram(FLUSH_SECONDS_BUCKETS)

    def observe(self, event: Any) -> None:
        self.sizes.observe(float(getattr(event, "records", 0)))
        self.seconds.observe(float(getattr(event, "seconds", 0.0)))

    def follow(self, writer: object) -> None:
        """Observe ``writer``'s flushes, if it reports them (an ``on_flush`` hook);
        a hook already set is still called."""
        if not hasattr(writer, "on_flush"):
            return
        previous = writer.on_flush

        def on_flush(event: Any) -> None:
            self.observe(event)
            if previous is not None:
                previous(event)

        writer.on_flush = on_flush


class RunStats:
    def __init__(self) -> None:
        self.recorded: Counter[str] = Counter()  # final records by status
        self.started = 0  # attempts started (their running record)
        self.lag = LagHistogram()

    def note(self, record: RunRecord) -> None:
        if record.status is RunStatus.RUNNING:
            self.started += 1
            lag = record.lag
            if record.attempt == 1 and record.trigger in _LAGGED and lag is not None:
                self.lag.observe(max(0.0, lag))
        else:
            self.recorded[record.status.value] += 1


class CountingSink:
    """A ``RunSink`` that counts what passes through it, then hands it on."""

    def __init__(self, inner: RunSink, stats: RunStats) -> None:
        self.inner = inner
        self.stats = stats

    async def submit(self, record: RunRecord) -> None:
        self.stats.note(record)
        await self.inner.submit(record)

    async def run(self) -> None:
        await self.inner.run()

    async def close(self) -> None:
        await self.inner.close()
