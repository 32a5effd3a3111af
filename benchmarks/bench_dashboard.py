"""Benchmark: dashboard page render times with 1,000 jobs and 1,000,000 runs.

    python benchmarks/bench_dashboard.py [--jobs 1000] [--runs 1000000] [--repeat 20]
                                         [--data-dir DIR] [--rebuild-rollup]

Starts its own etcd and MongoDB-protocol server (unless
CRONSWARM_ETCD_ENDPOINTS / MONGODB_URI are set), creates the jobs through the
JobService, seeds the run history with raw ``insert_many`` of documents shaped
by the log store's own ``record_to_doc`` (in big unordered batches), starts a
real master on a local port and times each page over HTTP, as a browser would
fetch it (bearer token; the HTML is read whole). The ``run_last`` rollup is
built as the writers would have left it (the raw seeding bypasses them).
Prints per-page median and p95 of warm requests, the first request after the
master started (one-time costs: parsing every job, compiling templates), and
a final JSON line. The "trends not cached" pages clear the master's trend
cache before each request, as a visit finds it once the jobs have run again.
With ``--data-dir`` the MongoDB data is kept there and a later run with the
same arguments skips the seeding. Exits 1 when a page's p95 is over 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from pymongo.errors import BulkWriteError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cronswarm.common import Job, Keyspace, RunRecord, RunStatus, Settings, Trigger, from_ms
from cronswarm.coord import EtcdStore
from cronswarm.devservices import EtcdServer, MongoServer
from cronswarm.devservices._process import free_port
from cronswarm.logstore import MongoLogStore, RunQuery, record_to_doc
from cronswarm.logstore._rollup_entries import RECENT_KEPT
from cronswarm.master import JobService, Role, TokenStore, create_app
from cronswarm.master._http import JOBS
from cronswarm.worker._registry import WorkerInfo

BUDGET_MS = 300.0
BATCH = 10_000
WORKERS = 8
STATUSES = [RunStatus.SUCCEEDED] * 17 + [RunStatus.FAILED, RunStatus.TIMEOUT,
                                         RunStatus.KILLED]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def job_name(i: int) -> str:
    return f"job-{i:04d}"


def run_doc(job: int, n: int, end_ms: int) -> dict[str, Any]:
    """The ``n``-th newest run of job ``job``: the job's minutely ticks (at second
    ``job % 60``) going back from ``end_ms``; mostly successes."""
    last = end_ms - end_ms % 60_000 + (job % 60) * 1000
    if last > end_ms:
        last -= 60_000
    tick = last - n * 60_000
    status = STATUSES[(n * 7 + job) % len(STATUSES)]
    started = tick + 5 + (n % 40)
    record = RunRecord(
        run_id=f"{job_name(job)}@{tick}", job=job_name(job), tick=tick, attempt=1,
        worker=f"w{(n + job) % WORKERS}", summary=f"/usr/local/bin/task-{job} --daily",
        status=status, trigger=Trigger.SCHEDULE, started=started,
        ended=started + 200 + (n * 37 + job) % 5000,
        exit_code=0 if status is RunStatus.SUCCEEDED else 1,
        error=None if status is RunStatus.SUCCEEDED else f"{status.value}: exit 1",
        output=f"run {n} of {job_name(job)}: processed {n * 13 % 997} items\n",
        output_bytes=48,
    )
    doc = record_to_doc(record, default_retention_days=3650)
    doc.pop("expire_at", None)  # the benchmark's old ticks must outlive the TTL monitor
    return doc


async def seed_runs(logs: MongoLogStore, jobs: int, runs: int, end_ms: int) -> float:
    """Insert ``runs`` documents round-robin over ``jobs``, the newest first (as if
    the cluster had been running until ``end_ms``); returns seconds taken."""
    per_job = runs // jobs
    start = time.perf_counter()
    batch: list[dict[str, Any]] = []
    done = 0
    for n in range(per_job):
        for j in range(jobs):
            batch.append(run_doc(j, n, end_ms))
            if len(batch) == BATCH:
                await logs.runs.insert_many(batch, ordered=False)
                done += len(batch)
                batch = []
                if done % 100_000 == 0:
                    rate = done / (time.perf_counter() - start)
                    print(f"  seeded {done:,} runs ({rate:,.0f}/s)", flush=True)
    if batch:
        await logs.runs.insert_many(batch, ordered=False)
    return time.perf_counter() - start


async def top_up(logs: MongoLogStore, jobs: int, after_ms: int, end_ms: int) -> int:
    """Insert each job's minutely runs with ticks in ``(after_ms, end_ms]``."""
    docs = []
    for j in range(jobs):
        for n in range(10_000):
            doc = run_doc(j, n, end_ms)
            if doc["tick"] <= from_ms(after_ms):
                break
            docs.append(doc)
    added = 0
    await logs.last.note(docs)  # as the writers would have (write_runs)
    for start in range(0, len(docs), BATCH):
        try:
            added += len((await logs.runs.insert_many(docs[start:start + BATCH],
                                                      ordered=False)).inserted_ids)
        except BulkWriteError as exc:  # runs a previous top-up already added
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
            added += exc.details.get("nInserted", 0)
    return added


