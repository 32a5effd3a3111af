"""What every dashboard page shares: who is looking, the CSRF token, error pages."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from ._auth import Principal, Role
from ._http import PRINCIPAL, SESSION_KEY, principal
from ._session import COOKIE, csrf_token


def page_context(request: web.Request, section: str = "") -> dict[str, Any]:
    """The context of ``base.html``: the caller, their powers and the CSRF token."""
    who: Principal | None = request.get(PRINCIPAL)
    session = request.cookies.get(COOKIE, "")
    return {
        "who": who,
        "section": section,
        "can_operate": who is not None and who.role >= Role.OPERATOR,
        "can_admin": who is not None and who.role >= Role.ADMIN,
        "csrf": csrf_token(request.app[SESSION_KEY], session) if session and who else "",
    }


def viewer(request: web.Request, role: Role = Role.VIEWER) -> Principal:
    """The caller of a page, who must have ``role`` (else the error page says why)."""
    who = principal(request)
    who.require(role)
    return who


def render(request: web.Request, template: str, section: str, context: dict[str, Any],
           *, status: int = 200) -> web.Response:
    return aiohttp_jinja2.render_template(
        template, request, {**page_context(request, section), **context}, status=status)


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    """An error as a dashboard page (the API answers JSON instead)."""
    return render(request, "error.html", "", {"title": title, "message": message},
                  status=status)
