"""Lost-run verdicts through MongoDB and etcd failures (issue: exactly once under
partitions, pauses, lost replies and kill -9; scenario 6).

The reaper decides a run is lost when its running key goes with its worker's
lease. If MongoDB or etcd fails at that moment, the verdict must wait and be
written once they answer: a worker that died while MongoDB was down has no
other trace (its own records are in its spool, on its disk), so a dropped
verdict is a silent gap in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence

import psutil

from cronswarm.common import (
    Job,
    Keyspace,
    RunRecord,
    RunStatus,
    ServiceUnavailable,
    Settings,
    SystemClock,
)
from cronswarm.coord import CoordUnavailable, EtcdStore, KeyValue
from cronswarm.devservices import MongoServer
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService
from cronswarm.master._reaper import LostRunReaper
from cronswarm.worker import run_info
from tests import procs
from tests.helpers import wait_for_count, wait_for_prefix


class Duties:
    """The reaper's duty wrapper, counting each unit's outcome so a test can
    wait for one (a unit that fails for want of a service is swallowed, as the
    leader's wrapper does)."""

    def __init__(self) -> None:
        self.failed: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self._changed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def duty(self, name: str) -> AsyncIterator[None]:
        try:
            yield
        except ServiceUnavailable:
            self.failed[name] += 1
        else:
            self.done[name] += 1
        finally:
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running_reaper(store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
                         duties: Duties) -> AsyncIterator[LostRunReaper]:
    reaper = LostRunReaper(store, logs, keys, SystemClock(), duty=duties.duty, margin=0.5,
                           sweep_interval=3600)
    task = asyncio.create_task(reaper.run())
    try:
        async with asyncio.timeout(20):
            await reaper.running.ready.wait()
        yield reaper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def kill_job_processes(job: str) -> None:
    """Kill what a test's job left (nothing, when the guardian did its work)."""
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("CRONSWARM_JOB") == job:
                proc.kill()


async def test_a_worker_killed_while_mongodb_is_down_gets_its_lost_record_once_it_is_back(
        settings: Settings, store: EtcdStore, keys: Keyspace, own_mongo: MongoServer) -> None:
    settings = settings.with_overrides(mongodb_uri=own_mongo.uri)
    logs = MongoLogStore(own_mongo.uri, database=settings.mongodb_database, timeout_ms=1000)
    await logs.ensure_indexes()
    jobs = JobService(store, logs, keys)
    name = "doomed"
    await jobs.create(Job.from_dict({"name": name, "schedule": "* * * * * *",
                                     "command": "sleep 60", "overlap": "forbid",
                                     "enabled": False}), actor="tests")
    duties = Duties()
    worker = await procs.start("worker", settings, CRONSWARM_WORKER_ID="doomed-w1")
    try:
        async with running_reaper(store, logs, keys, duties) as reaper:
            await worker.wait_for_line("ready with")
            own_mongo.stop()
            # The run starts while MongoDB is down: its records go to the
            # worker's spool, and the worker dies with them.
            await jobs.set_enabled(name, True, actor="tests")
            running = await wait_for_prefix(store, keys.running_of(name), bool, timeout=30)
            run = json.loads(next(iter(running.values())).value)
            worker.proc.send_signal(signal.SIGKILL)
            await worker.proc.wait()
            # Its lease expires, its key goes: the reaper cannot reach MongoDB.
            await duties.wait(lambda: duties.failed["lost-runs"] >= 1, timeout=30)
            own_mongo.start()
            record_id = f"{run['run_id']}#1"
            # Before the fix the verdict was dropped: this waited in vain.
            await wait_for_count(logs.runs, {"_id": record_id, "status": "lost"},
                                 lambda n: n == 1, timeout=60)
            await duties.wait(lambda: reaper.unsettled == 0, timeout=30)
            reaped = reaper.reaped
        docs = await logs.runs.find({"job": name}).to_list(None)
    finally:
        await worker.stop()
        kill_job_processes(name)
        await logs.client.drop_database(settings.mongodb_database)
        await logs.close()
    assert [(d["_id"], d["status"], d["worker"]) for d in docs] == [
        (record_id, "lost", "doomed-w1")]
    assert "lease expired" in docs[0]["error"]
    assert reaped == 1


class Unreachable(EtcdStore):
    """etcd that the reaper cannot read while ``down`` (its watch goes on)."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        super().__init__(endpoints)
        self.down = False

    async def get(self, key: str) -> KeyValue | None:
        if self.down:
            raise CoordUnavailable("test: etcd unreachable")
        return await super().get(key)


async def test_verdicts_that_meet_an_etcd_failure_are_retried_and_a_finished_run_stays_finished(
        settings: Settings, store: EtcdStore, keys: Keyspace, logs: MongoLogStore) -> None:
    # A worker of the test's own: its registry key and two running keys on one
    # lease, which the test revokes (the worker dies: all go in one revision).
    worker, job = "ghost", "haunted"
    lease = await store.grant_lease(60)
    await store.put(keys.worker(worker), json.dumps({"id": worker}).encode(), lease=lease)
    ticks = {"unreported": 1_000_000, "finished": 2_000_000}
    for tick in ticks.values():
        rid = f"{job}@{tick}"
        await store.put(keys.running(job, rid), run_info(
            run_id=rid, worker=worker, lease=lease, tick=tick, started=tick), lease=lease)
    duties = Duties()
    reaper_store = Unreachable(settings.etcd_endpoints)
    try:
        async with running_reaper(reaper_store, logs, keys, duties) as reaper:
            reaper_store.down = True
            await store.revoke_lease(lease)
            await duties.wait(lambda: duties.failed["lost-runs"] >= 2, timeout=30)
            # Meanwhile the second run's final record arrives (the worker had
            # finished it and its spool was replayed): it is not lost.
            finished = RunRecord(run_id=f"{job}@{ticks['finished']}", job=job,
                                 tick=ticks["finished"], attempt=1, worker=worker,
                                 summary="true", status=RunStatus.SUCCEEDED,
                                 started=ticks["finished"], ended=ticks["finished"] + 10,
                                 exit_code=0)
            await logs.write_runs([finished])
            reaper_store.down = False
            # Before the fix both verdicts were dropped: this waited in vain.
            await wait_for_count(logs.runs, {"job": job, "status": "lost"}, lambda n: n == 1,
                                 timeout=30)
            await duties.wait(lambda: reaper.unsettled == 0, timeout=30)
            reaped = reaper.reaped
    finally:
        await reaper_store.close()
    docs = await logs.runs.find({"job": job}).sort("tick", 1).to_list(None)
    assert [(d["_id"], d["status"]) for d in docs] == [
        (f"{job}@{ticks['unreported']}#1", "lost"), (f"{job}@{ticks['finished']}#1", "succeeded")]
    assert reaped == 1
