"""A worker's metrics: claims, runs by status, fire lag, running runs, its etcd
traffic, and its log writer's queue and spool (when the writer counts them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from ..common import RunStatus, StreamLimits
from ._common import PREFIX, counter, gauge, process_registry

if TYPE_CHECKING:
    from ..worker import Worker
    from ..worker._stats import FlushStats, LagHistogram

FINAL_STATUSES = tuple(s.value for s in RunStatus if s.final and s is not RunStatus.LOST)


class WorkerCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Any]:
        w = self.worker
        c = w.counters
        yield counter(f"{PREFIX}claims_total", "tick claims by outcome: won (run it), lost "
                      "(another worker had it), skipped (won, but the overlap policy skipped it)",
                      labels={"won": c["claims_won"], "lost": c["claims_lost"],
                              "skipped": c["claims_skipped"]}, label="outcome")
        yield counter(f"{PREFIX}claim_errors_total", "claims that failed for want of etcd",
                      c["claim_errors"])
        yield counter(f"{PREFIX}handoffs_saved_total", "ticks not claimed because the owner "
                      "worker had claimed them within the hand-off delay", c["handoffs_saved"])
        yield counter(f"{PREFIX}missed_ticks_total", "ticks skipped by the misfire policy "
                      "(workers or etcd were down when they were due)", c["ticks_skipped"])
        stats = w.run_stats
        yield counter(f"{PREFIX}runs_total", "run records this worker wrote with a final "
                      "status, by status", labels={s: stats.recorded.get(s, 0)
                                                   for s in FINAL_STATUSES}, label="status")
        yield counter(f"{PREFIX}attempts_started_total", "attempts started (retries included)",
                      stats.started)
        yield _histogram(f"{PREFIX}fire_lag_seconds", "seconds from a tick's scheduled "
                         "instant to the start of its run", stats.lag)
        yield gauge(f"{PREFIX}running_runs", "runs in progress on this worker", len(w.runs))
        yield gauge(f"{PREFIX}worker_jobs", "jobs this worker schedules (enabled, matching "
                    "its labels)", len(w.timetable))
        yield counter(f"{PREFIX}lease_renewals_total", "times the worker lease expired and "
                      "was granted again", w.lease.renewals)
        yield from _writer_metrics(w.log_sink, w.flush_stats)


def _histogram(name: str, doc: str, hist: LagHistogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=hist.cumulative(), sum_value=hist.sum)


WRITER_OUTCOMES = ("queued", "spooled", "written", "replayed", "failed")


def _writer_metrics(sink: Any, flushes: FlushStats) -> Iterator[Any]:
    """The log writer's queue, spool and bulk writes, when it reports them
    (``queue_depth``, ``spool_bytes``, ``backlog``, ``counters``, ``on_flush``)."""
    if hasattr(sink, "queue_depth"):
        yield gauge(f"{PREFIX}log_writer_queue_records", "records waiting in the log "
                    "writer's memory queue", sink.queue_depth)
    if hasattr(sink, "spool_bytes"):
        yield gauge(f"{PREFIX}log_writer_spool_bytes", "bytes in the log writer's local "
                    "spool (records not yet known to be in MongoDB)", sink.spool_bytes)
    if hasattr(sink, "backlog"):
        yield gauge(f"{PREFIX}log_writer_backlog", "1 while records wait on disk only "
                    "(MongoDB slow or down)", 1 if sink.backlog else 0)
    counters = getattr(sink, "counters", None)
    if counters is not None:
        yield counter(f"{PREFIX}log_writer_records_total", "records through the log writer, "
                      "by outcome", labels={o: getattr(counters, o, 0) for o in WRITER_OUTCOMES},
                      label="outcome")
        yield counter(f"{PREFIX}log_writer_write_errors_total", "bulk writes to MongoDB that "
                      "failed and were retried", getattr(counters, "write_errors", 0))
    if hasattr(sink, "on_flush"):
        yield _histogram(f"{PREFIX}log_writer_flush_records", "records per bulk write",
                         flushes.sizes)
        yield _histogram(f"{PREFIX}log_writer_flush_seconds", "seconds per bulk write",
                         flushes.seconds)


def worker_registry(worker: Worker, streams: StreamLimits | None = None) -> CollectorRegistry:
    """A registry of its own describing ``worker`` (and its live output streams)."""
    return process_registry("worker", worker.id, worker.store, WorkerCollector(worker), streams)
