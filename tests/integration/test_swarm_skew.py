"""Exactly once per tick across skewed workers (issue: worker swarm)."""

import time
from pathlib import Path

import pytest

from cronswarm.common import Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from tests.helpers import wait_for_count
from tests.swarm import (
    Witness,
    assert_every_second_once,
    create_job,
    pause_and_settle,
    runs_of,
    swarm,
)

pytestmark = pytest.mark.slow


async def test_five_skewed_workers_run_each_tick_exactly_once(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, tmp_path: Path
) -> None:
    witness = Witness(tmp_path / "executions")
    skews = [-2000, -1000, 0, 1000, 2000]  # ms, each worker's clock error
    # A maximum offset above the skews: every worker keeps claiming, so the
    # fencing token, not the clock fence, is what keeps each tick once.
    wide = settings.with_overrides(max_clock_offset_ms=5000)
    async with swarm(wide, logs, 5, skews=skews) as members:
        created = int(time.time())
        await create_job(store, logs, settings, name="skewed", schedule="* * * * * *",
                         command=witness.command("sleep 0.01"), overlap="allow")
        await wait_for_count(logs.runs, {"job": "skewed", "status": "succeeded"},
                             lambda n: n >= 64, timeout=120)
        await pause_and_settle(store, logs, settings, "skewed")
        claims = sum(m.worker.counters["claims_won"] for m in members)
    docs = await runs_of(logs, "skewed")
    assert_every_second_once(docs)  # a skipped record may stand for several ticks
    witness.assert_each_ran_once(docs)
    # The worker whose clock is 2 s ahead sees the new job 2 s "late": it may
    # record the first tick or two as skipped (misfire). From then on, every
    # tick runs.
    steady = [d for d in docs if d["tick"].timestamp() >= created + 3]
    assert len(steady) >= 60
    assert all(d["status"] == "succeeded" for d in steady), [
        (d["tick"], d["status"]) for d in steady if d["status"] != "succeeded"]
    assert claims == sum(d["status"] == "succeeded" for d in docs)
