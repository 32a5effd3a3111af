"""The master's aiohttp application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ..alerts import AlertStore
from ..common import (
    DENY_SETTING,
    AuthError,
    Job,
    Keyring,
    Keyspace,
    ServiceRefused,
    Settings,
    StreamLimits,
    SystemClock,
    TokenExpired,
    ValidationError,
    local_url_reason,
)
from ..coord import CoordStore, Election, PrefixMirror, check_etcd_access, etcd_store
from ..logstore import LogStore, MongoLogStore
from ..metrics import ClusterView, master_registry
from . import (
    _api,
    _api_alerts,
    _api_jobs,
    _api_tokens,
    _dash_admin,
    _dash_jobs,
    _dash_runs,
    _live,
    _openapi,
    _pages,
)
from ._api import METRICS_PATH
from ._auth import Principal, TokenRecord, TokenStore
from ._format import FILTERS
from ._http import (
    ALERTS,
    AUTH_FAILURE,
    AUTH_LIMITER,
    CLUSTER_VIEW,
    COORD,
    ELECTION,
    ERROR_PAGE,
    JOBS,
    LEADER,
    LOGS,
    METRICS,
    PRINCIPAL,
    SESSION,
    SESSION_KEY,
    SESSIONS,
    SETTINGS,
    TERMS,
    TOKEN_MIRROR,
    TOKENS,
    Handler,
    auth_failed,
    authenticate_token,
    bearer_token,
    check_auth_limit,
    error_middleware,
    token_record,
)
from ._jobs import JobService
from ._leader import LeaderDuties, TermLog, election_ttl
from ._ratelimit import FailureLimiter
from ._session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SessionStore,
    check_csrf,
    load_session_key,
    read_session,
)
from ._web import error_page

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def deny_local_http(job: Job) -> None:
    """Refuse an HTTP job whose URL is a literal loopback, link-local or metadata
    address (``CRONSWARM_HTTP_DENY_LOCAL``); names are judged by the worker."""
    if job.http is not None and (reason := local_url_reason(job.http.url)) is not None:
        raise ValidationError.single("http.url", f"{reason}, denied by {DENY_SETTING}")


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


async def presented_csrf(request: web.Request) -> str | None:
    """The CSRF token a request carries: the ``X-CSRF-Token`` header or a form field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in _FORMS:
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the caller (bearer token, or dashboard session) to the request.

    A session cookie is ambient authority, so every state-changing request it
    authenticates must also carry the session's CSRF token (the login form,
    which has no session yet, checks its own nonce). Bearer tokens are never
    sent by a browser on its own, so they need none.
    """
    if (header := request.headers.get("Authorization")) and not (
            request.path == METRICS_PATH and request.app[SETTINGS].metrics_token):
        # (the metrics view checks the scraper's own token)
        check_auth_limit(request)  # while limited, no token is even tried
        try:
            token = bearer_token(request)
            if token is not None:
                request[PRINCIPAL] = await authenticate_token(request, token)
        except AuthError as exc:
            await auth_failed(request, "auth.token_failed", header.partition(" ")[2].strip(),
                              str(exc))
            # Raised by the first route that needs a caller: public ones (probes,
            # the OpenAPI document) answer whatever the header says.
            request[AUTH_FAILURE] = exc
    elif (cookie := request.cookies.get(COOKIE)) is not None:
        try:
            session = read_session(request.app[SESSION_KEY], cookie,
                                   request.app[JOBS].clock.now_ms())
            await request.app[SESSIONS].check(session)
            kv = await token_record(request, session.token_id)
            if kv is not None:
                record = TokenRecord.decode(kv, session.token_id)
                record.check_live(request.app[JOBS].clock.now_ms())
                request[PRINCIPAL] = Principal(session.token_id, record.name, record.role)
                request[SESSION] = session
        except TokenExpired as exc:
            request[AUTH_FAILURE] = exc  # the API says why; pages go to the login
        except AuthError:
            pass  # an invalid session is no session: pages redirect to the login
        if (request.get(PRINCIPAL) is not None and request.method not in SAFE_METHODS
                and request.path != "/login"):
            check_csrf(request.app[SESSION_KEY], cookie, await presented_csrf(request))
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith("/api/"):
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'",
        )
    return response


def create_app(
    settings: Settings,
    *,
    store: CoordStore | None = None,
    logs: LogStore | None = None,
) -> web.Application:
    """The master app. Pass ``store``/``logs`` to share clients (the caller closes them)."""
    app = web.Application(
        middlewares=[security_headers, error_middleware, auth_middleware],
        client_max_size=2 << 20,
    )
    app[SETTINGS] = settings
    app[AUTH_LIMITER] = FailureLimiter(limit=settings.auth_failure_limit)
    app[_live.STREAMS] = StreamLimits(settings.live_streams_per_viewer,
                                      settings.live_streams_total, server="master")
    keys = Keyspace(settings.key_prefix)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(WEB_DIR / "templates")),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        filters=FILTERS,
    )
    app[ERROR_PAGE] = error_page

    async def services(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            coord = store
            if coord is None:
                etcd = etcd_store(settings)
                stack.push_async_callback(etcd.close)
                await check_etcd_access(etcd, settings.key_prefix)
                coord = etcd
            log_store = logs
            if log_store is None:
                mongo = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database,
                                      default_retention_days=settings.retention_days)
                stack.push_async_callback(mongo.close)
                log_store = mongo
            if not isinstance(log_store, MongoLogStore):
                raise TypeError("the master needs its run history on MongoDB")
            app[COORD] = coord
            app[LOGS] = log_store
            clock = SystemClock()
            app[JOBS] = JobService(coord, log_store, keys, clock,
                                   request_ttl=settings.request_ttl,
                                   check_job=deny_local_http if settings.http_deny_local
                                   else None,
                                   keyring=Keyring.from_setting(settings.job_secret_keys))
            app[TOKENS] = TokenStore(coord, keys)
            app[SESSION_KEY] = await load_session_key(coord, keys, settings.secret_key)
            app[SESSIONS] = SessionStore(coord, keys)
            alerts = AlertStore(log_store.db)
            terms = TermLog(log_store.db)
            app[ALERTS], app[TERMS] = alerts, terms
            try:
                await log_store.check_access()
                await log_store.ensure_indexes()
                await alerts.ensure_indexes()
            except ServiceRefused:
                raise  # settings that cannot work: the start fails with one line
            except Exception as exc:
                log.warning("cannot create MongoDB indexes now: %s", exc)
            mirror = PrefixMirror(coord, keys.tokens)
            app[TOKEN_MIRROR] = mirror
            # Cluster duties run on one master at a time: the elected one.
            leader = LeaderDuties(settings, coord, log_store, alerts, terms, keys, clock)
            election = Election(coord, keys.leader, settings.master_id,
                                election_ttl(settings.lease_ttl))
            app[LEADER], app[ELECTION] = leader, election
            cluster = ClusterView(coord, keys)
            app[CLUSTER_VIEW] = cluster
            app[METRICS] = master_registry(settings.master_id, coord, election, leader, cluster,
                                           streams=app[_live.STREAMS])
            tasks = [asyncio.create_task(mirror.run(), name="token-mirror"),
                     asyncio.create_task(election.run(leader.lead), name="election")]
            try:
                async with asyncio.timeout(settings.etcd_timeout * 2):
                    await mirror.ready.wait()
                yield
            finally:
                # Duties stop between two units of work, then the leader resigns.
                await leader.quiesce(settings.etcd_timeout)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.append(services)
    app.router.add_routes(_api.routes)
    app.router.add_routes(_api_jobs.routes)
    app.router.add_routes(_api_tokens.routes)
    app.router.add_routes(_api_alerts.routes)
    app.router.add_routes(_openapi.routes)
    app.router.add_routes(_live.routes)
    app.router.add_routes(_pages.routes)
    app.router.add_routes(_dash_jobs.routes)
    app.router.add_routes(_dash_runs.routes)
    app.router.add_routes(_dash_admin.routes)
    app.router.add_static("/static/", WEB_DIR / "static", name="static")
    return app
