"""``/api/jobs``: the job life cycle (list, create, replace, patch, delete, run, kill).

Reads need ``viewer``; run now, kill, pause and resume need ``operator``;
everything else that changes a job needs ``admin``. Every edit takes an
optional ``If-Match`` (the ETag, etcd's mod_revision of the job) and fails
with 412, changing nothing, when the job has moved on.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..common import RunStatus, ValidationError, read_job_input, split_secret_input, validate_name
from ._auth import Role
from ._http import JOBS, LOGS, json_response, principal, read_object, require
from ._joblist import NEVER, JobFilter, job_view, load_job_page, next_fire
from ._jobs import StoredJob, parse_etag
from ._params import bool_param, choice_param, int_param, label_param, name_param, text_param

routes = web.RouteTableDef()

LAST_STATUSES = (*(s.value for s in RunStatus), NEVER)
_ENABLED_ONLY = frozenset({"enabled"})


def _written(request: web.Request, stored: StoredJob, status: int = 200) -> web.Response:
    """A written job: its body with revision and next fire time, and its ETag."""
    body: dict[str, Any] = stored.job.to_dict()
    body["revision"] = stored.revision
    body["next_fire"] = next_fire(stored, request.app[JOBS].clock.now_ms())
    return json_response(body, status=status, headers={"ETag": stored.etag})


def _if_match(request: web.Request) -> int | None:
    return parse_etag(request.headers.get("If-Match"))


def _job_name(request: web.Request) -> str:
    return validate_name(request.match_info["name"])


def job_filter(request: web.Request) -> JobFilter:
    q = request.query
    return JobFilter(
        name=text_param(q, "name", 128),
        enabled=bool_param(q, "enabled"),
        last_status=choice_param(q, "status", LAST_STATUSES),
        target=label_param(q, "target"),
        limit=int_param(q, "limit", 100, 1, 1000),
        cursor=name_param(q, "cursor"),
    )


@routes.get("/api/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    found = await load_job_page(request.app[JOBS], job_filter(request))
    return json_response({"jobs": found.views(), "next_cursor": found.next_cursor,
                          "total": found.total})


@routes.post("/api/jobs")
async def create_job(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    job, secrets = read_job_input(await read_object(request))
    stored = await request.app[JOBS].create(job, actor=who.actor, secrets=secrets)
    response = _written(request, stored, status=201)
    response.headers["Location"] = f"/api/jobs/{job.name}"
    return response


@routes.get("/api/jobs/{name}")
async def get_job(request: web.Request) -> web.Response:
    require(request, Role.VIEWER)
    service = request.app[JOBS]
    stored = await service.get(_job_name(request))
    name = stored.job.name
    last = (await request.app[LOGS].last_runs([name])).get(name)
    running = [str(r.get("run_id")) for r in await service.running(name)]
    body = job_view(stored, now_ms=service.clock.now_ms(), last=last, running=sorted(running))
    return json_response(body, headers={"ETag": stored.etag})


@routes.put("/api/jobs/{name}")
async def replace_job(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    name = _job_name(request)
    body = await read_object(request)
    if "name" in body and body["name"] != name:
        raise ValidationError.single("name", "does not match the job in the URL")
    job, secrets = read_job_input(body, name=name)
    stored = await request.app[JOBS].replace(job, actor=who.actor, if_match=_if_match(request),
                                             secrets=secrets)
    return _written(request, stored)


def _patch_action(changes: dict[str, Any]) -> str:
    if set(changes) == _ENABLED_ONLY and isinstance(changes["enabled"], bool):
        return "job.resume" if changes["enabled"] else "job.pause"
    return "job.update"


@routes.patch("/api/jobs/{name}")
async def patch_job(request: web.Request) -> web.Response:
    """A JSON merge patch. Operators may change ``enabled`` only (pause/resume).

    ``secrets`` follow the same rule as in a replace: named slots are set or
    (null) cleared, the others kept.
    """
    who = principal(request)
    name = _job_name(request)
    body = await read_object(request)
    who.require(Role.OPERATOR if body and set(body) <= _ENABLED_ONLY else Role.ADMIN)
    changes, secrets, problems = split_secret_input(body)
    if problems:
        raise ValidationError(problems)
    stored = await request.app[JOBS].patch(name, changes, actor=who.actor,
                                           if_match=_if_match(request),
                                           action=_patch_action(body), secrets=secrets)
    return _written(request, stored)


@routes.delete("/api/jobs/{name}")
async def delete_job(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    await request.app[JOBS].delete(_job_name(request), actor=who.actor,
                                   if_match=_if_match(request))
    return web.Response(status=204)


@routes.post("/api/jobs/{name}/pause")
async def pause_job(request: web.Request) -> web.Response:
    who = require(request, Role.OPERATOR)
    stored = await request.app[JOBS].set_enabled(_job_name(request), False, actor=who.actor,
                                                 if_match=_if_match(request))
    return _written(request, stored)


@routes.post("/api/jobs/{name}/resume")
async def resume_job(request: web.Request) -> web.Response:
    who = require(request, Role.OPERATOR)
    stored = await request.app[JOBS].set_enabled(_job_name(request), True, actor=who.actor,
                                                 if_match=_if_match(request))
    return _written(request, stored)


@routes.post("/api/jobs/{name}/run")
async def run_job(request: web.Request) -> web.Response:
    who = require(request, Role.OPERATOR)
    rid = await request.app[JOBS].run_now(_job_name(request), actor=who.actor)
    return json_response({"run_id": rid}, status=202)


@routes.post("/api/jobs/{name}/kill")
async def kill_job(request: web.Request) -> web.Response:
    """Stop the job's live runs, or the one named by ``run_id`` in the body."""
    who = require(request, Role.OPERATOR)
    name = _job_name(request)
    body = await read_object(request, optional=True)
    unknown = sorted(set(body) - {"run_id"})
    if unknown:
        raise ValidationError.single(unknown[0], "unknown field")
    target = body.get("run_id")
    if target is not None and not isinstance(target, str):
        raise ValidationError.single("run_id", "must be a string")
    runs = await request.app[JOBS].kill(name, actor=who.actor, target_run=target)
    return json_response({"requested": runs}, status=202)
