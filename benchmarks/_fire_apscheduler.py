"""The peer side of bench_fire: one APScheduler 4 scheduler process.

Run by bench_fire.py with the Python of a throwaway venv that holds
``apscheduler[asyncpg,sqlalchemy]==4.0.0a6`` (never the project's venv):

    python _fire_apscheduler.py seed --dsn DSN --jobs J --command CMD
    python _fire_apscheduler.py run --dsn DSN --identity ID --records FILE

This is APScheduler's documented multi-process setup: every process shares one
``SQLAlchemyDataStore`` on PostgreSQL (asyncpg) and an ``AsyncpgEventBroker``
built from the same engine, and runs with the default role (schedules *and*
runs jobs). ``run`` prints ``ready`` once its scheduler has started, writes one
JSON line per job it released (the peer's "run record": its scheduled fire
time, when it started, its outcome) and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta

from apscheduler import AsyncScheduler, ConflictPolicy, JobReleased, current_job
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.eventbrokers.asyncpg import AsyncpgEventBroker
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import create_async_engine


async def fire(command: str) -> None:
    """The job: the same bash command as cronswarm's, with the same run id shape."""
    job = current_job.get()
    assert job.scheduled_fire_time is not None
    tick = round(job.scheduled_fire_time.timestamp() * 1000)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": os.environ.get("HOME", "/"),
           "CRONSWARM_RUN_ID": f"{job.schedule_id}@{tick}", "CRONSWARM_TICK": str(tick)}
    proc = await asyncio.create_subprocess_exec(
        "/bin/bash", "-c", command, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True)
    output, _ = await proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"exit status {proc.returncode}: {output[-200:]!r}")


def stores(dsn: str) -> tuple[SQLAlchemyDataStore, AsyncpgEventBroker]:
    engine = create_async_engine(f"postgresql+asyncpg://{dsn}")
    return SQLAlchemyDataStore(engine), AsyncpgEventBroker.from_async_sqla_engine(engine)


async def seed(args: argparse.Namespace) -> None:
    import _fire_apscheduler as me  # a reference every process can import

    data_store, broker = stores(args.dsn)
    async with AsyncScheduler(data_store, broker) as scheduler:
        # max_running_jobs=None: runs of a schedule may overlap (cronswarm's overlap: allow).
        await scheduler.configure_task("fire", func=me.fire, max_running_jobs=None)
        # A whole-second start: this release keeps the start time's fraction of a
        # second in every fire time it computes.
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        for j in range(args.jobs):
            await scheduler.add_schedule("fire", CronTrigger(second="*", start_time=start),
                                         id=f"j{j}",
                                         kwargs={"command": args.command},
                                         conflict_policy=ConflictPolicy.replace)
    print("seeded", flush=True)


async def run(args: argparse.Namespace) -> None:
    data_store, broker = stores(args.dsn)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(args.records, "a", buffering=1) as records:  # noqa: ASYNC230 - one short line

        def released(event: JobReleased) -> None:
            if event.scheduler_id != identity:
                return  # the broker also delivers the other schedulers' events
            records.write(json.dumps({
                "job_id": str(event.job_id), "schedule": event.schedule_id,
                "tick": event.scheduled_start.timestamp() if event.scheduled_start else None,
                "started": event.started_at.timestamp() if event.started_at else None,
                "outcome": event.outcome.name}) + "\n")

        async with AsyncScheduler(data_store, broker, identity=args.identity) as scheduler:
            identity = scheduler.identity
            scheduler.subscribe(released, JobReleased)
            await scheduler.start_in_background()
            print("ready", flush=True)
            await stop.wait()
            await scheduler.stop()
            await scheduler.wait_until_stopped()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("seed", "run"))
    parser.add_argument("--dsn", required=True, help="user@host:port/database")
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--command", default="")
    parser.add_argument("--identity", default="")
    parser.add_argument("--records", default=os.devnull)
    args = parser.parse_args()
    asyncio.run(seed(args) if args.mode == "seed" else run(args))


if __name__ == "__main__":
    sys.exit(main())
