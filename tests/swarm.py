"""In-process workers (each with its own etcd connection and clock) for swarm tests."""

from __future__ import annotations

import asyncio
import shlex
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cronswarm.common import Job, Keyspace, Settings, SkewedClock, SystemClock
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService
from cronswarm.worker import LogWriter, Worker
from tests.helpers import wait_for_count


class Member:
    def __init__(self, worker: Worker, store: EtcdStore, stop: asyncio.Event,
                 task: asyncio.Task[None]) -> None:
        self.worker = worker
        self.store = store
        self.stop = stop
        self.task = task

    async def shutdown(self) -> None:
        self.stop.set()
        try:
            await self.task
        finally:
            await self.store.close()


async def start_member(settings: Settings, logs: MongoLogStore, worker_id: str, *,
                       skew_ms: int = 0, labels: Mapping[str, str] | None = None) -> Member:
    own = settings.with_overrides(worker_id=worker_id, worker_labels=dict(labels or {}),
                                  spool_dir=f"{settings.spool_dir}/{worker_id}")
    store = EtcdStore(own.etcd_endpoints, timeout=own.etcd_timeout)
    clock = SkewedClock(skew_ms) if skew_ms else SystemClock()
    worker = Worker(own, store, LogWriter.open(logs, own), clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name=f"worker-{worker_id}")
    ready = asyncio.create_task(worker.ready.wait())
    async with asyncio.timeout(20):
        done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # raises the worker's error
    return Member(worker, store, stop, task)


@asynccontextmanager
async def swarm(settings: Settings, logs: MongoLogStore, count: int, *,
                skews: Sequence[int] = (), labels: Sequence[Mapping[str, str]] = ()
                ) -> AsyncIterator[list[Member]]:
    members = []
    try:
        for i in range(count):
            members.append(await start_member(
                settings, logs, f"w{i}", skew_ms=skews[i] if i < len(skews) else 0,
                labels=labels[i] if i < len(labels) else None))
        yield members
    finally:
        await asyncio.gather(*(m.shutdown() for m in members), return_exceptions=True)


async def create_job(store: EtcdStore, logs: MongoLogStore, settings: Settings,
                     **fields: Any) -> Job:
    """Create a job the way the API does (with its fencing token)."""
    job = Job.from_dict(fields)
    await JobService(store, logs, Keyspace(settings.key_prefix)).create(job, actor="tests")
    return job


async def pause_job(store: EtcdStore, logs: MongoLogStore, settings: Settings,
                    name: str) -> None:
    service = JobService(store, logs, Keyspace(settings.key_prefix))
    await service.set_enabled(name, False, actor="tests")


async def pause_and_settle(store: EtcdStore, logs: MongoLogStore, settings: Settings,
                           name: str) -> None:
    """Pause the job and wait until none of its runs is still running."""
    await pause_job(store, logs, settings, name)
    await wait_for_count(logs.runs, {"job": name, "status": "running"},
                         lambda n: n == 0, timeout=20)


async def runs_of(logs: MongoLogStore, job: str) -> list[dict[str, Any]]:
    return await logs.runs.find({"job": job}).sort("tick", 1).to_list(None)


class Witness:
    """A file that every execution of a job appends one line to: the job's own
    account of how often each attempt ran.

    Run records are keyed by ``<job>@<tick>#<attempt>``: two executions of one
    tick would be merged into one document, and no count of documents could
    show it. This file can.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def command(self, then: str = "true") -> str:
        """A shell command that signs the file, then runs ``then``."""
        target = shlex.quote(str(self.path))
        return f'echo "$CRONSWARM_RUN_ID#$CRONSWARM_ATTEMPT $CRONSWARM_WORKER" >> {target}; {then}'

    def executions(self) -> dict[str, list[str]]:
        """Record id -> the workers that executed it, in order."""
        out: dict[str, list[str]] = {}
        for line in self.path.read_text().splitlines():
            record_id, worker = line.split(" ")
            out.setdefault(record_id, []).append(worker)
        return out

    def assert_each_ran_once(self, docs: list[dict[str, Any]]) -> None:
        """Every record that started a process ran exactly once, and nothing
        ran without a record."""
        runs = self.executions()
        twice = {r: w for r, w in runs.items() if len(w) > 1}
        assert not twice, f"executed more than once: {twice}"
        started = {d["_id"] for d in docs if d["status"] != "skipped"}
        assert set(runs) == started, (
            f"executed without a record: {sorted(set(runs) - started)}; "
            f"recorded without executing: {sorted(started - set(runs))}")


def assert_once_per_tick(docs: list[dict[str, Any]]) -> Counter[Any]:
    per_tick = Counter((d["tick"], d["attempt"]) for d in docs)
    duplicated = [t for t, n in per_tick.items() if n > 1]
    assert not duplicated, f"ticks recorded more than once: {duplicated}"
    return per_tick


def assert_every_second_once(docs: list[dict[str, Any]]) -> list[int]:
    """An every-second job's records: no tick twice, none without a record
    (a skipped record stands for its range). Returns the seconds covered."""
    assert_once_per_tick(docs)
    ticks = covered_seconds(docs)
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), "a tick has no record"
    return ticks


def covered_seconds(docs: list[dict[str, Any]]) -> list[int]:
    """The seconds an every-second job's records account for: a skipped record
    stands for its whole range of missed ticks (``tick`` to ``skipped_until``)."""
    covered: list[int] = []
    for d in docs:
        first = int(d["tick"].timestamp())
        until = (d.get("extra") or {}).get("skipped_until")
        last = first if until is None else until // 1000
        covered.extend(range(first, last + 1))
    return sorted(covered)


def seconds(docs: list[dict[str, Any]], **match: Any) -> list[int]:
    return sorted(int(d["tick"].timestamp()) for d in docs
                  if all(d.get(k) == v for k, v in match.items()))
