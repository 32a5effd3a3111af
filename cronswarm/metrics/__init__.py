"""Prometheus metrics of masters and workers (prometheus-client, one registry per
process object; served at ``/metrics``)."""

from ._common import PREFIX, EtcdCollector, InfoCollector, new_registry, render
from ._master import ClusterView, MasterCollector, master_registry
from ._worker import WorkerCollector, worker_registry

__all__ = [
    "PREFIX",
    "ClusterView",
    "EtcdCollector",
    "InfoCollector",
    "MasterCollector",
    "WorkerCollector",
    "master_registry",
    "new_registry",
    "render",
    "worker_registry",
]
