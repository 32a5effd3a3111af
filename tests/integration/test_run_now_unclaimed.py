"""A run-now request that no worker takes is recorded as a skipped run by the
elected master; one a worker takes is recorded by that worker alone."""

import asyncio
import contextlib
import json
from collections.abc import Sequence

from cronswarm.common import Keyspace, RunRecord, Settings, SystemClock
from cronswarm.coord import EtcdStore, wait_deleted
from cronswarm.logstore import LogStoreUnavailable, MongoLogStore
from cronswarm.master._http import LEADER
from cronswarm.master._leader import LeaderDuties
from cronswarm.master._unclaimed import UnclaimedRequests
from tests.apiclient import running_master
from tests.helpers import wait_for_count
from tests.swarm import create_job, runs_of, swarm


async def checks_done(leader: LeaderDuties, count: int) -> None:
    """Wait until the leader has checked ``count`` deleted requests in all."""
    async with asyncio.timeout(30):
        while leader.duty_runs["unclaimed-requests"] < count:
            await leader.wait_duty("unclaimed-requests")


async def test_a_request_nobody_takes_is_recorded_as_skipped(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    admin_token: str,
) -> None:
    settings = settings.with_overrides(request_ttl=2)
    async with running_master(settings, admin_token) as api, swarm(settings, logs, 1):
        assert api.app is not None
        leader = api.app[LEADER]
        # Nobody matches "zone=nowhere"; the worker (without labels) ignores it.
        await create_job(store, logs, settings, name="stranded", schedule="0 0 1 1 *",
                         command="echo never", targets={"zone": "nowhere"})
        await create_job(store, logs, settings, name="taken", schedule="0 0 1 1 *",
                         command="echo by hand")

        resp = await api.call("POST", "/api/jobs/stranded/run")
        assert resp.status == 202, await resp.text()
        stranded = (await resp.json())["run_id"]
        await wait_for_count(logs.runs, {"job": "stranded"}, lambda n: n >= 1, timeout=30)
        await checks_done(leader, 1)
        resp = await api.call("POST", "/api/jobs/taken/run")
        assert resp.status == 202, await resp.text()
        taken = (await resp.json())["run_id"]
        await wait_for_count(logs.runs, {"job": "taken", "status": "succeeded"},
                             lambda n: n >= 1, timeout=30)
        await wait_deleted(store, keys.once("taken"))
        # The master looked at the claimed request's deletion and left it alone.
        await checks_done(leader, 2)

    [skipped] = await runs_of(logs, "stranded")
    assert skipped["run_id"] == stranded
    assert skipped["status"] == "skipped" and skipped["trigger"] == "run_now"
    assert skipped["summary"] == "echo never"
    assert "no worker took the run-now request within" in skipped["error"]
    [ran] = await runs_of(logs, "taken")
    assert (ran["run_id"], ran["status"], ran["worker"]) == (taken, "succeeded", "w0")


async def test_housekeeping_removes_the_fencing_tokens_of_deleted_jobs_only(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    admin_token: str,
) -> None:
    await create_job(store, logs, settings, name="kept", schedule="0 0 1 1 *", command="true")
    await store.put(keys.last("gone"), b"0000001767225600000")  # its job was deleted
    kept = await store.get(keys.last("kept"))
    assert kept is not None
    async with running_master(settings, admin_token) as api:
        assert api.app is not None
        leader = api.app[LEADER]
        async with asyncio.timeout(30):
            await wait_deleted(store, keys.last("gone"))
            while leader.duty_runs["housekeeping"] < 1:  # the round that removed it
                await leader.wait_duty("housekeeping")
        assert leader.orphans_removed == 1
    still = await store.get(keys.last("kept"))
    assert still is not None and still.mod_revision == kept.mod_revision


class FailingWrites:
    """The log store, failing its first ``failures`` run writes (MongoDB away)."""

    def __init__(self, logs: MongoLogStore, failures: int) -> None:
        self.logs = logs
        self.failures = failures

    async def get_run(self, record_id: str) -> RunRecord | None:
        return await self.logs.get_run(record_id)

    async def write_runs(self, records: Sequence[RunRecord]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise LogStoreUnavailable("test: MongoDB unreachable")
        await self.logs.write_runs(records)


async def test_an_expired_request_is_recorded_once_mongodb_answers_again(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
) -> None:
    failing = FailingWrites(logs, failures=2)
    unclaimed = UnclaimedRequests(store, failing, keys, SystemClock())  # type: ignore[arg-type]
    task = asyncio.create_task(unclaimed.run())
    try:
        async with asyncio.timeout(30):
            await unclaimed.requests.ready.wait()
        lease = await store.grant_lease(30)
        at = SystemClock().now_ms()
        await store.put(keys.once("faraway"), json.dumps({"at": at}).encode(), lease=lease)
        await store.revoke_lease(lease)  # expired: nobody took it
        await wait_for_count(logs.runs, {"job": "faraway"}, lambda n: n >= 1, timeout=60)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert failing.failures == 0  # both failed writes were tried again
    [skipped] = await runs_of(logs, "faraway")
    assert (skipped["status"], skipped["trigger"]) == ("skipped", "run_now")
