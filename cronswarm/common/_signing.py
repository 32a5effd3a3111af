"""Signatures with the cluster key (see ``cronswarm.coord.load_cluster_key``).

A master asks a worker for a run's live output with the header
``Authorization: Cronswarm <hex HMAC-SHA256>`` computed over the record id.
The message carries a purpose prefix, so a signature made for one use can
never be replayed as another (sessions and CSRF tokens use the same key).
"""

from __future__ import annotations

import hashlib
import hmac

LIVE_AUTH_SCHEME = "Cronswarm"
_LIVE_PURPOSE = b"live-output\x00"


def same_signature(presented: str, expected: str) -> bool:
    """Whether a signature sent to us (a cookie, a header, a form field) is the
    one we compute, in constant time.

    Ours are ASCII. What arrives may be any bytes, decoded with surrogate
    escapes: ``hmac.compare_digest`` raises TypeError on non-ASCII strings and
    ``str.encode`` on surrogates, so such a value is just a wrong signature.
    """
    return presented.isascii() and hmac.compare_digest(presented, expected)


def live_signature(key: bytes, record_id: str) -> str:
    """The signature that lets its bearer read the live output of ``record_id``."""
    return hmac.new(key, _LIVE_PURPOSE + record_id.encode(), hashlib.sha256).hexdigest()


def live_auth_header(key: bytes, record_id: str) -> str:
    """The ``Authorization`` header value for a live-output request."""
    return f"{LIVE_AUTH_SCHEME} {live_signature(key, record_id)}"


def check_live_auth(key: bytes, record_id: str, header: str | None) -> bool:
    """Whether ``header`` is a valid live-output authorization for ``record_id``."""
    if not header:
        return False
    scheme, _, signature = header.partition(" ")
    if scheme != LIVE_AUTH_SCHEME or not signature:
        return False
    if not record_id.isascii():  # never one of ours (names are ASCII slugs)
        return False
    return same_signature(signature.strip(), live_signature(key, record_id))
