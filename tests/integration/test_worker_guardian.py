"""A real ``cronswarm worker`` process: its jobs' processes die with it, however
it dies (kill -9 included), and it reaps the orphans it adopts."""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.worker._procfs import children_of, read_stat
from tests import procs
from tests.workerkit import create_job, job_service, wait_exited, wait_final

# procs.PROCESS_TREE, its pids written to the FIFO named by $1.
TREE = 'exec > "$1"\n' + procs.PROCESS_TREE


@contextlib.asynccontextmanager
async def fifo_lines(path: Path) -> AsyncIterator[asyncio.StreamReader]:
    """A FIFO at ``path`` read line by line (held open for writing here too,
    so it does not end between writers)."""
    os.mkfifo(path)
    reader_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    keep_open = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    stream = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(reader_fd, "rb"))
    try:
        yield stream
    finally:
        transport.close()
        os.close(keep_open)


async def tree_pids(lines: asyncio.StreamReader) -> set[int]:
    pids: set[int] = set()
    ready = False
    async with asyncio.timeout(30):
        while not ready or len(pids) < 7:  # the last pids may come after READY
            line = (await lines.readline()).decode().split()
            if line == ["READY"]:
                ready = True
            elif line[:1] == ["pid"]:
                pids.add(int(line[1]))
    return pids


def guardian_of(worker: procs.Proc) -> int:
    [guardian] = [child.pid for child in psutil.Process(worker.pid).children()
                  if any("_guardian_main" in arg for arg in child.cmdline())]
    return guardian


async def test_kill_9_of_the_worker_kills_its_jobs_whole_tree_within_a_second(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path,
) -> None:
    fifo = tmp_path / "pids"
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="tree", command=f"set -- {fifo}\n{TREE}", kill_grace=10)
    worker = await procs.start("worker", settings, CRONSWARM_WORKER_ID="guarded")
    pids: set[int] = set()
    try:
        await worker.wait_for_line("ready with")
        guardian = guardian_of(worker)
        async with fifo_lines(fifo) as lines:
            await jobs.run_now("tree", actor="tests")
            pids = await tree_pids(lines)
        assert await wait_exited(pids, 0) == pids  # all running
        exited = asyncio.create_task(wait_exited(pids | {guardian}, timeout=30))
        killed = time.monotonic()
        worker.proc.send_signal(signal.SIGKILL)
        assert await exited == set()
        latency = time.monotonic() - killed
        assert await worker.proc.wait() == -signal.SIGKILL
    finally:
        await worker.stop()
        for pid in pids:  # only if the test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert latency < 1.0, f"the job outlived its worker by {latency:.3f}s"
    print(f"job tree gone {latency * 1000:.0f} ms after kill -9 of its worker")


async def test_the_worker_reaps_orphans_nobody_saw_alive(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path,
) -> None:
    # Each run leaves an orphan in a session of its own that has exited by the
    # time the run ends (the pipe to cat closes when it exits): re-parented to
    # the worker, it is the worker's to reap, though no search saw it alive.
    orphans = tmp_path / "orphans"
    command = f"(setsid sh -c 'echo $$ >> {orphans}' &) | cat"
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="orphan", command=command)
    worker = await procs.start("worker", settings, CRONSWARM_WORKER_ID="reaper")
    try:
        await worker.wait_for_line("ready with")
        for _ in range(2):
            rid = await jobs.run_now("orphan", actor="tests")
            doc = await wait_final(logs, f"{rid}#1")
            assert doc["status"] == "succeeded"
        first = int(orphans.read_text().split()[0])
        # The first run's orphan was a zombie of the worker by the second
        # run's end at the latest: reaped then.
        zombies = {pid for pid in children_of(worker.pid)
                   if (stat := read_stat(pid)) is not None and stat.zombie}
        assert first not in zombies
        assert read_stat(first) is None or read_stat(first).ppid != worker.pid  # type: ignore[union-attr]
    finally:
        assert await worker.stop() == 0
