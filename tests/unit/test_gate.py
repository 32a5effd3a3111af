"""A shell run made ready before its instant: its process waits at the gate,
the command starts only once the gate opens, and a kill before then runs
nothing (real processes, no services)."""

import asyncio
import subprocess
from pathlib import Path

import pytest

from cronswarm.common import Job, RunStatus
from cronswarm.worker import Guardian, RunContext, ShellExecutor
from cronswarm.worker._gate import gated_argv
from cronswarm.worker._proctree import wait_exit, wait_gone


def context(command: str, gate: asyncio.Event, shell: str = "/bin/sh") -> RunContext:
    job = Job.from_dict({"name": "g", "schedule": "* * * * *", "command": command})
    return RunContext(job, "g@1", 1, 1, "w", shell=shell, gate=gate.wait)


async def spawned(ctx: RunContext) -> int:
    await asyncio.sleep(0)  # the run's task starts: its process exists before it first waits
    assert ctx.pid is not None
    return ctx.pid


async def blocked_reading_stdin(pid: int) -> None:
    """Until ``pid`` sleeps in read(0, ...) (x86-64 syscall 0 on fd 0)."""
    async with asyncio.timeout(10):
        while True:
            fields = Path(f"/proc/{pid}/syscall").read_text().split()  # noqa: ASYNC240 - /proc
            if fields[:2] == ["0", "0x0"]:
                return
            await asyncio.sleep(0.01)  # polled: /proc has nothing to wait on


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash", "/bin/rbash"])
async def test_the_command_starts_when_the_gate_opens_not_when_the_process_does(
        tmp_path: Path, shell: str) -> None:
    marker = tmp_path / "ran"
    gate = asyncio.Event()
    # As under `<shell> -c`: $0 the shell, no positional parameter, stdin empty
    # (rbash is not on the POSIX list: /bin/sh waits for it, then execs it).
    ctx = context(f'echo "$0 $# $1"; cat; touch {marker}', gate, shell)
    run = asyncio.create_task(ShellExecutor().execute(ctx))
    pid = await spawned(ctx)
    await blocked_reading_stdin(pid)  # the process is there, waiting at the gate
    assert not marker.exists() and not run.done() and not ctx.started.is_set()
    gate.set()
    result = await asyncio.wait_for(run, 10)
    assert result.status is RunStatus.SUCCEEDED and result.pid == pid  # the same process
    assert marker.exists() and ctx.started_ms is not None
    head, _ = ctx.output.text()
    assert head == f"{shell} 0 \n"  # and cat ended: stdin is /dev/null


async def test_a_kill_before_the_gate_opens_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    ctx = context(f"touch {marker}", asyncio.Event())  # never opens
    run = asyncio.create_task(ShellExecutor().execute(ctx))
    pid = await spawned(ctx)
    ctx.kill.pull("tests", "stop it")
    result = await asyncio.wait_for(run, 10)
    assert result.status is RunStatus.KILLED
    assert result.error == "killed before it started: stop it (by tests)"
    assert result.details == {"reason": "killed"} and result.killed_by == "tests"
    assert await wait_gone({pid}, 5) == set() and not marker.exists()
    assert ctx.started_ms is None  # the job never started


class RecordingGuardian(Guardian):
    """What the executor tells the guardian, write by write (no guardian
    process); ``started`` says whether the run had started at each write."""

    def __init__(self, ctx: RunContext | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.writes: list[tuple[list[list[str]], bool]] = []
        self.wrote = asyncio.Event()

    def _write(self, data: str) -> None:
        if data:
            started = self.ctx is not None and self.ctx.started.is_set()
            self.writes.append(([line.split() for line in data.splitlines()], started))
            self.wrote.set()

    @property
    def lines(self) -> list[list[str]]:
        return [line for lines, _ in self.writes for line in lines]


async def test_a_gated_run_is_told_to_the_guardian_with_its_group_before_its_gate_opens(
        ) -> None:
    # Until its gate opens the process runs nothing (and exits at end of file
    # if the worker dies), so no ``tag`` line is needed before it starts, and
    # its group waits until just before the gate opens; its end waits for the
    # next write (the ends of a tick's runs go together), HOLD_S at most.
    gate = asyncio.Event()
    ctx = context("true", gate)
    guardian = RecordingGuardian(ctx)
    run = asyncio.create_task(ShellExecutor(guardian).execute(ctx))
    pid = await spawned(ctx)
    await blocked_reading_stdin(pid)
    assert guardian.writes == []  # waiting at its gate: nothing told yet
    gate.set()
    result = await asyncio.wait_for(run, 10)
    assert result.status is RunStatus.SUCCEEDED
    [(lines, started)] = guardian.writes
    assert lines == [["group", lines[0][1], str(pid)]] and not started  # before the gate
    guardian.wrote.clear()
    await asyncio.wait_for(guardian.wrote.wait(), 5)  # the held end, on its timer
    assert guardian.lines[1:] == [["end", lines[0][1]]]


async def test_a_run_started_at_once_is_told_its_tag_first() -> None:
    guardian = RecordingGuardian()
    job = Job.from_dict({"name": "g", "schedule": "* * * * *", "command": "true"})
    result = await ShellExecutor(guardian).execute(RunContext(job, "g@2", 2, 1, "w"))
    tag = guardian.lines[0][1]
    assert guardian.lines == [["tag", tag], ["group", tag, str(result.pid)]]
    guardian.flush()  # what a later write (or the timer) takes along
    assert guardian.lines[2:] == [["end", tag]]


async def test_a_gated_process_whose_worker_is_gone_runs_nothing(tmp_path: Path) -> None:
    # The worker's end of the gate closes with the worker, however it dies.
    marker = tmp_path / "ran"
    proc = subprocess.Popen(  # noqa: ASYNC220 - as the executor starts it
        gated_argv("/bin/bash", f"touch {marker}"), stdin=subprocess.PIPE,
        start_new_session=True)
    await blocked_reading_stdin(proc.pid)
    assert proc.stdin is not None
    proc.stdin.close()
    assert await wait_exit(proc) == 0 and not marker.exists()
