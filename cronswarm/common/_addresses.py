"""Addresses an HTTP job may be denied (``CRONSWARM_HTTP_DENY_LOCAL``).

Loopback, link-local, "this host" and the cloud metadata services: a job
calling them from a worker reaches the worker's own services and its cloud
credentials, not a service of the job's owner. Private ranges (10/8,
192.168/16, ...) stay allowed: calling internal services is what a crontab
is for. Pure: the worker judges each address it is about to connect to
(after DNS), the master judges literal IPs when a job is written.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

DENY_SETTING = "CRONSWARM_HTTP_DENY_LOCAL"

_THIS_HOST = ipaddress.ip_network("0.0.0.0/8")  # connecting to 0.x reaches this host
# Metadata services not already link-local (169.254.169.254 is).
_METADATA = {
    ipaddress.ip_address("fd00:ec2::254"): "the AWS metadata service (IPv6)",
    ipaddress.ip_address("100.100.100.200"): "the Alibaba Cloud metadata service",
}


def local_address_reason(address: str) -> str | None:
    """Why HTTP jobs may not call ``address`` (an IP literal), or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return f"{address} is {_METADATA[ip]}"
    if ip.is_loopback:
        return f"{address} is a loopback address"
    if ip.is_link_local:
        return f"{address} is a link-local address (cloud metadata lives there)"
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_HOST):
        return f"{address} means this host"
    return None


def local_url_reason(url: str) -> str | None:
    """Why ``url`` names a denied address as a literal IP, or None.

    Host names are not resolved here: the worker judges what they resolve to
    when it connects (the answer may differ by then anyway).
    """
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return None if host is None else local_address_reason(host)
