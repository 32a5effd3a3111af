"""Overlap policies, targets, run now, registry and shutdown, on real services."""

import asyncio
import contextlib
import itertools
import json
import signal
import time
from pathlib import Path

import psutil

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import CoordUnavailable, EtcdStore, KeyValue, wait_deleted
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService
from cronswarm.worker._scheduler import CLAIM_AHEAD_MS
from tests import procs
from tests.helpers import wait_for_count, wait_for_prefix
from tests.swarm import (
    Witness,
    assert_once_per_tick,
    create_job,
    pause_job,
    runs_of,
    start_member,
    swarm,
)
from tests.workerkit import running_worker


def spans(docs: list[dict]) -> list[tuple[float, float]]:
    return sorted((d["started"].timestamp(), d["ended"].timestamp()) for d in docs
                  if d.get("started") and d.get("ended"))


async def finish(store: EtcdStore, logs: MongoLogStore, settings: Settings, name: str,
                 *, kill: bool = False, witness: Witness | None = None) -> list:
    await pause_job(store, logs, settings, name)
    if kill:
        await JobService(store, logs, Keyspace(settings.key_prefix)).kill(name, actor="tests")
    await wait_for_count(logs.runs, {"job": name, "status": "running"}, lambda n: n == 0,
                         timeout=30)
    docs = await runs_of(logs, name)
    assert_once_per_tick(docs)
    if witness is not None:
        witness.assert_each_ran_once(docs)
    return docs


async def test_forbid_never_overlaps_and_records_skips(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, tmp_path: Path
) -> None:
    witness = Witness(tmp_path / "executions")
    async with swarm(settings, logs, 3):
        await create_job(store, logs, settings, name="slow", schedule="* * * * * *",
                         command=witness.command("sleep 2.5"), overlap="forbid")
        await wait_for_count(logs.runs, {"job": "slow", "status": "succeeded"},
                             lambda n: n >= 3, timeout=60)
        docs = await finish(store, logs, settings, "slow", witness=witness)
    ran = spans([d for d in docs if d["status"] == "succeeded"])
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(ran))
    skipped = [d for d in docs if d["status"] == "skipped"]
    assert len(skipped) >= 3
    assert all(d["extra"]["reason"] == "overlap" for d in skipped)


async def test_allow_overlaps(settings: Settings, store: EtcdStore, logs: MongoLogStore,
                              tmp_path: Path) -> None:
    witness = Witness(tmp_path / "executions")
    async with swarm(settings, logs, 3):
        await create_job(store, logs, settings, name="slow", schedule="* * * * * *",
                         command=witness.command("sleep 2.5"), overlap="allow")
        await wait_for_count(logs.runs, {"job": "slow", "status": "succeeded"},
                             lambda n: n >= 4, timeout=60)
        docs = await finish(store, logs, settings, "slow", witness=witness)
    ran = spans([d for d in docs if d["status"] == "succeeded"])
    overlapping = sum(1 for (_, a_end), (b_start, _) in itertools.pairwise(ran)
                      if b_start < a_end)
    assert overlapping >= 2
    assert not [d for d in docs if d["status"] == "skipped"]


async def test_replace_kills_the_running_one(
    settings: Settings, store: EtcdStore, logs: MongoLogStore
) -> None:
    async with swarm(settings, logs, 3):
        await create_job(store, logs, settings, name="slow", schedule="*/2 * * * * *",
                         command="sleep 30", overlap="replace", kill_grace=1)
        await wait_for_count(logs.runs, {"job": "slow", "status": "killed"},
                             lambda n: n >= 2, timeout=60)
        docs = await finish(store, logs, settings, "slow", kill=True)
    killed = [d for d in docs if d["status"] == "killed"
              and d["killed_by"] != "tests"]
    assert len(killed) >= 2
    assert all(d["killed_by"].startswith("replace:slow@") for d in killed)
    # Each run was stopped by the next one: the replacement started after it.
    by_tick = {d["run_id"]: d for d in docs}
    for d in killed:
        replacement = by_tick[d["killed_by"].removeprefix("replace:")]
        assert replacement["tick"] > d["tick"]
        assert replacement["started"] >= d["ended"]  # never two at once


async def test_targets_pin_a_job_and_fail_over(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, tmp_path: Path
) -> None:
    witness = Witness(tmp_path / "executions")
    eu1 = await start_member(settings, logs, "eu-1", labels={"zone": "eu"})
    us1 = await start_member(settings, logs, "us-1", labels={"zone": "us"})
    try:
        await create_job(store, logs, settings, name="pinned", schedule="* * * * * *",
                         command=witness.command(), targets={"zone": "eu"}, overlap="allow")
        await wait_for_count(logs.runs, {"job": "pinned", "worker": "eu-1"},
                             lambda n: n >= 3, timeout=30)
        await eu1.shutdown()
        eu2 = await start_member(settings, logs, "eu-2", labels={"zone": "eu"})
        try:
            await wait_for_count(logs.runs, {"job": "pinned", "worker": "eu-2",
                                             "status": "succeeded"},
                                 lambda n: n >= 3, timeout=30)
            docs = await finish(store, logs, settings, "pinned", witness=witness)
        finally:
            await eu2.shutdown()
    finally:
        await us1.shutdown()
        if not eu1.task.done():
            await eu1.shutdown()
    assert {d["worker"] for d in docs} <= {"eu-1", "eu-2"}


