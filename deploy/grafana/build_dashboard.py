"""Build the Grafana dashboard of cronswarm (``cronswarm.json`` beside this file).

The dashboard is data: panels are made here and written with ``json.dumps``.
Run ``python deploy/grafana/build_dashboard.py`` after changing a panel; a
unit test checks that the JSON file is this script's output and that every
metric its queries name is one that masters or workers export.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("cronswarm.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
WIDTH = 24


class Layout:
    """Places panels left to right, rows of 24 grid units."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def place(self, w: int, h: int) -> dict[str, int]:
        if self.x + w > WIDTH:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_height = max(self.row_height, h)
        return pos

    def new_row(self) -> None:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0

    def ident(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(layout: Layout, title: str, targets: list[tuple[str, str]], *, unit: str = "short",
          kind: str = "timeseries", w: int = 8, h: int = 8, description: str = "",
          thresholds: list[tuple[float | None, str]] | None = None) -> dict[str, Any]:
    steps = [{"color": color, "value": value}
             for value, color in (thresholds or [(None, "green")])]
    return {
        "id": layout.ident(),
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": layout.place(w, h),
        "fieldConfig": {"defaults": {"unit": unit,
                                     "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries" else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [target(expr, legend, chr(ord("A") + i))
                    for i, (expr, legend) in enumerate(targets)],
    }


def row(layout: Layout, title: str) -> dict[str, Any]:
    layout.new_row()
    pos = layout.place(WIDTH, 1)
    layout.new_row()
    return {"id": layout.ident(), "type": "row", "title": title, "collapsed": False,
            "gridPos": pos, "panels": []}


def rate(metric: str, by: str = "", window: str = "$__rate_interval") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping}(rate({metric}[{window}]))"


def quantile(q: float, histogram: str) -> str:
    return (f"histogram_quantile({q}, sum by (le) "
            f"(rate({histogram}_bucket[$__rate_interval])))")


def panels() -> list[dict[str, Any]]:
    L = Layout()  # noqa: N806 - reads like the grid it is
    lag = "cronswarm_fire_lag_seconds"
    return [
        row(L, "Overview"),
        panel(L, "Workers alive", [("max(cronswarm_cluster_workers)", "registered")],
              kind="stat", w=4, h=4, thresholds=[(None, "red"), (1, "green")]),
        panel(L, "Runs in progress", [("sum(cronswarm_running_runs)", "running")],
              kind="stat", w=4, h=4),
        panel(L, "Leaders", [("sum(cronswarm_leader)", "leaders")], kind="stat", w=4, h=4,
              description="masters acting as leader: 1 is healthy",
              thresholds=[(None, "red"), (1, "green"), (2, "red")]),
        panel(L, "Jobs", [("max(cronswarm_cluster_jobs)", "jobs"),
                          ("max(cronswarm_cluster_jobs_enabled)", "enabled")],
              kind="stat", w=4, h=4),
        panel(L, "Failed runs (1h)", [(
            ('sum(increase(cronswarm_runs_total{status=~"failed|timeout"}[1h]))'
            " + sum(increase(cronswarm_runs_lost_total[1h]))"), "failed")],
              kind="stat", w=4, h=4, thresholds=[(None, "green"), (1, "orange")]),
        panel(L, "Alerts not delivered (1h)",
              [("sum(increase(cronswarm_alerts_failed_total[1h]))", "failed")],
              kind="stat", w=4, h=4, thresholds=[(None, "green"), (1, "red")]),
        row(L, "Lag and throughput"),
        panel(L, "Fire lag", [
            (quantile(0.5, lag), "p50"),
            (quantile(0.95, lag), "p95"),
            (quantile(0.99, lag), "p99"),
        ], unit="s", w=12, description="from a tick's scheduled instant to its start"),
        panel(L, "Runs by status", [(rate("cronswarm_runs_total", "status"), "{{status}}"),
                                    (rate("cronswarm_runs_lost_total"), "lost")],
              unit="ops", w=12),
        panel(L, "Failures", [
            (rate('cronswarm_runs_total{status=~"failed|timeout|killed"}', "status"),
             "{{status}}"),
            (rate("cronswarm_runs_lost_total"), "lost")], unit="ops", w=8),
        panel(L, "Claims", [(rate("cronswarm_claims_total", "outcome"), "{{outcome}}"),
                            (rate("cronswarm_claim_errors_total"), "errors"),
                            (rate("cronswarm_handoffs_saved_total"), "hand-offs saved")],
              unit="ops", w=8),
        panel(L, "Missed ticks", [
            ("sum(increase(cronswarm_missed_ticks_total[$__rate_interval]))", "missed")],
              w=8, description="ticks skipped by the misfire policy"),
        row(L, "Workers"),
        panel(L, "Runs in progress per worker",
              [(('sum by (id) (cronswarm_running_runs * on (instance) group_left (id) '
                'cronswarm_build_info{role="worker"})'), "{{id}}")], w=8),
        panel(L, "Throughput per worker",
              [(('sum by (id) (rate(cronswarm_attempts_started_total[$__rate_interval]) '
                '* on (instance) group_left (id) cronswarm_build_info{role="worker"})'),
                "{{id}}")], unit="ops", w=8),
        panel(L, "Jobs scheduled per worker",
              [(('sum by (id) (cronswarm_worker_jobs * on (instance) group_left (id) '
                'cronswarm_build_info{role="worker"})'), "{{id}}")], w=8),
        panel(L, "Worker lease renewals",
              [("sum(increase(cronswarm_lease_renewals_total[$__rate_interval]))",
                "renewals")], w=8,
              description="a worker cut off from etcd for longer than its lease"),
        row(L, "Log writer"),
        panel(L, "Writer queue and spool", [
            ("sum(cronswarm_log_writer_queue_records)", "queued records"),
            ("sum(cronswarm_log_writer_backlog)", "workers with a disk backlog")], w=8),
        panel(L, "Spool size", [("sum(cronswarm_log_writer_spool_bytes)", "spool")],
              unit="bytes", w=8),
        panel(L, "Writer throughput", [
            (rate("cronswarm_log_writer_records_total", "outcome"), "{{outcome}}"),
            (rate("cronswarm_log_writer_write_errors_total"), "write errors")],
              unit="ops", w=8),
        panel(L, "Records per bulk write", [
            (quantile(0.5, "cronswarm_log_writer_flush_records"), "p50"),
            (quantile(0.95, "cronswarm_log_writer_flush_records"), "p95")], w=12),
        panel(L, "Bulk write time", [
            (quantile(0.95, "cronswarm_log_writer_flush_seconds"), "p95")], unit="s", w=12),
        row(L, "etcd"),
        panel(L, "etcd requests", [(rate("cronswarm_etcd_requests_total", "role, kind"),
                                    "{{role}} {{kind}}")], unit="reqps", w=12),
        panel(L, "etcd errors", [(rate("cronswarm_etcd_errors_total", "role"), "{{role}}")],
              unit="reqps", w=12),
        row(L, "Leader and alerts"),
        panel(L, "Leader term", [("max(cronswarm_leader_term)", "term"),
                                 ("sum(cronswarm_leader)", "leaders")], w=8),
        panel(L, "Leader duties", [
            (rate("cronswarm_leader_duty_runs_total", "duty"), "{{duty}}"),
            (rate("cronswarm_leader_duty_errors_total", "duty"), "{{duty}} errors")],
              unit="ops", w=8),
        panel(L, "Alerts", [
            ("sum by (kind) (increase(cronswarm_alerts_total[$__rate_interval]))",
             "{{kind}}"),
            ("sum(increase(cronswarm_alerts_suppressed_total[$__rate_interval]))",
             "suppressed (silence window)")], w=8),
        panel(L, "Alert deliveries", [
            (("sum by (channel_type) (increase(cronswarm_alerts_sent_total"
             "[$__rate_interval]))"), "sent {{channel_type}}"),
            (("sum by (channel_type) (increase(cronswarm_alerts_failed_total"
             "[$__rate_interval]))"), "failed {{channel_type}}"),
            (("sum by (channel_type) (increase(cronswarm_alerts_retried_total"
             "[$__rate_interval]))"), "retried {{channel_type}}")], w=12),
        panel(L, "Housekeeping", [
            ("sum(increase(cronswarm_orphan_tokens_removed_total[$__rate_interval]))",
             "orphan tokens removed")], w=12),
        panel(L, "Live output streams", [
            ("sum(cronswarm_live_streams)", "open"),
            (("sum by (limit) (increase(cronswarm_live_streams_refused_total"
              "[$__rate_interval]))"), "refused ({{limit}})")], w=12),
    ]


def dashboard() -> dict[str, Any]:
    return {
        "uid": "cronswarm",
        "title": "cronswarm",
        "description": "A distributed crontab: lag, throughput, failures, workers, etcd, "
                       "leader and alerts",
        "tags": ["cronswarm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "type": "datasource", "query": "prometheus",
            "label": "Prometheus", "current": {}, "hide": 0,
        }]},
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    sys.stdout.write(f"wrote {OUT}\n")
