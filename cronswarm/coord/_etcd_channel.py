"""The gRPC channel to an etcd cluster: every endpoint, fail-over, keepalive, TLS."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import grpc

from ._etcd_tls import EtcdTls, target_name_override

_CHANNEL_OPTIONS = (
    # etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time)
    # and, by default, any ping while no call is open (it answers GOAWAY
    # "too_many_pings"): ping only while calls are open. Workers and masters
    # always hold watch streams, so a dead connection is still noticed.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.max_receive_message_length", 64 << 20),
)


def channel_target(endpoints: Sequence[str]) -> str:
    """A gRPC target naming every endpoint, so the channel can fail over.

    One endpoint is used as given (DNS resolution by gRPC). Several are
    resolved here into one static address list; IPv4 addresses are preferred
    when a list mixes families, since a gRPC target holds one family.
    """
    if len(endpoints) == 1:
        return endpoints[0]
    v4: list[str] = []
    v6: list[str] = []
    for endpoint in endpoints:
        host, _, port = endpoint.rpartition(":")
        host = host.strip("[]")
        try:
            ips = [ipaddress.ip_address(host)]
        except ValueError:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
            ips = [ipaddress.ip_address(info[4][0]) for info in infos]
        for ip in ips:
            if ip.version == 4:
                v4.append(f"{ip}:{port}")
            else:
                v6.append(f"[{ip}]:{port}")
    if v4:
        return "ipv4:" + ",".join(dict.fromkeys(v4))
    return "ipv6:" + ",".join(dict.fromkeys(v6))


def open_channel(endpoints: Sequence[str], tls: EtcdTls | None) -> grpc.aio.Channel:
    """A channel to ``endpoints`` (TLS with ``tls``); it connects when first used."""
    target = channel_target(endpoints)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
    options: tuple[tuple[str, int | str], ...] = _CHANNEL_OPTIONS
    if (name := target_name_override(endpoints)) is not None:
        options = (*options, ("grpc.ssl_target_name_override", name))
    creds = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
    return grpc.aio.secure_channel(target, creds, options=options)
