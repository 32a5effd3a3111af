"""Finding, signalling and waiting for every process of one shell run.

A shell job starts in its own session and process group (its pid is the
group id) and every process of it inherits a random tag in its environment
(``CRONSWARM_TAG``, one per attempt). The processes of a run are:

* the members of its process group (the shell and whatever stayed in it);
* the descendants of any of those (children that changed group, e.g. with
  ``setsid``, but still have their parent);
* the processes whose environment holds the tag (those that left the group
  *and* were orphaned).

A worker that is a child subreaper (``_procfs``) adopts those orphans, so all
three kinds are below it: a search walks the worker's own process tree, at a
cost that grows with the worker's runs, not with the host. Elsewhere (the
kernel refused, or has no /proc/<pid>/task/<tid>/children) every process on
the host is looked at, and an orphan is found among init's children.

Only a process that scrubs its environment, leaves the group and orphans
itself escapes; catching that needs cgroups, which a worker cannot assume.

Waiting uses pidfds (Linux 5.3+): each becomes readable when its process
exits, so a kill is noticed at once, zombies included (a zombie is dead for
us; reaping it is its parent's business, see ``reap_adopted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import psutil

from ._procfs import (
    adopted_children,
    can_walk_children,
    descendant_stats,
    descendants,
    is_subreaper,
    read_stat,
    read_tag,
    reap,
    start_time,
)

log = logging.getLogger(__name__)

TAG_VAR = "CRONSWARM_TAG"
_KILL_ROUNDS = 10  # SIGKILL sweeps, for processes forked while we were stopping the tree
_KILL_WAIT_S = 5.0  # a SIGKILLed process is gone within this, or it is stuck in the kernel
_CLOCK_SLACK_S = 0.1  # start times are whole clock ticks (10 ms): allow for rounding
# A process between fork and exec shows an empty environment for a moment: a
# search looks at such processes again for up to this long.
_SETTLE_S = 0.05
_SETTLE_STEP_S = 0.002


@dataclass(frozen=True, slots=True)
class RunMarks:
    """How to recognise the processes of one run."""

    pgid: int  # its process group (the main process's pid)
    tag: str | None = None  # the value of TAG_VAR in their environment
    # When the run's main process started, by ``process_start_time``: processes
    # that started before it are not the run's.
    since: float | None = None


def process_start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds after boot (whole clock ticks): compare
    start times with start times only, never with ``time.time()``. None if
    the process is already gone."""
    return start_time(pid)


def _walks_own_tree() -> bool:
    """Whether searches walk this process's tree (asked each time: a process
    may become a subreaper after its first search)."""
    return is_subreaper() and can_walk_children()


_Found = tuple[dict[int, int], set[int], list[int]]  # parents, roots, pids whose tag to read


def _search_own_tree(marks: RunMarks, newer_than: float | None, known: set[int],
                     others: Collection[int]) -> _Found:
    # Every process of the run is below its main process (the group leader,
    # started by us) or below an orphan we adopted (a child of our main thread).
    parents: dict[int, int] = {}
    roots: set[int] = set()
    maybe: list[int] = []
    tops = {marks.pgid, *known}
    for stat in descendant_stats(os.getpid(), tops, skip=others).values():
        if stat.zombie:
            continue
        parents[stat.pid] = stat.ppid
        if stat.pgid == marks.pgid:
            roots.add(stat.pid)
        elif marks.tag is not None and (newer_than is None or stat.start >= newer_than):
            maybe.append(stat.pid)
    return parents, roots, maybe


def _search_host(marks: RunMarks, newer_than: float | None, _known: set[int],
                 _others: Collection[int]) -> _Found:
    me = os.getpid()
    boot = psutil.boot_time()  # create_time is boot time + start: back to start
    parents: dict[int, int] = {}
    roots: set[int] = set()
    maybe: list[int] = []
    for proc in psutil.process_iter(["ppid", "status", "create_time"]):
        info = proc.info
        if proc.pid == me or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        parents[proc.pid] = info.get("ppid") or 0
        try:
            in_group = os.getpgid(proc.pid) == marks.pgid
        except OSError:
            continue
        started = (info.get("create_time") or boot) - boot
        if in_group:
            roots.add(proc.pid)
        elif marks.tag is not None and (newer_than is None or started >= newer_than):
            maybe.append(proc.pid)
    return parents, roots, maybe


