"""API tokens and roles.

A token reads ``cs_<id>_<secret>``. Only a SHA-256 of the secret is stored,
at ``/tokens/<id>`` in etcd (the secret has 256 random bits, so a fast hash
is enough); the full token is shown once, when it is created. There is no
default token: the first admin token is created with direct etcd access
(``cronswarm token create --bootstrap --role admin``; ``cronswarm up`` does
the same once).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ..common import AuthError, Keyspace, PermissionDenied, TokenExpired, ValidationError
from ..coord import Compare, CoordStore, KeyValue, Put

TOKEN_PREFIX = "cs_"  # noqa: S105 - a format marker, not a secret
TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MAX_EXPIRES_IN_S = 10 * 366 * 86400  # ten years


class Role(IntEnum):
    """Roles are ordered: each can do what the ones below it can."""

    VIEWER = 1  # read everything
    OPERATOR = 2  # + run now, kill, pause/resume
    ADMIN = 3  # + create/edit/delete jobs, manage tokens

    @classmethod
    def parse(cls, value: object, field: str = "role") -> Role:
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValidationError.single(
                field, f"must be one of viewer, operator, admin (got {value!r})"
            ) from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's id, name and role."""

    token_id: str
    name: str
    role: Role

    @property
    def actor(self) -> str:
        return f"token:{self.name}({self.token_id})"

    def require(self, role: Role) -> None:
        if self.role < role:
            raise PermissionDenied(role.label, self.role.label)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    name: str
    role: Role
    digest: str
    created: int
    created_by: str
    expires: int | None = None  # epoch ms; None: never

    def to_public(self) -> dict[str, Any]:
        """The token's description, without its digest."""
        return {"id": self.token_id, "name": self.name, "role": self.role.label,
                "created": self.created, "created_by": self.created_by,
                "expires": self.expires}

    def encode(self) -> bytes:
        return json.dumps({**self.to_public(), "digest": self.digest}).encode()

    @classmethod
    def decode(cls, kv: KeyValue, token_id: str) -> TokenRecord:
        data = json.loads(kv.value)
        expires = data.get("expires")  # absent in tokens made before expiries
        return cls(token_id, str(data["name"]), Role.parse(data["role"]), str(data["digest"]),
                   int(data["created"]), str(data.get("created_by", "")),
                   None if expires is None else int(expires))

    def check_live(self, now_ms: int) -> None:
        """Raise TokenExpired once the token's expiry has passed."""
        if self.expires is not None and now_ms >= self.expires:
            stamp = dt.datetime.fromtimestamp(self.expires / 1000, dt.UTC)
            raise TokenExpired(f"token {self.token_id} expired at "
                               f"{stamp.isoformat(timespec='seconds')}; create a new one")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    """(id, secret) of a token string; raises AuthError if it is not one."""
    if not token.startswith(TOKEN_PREFIX) or not token.isascii():  # ours are ASCII
        raise AuthError("malformed token")
    token_id, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or not token_id or not secret or len(token) > 200:
        raise AuthError("malformed token")
    return token_id, secret


class TokenStore:
    """Tokens in etcd. ``lookup`` reads a mirror when given one (fast path)."""

    def __init__(self, store: CoordStore, keys: Keyspace) -> None:
        self.store = store
        self.keys = keys

    async def create(self, *, name: str, role: Role, created_by: str, now_ms: int,
                     expires_in: int | None = None) -> tuple[str, TokenRecord]:
        """A new token, valid for ``expires_in`` seconds (None: until revoked);
        returns the full token string (shown once) and its record."""
        if not TOKEN_NAME_RE.fullmatch(name):
            raise ValidationError.single(
                "name", "must be 1-64 letters, digits, '-', '_', '.', '@'")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        if expires_in is not None and not 0 < expires_in <= MAX_EXPIRES_IN_S:
            raise ValidationError.single(
                "expires_in", f"must be from 1 to {MAX_EXPIRES_IN_S} seconds")
        expires = None if expires_in is None else now_ms + expires_in * 1000
        record = TokenRecord(token_id, name, role, _digest(secret), now_ms, created_by, expires)
        key = self.keys.token(token_id)
        result = await self.store.txn([Compare.absent(key)], [Put(key, record.encode())])
        if not result.succeeded:  # pragma: no cover - 48 random bits collided
            raise AuthError("token id collision; try again")
        return f"{TOKEN_PREFIX}{token_id}_{secret}", record

    async def list_tokens(self) -> list[TokenRecord]:
        kvs, _ = await self.store.get_prefix(self.keys.tokens)
        out = []
        for kv in kvs:
            token_id = kv.key[len(self.keys.tokens):]
            try:
                out.append(TokenRecord.decode(kv, token_id))
            except (ValueError, KeyError, ValidationError):
                continue
        return sorted(out, key=lambda r: r.created)

    async def revoke(self, token_id: str) -> TokenRecord | None:
        key = self.keys.token(token_id)
        kv = await self.store.get(key)
        if kv is None:
            return None
        await self.store.delete(key)
        return TokenRecord.decode(kv, token_id)

    async def any_admin(self) -> bool:
        return any(r.role is Role.ADMIN for r in await self.list_tokens())

    @staticmethod
    def verify(token: str, kv: KeyValue | None, now_ms: int) -> Principal:
        """Check ``token`` against its stored record ``kv`` and its expiry."""
        token_id, secret = split_token(token)
        if kv is None:
            raise AuthError("unknown or revoked token")
        try:
            record = TokenRecord.decode(kv, token_id)
        except (ValueError, KeyError, ValidationError) as exc:
            raise AuthError("unreadable token record") from exc
        if not hmac.compare_digest(record.digest, _digest(secret)):
            raise AuthError("unknown or revoked token")
        record.check_live(now_ms)  # after the secret: only its holder learns of the expiry
        return Principal(token_id, record.name, record.role)