async def build_rollup(logs: MongoLogStore, jobs: int) -> float:
    """Leave ``run_last`` and ``run_trend`` as a running cluster has them (seeding
    bypassed the writers): each job's newest runs noted through the rollup's own
    code, and its trend completed as its first view does. Returns seconds taken."""
    start = time.perf_counter()
    await logs.db["run_last"].delete_many({})
    await logs.db["run_trend"].delete_many({})
    for j in range(jobs):
        newest = await logs.runs.find({"job": job_name(j)}, {"output": 0, "output_tail": 0}).sort(
            [("tick", -1), ("attempt", -1)]).limit(RECENT_KEPT).to_list(None)
        await logs.last.note(reversed(newest))
        await logs.last.fill_recent(job_name(j), newest)
    return time.perf_counter() - start


async def seed_jobs(service: JobService, jobs: int) -> None:
    async def one(i: int) -> None:
        labels = {"zone": ("eu", "us", "ap")[i % 3]}
        await service.create(Job.from_dict({
            "name": job_name(i), "schedule": f"{i % 60} * * * * *",
            "command": f"/usr/local/bin/task-{i} --daily", "targets": labels,
            "description": f"Nightly task {i}"}), actor="bench")

    for start in range(0, jobs, 50):
        await asyncio.gather(*(one(i) for i in range(start, min(jobs, start + 50))))


