"""On time by the cluster's clock (issue: faults): real worker processes whose
clocks are shifted with libfaketime measure their offset from the cluster,
start no run early, keep ownership spread by the rendezvous hash, and a worker
beyond the maximum offset claims nothing, shows unhealthy and alerts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from cronswarm.common import ClockReport, ClockState, Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.worker import rendezvous_owner
from tests import procs
from tests.apiclient import running_master
from tests.helpers import wait_for_count
from tests.receivers import webhook_channel, webhook_receiver
from tests.swarm import assert_once_per_tick, create_job, pause_and_settle, runs_of

pytestmark = pytest.mark.slow

# scripts/bootstrap.sh installs it (need_faketime) and says where.
LIBFAKETIME = os.environ.get("CRONSWARM_FAKETIME_LIB",
                             "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
EARLY_LIMIT_NS = 50_000_000  # no run may start more than 50 ms before its tick


def faked(offset_s: int) -> dict[str, str]:
    """Environment that shifts a worker's clock (not its jobs': they get a minimal one)."""
    assert Path(LIBFAKETIME).exists(), f"{LIBFAKETIME} is missing: apt-get install faketime"
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"{offset_s:+d}s"}


async def start_workers(settings: Settings, offsets: Mapping[str, int],
                        **env: str) -> dict[str, procs.Proc]:
    workers: dict[str, procs.Proc] = {}
    for wid, offset in offsets.items():
        workers[wid] = await procs.start("worker", settings, CRONSWARM_WORKER_ID=wid,
                                         **faked(offset), **env)
    for proc in workers.values():
        await proc.wait_for_line("ready with", timeout=60)
    return workers


async def wait_for_offsets(store: EtcdStore, keys: Keyspace,
                           done: Callable[[dict[str, ClockReport | None]], bool],
                           timeout: float = 60) -> dict[str, ClockReport | None]:
    """Follow the registry (each worker rewrites its entry every second) until
    the workers' clock reports satisfy ``done``."""
    reports: dict[str, ClockReport | None] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                kvs, revision = await store.get_prefix(keys.workers)
                reports = {kv.key[len(keys.workers):]:
                           ClockReport.from_dict(json.loads(kv.value).get("clock"))
                           for kv in kvs}
                if done(reports):
                    return reports
                async with contextlib.aclosing(
                        store.watch_prefix(keys.workers, revision + 1)) as changes:
                    await anext(changes)  # the next change of any worker's entry
    except TimeoutError:
        raise AssertionError(f"offsets never converged: {reports}") from None


def near(reports: dict[str, ClockReport | None], expected_s: Mapping[str, int],
         state: Mapping[str, ClockState], tolerance_ms: float = 100) -> bool:
    for wid, offset in expected_s.items():
        report = reports.get(wid)
        if report is None or report.state is not state[wid]:
            return False
        if abs(report.offset_ms - offset * 1000) > tolerance_ms:
            return False
    return True


def owned_names(workers: Sequence[str], per_worker: int = 1) -> dict[str, str]:
    """Job names whose rendezvous owners cover every worker: name -> owner."""
    names: dict[str, str] = {}
    count: Counter[str] = Counter()
    i = 0
    while min((count[w] for w in workers), default=0) < per_worker:
        name = f"tick-{i}"
        owner = rendezvous_owner(name, list(workers))
        assert owner is not None
        if count[owner] < per_worker:
            names[name] = owner
            count[owner] += 1
        i += 1
    return names


