"""Run records through a MongoDB outage and through kill -9 of a worker (real processes).

The outage test uses a MongoDB-protocol server of its own (``own_mongo``) so
it can stop it and start it again on the same port with the same data.
"""

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cronswarm.common import Job, Keyspace, Settings
from cronswarm.coord import EtcdStore, PrefixMirror
from cronswarm.devservices import MongoServer
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService
from cronswarm.worker import LogWriter, Spool
from tests import procs
from tests.helpers import wait_for_count

OUTAGE_SECONDS = 30
ROOT = Path(__file__).resolve().parents[2]


async def create_every_second_job(store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
                                  name: str) -> None:
    job = Job.from_dict({"name": name, "schedule": "* * * * * *",
                         "command": 'echo "tick $CRONSWARM_TICK"'})
    await JobService(store, logs, keys).create(job, actor="tests")


def check_one_record_per_second(docs: list[dict[str, object]]) -> list[int]:
    """Every tick from the first to the last has exactly one record, and it is final."""
    per_tick = Counter(int(d["tick"].timestamp()) for d in docs)  # type: ignore[attr-defined]
    assert max(per_tick.values()) == 1, f"duplicated ticks: {per_tick.most_common(3)}"
    seconds = sorted(per_tick)
    missing = sorted(set(range(seconds[0], seconds[-1] + 1)) - set(seconds))
    assert not missing, f"ticks without a record: {missing}"
    assert all(d["status"] != "running" for d in docs)
    return seconds


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_records_survive_a_mongodb_outage_exactly_once(
        settings: Settings, store: EtcdStore, keys: Keyspace, own_mongo: MongoServer) -> None:
    # A small batch (so a queue of 4 x 5 records) makes most outage records
    # overflow to disk and be read back from the spool.
    settings = settings.with_overrides(mongodb_uri=own_mongo.uri, log_batch_size=5)
    logs = MongoLogStore(own_mongo.uri, database=settings.mongodb_database)
    await logs.ensure_indexes()
    worker = await procs.start("worker", settings, CRONSWARM_WORKER_ID="outage-w1")
    try:
        await worker.wait_for_line("ready with")
        await create_every_second_job(store, logs, keys, "outage")
        await wait_for_count(logs.runs, {"job": "outage", "status": "succeeded"},
                             lambda n: n >= 3, timeout=60)

        stopped_at = time.time()
        own_mongo.stop()
        await worker.wait_for_line("MongoDB does not take run records", timeout=60)
        # The outage lasts OUTAGE_SECONDS, and the worker must live through it.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(OUTAGE_SECONDS - (time.time() - stopped_at)):
                await worker.proc.wait()
        own_mongo.start()
        restarted_at = time.time()

        await worker.wait_for_line("MongoDB takes run records again", timeout=90)
        replayed = await worker.wait_for_line("run records from the spool", timeout=90)
    finally:
        code = await worker.stop()  # a graceful stop writes what is still queued
    assert code == 0
    assert not [line for line in worker.lines if "is lost" in line or "Traceback" in line]
    assert int(replayed.split("replayed ")[1].split()[0]) > 0

    docs = await logs.runs.find({"job": "outage"}).to_list(None)
    seconds = check_one_record_per_second(docs)
    during = [s for s in seconds if stopped_at <= s < restarted_at]
    assert len(during) >= OUTAGE_SECONDS - 3, f"only {len(during)} ticks during the outage"
    await logs.client.drop_database(settings.mongodb_database)
    await logs.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_acknowledged_records_survive_kill_9_of_the_worker(
        settings: Settings, store: EtcdStore, keys: Keyspace, logs: MongoLogStore) -> None:
    # Batches that never come due: every record stays acknowledged in the
    # spool (and queued in memory) until the worker dies.
    holding = settings.with_overrides(log_batch_size=10_000, log_flush_interval=3600)
    acknowledged: set[str] = set()
    enough = asyncio.Event()

    def on_running(name: str, kv: object, _old: object) -> None:
        # The worker deletes a run's key only after submit() of its final
        # record returned: a deletion is proof of an acknowledged record.
        if kv is None:
            acknowledged.add(name.split("/", 1)[1] + "#1")
            if len(acknowledged) >= 5:
                enough.set()

    mirror = PrefixMirror(store, keys.running_dir, on_change=on_running)
    watching = asyncio.create_task(mirror.run())
    worker = await procs.start("worker", holding, CRONSWARM_WORKER_ID="kill-w1")
    try:
        await worker.wait_for_line("ready with")
        await create_every_second_job(store, logs, keys, "killed")
        async with asyncio.timeout(60):
            await enough.wait()
        worker.proc.send_signal(signal.SIGKILL)
        await worker.proc.wait()
        acked_at_kill = set(acknowledged)  # lease expiry deletes come seconds later
    finally:
        watching.cancel()
        await worker.stop()
    assert await logs.runs.count_documents({"job": "killed"}) == 0  # all were in the spool

    again = await procs.start("worker", settings, CRONSWARM_WORKER_ID="kill-w2")
    try:
        replayed = await again.wait_for_line("run records from the spool", timeout=60)
    finally:
        assert await again.stop() == 0
    assert int(replayed.split("replayed ")[1].split()[0]) >= len(acked_at_kill)
    docs = await logs.runs.find({"job": "killed"}).to_list(None)
    final = {d["_id"] for d in docs if d["status"] == "succeeded"}
    assert acked_at_kill <= final, f"lost: {sorted(acked_at_kill - final)}"
    assert max(Counter(d["tick"] for d in docs).values()) == 1


async def test_every_acknowledged_submit_survives_kill_9(logs: MongoLogStore,
                                                         tmp_path: Path) -> None:
    """The bound, record by record: kill -9 loses only records whose submit()
    had not returned (the driver prints each acknowledgement as it happens)."""
    spool_dir = tmp_path / "spool"
    driver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.spool_driver", str(spool_dir), cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert driver.stdout is not None
    acked: list[str] = []
    async with asyncio.timeout(60):
        while len(acked) < 300:
            line = await driver.stdout.readline()
            assert line, "the driver exited early"
            acked.append(line.decode().split()[1])
    driver.kill()  # mid-stream: submits are in flight
    rest = await driver.stdout.read()
    acked += [line.split()[1] for line in rest.decode().splitlines() if line]
    await driver.wait()

    writer = LogWriter(logs, Spool(spool_dir, max_bytes=1 << 30), close_timeout=120)
    assert writer.backlog
    task = asyncio.create_task(writer.run())
    await writer.close()  # drains the backlog before it returns
    await asyncio.wait([task])
    stored = {d["_id"] async for d in logs.runs.find({"job": "driven"}, {"_id": 1})}
    assert set(acked) <= stored, f"lost acknowledged records: {sorted(set(acked) - stored)[:5]}"
    assert writer.counters.replayed == len(stored)
