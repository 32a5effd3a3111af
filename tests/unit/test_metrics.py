"""Metrics collectors (read live counters, one registry per object) and the Grafana
dashboard (built by its script, naming only metrics the code exports)."""

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from cronswarm import __version__
from cronswarm.alerts import AlertStats
from cronswarm.common import RunRecord, RunStatus, Settings, StreamLimits, Trigger
from cronswarm.coord import EtcdStore
from cronswarm.metrics import ClusterView, master_registry, render, worker_registry
from cronswarm.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "cronswarm.json"
T0 = 1_767_225_600_000


class NullSink:
    def __init__(self) -> None:
        self.records: list[RunRecord] = []

    async def submit(self, record: RunRecord) -> None:
        self.records.append(record)

    async def run(self) -> None:
        return None

    async def close(self) -> None:
        return None


class FakeWriter(NullSink):
    """What the batching log writer reports: queue, spool, counters, flushes."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_depth = 3
        self.spool_bytes = 4096
        self.backlog = True
        self.counters = SimpleNamespace(queued=10, spooled=2, written=9, replayed=1, failed=0,
                                        write_errors=4)
        self.flushed: list[Any] = []
        self.on_flush: Any = self.flushed.append  # a hook set before the worker's


def settings() -> Settings:
    return Settings.load({}, etcd_endpoints=("127.0.0.1:1",), mongodb_uri="mongodb://x",
                         worker_id="w1")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def record(status: RunStatus, lag_ms: int, *, attempt: int = 1,
           trigger: Trigger = Trigger.SCHEDULE) -> RunRecord:
    return RunRecord(run_id=f"j@{T0}", job="j", tick=T0, attempt=attempt, worker="w1",
                     summary="true", status=status, trigger=trigger, started=T0 + lag_ms,
                     ended=T0 + lag_ms + 5)


async def test_worker_metrics_count_what_the_worker_recorded() -> None:
    store = EtcdStore(["127.0.0.1:1"])
    worker = Worker(settings(), store, NullSink())
    for status, lag in [(RunStatus.SUCCEEDED, 3), (RunStatus.SUCCEEDED, 30),
                        (RunStatus.FAILED, 700), (RunStatus.TIMEOUT, 20_000)]:
        await worker.sink.submit(record(RunStatus.RUNNING, lag))
        await worker.sink.submit(record(status, lag))
    await worker.sink.submit(record(RunStatus.RUNNING, 90_000, attempt=2,
                                    trigger=Trigger.RETRY))  # a retry: no fire lag
    await worker.sink.submit(record(RunStatus.SKIPPED, 0))
    worker.counters.update(claims_won=5, claims_lost=7, ticks_skipped=2)
    store.stats.update(txn=12, range=3, errors=1)
    one = worker_registry(worker)
    other = worker_registry(Worker(settings(), EtcdStore(["127.0.0.1:1"]), NullSink()))
    body, content_type = render(one)
    assert content_type.startswith("text/plain")
    got = samples(body.decode())
    assert got[("cronswarm_runs_total", (("status", "succeeded"),))] == 2
    assert got[("cronswarm_runs_total", (("status", "failed"),))] == 1
    assert got[("cronswarm_runs_total", (("status", "timeout"),))] == 1
    assert got[("cronswarm_runs_total", (("status", "skipped"),))] == 1
    assert got[("cronswarm_attempts_started_total", ())] == 5
    assert got[("cronswarm_claims_total", (("outcome", "won"),))] == 5
    assert got[("cronswarm_claims_total", (("outcome", "lost"),))] == 7
    assert got[("cronswarm_missed_ticks_total", ())] == 2
    assert got[("cronswarm_fire_lag_seconds_count", ())] == 4
    assert got[("cronswarm_fire_lag_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("cronswarm_fire_lag_seconds_bucket", (("le", "1.0"),))] == 3
    assert got[("cronswarm_fire_lag_seconds_bucket", (("le", "+Inf"),))] == 4
    assert abs(got[("cronswarm_fire_lag_seconds_sum", ())] - 20.733) < 1e-9
    assert got[("cronswarm_etcd_requests_total", (("kind", "txn"), ("role", "worker")))] == 12
    assert got[("cronswarm_etcd_errors_total", (("role", "worker"),))] == 1
    assert got[("cronswarm_build_info", (("id", "w1"), ("role", "worker"),
                                         ("version", __version__)))] == 1
    # Another worker in the same process has its own registry and counts.
    assert samples(render(other)[0].decode())[
        ("cronswarm_runs_total", (("status", "succeeded"),))] == 0


async def test_worker_metrics_report_the_log_writer() -> None:
    writer = FakeWriter()
    worker = Worker(settings(), EtcdStore(["127.0.0.1:1"]), writer)
    for records, seconds in ((1, 0.002), (40, 0.03), (200, 0.3)):
        writer.on_flush(SimpleNamespace(records=records, seconds=seconds))
    assert len(writer.flushed) == 3  # the hook set before still sees every flush
    got = samples(render(worker_registry(worker))[0].decode())
    assert got[("cronswarm_log_writer_queue_records", ())] == 3
    assert got[("cronswarm_log_writer_spool_bytes", ())] == 4096
    assert got[("cronswarm_log_writer_backlog", ())] == 1
    assert got[("cronswarm_log_writer_records_total", (("outcome", "spooled"),))] == 2
    assert got[("cronswarm_log_writer_write_errors_total", ())] == 4
    assert got[("cronswarm_log_writer_flush_records_count", ())] == 3
    assert got[("cronswarm_log_writer_flush_records_sum", ())] == 241
    assert got[("cronswarm_log_writer_flush_records_bucket", (("le", "50.0"),))] == 2
    assert got[("cronswarm_log_writer_flush_seconds_bucket", (("le", "0.005"),))] == 1


def master_objects() -> tuple[Any, Any, ClusterView]:
    election = SimpleNamespace(is_leader=True, terms_won=2, term=SimpleNamespace(number=41))
    stats = AlertStats()
    stats.notices.update(failure=3, recovery=1)
    stats.sent.update(webhook=4, email=4)
    stats.failed.update(slack=1)
    stats.suppressed = 17
    monitor = SimpleNamespace(jobs={"a": SimpleNamespace(enabled=True),
                                    "b": SimpleNamespace(enabled=False)})
    leader = SimpleNamespace(duty_runs=Counter({"alerts": 9}), duty_errors=Counter(),
                             runs_lost=2, orphans_removed=0, retries_requested=1,
                             alert_stats=stats, monitor=monitor,
                             reaper=SimpleNamespace(unsettled=4))
    cluster = ClusterView(None, None)  # type: ignore[arg-type]
    cluster.workers, cluster.running, cluster.ok = 3, 1, True
    return election, leader, cluster


def test_master_metrics_show_leadership_duties_and_alerts() -> None:
    election, leader, cluster = master_objects()
    got = samples(render(master_registry("m1", EtcdStore(["127.0.0.1:1"]), election, leader,
                                         cluster))[0].decode())
    assert got[("cronswarm_leader", ())] == 1
    assert got[("cronswarm_leader_term", ())] == 41
    assert got[("cronswarm_leader_duty_runs_total", (("duty", "alerts"),))] == 9
    assert got[("cronswarm_runs_lost_total", ())] == 2
    assert got[("cronswarm_alerts_total", (("kind", "failure"),))] == 3
    assert got[("cronswarm_alerts_sent_total", (("channel_type", "email"),))] == 4
    assert got[("cronswarm_alerts_failed_total", (("channel_type", "slack"),))] == 1
    assert got[("cronswarm_alerts_suppressed_total", ())] == 17
    assert got[("cronswarm_cluster_jobs_enabled", ())] == 1
    assert got[("cronswarm_lost_verdicts_waiting", ())] == 4
    assert got[("cronswarm_cluster_workers", ())] == 3


def exported_names() -> set[str]:
    """Every sample name masters and workers can export."""
    election, leader, cluster = master_objects()
    worker = Worker(settings(), EtcdStore(["127.0.0.1:1"]), FakeWriter())
    names = set()
    for registry in (master_registry("m1", EtcdStore(["127.0.0.1:1"]), election, leader,
                                     cluster, streams=StreamLimits(server="master")),
                     worker.metrics):  # the worker's own registry, its live streams included
        for family in registry.collect():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def dashboard_exprs(doc: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_the_grafana_dashboard_is_built_by_its_script_and_names_only_real_metrics() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboard",
                                                  DASHBOARD.with_name("build_dashboard.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = DASHBOARD.read_text()
    assert text == module.render(), "run deploy/grafana/build_dashboard.py"
    doc = json.loads(text)
    exprs = dashboard_exprs(doc)
    assert len(exprs) >= 20
    known = exported_names()
    used = {name for expr in exprs for name in re.findall(r"\bcronswarm_[a-z_]+", expr)}
    assert used, exprs
    assert used <= known, sorted(used - known)
    # The promised views are all there.
    titles = {p["title"] for p in doc["panels"]}
    assert {"Fire lag", "Runs by status", "Failures", "Workers alive"} <= titles
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
