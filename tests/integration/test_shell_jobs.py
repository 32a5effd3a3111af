"""Shell jobs on an in-process worker over real etcd and MongoDB: kill, timeout,
run-as user, environment, processes left behind, the running view, big output."""

import asyncio
import json
import os
import pwd
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore, wait_deleted
from cronswarm.logstore import MongoLogStore
from tests.procs import PROCESS_TREE
from tests.workerkit import (
    Gate,
    alive,
    create_job,
    job_service,
    ms,
    running_worker,
    wait_exited,
    wait_final,
    wait_output,
)


def pids_in(output: bytes) -> set[int]:
    return {int(line.split()[1]) for line in output.decode().splitlines()
            if line.startswith("pid ")}


async def test_kill_stops_the_whole_tree_within_a_second(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="tree", command=PROCESS_TREE, kill_grace=10)
    async with running_worker(settings, store, logs) as worker:
        rid = await jobs.run_now("tree", actor="tests")
        record_id = f"{rid}#1"
        output = await wait_output(
            worker, record_id, lambda out: b"READY" in out and len(pids_in(out)) == 7)
        pids = pids_in(output)
        assert len(alive(pids)) == 7
        exited = asyncio.create_task(wait_exited(pids, timeout=30))
        requested = time.monotonic()
        await jobs.kill("tree", actor="token:ops(1)", target_run=rid)
        still = await exited
        latency = time.monotonic() - requested
        assert still == set()
        assert latency < 1.0, f"kill took {latency:.3f}s"
        doc = await wait_final(logs, record_id)
    assert alive(pids) == set()
    assert doc["status"] == "killed"
    assert doc["killed_by"] == "token:ops(1)"
    assert "killed" in doc["error"] and "SIGKILL" in doc["error"]  # the TERM-ignoring pair
    print(f"kill latency (request to last process exit): {latency * 1000:.0f} ms")


async def run_to_timeout(settings: Settings, store: EtcdStore, logs: MongoLogStore,
                         keys: Keyspace, command: str, kill_grace: float
                         ) -> tuple[dict[str, Any], bytes, float]:
    """Run once a job (printing two pids) with a 1 s timeout; returns its final
    record, its output and its duration in seconds."""
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="slow", command=command, timeout=1, kill_grace=kill_grace)
    async with running_worker(settings, store, logs) as worker:
        rid = await jobs.run_now("slow", actor="tests")
        output = await wait_output(worker, f"{rid}#1", lambda out: len(pids_in(out)) == 2)
        doc = await wait_final(logs, f"{rid}#1")
    return doc, output, (ms(doc["ended"]) - ms(doc["started"])) / 1000


