"""The token of our etcd user: fetched on first use, again when etcd rejects it.

etcd's Auth service hands out a token for a user name and password; every call
then carries it as gRPC metadata ``token``. Simple tokens expire after
``--auth-token-ttl`` unused, a member we fail over to may not know ours, and a
change to users or roles makes old tokens stale: each is answered by one new
Authenticate call shared by every caller that saw the rejection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import grpc
from aetcd import rpc

from ._abc import CoordUnavailable
from ._etcd_tls import EtcdCredentials, auth_not_enabled, no_user_given, token_rejected

log = logging.getLogger(__name__)


class EtcdTokens:
    """Holds the current token; ``stats`` counts ``authenticate`` calls and ``errors``."""

    def __init__(self, credentials: EtcdCredentials | None, stats: Counter[str]) -> None:
        self.credentials = credentials
        self.stats = stats
        self.token: str | None = None
        self._enabled = credentials is not None  # False once etcd says auth is off
        self._lock = asyncio.Lock()

    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("token", self.token),) if self.token is not None else None

    async def ensure(self, auth_stub: Any, timeout: float, stale: str | None = None) -> None:
        """Authenticate unless we hold a token other than ``stale`` (or need none)."""
        if not self._enabled or self.credentials is None:
            return
        if self.token is not None and self.token != stale:
            return
        async with self._lock:
            if self.token is not None and self.token != stale:
                return  # another caller authenticated meanwhile
            self.stats["authenticate"] += 1
            request = rpc.AuthenticateRequest(name=self.credentials.user,
                                              password=self.credentials.password)
            try:
                resp = await auth_stub.Authenticate(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                self.stats["errors"] += 1
                if auth_not_enabled(exc.details() or ""):
                    log.warning("etcd has authentication disabled: CRONSWARM_ETCD_USER is "
                                "not used")
                    self._enabled = False
                    return
                raise CoordUnavailable(
                    f"Authenticate as {self.credentials.user!r}: {exc.code().name}: "
                    f"{exc.details()}") from exc
            self.token = str(resp.token)

    def rejected(self, exc: grpc.aio.AioRpcError) -> bool:
        """etcd refused the call for our token (or for carrying none): authenticate again."""
        if self.credentials is None:
            return False
        details = exc.details() or ""
        if not self._enabled and no_user_given(details):
            self._enabled = True  # etcd turned authentication on since we started
            return True
        return self._enabled and token_rejected(exc.code().name, details)
