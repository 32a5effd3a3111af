"""Dashboard pages of jobs: the list (with trends and actions) and the editor.

The list comes from ``load_job_page``, the query behind ``GET /api/jobs``;
actions and saves go from the browser to the JSON API with the session's
CSRF token, so the dashboard has no write path of its own.
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ..common import MISFIRE_POLICIES, OVERLAP_POLICIES, Job, ValidationError, describe
from ..logstore import LogStoreUnavailable
from ._api_jobs import LAST_STATUSES, job_filter
from ._auth import Role
from ._http import JOBS
from ._joblist import JobFilter, JobPage, last_run_view, load_job_page, next_fire
from ._jobs import StoredJob
from ._trend import Trend, run_trend
from ._web import render, viewer

routes = web.RouteTableDef()

PAGE_SIZE = 50
TREND_RUNS = 20
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
FILTER_PARAMS = ("name", "target", "status", "enabled")


@dataclass(frozen=True, slots=True)
class JobRow:
    """One row of the jobs table."""

    job: Job
    words: str  # the schedule in words
    next_fire: int | None
    last: dict[str, Any] | None  # last_run_view
    running: list[str]
    trend: Trend


def job_rows(found: JobPage) -> list[JobRow]:
    return [
        JobRow(stored.job, describe(stored.job.schedule), next_fire(stored, found.now_ms),
               last_run_view(found.last.get(stored.job.name)),
               found.running.get(stored.job.name, []),
               run_trend(found.recent.get(stored.job.name, []), TREND_RUNS))
        for stored in found.jobs
    ]


def _page_filter(request: web.Request) -> JobFilter:
    wanted = job_filter(request)
    return wanted if "limit" in request.query else replace(wanted, limit=PAGE_SIZE)


@routes.get("/", name="jobs_page")
async def jobs_page(request: web.Request) -> web.Response:
    viewer(request)
    query = {k: request.query.get(k, "") for k in FILTER_PARAMS}
    context: dict[str, Any] = {"query": query, "statuses": LAST_STATUSES, "rows": [],
                               "total": 0, "next_page": None, "problem": None,
                               "logs_error": None, "page_size": PAGE_SIZE}
    try:
        wanted = _page_filter(request)
    except ValidationError as exc:
        context["problem"] = str(exc)
        return render(request, "jobs.html", "jobs", context, status=400)
    service = request.app[JOBS]
    try:
        found = await load_job_page(service, wanted, history=TREND_RUNS)
    except LogStoreUnavailable as exc:
        found = await load_job_page(service, wanted, history=0)
        context["logs_error"] = str(exc)
    context.update(rows=job_rows(found), total=found.total)
    if found.next_cursor is not None:
        kept = {k: v for k, v in query.items() if v}
        context["next_page"] = "/?" + urlencode({**kept, "cursor": found.next_cursor})
    return render(request, "jobs.html", "jobs", context)


def _lines(mapping: Any, sep: str) -> str:
    """A string map as ``key<sep>value`` lines (the editor's textareas)."""
    return "\n".join(f"{k}{sep}{v}" for k, v in dict(mapping or {}).items())


def _numbers(values: Any) -> str:
    return ", ".join(str(v) for v in values or ())


def editor_fields(job: Job | None) -> dict[str, Any]:
    """The editor's initial field values: the job's, or a new job's defaults."""
    body = (job or Job(name="", schedule="")).to_dict()
    for key in ("shell", "cwd", "user", "retention_days", "expect_success_within"):
        body.setdefault(key, None)
    http = body.get("http") or {}
    retry = body["retry"]
    return {
        **body,
        "kind": "http" if job is not None and job.http is not None else "shell",
        "command": body.get("command", ""),
        "env_lines": _lines(body.get("env"), "="),
        "targets_lines": _lines(body.get("targets"), "="),
        "http_url": http.get("url", ""),
        "http_method": http.get("method", "GET"),
        "http_headers": _lines(http.get("headers"), ": "),
        "http_body": http.get("body") or "",
        "http_expect": _numbers(http.get("expect_status")),
        "http_follow": http.get("follow_redirects", True),
        "retry_exit_codes": _numbers(retry.get("on_exit_codes")),
        "retry_http_statuses": _numbers(retry.get("on_http_statuses")),
    }


@functools.cache
def timezones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def _editor(request: web.Request, stored: StoredJob | None) -> web.Response:
    context = {
        "stored": stored,
        "f": editor_fields(stored.job if stored else None),
        "overlaps": OVERLAP_POLICIES,
        "misfires": MISFIRE_POLICIES,
        "methods": HTTP_METHODS,
        "timezones": timezones(),
    }
    return render(request, "editor.html", "jobs", context)


@routes.get("/jobs/new", name="new_job")
async def new_job_page(request: web.Request) -> web.Response:
    viewer(request, Role.ADMIN)
    return _editor(request, None)


@routes.get("/jobs/{name}/edit", name="edit_job")
async def edit_job_page(request: web.Request) -> web.Response:
    viewer(request, Role.ADMIN)
    stored = await request.app[JOBS].get(request.match_info["name"])
    return _editor(request, stored)
