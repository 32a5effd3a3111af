"""A master's clock decides nothing about ticks (issue: exactly once under
partitions, pauses, lost replies and kill -9; scenario 5).

A job created, rescheduled or resumed starts "from now": the ticks before it
are not missed ones. Whose now? Not the master's: a master whose clock is N s
ahead would make the workers skip the next N s of ticks, and one N s behind
would make them catch up N s of ticks from before the job existed. Here the
master's clock is off by 30 s either way, the workers' clocks are right, and
the ticks right after the write must run, none from before it.
"""

from __future__ import annotations

import time

import pytest

from cronswarm.common import Job, Keyspace, Settings, SkewedClock, from_ms
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService
from tests.helpers import wait_for_count
from tests.swarm import assert_once_per_tick, pause_and_settle, runs_of, swarm
from tests.workerkit import synced

OFFSET_MS = 30_000  # the master's clock error
CHECKED_TICKS = 4  # the ticks right after the write that must all run


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.mark.parametrize("action", ["create", "resume"])
@pytest.mark.parametrize("offset_ms", [OFFSET_MS, -OFFSET_MS], ids=["ahead", "behind"])
@pytest.mark.timeout(120)
async def test_a_master_clock_off_by_30s_neither_swallows_nor_invents_ticks(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    action: str, offset_ms: int,
) -> None:
    name = f"{action}-{'ahead' if offset_ms > 0 else 'behind'}"
    master = JobService(store, logs, keys, SkewedClock(offset_ms))
    # run_all with a wide window: a tick a slow machine claims late still runs,
    # so every tick after the write has a record, and so would every tick
    # before it that the workers wrongly took as missed.
    job = Job.from_dict({"name": name, "schedule": "* * * * * *", "command": "true",
                         "overlap": "allow", "misfire": "run_all", "misfire_window": 120})
    async with swarm(settings, logs, 2) as members:
        await synced(*(m.worker for m in members))
        if action == "create":
            before = now_ms()
            await master.create(job, actor="tests")
            after = now_ms()
        else:
            # Paused a minute ago (by the clock of a master a minute behind):
            # the minute since is not missed, whoever resumes it.
            await JobService(store, logs, keys, SkewedClock(-2 * OFFSET_MS)).create(
                job.patched({"enabled": False}), actor="tests")
            before = now_ms()
            await master.set_enabled(name, True, actor="tests")
            after = now_ms()
        # Instants closer to the write than a worker's clock may be to the
        # cluster's are neither here nor there.
        slack = settings.max_clock_offset_ms
        # The ticks of the next CHECKED_TICKS seconds: a master clock 30 s
        # ahead swallowed them all (the wait timed out).
        window = {"$gt": from_ms(after + slack),
                  "$lte": from_ms(after + slack + CHECKED_TICKS * 1000)}
        await wait_for_count(logs.runs, {"job": name, "status": "succeeded", "tick": window},
                             lambda n: n == CHECKED_TICKS, timeout=25)
        await pause_and_settle(store, logs, settings, name)
    docs = await runs_of(logs, name)
    assert_once_per_tick(docs)
    # None from before the write: a master clock 30 s behind made the workers
    # catch up 30 of them.
    early = [d["tick"] for d in docs if d["tick"] <= from_ms(before - slack)]
    assert not early, f"ran ticks from before the job was {action}d: {early}"
    assert all(d["status"] == "succeeded" for d in docs), [
        (d["tick"], d["status"]) for d in docs if d["status"] != "succeeded"]
