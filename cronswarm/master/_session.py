"""Dashboard sessions and CSRF tokens, signed with a key shared by all masters.

Every state-changing request of the dashboard carries a CSRF token tied to
the session (a form field ``csrf`` or an ``X-CSRF-Token`` header); the login
form, which has no session yet, uses a nonce cookie set with the form. A bad
or missing token is a 403 (``CsrfRejected``), never a login redirect.

The session cookie holds a random session id, the id of the API token the
user logged in with and an expiry, signed with HMAC-SHA256. The session id is
also a key in etcd (``<prefix>/sessions/<id>``) on a lease of the session's
lifetime, so the keys expire on their own and their number is bounded by the
logins of the last ``SESSION_TTL_MS``. Every request reads that key from etcd
(not a mirror: a logout on one master must end the session on all of them at
once) and re-checks the token; logging out deletes the key and revoking the
token ends the session as well. The signing key is the cluster key
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
from dataclasses import dataclass

from ..common import AuthError, CronswarmError, Keyspace, same_signature
from ..coord import CoordStore, load_cluster_key

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


@dataclass(frozen=True, slots=True)
class Session:
    """What a signed session cookie says: which session, of which token, until when."""

    session_id: str
    token_id: str
    expires_ms: int


def make_session(key: bytes, session: Session) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(
        {"sid": session.session_id, "tid": session.token_id, "exp": session.expires_ms}
    ).encode()).decode()
    return f"{payload}.{_sign(key, payload.encode())}"


def read_session(key: bytes, value: str, now_ms: int) -> Session:
    """The session in a validly signed, unexpired cookie; raises AuthError otherwise.

    Whether the session is still open (not logged out) is ``SessionStore.check``.
    """
    payload, _, signature = value.partition(".")
    if not (payload.isascii() and signature
            and same_signature(signature, _sign(key, payload.encode()))):
        raise AuthError("invalid session")
    try:
        data = json.loads(base64.urlsafe_b64decode(payload))
        session = Session(str(data["sid"]), str(data["tid"]), int(data["exp"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise AuthError("invalid session") from exc
    if session.expires_ms < now_ms:
        raise AuthError("session expired; log in again")
    return session


class SessionStore:
    """Open sessions in etcd: one key per session, on a lease of its lifetime."""

    def __init__(self, store: CoordStore, keys: Keyspace) -> None:
        self.store = store
        self.keys = keys

    async def open(self, token_id: str, now_ms: int) -> Session:
        session = Session(secrets.token_hex(16), token_id, now_ms + SESSION_TTL_MS)
        lease = await self.store.grant_lease(SESSION_TTL_MS // 1000)
        await self.store.put(self.keys.session(session.session_id),
                             json.dumps({"tid": token_id}).encode(), lease=lease)
        return session

    async def check(self, session: Session) -> None:
        """Raise AuthError unless ``session`` is open (read from etcd, linearizably)."""
        try:
            key = self.keys.session(session.session_id)
        except CronswarmError:
            raise AuthError("invalid session") from None
        kv = await self.store.get(key)
        if kv is None:
            raise AuthError("session ended; log in again")
        try:
            token_id = str(json.loads(kv.value)["tid"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthError("unreadable session record") from exc
        if token_id != session.token_id:
            raise AuthError("invalid session")

    async def close(self, session: Session) -> None:
        """End ``session`` everywhere: its key goes, and its lease with it."""
        kv = await self.store.get(self.keys.session(session.session_id))
        if kv is None:
            return
        if kv.lease:
            await self.store.revoke_lease(kv.lease)  # deletes the key with it
        else:  # pragma: no cover - every session key is written on a lease
            await self.store.delete(kv.key)


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
