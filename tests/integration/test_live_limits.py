"""Live output streams are limited per viewer and in total, on workers and on
masters, and a reader that stops reading is disconnected; workers' /metrics
honours CRONSWARM_METRICS_TOKEN."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, TCPConnector

from cronswarm.common import VIEWER_HEADER, Keyspace, Settings, StreamLimits, live_auth_header
from cronswarm.coord import EtcdStore, load_cluster_key
from cronswarm.devservices import free_port
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role
from cronswarm.worker import BoundedOutput, LiveOutputServer, OutputFeeds
from tests import procs
from tests.apiclient import running_master
from tests.conftest import make_token
from tests.workerkit import (
    Gate,
    SseReader,
    create_job,
    job_service,
    running_worker,
    wait_final,
)

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
async def worker_endpoint(limits: StreamLimits, *, metrics_token: str | None = None,
                          key: bytes = KEY) -> AsyncIterator[tuple[str, OutputFeeds]]:
    """A worker's live output server on a real socket, with one running attempt
    ``job@1000#1`` whose output the test feeds."""
    feeds = OutputFeeds()
    server = LiveOutputServer(feeds, "127.0.0.1", 0, limits=limits,
                              metrics=lambda: (b"cronswarm_up 1\n", "text/plain"),
                              metrics_token=metrics_token)
    url = await server.start(key)
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
                resp.close()
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
                    resp.close()
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
    async with (
        worker_endpoint(StreamLimits(server="worker")) as (base, _),
        ClientSession() as http,
        http.get(f"{base}/metrics") as resp,
    ):
        assert resp.status == 200  # unset: open, as before


class Signal:
    """A FIFO a job writes a line to (``echo up > path``); the test awaits it."""

    def __init__(self, directory: Path, name: str = "signal") -> None:
        self.path = directory / name
        os.mkfifo(self.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    async def wait(self, timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._fd, lambda: ready.done() or ready.set_result(None))
        try:
            async with asyncio.timeout(timeout):
                await ready
        finally:
            loop.remove_reader(self._fd)
        os.read(self._fd, 4096)

    def close(self) -> None:
        os.close(self._fd)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


LIMITS = {"CRONSWARM_LIVE_STREAMS_PER_VIEWER": "2", "CRONSWARM_LIVE_STREAMS_TOTAL": "3"}


async def test_a_master_bounds_streams_per_viewer_and_in_total_and_its_fds(
    settings: Settings, store: EtcdStore, keys: Keyspace, logs: MongoLogStore, tmp_path: Path,
) -> None:
    jobs = job_service(store, logs, keys)
    gate, started = Gate(tmp_path), Signal(tmp_path)
    await create_job(jobs, name="tailed", command=(
        f"echo first; echo up > {started.path}; {gate.wait_command}; echo second; "
        f"{gate.wait_command}"))
    tokens = {who: await make_token(store, keys, Role.VIEWER) for who in ("alice", "bob", "carol")}
    port = free_port()
    master = await procs.start("master", settings.with_overrides(master_port=port), **LIMITS)
    worker = await procs.start("worker", settings, CRONSWARM_WORKER_ID="limits-w1", **LIMITS)
    # Each request on its own connection, closed after it: a refused viewer
    # leaves no idle keep-alive connection behind on the master.
    http = ClientSession(connector=TCPConnector(force_close=True))
    streams: list[ClientResponse] = []
    try:
        await master.wait_for_line("master listening")
        await worker.wait_for_line("ready with")
        rid = await jobs.run_now("tailed", actor="tests")
        await started.wait()  # the attempt runs: its feed is on the worker
        live = f"http://127.0.0.1:{port}/api/runs/{rid}%231/live"

        async def stream(who: str) -> ClientResponse:
            return await http.get(live, headers={"Authorization": f"Bearer {tokens[who]}"})

        fds_before = open_fds(master.pid), open_fds(worker.pid)
        for who in ("alice", "alice", "bob"):
            resp = await stream(who)
            assert resp.status == 200, await resp.text()
            assert (await SseReader(resp).next())[1] == {"offset": 0, "data": "first\n"}
            streams.append(resp)
        fds_full = open_fds(master.pid), open_fds(worker.pid)
        refusals: list[Any] = []
        for who in ("alice", "carol") * 10:
            resp = await stream(who)
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) > 0
            refusals.append((await resp.json())["error"])
            fds_now = open_fds(master.pid), open_fds(worker.pid)
            # A refused stream opens nothing for long: no connection to the
            # worker, no subscription (one socket may be closing on the master).
            assert fds_now[0] <= fds_full[0] + 1 and fds_now[1] <= fds_full[1], (
                fds_before, fds_full, fds_now)
        assert {(r["limit"], r["max"], r["server"]) for r in refusals[0::2]} == {
            ("per_viewer", 2, "master")}
        assert {(r["limit"], r["max"], r["server"]) for r in refusals[1::2]} == {
            ("total", 3, "master")}
        metrics = await (await http.get(f"http://127.0.0.1:{port}/metrics")).text()
        assert "\ncronswarm_live_streams 3.0\n" in metrics
        assert 'cronswarm_live_streams_refused_total{limit="per_viewer"} 10.0' in metrics
        assert 'cronswarm_live_streams_refused_total{limit="total"} 10.0' in metrics
        # Three streams cost the master two sockets each (viewer, worker) and
        # the worker one; allow two for connection pools growing meanwhile.
        assert fds_full[0] - fds_before[0] <= 3 * 2 + 2, (fds_before, fds_full)
        assert fds_full[1] - fds_before[1] <= 3 + 2, (fds_before, fds_full)

        # Alice leaves one stream: once the run prints again, the master finds
        # her gone (its write fails) and her slot, and the total's, are free.
        # (Her FIN is sent before the job goes on: close() alone would send it
        # at this process's next loop iteration, maybe after the job printed.)
        leaving = streams.pop(0)
        assert leaving.connection is not None and leaving.connection.transport is not None
        leaving.connection.transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        leaving.close()
        gate.release()
        for resp in streams:
            assert (await SseReader(resp).next())[1] == {"offset": 6, "data": "second\n"}

        async def alice_gets_one() -> bool:
            resp = await stream("alice")
            if resp.status == 429:
                return False
            assert resp.status == 200
            streams.append(resp)
            return True

        # Well before the workers' 15 s heartbeat, the other write that would find her gone.
        await eventually(alice_gets_one, timeout=10)
        gate.release()
        for resp in streams:
            assert (await SseReader(resp).until("end"))[-1][1]["status"] == "succeeded"
            resp.close()
        await wait_final(logs, f"{rid}#1")

        async def carol_gets_one() -> bool:  # all slots free again: the stored record
            resp = await stream("carol")
            if resp.status == 429:
                return False
            assert resp.status == 200
            assert (await SseReader(resp).until("end"))[-1][1]["status"] == "succeeded"
            resp.close()
            return True

        await eventually(carol_gets_one)
    finally:
        for resp in streams:
            resp.close()
        await http.close()
        gate.close()
        started.close()
        codes = await asyncio.gather(worker.stop(), master.stop())
    assert codes == [0, 0]