async def time_page(http: aiohttp.ClientSession, url: str, repeat: int,
                    before: Callable[[], None] | None = None) -> dict[str, float]:
    samples = []
    first = 0.0
    for i in range(repeat + 2):
        if before is not None:
            before()
        t = time.perf_counter()
        async with http.get(url) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url}: HTTP {resp.status}: {body[:300]!r}")
        if i == 0:  # the first request (cold caches) is reported apart
            first = (time.perf_counter() - t) * 1000
        if i >= 2:  # two warm-up requests
            samples.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(percentile(samples, 0.5), 1),
            "p95_ms": round(percentile(samples, 0.95), 1), "first_ms": round(first, 1),
            "bytes": len(body)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--rebuild-rollup", action="store_true",
                        help="rebuild run_last and run_trend even if complete (kept data)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cronswarm-bench-"))
    data = args.data_dir or tmp
    endpoints = os.environ.get("CRONSWARM_ETCD_ENDPOINTS")
    uri = os.environ.get("MONGODB_URI")
    servers: list[Any] = []
    if not endpoints:
        etcd = EtcdServer(tmp / "etcd")
        etcd.start()
        servers.append(etcd)
        endpoints = etcd.endpoint
    if not uri:
        mongo = MongoServer(data / "mongo")
        mongo.start()
        servers.append(mongo)
        uri = mongo.uri
    database = f"bench_dashboard_{args.jobs}_{args.runs}"
    settings = Settings.load({}, etcd_endpoints=tuple(endpoints.split(",")), mongodb_uri=uri,
                             mongodb_database=database,
                             key_prefix=f"/bench-{uuid.uuid4().hex[:8]}")
    store = EtcdStore(settings.etcd_endpoints)
    logs = MongoLogStore(uri, database=database, timeout_ms=120_000)
    runner: web.AppRunner | None = None
    try:
        await logs.ensure_indexes()
        # The audit trail is of this run's jobs only (a reused --data-dir would
        # otherwise hold the trails of the jobs of every earlier run).
        await logs.audit.delete_many({})
        keys = Keyspace(settings.key_prefix)
        service = JobService(store, logs, keys)
        t = time.perf_counter()
        await seed_jobs(service, args.jobs)
        jobs_s = time.perf_counter() - t
        print(f"{args.jobs} jobs created in {jobs_s:.1f} s", flush=True)
        meta = logs.db["bench_meta"]
        have = await logs.runs.estimated_document_count()
        seeded = await meta.find_one({"_id": "seeded"})
        if have >= args.runs and seeded is None:  # seeded by an older version
            first = await logs.query_runs(RunQuery(job=job_name(0), limit=1))
            if first.runs:
                seeded = {"_id": "seeded", "end": first.runs[0].tick}
        if have >= args.runs and seeded is not None:
            seed_s = None
            print(f"{have:,} runs already in {database}: seeding skipped")
        else:
            await logs.runs.delete_many({})
            end = int(time.time() * 1000)
            seed_s = await seed_runs(logs, args.jobs, args.runs, end)
            seeded = {"_id": "seeded", "end": end}
            await meta.replace_one({"_id": "seeded"}, seeded, upsert=True)
            print(f"{args.runs:,} runs seeded in {seed_s:.0f} s "
                  f"({args.runs / seed_s:,.0f} documents/s)", flush=True)
        # The cluster kept running while the history was written: add the runs
        # of the minutes since (below).
        if seed_s is not None or args.rebuild_rollup or await logs.db["run_trend"].count_documents(
                {"complete": True}) < args.jobs:
            print(f"run_last rollup built in {await build_rollup(logs, args.jobs):.1f} s",
                  flush=True)
        # Last, so that the newest runs are as recent as on a live one.
        topped = await top_up(logs, args.jobs, int(seeded["end"]), int(time.time() * 1000))
        await meta.replace_one({"_id": "seeded"}, {**seeded, "end": int(time.time() * 1000)},
                               upsert=True)
        print(f"{topped:,} runs added for the minutes since the seeding", flush=True)
        for i in range(3):
            await service.patch(job_name(i), {"priority": i + 1}, actor="bench",
                                if_match=None)
        # The workers that wrote the history, as they register themselves.
        lease = await store.grant_lease(600)
        for i in range(WORKERS):
            info = WorkerInfo(f"w{i}", {"zone": ("eu", "us", "ap")[i % 3]},
                              int(time.time() * 1000))
            await store.put(keys.worker(f"w{i}"), info.encode(
                running=i % 3, now_ms=int(time.time() * 1000), max_runs=32), lease=lease)
        token, _ = await TokenStore(store, keys).create(name="bench", role=Role.ADMIN,
                                                        created_by="bench", now_ms=0)
        app = create_app(settings, store=store, logs=logs)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        mid = job_name(args.jobs // 2)
        newest = await logs.runs.find_one({"job": mid, "tick": {"$gte": from_ms(
            int(time.time() * 1000) - 7 * 86_400_000)}}, sort=[("tick", -1)])
        assert newest is not None, "no recent run to open"
        hour_ago = from_ms(int(time.time() * 1000) - 3_600_000)
        since = hour_ago.strftime("%Y-%m-%dT%H:%M")
        until = (hour_ago + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
        pages = {
            "jobs": "/",
            "jobs: 2nd page": f"/?cursor={job_name(49)}",
            "jobs: name filter": "/?name=job-05",
            "jobs: label filter": "/?target=zone%3Deu",
            "jobs: last status filter": "/?status=failed",
            # As a visit a minute later finds it: every job's last run has
            # changed, so no trend is in the master's cache.
            "jobs, trends not cached": "/",
            "jobs: last status, trends not cached": "/?status=failed",
            "job editor": f"/jobs/{mid}/edit",
            "new job editor": "/jobs/new",
            "runs": "/runs",
            "runs: job": f"/runs?job={mid}",
            "runs: status": "/runs?status=failed",
            "runs: worker": "/runs?worker=w3",
            "runs: job + time range": f"/runs?job={mid}&since={since}&until={until}",
            # Text in the output reads every run of its range (no index can
            # help): a search stops at its time budget and offers to go on.
            "runs: output text": "/runs?q=processed+996+items",
            "runs: output text, no match": "/runs?q=disk+full",
            "runs: job + output text": f"/runs?job={mid}&q=processed+99",
            "run": "/runs/" + quote(newest["_id"], safe=""),
            "workers": "/workers",
            "audit": "/audit",
        }
        results: dict[str, dict[str, float]] = {}
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            print(f"\n{'page':<38} {'median':>9} {'p95':>9} {'first':>9} {'size':>9}")
            for name, path in pages.items():
                forget = app[JOBS].trends.entries.clear if "not cached" in name else None
                results[name] = await time_page(http, base + path, args.repeat, forget)
                r = results[name]
                print(f"{name:<38} {r['median_ms']:>7.1f}ms {r['p95_ms']:>7.1f}ms "
                      f"{r['first_ms']:>7.1f}ms {r['bytes'] / 1024:>7.1f}KB", flush=True)
        worst = max(r["p95_ms"] for r in results.values())
        summary = {
            "benchmark": "dashboard", "jobs": args.jobs,
            "runs": await logs.runs.estimated_document_count(),
            "seed_runs_s": None if seed_s is None else round(seed_s, 1),
            "seed_docs_per_s": None if seed_s is None else round(args.runs / seed_s),
            "create_jobs_s": round(jobs_s, 1), "repeat": args.repeat,
            "budget_ms": BUDGET_MS, "worst_p95_ms": worst,
            "all_under_budget": worst < BUDGET_MS, "pages": results,
        }
        print(json.dumps(summary))
        if worst >= BUDGET_MS:
            raise SystemExit(f"over budget: a page took {worst} ms (p95) >= {BUDGET_MS} ms")
    finally:
        if runner is not None:
            await runner.cleanup()
        await store.delete(settings.key_prefix + "/", prefix=True)
        await store.close()
        await logs.close()
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
