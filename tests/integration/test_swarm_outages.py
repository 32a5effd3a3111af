"""etcd outages: no duplicates, missed ticks follow the misfire policy."""

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest

from cronswarm.common import Settings
from cronswarm.coord import EtcdStore
from cronswarm.devservices import EtcdCluster, EtcdServer
from cronswarm.logstore import MongoLogStore
from tests.helpers import wait_for_count
from tests.swarm import (
    Witness,
    assert_once_per_tick,
    create_job,
    pause_job,
    runs_of,
    seconds,
    swarm,
)

pytestmark = pytest.mark.slow


async def wait_until_wall(epoch_s: float) -> None:
    """Wait for a wall-clock instant (the outage scenario's schedule, not a sync)."""
    await asyncio.sleep(max(0.0, epoch_s - time.time()))


@pytest.mark.parametrize(
    ("policy", "ran_late"),
    [("skip", set()), ("run_latest", {12}), ("run_all", {6, 12})],
)
async def test_etcd_outage_follows_the_misfire_policy(
    policy: str, ran_late: set[int], settings: Settings, logs: MongoLogStore,
    own_etcd: EtcdServer, tmp_path: Path,
) -> None:
    witness = Witness(tmp_path / "executions")
    settings = settings.with_overrides(etcd_endpoints=(own_etcd.endpoint,))
    store = EtcdStore(settings.etcd_endpoints)
    try:
        async with swarm(settings, logs, 2):
            await create_job(store, logs, settings, name="every6", schedule="*/6 * * * * *",
                             command=witness.command(), misfire=policy, misfire_window=60)
            await wait_for_count(logs.runs, {"job": "every6", "status": "succeeded"},
                                 lambda n: n >= 1, timeout=30)
            # Stop etcd just after a tick T0 and bring it back at T0+14.5: the
            # ticks T0+6 and T0+12 fall in the outage, T0+12 is 2.5 s old (past
            # its on-time claim) when etcd answers, and the workers have 3.5 s
            # to reconnect before T0+18 becomes the newest tick.
            t0 = (int(time.time()) // 6 + 1) * 6
            await wait_until_wall(t0 + 0.5)
            own_etcd.stop()
            await wait_until_wall(t0 + 14.5)
            own_etcd.start()
            after = {"job": "every6", "status": "succeeded",
                     "tick": {"$gte": dt.datetime.fromtimestamp(t0 + 18, dt.UTC)}}
            await wait_for_count(logs.runs, after, lambda n: n >= 1, timeout=30)
            await pause_job(store, logs, settings, "every6")
            await wait_for_count(logs.runs, {"job": "every6", "status": "running"},
                                 lambda n: n == 0, timeout=20)
        docs = await runs_of(logs, "every6")
    finally:
        await store.close()
    assert_once_per_tick(docs)
    witness.assert_each_ran_once(docs)
    ran = set(seconds(docs, status="succeeded"))
    story = [(int(d["tick"].timestamp()) - t0, d["status"], d.get("lag"), d["worker"],
              d.get("extra")) for d in docs]
    assert {t0 + s for s in (0, 18)} <= ran, story  # before and after the outage
    assert {t - t0 for t in ran if t0 < t < t0 + 18} == ran_late, story
    # Every missed tick has a record: a skipped one stands for its whole range
    # (one record or, when a claim came back too late, one per tick).
    skipped: set[int] = set()
    for d in docs:
        if d["status"] == "skipped":
            assert d["extra"]["reason"] == "misfire", story
            first = int(d["tick"].timestamp()) - t0
            until = d["extra"]["skipped_until"] // 1000 - t0
            assert len(range(first, until + 1, 6)) == d["extra"]["skipped_ticks"], story
            skipped.update(range(first, until + 1, 6))
    assert skipped == {6, 12} - ran_late, story
    late = [d for d in docs if d["status"] == "succeeded" and t0 < d["tick"].timestamp() < t0 + 18]
    assert all(d["lag"] > 2 for d in late), story  # they ran when etcd came back, not on time


async def test_three_member_cluster_survives_a_member_restart(
    settings: Settings, logs: MongoLogStore, tmp_path: Path
) -> None:
    witness = Witness(tmp_path / "executions")
    cluster = EtcdCluster(tmp_path / "cluster", size=3)
    cluster.start()
    try:
        settings = settings.with_overrides(etcd_endpoints=tuple(cluster.endpoints))
        store = EtcdStore(settings.etcd_endpoints)
        try:
            async with swarm(settings, logs, 3):
                created = int(time.time())
                await create_job(store, logs, settings, name="steady", schedule="* * * * * *",
                                 command=witness.command(), overlap="allow")
                await wait_for_count(logs.runs, {"job": "steady", "status": "succeeded"},
                                     lambda n: n >= 5, timeout=30)
                for victim in cluster.members:  # stop and restart each member in turn
                    victim.stop()
                    stopped = time.time()
                    await wait_for_count(
                        logs.runs, {"job": "steady", "status": "succeeded", "tick": {
                            "$gte": dt.datetime.fromtimestamp(stopped + 3, dt.UTC)}},
                        lambda n: n >= 3, timeout=30)
                    victim.start()
                    cluster.wait_healthy(30, [victim])
                await pause_job(store, logs, settings, "steady")
                await wait_for_count(logs.runs, {"job": "steady", "status": "running"},
                                     lambda n: n == 0, timeout=20)
            docs = await runs_of(logs, "steady")
        finally:
            await store.close()
    finally:
        cluster.stop()
    assert_once_per_tick(docs)
    witness.assert_each_ran_once(docs)
    ticks = seconds(docs)
    steady = [t for t in ticks if t >= created + 3]
    assert steady == list(range(steady[0], steady[0] + len(steady))), "a tick was missed"
    assert all(d["status"] == "succeeded" for d in docs if d["tick"].timestamp() >= created + 3)
