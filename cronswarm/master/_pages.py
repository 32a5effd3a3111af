"""Server-rendered dashboard pages (jinja2, autoescaped)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from ..common import AuthError, from_ms
from ..logstore import LogStoreUnavailable
from ._auth import Role, TokenStore, split_token
from ._http import JOBS, LOGS, PRINCIPAL, SESSION_KEY, TOKEN_MIRROR, principal
from ._session import COOKIE, SESSION_TTL_MS, check_csrf, csrf_token, make_session

routes = web.RouteTableDef()


def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "—"
    return from_ms(ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def _safe_next(value: str | None) -> str:
    """Only same-site relative paths: no open redirects."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    parts = urlsplit(value)
    return "/" if parts.scheme or parts.netloc else value


def _base_context(request: web.Request) -> dict[str, Any]:
    who = request.get(PRINCIPAL)
    session = request.cookies.get(COOKIE, "")
    return {
        "who": who,
        "can_operate": who is not None and who.role >= Role.OPERATOR,
        "can_admin": who is not None and who.role >= Role.ADMIN,
        "csrf": csrf_token(request.app[SESSION_KEY], session) if session else "",
        "fmt_ms": fmt_ms,
    }


@routes.get("/", name="jobs_page")
@aiohttp_jinja2.template("jobs.html")
async def jobs_page(request: web.Request) -> dict[str, Any]:
    principal(request).require(Role.VIEWER)
    jobs = await request.app[JOBS].list_jobs()
    try:
        last = await request.app[LOGS].last_runs([s.job.name for s in jobs])
        logs_error = None
    except LogStoreUnavailable as exc:
        last, logs_error = {}, str(exc)
    return {**_base_context(request), "jobs": jobs, "last": last, "logs_error": logs_error}


@routes.get("/login", name="login")
@aiohttp_jinja2.template("login.html")
async def login_page(request: web.Request) -> dict[str, Any]:
    return {**_base_context(request), "error": None,
            "next": _safe_next(request.query.get("next"))}


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = str(form.get("token", "")).strip()
    target = _safe_next(str(form.get("next", "/")))
    try:
        token_id, _ = split_token(token)
        who = TokenStore.verify(token, request.app[TOKEN_MIRROR].items.get(token_id))
    except AuthError:
        context = {**_base_context(request), "error": "That token is not valid.",
                   "next": target}
        return aiohttp_jinja2.render_template("login.html", request, context, status=401)
    now = request.app[JOBS].clock.now_ms()
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        COOKIE, make_session(request.app[SESSION_KEY], who.token_id, now),
        max_age=SESSION_TTL_MS // 1000, httponly=True, samesite="Strict", path="/",
        secure=request.secure,
    )
    return response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    check_csrf(request.app[SESSION_KEY], request.cookies.get(COOKIE, ""),
               str(form.get("csrf", "")))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    return response


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
