"""Benchmark: what one fire costs and how late it starts, with real worker processes.

    python -m benchmarks.bench_fire [--seconds 60] [--rates 10,30,100] [--workers 3]
                                    [--peer apscheduler4]

For each rate J: J jobs firing every second (``* * * * * *``, ``overlap:
allow``), each a bash command that appends ``<date +%s%N> $CRONSWARM_RUN_ID``
to a witness file; ``--workers`` ``cronswarm worker`` processes; the bundled
etcd and MongoDB-protocol server (SecantusDB, on disk), started here unless
CRONSWARM_ETCD_ENDPOINTS / MONGODB_URI are set. Jobs are created with the
master's job service (the code behind ``POST /api/jobs``) before the workers
start. After a warm-up, a window of ``--seconds`` whole seconds is measured:

- lag p50/p99: the job's own timestamp minus its tick, and the run records'
  ``started`` minus tick;
- missed ticks (a tick of the window that no job wrote), ticks recorded
  ``skipped``, duplicates (a run id written more than once);
- CPU per fire (ms) of the workers (own, and children: the jobs), of etcd and
  of the MongoDB server, from /proc times before and after the window;
- etcd writes per fire: keys written (Δ etcd_mvcc_put_total +
  etcd_mvcc_delete_total from /metrics) and revisions (Δ revision: committed
  write requests/transactions);
- MongoDB writes per fire: documents in acknowledged insert/update/delete
  commands as the workers' driver sent them, and write commands as the server
  counts them (serverStatus opcounters: SecantusDB counts commands, not
  documents).

``--peer apscheduler4`` then runs the same workload on APScheduler 4.0.0a6
(see benchmarks/_fire_peer.py). Prints a table per round and a JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._fire_measure import (  # noqa: E402
    JOB_COMMAND,
    Child,
    Witness,
    cpu_of,
    etcd_counters,
    job_alone_cpu_ms,
    lag_summary,
    per_fire,
    sleep_until,
    stop_all,
    tree_cpu,
    wait_for_witness,
    window_ticks,
)
from cronswarm.common import Job, Keyspace, Settings  # noqa: E402
from cronswarm.coord import EtcdStore  # noqa: E402
from cronswarm.devservices import EtcdServer, MongoServer  # noqa: E402
from cronswarm.logstore import MongoLogStore  # noqa: E402
from cronswarm.master import JobService  # noqa: E402

Sampler = Callable[[], Awaitable[dict[str, float]]]


@dataclass(frozen=True)
class Plan:
    jobs: int
    workers: int
    seconds: int
    warmup: float
    settle: float
    tmp: Path

    @property
    def names(self) -> list[str]:
        return [f"j{j}" for j in range(self.jobs)]


@dataclass(frozen=True)
class Window:
    ticks: list[int]
    delta: dict[str, float]


async def measure_window(plan: Plan, sample: Sampler) -> Window:
    """Sample at the first whole second after the warm-up and ``seconds`` later."""
    start = math.ceil(time.time() + plan.warmup)
    await sleep_until(start)
    before = await sample()
    await sleep_until(start + plan.seconds)
    after = await sample()
    return Window(window_ticks(start * 1000, plan.seconds),
                  {k: after[k] - before.get(k, 0.0) for k in after})


def costs(window: Window, fires: int, groups: Sequence[str]) -> dict[str, float]:
    """CPU (ms) per fire of each process group, and counts per fire."""
    d = window.delta
    out: dict[str, float] = {}
    for group in groups:
        out[f"{group}_cpu_ms_per_fire"] = per_fire(
            1000 * (d[f"{group}_own"] + d[f"{group}_children"]), fires)
    out["workers_own_ms_per_fire"] = per_fire(1000 * d["workers_own"], fires)
    out["workers_children_ms_per_fire"] = per_fire(1000 * d["workers_children"], fires)
    for key, value in d.items():
        if not key.endswith(("_own", "_children")):
            out[f"{key}_per_fire"] = per_fire(value, fires)
    return out


def witness_command(witness: Path) -> str:
    return JOB_COMMAND.format(witness=shlex.quote(str(witness)))


async def cronswarm_round(base: Settings, plan: Plan, etcd_pid: int | None,
                          mongo_pid: int | None) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    settings = base.with_overrides(key_prefix=f"/fire-{tag}", mongodb_database=f"fire_{tag}")
    witness = plan.tmp / f"witness-cronswarm-{tag}"
    logs = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database)
    admin = EtcdStore(settings.etcd_endpoints)
    try:
        await logs.ensure_indexes()
        service = JobService(admin, logs, Keyspace(settings.key_prefix))
        for name in plan.names:
            await service.create(Job.from_dict({
                "name": name, "schedule": "* * * * * *", "command": witness_command(witness),
                "shell": "/bin/bash", "overlap": "allow"}), actor="bench")
        async with contextlib.AsyncExitStack() as stack:
            workers: list[Child] = []
            stack.push_async_callback(stop_all, workers)
            for i in range(plan.workers):
                own = settings.with_overrides(worker_id=f"w{i}-{tag}",
                                              spool_dir=str(plan.tmp / f"spool-{tag}-{i}"))
                env = {**os.environ, **own.env(), "PYTHONPATH": str(ROOT)}
                workers.append(await Child.start(
                    f"worker-{tag}-{i}", [sys.executable, "-m", "benchmarks._fire_worker"],
                    env=env, cwd=ROOT, log_dir=plan.tmp,
                    watch=("ready with", "bench-mongo-writes")))
            for worker in workers:
                await worker.wait_for("ready with", timeout=120)

            async def sample() -> dict[str, float]:
                w = cpu_of(c.pid for c in workers)
                e = tree_cpu(etcd_pid) if etcd_pid else None
                m = tree_cpu(mongo_pid) if mongo_pid else None
                out = {"workers_own": w.own, "workers_children": w.children,
                       "workers_system_ms": 1000 * w.own_system}
                if e is not None:
                    out |= {"etcd_own": e.own, "etcd_children": e.children}
                if m is not None:
                    out |= {"mongodb_own": m.own, "mongodb_children": m.children}
                ec = await asyncio.to_thread(etcd_counters, settings.etcd_endpoints[0])
                out["etcd_key_writes"] = ec["puts"] + ec["deletes"]
                out["etcd_revisions"] = ec["revision"]
                status = await logs.client.admin.command("serverStatus")
                ops = status.get("opcounters", {})
                out["mongodb_write_cmds"] = float(
                    ops.get("insert", 0) + ops.get("update", 0) + ops.get("delete", 0))
                out["mongodb_doc_writes"] = float(sum(
                    int(c.latest["bench-mongo-writes"].split()[1])
                    for c in workers if c.latest["bench-mongo-writes"]))
                return out

            window = await measure_window(plan, sample)
            seen = await wait_for_witness(witness, plan.names, window.ticks, plan.settle)
            await stop_all(workers)  # drains: every record reaches MongoDB
        docs = await logs.runs.find({"tick": {"$lte": _utc(window.ticks[-1])}}).to_list(None)
    finally:
        with contextlib.suppress(Exception):
            await admin.delete(settings.key_prefix + "/", prefix=True)
        await admin.close()
        with contextlib.suppress(Exception):
            await logs.client.drop_database(settings.mongodb_database)
        await logs.close()
    first = _utc(window.ticks[0])
    record_lags = [d["lag"] * 1000 for d in docs if d["tick"].replace(tzinfo=dt.UTC) >= first
                   and d["status"] != "skipped" and d.get("lag") is not None]
    return summarize("cronswarm", plan, window, seen, skipped_ticks(docs), record_lags,
                     ("workers", "etcd", "mongodb"))


def skipped_ticks(docs: Sequence[dict[str, Any]]) -> set[str]:
    """Run ids of the ticks recorded ``skipped``: one record may stand for a
    range of ticks (``extra.skipped_until``; these jobs fire every second)."""
    out = set()
    for d in docs:
        if d["status"] != "skipped":
            continue
        tick = round(d["tick"].replace(tzinfo=dt.UTC).timestamp() * 1000)
        until = int((d.get("extra") or {}).get("skipped_until") or tick)
        out.update(f"{d['job']}@{t}" for t in range(tick, until + 1, 1000))
    return out


def summarize(system: str, plan: Plan, window: Window, seen: Witness, skipped: set[str],
              record_lags: Sequence[float], groups: Sequence[str]) -> dict[str, Any]:
    """One round's row; ``skipped``: run ids recorded skipped (any tick)."""
    found = seen.analyse(plan.names, window.ticks)
    in_window = {f"{n}@{t}" for n in plan.names for t in window.ticks}
    fires = found.executed
    present = [g for g in groups if f"{g}_own" in window.delta]
    return {"system": system, "jobs": plan.jobs, "workers": plan.workers,
            "seconds": plan.seconds, "ticks": plan.jobs * len(window.ticks), "fires": fires,
            "missed": found.missed, "skipped": len(skipped & in_window),
            # A tick both recorded skipped and run by the job: should never happen.
            "skipped_but_ran": len(skipped & in_window & seen.runs.keys()),
            "duplicates": found.duplicates,
            **lag_summary("job_lag", found.lags_ms),
            **lag_summary("record_lag", record_lags),
            **costs(window, fires, present)}


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


