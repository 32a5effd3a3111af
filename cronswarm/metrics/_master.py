"""A master's metrics: leadership, the duties it ran as leader, alerts, its etcd
traffic, and a view of the cluster (registered workers, running runs) read from
etcd when scraped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from ..common import ALERT_KINDS, Keyspace, ServiceUnavailable, StreamLimits
from ..coord import CoordStore, Election
from ._common import PREFIX, counter, gauge, process_registry

if TYPE_CHECKING:
    from ..master._leader import LeaderDuties

CHANNEL_TYPES = ("email", "webhook", "slack", "feishu")


class ClusterView:
    """Counts read from etcd just before a scrape (small prefixes only)."""

    def __init__(self, store: CoordStore, keys: Keyspace) -> None:
        self.store = store
        self.keys = keys
        self.workers: float = 0
        self.running: float = 0
        self.ok = False

    async def refresh(self) -> None:
        try:
            workers, _ = await self.store.get_prefix(self.keys.workers)
            running, _ = await self.store.get_prefix(self.keys.running_dir)
        except ServiceUnavailable:  # the scrape still answers with the rest
            self.ok = False
            return
        self.workers, self.running, self.ok = len(workers), len(running), True


class MasterCollector(Collector):
    def __init__(self, election: Election, leader: LeaderDuties, cluster: ClusterView) -> None:
        self.election = election
        self.leader = leader
        self.cluster = cluster

    def collect(self) -> Iterator[Any]:
        e, d = self.election, self.leader
        yield gauge(f"{PREFIX}leader", "1 while this master is the elected leader",
                    1 if e.is_leader else 0)
        yield counter(f"{PREFIX}leader_terms_total", "terms this master won", e.terms_won)
        term = e.term.number if e.term is not None else 0
        yield gauge(f"{PREFIX}leader_term", "the term this master leads (0: not leading)", term)
        yield counter(f"{PREFIX}leader_duty_runs_total", "units of leader duties run, by duty",
                      labels=dict(d.duty_runs), label="duty")
        yield counter(f"{PREFIX}leader_duty_errors_total", "units of leader duties that failed "
                      "for want of etcd or MongoDB, by duty", labels=dict(d.duty_errors),
                      label="duty")
        yield counter(f"{PREFIX}runs_lost_total", "runs this master marked lost (their "
                      "worker died)", d.runs_lost)
        yield counter(f"{PREFIX}lost_runs_retried_total", "lost runs whose next attempt this "
                      "master asked the workers for", d.retries_requested)
        yield counter(f"{PREFIX}orphan_tokens_removed_total", "fencing tokens of deleted jobs "
                      "removed by housekeeping", d.orphans_removed)
        s = d.alert_stats
        yield counter(f"{PREFIX}alerts_total", "alerts decided, by kind",
                      labels={k: s.notices.get(k, 0) for k in ALERT_KINDS}, label="kind")
        yield counter(f"{PREFIX}alerts_suppressed_total", "problems not alerted: inside the "
                      "job's silence window", s.suppressed)
        for name, values, doc in (
                ("sent", s.sent, "alert deliveries that succeeded, by channel type"),
                ("failed", s.failed, "alert deliveries given up, by channel type"),
                ("retried", s.retried, "alert delivery attempts repeated after a failure")):
            yield counter(f"{PREFIX}alerts_{name}_total", doc,
                          labels={t: values.get(t, 0) for t in (*CHANNEL_TYPES, *values)},
                          label="channel_type")
        monitor = d.monitor if e.is_leader else None
        if monitor is not None:
            yield gauge(f"{PREFIX}cluster_jobs", "jobs in etcd (the leader's count)",
                        len(monitor.jobs))
            yield gauge(f"{PREFIX}cluster_jobs_enabled", "jobs not paused (the leader's count)",
                        sum(1 for w in monitor.jobs.values() if w.enabled))
        reaper = d.reaper if e.is_leader else None
        if reaper is not None:
            yield gauge(f"{PREFIX}lost_verdicts_waiting", "runs whose lost-run verdict is "
                        "not settled yet: due after its margin, or waiting for etcd or MongoDB",
                        reaper.unsettled)
        if self.cluster.ok:
            yield gauge(f"{PREFIX}cluster_workers", "workers registered in etcd (alive)",
                        self.cluster.workers)
            yield gauge(f"{PREFIX}cluster_running_runs", "runs in progress in the cluster",
                        self.cluster.running)


def master_registry(master_id: str, store: CoordStore, election: Election,
                    leader: LeaderDuties, cluster: ClusterView,
                    streams: StreamLimits | None = None) -> CollectorRegistry:
    own = MasterCollector(election, leader, cluster)
    return process_registry("master", master_id, store, own, streams)