async def test_run_now_runs_once_on_one_worker(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    witness = Witness(tmp_path / "executions")
    async with swarm(settings, logs, 3):
        await create_job(store, logs, settings, name="manual", schedule="0 0 1 1 *",
                         command=witness.command("echo by hand"), enabled=False)
        service = JobService(store, logs, keys)
        run_id = await service.run_now("manual", actor="tests")
        await wait_for_count(logs.runs, {"job": "manual", "status": "succeeded"},
                             lambda n: n >= 1, timeout=30)
        await wait_deleted(store, keys.once("manual"))
        second = await service.run_now("manual", actor="tests")
        await wait_for_count(logs.runs, {"job": "manual", "status": "succeeded"},
                             lambda n: n >= 2, timeout=30)
    docs = await runs_of(logs, "manual")
    assert [d["run_id"] for d in docs] == [run_id, second]
    witness.assert_each_ran_once(docs)
    assert all(d["trigger"] == "run_now" and d["output"] == "by hand\n" for d in docs)


async def test_registry_shows_live_stats(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    async with swarm(settings, logs, 2, labels=[{"gpu": "yes"}]):
        kv = await store.get(keys.worker("w0"))
        assert kv is not None
        info = json.loads(kv.value)
        assert info["labels"] == {"gpu": "yes"}
        assert info["pid"] == psutil.Process().pid
        for field in ("host", "version", "cpu_percent", "rss_bytes", "load", "running",
                      "host_memory_percent"):
            assert field in info
        assert kv.lease != 0
        assert info["running"] == 0
        # The entry is refreshed every stats_interval (1 s here) and counts live runs.
        service = JobService(store, logs, keys)
        await create_job(store, logs, settings, name="busy", schedule="0 0 1 1 *",
                         command="sleep 30", enabled=False, targets={"gpu": "yes"})
        rid = await service.run_now("busy", actor="tests")

        def counts_the_run(items: dict[str, KeyValue]) -> bool:
            now = items.get("w0")
            return now is not None and json.loads(now.value)["running"] == 1 and (
                json.loads(now.value)["updated"] > info["updated"])

        await wait_for_prefix(store, keys.workers, counts_the_run, timeout=15)
        await service.kill("busy", actor="tests")
        await wait_for_count(logs.runs, {"_id": f"{rid}#1", "status": "killed"},
                             lambda n: n == 1, timeout=15)
    # Shut down: the registration went with the revoked lease.
    assert await store.get(keys.worker("w0")) is None


async def test_sigterm_drains_then_kills_and_records(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    member = await start_member(settings.with_overrides(shutdown_grace=1.0), logs, "solo")
    await create_job(store, logs, settings, name="long", schedule="* * * * * *",
                     command="sleep 60 & sleep 60; wait", kill_grace=1, overlap="forbid")
    await wait_for_count(logs.runs, {"job": "long", "status": "running"}, lambda n: n >= 1,
                         timeout=30)
    running = json.loads((await store.get_prefix(keys.running_of("long")))[0][0].value)
    children = []
    for child in psutil.Process().children(recursive=True):
        # This process is a subreaper (the worker in it): zombies of earlier
        # tests' orphans are its children too, and have no command line.
        with contextlib.suppress(psutil.Error):
            if "sleep" in " ".join(child.cmdline()):
                children.append(child)
    assert children
    async with asyncio.timeout(30):
        await member.shutdown()
    docs = await runs_of(logs, "long")
    killed = [d for d in docs if d["run_id"] == running["run_id"]]
    assert [d["status"] for d in killed] == ["killed"]
    assert killed[0]["killed_by"] == "worker:solo"
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive
    assert (await store.get_prefix(keys.running_of("long")))[0] == []
    assert await store.get(keys.worker("solo")) is None


async def test_sigterm_to_a_worker_process_stops_claiming_and_lets_runs_finish(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    witness = Witness(tmp_path / "executions")
    settings = settings.with_overrides(shutdown_grace=20.0)
    worker = await procs.start("worker", settings, CRONSWARM_WORKER_ID="drained")
    try:
        await worker.wait_for_line("ready with")
        await create_job(store, logs, settings, name="tail", schedule="* * * * * *",
                         command=witness.command("sleep 2.5; echo finished"), overlap="allow")
        await wait_for_count(logs.runs, {"job": "tail", "status": "running"},
                             lambda n: n >= 2, timeout=30)
        worker.proc.send_signal(signal.SIGTERM)
        await worker.wait_for_line("draining")
        draining = time.time()  # from here on the worker claims nothing
        code = await worker.stop(timeout=30)
    finally:
        await worker.stop(signal.SIGKILL)
    assert code == 0
    # Revoked at exit, not left to expire with the lease (3 s here).
    assert await store.get(keys.worker("drained")) is None
    assert (await store.get_prefix(keys.running_of("tail")))[0] == []
    docs = await runs_of(logs, "tail")
    witness.assert_each_ran_once(docs)
    assert len(docs) >= 2
    # Claimed before the signal (a tick is claimed up to CLAIM_AHEAD_MS before it is due).
    claimed_by = draining + CLAIM_AHEAD_MS / 1000
    assert all(d["tick"].timestamp() < claimed_by for d in docs), (draining, docs)
    # Every run in progress at the signal finished within the grace, none killed.
    assert [(d["status"], d["output"]) for d in docs] == [("succeeded", "finished\n")] * len(docs)


async def test_edits_pauses_and_deletes_take_effect_at_once(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    service = JobService(store, logs, keys)
    async with swarm(settings, logs, 2):
        await create_job(store, logs, settings, name="edited", schedule="* * * * * *",
                         command="echo v1", overlap="allow")
        await wait_for_count(logs.runs, {"job": "edited", "output": "v1\n"}, lambda n: n >= 2,
                             timeout=30)
        edited_at = time.time()
        await service.patch("edited", {"schedule": "*/3 * * * * *", "command": "echo v2"},
                            actor="tests", if_match=None)
        await wait_for_count(logs.runs, {"job": "edited", "output": "v2\n"}, lambda n: n >= 2,
                             timeout=30)
        await service.set_enabled("edited", False, actor="tests")
        paused_at = time.time()
        await service.set_enabled("edited", True, actor="tests")
        await wait_for_count(logs.runs, {"job": "edited", "output": "v2\n"}, lambda n: n >= 3,
                             timeout=30)
        await service.delete("edited", actor="tests")
        deleted_at = time.time()
        # Another job proves the workers are still scheduling after the delete.
        await create_job(store, logs, settings, name="witness", schedule="* * * * * *",
                         command="true", overlap="allow")
        await wait_for_count(logs.runs, {"job": "witness", "status": "succeeded"},
                             lambda n: n >= 3, timeout=30)
    docs = await runs_of(logs, "edited")
    assert_once_per_tick(docs)
    v2 = [d for d in docs if d["output"] == "v2\n"]
    assert all(int(d["tick"].timestamp()) % 3 == 0 for d in v2)
    assert all(d["tick"].timestamp() > edited_at - 1 for d in v2)
    assert not [d for d in docs if d["output"] == "v1\n" and d["tick"].timestamp() > edited_at + 1]
    assert not [d for d in docs if d["tick"].timestamp() > deleted_at + 1]
    # Re-enabling starts from now: the paused interval is not caught up.
    assert not [d for d in docs if d["trigger"] == "catch_up"]
    assert paused_at < deleted_at


class NoKillerPuts(EtcdStore):
    """etcd that takes everything but this worker's kill requests (a member
    failing for the whole time the replace policy tries to stop a run)."""

    def __init__(self, endpoints: list[str], keys: Keyspace) -> None:
        super().__init__(endpoints)
        self.keys = keys
        self.refused = 0

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        if key.startswith(self.keys.killer_dir):
            self.refused += 1
            raise CoordUnavailable("test: etcd unreachable")
        return await super().put(key, value, lease=lease)


async def test_replace_that_cannot_ask_the_old_run_to_stop_records_its_tick(
    settings: Settings, store: EtcdStore, logs: MongoLogStore
) -> None:
    keys = Keyspace(settings.key_prefix)
    faulty = NoKillerPuts(settings.etcd_endpoints, keys)
    try:
        async with running_worker(settings, faulty, logs, worker_id="wr"):
            await create_job(store, logs, settings, name="stubborn", schedule="*/2 * * * * *",
                             command="sleep 30", overlap="replace", kill_grace=0)
            await wait_for_count(logs.runs, {"job": "stubborn", "status": "skipped",
                                             "extra.reason": "replace_unreachable"},
                                 lambda n: n >= 1, timeout=60)
            docs = await finish(store, logs, settings, "stubborn", kill=True)
    finally:
        await faulty.close()
    assert faulty.refused >= 1
    skipped = [d for d in docs if d["status"] == "skipped"]
    assert skipped and all(d["extra"]["reason"] == "replace_unreachable" for d in skipped)
    assert all("could not ask stubborn@" in d["error"] for d in skipped)
    assert_once_per_tick(docs)
    ticks = sorted(int(d["tick"].timestamp()) for d in docs)
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 2)), "a claimed tick has no record"
