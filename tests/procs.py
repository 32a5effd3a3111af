"""Real cronswarm processes (``python -m cronswarm ...``) for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from cronswarm.common import Settings
from cronswarm.devservices import free_port

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE = 30  # normal start-up takes about 2 s


# A job that forks a tree of sleeping processes: the shell, a child, a
# grandchild under another shell, a grandchild that left the session with
# setsid and was orphaned (its parent exits at once), and an orphaned session
# leader ignoring SIGTERM with its own child (which inherits that). Every
# process's pid is printed as "pid N", then READY.
PROCESS_TREE = r"""
echo "pid $$"
sleep 1000 & echo "pid $!"
sh -c 'sleep 1000 & echo "pid $!"; wait' & echo "pid $!"
(setsid sleep 1000 & echo "pid $!")
(setsid sh -c 'trap "" TERM; sleep 1000 & echo "pid $!"; wait' & echo "pid $!")
echo READY
wait
"""


class Proc:
    """A child process whose stderr (or ``stream``) is read line by line (for
    readiness lines)."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str,
                 stream: asyncio.StreamReader | None = None) -> None:
        self.proc = proc
        self.name = name
        self._stream = stream or proc.stderr
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._stream is not None
        while line := await self._stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())
            self._new_line.set()
            self._new_line = asyncio.Event()
        self._new_line.set()

    async def wait_for_line(self, text: str, timeout: float = 30) -> str:
        """Wait until a line containing ``text`` is printed (or fail with the output)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for line in self.lines:
                        if text in line:
                            return line
                    if self._reader.done():
                        raise AssertionError(f"{self.name} exited:\n" + "\n".join(self.lines))
                    await self._new_line.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name} never printed {text!r}:\n"
                                 + "\n".join(self.lines[-30:])) from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await self._reader
        return code


async def start(command: str, settings: Settings, **env: str) -> Proc:
    if command == "master":
        env.setdefault("CRONSWARM_MASTER_ID", f"master-{uuid.uuid4().hex[:8]}")
    child_env = {**os.environ, **settings.env(), **env,
                 "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronswarm", command, cwd=ROOT, env=child_env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    ident = env.get("CRONSWARM_WORKER_ID") or env.get("CRONSWARM_MASTER_ID", "")
    return Proc(proc, f"{command}:{ident}")


async def start_and_wait(command: str, settings: Settings) -> tuple[int | None, Proc]:
    """Start ``command``; its exit code if it ends within the deadline, else None
    once it is ready (then stopped)."""
    env = {"CRONSWARM_MASTER_PORT": str(free_port())} if command == "master" else {}
    proc = await start(command, settings, **env)
    ready = "ready with" if command == "worker" else "master listening"
    started = time.monotonic()
    try:
        try:
            await proc.wait_for_line(ready, timeout=START_DEADLINE)
            code = None
        except AssertionError:  # it ended (or hung: then the wait below fails)
            async with asyncio.timeout(START_DEADLINE):
                code = await proc.proc.wait()
    finally:
        await proc.stop()
    assert time.monotonic() - started < START_DEADLINE
    return code, proc


def the_error(proc: Proc) -> str:
    errors = [line for line in proc.lines if line.startswith("cronswarm: error: ")]
    assert len(errors) == 1, proc.lines
    assert not [line for line in proc.lines if "Traceback" in line], proc.lines
    return errors[0].removeprefix("cronswarm: error: ")
