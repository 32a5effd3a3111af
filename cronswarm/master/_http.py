"""HTTP plumbing: app keys, the error shape, authentication middleware."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import CollectorRegistry

from ..alerts import AlertStore
from ..common import (
    AuthError,
    ConflictError,
    CronswarmError,
    NotFoundError,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    ServiceUnavailable,
    Settings,
    TokenExpired,
    TooManyStreams,
    ValidationError,
    unencodable_text,
    validate_name,
)
from ..coord import CoordStore, Election, KeyValue, PrefixMirror
from ..logstore import AuditEntry, LogStore
from ..metrics import ClusterView
from ._auth import Principal, Role, TokenStore, split_token
from ._jobs import JobService, write_audit
from ._leader import LeaderDuties, TermLog
from ._ratelimit import FailureLimiter, client_address
from ._session import CsrfRejected, Session, SessionStore

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
COORD = web.AppKey("coord", CoordStore)
LOGS = web.AppKey("logs", LogStore)
JOBS = web.AppKey("jobs", JobService)
TOKENS = web.AppKey("tokens", TokenStore)
TOKEN_MIRROR = web.AppKey("token_mirror", PrefixMirror)
SESSION_KEY = web.AppKey("session_key", bytes)
SESSIONS = web.AppKey("sessions", SessionStore)
ELECTION = web.AppKey("election", Election)
LEADER = web.AppKey("leader", LeaderDuties)
ALERTS = web.AppKey("alerts", AlertStore)
TERMS = web.AppKey("terms", TermLog)
METRICS = web.AppKey("metrics", CollectorRegistry)
CLUSTER_VIEW = web.AppKey("cluster_view", ClusterView)
AUTH_LIMITER = web.AppKey("auth_limiter", FailureLimiter)

PRINCIPAL = web.RequestKey("principal", Principal)
AUTH_FAILURE = web.RequestKey("auth_failure", AuthError)
SESSION = web.RequestKey("session", Session)  # the dashboard session that authenticated

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Renders an error as a dashboard page: (request, status, title, message).
ErrorPage = Callable[[web.Request, int, str, str], web.Response]
ERROR_PAGE: web.AppKey[ErrorPage] = web.AppKey("error_page")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def error_response(status: int, code: str, message: str,
                   fields: list[dict[str, str]] | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The one error shape of the API: ``{"error": {code, message, fields?}}``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return json_response({"error": body}, status=status, headers=headers)


def map_error(exc: CronswarmError) -> web.Response:
    if isinstance(exc, ValidationError):
        return error_response(400, "invalid", str(exc), [p.as_dict() for p in exc.problems])
    if isinstance(exc, CsrfRejected):
        return error_response(403, "csrf", str(exc))
    if isinstance(exc, AuthError):
        code = "token_expired" if isinstance(exc, TokenExpired) else "unauthenticated"
        return error_response(401, code, str(exc),
                              headers={"WWW-Authenticate": 'Bearer realm="cronswarm"'})
    if isinstance(exc, PermissionDenied):
        return error_response(403, "forbidden", str(exc))
    if isinstance(exc, NotFoundError):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, PreconditionFailed):
        return error_response(412, "precondition_failed", str(exc))
    if isinstance(exc, ConflictError):
        return error_response(409, "conflict", str(exc))
    if isinstance(exc, TooManyStreams):
        return json_response({"error": exc.as_dict()}, status=429,
                             headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, RateLimited):
        return error_response(429, "rate_limited", str(exc),
                              headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, ServiceUnavailable):
        return error_response(503, "unavailable", str(exc))
    return error_response(500, "error", str(exc))


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
               415: "unsupported_media_type"}


def is_api_path(path: str) -> bool:
    """Paths answered with JSON (errors included); the rest is the dashboard."""
    return path.startswith("/api/") or path in ("/api", "/healthz", "/readyz", "/metrics")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Typed errors become JSON for the API; anything unexpected is a logged 500."""
    try:
        return await handler(request)
    except CronswarmError as exc:
        if not is_api_path(request.path):
            if isinstance(exc, CsrfRejected):
                return web.Response(status=403, text=f"403 Forbidden: {exc}")
            if isinstance(exc, AuthError):
                raise web.HTTPFound(
                    "/login?" + urlencode({"next": request.path_qs}, safe="/")) from exc
            page = request.app.get(ERROR_PAGE)
            if page is not None:
                response = map_error(exc)
                html = page(request, response.status, response.reason or "Error", str(exc))
                if "Retry-After" in response.headers:
                    html.headers["Retry-After"] = response.headers["Retry-After"]
                return html
        return map_error(exc)
    except web.HTTPException as exc:
        if is_api_path(request.path) and exc.status >= 400:
            code = _HTTP_CODES.get(exc.status, "http_error")
            allow = exc.headers.get("Allow")
            return error_response(exc.status, code, exc.reason,
                                  headers={"Allow": allow} if allow is not None else None)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        page = request.app.get(ERROR_PAGE)
        if page is not None and not is_api_path(request.path):
            return page(request, 500, "Internal server error",
                        "Something went wrong on the master (its log says what).")
        return error_response(500, "internal", "internal server error (see the master log)")


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    return token.strip()


