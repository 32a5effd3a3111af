"""Live output of the attempts running on this worker, over HTTP (and the
worker's Prometheus metrics at ``/metrics``).

Each worker serves ``GET /runs/{record_id}/output`` on
``CRONSWARM_WORKER_HTTP_HOST``/``CRONSWARM_WORKER_HTTP_PORT`` (port 0: any
free port) and advertises the base URL as ``"http"`` in its registry value
(``/workers/<id>``). Masters relay the stream to the dashboard; see
``cronswarm.master._live``.

* Authentication: ``Authorization: Cronswarm <hmac>`` where the HMAC is
  ``cronswarm.common.live_signature(cluster key, record id)``. Only holders of
  the cluster key (masters) can read output; anything else gets 401.
* Limits: each stream holds a slot of the worker's ``StreamLimits`` — per
  viewer (the master's address and the viewer it names in
  ``X-Cronswarm-Viewer``) and in total; beyond one the answer is 429 with
  ``Retry-After`` and the limit named. A reader that takes nothing for the
  limits' ``stall_timeout`` is disconnected.
* ``/metrics`` needs ``Authorization: Bearer <CRONSWARM_METRICS_TOKEN>`` when
  that setting is given, as on masters.
* ``record_id`` is ``<job>@<tick>#<attempt>``, or ``<job>@<tick>`` for the
  newest attempt of that run here.
* The response is server-sent events (``cronswarm.common._sse``): what the
  attempt has printed so far (its head, and its tail when the middle was
  dropped), then each new chunk as it arrives, then ``end`` with the status.
  A reader that falls more than ``SUBSCRIBER_BUFFER`` bytes behind loses the
  oldest pending chunks; the offsets show the gap, and its ``end`` event says
  how many bytes it missed (``dropped``). Memory stays bounded.
* Finished attempts stay readable for a while (the newest
  ``KEEP_FINISHED``), so a viewer arriving just after the end still gets the
  whole output from the worker; after that, masters read MongoDB.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web

from ..common import (
    SSE_HEADERS,
    VIEWER_HEADER,
    ConfigError,
    ReaderStalled,
    StreamLimits,
    TooManyStreams,
    check_live_auth,
    end_event,
    output_event,
    same_signature,
    sse_comment,
    write_within,
)
from ._output import BoundedOutput

log = logging.getLogger(__name__)

KEEP_FINISHED = 32
SUBSCRIBER_BUFFER = 1 << 20  # bytes a slow reader may fall behind before chunks drop
HEARTBEAT_S = 15.0


class Feed:
    """The output of one attempt, while it runs and a little after."""

    def __init__(self, record_id: str, output: BoundedOutput) -> None:
        self.record_id = record_id
        self.output = output
        self.status: str | None = None
        self.ended = asyncio.Event()

    def finish(self, status: str) -> None:
        self.status = status
        self.ended.set()


class OutputFeeds:
    """Feeds by record id: the running attempts and the last finished ones."""

    def __init__(self, keep_finished: int = KEEP_FINISHED) -> None:
        self._live: dict[str, Feed] = {}
        self._finished: collections.OrderedDict[str, Feed] = collections.OrderedDict()
        self._keep = keep_finished
        self._added = asyncio.Event()

    @contextmanager
    def track(self, record_id: str, output: BoundedOutput) -> Iterator[Feed]:
        """Publish ``output`` under ``record_id`` while the block runs.

        Call ``Feed.finish`` inside the block; leaving it without (an error)
        ends the feed as ``failed``.
        """
        feed = Feed(record_id, output)
        self._live[record_id] = feed
        self._added.set()
        self._added = asyncio.Event()
        try:
            yield feed
        finally:
            if not feed.ended.is_set():
                feed.finish("failed")
            if self._live.get(record_id) is feed:
                del self._live[record_id]
            self._finished[record_id] = feed
            self._finished.move_to_end(record_id)
            while len(self._finished) > self._keep:
                self._finished.popitem(last=False)

    def get(self, record_id: str) -> Feed | None:
        """The feed of ``record_id``; a bare run id means its newest attempt here."""
        if "#" in record_id:
            return self._live.get(record_id) or self._finished.get(record_id)
        prefix = record_id + "#"
        best: Feed | None = None
        for feed in (*self._finished.values(), *self._live.values()):
            if feed.record_id.startswith(prefix) and (
                    best is None or _attempt(feed) >= _attempt(best)):
                best = feed
        return best

    async def wait_feed(self, record_id: str) -> Feed:
        """The feed of ``record_id`` once its attempt has started here."""
        while (feed := self.get(record_id)) is None:
            await self._added.wait()
        return feed

    def __len__(self) -> int:
        return len(self._live)


def _attempt(feed: Feed) -> int:
    tail = feed.record_id.rpartition("#")[2]
    return int(tail) if tail.isdigit() else 0


class Subscriber:
    """One reader's queue of (offset, chunk), bounded by ``limit`` bytes."""

    def __init__(self, output: BoundedOutput, limit: int = SUBSCRIBER_BUFFER) -> None:
        self.limit = limit
        self.pending: collections.deque[tuple[int, bytes]] = collections.deque()
        self.pending_bytes = 0
        self.dropped = 0
        self.wake = asyncio.Event()
        # Snapshot and subscription happen in one step: no chunk is seen twice or missed.
        head, tail, total = output.head, output.tail, output.total
        if head:
            self._push(0, head)
        if tail:
            self._push(total - len(tail), tail)
        self.unsubscribe = output.subscribe(self._on_chunk)
        self._output = output

    def _on_chunk(self, chunk: bytes) -> None:
        self._push(self._output.total - len(chunk), chunk)

    def _push(self, offset: int, chunk: bytes) -> None:
        self.pending.append((offset, chunk))
        self.pending_bytes += len(chunk)
        while self.pending_bytes > self.limit and len(self.pending) > 1:
            _, old = self.pending.popleft()
            self.pending_bytes -= len(old)
            self.dropped += len(old)
        self.wake.set()

    def take(self) -> list[tuple[int, bytes]]:
        items = list(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        self.wake.clear()
        return items


async def stream_feed(request: web.Request, feed: Feed, stall_timeout: float
                      ) -> web.StreamResponse:
    """Send ``feed`` as server-sent events until it ends or the reader leaves
    (or takes nothing for ``stall_timeout`` seconds: then it is disconnected)."""
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    sub = Subscriber(feed.output)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    expected = 0

    async def send(data: bytes) -> None:
        await write_within(response.write, data, stall_timeout)

    try:
        while True:
            ended = feed.ended.is_set()
            for offset, chunk in sub.take():
                if offset != expected:
                    decoder.reset()  # a gap: do not glue bytes across it
                expected = offset + len(chunk)
                await send(output_event(offset, decoder.decode(chunk)))
            if ended:
                out = feed.output
                await send(end_event(feed.status or "failed", output_bytes=out.total,
                                     truncated=out.truncated, dropped=sub.dropped))
                break
            try:
                async with asyncio.timeout(HEARTBEAT_S):
                    await _first(sub.wake, feed.ended)
            except TimeoutError:
                await send(sse_comment("running"))
    except ReaderStalled:
        log.info("live output reader of %s took nothing for %g s: disconnected",
                 feed.record_id, stall_timeout)
        if request.transport is not None:
            request.transport.abort()
    except ConnectionResetError:
        log.debug("live output reader of %s left", feed.record_id)
    finally:
        sub.unsubscribe()
    return response


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


FEEDS = web.AppKey("feeds", OutputFeeds)
CLUSTER_KEY = web.AppKey("cluster_key", bytes)
STREAMS = web.AppKey("live_streams", StreamLimits)


async def output_view(request: web.Request) -> web.StreamResponse:
    record_id = request.match_info["record_id"]
    if not check_live_auth(request.app[CLUSTER_KEY], record_id,
                           request.headers.get("Authorization")):
        return web.json_response({"error": {"code": "unauthenticated",
                                             "message": "bad or missing signature"}},
                                 status=401)
    feed = request.app[FEEDS].get(record_id)
    if feed is None:
        return web.json_response({"error": {"code": "not_found",
                                             "message": f"{record_id} is not on this worker"}},
                                 status=404)
    limits = request.app[STREAMS]
    viewer = f"{request.remote}/{request.headers.get(VIEWER_HEADER, '')}"
    try:
        with limits.slot(viewer):
            return await stream_feed(request, feed, limits.stall_timeout)
    except TooManyStreams as exc:
        return web.json_response({"error": exc.as_dict()}, status=429,
                                 headers={"Retry-After": str(exc.retry_after)})


Metrics = Callable[[], tuple[bytes, str]]  # the Prometheus text and its content type


def create_live_app(feeds: OutputFeeds, cluster_key: bytes, metrics: Metrics | None = None,
                    *, limits: StreamLimits | None = None, metrics_token: str | None = None
                    ) -> web.Application:
    app = web.Application()
    app[FEEDS] = feeds
    app[CLUSTER_KEY] = cluster_key
    app[STREAMS] = limits or StreamLimits(server="worker")
    app.router.add_get("/runs/{record_id}/output", output_view)
    if metrics is not None:
        render = metrics

        async def metrics_view(request: web.Request) -> web.Response:
            """The worker's Prometheus metrics (counts only): open, unless
            ``CRONSWARM_METRICS_TOKEN`` is set; then the scraper must send it."""
            if metrics_token and not same_signature(request.headers.get("Authorization", ""),
                                                    f"Bearer {metrics_token}"):
                log.info("/metrics refused to %s: bad or missing metrics token",
                         request.remote)
                return web.json_response(
                    {"error": {"code": "unauthenticated", "message":
                               "/metrics needs 'Authorization: Bearer "
                               "<CRONSWARM_METRICS_TOKEN>'"}},
                    status=401, headers={"WWW-Authenticate": 'Bearer realm="cronswarm"'})
            body, content_type = render()
            return web.Response(body=body, headers={"Content-Type": content_type})

        app.router.add_get("/metrics", metrics_view)
    return app


class LiveOutputServer:
    """The worker's HTTP endpoint; ``start`` returns the URL to advertise."""

    def __init__(self, feeds: OutputFeeds, host: str, port: int, *,
                 metrics: Metrics | None = None, metrics_token: str | None = None,
                 limits: StreamLimits | None = None) -> None:
        self.feeds = feeds
        self.host = host
        self.port = port
        self.metrics = metrics
        self.metrics_token = metrics_token
        self.limits = limits or StreamLimits(server="worker")
        self.url: str | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, cluster_key: bytes) -> str:
        runner = web.AppRunner(create_live_app(self.feeds, cluster_key, self.metrics,
                                               limits=self.limits,
                                               metrics_token=self.metrics_token),
                               access_log=None,
                               # a reader leaving ends its stream (and frees its
                               # slot) at once, not at the next heartbeat
                               handler_cancellation=True,
                               shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.close()
            raise ConfigError("CRONSWARM_WORKER_HTTP_HOST/PORT",
                              f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        port = runner.addresses[0][1] if runner.addresses else self.port  # when 0 asked any
        self.url = f"http://{advertised_host(self.host)}:{port}"
        log.info("live output served on %s", self.url)
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def advertised_host(bind_host: str) -> str:
    """The host name others use to reach a server bound to ``bind_host``."""
    if bind_host in ("", "0.0.0.0", "::"):
        return socket.getfqdn()
    if ":" in bind_host and not bind_host.startswith("["):
        return f"[{bind_host}]"
    return bind_host
