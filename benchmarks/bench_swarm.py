"""Benchmark: fire lag and etcd writes per fire for 1, 3 and 5 workers, and
memory and load time of one worker holding 100,000 jobs.

    python benchmarks/bench_swarm.py [--seconds 20] [--jobs 20] [--big 100000] [--only-big]

Starts its own etcd and MongoDB-protocol server (unless
CRONSWARM_ETCD_ENDPOINTS / MONGODB_URI are set). Workers run in this process,
each with its own etcd connection, like separate machines. Prints a table and
a final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cronswarm.common import Job, Keyspace, Settings
from cronswarm.coord import CoordUnavailable, EtcdStore
from cronswarm.devservices import EtcdServer, MongoServer
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService
from cronswarm.worker import LogWriter, Worker


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def fire_round(base: Settings, workers: int, jobs: int, seconds: float,
                     handoff: float) -> dict[str, float]:
    settings = base.with_overrides(key_prefix=f"/bench-{uuid.uuid4().hex[:8]}",
                                   mongodb_database=f"bench_{uuid.uuid4().hex[:8]}",
                                   handoff_delay=handoff)
    logs = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database)
    await logs.ensure_indexes()
    admin = EtcdStore(settings.etcd_endpoints)
    spool = tempfile.mkdtemp(prefix="cronswarm-spool-")
    members = []
    for i in range(workers):
        store = EtcdStore(settings.etcd_endpoints)
        own = settings.with_overrides(worker_id=f"b{i}", spool_dir=f"{spool}/b{i}")
        worker = Worker(own, store, LogWriter.open(logs, own))
        stop = asyncio.Event()
        members.append((worker, store, stop, asyncio.create_task(worker.run(stop))))
    for worker, *_ in members:
        await worker.ready.wait()
    service = JobService(admin, logs, Keyspace(settings.key_prefix))
    for j in range(jobs):
        await service.create(Job.from_dict({"name": f"j{j}", "schedule": "* * * * * *",
                                            "command": "true", "overlap": "allow"}),
                             actor="bench")
    # Measure whole seconds after every worker has the jobs.
    await asyncio.sleep(2)
    start_stats = [dict(store.stats) for _, store, _, _ in members]
    start_counts = [dict(w.counters) for w, *_ in members]
    t0 = time.time()
    await asyncio.sleep(seconds)
    t1 = time.time()
    end_stats = [dict(store.stats) for _, store, _, _ in members]
    end_counts = [dict(w.counters) for w, *_ in members]
    for _, _, stop, _ in members:
        stop.set()
    await asyncio.gather(*(task for *_, task in members))
    docs = await logs.runs.find({"tick": {"$gte": _dt(t0), "$lt": _dt(t1)}}).to_list(None)
    lags = [d["lag"] for d in docs if d.get("lag") is not None]
    fires = len(docs)

    def delta(key: str, stats: list[dict[str, int]], base_: list[dict[str, int]]) -> int:
        return sum(s.get(key, 0) - b.get(key, 0) for s, b in zip(stats, base_, strict=True))

    writes = sum(delta(k, end_stats, start_stats) for k in ("txn", "put", "delete"))
    claim_txns = delta("claim_txns", end_counts, start_counts)
    for _, store, _, _ in members:
        await store.close()
    await admin.delete(settings.key_prefix + "/", prefix=True)
    await admin.close()
    await logs.client.drop_database(settings.mongodb_database)
    await logs.close()
    return {
        "workers": workers, "handoff_delay_s": handoff, "fires": fires,
        "claim_txns_per_fire": round(claim_txns / fires, 3) if fires else float("nan"),
        "etcd_writes_per_fire": round(writes / fires, 3) if fires else float("nan"),
        "lag_p50_ms": round(percentile(lags, 0.5) * 1000, 1),
        "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1),
    }


def _dt(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


async def big_table(base: Settings, count: int) -> dict[str, float]:
    settings = base.with_overrides(key_prefix=f"/big-{uuid.uuid4().hex[:8]}")
    store = EtcdStore(settings.etcd_endpoints)
    keys = Keyspace(settings.key_prefix)
    sem = asyncio.Semaphore(64)
    t = time.perf_counter()

    async def put(i: int) -> None:
        # Realistic spread: many distinct schedules, half in another timezone.
        job = Job.from_dict({
            "name": f"job-{i:06d}", "command": f"/usr/local/bin/report --id {i}",
            "schedule": f"{i % 60} {(i // 60) % 60} {(i // 3600) % 24} * * *",
            "timezone": "UTC" if i % 2 else "Europe/Paris",
        })
        async with sem:
            for attempt in range(5):  # etcd may stall on a slow disk sync
                try:
                    await store.put(keys.job(job.name), job.to_json())
                    return
                except CoordUnavailable:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))  # retry backoff

    await asyncio.gather(*(put(i) for i in range(count)))
    seed_s = time.perf_counter() - t
    # Load in a fresh process, so its memory is the worker's alone.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load-worker", json.dumps(settings.env()),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    result = json.loads(out.decode().strip().splitlines()[-1])
    await store.delete(settings.key_prefix + "/", prefix=True)
    await store.close()
    loaded = result["jobs"]
    growth = result["rss_after"] - result["rss_before"]
    return {"jobs": loaded, "seed_s": round(seed_s, 1), "load_s": round(result["load_s"], 2),
            "load_cpu_s": round(result["load_cpu_s"], 2),
            "worker_rss_mib": round(result["rss_after"] / 2**20, 1),
            "rss_growth_mib": round(growth / 2**20, 1),
            "bytes_per_job": round(growth / max(loaded, 1)),
            "next_due_set": result["next_due_set"]}


async def load_worker(env: dict[str, str]) -> None:
    """Child process: start one worker on the seeded prefix, report load time and RSS."""
    settings = Settings.load(env, worker_id="big",
                             spool_dir=tempfile.mkdtemp(prefix="cronswarm-spool-"))
    store = EtcdStore(settings.etcd_endpoints)
    logs = MongoLogStore(settings.mongodb_uri, database=f"big_{uuid.uuid4().hex[:8]}")
    worker = Worker(settings, store, LogWriter.open(logs, settings))
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    stop = asyncio.Event()
    t, cpu = time.perf_counter(), time.process_time()
    task = asyncio.create_task(worker.run(stop))
    await worker.ready.wait()
    load_s = time.perf_counter() - t
    load_cpu_s = time.process_time() - cpu  # steadier than load_s on a busy machine
    gc.collect()
    rss_after = psutil.Process().memory_info().rss
    report = {"jobs": len(worker.timetable), "load_s": load_s, "load_cpu_s": load_cpu_s,
              "rss_before": rss_before,
              "rss_after": rss_after, "next_due_set": worker.timetable.next_due() is not None}
    stop.set()
    await task
    await store.close()
    await logs.close()
    print(json.dumps(report))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--jobs", type=int, default=20, help="every-second jobs per round")
    parser.add_argument("--big", type=int, default=100_000, help="jobs for the memory test")
    parser.add_argument("--only-big", action="store_true",
                        help="skip the fire rounds: only the memory test")
    parser.add_argument("--load-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_worker:
        await load_worker(json.loads(args.load_worker))
        return
    servers = []
    tmp = Path(tempfile.mkdtemp(prefix="cronswarm-bench-"))
    endpoints = os.environ.get("CRONSWARM_ETCD_ENDPOINTS")
    uri = os.environ.get("MONGODB_URI")
    if not endpoints:
        etcd = EtcdServer(tmp / "etcd")
        etcd.start()
        servers.append(etcd)
        endpoints = etcd.endpoint
    if not uri:
        mongo = MongoServer(tmp / "mongo", in_memory=True)
        mongo.start()
        servers.append(mongo)
        uri = mongo.uri
    base = Settings.load({}, etcd_endpoints=tuple(endpoints.split(",")), mongodb_uri=uri,
                         lease_ttl=5, stats_interval=5.0)
    try:
        rounds = []
        print(f"{'workers':>7} {'handoff':>7} {'fires':>6} {'claim txn/fire':>14} "
              f"{'writes/fire':>11} {'lag p50':>8} {'lag p99':>8}")
        for workers in () if args.only_big else (1, 3, 5):
            for handoff in (0.25, 0.0):
                if workers == 1 and handoff == 0.0:
                    continue
                r = await fire_round(base, workers, args.jobs, args.seconds, handoff)
                rounds.append(r)
                print(f"{r['workers']:>7} {r['handoff_delay_s']:>7} {r['fires']:>6} "
                      f"{r['claim_txns_per_fire']:>14} {r['etcd_writes_per_fire']:>11} "
                      f"{r['lag_p50_ms']:>6}ms {r['lag_p99_ms']:>6}ms", flush=True)
        big = await big_table(base, args.big)
        print(f"{big['jobs']} jobs: seeded in {big['seed_s']}s, worker loaded them in "
              f"{big['load_s']}s ({big['load_cpu_s']}s CPU), RSS +{big['rss_growth_mib']} MiB "
              f"({big['bytes_per_job']} bytes/job)")
        print(json.dumps({"benchmark": "swarm", "rounds": rounds, "big_table": big,
                          "cpu_count": psutil.cpu_count()}))
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
