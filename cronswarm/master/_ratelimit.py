"""Failed authentication attempts, limited per client address.

Pure: the caller passes ``now`` (seconds of a monotonic clock). Each master
keeps its own counts, so behind a load balancer spreading requests over N
masters one address gets up to N times the limit; a shared counter in etcd
would turn every failed attempt into an etcd write, which is what a flood of
guesses should not be able to cause.

Memory is bounded: at most ``limit`` instants per address, and at most
``max_addresses`` addresses (the one whose last failure is oldest goes first).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

FAILURE_LIMIT = 10
FAILURE_WINDOW_S = 60.0
MAX_ADDRESSES = 10_000


class FailureLimiter:
    """Allows ``limit`` failures per address within any ``window`` seconds."""

    def __init__(self, limit: int = FAILURE_LIMIT, window: float = FAILURE_WINDOW_S,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        # address -> instants of its latest failures, oldest first; least recent first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str, now: float) -> int | None:
        """Whole seconds until ``address`` may try again, or None if it may now."""
        times = self._failures.get(address)
        if times is None or len(times) < self.limit:
            return None
        wait = times[0] + self.window - now
        if wait <= 0:
            return None
        return max(1, math.ceil(wait))

    def failed(self, address: str, now: float) -> None:
        """Count one failed attempt of ``address``."""
        times = self._failures.pop(address, None)
        if times is None:
            times = deque(maxlen=self.limit)
        while times and times[0] <= now - self.window:
            times.popleft()
        times.append(now)
        self._failures[address] = times  # now the most recent
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def __len__(self) -> int:
        return len(self._failures)


def client_address(peer: str | None, forwarded_for: str | None, proxy_hops: int) -> str:
    """The address a request came from, for limiting and the audit trail.

    With ``proxy_hops`` proxies of ours in front, each appending the address
    it saw to ``X-Forwarded-For``, the client is the ``proxy_hops``-th entry
    from the right; entries further left were written by the client and prove
    nothing. Without proxies (or with fewer entries than proxies) it is the peer.
    """
    if proxy_hops > 0 and forwarded_for:
        entries = [e.strip() for e in forwarded_for.split(",")]
        if len(entries) >= proxy_hops and entries[-proxy_hops]:
            return entries[-proxy_hops][:64]
    return peer or "unknown"
