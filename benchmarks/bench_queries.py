"""Latency of the dashboard's main queries on a million run documents.

Seeds ``--docs`` documents (default 1,000,000: 1,000 jobs x 1,000 runs over 10
days, so the last 24 h hold 10%) with raw insert_many in big batches, builds
the log store's indexes, then times each query through MongoLogStore, the
code the master uses. Starts its own MongoDB-protocol server unless
MONGODB_URI is set.

    python -m benchmarks.bench_queries [--docs 1000000] [--reps 10] [--data-dir DIR]

``--data-dir`` keeps the local server's data there; with ``--reuse`` a second
run against the same data skips the seeding. The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cronswarm.common import RunStatus, SystemClock, from_ms
from cronswarm.logstore import MongoLogStore, RunQuery, record_to_doc

from ._common import DAY_MS, make_record, mongodb, summarize

DATABASE = "cronswarm_bench"
SPAN_MS = 10 * DAY_MS


def layout(docs: int, jobs: int) -> tuple[int, int]:
    runs_per_job = max(1, docs // jobs)
    return runs_per_job, SPAN_MS // runs_per_job  # period of each job


def chunk(start: int, first: int, count: int, jobs: int, period: int
          ) -> list[dict[str, Any]]:
    out = []
    for n in range(first, first + count):
        run, job = divmod(n, jobs)
        tick = start + run * period + job * (period // jobs)
        out.append(record_to_doc(make_record(job, tick, n), default_retention_days=30))
    return out


async def seed(store: MongoLogStore, start: int, docs: int, jobs: int, batch: int) -> float:
    _, period = layout(docs, jobs)
    started = time.perf_counter()
    # Build the next batch in a thread while the server stores this one.
    pending = asyncio.create_task(
        asyncio.to_thread(chunk, start, 0, min(batch, docs), jobs, period))
    for first in range(0, docs, batch):
        ready = await pending
        following = first + batch
        if following < docs:
            pending = asyncio.create_task(asyncio.to_thread(
                chunk, start, following, min(batch, docs - following), jobs, period))
        await store.runs.insert_many(ready, ordered=False)
        if (first // batch) % 10 == 9:
            done = first + len(ready)
            rate = done / (time.perf_counter() - started)
            print(f"  seeded {done:,} documents ({rate:,.0f}/s)", flush=True)
    return time.perf_counter() - started


async def measure(reps: int, query: Callable[[], Awaitable[Any]]) -> tuple[dict[str, float], Any]:
    samples = []
    result = None
    for _ in range(reps):
        started = time.perf_counter()
        result = await query()
        samples.append(time.perf_counter() - started)
    return summarize(samples), result


async def main(args: argparse.Namespace) -> None:
    jobs = args.jobs
    runs_per_job, period = layout(args.docs, jobs)
    rng = random.Random(7)
    report: dict[str, Any] = {"benchmark": "queries", "docs": args.docs, "jobs": jobs}
    with mongodb(args.data_dir) as (uri, server):
        report["server"] = server
        setup = MongoLogStore(uri, database=DATABASE, timeout_ms=30000)
        # The history ends now (older runs would be expired, and the server's
        # TTL monitor would delete them during the benchmark).
        meta = await setup.db["bench_meta"].find_one({"_id": "dataset"})
        have = await setup.runs.count_documents({}) if args.reuse and meta else 0
        if meta is not None and have == args.docs and meta["jobs"] == jobs:
            start = int(meta["start"])
            print(f"server: {server}; reusing {have:,} documents", flush=True)
        else:
            start = SystemClock().now_ms() - runs_per_job * period
            print(f"server: {server}; seeding {args.docs:,} documents "
                  f"({jobs} jobs x {runs_per_job} runs)", flush=True)
            await setup.client.drop_database(DATABASE)
            report["seed_seconds"] = round(
                await seed(setup, start, args.docs, jobs, args.batch), 1)
            await setup.db["bench_meta"].insert_one(
                {"_id": "dataset", "start": start, "jobs": jobs})
            print(f"seeded in {report['seed_seconds']} s "
                  f"({args.docs / report['seed_seconds']:,.0f} documents/s)", flush=True)
        await setup.close()
        now = start + runs_per_job * period  # just after the newest tick
        day_ago = now - DAY_MS

        class DatasetClock:
            def now_ms(self) -> int:
                return now

        store = MongoLogStore(uri, database=DATABASE, timeout_ms=30000,
                              query_time_ms=600_000, clock=DatasetClock())
        # The rollups start empty, as for history written without them: the
        # first (cold) call of a query that uses one builds it from the runs.
        await store.db.drop_collection("run_last")
        await store.db.drop_collection("run_hours")
        started = time.perf_counter()
        await store.ensure_indexes()
        report["index_seconds"] = round(time.perf_counter() - started, 1)
        print(f"indexes ready in {report['index_seconds']} s", flush=True)

        def some_job() -> str:
            return f"job-{rng.randrange(jobs):04d}"

        async def newest_of_job() -> Any:
            page = await store.query_runs(RunQuery(job=some_job(), limit=50))
            assert len(page.runs) == 50 and page.next_cursor
            return page

        async def second_page() -> Any:
            first = await store.query_runs(RunQuery(job=some_job(), limit=50))
            return await store.query_runs(RunQuery(job=first.runs[0].job, limit=50,
                                                   cursor=first.next_cursor))

        async def job_in_range() -> Any:
            return await store.query_runs(RunQuery(job=some_job(), since=day_ago, until=now,
                                                   limit=50))

        async def by_status(status: RunStatus) -> Any:
            return await store.query_runs(RunQuery(status=status, limit=50))

        async def by_worker() -> Any:
            return await store.query_runs(RunQuery(worker=f"worker-{rng.randrange(20):02d}",
                                                   limit=50))

        async def text_24h() -> Any:
            page = await store.query_runs(RunQuery(text="disk full", since=day_ago, until=now,
                                                   limit=50))
            assert page.runs and all("disk full" in r.output for r in page.runs)
            return page

        async def text_in_job() -> Any:
            return await store.query_runs(RunQuery(job=some_job(), text="disk full",
                                                   limit=50))

        async def text_no_match_24h() -> Any:
            return await store.query_runs(RunQuery(text="no such text", since=day_ago,
                                                   until=now, limit=50))

        async def counts_24h() -> Any:
            counts = await store.count_runs(since=day_ago, until=now)
            assert sum(counts.values()) == args.docs // 10, counts
            return counts

        async def counts_while_written() -> Any:
            # Steady state: runs keep arriving in the current hour (a partial
            # hour, always counted from the runs) and finishing in the last
            # one (bumped by the writers, so recounted); the rest is cached.
            await store.hourly.touch([from_ms(now - 1), from_ms(now - 3_600_000)])
            return await counts_24h()

        async def counts_7d() -> Any:
            return await store.count_runs(since=now - 7 * DAY_MS, until=now)

        window = {"tick": {"$gte": from_ms(day_ago), "$lt": from_ms(now)}}

        async def counts_24h_one_group() -> Any:
            # An alternative count_runs does not use: one $group over the window.
            cursor = await store.runs.aggregate([
                {"$match": window}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}])
            return await cursor.to_list(None)

        async def counts_24h_per_status() -> Any:
            # Another: one indexed count per status on (status, tick).
            return [await store.runs.count_documents({"status": s.value, **window})
                    for s in RunStatus]

        async def counts_24h_job() -> Any:
            return await store.count_runs(since=day_ago, until=now, job=some_job())

        all_jobs = [f"job-{j:04d}" for j in range(jobs)]

        async def last_per_job() -> Any:
            last = await store.last_runs(all_jobs)
            assert len(last) == jobs
            return last

        queries: list[tuple[str, int, Callable[[], Awaitable[Any]]]] = [
            ("newest 50 runs of a job", args.reps, newest_of_job),
            ("next page (cursor) of a job", args.reps, second_page),
            ("a job's runs in the last 24 h", args.reps, job_in_range),
            ("newest 50 failed runs", args.reps, lambda: by_status(RunStatus.FAILED)),
            ("newest 50 lost runs", args.reps, lambda: by_status(RunStatus.LOST)),
            ("newest 50 runs of a worker", args.reps, by_worker),
            ("text 'disk full', last 24 h, 50 hits", args.reps, text_24h),
            ("text 'disk full' in one job", args.reps, text_in_job),
            ("text without a match, last 24 h", max(2, args.reps // 5), text_no_match_24h),
            ("counts per status, 24 h, all jobs", args.reps, counts_24h),
            ("  same, current hour being written", args.reps, counts_while_written),
            ("counts per status, 7 days, all jobs", args.reps, counts_7d),
            ("  (alternative: one $group over 24 h)", 2, counts_24h_one_group),
            ("  (alternative: count per status, 24 h)", 2, counts_24h_per_status),
            ("counts per status, 24 h, one job", args.reps, counts_24h_job),
            (f"last run of each of {jobs} jobs", max(2, args.reps // 2), last_per_job),
        ]
        report["queries"] = {}
        print(f"{'query':42s} {'cold':>9s} {'median':>9s} {'p95':>9s}  (ms; cold = first call)")
        for label, reps, query in queries:
            stats, _ = await measure(reps, query)
            report["queries"][label.strip()] = stats
            print(f"{label:42s} {stats['cold_ms']:9.1f} {stats['median_ms']:9.1f} "
                  f"{stats['p95_ms']:9.1f}", flush=True)
        await store.close()
    print(json.dumps(report))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--data-dir", help="keep the local server's data here")
    parser.add_argument("--reuse", action="store_true",
                        help="skip seeding when the database already holds --docs documents")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
