"""The guardian process, driven from this process: it kills the runs it was
told about when its pipe closes, and is started again when it dies."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys

from cronswarm.worker import Guardian, _guardian, guardian_running
from cronswarm.worker._proctree import TAG_VAR, wait_gone

# A shell that starts a child, a setsid'd orphan and a TERM-ignoring orphan
# in a session of its own (with its child), prints every pid, then waits.
TREE = r"""
echo "$$"
sleep 1000 & echo "$!"
(setsid sleep 1000 & echo "$!")
(setsid sh -c 'trap "" TERM; sleep 1000 & echo "$!"; wait' & echo "$!")
echo READY
wait
"""


def start_tree(tag: str) -> tuple[subprocess.Popen[bytes], set[int]]:
    proc = subprocess.Popen(
        ["sh", "-c", TREE], stdout=subprocess.PIPE, start_new_session=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), TAG_VAR: tag})
    assert proc.stdout is not None
    pids: set[int] = set()
    ready = False
    while not ready or len(pids) < 5:  # the last pid may come after READY
        line = proc.stdout.readline().strip()
        assert line, "the tree's output ended early"
        if line == b"READY":
            ready = True
        else:
            pids.add(int(line))
    return proc, pids


async def stop_tree(proc: subprocess.Popen[bytes], pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


async def test_closing_the_pipe_kills_the_live_runs_and_ends_the_guardian() -> None:
    tag = secrets.token_hex(8)
    guardian = Guardian()
    guardian.start()
    proc, pids = start_tree(tag)
    try:
        guardian.watch(tag)
        guardian.group(tag, proc.pid)
        pid = guardian.pid
        assert pid is not None
        # What the kernel does when the worker dies: the pipe closes.
        await guardian.close()
        assert await wait_gone(pids, 5) == set()
        assert await wait_gone({pid}, 5) == set()
    finally:
        await stop_tree(proc, pids)


async def test_runs_found_by_tag_alone_are_killed_too() -> None:
    # The worker may die between telling the tag and starting the run: the
    # tag is enough (the run's group was never told).
    tag = secrets.token_hex(8)
    guardian = Guardian()
    guardian.start()
    guardian.watch(tag)
    proc, pids = start_tree(tag)
    try:
        await guardian.close()
        assert await wait_gone(pids, 5) == set()
    finally:
        await stop_tree(proc, pids)


async def test_released_runs_are_left_alone() -> None:
    tag = secrets.token_hex(8)
    proc, pids = start_tree(tag)
    try:
        async with guardian_running() as guardian:
            guardian.watch(tag)
            guardian.group(tag, proc.pid)
            guardian.release(tag)
        assert await wait_gone(pids, 0.2) == pids  # still running after the guardian left
    finally:
        await stop_tree(proc, pids)


async def test_a_killed_guardian_is_started_again_and_told_the_live_runs() -> None:
    tag = secrets.token_hex(8)
    proc, pids = start_tree(tag)
    try:
        async with guardian_running() as guardian:
            guardian.watch(tag)
            guardian.group(tag, proc.pid)
            first = guardian.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            async with asyncio.timeout(30):
                await guardian.restarted.wait()
            assert guardian.starts == 2 and guardian.pid != first
            assert await wait_gone(pids, 0) == pids
        # The context closed the new guardian's pipe with the run still live.
        assert await wait_gone(pids, 5) == set()
    finally:
        await stop_tree(proc, pids)


def guardian_told(data: bytes) -> int:
    """Run a guardian, write ``data`` to it, close its pipe; its exit status."""
    guardian = subprocess.Popen(
        [sys.executable, "-I", str(_guardian._MAIN), TAG_VAR], stdin=subprocess.PIPE)
    assert guardian.stdin is not None
    guardian.stdin.write(data)
    guardian.stdin.close()
    return guardian.wait(10)


async def test_a_line_torn_by_the_workers_death_is_ignored() -> None:
    # The worker died mid-write: "group <tag> <pgid>" without its newline may
    # hold a number cut short, another group's id. The guardian acts only on
    # whole lines: here, none, so the tree it names is left alone.
    tag = secrets.token_hex(8)
    proc, pids = start_tree(tag)
    try:
        assert await asyncio.to_thread(guardian_told, f"group {tag} {proc.pid}".encode()) == 0
        assert await wait_gone(pids, 0.2) == pids  # none was killed
    finally:
        await stop_tree(proc, pids)
