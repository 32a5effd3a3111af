"""The JSON API under ``/api``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from ..common import (
    Job,
    NotFoundError,
    RunStatus,
    ValidationError,
    preview,
    to_ms,
    validate_name,
)
from ..logstore import AuditEntry, RunQuery
from ._auth import Role
from ._http import (
    COORD,
    JOBS,
    LOGS,
    TOKENS,
    error_response,
    json_response,
    principal,
    read_json,
    require,
)
from ._jobs import StoredJob, parse_etag, write_audit

routes = web.RouteTableDef()


def _job_body(stored: StoredJob, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    body = stored.job.to_dict()
    body["revision"] = stored.revision
    if extra:
        body.update(extra)
    return body


def _with_etag(stored: StoredJob, status: int = 200) -> web.Response:
    return json_response(_job_body(stored), status=status, headers={"ETag": stored.etag})


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError.single(name, f"must be an integer (got {raw!r})") from None
    if not lo <= value <= hi:
        raise ValidationError.single(name, f"must be between {lo} and {hi} (got {value})")
    return value


def _time_param(request: web.Request, name: str) -> int | None:
    """An epoch-ms integer or an ISO 8601 time with offset."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lstrip("-").isdigit():
        return int(raw)
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError.single(name, "must be epoch milliseconds or ISO 8601") from None
    if when.tzinfo is None:
        raise ValidationError.single(name, "ISO times need an offset, e.g. 2026-01-01T00:00Z")
    return to_ms(when)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    for name, probe in (("etcd", request.app[COORD].ping), ("mongodb", request.app[LOGS].ping)):
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks},
                         status=200 if ok else 503)


