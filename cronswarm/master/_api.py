"""The read side of the JSON API: health, runs, workers, cron preview, audit.

Job routes live in ``_api_jobs``, token routes in ``_api_tokens``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping

from aiohttp import web

from ..common import (
    AuthError,
    FieldProblem,
    NotFoundError,
    RunRecord,
    RunStatus,
    ValidationError,
    parse_record_id,
    preview,
    same_signature,
)
from ..logstore import LogStore, RunQuery
from ..metrics import render
from ._auth import Role
from ._http import (
    CLUSTER_VIEW,
    COORD,
    JOBS,
    LOGS,
    METRICS,
    SETTINGS,
    auth_failed,
    check_auth_limit,
    json_response,
    require,
)
from ._params import choice_param, int_param, name_param, run_cursor_param, text_param, time_param
from ._workerlist import worker_views

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

RUN_STATUSES = tuple(s.value for s in RunStatus)
_PREVIEW_FIELDS = {"schedule": "expr", "timezone": "tz"}


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process answers (liveness); says nothing about etcd or MongoDB."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when etcd and MongoDB both answer.

    The answer says which one is down, never why: an unauthenticated prober
    must not learn hosts, ports or driver internals. The master's log says why.
    """
    checks: dict[str, str] = {}
    for name, probe in (("etcd", request.app[COORD].ping), ("mongodb", request.app[LOGS].ping)):
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness: %s is unavailable: %s", name, exc)
            checks[name] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks},
                         status=200 if ok else 503)


METRICS_PATH = "/metrics"


@routes.get(METRICS_PATH)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this master: counts only, no names. Open, unless
    ``CRONSWARM_METRICS_TOKEN`` is set: then the scraper must send that token."""
    expected = request.app[SETTINGS].metrics_token
    if expected:
        check_auth_limit(request)
        presented = request.headers.get("Authorization", "")
        if not same_signature(presented, f"Bearer {expected}"):
            await auth_failed(request, "auth.metrics_failed", "", "bad or missing metrics token",
                              target="metrics")
            raise AuthError("/metrics needs 'Authorization: Bearer <CRONSWARM_METRICS_TOKEN>'")
    await request.app[CLUSTER_VIEW].refresh()
    body, content_type = render(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": content_type})


@routes.get("/api/me")
async def whoami(request: web.Request) -> web.Response:
    who = require(request, Role.VIEWER)
    return json_response({"id": who.token_id, "name": who.name, "role": who.role.label})


def run_query(params: Mapping[str, str], *, page_size: int | None = None,
              times: Mapping[str, str] | None = None) -> RunQuery:
    """The run filters of a request, validated. ``page_size``: fixed (else the
    ``limit`` parameter); ``times``: where since and until are read, if not in
    ``params``."""
    times = params if times is None else times
    status = choice_param(params, "status", RUN_STATUSES)
    return RunQuery(
        job=name_param(params, "job"),
        status=RunStatus(status) if status else None,
        worker=name_param(params, "worker"),
        since=time_param(times, "since"),
        until=time_param(times, "until"),
        text=text_param(params, "q"),
        limit=int_param(params, "limit", 50, 1, 1000) if page_size is None else page_size,
        cursor=run_cursor_param(params, "cursor", text_search=bool(params.get("q"))),
    )


@routes.get("/api/runs")
async def list_runs(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    page = await request.app[LOGS].query_runs(run_query(request.query))
    return json_response({"runs": [r.to_dict() for r in page.runs],
                          "next_cursor": page.next_cursor, "searched_to": page.searched_to})


async def run_attempts(logs: LogStore, job: str, tick: int) -> list[RunRecord]:
    """Every attempt of one tick of ``job``, first attempt first."""
    page = await logs.query_runs(RunQuery(job=job, since=tick, until=tick + 1, limit=1000))
    return sorted(page.runs, key=lambda r: r.attempt)


def pick_attempt(attempts: list[RunRecord], attempt: int | None) -> RunRecord | None:
    """The numbered attempt, or the latest when ``attempt`` is None."""
    if attempt is None:
        return attempts[-1] if attempts else None
    return next((r for r in attempts if r.attempt == attempt), None)


@routes.get("/api/runs/{record_id}")
async def get_run(request: web.Request) -> web.Response:
    """One attempt with its full output; without ``#<attempt>``, the latest attempt."""
    require(request, Role.VIEWER)
    record_id = request.match_info["record_id"]
    job, tick, attempt = parse_record_id(record_id)
    run = pick_attempt(await run_attempts(request.app[LOGS], job, tick), attempt)
    if run is None:
        raise NotFoundError("run", record_id)
    return json_response(run.to_dict())


@routes.get("/api/workers")
async def list_workers(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    workers = await worker_views(request.app[JOBS], request.app[SETTINGS])
    return json_response({"workers": workers})


@routes.get("/api/preview")
async def cron_preview(request: web.Request) -> web.Response:
    """The next ``n`` fire times of ``expr`` in ``tz``, or the precise error."""
    require(request, Role.VIEWER)
    q = request.query
    expr = text_param(q, "expr", 256)
    if expr is None:
        raise ValidationError.single("expr", "is required")
    tz = text_param(q, "tz", 64) or "UTC"
    n = int_param(q, "n", 10, 1, 100)
    try:
        times = preview(expr, tz, n, dt.datetime.now(dt.UTC))
    except ValidationError as exc:
        raise ValidationError([FieldProblem(_PREVIEW_FIELDS.get(p.field, p.field), p.reason)
                               for p in exc.problems]) from None
    return json_response({"expr": expr, "tz": tz, "next": [t.isoformat() for t in times]})


@routes.get("/api/audit")
async def list_audit(request: web.Request) -> web.Response:
    require(request, Role.ADMIN)
    q = request.query
    entries = await request.app[LOGS].query_audit(
        target=text_param(q, "target", 256), limit=int_param(q, "limit", 100, 1, 1000))
    return json_response({"entries": [e.to_dict() for e in entries]})