TIMING = [("system", "system", 12), ("J", "jobs", 4), ("W", "workers", 3),
          ("fires", "fires", 6), ("missed", "missed", 6), ("skip", "skipped", 5),
          ("dup", "duplicates", 4), ("skip+ran", "skipped_but_ran", 8),
          ("job p50", "job_lag_p50_ms", 8), ("job p99", "job_lag_p99_ms", 8),
          ("rec p50", "record_lag_p50_ms", 8), ("rec p99", "record_lag_p99_ms", 8)]
COST = [("system", "system", 12), ("J", "jobs", 4), ("W", "workers", 3),
        ("sched", "workers_cpu_ms_per_fire", 7), ("own", "workers_own_ms_per_fire", 6),
        ("jobs", "workers_children_ms_per_fire", 6), ("etcd", "etcd_cpu_ms_per_fire", 6),
        ("mongo", "mongodb_cpu_ms_per_fire", 6), ("pg", "postgres_cpu_ms_per_fire", 6),
        ("etcd keys", "etcd_key_writes_per_fire", 9), ("revs", "etcd_revisions_per_fire", 5),
        ("mongo docs", "mongodb_doc_writes_per_fire", 10),
        ("cmds", "mongodb_write_cmds_per_fire", 5),
        ("pg rows", "postgres_row_writes_per_fire", 7),
        ("commits", "postgres_commits_per_fire", 7)]


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, int]]) -> str:
    lines = [" ".join(f"{title:>{width}}" for title, _, width in columns)]
    for row in rows:
        cells = []
        for _, key, width in columns:
            value = row.get(key, "-")
            if isinstance(value, float) and math.isnan(value):
                value = "-"
            cells.append(f"{value!s:>{width}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="measured window")
    parser.add_argument("--rates", default="10,30,100",
                        help="comma-separated fires per second (= jobs firing every second)")
    parser.add_argument("--workers", type=int, default=3,
                        help="worker (or peer scheduler) processes")
    parser.add_argument("--peer", choices=("apscheduler4",), help="also run this scheduler")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds between the processes being ready and the window")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds after the window that late runs still count")
    parser.add_argument("--keep", type=Path,
                        help="keep the processes' logs and the witness files in this directory")
    parser.add_argument("--peer-venv", type=Path,
                        help="reuse (or create and keep) the peer's venv here")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    # SIGTERM ends the run like Ctrl-C: cancelled, every process stopped on the way out.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as servers:
        tmp = args.keep or Path(servers.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-fire-")))
        tmp.mkdir(parents=True, exist_ok=True)
        endpoints = os.environ.get("CRONSWARM_ETCD_ENDPOINTS")
        uri = os.environ.get("MONGODB_URI")
        etcd_pid = mongo_pid = None
        if not endpoints:
            etcd = EtcdServer(tmp / "etcd")
            servers.callback(etcd.stop)
            etcd.start()
            endpoints, etcd_pid = etcd.endpoint, etcd.pid
        if not uri:
            mongo = MongoServer(tmp / "mongodb")
            servers.callback(mongo.stop)
            mongo.start(timeout=120)
            uri, mongo_pid = mongo.uri, mongo.pid
        base = Settings.load({}, etcd_endpoints=tuple(endpoints.split(",")), mongodb_uri=uri)
        job_alone = [job_alone_cpu_ms(tmp / "calibration")]
        for jobs in rates:
            plan = Plan(jobs, args.workers, args.seconds, args.warmup, args.settle, tmp)
            rows.append(await cronswarm_round(base, plan, etcd_pid, mongo_pid))
            print(table(rows[-1:], TIMING), flush=True)
        job_alone.append(job_alone_cpu_ms(tmp / "calibration"))
        servers.close()  # etcd and MongoDB stay out of the peer's rounds
        if args.peer:
            from benchmarks._fire_peer import apscheduler_rounds

            with tempfile.TemporaryDirectory(prefix="bench-fire-peer-") as peer_tmp:
                plans = [Plan(j, args.workers, args.seconds, args.warmup, args.settle,
                              args.keep or Path(peer_tmp)) for j in rates]
                peer_rows = apscheduler_rounds(plans, args.peer_venv, measure_window, summarize,
                                               witness_command)
                async with contextlib.aclosing(peer_rows):  # stops PostgreSQL however we leave
                    async for row in peer_rows:
                        rows.append(row)
                        print(table(rows[-1:], TIMING), flush=True)
    print("\nlag in ms (job: its own timestamp - tick; rec: run record started - tick)")
    print(table(rows, TIMING))
    print("\nper fire: CPU ms (sched = scheduler processes: own + jobs), writes")
    print(table(rows, COST))
    print(f"\nthe job by itself (bash -c, run here 300 times before and after the "
          f"cronswarm rounds): {job_alone[0]} / {job_alone[1]} ms of CPU")
    print(json.dumps({"benchmark": "fire", "rounds": rows, "job_alone_cpu_ms": job_alone,
                      "cpu_count": psutil.cpu_count(), "load_avg": os.getloadavg()}))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main(parse_args()))
