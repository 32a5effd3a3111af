"""Dashboard sessions and CSRF tokens, signed with a key shared by all masters.

Every state-changing request of the dashboard carries a CSRF token tied to
the session (a form field ``csrf`` or an ``X-CSRF-Token`` header); the login
form, which has no session yet, uses a nonce cookie set with the form. A bad
or missing token is a 403 (``CsrfRejected``), never a login redirect.

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
import re
import secrets

from ..common import AuthError, CronswarmError, same_signature
from ..coord import load_cluster_key

COOKIE = "cronswarm_session"
LOGIN_COOKIE = "cronswarm_login"  # the login form's CSRF nonce
SESSION_TTL_MS = 12 * 3600 * 1000
LOGIN_TTL_S = 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{32}")  # secrets.token_urlsafe(24)


class CsrfRejected(CronswarmError):
    """A state-changing dashboard request without a valid CSRF token."""

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
    if not (payload.isascii() and signature
            and same_signature(signature, _sign(key, payload.encode()))):
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
    """The CSRF token of a session cookie (or of a login nonce)."""
    return _sign(key, b"csrf:" + session.encode())


def login_nonce() -> str:
    return secrets.token_urlsafe(24)


def read_login_nonce(value: str | None) -> str | None:
    """The login cookie's nonce if it is one ``login_nonce`` could have made."""
    return value if value is not None and _NONCE_RE.fullmatch(value) else None


def login_csrf_token(key: bytes, nonce: str) -> str:
    return csrf_token(key, "login:" + nonce)


def check_csrf(key: bytes, session: str, presented: str | None) -> None:
    """Raise CsrfRejected unless ``presented`` is the token of ``session``."""
    if not (session and session.isascii() and presented
            and same_signature(presented, csrf_token(key, session))):
        raise CsrfRejected("missing or invalid CSRF token; reload the page and retry")
