"""Running one attempt of a job: shell commands (HTTP calls are in ``_http``).

A shell job runs as ``<shell> -c <command>`` in a new session, hence its own
process group, with stdout and stderr merged into the run's bounded output.
Stopping it sends SIGTERM to every process of the run (see ``_proctree``:
the group, descendants that left it, and orphans found by their tag), waits a
grace period, then SIGKILLs whatever is left:

* timeout: the job's ``kill_grace``; status ``timeout``;
* kill request (or worker shutdown): ``kill_grace`` but at most
  ``KILL_GRACE_CAP_S``, so a kill ends the run within a second whatever the
  job does with SIGTERM; status ``killed``, with who asked.

When the main process exits on its own, processes it left behind get
``LEFTOVER_WAIT_S`` to finish, then are stopped the same way: a run leaves no
process behind.

The executor makes its process a child subreaper: the orphans of its runs
are re-parented to it, so finding a run's processes walks its own process
tree, and it reaps those orphans once they exit. Given a ``Guardian``, it
tells it about each run, so the run's processes die with the worker even if
the worker is killed with SIGKILL.

The child gets a minimal environment (never the worker's own, which may hold
credentials): PATH, HOME, LANG, SHELL, USER, LOGNAME, TZ, the job's ``env``
and secret ``env`` (opened for the run), and the ``CRONSWARM_*`` variables
(run id, job, tick, attempt, worker, and the attempt's process tag). With
``user`` (worker running as root) the job runs as that user, with its
primary and supplementary groups and its home.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..common import NO_SECRETS, Job, OpenedSecrets, RunStatus
from ._gate import gated_argv, killed_before_start, open_gate
from ._guardian import Guardian
from ._output import BoundedOutput
from ._procfs import become_subreaper
from ._proctree import (
    TAG_VAR,
    RunMarks,
    process_start_time,
    reap_adopted,
    run_processes,
    stop_run_processes,
    wait_exit,
    wait_gone,
)

log = logging.getLogger(__name__)

_READ_CHUNK = 1 << 16  # bytes per read from the job's pipe
KILL_GRACE_CAP_S = 0.25  # longest SIGTERM grace of a kill request
LEFTOVER_WAIT_S = 0.5  # time processes left behind get to end on their own
LEFTOVER_GRACE_S = 2.0  # longest SIGTERM grace of processes left behind
_OUTPUT_EOF_S = 2.0  # wait for the pipe's end once every process is gone
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
    secrets: OpenedSecrets = NO_SECRETS  # opened for this attempt only
    # Returns at the instant the job may start: the attempt is made ready
    # before it (a shell run's process waits, see ``_gate``). None: at once.
    gate: Callable[[], Awaitable[None]] | None = None
    now_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    started_ms: int | None = None  # when the job started (by ``now_ms``)

    def mark_started(self) -> None:
        """The job itself starts now (its gate opened, or it had none)."""
        self.started_ms = self.now_ms()
        self.started.set()

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


def _child_env(ctx: RunContext, user: pwd.struct_passwd | None, tag: str) -> dict[str, str]:
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
    env.update(ctx.secrets.env)
    env.update(ctx.environment())
    env[TAG_VAR] = tag
    return env


# Run as another user: a fresh interpreter (no threads, no fork handlers) drops to
# the user's groups, gid and uid, then becomes the shell. Forking the worker
# itself with subprocess's user=/group= runs the fork handlers of the threaded
# libraries it holds (gRPC's crash the child now and then); without them the
# child is started with vfork, which runs none.
_RUN_AS = (
    "import os,sys\n"
    "uid,gid=int(sys.argv[1]),int(sys.argv[2])\n"
    "os.setgroups([int(g) for g in sys.argv[3].split(',') if g])\n"
    "os.setgid(gid)\n"
    "os.setuid(uid)\n"
    "try:\n"
    "    os.execv(sys.argv[4],sys.argv[4:])\n"
    "except OSError as e:\n"
    "    sys.stderr.write(f'cannot start {sys.argv[4]}: {e}\\n')\n"
    "    os._exit(127)\n"
)


def command_argv(shell: str, command: str, user: pwd.struct_passwd | None, *,
                 gated: bool = False) -> list[str]:
    """The argv that runs ``command`` in ``shell``, as ``user`` when given;
    ``gated``: once a line arrives on stdin (``_gate``)."""
    argv = gated_argv(shell, command) if gated else [shell, "-c", command]
    if user is None:
        return argv
    groups = ",".join(str(g) for g in os.getgrouplist(user.pw_name, user.pw_gid))
    return [sys.executable, "-I", "-S", "-c", _RUN_AS, str(user.pw_uid), str(user.pw_gid),
            groups, *argv]


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


class ShellExecutor:
    """Runs shell jobs; see the module docstring.

    ``reap_strays``: this process starts no child processes but the runs' and
    the guardian, so every other exited child is an orphan to reap (the
    worker process; not a test process that also starts servers).
    """

    def __init__(self, guardian: Guardian | None = None, *, reap_strays: bool = False) -> None:
        self.guardian = guardian
        self.reap_strays = reap_strays
        self._mains: set[int] = set()  # runs' main processes, reaped by wait_exit
        become_subreaper()

    async def execute(self, ctx: RunContext) -> ExecResult:
        job = ctx.job
        if job.command is None:
            return ExecResult(RunStatus.FAILED, error="not a shell job")
        try:
            user = _resolve_user(ctx)
        except PermissionError as exc:
            return ExecResult(RunStatus.FAILED, error=str(exc))
        shell = job.shell or ctx.shell
        tag = secrets.token_hex(12)
        if self.guardian is not None and ctx.gate is None:
            # Before the start: a kill -9 may come at any time. Not for a gated
            # run: its process runs nothing if the worker dies before the gate
            # opens (end of file), so the guardian hears of it with its group.
            self.guardian.watch(tag)
        try:
            return await self._execute(ctx, user, shell, tag)
        finally:
            if self.guardian is not None:
                self.guardian.release(tag)

    async def _execute(self, ctx: RunContext, user: pwd.struct_passwd | None, shell: str,
                       tag: str) -> ExecResult:
        job = ctx.job
        assert job.command is not None
        gated = ctx.gate is not None
        argv = command_argv(shell, job.command, user, gated=gated)
        env = _child_env(ctx, user, tag)

        try:
            # Started from the event loop's thread, not a pool thread: with
            # vfork the loop waits until the child has exec'd (a fraction of a
            # millisecond), and the runs of one tick all start before the loop
            # does anything else, instead of queueing for pool threads and the
            # GIL behind each other (bench_fire, 100 fires/s: p99 lag 372 ms in
            # threads, 196 ms here). Read and waited for separately: the pipe
            # may outlive the main process (see wait_exit). Unbuffered: only
            # the pipes' descriptors are used.
            proc = subprocess.Popen(  # noqa: ASYNC220 - vfork: returns once exec'd
                argv, bufsize=0, stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, cwd=job.cwd, env=env, start_new_session=True)
        except (OSError, subprocess.SubprocessError) as exc:
            return ExecResult(RunStatus.FAILED, error=f"cannot start {shell!r}: {exc}")
        self._mains.add(proc.pid)
        if self.guardian is not None:
            self.guardian.group(tag, proc.pid, hold=gated)  # told before the gate opens
        ctx.pid = proc.pid
        if not gated:
            ctx.mark_started()
        marks = RunMarks(proc.pid, tag, process_start_time(proc.pid))
        seen: set[int] = set()  # the run's processes, for reaping the orphans among them
        try:
            assert proc.stdout is not None
            stream = asyncio.StreamReader(limit=_READ_CHUNK)
            pipe, _ = await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(stream), proc.stdout)
            try:
                return await self._supervise(ctx, proc, marks, seen, stream)
            finally:
                pipe.close()
        finally:
            if proc.returncode is not None:
                self._mains.discard(proc.pid)
            reap_adopted(marks, seen, self._others(proc.pid), strays=self.reap_strays)

    def _others(self, main: int) -> set[int]:
        """This process's children that are not the run of ``main``: the main
        processes of its other runs and the guardian. Unreaped children all,
        so none of their pids is someone else's yet."""
        others = self._mains - {main}
        if self.guardian is not None and (pid := self.guardian.live_pid) is not None:
            others.add(pid)
        return others

    async def _supervise(self, ctx: RunContext, proc: subprocess.Popen[bytes], marks: RunMarks,
                         seen: set[int], stream: asyncio.StreamReader) -> ExecResult:
        """Read the output and wait for the end, the timeout or a kill request."""
        job = ctx.job
        reader = asyncio.create_task(_pump(stream, ctx.output))
        waiter = asyncio.create_task(wait_exit(proc))
        killer = asyncio.create_task(ctx.kill.requested.wait())
        status: RunStatus | None = None
        error: str | None = None
        details: dict[str, object] = {}
        try:
            before = None if self.guardian is None else self.guardian.flush
            if proc.stdin is not None and not await open_gate(ctx, proc.stdin, killer, before):
                # Killed before its instant: the waiting shell exits at end of file.
                status = RunStatus.KILLED
                error, details = killed_before_start(ctx.kill), {"reason": "killed"}
                await waiter  # then the wait below returns at once
            done, _ = await asyncio.wait(
                {waiter, killer}, timeout=job.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter not in done:
                if killer in done:
                    status = RunStatus.KILLED
                    error = f"killed: {ctx.kill.reason} (by {ctx.kill.by})"
                    grace = min(job.kill_grace, KILL_GRACE_CAP_S)
                else:
                    status = RunStatus.TIMEOUT
                    error = f"timed out after {job.timeout:g}s"
                    grace = job.kill_grace
                forced = await stop_run_processes(marks, {proc.pid}, grace, seen)
                if forced:
                    error += (f"; {forced} process(es) still running {grace:g}s after "
                              "SIGTERM were SIGKILLed")
                    details["sigkilled"] = forced
                await waiter
        finally:
            killer.cancel()
            if not waiter.done():  # cancelled from outside
                await asyncio.shield(stop_run_processes(
                    marks, {proc.pid}, min(job.kill_grace, KILL_GRACE_CAP_S), seen))
                await asyncio.shield(waiter)
        await _stop_leftovers(marks, job.kill_grace, details, seen,
                              lambda: self._others(proc.pid))
        await _finish_reading(reader)
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


async def _stop_leftovers(marks: RunMarks, kill_grace: float, details: dict[str, object],
                          seen: set[int], others: Callable[[], set[int]]) -> None:
    """The main process is gone: what it left running gets a moment, then is
    stopped. ``others``: the worker's children that are not the run's, asked
    at each search."""
    leftovers = await run_processes(marks, seen=seen, others=others())
    if not leftovers:
        return
    details["leftover_processes"] = len(leftovers)
    still = await wait_gone(leftovers, LEFTOVER_WAIT_S)
    if still or await run_processes(marks, seen=seen, others=others()):
        log.info("stopping %d process(es) left behind by group %d", len(still), marks.pgid)
        await stop_run_processes(marks, still, min(kill_grace, LEFTOVER_GRACE_S), seen)


async def _finish_reading(reader: asyncio.Task[None]) -> None:
    """Every writer is gone, so the pipe ends; bounded in case one escaped us."""
    if not reader.done():  # usually it has: no timer, no shield
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), _OUTPUT_EOF_S)
    if not reader.done():
        log.warning("output pipe still open after every process of the run ended")
        reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader


async def _pump(stream: asyncio.StreamReader, sink: BoundedOutput) -> None:
    while chunk := await stream.read(_READ_CHUNK):
        sink.feed(chunk)
