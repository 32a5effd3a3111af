import asyncio
import contextlib
import os
import secrets
import signal
import subprocess

import pytest

from cronswarm.worker import _procfs, _proctree
from cronswarm.worker._procfs import become_subreaper, children_of, is_subreaper, read_stat
from cronswarm.worker._proctree import (
    TAG_VAR,
    RunMarks,
    descendants,
    process_start_time,
    reap_adopted,
    run_processes,
    wait_exit,
    wait_gone,
)

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture
def subreaper() -> None:
    """This test process adopts its children's orphans, as a worker does
    (searches then walk its own tree)."""
    assert become_subreaper() and is_subreaper()


def test_descendants_follow_parent_links_from_every_root() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 1, 20: 13, 21: 20, 30: 1}
    assert descendants(parents, [10]) == {10, 11, 12}
    assert descendants(parents, [10, 13]) == {10, 11, 12, 13, 20, 21}
    assert descendants(parents, [99]) == {99}  # unknown roots are kept (callers filter)
    assert descendants(parents, []) == set()


def test_descendants_survive_a_parent_cycle() -> None:
    assert descendants({1: 2, 2: 1}, [1]) == {1, 2}


@pytest.mark.usefixtures("subreaper")
async def test_an_orphan_that_left_the_group_at_once_is_found_by_its_tag() -> None:
    # Start times come from boot time + ticks, which may be a second off the
    # wall clock: a run's own processes are told by comparing start times with
    # its main process's, whatever that offset; and a process between fork
    # and exec reads an empty environment for a moment. Thirty runs, each
    # leaving an orphan in a session of its own straight away.
    for _ in range(30):
        tag = secrets.token_hex(8)
        main = subprocess.Popen(  # noqa: ASYNC220 - the executor starts runs this way
            ["sh", "-c", "(setsid sleep 30 &); echo started"], stdout=subprocess.PIPE,
            env={**ENV, TAG_VAR: tag},
            start_new_session=True)
        marks = RunMarks(main.pid, tag, process_start_time(main.pid))
        assert main.stdout is not None and main.stdout.readline() == b"started\n"
        main.wait()
        main.stdout.close()
        found = await run_processes(marks)
        for pid in found:
            os.kill(pid, signal.SIGKILL)
        assert await wait_gone(found, 5) == set()
        assert len(found) == 1, found  # the orphan (the shells have exited)


def zombie_children() -> set[int]:
    return {pid for pid in children_of(os.getpid())
            if (stat := read_stat(pid)) is not None and stat.zombie}


@pytest.mark.usefixtures("subreaper")
async def test_orphans_of_a_run_are_adopted_and_reaped_once_they_exit() -> None:
    # An orphan in the run's session and one that left it with setsid: both
    # are re-parented to this process; once killed they are its zombies, and
    # reap_adopted reaps them (and only them: the other run's exited main
    # process is for its own Popen to reap).
    tag = secrets.token_hex(8)
    main = subprocess.Popen(  # noqa: ASYNC220 - the executor starts runs this way
        ["sh", "-c", "(sleep 30 &); (setsid sleep 30 &); echo started"],
        stdout=subprocess.PIPE, env={**ENV, TAG_VAR: tag}, start_new_session=True)
    other = subprocess.Popen(["true"], start_new_session=True)  # noqa: ASYNC220
    marks = RunMarks(main.pid, tag, process_start_time(main.pid))
    assert main.stdout is not None and main.stdout.readline() == b"started\n"
    await wait_exit(main)
    main.stdout.close()
    seen: set[int] = set()
    orphans = await run_processes(marks, seen=seen)
    assert len(orphans) == 2 and seen == orphans
    assert orphans <= set(children_of(os.getpid()))  # adopted, not init's
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert await wait_gone(orphans, 5) == set()
    assert await wait_gone({other.pid}, 5) == set()
    assert orphans | {other.pid} <= zombie_children()
    assert reap_adopted(marks, seen) == 2
    assert zombie_children() & orphans == set()
    assert other.wait() == 0  # its exit status was not taken