async def test_timeout_of_a_job_ignoring_sigterm_ends_in_sigkill_after_the_grace(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    command = "trap '' TERM; echo \"pid $$\"; sleep 1000 & echo \"pid $!\"; wait"
    doc, output, duration = await run_to_timeout(settings, store, logs, keys, command, 1.5)
    assert doc["status"] == "timeout"
    assert doc["exit_code"] == -9  # SIGKILL, not SIGTERM
    assert doc["error"].startswith("timed out after 1s")
    assert "SIGKILLed" in doc["error"]
    assert doc["extra"]["sigkilled"] >= 1
    assert 1 + 1.5 - 0.05 <= duration < 1 + 1.5 + 1  # timeout, then the whole grace
    assert alive(pids_in(output)) == set()


async def test_timeout_of_a_job_that_obeys_sigterm_ends_without_the_grace(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    command = "echo \"pid $$\"; sleep 1000 & echo \"pid $!\"; wait"
    doc, output, duration = await run_to_timeout(settings, store, logs, keys, command, 20)
    assert doc["status"] == "timeout"
    assert doc["exit_code"] == -15  # SIGTERM was enough
    assert doc["error"].startswith("timed out after 1s")
    assert "SIGKILL" not in doc["error"]
    assert 1 - 0.05 <= duration < 1 + 1  # far less than the 20 s grace
    assert alive(pids_in(output)) == set()


async def test_processes_left_behind_are_stopped_when_the_job_ends(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    command = "sleep 1000 & echo \"pid $!\"; (setsid sleep 1000 & echo \"pid $!\"); echo done"
    await create_job(jobs, name="leaky", command=command)
    async with running_worker(settings, store, logs):
        rid = await jobs.run_now("leaky", actor="tests")
        doc = await wait_final(logs, f"{rid}#1")
    assert doc["status"] == "succeeded"
    assert doc["extra"]["leftover_processes"] == 2
    pids = pids_in(doc["output"].encode())
    assert len(pids) == 2
    assert alive(pids) == set()


async def test_run_as_user_and_minimal_environment(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRONSWARM_TEST_SECRET", "worker-only")  # in the worker's environment
    jobs = job_service(store, logs, keys)
    command = ('id -un; echo "ids=$(id -u):$(id -g):$(id -G)"; echo "home=$HOME"; '
               'echo "run=$CRONSWARM_RUN_ID job=$CRONSWARM_JOB '
               'tick=$CRONSWARM_TICK attempt=$CRONSWARM_ATTEMPT"; echo "mine=$MINE"; '
               'echo "secret=${CRONSWARM_TEST_SECRET:-unset}"; echo "cwd=$(pwd)"')
    await create_job(jobs, name="as-nobody", command=command, user="nobody", cwd="/tmp",
                     env={"MINE": "yes"})
    async with running_worker(settings, store, logs):
        rid = await jobs.run_now("as-nobody", actor="tests")
        doc = await wait_final(logs, f"{rid}#1")
    assert doc["status"] == "succeeded", (doc["error"], doc["output"])
    lines = doc["output"].splitlines()
    nobody = pwd.getpwnam("nobody")
    groups = " ".join(str(g) for g in os.getgrouplist("nobody", nobody.pw_gid))
    assert lines[0] == "nobody"
    assert lines[1] == f"ids={nobody.pw_uid}:{nobody.pw_gid}:{groups}"
    assert lines[2] == f"home={nobody.pw_dir}"
    tick = rid.rpartition("@")[2]
    assert lines[3] == f"run={rid} job=as-nobody tick={tick} attempt=1"
    assert lines[4] == "mine=yes"
    assert lines[5] == "secret=unset"  # the worker's own environment is not passed on
    assert lines[6] == "cwd=/tmp"


async def test_the_job_shell_runs_the_command(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    # $0 is the shell that runs the command; only bash sets $BASH_VERSION.
    command = 'echo "${BASH_VERSION:+bash} $0"'
    await create_job(jobs, name="in-bash", command=command, shell="/bin/bash")
    await create_job(jobs, name="in-sh", command=command)
    async with running_worker(settings, store, logs):
        docs = {}
        for name in ("in-bash", "in-sh"):
            rid = await jobs.run_now(name, actor="tests")
            docs[name] = await wait_final(logs, f"{rid}#1")
    assert docs["in-bash"]["status"] == "succeeded", docs["in-bash"]
    assert docs["in-bash"]["output"] == "bash /bin/bash\n"
    assert docs["in-sh"]["output"].endswith(" /bin/sh\n")  # the worker's default shell


async def test_unknown_run_as_user_fails_clearly(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="ghost", command="true", user="no-such-user-here")
    async with running_worker(settings, store, logs):
        rid = await jobs.run_now("ghost", actor="tests")
        doc = await wait_final(logs, f"{rid}#1")
    assert doc["status"] == "failed"
    assert doc["error"] == "no such user 'no-such-user-here' on this worker"


async def test_running_key_lives_exactly_as_long_as_the_run(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    jobs = job_service(store, logs, keys)
    gate = Gate(tmp_path)
    await create_job(jobs, name="held", command=f"echo started; {gate.wait_command}")
    try:
        async with running_worker(settings, store, logs) as worker:
            rid = await jobs.run_now("held", actor="tests")
            await wait_output(worker, f"{rid}#1", b"started")
            kv = await store.get(keys.running("held", rid))
            assert kv is not None
            info = json.loads(kv.value)
            assert (info["run_id"], info["worker"]) == (rid, worker.id)
            assert kv.lease == worker.lease.lease_id  # on the worker's lease
            assert [r["run_id"] for r in await jobs.running("held")] == [rid]
            gate.release()
            async with asyncio.timeout(30):
                await wait_deleted(store, keys.running("held", rid))
            doc = await wait_final(logs, f"{rid}#1")
            assert doc["status"] == "succeeded"
            assert await store.get(keys.lock("held")) is None
    finally:
        gate.close()


async def test_one_gib_of_output_keeps_memory_bounded(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    size = 1 << 30
    command = f"head -c {size} /dev/zero | tr '\\0' x; printf END"
    await create_job(jobs, name="firehose", command=command)
    me = psutil.Process()
    async with running_worker(settings, store, logs) as worker:
        before = me.memory_info().rss
        peak = before
        chunks = 0

        def sample(_: bytes) -> None:
            nonlocal peak, chunks
            chunks += 1
            if chunks % 256 == 0:  # every ~16 MiB
                peak = max(peak, me.memory_info().rss)

        rid = await jobs.run_now("firehose", actor="tests")
        feed = await asyncio.wait_for(worker.feeds.wait_feed(f"{rid}#1"), 30)
        feed.output.subscribe(sample)
        doc = await wait_final(logs, f"{rid}#1", timeout=110)
        peak = max(peak, me.memory_info().rss)
    growth = (peak - before) / (1 << 20)
    assert doc["status"] == "succeeded"
    assert doc["output_bytes"] == size + 3
    assert doc["truncated"] is True
    assert doc["output"] == "x" * 65536
    assert doc["output_tail"] == "x" * (65536 - 3) + "END"
    assert chunks > 1000  # the sampler really watched the stream
    assert growth < 50, f"RSS grew by {growth:.1f} MiB"
    print(f"1 GiB of output: RSS growth {growth:.1f} MiB")
