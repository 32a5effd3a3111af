"""Exactly once per tick across skewed workers (issue: worker swarm)."""

import time

from cronswarm.common import Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from tests.helpers import wait_for_count
from tests.swarm import (
    assert_once_per_tick,
    covered_seconds,
    create_job,
    pause_job,
    runs_of,
    swarm,
)


async def test_five_skewed_workers_run_each_tick_exactly_once(
    settings: Settings, store: EtcdStore, logs: MongoLogStore
) -> None:
    skews = [-2000, -1000, 0, 1000, 2000]  # ms, each worker's clock error
    async with swarm(settings, logs, 5, skews=skews) as members:
        created = int(time.time())
        await create_job(store, logs, settings, name="skewed", schedule="* * * * * *",
                         command="sleep 0.01", overlap="allow")
        await wait_for_count(logs.runs, {"job": "skewed", "status": "succeeded"},
                             lambda n: n >= 64, timeout=120)
        await pause_job(store, logs, settings, "skewed")
        await wait_for_count(logs.runs, {"job": "skewed", "status": "running"},
                             lambda n: n == 0, timeout=20)
        claims = sum(m.worker.counters["claims_won"] for m in members)
    docs = await runs_of(logs, "skewed")
    assert_once_per_tick(docs)
    ticks = covered_seconds(docs)  # a skipped record may stand for several ticks
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), "a tick has no record"
    # The worker whose clock is 2 s ahead sees the new job 2 s "late": it may
    # record the first tick or two as skipped (misfire). From then on, every
    # tick runs.
    steady = [d for d in docs if d["tick"].timestamp() >= created + 3]
    assert len(steady) >= 60
    assert all(d["status"] == "succeeded" for d in steady), [
        (d["tick"], d["status"]) for d in steady if d["status"] != "succeeded"]
    assert claims == sum(d["status"] == "succeeded" for d in docs)
