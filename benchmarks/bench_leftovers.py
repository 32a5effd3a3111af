"""CPU cost of finding what a run left behind, on a host with many processes.

After every run the worker looks for processes the run left behind
(``_proctree.run_processes``). This starts ``--host`` idle processes that
belong to nobody here (orphaned to init, like the rest of a busy host) and
``--others`` shell jobs that keep running (other runs of this worker), then
times, ``--runs`` times over, a run whose command exits at once followed by
the leftover check the executor does at its end.

    python -m benchmarks.bench_leftovers [--host 2000] [--others 8] [--runs 300]

Prints the CPU milliseconds per check (this process's user + system time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import time

from cronswarm.worker import _proctree

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def start_host_processes(count: int) -> subprocess.Popen[bytes]:
    """``count`` sleeping processes in a group of their own, orphaned to init."""
    starter = subprocess.Popen(
        ["sh", "-c", f'i=0; while [ $i -lt {count} ]; do sleep 600 & i=$((i+1)); done; echo up'],
        stdout=subprocess.PIPE, env=ENV, start_new_session=True)
    assert starter.stdout is not None
    starter.stdout.readline()  # every sleep was forked
    starter.wait()
    return starter


async def measure(runs: int) -> float:
    cpu = 0.0
    for _ in range(runs):
        tag = secrets.token_hex(12)
        main = subprocess.Popen(["true"], env={**ENV, _proctree.TAG_VAR: tag},  # noqa: ASYNC220
                                start_new_session=True)
        marks = _proctree.RunMarks(main.pid, tag, _proctree.process_start_time(main.pid))
        await _proctree.wait_exit(main)
        before = time.process_time()
        left = await _proctree.run_processes(marks)
        cpu += time.process_time() - before
        assert not left, left
    return cpu / runs * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", type=int, default=2000)
    parser.add_argument("--others", type=int, default=8)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    host = start_host_processes(args.host)
    # Becoming a subreaper (when this version can) happens after the host's
    # processes were orphaned: they stay init's, as on a real host.
    try:
        from cronswarm.worker._procfs import become_subreaper
    except ImportError:  # a version that scans the host
        subreaper = False
    else:
        subreaper = become_subreaper()
    others = [subprocess.Popen(["sh", "-c", "sleep 600 & wait"], env=ENV,  # noqa: ASYNC220
                               start_new_session=True) for _ in range(args.others)]
    try:
        total = sum(1 for _ in os.scandir("/proc") if _.name.isdigit())
        ms = await measure(args.runs)
        print(f"{ms:.3f} ms CPU per leftover check ({total} processes on the host, "
              f"{args.others} other runs, subreaper={subreaper})")
        print(json.dumps({"cpu_ms_per_check": round(ms, 3), "host_processes": total,
                          "other_runs": args.others, "subreaper": subreaper}))
    finally:
        for proc in others:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with contextlib.suppress(ProcessLookupError):  # none when --host 0
            os.killpg(host.pid, signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main())
