"""Insert rate: the batching log writer vs one insert_one per run vs raw insert_many.

Every method writes the same run records, against the same server, in the same
run, each into a fresh database with the log store's indexes. Starts its own
MongoDB-protocol server unless MONGODB_URI is set. The batching writer's time
runs from its first submit until MongoDB holds every record (its last batch
waits up to --flush-interval), with the fsync'd spool on local disk.

    python -m benchmarks.bench_logwriter [--runs 3000] [--batch-size 200] [--lanes 32]

Prints one line per method, then a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

from cronswarm.common import RunRecord, RunStatus, SystemClock
from cronswarm.logstore import MongoLogStore, record_to_doc
from cronswarm.worker import FlushEvent, LogWriter, Spool

from ._common import make_record, mongodb, summarize


def records(runs: int) -> list[RunRecord]:
    # Recent ticks: old runs would be expired, and deleted by the server's
    # TTL monitor while the benchmark counts them.
    start = SystemClock().now_ms() - runs * 1000
    out = []
    for n in range(runs):
        record = make_record(n % 100, start + n * 1000, n)
        if record.status is RunStatus.RUNNING:
            record.status = RunStatus.SUCCEEDED
        out.append(record)
    return out


async def fresh_store(uri: str, label: str) -> MongoLogStore:
    store = MongoLogStore(uri, database=f"bench_{label}_{uuid.uuid4().hex[:6]}")
    await store.ensure_indexes()
    return store


async def timed(label: str, uri: str, body: Callable[[MongoLogStore], Awaitable[int]]
                ) -> tuple[float, int, MongoLogStore]:
    store = await fresh_store(uri, label)
    started = time.perf_counter()
    count = await body(store)
    return time.perf_counter() - started, count, store


async def with_writer(store: MongoLogStore, items: list[RunRecord], *, batch_size: int,
                      flush_interval: float, lanes: int, acks: list[float]) -> None:
    """Submit ``items`` from ``lanes`` concurrent submitters; return when all are in MongoDB."""
    written = 0
    done = asyncio.Event()

    def on_flush(event: FlushEvent) -> None:
        nonlocal written
        written += event.records
        if written >= len(items):
            done.set()

    with tempfile.TemporaryDirectory(prefix="bench-spool-") as spool_dir:
        writer = LogWriter(store, Spool(spool_dir, max_bytes=1 << 30), batch_size=batch_size,
                           flush_interval=flush_interval, on_flush=on_flush)
        task = asyncio.create_task(writer.run())

        async def lane(mine: list[RunRecord]) -> None:
            for record in mine:
                t = time.perf_counter()
                await writer.submit(record)
                acks.append(time.perf_counter() - t)

        await asyncio.gather(*(lane(items[i::lanes]) for i in range(lanes)))
        await done.wait()
        await writer.close()
        await asyncio.wait([task])


async def main(args: argparse.Namespace) -> None:
    items = records(args.runs)
    docs = [record_to_doc(r, default_retention_days=30) for r in items]
    results: dict[str, dict[str, object]] = {}
    with mongodb() as (uri, server):
        print(f"server: {server}; {args.runs} runs per method, batch {args.batch_size}, "
              f"{args.lanes} concurrent submitters for the writer", flush=True)

        async def insert_one(store: MongoLogStore) -> int:
            for doc in docs:
                await store.runs.insert_one(dict(doc))
            return len(docs)

        async def insert_many(store: MongoLogStore) -> int:
            for i in range(0, len(docs), args.batch_size):
                await store.runs.insert_many([dict(d) for d in docs[i:i + args.batch_size]],
                                             ordered=False)
            return len(docs)

        async def write_runs_each(store: MongoLogStore) -> int:
            # What the worker did before the writer: one write_runs per record
            # (now four round trips with the rollups). At most 1,000: under a
            # long stream of single writes the development server slows down.
            some = items[:1000]
            for record in some:
                await store.write_runs([record])
            return len(some)

        acks: list[float] = []

        async def writer_finals(store: MongoLogStore) -> int:
            await with_writer(store, items, batch_size=args.batch_size,
                              flush_interval=args.flush_interval, lanes=args.lanes, acks=acks)
            return len(items)

        pair_acks: list[float] = []

        async def writer_pairs(store: MongoLogStore) -> int:
            # What a worker really submits: a running record, then the final one.
            pairs: list[RunRecord] = []
            for record in items:
                pairs += [replace(record, status=RunStatus.RUNNING, ended=None), record]
            await with_writer(store, pairs, batch_size=args.batch_size,
                              flush_interval=args.flush_interval, lanes=args.lanes,
                              acks=pair_acks)
            return len(items)

        methods = [
            ("insert_one per run", insert_one),
            ("raw insert_many", insert_many),
            ("batching writer", writer_finals),
            ("batching writer, running+final per run", writer_pairs),
            ("write_runs per run (DirectSink, <=1000)", write_runs_each),
        ]
        for label, body in methods:
            seconds, count, store = await timed(label.split()[0], uri, body)
            stored = await store.runs.count_documents({})
            await store.client.drop_database(store.db.name)
            await store.close()
            assert stored == count, f"{label}: {stored} documents for {count} runs"
            rate = count / seconds
            results[label] = {"runs": count, "seconds": round(seconds, 3),
                              "runs_per_s": round(rate, 1)}
            print(f"{label:42s} {count:7d} runs in {seconds:7.2f} s = {rate:8.0f} runs/s",
                  flush=True)
        for label, samples in (("batching writer", acks),
                               ("batching writer, running+final per run", pair_acks)):
            ack = summarize(sorted(samples, reverse=True)[:1] + samples)  # cold = worst
            results[label]["submit_ack_ms"] = {k: ack[k] for k in ("median_ms", "p95_ms")}
            print(f"{label}: submit() acknowledged in {ack['median_ms']:.2f} ms median, "
                  f"{ack['p95_ms']:.2f} ms p95 (fsync'd in the spool)")
    print(json.dumps({"benchmark": "logwriter", "server": server, "runs": args.runs,
                      "batch_size": args.batch_size, "lanes": args.lanes,
                      "results": results}))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--flush-interval", type=float, default=0.5)
    parser.add_argument("--lanes", type=int, default=32)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
