"""Running one attempt of a job: shell commands (and HTTP calls, see _http).

A shell job runs as ``<shell> -c <command>`` in a new session, hence its own
process group. Stopping it (kill request, timeout, worker shutdown) sends
SIGTERM to the whole group and to every descendant that left it, waits the
job's ``kill_grace``, then SIGKILLs whatever is left. When the main process
exits on its own, processes it left behind in its group are stopped the same
way: a run leaves no process behind.

The child gets a minimal environment (never the worker's own, which may hold
credentials): PATH, HOME, LANG, SHELL, USER, the job's ``env`` and the
``CRONSWARM_*`` variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import signal
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from ..common import Job, RunStatus
from ._output import BoundedOutput

log = logging.getLogger(__name__)

_READ_CHUNK = 65536
_LEFTOVER_DRAIN_S = 0.5  # output read after the main process exits, before cleanup
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class KillSwitch:
    """Asks a running attempt to stop; remembers who asked and why."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.by: str | None = None
        self.reason: str | None = None

    def pull(self, by: str, reason: str = "kill requested") -> None:
        if not self.requested.is_set():
            self.by, self.reason = by, reason
            self.requested.set()


@dataclass(slots=True)
class RunContext:
    """Everything an executor needs for one attempt."""

    job: Job
    run_id: str
    tick: int
    attempt: int
    worker: str
    kill: KillSwitch = field(default_factory=KillSwitch)
    output: BoundedOutput = field(default_factory=BoundedOutput)
    shell: str = "/bin/sh"
    allow_run_as: bool = True
    started: asyncio.Event = field(default_factory=asyncio.Event)
    pid: int | None = None

    def environment(self) -> dict[str, str]:
        return {
            "CRONSWARM_RUN_ID": self.run_id,
            "CRONSWARM_JOB": self.job.name,
            "CRONSWARM_TICK": str(self.tick),
            "CRONSWARM_ATTEMPT": str(self.attempt),
            "CRONSWARM_WORKER": self.worker,
        }


@dataclass(slots=True)
class ExecResult:
    status: RunStatus
    exit_code: int | None = None
    http_status: int | None = None
    error: str | None = None
    killed_by: str | None = None
    pid: int | None = None
    details: dict[str, object] = field(default_factory=dict)


class Executor(Protocol):
    async def execute(self, ctx: RunContext) -> ExecResult: ...


def _child_env(ctx: RunContext, user: pwd.struct_passwd | None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "SHELL": ctx.job.shell or ctx.shell,
    }
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    else:
        for key in ("HOME", "USER", "LOGNAME", "TZ"):
            if key in os.environ:
                env[key] = os.environ[key]
    env.update(ctx.job.env)
    env.update(ctx.environment())
    return env


def _resolve_user(ctx: RunContext) -> pwd.struct_passwd | None:
    if ctx.job.user is None:
        return None
    if not ctx.allow_run_as:
        raise PermissionError("this worker does not allow run-as users (CRONSWARM_ALLOW_RUN_AS)")
    if os.geteuid() != 0:
        raise PermissionError(f"running as {ctx.job.user!r} needs a worker running as root")
    try:
        return pwd.getpwnam(ctx.job.user)
    except KeyError:
        raise PermissionError(f"no such user {ctx.job.user!r} on this worker") from None


def signal_tree(pgid: int, pids: set[int], sig: int) -> None:
    """Send ``sig`` to a process group and to every listed pid (some may have left it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def tree_pids(root: int) -> set[int]:
    """``root`` and its live descendants."""
    try:
        proc = psutil.Process(root)
        return {root} | {c.pid for c in proc.children(recursive=True)}
    except psutil.Error:
        return set()


def group_pids(pgid: int) -> set[int]:
    """Live processes whose process group is ``pgid`` (orphans keep their group)."""
    out = set()
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                out.add(proc.pid)
    return out


async def stop_tree(pgid: int, known: set[int], grace: float) -> int:
    """SIGTERM the group and ``known`` pids, wait ``grace``, SIGKILL the rest.

    Returns how many processes needed the SIGKILL.
    """
    pids = known | group_pids(pgid)
    for pid in list(pids):
        pids |= tree_pids(pid)
    signal_tree(pgid, pids, signal.SIGTERM)
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    loop = asyncio.get_running_loop()
    _, alive = await loop.run_in_executor(None, lambda: psutil.wait_procs(procs, timeout=grace))
    alive = [p for p in alive if _is_live(p)]
    if alive or group_pids(pgid):
        signal_tree(pgid, {p.pid for p in alive}, signal.SIGKILL)
        await loop.run_in_executor(None, lambda: psutil.wait_procs(alive, timeout=5))
    return len(alive)


def _is_live(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ShellExecutor:
    """Runs shell jobs; see the module docstring."""

    async def execute(self, ctx: RunContext) -> ExecResult:
        job = ctx.job
        if job.command is None:
            return ExecResult(RunStatus.FAILED, error="not a shell job")
        try:
            user = _resolve_user(ctx)
        except PermissionError as exc:
            return ExecResult(RunStatus.FAILED, error=str(exc))
        shell = job.shell or ctx.shell
        try:
            proc = await asyncio.create_subprocess_exec(
                shell, "-c", job.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=job.cwd,
                env=_child_env(ctx, user),
                start_new_session=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=os.getgrouplist(user.pw_name, user.pw_gid) if user else None,
            )
        except OSError as exc:
            return ExecResult(RunStatus.FAILED, error=f"cannot start {shell!r}: {exc}")
        ctx.pid = proc.pid
        ctx.started.set()
        assert proc.stdout is not None
        reader = asyncio.create_task(_pump(proc.stdout, ctx.output))
        waiter = asyncio.create_task(proc.wait())
        killer = asyncio.create_task(ctx.kill.requested.wait())
        status: RunStatus | None = None
        error: str | None = None
        try:
            done, _ = await asyncio.wait(
                {waiter, killer}, timeout=job.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter not in done:
                known = tree_pids(proc.pid)
                if killer in done:
                    status = RunStatus.KILLED
                    error = f"killed: {ctx.kill.reason} (by {ctx.kill.by})"
                else:
                    status = RunStatus.TIMEOUT
                    error = f"timed out after {job.timeout:g}s"
                forced = await stop_tree(proc.pid, known, job.kill_grace)
                if forced:
                    error += f"; {forced} process(es) ignored SIGTERM and were SIGKILLed"
                await waiter
        finally:
            killer.cancel()
            if not waiter.done():  # cancelled from outside (worker shutdown)
                await stop_tree(proc.pid, tree_pids(proc.pid), job.kill_grace)
                await asyncio.shield(waiter)
        # The main process is gone; give its output a moment, then clean up
        # anything it left running in its group.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), _LEFTOVER_DRAIN_S)
        details: dict[str, object] = {}
        leftovers = group_pids(proc.pid)
        if leftovers:
            details["leftover_processes"] = len(leftovers)
            await stop_tree(proc.pid, leftovers, min(job.kill_grace, 2.0))
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        code = proc.returncode
        if status is None:
            if code == 0:
                status = RunStatus.SUCCEEDED
            else:
                status = RunStatus.FAILED
                error = (f"exited with code {code}" if code is not None and code > 0
                         else f"killed by signal {-(code or 0)}")
        return ExecResult(
            status, exit_code=code, error=error, pid=proc.pid, details=details,
            killed_by=ctx.kill.by if status is RunStatus.KILLED else None,
        )


async def _pump(stream: asyncio.StreamReader, sink: BoundedOutput) -> None:
    while chunk := await stream.read(_READ_CHUNK):
        sink.feed(chunk)

