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
* Each stream holds a slot of the master's ``StreamLimits`` (per viewer: the
  caller's token, a dashboard session counting as the token it was opened
  with; and in total) from before it reaches the worker until it ends; beyond
  a limit the answer is 429 with ``Retry-After``. The worker has limits of its
  own (per master and viewer, named in ``X-Cronswarm-Viewer``); its 429 is
  passed on. A viewer that takes nothing for the limits' ``stall_timeout`` is
  disconnected; until then the worker drops what it falls behind on.
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
    VIEWER_HEADER,
    Keyspace,
    NotFoundError,
    ReaderStalled,
    RunRecord,
    StreamLimits,
    end_event,
    live_auth_header,
    output_event,
    parse_record_id,
    sse_event,
    write_within,
)
from ..coord import CoordStore
from ..logstore import LogStore, RunQuery
from ._auth import Role
from ._http import COORD, LOGS, SESSION_KEY, SETTINGS, require

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

CONNECT_TIMEOUT_S = 5.0  # to reach the worker; the stream itself has no time limit
STREAMS = web.AppKey("live_streams", StreamLimits)

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


def drop_reader(request: web.Request, what: str) -> None:
    """Disconnect a reader that took nothing for the stall timeout (its buffers go)."""
    log.info("live output reader of %s stalled: disconnected", what)
    if request.transport is not None:
        request.transport.abort()


async def _relay(request: web.Request, url: str, record_id: str, viewer: str
                 ) -> web.StreamResponse | None:
    """Pass the worker's stream on; None if the worker does not have the run."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S,
                                    connect=CONNECT_TIMEOUT_S)
    headers = {"Authorization": live_auth_header(request.app[SESSION_KEY], record_id),
               "Accept": "text/event-stream", VIEWER_HEADER: viewer}
    stall = request.app[STREAMS].stall_timeout
    target = f"{url.rstrip('/')}/runs/{quote(record_id, safe='@')}/output"
    response: web.StreamResponse | None = None
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(target, headers=headers) as upstream,
        ):
            if upstream.status == 429:  # the worker's own limit: say which
                body = await upstream.read()
                return web.Response(status=429, body=body, headers={
                    "Content-Type": "application/json",
                    "Retry-After": upstream.headers.get("Retry-After", "5")})
            if upstream.status != 200:
                if upstream.status != 404:
                    log.warning("worker at %s answered %d for %s", url, upstream.status,
                                record_id)
                return None
            response = web.StreamResponse(headers=SSE_HEADERS)
            await response.prepare(request)
            # Backpressure: while the viewer is slow, this stops reading the
            # worker, whose own buffer for the stream is bounded (it drops).
            async for chunk in upstream.content.iter_any():
                await write_within(response.write, chunk, stall)
    except ReaderStalled:
        drop_reader(request, record_id)
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
    who = require(request, Role.VIEWER)
    wanted = parse_record_id(request.match_info["record_id"])
    limits = request.app[STREAMS]
    with limits.slot(who.token_id):
        keys = Keyspace(request.app[SETTINGS].key_prefix)
        url = await worker_url(request.app[COORD], keys, wanted.job, wanted.run_id)
        if url is not None and (
                relayed := await _relay(request, url, str(wanted), who.token_id)) is not None:
            return relayed
        record = await stored_record(request.app[LOGS], *wanted)
        if record is None:
            raise NotFoundError("run", str(wanted))
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        try:
            for event in stored_events(record):
                await write_within(response.write, event, limits.stall_timeout)
        except ReaderStalled:
            drop_reader(request, str(wanted))
        except ConnectionResetError:
            pass  # the viewer may leave early
        return response
