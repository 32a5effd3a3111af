"""The worker's own process tree, read from /proc, and the orphans it adopts.

A worker that is a child subreaper (``PR_SET_CHILD_SUBREAPER``) inherits
every orphan of its jobs: a process whose parent exits is re-parented to the
worker instead of init, so every process of every run stays below the
worker. Finding a run's processes is then a walk of the worker's own tree
(``/proc/<pid>/task/<tid>/children``), not a scan of every process on the
host.

The price: an adopted orphan that exits is a zombie of the worker until the
worker reaps it. asyncio's child watcher and ``Popen.wait`` wait on the pids
they started, and reaping one of those here would steal its exit status, so
only pids known not to be anybody else's are reaped (see ``reap``).

Standard library only: the guardian process (``_guardian_main``) loads this
file without the rest of cronswarm.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans; False if the
    kernel refuses (then callers fall back to scanning the host)."""
    libc = _libc()
    if libc is None:
        return False
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def is_subreaper() -> bool:
    flag = ctypes.c_int(0)
    libc = _libc()
    if libc is None:
        return False
    asked = libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
    return asked and bool(flag.value)


@dataclass(frozen=True, slots=True)
class ProcStat:
    """What /proc/<pid>/stat tells of a process (a zombie's too)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    zombie: bool
    threads: int
    start: float  # seconds after boot: compare with other start times only


def _read(path: str) -> bytes:
    """A small /proc file, whole (os calls: a walk reads many, and ``open``
    costs several times more)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 4096)]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_stat(pid: int) -> ProcStat | None:
    """None once the process is gone (and reaped)."""
    try:
        data = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    # The command name is in parentheses and may hold anything, ")" included.
    fields = data[data.rindex(b")") + 2:].split()
    return ProcStat(pid, ppid=int(fields[1]), pgid=int(fields[2]), sid=int(fields[3]),
                    zombie=fields[0] in (b"Z", b"X"), threads=int(fields[17]),
                    start=int(fields[19]) / _TICKS_PER_S)


def start_time(pid: int) -> float | None:
    stat = read_stat(pid)
    return None if stat is None else stat.start


def children_of(pid: int, threads: int = 0) -> list[int]:
    """The children of every thread of ``pid`` (an orphan is re-parented to
    one thread of its reaper, any of them). ``threads=1`` spares listing the
    threads of a process known to have one."""
    try:
        tids = [str(pid)] if threads == 1 else os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tids:
        try:
            found.extend(int(child) for child in _read(f"/proc/{pid}/task/{tid}/children").split())
        except OSError:
            continue
    return found


@functools.cache
def can_walk_children() -> bool:
    """Whether this kernel has /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN)."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def adopted_children(root: int) -> list[int]:
    """The children of ``root``'s main thread: where the kernel re-parents the
    orphans a child subreaper adopts (the first live thread of its group, the
    leader while it runs). Children its other threads started are not listed."""
    return children_of(root, threads=1)


def descendant_stats(root: int, also: Iterable[int] = (),
                     skip: Collection[int] = ()) -> dict[int, ProcStat]:
    """Every process below the children of ``root``'s main thread
    (``adopted_children``) and below those of ``also`` that are ``root``'s
    children, zombies included: not the children of every thread of ``root``
    (a worker has a dozen threads: reading each one's children per run was
    most of a run's cost). Children of ``root`` in ``skip`` are left out with
    everything below them (a worker's other runs and its guardian: reading
    them made a run's end cost grow with the runs going on beside it).

    Not a snapshot: a process forked during the walk may be missed (callers
    sweep again). One re-parented to ``root`` during the walk is not: the
    root's children are read again once the walk is done, until no new one
    shows up.
    """
    found: dict[int, ProcStat] = {}
    stack = [pid for pid in adopted_children(root) if pid not in skip]
    for pid in set(also) - set(stack) - set(skip):
        stat = read_stat(pid)  # a pid may be reused: only a child of root counts
        if stat is not None and stat.ppid == root:
            stack.append(pid)
    while stack:
        while stack:
            pid = stack.pop()
            if pid in found:
                continue
            stat = read_stat(pid)
            if stat is None:
                continue
            found[pid] = stat
            if not stat.zombie:
                stack.extend(children_of(pid, stat.threads))
        stack = [pid for pid in adopted_children(root) if pid not in found and pid not in skip]
    return found


def descendants(parents: Mapping[int, int], roots: Iterable[int]) -> set[int]:
    """``roots`` and every process below them, given a pid -> parent pid map."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, ()))
    return found


def read_tag(pid: int, var: bytes) -> bytes | None:
    """The value of ``var`` in the process's environment; b"" while it reads
    empty (a process between fork and exec); None when it has none, is gone
    or is not ours to read (then it is not ours to kill either)."""
    try:
        env = _read(f"/proc/{pid}/environ")
    except OSError:
        return None
    if not env:
        return b""
    prefix = var + b"="
    for entry in env.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix):]
    return None


def reap(pids: Iterable[int]) -> int:
    """Reap those of ``pids`` that are exited children of this process; how many.

    Callers pass only pids nobody else waits for (orphans this process
    adopted): reaping a pid that asyncio or ``Popen`` started would make their
    wait report a made-up exit status.
    """
    reaped = 0
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG) is not None:
                reaped += 1
    return reaped
