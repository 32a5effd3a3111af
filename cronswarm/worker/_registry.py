"""The worker's entry in ``/workers/<id>``: who it is and how loaded it is."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Any

import psutil

from .. import __version__
from ..coord import KeyValue


class WorkerInfo:
    """Builds the registry value; CPU percent is measured between calls."""

    def __init__(self, worker_id: str, labels: Mapping[str, str], started_ms: int) -> None:
        self.worker_id = worker_id
        self.labels = dict(labels)
        self.started_ms = started_ms
        self.http: str | None = None  # base URL of the live output endpoint (``_live``)
        self.clock: dict[str, Any] | None = None  # its offset from the cluster (``_clock_sync``)
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # prime the measurement

    def snapshot(self, *, running: int, now_ms: int, max_runs: int) -> dict[str, Any]:
        try:
            load1, load5, load15 = os.getloadavg()
        except OSError:
            load1 = load5 = load15 = 0.0
        mem = self._proc.memory_info()
        vm = psutil.virtual_memory()
        return {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "labels": self.labels,
            "started": self.started_ms,
            "updated": now_ms,
            "cpu_percent": self._proc.cpu_percent(None),
            "host_cpu_percent": psutil.cpu_percent(None),
            "cpu_count": psutil.cpu_count() or 1,
            "rss_bytes": mem.rss,
            "host_memory_percent": vm.percent,
            "load": [round(load1, 2), round(load5, 2), round(load15, 2)],
            "running": running,
            "max_runs": max_runs,
            "http": self.http,
            "clock": self.clock,
        }

    def encode(self, **kwargs: Any) -> bytes:
        return json.dumps(self.snapshot(**kwargs), separators=(",", ":")).encode()


def registered_labels(kv: KeyValue) -> dict[str, str]:
    """The labels in a worker's registry value (empty when unreadable)."""
    try:
        labels = json.loads(kv.value).get("labels") or {}
    except (ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
