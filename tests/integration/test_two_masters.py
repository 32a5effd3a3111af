"""Two master processes, no shared memory, one etcd and one MongoDB: a job made on
one is visible, editable and killable on the other at once; a stale ETag gets
412 on either and changes nothing."""

import asyncio
from typing import Any

from aiohttp import ClientSession

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.devservices import free_port
from cronswarm.logstore import MongoLogStore
from tests import procs
from tests.helpers import wait_for_count, wait_for_prefix

JOB = {"name": "sleeper", "schedule": "0 0 1 1 *", "command": "sleep 120", "kill_grace": 1}


class Master:
    def __init__(self, http: ClientSession, port: int) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{port}"

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any, str]:
        async with self.http.request(method, self.base + path, **kw) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, body, resp.headers.get("ETag", "")


async def test_a_job_made_on_one_master_is_visible_editable_killable_on_the_other(
    settings: Settings, admin_token: str, store: EtcdStore, keys: Keyspace,
    logs: MongoLogStore,
) -> None:
    ports = [free_port(), free_port()]
    masters = [await procs.start("master", settings.with_overrides(master_port=p))
               for p in ports]
    worker = await procs.start("worker", settings, CRONSWARM_WORKER_ID="two-masters-w1")
    try:
        for proc in masters:
            await proc.wait_for_line("master listening")
        await worker.wait_for_line("ready with")
        headers = {"Authorization": f"Bearer {admin_token}"}
        async with ClientSession(headers=headers) as http:
            a, b = (Master(http, p) for p in ports)
            status, created, etag1 = await a.call("POST", "/api/jobs", json=JOB)
            assert status == 201, created
            # Visible on B at once, at the same revision.
            status, seen, etag_b = await b.call("GET", "/api/jobs/sleeper")
            assert status == 200 and etag_b == etag1 and seen["command"] == "sleep 120"
            # Edited on B with A's ETag; A's stale edit then fails and changes nothing.
            status, edited, etag2 = await b.call("PATCH", "/api/jobs/sleeper",
                                                 json={"description": "by B"},
                                                 headers={"If-Match": etag1})
            assert status == 200 and etag2 != etag1, edited
            status, error, _ = await a.call("PATCH", "/api/jobs/sleeper",
                                            json={"command": "rm -rf /tmp/x"},
                                            headers={"If-Match": etag1})
            assert status == 412 and error["error"]["code"] == "precondition_failed"
            status, now, etag_a = await a.call("GET", "/api/jobs/sleeper")
            assert now["description"] == "by B" and now["command"] == "sleep 120"
            assert etag_a == etag2
            # Run on B, seen running on A, killed from A.
            status, requested, _ = await b.call("POST", "/api/jobs/sleeper/run")
            assert status == 202, requested
            run_id = requested["run_id"]
            await wait_for_prefix(store, keys.running_of("sleeper"),
                                  lambda items: any(run_id in k for k in items), timeout=30)
            status, view, _ = await a.call("GET", "/api/jobs/sleeper")
            assert view["running"] == [run_id]
            status, killed, _ = await a.call("POST", "/api/jobs/sleeper/kill")
            assert status == 202 and killed["requested"] == [run_id]
            await wait_for_count(logs.runs, {"job": "sleeper", "status": "killed"},
                                 lambda n: n == 1, timeout=30)
            status, record, _ = await b.call("GET", f"/api/runs/{run_id}")
            assert status == 200 and record["status"] == "killed"
            assert record["trigger"] == "run_now"
            assert (record["killed_by"] or "").startswith("token:test-admin")
            # Deleted on B with the current ETag: gone on A.
            status, _, _ = await b.call("DELETE", "/api/jobs/sleeper",
                                        headers={"If-Match": etag2})
            assert status == 204
            assert (await a.call("GET", "/api/jobs/sleeper"))[0] == 404
        actions = sorted(e.action for e in await logs.query_audit(target="sleeper"))
        assert actions == ["job.create", "job.delete", "job.kill", "job.run", "job.update"]
    finally:
        codes = await asyncio.gather(*(p.stop() for p in (worker, *masters)))
        for proc in (worker, *masters):  # shown by pytest if the test failed
            print(f"--- {proc.name}", *proc.lines[-60:], sep="\n")
    assert codes == [0, 0, 0]