async def token_record(request: web.Request, token_id: str) -> KeyValue | None:
    """A token's stored record: from the mirror, or from etcd when the mirror has
    not seen it yet (a token created a moment ago, maybe through another master)."""
    found = request.app[TOKEN_MIRROR].items.get(token_id)
    if found is None:
        found = await request.app[COORD].get(request.app[TOKENS].keys.token(token_id))
    return found


def request_address(request: web.Request) -> str:
    return client_address(request.remote, request.headers.get("X-Forwarded-For"),
                          request.app[SETTINGS].trusted_proxy_hops)


def check_auth_limit(request: web.Request) -> None:
    """Raise RateLimited while the caller's address has failed too often."""
    address = request_address(request)
    wait = request.app[AUTH_LIMITER].retry_after(address, _monotonic())
    if wait is not None:
        raise RateLimited(f"too many failed authentication attempts from {address}; "
                          f"retry in {wait} s", wait)


async def auth_failed(request: web.Request, action: str, token: str, reason: str, *,
                      target: str | None = None) -> None:
    """Count a failed attempt against the caller's address, and audit it (its
    target: the token's id, never its secret; or ``target``)."""
    address = request_address(request)
    limiter = request.app[AUTH_LIMITER]
    limiter.failed(address, _monotonic())
    if target is None:
        try:
            target = "token:" + validate_name(split_token(token)[0], "token_id")
        except (AuthError, ValidationError):
            target = "token:(malformed)"
    details = {"address": address, "reason": reason, "path": request.path,
               "limited": limiter.retry_after(address, _monotonic()) is not None}
    await write_audit(request.app[LOGS], AuditEntry(
        request.app[JOBS].clock.now_ms(), f"address:{address}", action,
        target, details=details))


def _monotonic() -> float:
    return asyncio.get_running_loop().time()


async def authenticate_token(request: web.Request, token: str) -> Principal:
    token_id, _ = split_token(token)
    try:
        validate_name(token_id, "token_id")
    except ValidationError:
        raise AuthError("malformed token") from None
    return TokenStore.verify(token, await token_record(request, token_id),
                             request.app[JOBS].clock.now_ms())


def principal(request: web.Request) -> Principal:
    """The authenticated caller; raises AuthError when there is none."""
    found: Principal | None = request.get(PRINCIPAL)
    if found is None:
        failure = request.get(AUTH_FAILURE)
        if failure is not None:
            raise type(failure)(str(failure))  # TokenExpired stays TokenExpired
        raise AuthError("authentication required: send 'Authorization: Bearer <token>'")
    return found


def require(request: web.Request, role: Role) -> Principal:
    who = principal(request)
    who.require(role)
    return who


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    if not request.can_read_body:
        if optional:
            return {}
        raise ValidationError.single("body", "a JSON body is required")
    if request.content_type not in ("application/json", "application/merge-patch+json"):
        raise ValidationError.single(
            "Content-Type", f"must be application/json (got {request.content_type!r})")
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError.single("body", f"is not valid JSON: {exc}") from exc
    except RecursionError:
        raise ValidationError.single("body", "is nested too deeply") from None
    if (problem := unencodable_text(body)) is not None:
        raise ValidationError([problem])  # before anything of it is written anywhere
    return body


async def read_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The JSON body, which must be an object (``{}`` when optional and absent)."""
    body = await read_json(request, optional=optional)
    if not isinstance(body, dict):
        raise ValidationError.single("body", "must be a JSON object")
    return body
