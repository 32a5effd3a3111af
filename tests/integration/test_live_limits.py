"""Live output streams are limited per viewer and in total, on workers and on
masters, and a reader that stops reading is disconnected; workers' /metrics
honours CRONSWARM_METRICS_TOKEN."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import ClientResponse, ClientSession

from cronswarm.common import VIEWER_HEADER, StreamLimits, live_auth_header
from cronswarm.worker import BoundedOutput, LiveOutputServer, OutputFeeds
from tests.workerkit import SseReader

KEY = bytes(range(32))


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool],
                     timeout: float = 20) -> None:
    """Wait until ``check()`` holds, checking again every 20 ms, for ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def worker_endpoint(limits: StreamLimits, *, metrics_token: str | None = None
                          ) -> AsyncIterator[tuple[str, OutputFeeds]]:
    """A worker's live output server on a real socket, with one running attempt
    ``job@1000#1`` whose output the test feeds."""
    feeds = OutputFeeds()
    server = LiveOutputServer(feeds, "127.0.0.1", 0, limits=limits,
                              metrics=lambda: (b"cronswarm_up 1\n", "text/plain"),
                              metrics_token=metrics_token)
    url = await server.start(KEY)
    try:
        yield url, feeds
    finally:
        await server.close()


def output_url(base: str, record_id: str) -> str:
    return f"{base}/runs/{record_id.replace('#', '%23')}/output"


async def open_stream(http: ClientSession, base: str, viewer: str) -> ClientResponse:
    return await http.get(output_url(base, "job@1000#1"), headers={
        "Authorization": live_auth_header(KEY, "job@1000#1"), VIEWER_HEADER: viewer})


async def test_a_worker_limits_streams_per_viewer_and_in_total() -> None:
    limits = StreamLimits(per_viewer=2, total=3, server="worker")
    async with worker_endpoint(limits) as (base, feeds), ClientSession() as http:
        with feeds.track("job@1000#1", BoundedOutput()) as feed:
            feed.output.feed(b"hello\n")
            alice = [await open_stream(http, base, "alice") for _ in range(2)]
            for resp in alice:
                assert resp.status == 200
                assert (await SseReader(resp).next())[1] == {"offset": 0, "data": "hello\n"}
            refused = await open_stream(http, base, "alice")
            assert refused.status == 429
            assert int(refused.headers["Retry-After"]) > 0
            body = (await refused.json())["error"]
            assert (body["code"], body["limit"], body["max"], body["server"]) == (
                "too_many_streams", "per_viewer", 2, "worker")
            bob = await open_stream(http, base, "bob")  # another viewer still gets one
            assert bob.status == 200
            carol = await open_stream(http, base, "carol")
            assert carol.status == 429
            assert (await carol.json())["error"]["limit"] == "total"
            assert limits.open_streams == 3
            # Closing a stream frees its slot at once (the handler is cancelled).
            alice[0].close()
            await eventually(lambda: limits.open_streams == 2)
            again = await open_stream(http, base, "alice")
            assert again.status == 200
            feed.finish("succeeded")
            for resp in (alice[1], bob, again):
                events = await SseReader(resp).until("end")
                assert events[-1] == ("end", {"status": "succeeded", "output_bytes": 6,
                                              "truncated": False})
        await eventually(lambda: limits.open_streams == 0)


async def test_a_reader_that_stops_reading_is_disconnected_and_frees_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "cronswarm.worker._live")
    limits = StreamLimits(per_viewer=1, total=1, server="worker", stall_timeout=0.5)
    async with worker_endpoint(limits) as (base, feeds):
        host, port = base.removeprefix("http://").split(":")
        with feeds.track("job@1000#1", BoundedOutput(1024, 1024)) as feed:
            # A reader with a tiny receive window that never reads a byte.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (host, int(port)))
            request = (f"GET /runs/job@1000%231/output HTTP/1.1\r\nHost: {host}\r\n"
                       f"Authorization: {live_auth_header(KEY, 'job@1000#1')}\r\n\r\n")
            await loop.sock_sendall(sock, request.encode())
            try:
                await eventually(lambda: limits.open_streams == 1)
                chunk = b"x" * 65536
                fed = 0
                # Output keeps coming; the stream's own queue stays bounded (it
                # drops the oldest), the socket fills, the write waits, and after
                # the stall timeout the reader is cut off.
                async with asyncio.timeout(60):
                    while limits.open_streams:
                        feed.output.feed(chunk)
                        fed += len(chunk)
                        await asyncio.sleep(0.01)  # pace the producer, as a job would
                assert any("took nothing for 0.5 s: disconnected" in r.getMessage()
                           for r in caplog.records)
                # The slot is free: a new reader gets the stream.
                async with ClientSession() as http:
                    resp = await open_stream(http, base, "next")
                    assert resp.status == 200
                    feed.finish("succeeded")
                    end = (await SseReader(resp).until("end"))[-1]
                    assert end[0] == "end" and end[1]["output_bytes"] == fed
            finally:
                sock.close()


async def test_worker_metrics_need_the_metrics_token_when_it_is_set() -> None:
    async with worker_endpoint(StreamLimits(server="worker"), metrics_token="s3cret") as (
            base, _), ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            resp = await http.get(f"{base}/metrics", headers=headers)
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "unauthenticated"
        resp = await http.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret"})
        assert resp.status == 200
        assert await resp.text() == "cronswarm_up 1\n"
    async with worker_endpoint(StreamLimits(server="worker")) as (base, _), \
            ClientSession() as http:
        resp = await http.get(f"{base}/metrics")  # unset: open, as before
        assert resp.status == 200
