"""Live output: worker endpoint, master relay, stored fallback, on real services."""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from cronswarm.common import Keyspace, Settings, live_auth_header
from cronswarm.coord import EtcdStore, load_cluster_key
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role, create_app
from tests.apiclient import Api, running_master
from tests.conftest import make_token
from tests.workerkit import (
    Gate,
    SseReader,
    create_job,
    job_service,
    running_worker,
    wait_final,
    wait_output,
)


@pytest.fixture
async def viewer(settings: Settings, store: EtcdStore, keys: Keyspace,
                 logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(settings, await make_token(store, keys, Role.VIEWER)) as api:
        yield api


def live_path(record_id: str) -> str:
    return f"/api/runs/{record_id.replace('#', '%23')}/live"


async def test_dashboard_tails_a_running_job_then_reads_it_from_history(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, viewer: Api,
    tmp_path: Path,
) -> None:
    jobs = job_service(store, logs, keys)
    gate = Gate(tmp_path)
    await create_job(jobs, name="chatty", command=f"echo first; {gate.wait_command}; echo second")
    headers = {"Authorization": f"Bearer {viewer.token}"}
    try:
        async with running_worker(settings, store, logs) as worker:
            kv = await store.get(keys.worker(worker.id))
            assert kv is not None
            assert json.loads(kv.value)["http"] == worker.live_server.url
            rid = await jobs.run_now("chatty", actor="tests")
            record_id = f"{rid}#1"
            await wait_output(worker, record_id, b"first")
            async with viewer.session.get(viewer.base + live_path(record_id),
                                          headers=headers) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                events = SseReader(resp)
                assert await events.next() == ("message", {"offset": 0, "data": "first\n"})
                gate.release()
                rest = await events.until("end")
            assert rest == [("message", {"offset": 6, "data": "second\n"}),
                            ("end", {"status": "succeeded", "output_bytes": 13,
                                     "truncated": False})]
            await wait_final(logs, record_id)
    finally:
        gate.close()
    # The worker is gone: the master serves the stored record, same shape.
    async with viewer.session.get(viewer.base + live_path(rid), headers=headers) as resp:
        assert resp.status == 200
        stored = await SseReader(resp).until("end")
    assert stored == [("message", {"offset": 0, "data": "first\nsecond\n"}),
                      ("end", {"status": "succeeded", "output_bytes": 13, "truncated": False})]


async def test_worker_endpoint_needs_the_cluster_signature(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path,
) -> None:
    jobs = job_service(store, logs, keys)
    gate = Gate(tmp_path)
    await create_job(jobs, name="quiet", command=gate.wait_command)
    key = await load_cluster_key(store, keys, None)
    try:
        async with running_worker(settings, store, logs) as worker:
            rid = await jobs.run_now("quiet", actor="tests")
            record_id = f"{rid}#1"
            await worker.feeds.wait_feed(record_id)
            assert worker.live_server.url is not None
            url = f"{worker.live_server.url}/runs/{record_id.replace('#', '%23')}/output"
            async with ClientSession() as http:
                assert (await http.get(url)).status == 401
                forged = live_auth_header(b"x" * 32, record_id)
                assert (await http.get(url, headers={"Authorization": forged})).status == 401
                other = live_auth_header(key, f"{rid}#2")
                assert (await http.get(url, headers={"Authorization": other})).status == 401
                missing = url.replace("%231", "%239")
                sig = live_auth_header(key, f"{rid}#9")
                assert (await http.get(missing, headers={"Authorization": sig})).status == 404
                async with http.get(url, headers={
                        "Authorization": live_auth_header(key, record_id)}) as resp:
                    assert resp.status == 200
                    gate.release()
                    assert await SseReader(resp).until("end") == [
                        ("end", {"status": "succeeded", "output_bytes": 0,
                                 "truncated": False})]
    finally:
        gate.close()


async def test_live_route_checks_role_and_record_id(viewer: Api) -> None:
    anonymous = viewer.as_token(None)
    assert (await anonymous.call("GET", live_path("x@1000#1"))).status == 401
    resp = await viewer.call("GET", live_path("no-tick"))
    assert resp.status == 400
    assert (await resp.json())["error"]["fields"][0]["field"] == "record_id"
    resp = await viewer.call("GET", live_path("x@1000#0"))
    assert resp.status == 400
    resp = await viewer.call("GET", live_path("x@1000#1"))
    assert resp.status == 404
    resp = await viewer.call("GET", live_path("x@619240517286030"))  # beyond year 9999
    assert resp.status == 400  # as on /api/runs/{record_id}: one parser of record ids


async def test_a_viewer_leaving_mid_stream_is_not_an_error(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = job_service(store, logs, keys)
    gate = Gate(tmp_path)
    await create_job(jobs, name="abandoned",
                     command=f"echo one; {gate.wait_command}; seq 1 20000; echo two")
    headers = {"Authorization": f"Bearer {await make_token(store, keys, Role.VIEWER)}"}
    # A master served as in production: handlers are not cancelled when a client leaves.
    runner = web.AppRunner(create_app(settings), handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with running_worker(settings, store, logs) as worker:
            rid = await jobs.run_now("abandoned", actor="tests")
            record_id = f"{rid}#1"
            feed = await worker.feeds.wait_feed(record_id)
            await wait_output(worker, record_id, b"one")
            async with ClientSession() as own:
                resp = await own.get(base + live_path(record_id), headers=headers)
                assert (await SseReader(resp).next())[1]["data"] == "one\n"
                resp.close()  # the viewer leaves while the job still runs
            gate.release()
            doc = await wait_final(logs, record_id)
            assert feed.ended.is_set()
    finally:
        gate.close()
        await runner.cleanup()
    assert doc["status"] == "succeeded"
    assert doc["output_tail"].endswith("20000\ntwo\n")
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []
