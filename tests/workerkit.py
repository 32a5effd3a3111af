"""In-process workers and the small tools their integration tests share.

Workers here are real (real etcd, real MongoDB-protocol server, real child
processes); only the process boundary is missing, so tests can look at a
worker's slots and output feeds and can measure this process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import psutil
from aiohttp import ClientResponse

from cronswarm.common import Job, Keyspace, RunStatus, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService
from cronswarm.worker import LogWriter, Worker
from tests.helpers import wait_for_count

NEVER = "0 0 1 1 *"  # a schedule that will not fire during a test: runs come from run-now


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, store: EtcdStore, logs: MongoLogStore, *,
                         worker_id: str | None = None, **overrides: Any
                         ) -> AsyncIterator[Worker]:
    """A started worker (ready: job table loaded); stopped gracefully on exit."""
    own = settings.with_overrides(**overrides)
    own = own.with_overrides(spool_dir=f"{own.spool_dir}/{worker_id or own.worker_id}")
    worker = Worker(own, store, LogWriter.open(logs, own), worker_id=worker_id)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    ready = asyncio.create_task(worker.ready.wait())
    async with asyncio.timeout(30):
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped it
        raise AssertionError("worker stopped before it was ready")
    try:
        yield worker
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await task


async def synced(*workers: Worker, timeout: float = 30) -> None:
    """Until every worker has measured its clock against its peers (a worker
    that has not yet claims nothing: no tick, no retry)."""
    async with asyncio.timeout(timeout):
        for worker in workers:
            await worker.clock_sync.synced.wait()


def job_service(store: EtcdStore, logs: MongoLogStore, keys: Keyspace) -> JobService:
    return JobService(store, logs, keys)


async def create_job(jobs: JobService, **fields: Any) -> Job:
    fields.setdefault("schedule", NEVER)
    job = Job.from_dict(fields)
    await jobs.create(job, actor="tests")
    return job


async def wait_final(logs: MongoLogStore, record_id: str, timeout: float = 60) -> dict[str, Any]:
    """The record once it has a final status (watched on a change stream)."""
    final = [s.value for s in RunStatus if s.final]
    await wait_for_count(logs.runs, {"_id": record_id, "status": {"$in": final}},
                         lambda n: n == 1, timeout=timeout)
    doc = await logs.runs.find_one({"_id": record_id})
    assert doc is not None
    return doc


def ms(value: Any) -> int:
    """A stored time (datetime) as epoch ms."""
    return int(value.timestamp() * 1000)


class Gate:
    """A FIFO a job blocks on with ``read _ < path``; ``release()`` lets one reader on.

    The test holds the FIFO open read-write, so jobs open it at once and the
    test never blocks on it.
    """

    def __init__(self, directory: Path, name: str = "gate") -> None:
        self.path = directory / name
        os.mkfifo(self.path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    @property
    def wait_command(self) -> str:
        return f"read _ < {self.path}"

    def release(self, readers: int = 1) -> None:
        os.write(self._fd, b"go\n" * readers)

    def close(self) -> None:
        os.close(self._fd)


async def wait_output(worker: Worker, record_id: str,
                      until: bytes | Callable[[bytes], bool], timeout: float = 30) -> bytes:
    """Wait until the attempt's live output contains ``until`` (or ``until(output)``
    holds); returns the output so far (head and tail)."""
    done = until if callable(until) else (lambda out: until in out)
    async with asyncio.timeout(timeout):
        feed = await worker.feeds.wait_feed(record_id)
        seen = asyncio.Event()

        def check(_: bytes = b"") -> None:
            if done(feed.output.head + feed.output.tail):
                seen.set()

        unsubscribe = feed.output.subscribe(check)
        try:
            check()
            await seen.wait()
        finally:
            unsubscribe()
        return feed.output.head + feed.output.tail


async def wait_exited(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait (pidfd: no polling) until each pid has exited; returns those still running."""
    loop = asyncio.get_running_loop()
    futures: dict[int, asyncio.Future[None]] = {}
    fds = []
    for pid in set(pids):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        fds.append(fd)
        future: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, lambda f=future: f.done() or f.set_result(None))
        futures[pid] = future
    try:
        if futures:
            await asyncio.wait(futures.values(), timeout=timeout)
        return {pid for pid, f in futures.items() if not f.done()}
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)


def alive(pids: Iterable[int]) -> set[int]:
    """The pids that are running processes (zombies are dead: they only wait for reaping)."""
    out = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
        except psutil.NoSuchProcess:
            continue
    return out


class SseReader:
    """Reads a server-sent event stream one event at a time."""

    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 30) -> tuple[str, dict[str, Any]]:
        """The next (event, data); comments are skipped."""
        event, data = "message", ""
        async with asyncio.timeout(timeout):
            while line := await self.resp.content.readline():
                text = line.decode().rstrip("\n")
                if text.startswith("event: "):
                    event = text[7:]
                elif text.startswith("data: "):
                    data += text[6:]
                elif text == "" and data:
                    return event, json.loads(data)
        raise AssertionError("the event stream ended")

    async def until(self, event: str, timeout: float = 30) -> list[tuple[str, dict[str, Any]]]:
        """Every event up to and including the first ``event``."""
        out = []
        async with asyncio.timeout(timeout):
            while True:
                out.append(await self.next())
                if out[-1][0] == event:
                    return out
