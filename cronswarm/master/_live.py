"""Live output of a run for the dashboard: ``GET /api/runs/{record_id}/live``.

Server-sent events (see ``cronswarm.common._sse``). ``record_id`` is
``<job>@<tick>#<attempt>`` (``#`` sent as ``%23``), or ``<job>@<tick>`` for
the newest attempt. Role: viewer.

* While the run lives, ``/running/<job>/<run_id>`` names its worker and the
  worker's registry value (``/workers/<id>``) its ``http`` base URL; the
  master asks that worker for the stream, signed with the cluster key, and
  passes the events on as they come.
* When no worker has it (finished, or its worker is gone), the stored record
  is sent from MongoDB: its head, its tail (at its true offset), then ``end``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from ..common import (
    SSE_HEADERS,
    Keyspace,
    NotFoundError,
    RunRecord,
    end_event,
    live_auth_header,
    output_event,
    parse_record_id,
    sse_event,
)
from ..coord import CoordStore
from ..logstore import LogStore, RunQuery
from ._auth import Role
from ._http import COORD, LOGS, SESSION_KEY, SETTINGS, require

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CONNECT_TIMEOUT_S = 5.0  # to reach the worker; the stream itself has no time limit
async def worker_url(store: CoordStore, keys: Keyspace, job: str, run: str) -> str | None:
    """The live output base URL of the worker running ``run`` now, if any."""
    running = await store.get(keys.running(job, run))
    worker = _json(running.value).get("worker") if running is not None else None
    if not isinstance(worker, str):
        return None
    registered = await store.get(keys.worker(worker))
    url = _json(registered.value).get("http") if registered is not None else None
    return url if isinstance(url, str) and url.startswith("http") else None


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def stored_record(logs: LogStore, job: str, tick: int, attempt: int | None
                        ) -> RunRecord | None:
    run = f"{job}@{tick}"
    if attempt is not None:
        return await logs.get_run(f"{run}#{attempt}")
    page = await logs.query_runs(RunQuery(job=job, since=tick, until=tick + 1, limit=1000))
    attempts = [r for r in page.runs if r.run_id == run]
    return max(attempts, key=lambda r: r.attempt) if attempts else None


def stored_events(record: RunRecord) -> list[bytes]:
    """A finished (or orphaned) record as the events a live stream would have sent."""
    events = []
    head = record.output.encode()
    if head:
        events.append(output_event(0, record.output))
    if record.output_tail:
        tail = record.output_tail.encode()
        events.append(output_event(max(len(head), record.output_bytes - len(tail)),
                                   record.output_tail))
    events.append(end_event(record.status.value, output_bytes=record.output_bytes,
                            truncated=record.truncated))
    return events


async def _relay(request: web.Request, url: str, record_id: str) -> web.StreamResponse | None:
    """Pass the worker's stream on; None if the worker does not have the run."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S,
                                    connect=CONNECT_TIMEOUT_S)
    headers = {"Authorization": live_auth_header(request.app[SESSION_KEY], record_id),
               "Accept": "text/event-stream"}
    target = f"{url.rstrip('/')}/runs/{quote(record_id, safe='@')}/output"
    response: web.StreamResponse | None = None
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(target, headers=headers) as upstream,
        ):
            if upstream.status != 200:
                if upstream.status != 404:
                    log.warning("worker at %s answered %d for %s", url, upstream.status,
                                record_id)
                return None
            response = web.StreamResponse(headers=SSE_HEADERS)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
    except ConnectionResetError:
        log.debug("viewer of %s left", record_id)  # closing the session drops the worker too
    except (aiohttp.ClientError, TimeoutError) as exc:
        if response is None:
            log.info("cannot reach worker at %s for %s: %s", url, record_id, exc)
            return None
        with contextlib.suppress(ConnectionResetError):
            await response.write(sse_event({"message": f"worker connection lost: {exc}"},
                                           event="error"))
    return response


@routes.get("/api/runs/{record_id}/live")
async def live_output(request: web.Request) -> web.StreamResponse:
    require(request, Role.VIEWER)
    wanted = parse_record_id(request.match_info["record_id"])
    keys = Keyspace(request.app[SETTINGS].key_prefix)
    url = await worker_url(request.app[COORD], keys, wanted.job, wanted.run_id)
    if url is not None and (relayed := await _relay(request, url, str(wanted))) is not None:
        return relayed
    record = await stored_record(request.app[LOGS], *wanted)
    if record is None:
        raise NotFoundError("run", str(wanted))
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):  # the viewer may leave early
        for event in stored_events(record):
            await response.write(event)
    return response
