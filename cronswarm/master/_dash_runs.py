"""Dashboard pages of runs: the filterable history and one run with its output."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ..common import (
    NotFoundError,
    RunRecord,
    RunStatus,
    ValidationError,
    parse_record_id,
    run_id,
)
from ..logstore import RunQuery
from ._api import RUN_STATUSES, pick_attempt, run_attempts, run_query
from ._http import JOBS, LOGS
from ._jobs import JobService
from ._web import render, viewer

routes = web.RouteTableDef()

PAGE_SIZE = 50
FILTER_PARAMS = ("job", "status", "worker", "since", "until", "q")


def _as_utc(value: str) -> str:
    """A ``datetime-local`` value (no offset) is read as UTC, as the page says."""
    text = value.strip()
    if len(text) in (16, 19) and text[10:11] == "T":
        return text + "Z"
    return text


def runs_page_query(query: Mapping[str, str]) -> RunQuery:
    """The runs filters of the page, validated by the API's own parameter readers."""
    times = {k: _as_utc(query.get(k, "")) for k in ("since", "until")}
    return run_query(query, page_size=PAGE_SIZE, times=times)


@routes.get("/runs", name="runs_page")
async def runs_page(request: web.Request) -> web.Response:
    viewer(request)
    query = {k: request.query.get(k, "") for k in FILTER_PARAMS}
    context: dict[str, Any] = {"query": query, "statuses": RUN_STATUSES, "runs": [],
                               "next_page": None, "problem": None, "searched_to": None}
    try:
        wanted = runs_page_query(request.query)
        found = await request.app[LOGS].query_runs(wanted)
    except ValidationError as exc:
        context["problem"] = str(exc)
        return render(request, "runs.html", "runs", context, status=400)
    context["runs"] = found.runs
    context["searched_to"] = found.searched_to
    if found.next_cursor is not None:
        kept = {k: v for k, v in query.items() if v}
        context["next_page"] = "/runs?" + urlencode({**kept, "cursor": found.next_cursor})
    return render(request, "runs.html", "runs", context)


@dataclass(frozen=True, slots=True)
class Output:
    """A run's captured output as the page shows it: head, a gap, tail."""

    head: str
    tail: str
    skipped: int  # bytes neither in the head nor in the tail


def output_of(run: RunRecord) -> Output:
    if not run.truncated:
        return Output(run.output, "", 0)
    kept = len(run.output.encode()) + len(run.output_tail.encode())
    return Output(run.output, run.output_tail, max(0, run.output_bytes - kept))


async def live_run(service: JobService, job: str, tick: int, attempt: int | None
                   ) -> RunRecord | None:
    """A run alive now that has no record yet, from its running key in etcd."""
    rid = run_id(job, tick)
    for info in await service.running(job):
        if info.get("run_id") != rid:
            continue
        number = info.get("attempt")
        number = number if isinstance(number, int) else 1
        if attempt is not None and attempt != number:
            continue
        started = info.get("started")
        summary = ""
        with contextlib.suppress(NotFoundError):
            summary = (await service.get(job)).job.summary
        return RunRecord(run_id=rid, job=job, tick=tick, attempt=number,
                         worker=str(info.get("worker", "")), summary=summary,
                         status=RunStatus.RUNNING,
                         started=started if isinstance(started, int) else None)
    return None


@routes.get("/runs/{record_id}", name="run_page")
async def run_page(request: web.Request) -> web.Response:
    viewer(request)
    record_id = request.match_info["record_id"]
    job, tick, attempt = parse_record_id(record_id)
    attempts = await run_attempts(request.app[LOGS], job, tick)
    run = pick_attempt(attempts, attempt)
    if run is None:
        run = await live_run(request.app[JOBS], job, tick, attempt)
    if run is None:
        raise NotFoundError("run", record_id)
    return render(request, "run.html", "runs",
                  {"run": run, "attempts": attempts, "output": output_of(run)})