async def test_a_workers_refusal_reaches_the_viewer_through_the_master(
    settings: Settings, store: EtcdStore, keys: Keyspace, logs: MongoLogStore,
) -> None:
    limits = StreamLimits(per_viewer=1, total=1, server="worker")
    key = await load_cluster_key(store, keys, None)  # the one masters sign with
    async with worker_endpoint(limits, key=key) as (base, feeds):
        # The run's keys as a worker at ``base`` would have written them.
        await store.put(keys.worker("w1"), json.dumps({"http": base}).encode())
        await store.put(keys.running("job", "job@1000"), json.dumps({"worker": "w1"}).encode())
        viewers = [await make_token(store, keys, Role.VIEWER) for _ in range(2)]
        async with running_master(settings, viewers[0], logs=logs) as api:
            with feeds.track("job@1000#1", BoundedOutput()) as feed:
                feed.output.feed(b"hi\n")
                first = await api.session.get(api.base + "/api/runs/job@1000%231/live",
                                              headers={"Authorization": f"Bearer {viewers[0]}"})
                assert first.status == 200
                second = await api.as_token(viewers[1]).call("GET",
                                                             "/api/runs/job@1000%231/live")
                assert second.status == 429
                assert int(second.headers["Retry-After"]) > 0
                error = (await second.json())["error"]
                assert (error["code"], error["limit"], error["server"]) == (
                    "too_many_streams", "total", "worker")
                feed.finish("succeeded")
                assert (await SseReader(first).until("end"))[-1][1]["status"] == "succeeded"
                first.close()


async def test_a_worker_takes_its_metrics_token_and_limits_from_settings(
    settings: Settings, store: EtcdStore, logs: MongoLogStore,
) -> None:
    own = Settings.load({**settings.env(), "CRONSWARM_METRICS_TOKEN": "scrape-me",
                         "CRONSWARM_LIVE_STREAMS_PER_VIEWER": "3",
                         "CRONSWARM_LIVE_STREAMS_TOTAL": "7"})
    async with running_worker(own, store, logs) as worker, ClientSession() as http:
        limits = worker.live_server.limits
        assert (limits.per_viewer, limits.total, limits.server) == (3, 7, "worker")
        url = f"{worker.live_server.url}/metrics"
        async with http.get(url) as refused:
            assert refused.status == 401
        resp = await http.get(url, headers={"Authorization": "Bearer scrape-me"})
        assert resp.status == 200
        text = await resp.text()
        assert "cronswarm_build_info" in text and "\ncronswarm_live_streams 0.0\n" in text
