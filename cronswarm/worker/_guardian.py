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

Protocol (one line per write, shorter than PIPE_BUF so never torn):
``tag <tag>``, ``group <tag> <pgid>`` (also the first line of a gated run),
``end <tag>``.
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


class Guardian:
    """The worker's handle on its guardian process: tells it about runs."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._runs: dict[str, int | None] = {}  # live runs, for a restarted guardian
        self.starts = 0
        self.restarted = asyncio.Event()  # set once a guardian that died was replaced

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
        for tag, pgid in self._runs.items():
            self._send(f"tag {tag}\n" if pgid is None else f"group {tag} {pgid}\n")

    def watch(self, tag: str) -> None:
        """A run with ``tag`` is about to start."""
        self._runs[tag] = None
        self._send(f"tag {tag}\n")

    def group(self, tag: str, pgid: int) -> None:
        """The run with ``tag`` started, in process group ``pgid``."""
        self._runs[tag] = pgid
        self._send(f"group {tag} {pgid}\n")

    def release(self, tag: str) -> None:
        """Every process of the run with ``tag`` is gone."""
        if self._runs.pop(tag, 0) != 0:
            self._send(f"end {tag}\n")

    def _send(self, line: str) -> None:
        if self._proc is None or self._proc.stdin is None:
            return
        try:
            os.write(self._proc.stdin.fileno(), line.encode())
        except OSError as exc:  # it died: supervise() starts another, told of every run
            log.debug("guardian %d not told %r: %s", self._proc.pid, line, exc)

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


