"""The guardian process (see ``_guardian``): ``python -I _guardian_main.py TAG_VAR``.

Runs in a fresh interpreter and imports nothing of cronswarm but ``_procfs``
(standard library only), loaded from its file: the package's ``__init__``
would bring in gRPC and the rest of the worker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import select
import signal
import sys
import time
from pathlib import Path
from types import ModuleType

_KILL_DEADLINE_S = 5.0  # longest the guardian keeps sweeping after the worker died
_EXIT_WAIT_S = 1.0  # for SIGKILLed processes to exit, before sweeping again
_SETTLE_STEP_S = 0.002  # a process between fork and exec reads an empty environment


def _load_procfs() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_cronswarm_procfs", Path(__file__).with_name("_procfs.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def find_run_processes(procfs: ModuleType, groups: set[int], tags: set[bytes],
                       var: bytes) -> tuple[set[int], bool]:
    """Live processes in ``groups``, carrying one of ``tags`` in ``var`` or below
    either (one scan of the host); and whether some read an empty environment."""
    me = os.getpid()
    parents: dict[int, int] = {}
    roots: set[int] = set()
    unsettled = False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        stat = procfs.read_stat(int(entry.name))
        if stat is None or stat.zombie:
            continue
        parents[stat.pid] = stat.ppid
        if stat.pgid in groups:
            roots.add(stat.pid)
            continue
        tag = procfs.read_tag(stat.pid, var)
        if tag in tags:
            roots.add(stat.pid)
        unsettled |= tag == b""
    found: set[int] = procfs.descendants(parents, roots) & set(parents)
    return found, unsettled


def _wait_exited(pids: set[int], timeout: float) -> None:
    fds = []
    for pid in pids:
        with contextlib.suppress(OSError):
            fds.append(os.pidfd_open(pid))
    try:
        deadline = time.monotonic() + timeout
        waiting = list(fds)
        while waiting and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(waiting, [], [], left)
            waiting = [fd for fd in waiting if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)


def kill_runs(procfs: ModuleType, runs: dict[bytes, int | None], var: bytes) -> None:
    """SIGKILL every process of ``runs`` (tag -> group), sweeping again for
    processes forked meanwhile, until a sweep finds none."""
    groups = {pgid for pgid in runs.values() if pgid is not None}
    tags = set(runs)
    deadline = time.monotonic() + _KILL_DEADLINE_S
    while time.monotonic() < deadline:
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        found, unsettled = find_run_processes(procfs, groups, tags, var)
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if found:
            _wait_exited(found, _EXIT_WAIT_S)
        elif unsettled:
            time.sleep(_SETTLE_STEP_S)  # an exec in progress may be a run's: look again
        else:
            return


def guard(pipe: int, var: bytes) -> None:
    """Follow the worker's runs on ``pipe`` until it closes, then kill what is left."""
    runs: dict[bytes, int | None] = {}
    with os.fdopen(pipe, "rb") as lines:
        for line in lines:
            if not line.endswith(b"\n"):
                break  # torn by the worker's death mid-write: a number may be cut short
            match line.split():
                case [b"tag", tag]:
                    runs[tag] = None
                case [b"group", tag, pgid]:
                    runs[tag] = int(pgid)
                case [b"end", tag]:
                    runs.pop(tag, None)
    if runs:
        kill_runs(_load_procfs(), runs, var)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    guard(sys.stdin.fileno(), sys.argv[1].encode())


if __name__ == "__main__":
    main()
