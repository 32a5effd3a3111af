"""Fault injection: real processes, faults on a schedule, a verdict per fault.

    python -m benchmarks.faults [--minutes 30]      # the soak: every fault at least 5 times
    python -m benchmarks.faults --short             # about 2 minutes of faults (CI)

Starts a 3-member etcd cluster, the MongoDB-protocol server (on disk, so it
can be stopped and restarted), one ``cronswarm master`` and 5 ``cronswarm
worker`` processes, each on a clock of its own (libfaketime, -2..+2 s) and
each reaching every etcd member through a TCP proxy of its own
(benchmarks/_faults_proxy.py). Jobs: every-second jobs (``overlap: allow``)
and long ``forbid`` jobs (3-8 s, first attempt failing on some ticks,
``retry: {attempts: 2, any_worker: true}``); every execution appends a start
and an end line to a witness file.

Faults, cycling: kill -9 of a worker (restarted later with the same id and
spool), SIGSTOP of a worker past its lease (then SIGCONT), one etcd member
stopped (then restarted), a worker cut off from etcd by its proxies
(blackhole, delay, drop-replies), MongoDB stopped (then restarted).

Then all jobs are paused, runs end, every process stops, and the witness
file and the runs collection are judged per fault window (the ticks due from
one fault's injection to the next) and in total: duplicates, silent misses,
overlaps of ``forbid`` jobs, processes left behind, executions without a
record. Prints a table, then a JSON line last; exits 1 if any of those is
not zero. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._faults_analysis import (  # noqa: E402
    Execution,
    Freeze,
    JobPlan,
    Key,
    Window,
    analyse,
    parse_witness,
    total,
)
from benchmarks._faults_proxy import Link, Proxy, start_proxies  # noqa: E402
from benchmarks._fire_measure import Child  # noqa: E402
from cronswarm.common import ClockReport, ClockState, Job, Keyspace, Settings  # noqa: E402
from cronswarm.coord import EtcdStore  # noqa: E402
from cronswarm.devservices import EtcdCluster, EtcdServer, MongoServer, free_port  # noqa: E402
from cronswarm.logstore import MongoLogStore  # noqa: E402
from cronswarm.master import JobService  # noqa: E402
from cronswarm.worker import rendezvous_owner  # noqa: E402

LIBFAKETIME = os.environ.get("CRONSWARM_FAKETIME_LIB",
                             "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
OFFSETS = (-2, -1, 0, 1, 2)
FAULTS = ("kill9", "sigstop", "etcd_member", "blackhole", "delay", "drop_replies", "mongodb")

# bash builtins only (EPOCHREALTIME, echo): a stop that signals the job's
# processes cannot kill a note half-written. One echo of a short line to a
# file opened for append is one write: lines of concurrent jobs never mix.
_NOTE = ('note() {{ t=${{EPOCHREALTIME/./}}; echo "$1 ${{t}}000 $CRONSWARM_RUN_ID '
         '$CRONSWARM_ATTEMPT $CRONSWARM_WORKER $$ $2" >> {witness}; }}')
EVERY_SECOND = _NOTE + "; note S; note E 0"
# Runs 3-8 s (by tick); the first attempt of every third tick fails. A stop
# (SIGTERM to the group) still writes the end line.
LONG_FORBID = (_NOTE + "; note S; trap 'trap \"\" TERM; note E 143; exit 143' TERM; "
               "t=$((CRONSWARM_TICK / 1000)); sleep $((3 + t % 6)) & wait $!; "
               'if [ "$CRONSWARM_ATTEMPT" = 1 ] && [ $((t / 5 % 3)) = 0 ]; then '
               "trap - TERM; note E 1; exit 1; fi; trap - TERM; note E 0")


@dataclass(frozen=True)
class Plan:
    short: bool
    faults: int
    period: float  # seconds from one injection to the next
    lease_ttl: int
    delay: float
    mongo_down: float
    member_down: float
    restart_after: float
    baseline: float
    forbid_jobs: int = 2

    @property
    def held(self) -> float:
        """How long a freeze or a partition lasts: past the lease."""
        return self.lease_ttl + 3.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        if args.short:
            ttl = args.lease_ttl or 4
            return cls(True, len(FAULTS), args.period or 16.0, ttl, args.delay, 8.0, 6.0,
                       4.0, 8.0)
        ttl = args.lease_ttl or 10
        period = args.period or 45.0
        faults = max(len(FAULTS), int(args.minutes * 60 // period))
        return cls(False, faults, period, ttl, args.delay, 30.0, 15.0, 8.0, 20.0)


@dataclass
class Slot:
    """One worker: its id, clock, proxies and (current) process."""

    worker_id: str
    offset: int
    link: Link
    proxies: list[Proxy]
    env: dict[str, str]
    child: Child | None = None


@dataclass
class Tracker:
    """Follows the witness file while the run goes on: which executions live,
    and when each one's process exited (a pidfd each)."""

    path: Path
    offset: int = 0
    # key -> (worker, pid, started ns)
    live: dict[Key, tuple[str, int, int]] = field(default_factory=dict)
    exits: dict[Key, int] = field(default_factory=dict)
    outlived: list[str] = field(default_factory=list)

    async def follow(self) -> None:
        loop = asyncio.get_running_loop()
        self.path.touch()
        with self.path.open("rb") as f:
            buffer = b""
            while True:
                chunk = f.read()
                if chunk:
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        self._seen(loop, line.decode(errors="replace").split())
                await asyncio.sleep(0.1)  # poll interval of a file other processes append to

    def _seen(self, loop: asyncio.AbstractEventLoop, parts: list[str]) -> None:
        if len(parts) < 6 or parts[0] != "S":
            return
        key, worker, pid = (parts[2], int(parts[3])), parts[4], int(parts[5])
        self.live[key] = (worker, pid, int(parts[1]))
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:  # ended before we looked: at the latest now
            self._ended(key)
            return

        def ready() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self._ended(key)

        loop.add_reader(fd, ready)

    def _ended(self, key: Key) -> None:
        self.exits.setdefault(key, time.time_ns())
        self.live.pop(key, None)

    def fresh(self, jobs: Sequence[str], within_ns: int, lasting: float = 0.0) -> list[str]:
        """Workers of live first attempts of ``jobs`` that started in the last
        ``within_ns`` and run at least ``lasting`` seconds (LONG_FORBID's
        length, from the tick)."""
        now = time.time_ns()
        return [w for (run_id, attempt), (w, _, started) in self.live.items()
                if run_id.rpartition("@")[0] in jobs and now - started < within_ns
                and 3 + int(run_id.rpartition("@")[2]) // 1000 % 6 >= lasting
                and attempt == 1]  # an attempt is left: what a lost run's retry is for

    def check_outlived(self, worker: str) -> None:
        """Executions of a worker that died earlier and whose processes still live."""
        for (run_id, attempt), (w, pid, _) in list(self.live.items()):
            if w == worker and psutil.pid_exists(pid):
                self.outlived.append(f"{run_id}#{attempt} (pid {pid}) outlived {worker}")


