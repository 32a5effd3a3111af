"""A worker killed -9 mid-run: its run becomes lost, nothing runs twice."""

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

import psutil

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from tests import procs
from tests.apiclient import running_master
from tests.helpers import wait_for_count
from tests.swarm import Witness, assert_once_per_tick, create_job, runs_of


def job_processes(job: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("CRONSWARM_JOB") == job:
                found.append(proc)
    return found


async def kill_9_the_runner(store: EtcdStore, keys: Keyspace, job: str,
                            workers: dict[str, procs.Proc]) -> tuple[dict[str, Any], str]:
    """kill -9 the worker running ``job`` (one run alive, two workers); returns
    the run (its running key's value) and the id of the other worker."""
    kvs, _ = await store.get_prefix(keys.running_of(job))
    run: dict[str, Any] = json.loads(kvs[0].value)
    victim = run["worker"]
    workers[victim].proc.send_signal(signal.SIGKILL)
    await workers[victim].proc.wait()
    [survivor] = [wid for wid in workers if wid != victim]
    return run, survivor


async def test_kill_9_marks_the_run_lost_and_others_take_over(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, admin_token: str,
    tmp_path: Path,
) -> None:
    witness = Witness(tmp_path / "executions")
    workers = {wid: await procs.start("worker", settings, CRONSWARM_WORKER_ID=wid)
               for wid in ("k1", "k2")}
    try:
        for proc in workers.values():
            await proc.wait_for_line("ready with")
        async with running_master(settings, admin_token):  # its reaper marks lost runs
            await create_job(store, logs, settings, name="long", schedule="*/2 * * * * *",
                             command=witness.command("sleep 30"), overlap="forbid")
            await wait_for_count(logs.runs, {"job": "long", "status": "running"},
                                 lambda n: n >= 1, timeout=30)
            victim_run, survivor = await kill_9_the_runner(store, keys, "long", workers)
            victim = victim_run["worker"]
            record_id = f"{victim_run['run_id']}#1"
            await wait_for_count(logs.runs, {"_id": record_id, "status": "lost"},
                                 lambda n: n == 1, timeout=30)
            await wait_for_count(logs.runs, {"job": "long", "worker": survivor,
                                             "status": "running"}, lambda n: n >= 1, timeout=30)
            docs = await runs_of(logs, "long")
    finally:
        await asyncio.gather(*(p.stop() for p in workers.values()))
        for orphan in job_processes("long"):  # none: the dead worker's guardian killed them
            with contextlib.suppress(psutil.Error):
                orphan.kill()
    assert_once_per_tick(docs)
    witness.assert_each_ran_once(docs)  # the lost run's tick did not run again
    lost = [d for d in docs if d["status"] == "lost"]
    assert [d["_id"] for d in lost] == [record_id]
    assert lost[0]["worker"] == victim
    assert "lease expired" in lost[0]["error"]
    later = [d for d in docs if d["tick"] > lost[0]["tick"] and d["status"] == "running"]
    assert later and all(d["worker"] == survivor for d in later)
