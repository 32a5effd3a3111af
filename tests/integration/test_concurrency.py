"""The per-worker concurrency limit and priorities, on real etcd and MongoDB."""

import asyncio
from pathlib import Path

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from tests.helpers import wait_for_count
from tests.workerkit import Gate, create_job, job_service, ms, running_worker, wait_final


async def test_saturated_worker_starts_higher_priority_first_and_skips_late_runs(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    jobs = job_service(store, logs, keys)
    gate = Gate(tmp_path)
    await create_job(jobs, name="hog", command=gate.wait_command)
    await create_job(jobs, name="low", command="echo low", priority=0)
    await create_job(jobs, name="high", command="echo high", priority=10)
    await create_job(jobs, name="hasty", command="echo hasty", priority=50, misfire_window=0.5)
    try:
        async with running_worker(settings, store, logs, max_concurrent_runs=1) as worker:
            hog = await jobs.run_now("hog", actor="tests")
            async with asyncio.timeout(30):
                await worker.slots.wait_for(lambda: worker.slots.busy == 1)
            low = await jobs.run_now("low", actor="tests")
            async with asyncio.timeout(30):
                await worker.slots.wait_for(lambda: worker.slots.waiting == 1)
            high = await jobs.run_now("high", actor="tests")
            async with asyncio.timeout(30):
                await worker.slots.wait_for(lambda: worker.slots.waiting == 2)
            hasty = await jobs.run_now("hasty", actor="tests")
            skipped = await wait_final(logs, f"{hasty}#1")  # its window passes while queued
            # nothing else started while the one slot was taken
            assert await logs.runs.count_documents({"job": {"$in": ["low", "high"]}}) == 0
            assert (worker.slots.busy, worker.slots.waiting) == (1, 2)
            gate.release()
            done = {name: await wait_final(logs, f"{rid}#1")
                    for name, rid in (("hog", hog), ("low", low), ("high", high))}
    finally:
        gate.close()
    assert skipped["status"] == "skipped"
    assert skipped["error"].startswith("skipped: worker saturated (1 runs at once)")
    assert skipped["extra"]["reason"] == "saturated"
    assert skipped["started"] is None
    assert all(d["status"] == "succeeded" for d in done.values())
    # one at a time, and high before low although low asked first
    assert ms(done["hog"]["ended"]) <= ms(done["high"]["started"])
    assert ms(done["high"]["ended"]) <= ms(done["low"]["started"])


async def test_at_most_n_runs_at_once(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    jobs = job_service(store, logs, keys)
    gate = Gate(tmp_path)
    names = [f"j{i}" for i in range(4)]
    for name in names:
        await create_job(jobs, name=name, command=gate.wait_command)
    try:
        async with running_worker(settings, store, logs, max_concurrent_runs=2) as worker:
            rids = [await jobs.run_now(name, actor="tests") for name in names]
            async with asyncio.timeout(30):
                await worker.slots.wait_for(
                    lambda: (worker.slots.busy, worker.slots.waiting) == (2, 2))
            # Records reach MongoDB through the batching writer: wait for them.
            await wait_for_count(logs.runs, {"status": "running"}, lambda n: n == 2,
                                 timeout=30)
            gate.release(4)
            docs = [await wait_final(logs, f"{rid}#1") for rid in rids]
    finally:
        gate.close()
    assert all(d["status"] == "succeeded" for d in docs)
    spans = sorted((ms(d["started"]), ms(d["ended"])) for d in docs)
    for start, _ in spans:
        overlapping = sum(1 for s, e in spans if s <= start < e)
        assert overlapping <= 2


async def test_a_run_killed_while_queued_never_starts(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    jobs = job_service(store, logs, keys)
    gate = Gate(tmp_path)
    await create_job(jobs, name="hog", command=gate.wait_command)
    await create_job(jobs, name="queued", command="echo never")
    try:
        async with running_worker(settings, store, logs, max_concurrent_runs=1) as worker:
            hog = await jobs.run_now("hog", actor="tests")
            async with asyncio.timeout(30):
                await worker.slots.wait_for(lambda: worker.slots.busy == 1)
            queued = await jobs.run_now("queued", actor="tests")
            async with asyncio.timeout(30):
                await worker.slots.wait_for(lambda: worker.slots.waiting == 1)
            await jobs.kill("queued", actor="token:ops(1)")
            doc = await wait_final(logs, f"{queued}#1")
            assert worker.slots.waiting == 0
            gate.release()
            await wait_final(logs, f"{hog}#1")
    finally:
        gate.close()
    assert doc["status"] == "killed"
    assert doc["killed_by"] == "token:ops(1)"
    assert doc["started"] is None and doc["output"] == ""
    assert doc["error"] == "killed before it started: kill requested (by token:ops(1))"
