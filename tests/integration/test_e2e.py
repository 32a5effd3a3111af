"""End to end: a real master and two real worker processes over real etcd and MongoDB."""

import asyncio
from collections import Counter
from pathlib import Path

from aiohttp import ClientSession

from cronswarm.common import Settings
from cronswarm.devservices import free_port
from cronswarm.logstore import MongoLogStore
from tests import procs
from tests.helpers import wait_for_count
from tests.swarm import Witness


async def test_every_second_job_runs_exactly_once_per_tick(
    settings: Settings, admin_token: str, logs: MongoLogStore, tmp_path: Path
) -> None:
    witness = Witness(tmp_path / "executions")
    port = free_port()
    settings = settings.with_overrides(master_port=port)
    master = await procs.start("master", settings)
    workers = [await procs.start("worker", settings, CRONSWARM_WORKER_ID=f"e2e-w{i}")
               for i in (1, 2)]
    try:
        await master.wait_for_line("master listening")
        for worker in workers:
            await worker.wait_for_line("ready with")
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {admin_token}"}
        async with ClientSession(headers=headers) as http:
            resp = await http.post(f"{base}/api/jobs", json={
                "name": "every-second", "schedule": "* * * * * *",
                "command": witness.command('echo "tick $CRONSWARM_TICK"')})
            assert resp.status == 201, await resp.text()
            done = {"job": "every-second", "status": "succeeded"}
            await wait_for_count(logs.runs, done, lambda n: n >= 8, timeout=60)
            resp = await http.patch(f"{base}/api/jobs/every-second", json={"enabled": False})
            assert resp.status == 200
            workers_seen = await (await http.get(f"{base}/api/workers")).json()
            assert {w["id"] for w in workers_seen["workers"]} == {"e2e-w1", "e2e-w2"}
            api_runs = await (await http.get(f"{base}/api/runs?job=every-second&limit=3")).json()
            assert api_runs["runs"][0]["output"].startswith("tick ")
        # Let in-flight runs of the paused job finish writing, then count.
        await wait_for_count(logs.runs, {"job": "every-second", "status": "running"},
                             lambda n: n == 0, timeout=10)
        docs = await logs.runs.find({"job": "every-second"}).to_list(None)
        per_tick = Counter(d["tick"] for d in docs)
        assert max(per_tick.values()) == 1, "a tick ran twice"
        witness.assert_each_ran_once(docs)
        ticks = sorted(per_tick)
        seconds = [int(t.timestamp()) for t in ticks]
        assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), "a tick was missed"
        assert all(d["status"] == "succeeded" for d in docs)
        assert all(d["output"] == f"tick {int(d['tick'].timestamp() * 1000)}\n" for d in docs)
        for d in docs:  # the record's times agree with each other
            tick, started, ended = (d[k].timestamp() for k in ("tick", "started", "ended"))
            assert tick <= started <= ended
            assert abs(d["lag"] - (started - tick)) < 0.002
            assert abs(d["duration"] - (ended - started)) < 0.002
            assert (d["trigger"], d["attempt"], d["exit_code"]) == ("schedule", 1, 0)
            assert d["worker"] in {"e2e-w1", "e2e-w2"}
            assert d["run_id"] == f"every-second@{round(tick * 1000)}"
    finally:
        codes = await asyncio.gather(*(p.stop() for p in (*workers, master)))
    assert codes == [0, 0, 0]
