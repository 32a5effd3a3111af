"""The cluster key: one secret shared by every master and worker through etcd.

Masters sign dashboard sessions with it; masters sign and workers check the
requests for live run output with it. It comes from ``CRONSWARM_SECRET_KEY``
when that is set (every process must then be given the same value) or else
from ``<prefix>/config/session-key`` in etcd, created once by whichever
process asks first (a create-if-absent transaction, so all agree).
"""

from __future__ import annotations

import hashlib
import secrets

from ..common import AuthError, Keyspace
from ._abc import CoordStore
from ._kv import Compare, Put


def cluster_key_path(keys: Keyspace) -> str:
    """Where the generated key is kept (no lease: it outlives every process)."""
    return f"{keys.prefix}/config/session-key"


async def load_cluster_key(store: CoordStore, keys: Keyspace, configured: str | None) -> bytes:
    """The 32-byte cluster key: derived from ``configured``, or shared through etcd."""
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    key = cluster_key_path(keys)
    fresh = secrets.token_hex(32)
    result = await store.txn([Compare.absent(key)], [Put(key, fresh.encode())], [])
    if result.succeeded:
        return bytes.fromhex(fresh)
    kv = await store.get(key)
    if kv is None:  # pragma: no cover - deleted between the two calls
        raise AuthError("cluster key vanished; retry")
    return bytes.fromhex(kv.value.decode())
