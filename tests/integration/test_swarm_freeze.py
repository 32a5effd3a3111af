"""A worker frozen (SIGSTOP) past its lease while it runs a long ``forbid`` job
with ``retry.any_worker`` (real worker processes, a real signal).

On SIGCONT the worker fences itself before anything else: it stops the run it
no longer owns (recorded ``killed``, "lease lost"), never writes that run's keys
back and never deletes the keys of the worker that took the run over. The
elected master records the attempt ``lost`` once, after the lease is gone plus
a margin, and the next attempt runs exactly once.

Two wake-ups: as soon as the lease is seen expired (before the master's margin
ends, so the next attempt starts only after the first one was stopped: no two
executions overlap), and after the next attempt has started elsewhere (the one
window that remains, see README: both run for a moment, but nothing runs twice).
"""

import asyncio
import contextlib
import json
import os
import shlex
import signal
from collections import Counter
from pathlib import Path

import psutil
import pytest

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore, wait_deleted
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService
from cronswarm.master._http import LEADER
from tests import procs
from tests.apiclient import running_master
from tests.helpers import wait_for_count
from tests.integration.test_swarm_kill9 import job_processes
from tests.swarm import create_job
from tests.workerkit import Gate, wait_final


class Timeline:
    """Every execution of the job appends ``start <record> <worker>`` when it
    begins and ``end <record> <worker>`` when it ends (even when stopped with
    SIGTERM), to a file and to a FIFO the test follows: the job's own account
    of which executions overlapped."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "timeline"
        self.path.touch()
        self.fifo = directory / "timeline.fifo"
        os.mkfifo(self.fifo)
        # Held open read-write: a job's write never blocks, the test never blocks.
        self._fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        self._buffer = b""
        self.lines: list[str] = []

    def command(self, first: str, later: str) -> str:
        """A shell command that signs start and end, running ``first`` at attempt 1
        and ``later`` at the others."""
        out, fifo = shlex.quote(str(self.path)), shlex.quote(str(self.fifo))
        me = "$CRONSWARM_RUN_ID#$CRONSWARM_ATTEMPT $CRONSWARM_WORKER"
        # Shell builtins only: no process of the note itself that a stop could kill.
        note = f'note() {{ echo "$1 {me}" >> {out}; echo "$1 {me}" > {fifo}; }}'
        # The handler ignores further TERMs: a stop signals the group and each process.
        return (f"""{note}; note start; trap 'trap "" TERM; note end; exit 143' TERM; """
                f'if [ "$CRONSWARM_ATTEMPT" = 1 ]; then {first} & wait $!; '
                f"else {later} & wait $!; fi; trap - TERM; note end")

    async def wait_for(self, event: str, record: str, timeout: float = 30) -> str:
        """Wait for the line of ``event`` of ``record``; returns its worker."""
        loop = asyncio.get_running_loop()
        while True:
            for line in self.lines:
                ev, rec, worker = line.split(" ")
                if (ev, rec) == (event, record):
                    return worker
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._fd, lambda f=readable: f.done() or f.set_result(None))
            try:
                async with asyncio.timeout(timeout):
                    await readable
            except TimeoutError:
                raise AssertionError(f"no {event} of {record} within {timeout}s: "
                                     f"{self.lines}") from None
            finally:
                loop.remove_reader(self._fd)
            with contextlib.suppress(BlockingIOError):
                self._buffer += os.read(self._fd, 1 << 16)
            *complete, self._buffer = self._buffer.split(b"\n")
            self.lines.extend(c.decode() for c in complete)

    def events(self) -> list[tuple[str, str, str]]:
        return [(ev, rec, w) for ev, rec, w in
                (line.split(" ") for line in self.path.read_text().splitlines())]

    def assert_no_overlap(self) -> None:
        current: str | None = None
        for ev, rec, _ in self.events():
            if ev == "start":
                assert current is None, f"{rec} started while {current} ran: {self.events()}"
                current = rec
            else:
                assert current == rec, self.events()
                current = None

    def assert_each_started_once(self) -> None:
        starts = Counter(rec for ev, rec, _ in self.events() if ev == "start")
        twice = [rec for rec, n in starts.items() if n > 1]
        assert not twice, f"executed more than once: {twice}: {self.events()}"
        ends = Counter(rec for ev, rec, _ in self.events() if ev == "end")
        assert ends == starts, self.events()

    def close(self) -> None:
        os.close(self._fd)


def attempt_processes(job: str, attempt: int) -> list[psutil.Process]:
    found = []
    for proc in job_processes(job):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("CRONSWARM_ATTEMPT") == str(attempt):
                found.append(proc)
    return found


@pytest.mark.parametrize("wake", ["when the lease expired", "after the retry started"])
async def test_a_worker_frozen_past_its_lease_fences_itself_on_waking(
    wake: str, settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    admin_token: str, tmp_path: Path,
) -> None:
    timeline = Timeline(tmp_path)
    gate = Gate(tmp_path)  # holds attempt 2 until the test has seen what it needs
    workers = {wid: await procs.start("worker", settings, CRONSWARM_WORKER_ID=wid)
               for wid in ("z1", "z2")}
    frozen: procs.Proc | None = None
    try:
        async with running_master(settings, admin_token) as api:
            for proc in workers.values():
                await proc.wait_for_line("ready with")
            await create_job(store, logs, settings, name="long", schedule="0 0 1 1 *",
                             command=timeline.command("sleep 60", gate.wait_command),
                             overlap="forbid",
                             retry={"attempts": 3, "any_worker": True, "delay": 0.2,
                                    "jitter": 0})
            rid = await JobService(store, logs, keys).run_now("long", actor="tests")
            first, second = f"{rid}#1", f"{rid}#2"
            victim = await timeline.wait_for("start", first)
            [survivor] = [w for w in workers if w != victim]
            frozen = workers[victim]
            frozen.proc.send_signal(signal.SIGSTOP)
            # Frozen longer than its lease: the lease expires with the run's keys.
            async with asyncio.timeout(30):
                await wait_deleted(store, keys.running("long", rid))
            taker = survivor
            if wake == "after the retry started":
                assert await timeline.wait_for("start", second) == survivor
            frozen.proc.send_signal(signal.SIGCONT)
            frozen = None
            # On waking it stops the run it no longer owns, at once.
            assert await timeline.wait_for("end", first, timeout=15) == victim
            # Its record (killed) overrides the master's verdict (lost), if first.
            await wait_for_count(logs.runs, {"_id": first, "status": "killed"},
                                 lambda n: n == 1, timeout=30)
            doc = await logs.runs.find_one({"_id": first})
            assert doc is not None
            assert "lease lost" in doc["error"], doc
            assert not attempt_processes("long", 1)
            if wake == "when the lease expired":
                # Either worker may take it: the woken one has a new lease by then.
                taker = await timeline.wait_for("start", second)
            # The run now belongs to the attempt's taker: its key stays as it wrote it.
            kv = await store.get(keys.running("long", rid))
            assert kv is not None
            assert json.loads(kv.value)["worker"] == taker
            gate.release()
            final = await wait_final(logs, second, timeout=30)
            assert final["status"] == "succeeded", final
            async with asyncio.timeout(30):
                await wait_deleted(store, keys.running("long", rid))
            assert api.app is not None
            leader = api.app[LEADER]
            assert leader.runs_lost == 1  # the first attempt, once
            assert leader.retries_requested == 1
            docs = await logs.runs.find({"job": "long"}).sort("attempt", 1).to_list(None)
    finally:
        if frozen is not None:
            frozen.proc.send_signal(signal.SIGCONT)
        await asyncio.gather(*(p.stop() for p in workers.values()))
        gate.close()
        timeline.close()
        for orphan in job_processes("long"):
            with contextlib.suppress(psutil.Error):
                orphan.kill()
    assert [(d["attempt"], d["status"]) for d in docs] == [(1, "killed"), (2, "succeeded")]
    timeline.assert_each_started_once()
    if wake == "when the lease expired":
        timeline.assert_no_overlap()


async def test_a_worker_frozen_past_its_fence_but_not_its_lease_runs_the_next_attempt(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    admin_token: str, tmp_path: Path,
) -> None:
    """A stall long enough to fence the worker while its lease lives on (an
    overloaded host, a short freeze): the fence stops the attempt, the lease
    never expires, so the master never judges the run lost; the worker itself
    goes on with the next attempt. Before, that attempt never ran."""
    timeline = Timeline(tmp_path)
    workers = {wid: await procs.start("worker", settings, CRONSWARM_WORKER_ID=wid)
               for wid in ("y1", "y2")}
    frozen: procs.Proc | None = None
    keeper: asyncio.Task[None] | None = None
    try:
        async with running_master(settings, admin_token) as api:
            for proc in workers.values():
                await proc.wait_for_line("ready with")
            await create_job(store, logs, settings, name="long", schedule="0 0 1 1 *",
                             command=timeline.command("sleep 60", "true"), overlap="forbid",
                             retry={"attempts": 2, "any_worker": True, "delay": 0.2,
                                    "jitter": 0})
            rid = await JobService(store, logs, keys).run_now("long", actor="tests")
            first, second = f"{rid}#1", f"{rid}#2"
            victim = await timeline.wait_for("start", first)
            registration = await store.get(keys.worker(victim))
            assert registration is not None and registration.lease
            lease = registration.lease

            async def keep_alive() -> None:
                while True:  # the lease outlives the freeze: refreshed from here
                    await store.keepalive(lease)
                    await asyncio.sleep(settings.lease_ttl / 4)  # refresh timer

            keeper = asyncio.create_task(keep_alive())
            frozen = workers[victim]
            frozen.proc.send_signal(signal.SIGSTOP)
            # The fault itself: frozen past the fence instant (2/3 of the TTL
            # after its last refresh), which a whole TTL is.
            await asyncio.sleep(settings.lease_ttl + 0.5)
            frozen.proc.send_signal(signal.SIGCONT)
            frozen = None
            assert await timeline.wait_for("end", first, timeout=15) == victim
            doc = await wait_final(logs, first, timeout=30)
            assert doc["status"] == "killed" and "lease lost" in doc["error"], doc
            await timeline.wait_for("start", second, timeout=30)
            final = await wait_final(logs, second, timeout=30)
            assert final["status"] == "succeeded", final
            keeper.cancel()
            # The lease never expired: the worker is registered on it still,
            # and the master had nothing to judge.
            again = await store.get(keys.worker(victim))
            assert again is not None and again.lease == lease
            assert api.app is not None
            assert api.app[LEADER].runs_lost == 0
            docs = await logs.runs.find({"job": "long"}).sort("attempt", 1).to_list(None)
    finally:
        if keeper is not None:
            keeper.cancel()
        if frozen is not None:
            frozen.proc.send_signal(signal.SIGCONT)
        await asyncio.gather(*(p.stop() for p in workers.values()))
        timeline.close()
        for orphan in job_processes("long"):
            with contextlib.suppress(psutil.Error):
                orphan.kill()
    assert [(d["attempt"], d["status"]) for d in docs] == [(1, "killed"), (2, "succeeded")]
    timeline.assert_each_started_once()
    timeline.assert_no_overlap()
