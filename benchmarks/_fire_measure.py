"""bench_fire's measuring tools: child processes, CPU, the witness file, etcd counters.

Nothing here knows which scheduler is measured: a round starts its processes
as ``Child``\\ ren, samples them with ``Sample.take`` at both ends of the window
and reads what the job itself wrote into the witness file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import shlex
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cronswarm.devservices import dying_with_parent

# The job: one line per run, the job's own clock (ns) and its run id.
JOB_COMMAND = 'echo "$(date +%s%N) $CRONSWARM_RUN_ID" >> {witness}'


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def per_fire(total: float, fires: int, digits: int = 2) -> float:
    return round(total / fires, digits) if fires else math.nan


class Child:
    """A process started in its own session, dying with this one; its merged
    stdout/stderr goes to a log file, and the last line starting with each
    watched prefix is kept (readiness lines, counters)."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path,
                 watch: Iterable[str]) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.latest: dict[str, str] = dict.fromkeys(watch, "")
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"read:{name}")

    @classmethod
    async def start(cls, name: str, argv: Sequence[str], *, env: Mapping[str, str],
                    log_dir: Path, cwd: Path | None = None, watch: Iterable[str] = ()
                    ) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *dying_with_parent(argv), env=dict(env), cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        return cls(name, proc, log_dir / f"{name}.log", watch)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("ab") as log:
            while line := await self.proc.stdout.readline():
                log.write(line)
                text = line.decode(errors="replace")
                for prefix in self.latest:
                    if prefix in text:
                        self.latest[prefix] = text.strip()
                self._changed.set()
                self._changed = asyncio.Event()
        self._changed.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_for(self, text: str, timeout: float) -> None:
        """Until a line containing ``text`` (a watched prefix) was printed."""
        try:
            async with asyncio.timeout(timeout):
                while not self.latest[text]:
                    if self._reader.done():
                        raise RuntimeError(f"{self.name} exited; see {self.log_path}")
                    await self._changed.wait()
        except TimeoutError:
            raise RuntimeError(f"{self.name} did not print {text!r} within {timeout:.0f}s; "
                               f"see {self.log_path}") from None

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM to its process group, then SIGKILL after ``timeout``."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if self.proc.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.proc.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._reader
        return self.proc.returncode if self.proc.returncode is not None else -1


async def stop_all(children: Sequence[Child]) -> None:
    await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of a process: its own, and that of its descendants
    (reaped ones from cutime/cstime, live ones read directly)."""

    own: float = 0.0
    children: float = 0.0
    own_system: float = 0.0  # the kernel's part of ``own``

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(self.own + other.own, self.children + other.children,
                   self.own_system + other.own_system)

    @property
    def total(self) -> float:
        return self.own + self.children


def tree_cpu(pid: int) -> Cpu:
    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        kids = t.children_user + t.children_system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                kids += c.user + c.system
        return Cpu(t.user + t.system, kids, t.system)
    except psutil.Error:
        return Cpu()


def cpu_of(pids: Iterable[int]) -> Cpu:
    total = Cpu()
    for pid in pids:
        total = total + tree_cpu(pid)
    return total


def etcd_counters(endpoint: str) -> dict[str, float]:
    """etcd's own counts: keys put and deleted (/metrics) and the revision
    (one per committed write request or transaction that changed a key)."""
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {"puts": 0.0, "deletes": 0.0}
    for line in text.splitlines():
        if line.startswith("etcd_mvcc_put_total "):
            out["puts"] = float(line.split()[1])
        elif line.startswith("etcd_mvcc_delete_total "):
            out["deletes"] = float(line.split()[1])
    req = urllib.request.Request(f"http://{endpoint}/v3/kv/range",
                                 data=json.dumps({"key": "AA=="}).encode())
    with urllib.request.urlopen(req, timeout=5) as resp:
        out["revision"] = float(json.loads(resp.read())["header"]["revision"])
    return out


@dataclass(frozen=True)
class Found:
    executed: int  # ticks run at least once
    missed: int  # ticks never run
    duplicates: int  # runs beyond the first of a tick
    lags_ms: list[float]  # every run's own timestamp minus its tick


@dataclass
class Witness:
    """What the jobs wrote: run id -> the job's own timestamps (ns), one per execution."""

    runs: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Witness:
        runs: dict[str, list[int]] = {}
        with contextlib.suppress(FileNotFoundError), path.open() as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0].isdigit():
                    runs.setdefault(parts[1], []).append(int(parts[0]))
        return cls(runs)

    def covers(self, names: Sequence[str], ticks: Sequence[int]) -> bool:
        return all(f"{n}@{t}" in self.runs for n in names for t in ticks)

    def analyse(self, names: Sequence[str], ticks: Sequence[int]) -> Found:
        """Executions, missed ticks, duplicate executions and the job's own lag (ms)
        over the window's ticks."""
        lags: list[float] = []
        missed = executed = duplicates = 0
        for name in names:
            for tick in ticks:
                stamps = self.runs.get(f"{name}@{tick}")
                if not stamps:
                    missed += 1
                    continue
                executed += 1
                duplicates += len(stamps) - 1
                lags.extend(ns / 1e6 - tick for ns in stamps)
        return Found(executed, missed, duplicates, lags)


def window_ticks(t0_ms: int, seconds: int) -> list[int]:
    return [t0_ms + 1000 * i for i in range(seconds)]


async def wait_for_witness(path: Path, names: Sequence[str], ticks: Sequence[int],
                           timeout: float) -> Witness:
    """The witness, once it holds every tick of the window or ``timeout`` passed
    (late runs still count; missing ones are then missed). Polls: the writers
    are other processes' bash jobs."""
    deadline = time.monotonic() + timeout
    while True:
        witness = Witness.read(path)
        if witness.covers(names, ticks) or time.monotonic() > deadline:
            return witness
        await asyncio.sleep(0.25)  # poll interval of a file other processes append to


async def sleep_until(epoch: float) -> None:
    await asyncio.sleep(max(0.0, epoch - time.time()))


def lag_summary(prefix: str, lags_ms: Sequence[float]) -> dict[str, float]:
    return {f"{prefix}_p50_ms": round(percentile(lags_ms, 0.5), 1),
            f"{prefix}_p99_ms": round(percentile(lags_ms, 0.99), 1),
            f"{prefix}_max_ms": round(max(lags_ms), 1) if lags_ms else math.nan}


def duplicate_count(ids: Iterable[str]) -> int:
    return sum(n - 1 for n in Counter(ids).values() if n > 1)


def job_alone_cpu_ms(witness: Path, runs: int = 300) -> float:
    """CPU ms of one run of the bench's job by itself: ``bash -c`` with the
    environment a worker gives a job, started and waited for here, ``runs``
    times in a row. What a fire costs beyond it is the scheduler's."""
    command = JOB_COMMAND.format(witness=shlex.quote(str(witness)))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LANG": os.environ.get("LANG", "C.UTF-8"), "SHELL": "/bin/bash",
           "CRONSWARM_RUN_ID": "calibration@0", "CRONSWARM_ATTEMPT": "1"}
    for key in ("HOME", "USER", "LOGNAME", "TZ"):
        if key in os.environ:
            env[key] = os.environ[key]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run(["/bin/bash", "-c", command], env=env, stdin=subprocess.DEVNULL,
                       check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    witness.unlink(missing_ok=True)
    return round(used / runs * 1000, 2)