@routes.get("/api/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    jobs = await request.app[JOBS].list_jobs()
    last = await request.app[LOGS].last_runs([s.job.name for s in jobs])
    items = []
    for stored in jobs:
        run = last.get(stored.job.name)
        items.append(_job_body(stored, {
            "last_run": None if run is None else {
                "run_id": run.run_id, "attempt": run.attempt, "status": run.status.value,
                "tick": run.tick, "ended": run.ended,
            },
        }))
    return json_response({"jobs": items})


@routes.post("/api/jobs")
async def create_job(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    job = Job.from_dict(await read_json(request))
    stored = await request.app[JOBS].create(job, actor=who.actor)
    response = _with_etag(stored, status=201)
    response.headers["Location"] = f"/api/jobs/{job.name}"
    return response


@routes.get("/api/jobs/{name}")
async def get_job(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    return _with_etag(await request.app[JOBS].get(request.match_info["name"]))


@routes.put("/api/jobs/{name}")
async def replace_job(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    name = validate_name(request.match_info["name"])
    body = await read_json(request)
    if isinstance(body, dict) and "name" in body and body["name"] != name:
        raise ValidationError.single("name", "does not match the job in the URL")
    job = Job.from_dict(body, name=name)
    stored = await request.app[JOBS].replace(
        job, actor=who.actor, if_match=parse_etag(request.headers.get("If-Match")))
    return _with_etag(stored)


@routes.patch("/api/jobs/{name}")
async def patch_job(request: web.Request) -> web.Response:
    who = principal(request)
    changes = await read_json(request)
    if not isinstance(changes, dict):
        raise ValidationError.single("body", "must be a JSON object")
    # Operators may pause and resume; anything else is an admin's edit.
    who.require(Role.OPERATOR if set(changes) <= {"enabled"} else Role.ADMIN)
    stored = await request.app[JOBS].patch(
        request.match_info["name"], changes, actor=who.actor,
        if_match=parse_etag(request.headers.get("If-Match")),
        action=("job.pause" if changes.get("enabled") is False else
                "job.resume" if changes.get("enabled") is True and len(changes) == 1
                else "job.update"),
    )
    return _with_etag(stored)


@routes.delete("/api/jobs/{name}")
async def delete_job(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    await request.app[JOBS].delete(request.match_info["name"], actor=who.actor,
                                   if_match=parse_etag(request.headers.get("If-Match")))
    return web.Response(status=204)


@routes.post("/api/jobs/{name}/run")
async def run_job(request: web.Request) -> web.Response:
    who = require(request, Role.OPERATOR)
    rid = await request.app[JOBS].run_now(request.match_info["name"], actor=who.actor)
    return json_response({"run_id": rid}, status=202)


@routes.post("/api/jobs/{name}/kill")
async def kill_job(request: web.Request) -> web.Response:
    who = require(request, Role.OPERATOR)
    body = await read_json(request, optional=True)
    if not isinstance(body, dict):
        raise ValidationError.single("body", "must be a JSON object")
    target = body.get("run_id")
    if target is not None and not isinstance(target, str):
        raise ValidationError.single("run_id", "must be a string")
    runs = await request.app[JOBS].kill(request.match_info["name"], actor=who.actor,
                                        target_run=target)
    return json_response({"requested": runs}, status=202)


@routes.get("/api/runs")
async def list_runs(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    q = request.query
    job = q.get("job") or None
    if job is not None:
        validate_name(job, "job")
    status = q.get("status") or None
    if status is not None and status not in {s.value for s in RunStatus}:
        raise ValidationError.single(
            "status", f"must be one of {', '.join(s.value for s in RunStatus)}")
    text = q.get("q") or None
    if text is not None and len(text) > 200:
        raise ValidationError.single("q", "must be at most 200 characters")
    query = RunQuery(
        job=job, status=RunStatus(status) if status else None, worker=q.get("worker") or None,
        since=_time_param(request, "since"), until=_time_param(request, "until"), text=text,
        limit=_int_param(request, "limit", 50, 1, 1000), cursor=q.get("cursor") or None,
    )
    page = await request.app[LOGS].query_runs(query)
    return json_response({"runs": [r.to_dict() for r in page.runs],
                          "next_cursor": page.next_cursor})


@routes.get("/api/runs/{record_id}")
async def get_run(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    record_id = request.match_info["record_id"]
    if "#" not in record_id:
        record_id += "#1"
    run = await request.app[LOGS].get_run(record_id)
    if run is None:
        raise NotFoundError("run", record_id)
    return json_response(run.to_dict())


@routes.get("/api/workers")
async def list_workers(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    workers = await request.app[JOBS].workers()
    running = await request.app[JOBS].running()
    by_worker: dict[str, list[str]] = {}
    for run in running:
        by_worker.setdefault(str(run.get("worker")), []).append(str(run.get("run_id")))
    for worker in workers:
        worker["running_runs"] = sorted(by_worker.get(str(worker.get("id")), []))
    return json_response({"workers": workers})


@routes.get("/api/preview")
async def cron_preview(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    expr = request.query.get("expr")
    if not expr:
        raise ValidationError.single("expr", "is required")
    tz = request.query.get("tz", "UTC")
    n = _int_param(request, "n", 10, 1, 100)
    now = dt.datetime.now(dt.UTC)
    times = preview(expr, tz, n, now)
    return json_response({"expr": expr, "tz": tz,
                          "next": [t.isoformat() for t in times]})


@routes.get("/api/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    require(request, Role.ADMIN)
    tokens = await request.app[TOKENS].list_tokens()
    return json_response({"tokens": [t.to_public() for t in tokens]})


@routes.post("/api/tokens")
async def create_token(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationError.single("body", "must be a JSON object")
    role = Role.parse(body.get("role"))
    name = body.get("name")
    if not isinstance(name, str):
        raise ValidationError.single("name", "is required (a string)")
    now = request.app[JOBS].clock.now_ms()
    token, record = await request.app[TOKENS].create(name=name, role=role,
                                                     created_by=who.actor, now_ms=now)
    await write_audit(request.app[LOGS], AuditEntry(now, who.actor, "token.create",
                                                    f"token:{record.token_id}", None,
                                                    record.to_public()))
    return json_response({"token": token, **record.to_public()}, status=201)


@routes.delete("/api/tokens/{token_id}")
async def revoke_token(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    token_id = request.match_info["token_id"]
    validate_name(token_id, "token_id")
    record = await request.app[TOKENS].revoke(token_id)
    if record is None:
        raise NotFoundError("token", token_id)
    await write_audit(request.app[LOGS], AuditEntry(
        request.app[JOBS].clock.now_ms(), who.actor, "token.revoke",
        f"token:{token_id}", record.to_public(), None))
    return web.Response(status=204)


@routes.get("/api/audit")
async def list_audit(request: web.Request) -> web.Response:
    require(request, Role.ADMIN)
    target = request.query.get("target") or None
    limit = _int_param(request, "limit", 100, 1, 1000)
    entries = await request.app[LOGS].query_audit(target=target, limit=limit)
    return json_response({"entries": [e.to_dict() for e in entries]})


async def not_found(request: web.Request) -> web.Response:
    return error_response(404, "not_found", f"no route for {request.method} {request.path}")
