"""Dashboard pages of the cluster: workers and the audit trail."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..common import ValidationError
from ._auth import Role
from ._http import JOBS, LOGS, SETTINGS
from ._params import text_param
from ._web import render, viewer
from ._workerlist import worker_views

routes = web.RouteTableDef()

AUDIT_LIMIT = 200


@routes.get("/workers", name="workers_page")
async def workers_page(request: web.Request) -> web.Response:
    viewer(request)
    service = request.app[JOBS]
    workers = await worker_views(service, request.app[SETTINGS])
    return render(request, "workers.html", "workers",
                  {"workers": workers, "now": service.clock.now_ms()})


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    before: Any
    after: Any


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
            ) -> list[Change]:
    """The top-level fields an audited write changed (added, removed or modified)."""
    old, new = dict(before or {}), dict(after or {})
    return [Change(k, old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)]


@routes.get("/audit", name="audit_page")
async def audit_page(request: web.Request) -> web.Response:
    viewer(request, Role.ADMIN)
    target = request.query.get("target", "")
    context: dict[str, Any] = {"target": target, "entries": [], "problem": None,
                               "changes": changes}
    try:
        wanted = text_param(request.query, "target", 256)
    except ValidationError as exc:
        context["problem"] = str(exc)
        return render(request, "audit.html", "audit", context, status=400)
    context["entries"] = await request.app[LOGS].query_audit(target=wanted, limit=AUDIT_LIMIT)
    return render(request, "audit.html", "audit", context)