@pytest.mark.usefixtures("subreaper")
async def test_stray_zombies_are_reaped_unless_spared() -> None:
    # A setsid'd orphan that exits before anyone saw it: only a process that
    # starts no other children (strays=True) may reap it; spared pids stay.
    spared = subprocess.Popen(["true"], start_new_session=True)  # noqa: ASYNC220
    main = subprocess.Popen(  # noqa: ASYNC220
        ["sh", "-c", "(setsid sh -c 'echo $$' &)"], stdout=subprocess.PIPE,
        start_new_session=True)
    assert main.stdout is not None
    orphan = int(main.stdout.readline())
    assert main.stdout.read() == b""  # every writer is gone: the orphan too
    main.stdout.close()
    await wait_exit(main)
    assert await wait_gone({orphan, spared.pid}, 5) == set()
    marks = RunMarks(main.pid)
    assert reap_adopted(marks, set()) == 0  # nothing says it was the run's
    assert orphan in zombie_children()
    assert reap_adopted(marks, set(), {spared.pid}, strays=True) >= 1
    assert orphan not in zombie_children()
    assert spared.wait() == 0


@pytest.mark.usefixtures("subreaper")
async def test_a_run_started_from_another_thread_is_found_alive_and_after_its_main_exits() -> None:
    # The executor starts runs in a pool thread, so the main process is that
    # thread's child; searches read only our main thread's children (where
    # the kernel puts the orphans we adopt) plus the run's main process.
    tag = secrets.token_hex(8)
    main = await asyncio.to_thread(
        subprocess.Popen,
        ["sh", "-c", "sleep 30 & (setsid sleep 30 &); echo started; read line"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**ENV, TAG_VAR: tag},
        start_new_session=True)
    assert main.pid not in children_of(os.getpid(), threads=1)  # another thread's child
    marks = RunMarks(main.pid, tag, process_start_time(main.pid))
    assert main.stdout is not None and main.stdout.readline() == b"started\n"
    alive = await run_processes(marks, {main.pid})
    assert main.pid in alive and len(alive) == 3, alive  # the shell, its child, the setsid one
    assert main.stdin is not None
    main.stdin.close()  # the shell reads EOF and exits, orphaning both sleeps
    await wait_exit(main)
    main.stdout.close()
    seen: set[int] = set()
    orphans = await run_processes(marks, seen=seen)
    assert orphans == alive - {main.pid}
    assert orphans <= set(children_of(os.getpid(), threads=1))  # adopted by the main thread
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert await wait_gone(orphans, 5) == set()
    assert reap_adopted(marks, seen) == 2


@pytest.mark.usefixtures("subreaper")
async def test_the_end_of_a_run_reads_nothing_of_the_other_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker's other runs (and its guardian) are its children too: the
    # search at the end of a run and the reaping after it skip them and what
    # is below them (read per run, they made a run's end cost grow with the
    # runs going on), and still find and reap the run's own orphan.
    other = subprocess.Popen(  # noqa: ASYNC220 - the executor starts runs this way
        ["sh", "-c", "sleep 30 & echo started; wait"], stdout=subprocess.PIPE,
        start_new_session=True)
    tag = secrets.token_hex(8)
    main = subprocess.Popen(  # noqa: ASYNC220
        ["sh", "-c", "(setsid sleep 30 &); echo started"], stdout=subprocess.PIPE,
        env={**ENV, TAG_VAR: tag}, start_new_session=True)
    try:
        assert other.stdout is not None and other.stdout.readline() == b"started\n"
        [other_child] = children_of(other.pid)
        marks = RunMarks(main.pid, tag, process_start_time(main.pid))
        assert main.stdout is not None and main.stdout.readline() == b"started\n"
        await wait_exit(main)
        main.stdout.close()
        read: list[int] = []
        real_read_stat = _procfs.read_stat

        def counting_read_stat(pid: int) -> _procfs.ProcStat | None:
            read.append(pid)
            return real_read_stat(pid)

        monkeypatch.setattr(_procfs, "read_stat", counting_read_stat)
        monkeypatch.setattr(_proctree, "read_stat", counting_read_stat)
        assert await run_processes(marks) != set()
        assert {other.pid, other_child} <= set(read)  # without ``others``: read
        read.clear()
        seen: set[int] = set()
        orphans = await run_processes(marks, seen=seen, others={other.pid})
        assert len(orphans) == 1 and orphans <= set(children_of(os.getpid(), threads=1))
        assert {other.pid, other_child}.isdisjoint(read)
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
        assert await wait_gone(orphans, 5) == set()
        read.clear()
        assert reap_adopted(marks, seen, {other.pid}) == 1
        assert other.pid not in read
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(other.pid, signal.SIGKILL)
        await wait_exit(other)
        assert other.stdout is not None
        other.stdout.close()
