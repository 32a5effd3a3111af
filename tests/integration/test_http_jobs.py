"""HTTP jobs against a local aiohttp server: each outcome recorded with a clear error."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cronswarm.common import Job, Keyspace, RunStatus, Settings
from cronswarm.coord import EtcdStore
from cronswarm.devservices import free_port
from cronswarm.logstore import MongoLogStore
from cronswarm.worker import BoundedOutput, ExecResult, HttpExecutor, RunContext
from tests.workerkit import create_job, job_service, ms, running_worker, wait_final


class Site:
    """The server's view: requests seen, and a gate slow handlers wait on."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.never = asyncio.Event()  # slow handlers wait for it; nobody sets it
        self.failures_left = 0


@pytest.fixture
async def site() -> AsyncIterator[tuple[Site, str]]:
    state = Site()

    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        state.requests.append({"method": request.method, "headers": dict(request.headers),
                               "body": body, "path": request.path})
        return web.Response(text=f"{request.method} {body}".strip())

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope")

    async def flaky(request: web.Request) -> web.Response:
        state.requests.append({"path": request.path,
                               "attempt": request.headers.get("X-Cronswarm-Attempt")})
        if state.failures_left > 0:
            state.failures_left -= 1
            return web.Response(status=503, text="busy")
        return web.Response(text="done")

    async def hang(request: web.Request) -> web.Response:
        await state.never.wait()
        raise AssertionError("unreachable")

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"partial ")
        await state.never.wait()
        return response

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(80):
            await response.write(b"y" * 65536)
        await response.write(b"THE END")
        return response

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/hang", hang)
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/big", big)
    app.router.add_get("/redirect", redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield state, str(server.make_url("")).rstrip("/")
    finally:
        state.never.set()
        await server.close()


def http_job(http: dict[str, Any], **fields: Any) -> Job:
    return Job.from_dict({"name": "call", "schedule": "* * * * *", "http": http, **fields})


async def execute(job: Job) -> tuple[ExecResult, BoundedOutput, RunContext]:
    ctx = RunContext(job, "call@1000", 1000, 1, "w1", output=BoundedOutput(65536, 65536))
    return await HttpExecutor().execute(ctx), ctx.output, ctx


async def test_success_records_status_and_body_and_sends_the_request(
        site: tuple[Site, str]) -> None:
    state, base = site
    job = http_job({"url": f"{base}/echo", "method": "post", "body": "payload",
                    "headers": {"X-Token": "t1", "User-Agent": "mine"}})
    result, output, _ = await execute(job)
    assert (result.status, result.http_status, result.error) == (RunStatus.SUCCEEDED, 200, None)
    assert output.head == b"POST payload"
    seen = state.requests[-1]
    assert seen["headers"]["X-Token"] == "t1"
    assert seen["headers"]["User-Agent"] == "mine"  # the job's header wins
    assert seen["headers"]["X-Cronswarm-Run-Id"] == "call@1000"
    assert seen["headers"]["X-Cronswarm-Attempt"] == "1"


async def test_unexpected_status_fails_naming_what_was_expected(site: tuple[Site, str]) -> None:
    _, base = site
    result, output, _ = await execute(http_job({"url": f"{base}/status/500"}))
    assert result.status is RunStatus.FAILED and result.http_status == 500
    assert result.error == "unexpected HTTP status 500 Internal Server Error (expected 2xx)"
    assert output.head == b"nope"
    listed, _, _ = await execute(http_job({"url": f"{base}/status/200",
                                           "expect_status": [202, 204]}))
    assert listed.error == "unexpected HTTP status 200 OK (expected 202, 204)"
    accepted, _, _ = await execute(http_job({"url": f"{base}/status/404",
                                             "expect_status": [404]}))
    assert accepted.status is RunStatus.SUCCEEDED


async def test_timeout_before_and_during_the_response(site: tuple[Site, str]) -> None:
    _, base = site
    result, _, _ = await execute(http_job({"url": f"{base}/hang"}, timeout=0.5))
    assert result.status is RunStatus.TIMEOUT
    assert result.error == "timed out after 0.5s"
    assert result.http_status is None
    result, output, _ = await execute(http_job({"url": f"{base}/trickle"}, timeout=0.5))
    assert result.status is RunStatus.TIMEOUT
    assert result.http_status == 200
    assert result.error == "timed out after 0.5s (HTTP 200 received, body still coming)"
    assert output.head == b"partial "


async def test_connection_refused_and_dns_failure_say_so() -> None:
    port = free_port()
    result, _, _ = await execute(http_job({"url": f"http://127.0.0.1:{port}/x"}))
    assert result.status is RunStatus.FAILED
    assert result.error == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    result, _, _ = await execute(http_job({"url": "http://no-such-host.invalid/"}, timeout=30))
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error.startswith("cannot resolve host 'no-such-host.invalid': ")


async def test_redirects_are_followed_only_when_asked(site: tuple[Site, str]) -> None:
    _, base = site
    followed, output, _ = await execute(http_job({"url": f"{base}/redirect"}))
    assert (followed.status, followed.http_status) == (RunStatus.SUCCEEDED, 200)
    assert followed.details["redirects"] == 1
    assert str(followed.details["final_url"]).endswith("/echo")
    assert output.head == b"GET"
    kept, _, _ = await execute(http_job({"url": f"{base}/redirect", "follow_redirects": False}))
    assert (kept.status, kept.http_status) == (RunStatus.FAILED, 302)
    allowed, _, _ = await execute(http_job({"url": f"{base}/redirect", "follow_redirects": False,
                                            "expect_status": [302]}))
    assert allowed.status is RunStatus.SUCCEEDED


async def test_a_big_body_is_bounded_with_its_true_size(site: tuple[Site, str]) -> None:
    _, base = site
    result, output, _ = await execute(http_job({"url": f"{base}/big"}))
    assert result.status is RunStatus.SUCCEEDED
    assert output.total == 80 * 65536 + 7
    assert output.truncated
    assert output.head == b"y" * 65536
    assert output.tail.endswith(b"THE END") and len(output.tail) == 65536


async def test_kill_cancels_the_call_in_flight(site: tuple[Site, str]) -> None:
    _, base = site
    job = http_job({"url": f"{base}/hang"})
    ctx = RunContext(job, "call@1000", 1000, 1, "w1")
    task = asyncio.create_task(HttpExecutor().execute(ctx))
    await ctx.started.wait()
    asked = time.monotonic()
    ctx.kill.pull("token:ops(1)", "stop it")
    result = await asyncio.wait_for(task, 10)
    assert time.monotonic() - asked < 1.0
    assert result.status is RunStatus.KILLED
    assert result.killed_by == "token:ops(1)"
    assert result.error == "killed: stop it (by token:ops(1))"


async def test_http_job_on_a_worker_retries_on_a_listed_status(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    site: tuple[Site, str],
) -> None:
    state, base = site
    state.failures_left = 1
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="ping", http={"url": f"{base}/flaky"},
                     retry={"attempts": 3, "delay": 0.2, "jitter": 0, "on_http_statuses": [503]})
    async with running_worker(settings, store, logs):
        rid = await jobs.run_now("ping", actor="tests")
        first = await wait_final(logs, f"{rid}#1")
        second = await wait_final(logs, f"{rid}#2")
    assert (first["status"], first["http_status"], first["output"]) == ("failed", 503, "busy")
    assert first["error"] == "unexpected HTTP status 503 Service Unavailable (expected 2xx)"
    assert (second["status"], second["http_status"], second["output"]) == ("succeeded", 200,
                                                                           "done")
    assert second["trigger"] == "retry"
    assert ms(second["started"]) - ms(first["ended"]) >= 200
    assert [r["attempt"] for r in state.requests] == ["1", "2"]
    assert await logs.runs.count_documents({"run_id": rid}) == 2


