"""Dashboard login and logout (the other pages live in the ``_dash_*`` modules)."""

from __future__ import annotations

from urllib.parse import unquote

import aiohttp_jinja2
from aiohttp import web

from ..common import AuthError, RateLimited
from ..logstore import AuditEntry
from ._http import (
    JOBS,
    LOGS,
    PRINCIPAL,
    SESSION,
    SESSION_KEY,
    SESSIONS,
    SETTINGS,
    auth_failed,
    authenticate_token,
    check_auth_limit,
)
from ._jobs import write_audit
from ._session import (
    COOKIE,
    CSRF_FIELD,
    LOGIN_COOKIE,
    LOGIN_TTL_S,
    SESSION_TTL_MS,
    check_csrf,
    login_csrf_token,
    login_nonce,
    make_session,
    read_login_nonce,
)
from ._web import page_context

routes = web.RouteTableDef()


def safe_next(value: str | None) -> str:
    r"""Where the login sends the user: ``value`` if it is a path on this site, else "/".

    Browsers read "\" as "/" and drop tabs and line breaks from URLs, so
    "/\evil.com" and "/<TAB>/evil.com" lead to //evil.com, another site. Only
    a path starting with one "/" followed by neither "/" nor "\", without white
    space or control characters, stays here; so must it once percent-decoded.
    """
    if not value:
        return "/"
    for text in (value, unquote(value)):
        if not text.startswith("/") or text[1:2] in ("/", "\\") or not all(
                c.isprintable() and not c.isspace() for c in text):
            return "/"
    return value


def secure_cookies(request: web.Request) -> bool:
    """Cookies are Secure on HTTPS, and always when the setting says a proxy
    terminates TLS (the master then sees plain HTTP)."""
    return request.app[SETTINGS].secure_cookies or request.secure


def _render_login(request: web.Request, *, error: str | None, target: str,
                  status: int = 200) -> web.Response:
    """The login form, with a CSRF nonce cookie (kept if the browser has one)."""
    nonce = read_login_nonce(request.cookies.get(LOGIN_COOKIE)) or login_nonce()
    context = {**page_context(request), "error": error, "next": target,
               "login_csrf": login_csrf_token(request.app[SESSION_KEY], nonce)}
    response = aiohttp_jinja2.render_template("login.html", request, context, status=status)
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_TTL_S, httponly=True,
                        samesite="Strict", path="/login", secure=secure_cookies(request))
    return response


@routes.get("/login", name="login")
async def login_page(request: web.Request) -> web.Response:
    return _render_login(request, error=None, target=safe_next(request.query.get("next")))


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    nonce = read_login_nonce(request.cookies.get(LOGIN_COOKIE))
    check_csrf(request.app[SESSION_KEY], "login:" + nonce if nonce else "",
               str(form.get(CSRF_FIELD, "")))
    token = str(form.get("token", "")).strip()
    target = safe_next(str(form.get("next", "/")))
    try:
        check_auth_limit(request)
    except RateLimited as exc:
        response = _render_login(request, error="Too many failed logins from your address; "
                                 f"try again in {exc.retry_after} s.", target=target,
                                 status=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    try:
        who = await authenticate_token(request, token)
    except AuthError as exc:
        await auth_failed(request, "session.login_failed", token, str(exc))
        return _render_login(request, error="That token is not valid.", target=target,
                             status=401)
    now = request.app[JOBS].clock.now_ms()
    await write_audit(request.app[LOGS], AuditEntry(now, who.actor, "session.login",
                                                    f"token:{who.token_id}"))
    session = await request.app[SESSIONS].open(who.token_id, now)
    response = web.Response(status=303, headers={"Location": target})
    response.set_cookie(
        COOKIE, make_session(request.app[SESSION_KEY], session),
        max_age=SESSION_TTL_MS // 1000, httponly=True, samesite="Strict", path="/",
        secure=secure_cookies(request),
    )
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    # The auth middleware has checked the CSRF token of a live session.
    who = request.get(PRINCIPAL)
    session = request.get(SESSION)
    if session is not None:
        # Server-side: a copy of the cookie stops working too, on every master.
        await request.app[SESSIONS].close(session)
    if who is not None:
        await write_audit(request.app[LOGS], AuditEntry(
            request.app[JOBS].clock.now_ms(), who.actor, "session.logout",
            f"token:{who.token_id}"))
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response

