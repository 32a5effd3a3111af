"""Opening a MongoDB client, and telling why a server refuses us."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from ..common import ConfigError, ServiceRefused
from ._abc import LogStoreUnavailable
from ._codes import AUTHENTICATION_FAILED, UNAUTHORIZED
from ._tls import CLOSED_AFTER_CONNECT, handshake_error, tls_refusal

Doc = dict[str, Any]


def open_client(uri: str, timeout_ms: int) -> AsyncMongoClient[Doc]:
    """A client for ``uri``; ConfigError for a URI that cannot work."""
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("MONGODB_URI", "must start with mongodb:// or mongodb+srv://")
    try:
        with warnings.catch_warnings():
            # pymongo only warns about an unknown or malformed option, then
            # ignores it: a tls=ture would silently mean no TLS.
            warnings.simplefilter("error", UserWarning)
            return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms,
                                    connectTimeoutMS=timeout_ms,
                                    socketTimeoutMS=max(timeout_ms * 6, 30000),
                                    appname="cronswarm")
    except (PyMongoError, UserWarning, ValueError, TypeError, OSError) as exc:
        raise ConfigError("MONGODB_URI", str(exc)) from None


async def check_access(runs: AsyncCollection[Doc], uri: str | None, timeout_ms: int) -> None:
    """Read one run: ServiceRefused if MongoDB refuses our user, or a TLS
    handshake fails for good (_tls.py), LogStoreUnavailable if it does not
    answer. ``uri``: the one the client was opened with, if known."""
    try:
        await runs.find_one({}, projection={"_id": 1})
    except OperationFailure as exc:
        reason = (exc.details or {}).get("errmsg") or str(exc)
        if exc.code == AUTHENTICATION_FAILED:
            raise ServiceRefused("MONGODB_URI", (
                f"MongoDB refused the user in MONGODB_URI ({reason}) — check its user "
                "name, password and authSource")) from None
        if exc.code == UNAUTHORIZED:
            raise ServiceRefused("MONGODB_URI", (
                f"MongoDB does not let us read database {runs.database.name!r} ({reason}) — "
                "give MONGODB_URI a user (and authSource) with readWrite on it")) from None
        raise LogStoreUnavailable(str(exc)) from exc
    except PyMongoError as exc:
        text = str(exc)
        if uri is not None and CLOSED_AFTER_CONNECT in text:
            text = await asyncio.to_thread(handshake_error, uri, timeout_ms)
        refusal = tls_refusal(text)
        if refusal is not None:
            raise ServiceRefused("MONGODB_URI", refusal) from None
        raise LogStoreUnavailable(str(exc)) from exc
