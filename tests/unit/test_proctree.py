import os
import secrets
import signal
import subprocess

from cronswarm.worker._proctree import (
    TAG_VAR,
    RunMarks,
    descendants,
    process_start_time,
    run_processes,
    wait_gone,
)


def test_descendants_follow_parent_links_from_every_root() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 1, 20: 13, 21: 20, 30: 1}
    assert descendants(parents, [10]) == {10, 11, 12}
    assert descendants(parents, [10, 13]) == {10, 11, 12, 13, 20, 21}
    assert descendants(parents, [99]) == {99}  # unknown roots are kept (callers filter)
    assert descendants(parents, []) == set()


def test_descendants_survive_a_parent_cycle() -> None:
    assert descendants({1: 2, 2: 1}, [1]) == {1, 2}


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
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), TAG_VAR: tag},
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