class Harness:
    def __init__(self, plan: Plan, tmp: Path) -> None:
        self.plan = plan
        self.tmp = tmp
        self.tag = uuid.uuid4().hex[:8]
        self.witness = tmp / "witness"
        self.etcd = EtcdCluster(tmp / "etcd", size=3)
        self.mongo = MongoServer(tmp / "mongodb")
        self.slots: list[Slot] = []
        self.master: Child | None = None
        self.windows: list[Window] = []
        self.freezes: list[Freeze] = []
        self.tracker = Tracker(self.witness)
        workers = [f"fw{i}" for i in range(len(OFFSETS))]
        self.jobs = ([JobPlan(n, 1, forbid=False) for n in owned_names("sec", workers)]
                     + [JobPlan(n, 5, forbid=True, attempts=2)
                        for n in owned_names("long", workers[:plan.forbid_jobs])])
        self.notes: list[str] = []

    # -- processes ---------------------------------------------------------

    def settings(self) -> Settings:
        return Settings.load(
            {}, etcd_endpoints=tuple(self.etcd.endpoints), mongodb_uri=self.mongo.uri,
            mongodb_database=f"faults_{self.tag}", key_prefix=f"/faults-{self.tag}",
            lease_ttl=self.plan.lease_ttl, stats_interval=1.0, shutdown_grace=10.0,
            log_flush_interval=0.2,
            # the workers' clocks are up to 4 s apart on purpose
            max_clock_offset_ms=5000)

    async def start_worker(self, slot: Slot) -> None:
        slot.child = await Child.start(
            slot.worker_id, [sys.executable, "-m", "cronswarm", "worker"], env=slot.env,
            cwd=ROOT, log_dir=self.tmp, watch=("ready with",))

    async def start(self, stack: contextlib.AsyncExitStack) -> Settings:
        await asyncio.to_thread(self.etcd.start, 60)
        stack.push_async_callback(asyncio.to_thread, self.etcd.stop)
        await asyncio.to_thread(self.mongo.start, 120)
        stack.push_async_callback(asyncio.to_thread, self.mongo.stop)
        settings = self.settings()
        base = {**os.environ, **settings.env(), "PYTHONPATH": str(ROOT)}
        self.master = await Child.start(
            "master", [sys.executable, "-m", "cronswarm", "master"], cwd=ROOT, log_dir=self.tmp,
            env={**base, "CRONSWARM_MASTER_ID": f"master-{self.tag}",
                 "CRONSWARM_MASTER_PORT": str(free_port())}, watch=("master listening",))
        stack.push_async_callback(self.master.stop)
        for i, offset in enumerate(OFFSETS):
            link, proxies = await start_proxies(self.etcd.endpoints, self.plan.delay)
            for proxy in proxies:
                stack.push_async_callback(proxy.stop)
            wid = f"fw{i}"
            env = {**base, "CRONSWARM_WORKER_ID": wid,
                   "CRONSWARM_SPOOL_DIR": str(self.tmp / f"spool-{wid}"),
                   "CRONSWARM_ETCD_ENDPOINTS": ",".join(p.endpoint for p in proxies),
                   # the worker's clock only: jobs get a minimal environment
                   "LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"{offset:+d}s"}
            self.slots.append(Slot(wid, offset, link, proxies, env))
        for slot in self.slots:
            await self.start_worker(slot)
        stack.push_async_callback(self.stop_workers)
        await self.master.wait_for("master listening", timeout=60)
        for slot in self.slots:
            assert slot.child is not None
            await slot.child.wait_for("ready with", timeout=120)
        return settings

    async def stop_workers(self) -> list[int]:
        for slot in self.slots:  # a frozen worker cannot handle SIGTERM
            if slot.child is not None and slot.child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.child.pid, signal.SIGCONT)
            slot.link.set("pass")
        return list(await asyncio.gather(*(s.child.stop() for s in self.slots if s.child)))

    # -- faults ------------------------------------------------------------

    async def victim(self, n: int, lasting: float = 0.0) -> Slot:
        """A worker that has just started a long run of at least ``lasting``
        seconds (waiting up to two periods of the long jobs for one). Else the
        next live worker in turn."""
        alive = {s.worker_id: s for s in self.slots
                 if s.child and s.child.proc.returncode is None}
        forbid = [j.name for j in self.jobs if j.forbid]
        deadline = time.monotonic() + 11
        while time.monotonic() < deadline:
            for worker in self.tracker.fresh(forbid, 800_000_000, lasting):
                if worker in alive:
                    return alive[worker]
            await asyncio.sleep(0.1)  # the tracker's own poll interval
        slots = list(alive.values())
        return slots[n % len(slots)]

    def member_to_stop(self, round_: int) -> EtcdServer:
        """In turn: the member every worker talks to (its first endpoint; gRPC
        picks the first that answers), then the raft leader (or, if that is
        the same one, the next member)."""
        first = self.etcd.members[0]
        if round_ % 2 == 0:
            return first
        for member in self.etcd.members:
            url = f"http://{member.endpoint}/v3/maintenance/status"
            with contextlib.suppress(OSError, ValueError):
                request = urllib.request.Request(url, data=b"{}", method="POST")
                with urllib.request.urlopen(request, timeout=2) as resp:
                    status = json.loads(resp.read())
                if status["header"]["member_id"] == status["leader"] and member is not first:
                    return member
        return self.etcd.members[1]

    async def inject(self, n: int, fault: str) -> str:
        """Inject fault number ``n`` and heal it; returns its target."""
        plan = self.plan
        if fault == "kill9":
            slot = await self.victim(n)
            assert slot.child is not None
            os.kill(slot.child.pid, signal.SIGKILL)  # the worker only: its guardian lives on
            await slot.child.stop()
            await asyncio.sleep(plan.restart_after)
            self.tracker.check_outlived(slot.worker_id)
            await self.start_worker(slot)
            assert slot.child is not None
            await slot.child.wait_for("ready with", timeout=120)
            return slot.worker_id
        if fault == "sigstop":
            # A run that outlives the freeze: the case the fence is for.
            slot = await self.victim(n, lasting=plan.held)
            assert slot.child is not None
            start = time.time_ns()
            os.kill(slot.child.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(plan.held)
            finally:
                os.kill(slot.child.pid, signal.SIGCONT)
                self.freezes.append(Freeze(slot.worker_id, start, time.time_ns()))
            return slot.worker_id
        if fault == "etcd_member":
            member = await asyncio.to_thread(self.member_to_stop, n // len(FAULTS))
            await asyncio.to_thread(member.stop)
            await asyncio.sleep(plan.member_down)
            await asyncio.to_thread(member.start)
            await asyncio.to_thread(self.etcd.wait_healthy, 60, [member])
            return member.member
        if fault in ("blackhole", "delay", "drop_replies"):
            slot = self.slots[n % len(self.slots)]
            slot.link.set(fault.replace("_", "-"))
            await asyncio.sleep(plan.held)
            slot.link.set("pass")
            return slot.worker_id
        if fault == "mongodb":
            await asyncio.to_thread(self.mongo.stop)
            await asyncio.sleep(plan.mongo_down)
            await asyncio.to_thread(self.mongo.start, 120)
            return "mongodb"
        raise AssertionError(fault)

    async def run_faults(self) -> None:
        plan = self.plan
        start = time.time_ns()
        await asyncio.sleep(plan.baseline)
        self.windows.append(Window("0", "none", "-", start, time.time_ns()))
        for n in range(plan.faults):
            fault = FAULTS[n % len(FAULTS)]
            began = time.monotonic()
            start = time.time_ns()
            target = await self.inject(n, fault)
            print(f"{dt.datetime.now(dt.UTC):%H:%M:%S} fault {n + 1}/{plan.faults}: "
                  f"{fault} {target} ({time.monotonic() - began:.1f}s)", flush=True)
            await asyncio.sleep(max(0.0, plan.period - (time.monotonic() - began)))
            self.windows.append(Window(str(n + 1), fault, target, start, time.time_ns()))

    # -- the end -----------------------------------------------------------

    async def settle(self, service: JobService, logs: MongoLogStore) -> int:
        """Pause every job; wait until no run is running (records and processes).
        Returns when the pause was written (ns)."""
        for job in self.jobs:
            await service.set_enabled(job.name, False, actor="faults")
        paused = time.time_ns()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = await logs.runs.count_documents({"status": "running"})
            if running == 0 and not self.tracker.live:
                break
            await asyncio.sleep(0.5)  # poll interval: runs end on their own time
        else:
            self.notes.append(f"still running 60 s after the pause: {running} records, "
                              f"{len(self.tracker.live)} executions")
        return paused

    def leftovers(self) -> list[str]:
        """Processes of the jobs alive after every worker stopped."""
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("FAULTS_TAG") == self.tag:
                    found.append(f"pid {proc.pid} {' '.join(proc.cmdline())[:80]} "
                                 f"({proc.environ().get('CRONSWARM_RUN_ID')})")
        return found


def owned_names(prefix: str, workers: Sequence[str]) -> list[str]:
    """One job name per worker, owned by it (rendezvous hash over all the
    workers): every worker is some job's first claimant, so a fault on any
    worker meets ticks it was about to claim."""
    names: dict[str, str] = {}
    i = 0
    while len(names) < len(workers):
        name = f"{prefix}-{i}"
        owner = rendezvous_owner(name, [f"fw{k}" for k in range(len(OFFSETS))])
        if owner is not None and owner in workers and owner not in names:
            names[owner] = name
        i += 1
    return [names[w] for w in workers]


def job_document(job: JobPlan, witness: Path, tag: str) -> dict[str, Any]:
    command = (LONG_FORBID if job.forbid else EVERY_SECOND).format(
        witness=shlex.quote(str(witness)))
    doc: dict[str, Any] = {
        "name": job.name, "schedule": "* * * * * *" if job.period_s == 1
        else f"*/{job.period_s} * * * * *", "command": command, "shell": "/bin/bash",
        "overlap": "forbid" if job.forbid else "allow", "env": {"FAULTS_TAG": tag}}
    if job.forbid:
        doc["retry"] = {"attempts": 2, "delay": 1, "any_worker": True}
    return doc


async def wait_synced(store: EtcdStore, keys: Keyspace, count: int, timeout: float) -> None:
    """Until ``count`` workers report a measured clock within bounds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kvs, _ = await store.get_prefix(keys.workers)
        states = [ClockReport.from_dict(json.loads(kv.value).get("clock")) for kv in kvs]
        if sum(1 for s in states if s is not None and s.state is ClockState.OK) >= count:
            return
        await asyncio.sleep(0.5)  # workers rewrite their entry every stats interval
    raise RuntimeError(f"the workers' clocks were not synced within {timeout:.0f}s")


async def run(plan: Plan, tmp: Path) -> dict[str, Any]:
    h = Harness(plan, tmp)
    async with contextlib.AsyncExitStack() as stack:
        settings = await h.start(stack)
        keys = Keyspace(settings.key_prefix)
        admin = EtcdStore(settings.etcd_endpoints, timeout=settings.etcd_timeout)
        stack.push_async_callback(admin.close)
        logs = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database)
        stack.push_async_callback(logs.close)
        await logs.ensure_indexes()
        await wait_synced(admin, keys, len(OFFSETS), timeout=120)
        follower = asyncio.create_task(h.tracker.follow())
        stack.callback(follower.cancel)
        service = JobService(admin, logs, keys)
        for job in h.jobs:
            await service.create(Job.from_dict(job_document(job, h.witness, h.tag)),
                                 actor="faults")
        await asyncio.sleep(3)  # the jobs reach every worker's table
        await h.run_faults()
        paused = await h.settle(service, logs)
        codes = await h.stop_workers()
        assert h.master is not None
        await h.master.stop()
        await asyncio.sleep(1.5)  # a guardian's last sweep (it acts within a second)
        left = h.leftovers()
        docs = await logs.runs.find({}).to_list(None)
    # The last window's ticks end 2 s before the pause (a pause applies from
    # the next tick a worker has not yet claimed).
    last = h.windows[-1]
    h.windows[-1] = Window(last.name, last.fault, last.target, last.start_ns,
                           min(last.end_ns, paused - 2_000_000_000))
    runs = parse_witness(h.witness.read_text().splitlines(), h.tracker.exits)
    return report(h, runs, docs, left, codes, paused)


def report(h: Harness, runs: list[Execution], docs: list[dict[str, Any]], left: list[str],
           codes: list[int], paused: int) -> dict[str, Any]:
    verdicts = [analyse(w, h.jobs, runs, docs, h.freezes, open_end_ns=paused,
                        retry_cutoff_ns=paused - 3_000_000_000) for w in h.windows]
    rows = [{"window": w.name, "fault": w.fault, "target": w.target,
             "start": dt.datetime.fromtimestamp(w.start_ns / 1e9, dt.UTC).strftime("%H:%M:%S"),
             **v.row()} for w, v in zip(h.windows, verdicts, strict=True)]
    all_ = total(verdicts)
    orphans = len(left) + len(h.tracker.outlived)
    summary = {**all_.row(), "processes_left_behind": orphans,
               "stuck_running": sum(1 for d in docs if d["status"] == "running")}
    failed = {k: summary[k] for k in ("duplicates", "needless_attempts", "silent_misses",
                                       "silent_retry_misses", "overlaps",
                                       "processes_left_behind", "records_lost")
              if summary[k]}
    evidence = {f"{w.name} {w.fault} {w.target}": v.examples()
                for w, v in zip(h.windows, verdicts, strict=True) if v.examples()}
    if left or h.tracker.outlived:
        evidence["processes_left_behind"] = {"after_stop": left[:10],
                                             "outlived_worker": h.tracker.outlived[:10]}
    return {"benchmark": "faults", "mode": "short" if h.plan.short else "soak",
            "faults": h.plan.faults, "lease_ttl": h.plan.lease_ttl, "windows": rows,
            "total": summary, "failed": failed, "evidence": evidence,
            "worker_exit_codes": codes, "notes": h.notes, "tmp": str(h.tmp),
            "cpu_count": psutil.cpu_count(), "load_avg": os.getloadavg()}


COLUMNS = [("#", "window", 3), ("fault", "fault", 12), ("target", "target", 6),
           ("start", "start", 8), ("ticks", "ticks", 5), ("execs", "executions", 5),
           ("dup", "duplicates", 3), ("miss", "silent_misses", 4), ("ovl", "overlaps", 3),
           ("ovl-frz", "overlaps_frozen_worker", 7), ("no-rec", "records_lost", 6),
           ("retry-miss", "silent_retry_misses", 10), ("needless", "needless_attempts", 8),
           ("needless-frz", "needless_attempts_frozen_worker", 12),
           ("skip", "recorded_skipped", 4), ("lost", "recorded_lost", 4),
           ("killed", "recorded_killed", 6), ("failed", "recorded_failed", 6)]


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [" ".join(f"{title:>{width}}" for title, _, width in COLUMNS)]
    for row in rows:
        lines.append(" ".join(f"{row.get(key, 0)!s:>{width}}" for _, key, width in COLUMNS))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30,
                        help="length of the soak (ignored with --short)")
    parser.add_argument("--short", action="store_true",
                        help="each fault once, about 2 minutes of faults (CI)")
    parser.add_argument("--period", type=float,
                        help="seconds from one fault to the next (short 16, soak 45)")
    parser.add_argument("--lease-ttl", type=int,
                        help="the workers' CRONSWARM_LEASE_TTL (short 4, soak 10)")
    parser.add_argument("--delay", type=float, default=1.0,
                        help="latency added each way by the 'delay' partition (s)")
    parser.add_argument("--keep", type=Path,
                        help="keep the logs, witness file and data in this directory")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    plan = Plan.from_args(args)
    with contextlib.ExitStack() as stack:
        tmp = args.keep or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="faults-")))
        tmp.mkdir(parents=True, exist_ok=True)
        result = await run(plan, tmp)
    print()
    print(table([*result["windows"], {"window": "all", "fault": "total", "target": "-",
                                      "start": "-", **result["total"]}]))
    left = result["total"]["processes_left_behind"]
    print(f"processes left behind: {left}; run records still 'running': "
          f"{result['total']['stuck_running']}")
    for window, found in result["evidence"].items():
        print(f"  {window}: {json.dumps(found)}")
    print(json.dumps(result, default=_json_default))
    return 1 if result["failed"] else 0


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


if __name__ == "__main__":
    if not Path(LIBFAKETIME).exists():
        sys.exit(f"{LIBFAKETIME} is missing: apt-get install faketime "
                 "(or set CRONSWARM_FAKETIME_LIB)")
    code = 130
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        code = asyncio.run(main(parse_args()))
    sys.exit(code)
