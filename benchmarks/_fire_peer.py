"""bench_fire's peer: the same workload on APScheduler 4 over PostgreSQL.

- APScheduler 4.0.0a6 with its asyncpg and SQLAlchemy extras goes into a
  throwaway venv (never the project's dependencies). Its dependencies are
  pinned to releases of its own time: with anyio >= 4.10 its asyncpg event
  broker fails on every notification (NoEventLoopError), and its SQLAlchemy
  store imports ``sniffio``, which newer anyio no longer brings.
- PostgreSQL is Debian's ``postgresql``: a throwaway cluster (initdb into a temp
  dir, ``pg_ctl start`` on a free port, as the ``postgres`` user), stopped at
  the end.
- ``--workers`` scheduler processes (benchmarks/_fire_apscheduler.py) share its
  SQLAlchemy data store and asyncpg event broker, APScheduler's documented
  multi-process setup. Each schedule has ``max_running_jobs=None`` (runs may
  overlap) and otherwise APScheduler's defaults.

Measured like cronswarm: the witness file, the released-job records (started
minus scheduled fire time; ``missed_start_deadline`` counts as skipped), CPU
of the scheduler processes (own + jobs) and of PostgreSQL (the postmaster and
its backends), and rows written (Δ tup_inserted + tup_updated + tup_deleted in
pg_stat_database; PostgreSQL publishes backends' counts about once a second)
and transactions committed, per fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from benchmarks._fire_measure import Child, cpu_of, stop_all, tree_cpu, wait_for_witness
from cronswarm.devservices import free_port

HERE = Path(__file__).resolve().parent
REQUIREMENTS = ["apscheduler[asyncpg,sqlalchemy]==4.0.0a6", "anyio==4.9.0", "sniffio",
                "sqlalchemy[asyncio]==2.0.40", "asyncpg==0.30.0"]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def run(argv: list[str], timeout: float = 300) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def peer_python(venv: Path) -> str:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing {REQUIREMENTS[0]} into a venv at {venv} ...", flush=True)
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], timeout=900)
    return str(python)


def pg_bin(name: str) -> str:
    found = shutil.which(name) or str(PG_BIN / name)
    if not os.access(found, os.X_OK):
        raise RuntimeError(f"{name} not found: apt-get install -y postgresql")
    return found


class Postgres:
    """A throwaway cluster owned by the postgres user (we may be root)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-fire-pg-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> None:
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        data = str(self.dir / "data")
        run([*self.as_user, pg_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--no-sync"])
        run([*self.as_user, pg_bin("pg_ctl"), "-D", data, "-l", str(self.dir / "log"), "-w",
             "-t", "60", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
             "start"])

    def stop(self) -> None:
        if (self.dir / "data" / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                run([*self.as_user, pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-w",
                     "-t", "30", "-m", "fast", "stop"], timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def pid(self) -> int:
        return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])

    def sql(self, query: str, database: str = "postgres") -> str:
        return run([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                    "-d", database, "-Atc", query], timeout=60).strip()

    def dsn(self, database: str) -> str:
        return f"postgres@127.0.0.1:{self.port}/{database}"


async def apscheduler_rounds(plans: list[Any], keep_venv: Path | None,
                             measure_window: Callable[..., Any],
                             summarize: Callable[..., dict[str, Any]],
                             witness_command: Callable[[Path], str]
                             ) -> AsyncIterator[dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        venv = keep_venv or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-fire-venv-"))) / "venv"
        python = await asyncio.to_thread(peer_python, venv)
        pg = Postgres()
        stack.callback(pg.stop)
        await asyncio.to_thread(pg.start)
        for plan in plans:
            yield await apscheduler_round(pg, python, plan, measure_window, summarize,
                                          witness_command)


async def apscheduler_round(pg: Postgres, python: str, plan: Any,
                            measure_window: Callable[..., Any],
                            summarize: Callable[..., dict[str, Any]],
                            witness_command: Callable[[Path], str]) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    database = f"fire_{tag}"
    witness = plan.tmp / f"witness-apscheduler-{tag}"
    script = str(HERE / "_fire_apscheduler.py")
    env = {**os.environ, "PYTHONPATH": ""}
    await asyncio.to_thread(pg.sql, f"CREATE DATABASE {database}")
    try:
        seeded = await Child.start(
            f"aps-seed-{tag}", [python, script, "seed", "--dsn", pg.dsn(database),
                                "--jobs", str(plan.jobs), "--command", witness_command(witness)],
            env=env, log_dir=plan.tmp, watch=("seeded",))
        try:
            await seeded.wait_for("seeded", timeout=120)
        finally:
            await seeded.stop()
        records = [plan.tmp / f"records-{tag}-{i}.jsonl" for i in range(plan.workers)]
        async with contextlib.AsyncExitStack() as stack:
            schedulers: list[Child] = []
            stack.push_async_callback(stop_all, schedulers)
            for i in range(plan.workers):
                schedulers.append(await Child.start(
                    f"aps-{tag}-{i}", [python, script, "run", "--dsn", pg.dsn(database),
                                       "--identity", f"s{i}-{tag}", "--records", str(records[i])],
                    env=env, log_dir=plan.tmp, watch=("ready",)))
            for scheduler in schedulers:
                await scheduler.wait_for("ready", timeout=120)

            async def sample() -> dict[str, float]:
                s = cpu_of(c.pid for c in schedulers)
                p = tree_cpu(pg.pid)
                row = await asyncio.to_thread(
                    pg.sql, "SELECT tup_inserted + tup_updated + tup_deleted, xact_commit "
                    f"FROM pg_stat_database WHERE datname = '{database}'")
                writes, commits = (float(v) for v in row.split("|"))
                return {"workers_own": s.own, "workers_children": s.children,
                        "workers_system_ms": 1000 * s.own_system,
                        "postgres_own": p.own, "postgres_children": p.children,
                        "postgres_row_writes": writes, "postgres_commits": commits}

            window = await measure_window(plan, sample)
            seen = await wait_for_witness(witness, plan.names, window.ticks, plan.settle)
            await stop_all(schedulers)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(pg.sql, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    released: dict[str, dict[str, Any]] = {}
    for path in records:
        with contextlib.suppress(FileNotFoundError), path.open() as f:
            for line in f:
                rec = json.loads(line)
                released[rec["job_id"]] = rec
    first, last = window.ticks[0] / 1000, window.ticks[-1] / 1000
    in_window = [r for r in released.values()
                 if r["tick"] is not None and first - 0.0005 <= r["tick"] <= last + 0.0005]
    skipped = {f"{r['schedule']}@{round(r['tick'] * 1000)}" for r in released.values()
               if r["tick"] is not None and r["outcome"] == "missed_start_deadline"}
    lags = [(r["started"] - r["tick"]) * 1000 for r in in_window if r["started"] is not None]
    return summarize("apscheduler4", plan, window, seen, skipped, lags,
                     ("workers", "postgres"))

