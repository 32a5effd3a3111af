"""Prometheus plumbing shared by masters and workers.

Every process (and every in-process master or worker of a test) has its own
``CollectorRegistry``: nothing is registered in prometheus-client's global
default registry. Collectors read the live counters of the objects they
describe at scrape time; nothing is copied in between.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .. import __version__
from ..common import StreamLimits

PREFIX = "cronswarm_"


def new_registry() -> CollectorRegistry:
    """A registry of its own; collectors are not run when registered (they read
    objects that may still be under construction)."""
    return CollectorRegistry(auto_describe=False)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


_Family = TypeVar("_Family", CounterMetricFamily, GaugeMetricFamily)


def _family(kind: type[_Family], name: str, doc: str, value: float | None,
            labels: Mapping[str, float] | None, label: str) -> _Family:
    if labels is None:
        return kind(name, doc, value=value or 0)
    family = kind(name, doc, labels=[label])
    for key, n in sorted(labels.items()):
        family.add_metric([key], n)
    return family


def counter(name: str, doc: str, value: float | None = None,
            labels: Mapping[str, float] | None = None, label: str = "") -> CounterMetricFamily:
    """A counter family: one value, or one per value of ``label``."""
    return _family(CounterMetricFamily, name, doc, value, labels, label)


def gauge(name: str, doc: str, value: float | None = None,
          labels: Mapping[str, float] | None = None, label: str = "") -> GaugeMetricFamily:
    """A gauge family: one value, or one per value of ``label``."""
    return _family(GaugeMetricFamily, name, doc, value, labels, label)


ETCD_KINDS = ("range", "put", "delete", "txn", "lease_grant", "lease_keepalive",
              "lease_revoke", "watch", "status", "authenticate")


class EtcdCollector(Collector):
    """``EtcdStore.stats``: requests by kind and errors (any store with ``stats``)."""

    def __init__(self, store: Any, role: str) -> None:
        self.store = store
        self.role = role

    def collect(self) -> Iterator[Any]:
        stats = getattr(self.store, "stats", None) or {}
        requests = CounterMetricFamily(f"{PREFIX}etcd_requests", "etcd requests sent, by kind",
                                       labels=["role", "kind"])
        for kind in ETCD_KINDS:
            requests.add_metric([self.role, kind], stats.get(kind, 0))
        yield requests
        errors = CounterMetricFamily(f"{PREFIX}etcd_errors", "etcd requests that failed",
                                     labels=["role"])
        errors.add_metric([self.role], stats.get("errors", 0))
        yield errors


class StreamsCollector(Collector):
    """Live output streams open now, and those refused by each limit."""

    def __init__(self, limits: StreamLimits) -> None:
        self.limits = limits

    def collect(self) -> Iterator[Any]:
        yield gauge(f"{PREFIX}live_streams", "live output streams open now",
                    self.limits.open_streams)
        yield counter(f"{PREFIX}live_streams_refused", "live output streams refused (429), "
                      "by the limit reached", labels=dict(self.limits.refused), label="limit")


class InfoCollector(Collector):
    """``cronswarm_build_info{version, role, id} 1``."""

    def __init__(self, role: str, ident: str) -> None:
        self.role = role
        self.ident = ident

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily(f"{PREFIX}build_info", "this process: version, role and id",
                                   labels=["version", "role", "id"])
        family.add_metric([__version__, self.role, self.ident], 1)
        yield family


def process_registry(role: str, ident: str, store: Any, own: Collector,
                     streams: StreamLimits | None) -> CollectorRegistry:
    """The registry of one master or worker: its build info, ``own`` metrics,
    its etcd traffic and, when it serves live streams, theirs."""
    registry = new_registry()
    registry.register(InfoCollector(role, ident))
    registry.register(own)
    registry.register(EtcdCollector(store, role))
    if streams is not None:
        registry.register(StreamsCollector(streams))
    return registry
