"""A guardian process: a worker's jobs die with it, however it dies.

A worker stops its runs' processes when it stops, but a worker killed with
SIGKILL (or by the OOM killer, or crashing) stops nothing. So each worker
starts a guardian: a separate, small process holding the read end of a pipe
from the worker. The worker writes to it the tag of each run before the run
starts, its process group once it has started, and its end once every
process of it is gone. A run made ready before its instant (``_gate``) is
told with its group alone: until its gate opens its process runs nothing,
and it exits at end of file if the worker dies first. The kernel closes the
pipe when the worker dies, by whatever means: the guardian then SIGKILLs the
groups and every process that carries a live run's tag (or descends from
one), and exits. A worker that
closes the pipe after its runs ended leaves it nothing to do.

The guardian is a fresh interpreter running ``_guardian_main`` (``python
-I``): it imports nothing of gRPC, and no Python code runs between fork and
exec in the worker, whose gRPC threads make that unsafe. It
lives in a session of its own and ignores SIGINT, SIGHUP and SIGTERM, so that
what stops the worker's terminal or service does not stop it first; it ends
when the pipe does. A guardian that dies anyway is started again by the
worker (``Guardian.supervise``), which hands the new one its live runs.

Protocol, lines (whole ones in each write; the worker is the only writer):
``tag <tag>``, ``group <tag> <pgid>`` (also the first line of a gated run),
``end <tag>``. A ``tag`` line is written at once; a gated run's ``group`` and
every ``end`` may wait for the next write (at the latest ``HOLD_S``, and
before any gate opens), so the runs of one tick cost a write or two, not
three each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from ._proctree import TAG_VAR, wait_exit

log = logging.getLogger(__name__)

_MAIN = Path(__file__).with_name("_guardian_main.py")
_RESTART_PAUSE_S = 1.0  # between starts of a guardian that dies at once
_EXIT_WAIT_S = 10.0  # for the guardian to exit once the pipe is closed
HOLD_S = 0.5  # longest a line held back waits (see Guardian.release)


class Guardian:
    """The worker's handle on its guardian process: tells it about runs."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._runs: dict[str, int | None] = {}  # live runs, for a restarted guardian
        self.starts = 0
        self.restarted = asyncio.Event()  # set once a guardian that died was replaced
        self._held: list[str] = []  # lines that may wait (see group, release)
        self._flush_timer: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def live_pid(self) -> int | None:
        """The pid of the guardian while it is not reaped (after that, the
        pid may be another process's)."""
        proc = self._proc
        return None if proc is None or proc.returncode is not None else proc.pid

    def start(self) -> None:
        """Start the guardian process and tell it about the live runs."""
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(_MAIN), TAG_VAR], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        self._held.clear()  # what they said is in _runs, told here
        self._write("".join(f"tag {tag}\n" if pgid is None else f"group {tag} {pgid}\n"
                            for tag, pgid in self._runs.items()))

    def watch(self, tag: str) -> None:
        """A run with ``tag`` is about to start."""
        self._runs[tag] = None
        self._send(f"tag {tag}\n")

    def group(self, tag: str, pgid: int, *, hold: bool = False) -> None:
        """The run with ``tag`` started, in process group ``pgid``. ``hold``:
        it runs nothing until ``flush`` (a gated run, whose gate opens after
        it), so the line may wait for the others made ready meanwhile."""
        self._runs[tag] = pgid
        line = f"group {tag} {pgid}\n"
        if hold:
            self._hold(line)
        else:
            self._send(line)

    def release(self, tag: str) -> None:
        """Every process of the run with ``tag`` is gone.

        Told with the next line written, or ``HOLD_S`` later: the ends of a
        tick's runs go in one write. Until then a guardian whose worker died
        would still kill the run's group, which has no process left, and
        whose id no new group is likely to take within the moment.
        """
        if self._runs.pop(tag, 0) != 0:
            self._hold(f"end {tag}\n")

    def flush(self) -> None:
        """Write the lines held back now (before a gated run's gate opens)."""
        if self._held:
            self._send("")

    def _hold(self, line: str) -> None:
        self._held.append(line)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(HOLD_S, self.flush)

    def _send(self, line: str) -> None:
        """``line`` now, after the lines held back."""
        data, self._held = "".join(self._held) + line, []
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._write(data)

    def _write(self, data: str) -> None:
        if not data or self._proc is None or self._proc.stdin is None:
            return
        try:
            view = memoryview(data.encode())
            while view:
                view = view[os.write(self._proc.stdin.fileno(), view):]
        except OSError as exc:  # it died: supervise() starts another, told of every run
            log.debug("guardian %d not told %r: %s", self._proc.pid, data, exc)

    async def supervise(self) -> None:
        """Start the guardian again whenever it exits (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            proc = self._proc
            assert proc is not None
            started = loop.time()
            code = await wait_exit(proc)
            log.error("guardian %d exited with %s: starting another (the runs of a worker "
                      "killed meanwhile would have outlived it)", proc.pid, code)
            if proc.stdin is not None:
                proc.stdin.close()
            if loop.time() - started < _RESTART_PAUSE_S:
                await asyncio.sleep(_RESTART_PAUSE_S)  # do not spin on one that cannot start
            self.start()
            self.restarted.set()

    async def close(self) -> None:
        """Close the pipe; the guardian exits (after killing the runs still going)."""
        self.flush()  # the ends held back: the runs are over
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(wait_exit(proc), _EXIT_WAIT_S)
        except TimeoutError:
            log.error("guardian %d still running %gs after its pipe closed: killing it",
                      proc.pid, _EXIT_WAIT_S)
            proc.kill()
            await wait_exit(proc)


@contextlib.asynccontextmanager
async def guardian_running() -> AsyncIterator[Guardian]:
    """A started guardian, restarted if it dies, closed on exit."""
    guardian = Guardian()
    guardian.start()
    supervisor = asyncio.create_task(guardian.supervise(), name="guardian")
    try:
        yield guardian
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        await guardian.close()


