"""Dashboard sessions and CSRF tokens, signed with a key shared by all masters.

The session cookie holds the id of the API token the user logged in with and
an expiry, signed with HMAC-SHA256; every request re-checks the token, so
revoking it ends the session. The signing key is the cluster key
(``cronswarm.coord.load_cluster_key``): ``CRONSWARM_SECRET_KEY`` or, when unset,
a key created once in etcd and shared by every master (so a load balancer may
send each request anywhere) and worker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from ..common import AuthError
from ..coord import load_cluster_key

COOKIE = "cronswarm_session"
SESSION_TTL_MS = 12 * 3600 * 1000

load_session_key = load_cluster_key  # sessions are signed with the cluster key


def _sign(key: bytes, payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()).decode()


def make_session(key: bytes, token_id: str, now_ms: int) -> str:
    payload = base64.urlsafe_b64encode(
        json.dumps({"tid": token_id, "exp": now_ms + SESSION_TTL_MS}).encode()).decode()
    return f"{payload}.{_sign(key, payload.encode())}"


def read_session(key: bytes, value: str, now_ms: int) -> str:
    """The token id in a valid, unexpired session cookie; raises AuthError otherwise."""
    payload, _, signature = value.partition(".")
    if not signature or not hmac.compare_digest(signature, _sign(key, payload.encode())):
        raise AuthError("invalid session")
    try:
        data = json.loads(base64.urlsafe_b64decode(payload))
        token_id, expires = str(data["tid"]), int(data["exp"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthError("invalid session") from exc
    if expires < now_ms:
        raise AuthError("session expired; log in again")
    return token_id


def csrf_token(key: bytes, session: str) -> str:
    return _sign(key, b"csrf:" + session.encode())


def check_csrf(key: bytes, session: str, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(presented, csrf_token(key, session)):
        raise AuthError("missing or invalid CSRF token; reload the page and retry")