class StartWitness:
    """Each execution appends its run id, worker and its own real start time (ns)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def command(self) -> str:
        target = shlex.quote(str(self.path))
        return (f'echo "$CRONSWARM_RUN_ID#$CRONSWARM_ATTEMPT $CRONSWARM_WORKER $CRONSWARM_TICK '
                f'$(date +%s%N)" >> {target}')

    def lines(self) -> list[tuple[str, str, int, int]]:
        out = []
        for line in self.path.read_text().splitlines():
            record_id, worker, tick_ms, started_ns = line.split(" ")
            out.append((record_id, worker, int(tick_ms), int(started_ns)))
        return out


async def test_five_skewed_processes_run_on_the_cluster_clock_spread_by_owner(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    offsets = {"c0": -2, "c1": -1, "c2": 0, "c3": 1, "c4": 2}
    witness = StartWitness(tmp_path / "starts")
    # Above every skew: all five keep claiming, each on the cluster's time.
    workers = await start_workers(settings, offsets, CRONSWARM_MAX_CLOCK_OFFSET_MS="5000")
    try:
        ok = dict.fromkeys(offsets, ClockState.OK)
        reports = await wait_for_offsets(store, keys, lambda r: near(r, offsets, ok))
        jobs = owned_names(list(offsets))
        for name in jobs:
            await create_job(store, logs, settings, name=name, schedule="* * * * * *",
                             command=witness.command(), overlap="allow")
        for name in jobs:
            await wait_for_count(logs.runs, {"job": name, "status": "succeeded"},
                                 lambda n: n >= 20, timeout=120)
        for name in jobs:
            await pause_and_settle(store, logs, settings, name)
    finally:
        codes = await asyncio.gather(*(p.stop() for p in workers.values()))
    assert codes == [0] * len(workers), codes
    # Read once the workers have stopped: a tick claimed just before the
    # pause may start after the settle, and its record is written by then.
    docs = {name: await runs_of(logs, name) for name in jobs}
    lines = witness.lines()
    executions = Counter(record_id for record_id, *_ in lines)
    assert not [r for r, n in executions.items() if n > 1], "a tick ran twice"
    for name, runs in docs.items():
        assert_once_per_tick(runs)
        started = {d["_id"] for d in runs if d["status"] != "skipped"}
        assert started == {r for r in executions if r.startswith(f"{name}@")}
    early = [(r, (tick * 1_000_000 - ns) / 1e6) for r, _, tick, ns in lines
             if ns < tick * 1_000_000 - EARLY_LIMIT_NS]
    assert not early, f"started early (ms): {early}"
    by_worker = Counter(worker for _, worker, _, _ in lines)
    assert max(by_worker.values()) <= 0.6 * len(lines), by_worker
    by_owner = sum(worker == jobs[record_id.split("@")[0]] for record_id, worker, _, _ in lines)
    assert by_owner >= 0.8 * len(lines), (by_owner, len(lines), by_worker)
    lags = sorted((ns - tick * 1_000_000) / 1e6 for _, _, tick, ns in lines)
    print(f"offsets: { {w: r.offset_ms if r else None for w, r in reports.items()} }; "
          f"start lag ms min {lags[0]:.1f} median {lags[len(lags) // 2]:.1f} "
          f"max {lags[-1]:.1f}; runs by worker {dict(by_worker)}")


async def test_a_worker_beyond_the_maximum_offset_claims_nothing_and_alerts(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    admin_token: str, tmp_path: Path,
) -> None:
    settings = settings.with_overrides(alert_poll_interval=0.5)
    offsets = {"f0": 2, "f1": 0, "f2": 0}  # f0 is 2 s ahead; the others agree
    witness = StartWitness(tmp_path / "starts")
    # Owned by the fast worker: it would be first to claim every tick.
    name = next(n for n, owner in owned_names(list(offsets)).items() if owner == "f0")
    workers = await start_workers(settings, offsets)  # max offset: 500 ms (default)
    try:
        async with webhook_receiver() as hook, running_master(settings, admin_token) as api:
            resp = await api.call("POST", "/api/alerts/channels",
                                  json=webhook_channel(hook, default=True))
            assert resp.status == 201, await resp.text()
            states = {"f0": ClockState.OUT_OF_BOUNDS, "f1": ClockState.OK,
                      "f2": ClockState.OK}
            await wait_for_offsets(store, keys,
                                   lambda r: near(r, offsets, states, tolerance_ms=200))
            resp = await api.call("GET", "/api/workers")
            assert resp.status == 200
            health = {w["id"]: w["health"] for w in (await resp.json())["workers"]}
            assert health == {"f0": "clock_offset", "f1": "ok", "f2": "ok"}, health
            await create_job(store, logs, settings, name=name, schedule="* * * * * *",
                             command=witness.command(), overlap="allow")
            created = time.time()
            await wait_for_count(logs.runs, {"job": name, "status": "succeeded"},
                                 lambda n: n >= 8, timeout=60)
            await pause_and_settle(store, logs, settings, name)
            got = await hook.inbox.wait_for(
                lambda items: any(i["body"]["kind"] == "clock_offset" for i in items),
                timeout=30)
    finally:
        codes = await asyncio.gather(*(p.stop() for p in workers.values()))
    assert codes == [0, 0, 0], codes
    docs = await runs_of(logs, name)
    assert_once_per_tick(docs)
    assert docs and all(d["worker"] != "f0" for d in docs), [d["worker"] for d in docs]
    lines = witness.lines()
    assert lines and all(worker != "f0" for _, worker, _, _ in lines)
    assert all(tick / 1000 >= created - 1 for _, _, tick, _ in lines)
    [alert] = [i["body"] for i in got if i["body"]["kind"] == "clock_offset"]
    assert alert["fields"]["Worker"] == "f0", alert