async def run_processes(marks: RunMarks, known: Iterable[int] = (),
                        seen: set[int] | None = None, *,
                        others: Collection[int] = ()) -> set[int]:
    """Live (non-zombie) processes of the run; see the module doc. Adds them
    to ``seen`` when given.

    ``others``: children of this process known not to be the run's (the main
    processes of its other runs, the guardian): the walk of its own tree skips
    them and what is below them. A process of this run is never below one of
    them: it was not forked there, and orphans go to this process (the
    subreaper) or init — unless a job of another run made itself a subreaper,
    which is as far outside what this finds as a process that scrubs its
    environment, leaves the group and orphans itself.

    Only processes started after ``marks.since`` have their environment read.
    One caught between fork and exec (its environment reads empty) is read
    again for a moment.
    """
    me = os.getpid()
    newer_than = None if marks.since is None else marks.since - _CLOCK_SLACK_S
    known = set(known)
    search = _search_own_tree if _walks_own_tree() else _search_host
    parents, roots, unsettled = search(marks, newer_than, known,
                                       set(others) - known - {marks.pgid})
    roots.update(known)
    below = descendants(parents, roots)
    unsettled = [pid for pid in unsettled if pid not in below]
    tag = None if marks.tag is None else marks.tag.encode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SETTLE_S
    while unsettled:
        tags = [(pid, read_tag(pid, TAG_VAR.encode())) for pid in unsettled]
        roots.update(pid for pid, value in tags if value == tag)
        unsettled = [pid for pid, value in tags if value == b""]
        if unsettled:
            if loop.time() >= deadline:
                break
            await asyncio.sleep(_SETTLE_STEP_S)  # a process in exec: read it again soon
    found = (descendants(parents, roots) & set(parents)) - {me}
    if seen is not None:
        seen |= found
    return found


def reap_adopted(marks: RunMarks, seen: Iterable[int], spared: Iterable[int] = (), *,
                 strays: bool = False) -> int:
    """Reap the exited orphans of the run this process adopted; how many.

    An orphan of the run is a zombie child of ours that was ``seen`` as one of
    the run's processes or that is in its group or session (its main process
    excepted: ``wait_exit`` reaps that one). With ``strays`` every zombie
    child not ``spared`` is reaped: for a process that starts no children
    but runs and the ``spared`` ones (the worker), so that orphans nobody saw
    alive (an exited ``setsid`` child of an exited parent) do not pile up.
    """
    if not _walks_own_tree():
        return 0  # orphans went to init
    seen, spared = set(seen), set(spared) | {marks.pgid}
    # The spared are not even read: a worker spares its other runs, and
    # reading each of them at the end of every run made that cost grow with
    # the runs going on.
    zombies = [stat for stat in map(read_stat, (pid for pid in adopted_children(os.getpid())
                                                if pid not in spared))
               if stat is not None and stat.zombie]
    return reap(stat.pid for stat in zombies
                if strays or stat.pid in seen or marks.pgid in (stat.pgid, stat.sid))


def signal_processes(pgid: int, pids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to the group and to each pid (some may have left the group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait until every process in ``pids`` has exited; returns those still alive."""
    loop = asyncio.get_running_loop()
    waiting: dict[int, asyncio.Future[None]] = {}
    fds: list[int] = []
    fallback: list[int] = []
    try:
        for pid in set(pids):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue  # already gone (and reaped)
            except (OSError, AttributeError):
                fallback.append(pid)  # no pidfd support here
                continue
            fds.append(fd)
            future: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _resolve, future)
            waiting[pid] = future
        if waiting:
            await asyncio.wait(waiting.values(), timeout=timeout)
        alive = {pid for pid, future in waiting.items() if not future.done()}
        if fallback:
            alive |= await _wait_gone_polling(fallback, timeout)
        return alive
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """The exit code of our child ``proc`` once it has exited (it is reaped here).

    Unlike asyncio's ``Process.wait``, this does not also wait for the output
    pipe to close, which processes left behind by the job may hold open.
    """
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        return proc.wait()  # already reaped
    except (OSError, AttributeError):  # no pidfd support: a thread waits instead
        return await loop.run_in_executor(None, proc.wait)
    exited: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _resolve, exited)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return proc.wait()  # it has exited: this reaps it without blocking


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _wait_gone_polling(pids: list[int], timeout: float) -> set[int]:
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    loop = asyncio.get_running_loop()
    _, alive = await loop.run_in_executor(None, lambda: psutil.wait_procs(procs, timeout))
    return {p.pid for p in alive if _is_live(p)}


def _is_live(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def stop_run_processes(marks: RunMarks, known: Iterable[int], grace: float,
                             seen: set[int] | None = None) -> int:
    """SIGTERM every process of the run, wait ``grace``, SIGKILL what is left.

    Stopped processes get a SIGCONT after the SIGTERM so they can act on it.
    Processes forked meanwhile are found and killed by further sweeps. Returns
    how many processes needed the SIGKILL.
    """
    pgid = marks.pgid
    pids = await run_processes(marks, known, seen)
    if not pids:
        return 0
    signal_processes(pgid, pids, signal.SIGTERM)
    signal_processes(pgid, pids, signal.SIGCONT)
    alive = await wait_gone(pids, grace) if grace > 0 else pids
    forced: set[int] = set()
    for _ in range(_KILL_ROUNDS):
        rest = alive | await run_processes(marks, alive, seen)
        if not rest:
            return len(forced)
        signal_processes(pgid, rest, signal.SIGKILL)
        forced |= rest
        alive = await wait_gone(rest, _KILL_WAIT_S)
    log.error("processes of group %d survive SIGKILL: %s", pgid, sorted(alive))
    return len(forced)