async def test_each_outcome_of_an_http_job_is_recorded_by_the_worker(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    site: tuple[Site, str],
) -> None:
    _, base = site
    refused = free_port()
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="ok", http={"url": f"{base}/echo", "method": "PUT", "body": "x"})
    await create_job(jobs, name="conflict", http={"url": f"{base}/status/409"})
    await create_job(jobs, name="slow", http={"url": f"{base}/hang"}, timeout=0.5)
    await create_job(jobs, name="down", http={"url": f"http://127.0.0.1:{refused}/x"})
    async with running_worker(settings, store, logs):
        docs = {}
        for name in ("ok", "conflict", "slow", "down"):
            rid = await jobs.run_now(name, actor="tests")
            docs[name] = await wait_final(logs, f"{rid}#1")
    got = {name: (d["status"], d["http_status"], d["error"], d["output"])
           for name, d in docs.items()}
    assert got == {
        "ok": ("succeeded", 200, None, "PUT x"),
        "conflict": ("failed", 409, "unexpected HTTP status 409 Conflict (expected 2xx)", "nope"),
        "slow": ("timeout", None, "timed out after 0.5s", ""),
        "down": ("failed", None, f"cannot connect to 127.0.0.1:{refused}: Connection refused",
                 ""),
    }
    assert docs["ok"]["summary"] == f"PUT {base}/echo"
    assert all(d["exit_code"] is None for d in docs.values())


async def test_local_addresses_are_denied_after_resolution_when_asked(
        site: tuple[Site, str]) -> None:
    state, base = site
    port = base.rsplit(":", 1)[1]
    deny = HttpExecutor(deny_local=True)
    for url in (f"{base}/echo", f"http://localhost:{port}/echo"):  # literal, then by DNS
        ctx = RunContext(http_job({"url": url}), "call@1000", 1000, 1, "w1",
                         output=BoundedOutput(65536, 65536))
        result = await deny.execute(ctx)
        assert result.status is RunStatus.FAILED, url
        assert result.error is not None and "loopback" in result.error, result.error
        assert "CRONSWARM_HTTP_DENY_LOCAL" in result.error
    assert state.requests == []  # nothing reached the site
    allowed, _, _ = await execute(http_job({"url": f"{base}/echo"}))  # the default allows
    assert allowed.status is RunStatus.SUCCEEDED
