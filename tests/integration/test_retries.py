"""Retries on real etcd and MongoDB: attempts and delays follow the policy, only
listed exit codes retry, and ``any_worker`` hands the next attempt to another worker."""

import asyncio
import contextlib
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

from cronswarm.common import Keyspace, RetryRequest, Settings, SystemClock
from cronswarm.coord import (
    Compare,
    CoordUnavailable,
    Delete,
    EtcdStore,
    Put,
    TxnOp,
    TxnResult,
    wait_deleted,
)
from cronswarm.logstore import MongoLogStore
from cronswarm.master._unclaimed import UnclaimedRequests
from cronswarm.worker import LogWriter, Worker
from tests.helpers import wait_for_count
from tests.workerkit import (
    Gate,
    create_job,
    job_service,
    ms,
    running_worker,
    synced,
    wait_final,
    wait_output,
)

TOLERANCE_MS = 1500  # scheduling slack on a busy machine; delays are never shorter


async def test_attempts_and_backoff_delays_match_the_policy(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    policy = {"attempts": 4, "delay": 0.3, "multiplier": 2, "max_delay": 0.8, "jitter": 0,
              "on_exit_codes": [3]}
    await create_job(jobs, name="flaky", command='echo "try $CRONSWARM_ATTEMPT"; exit 3',
                     retry=policy)
    async with running_worker(settings, store, logs):
        rid = await jobs.run_now("flaky", actor="tests")
        docs = [await wait_final(logs, f"{rid}#{n}") for n in (1, 2, 3, 4)]
        async with asyncio.timeout(30):
            await wait_deleted(store, keys.running("flaky", rid))  # no fifth attempt
    assert await logs.runs.count_documents({"run_id": rid}) == 4
    assert [d["attempt"] for d in docs] == [1, 2, 3, 4]
    assert [d["status"] for d in docs] == ["failed"] * 4
    assert [d["exit_code"] for d in docs] == [3] * 4
    assert [d["output"] for d in docs] == [f"try {n}\n" for n in (1, 2, 3, 4)]
    assert [d["trigger"] for d in docs] == ["run_now", "retry", "retry", "retry"]
    assert len({d["tick"] for d in docs}) == 1  # the same tick: one run, four attempts
    gaps = [ms(later["started"]) - ms(earlier["ended"]) for earlier, later in pairwise(docs)]
    for gap, expected in zip(gaps, (300, 600, 800), strict=True):  # capped at 0.8
        assert expected <= gap <= expected + TOLERANCE_MS, (gaps, expected)


async def test_only_listed_exit_codes_retry(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    policy = {"attempts": 3, "delay": 0.1, "jitter": 0, "on_exit_codes": [75]}
    await create_job(jobs, name="other-code", command="exit 4", retry=policy)
    await create_job(jobs, name="timeouts", command="sleep 30", timeout=0.3, kill_grace=0,
                     retry=policy)
    async with running_worker(settings, store, logs):
        for name in ("other-code", "timeouts"):
            rid = await jobs.run_now(name, actor="tests")
            doc = await wait_final(logs, f"{rid}#1")
            async with asyncio.timeout(30):
                await wait_deleted(store, keys.running(name, rid))  # the run is over
            assert await logs.runs.count_documents({"run_id": rid}) == 1, name
            assert doc["status"] == ("failed" if name == "other-code" else "timeout")


async def test_a_kill_between_attempts_ends_the_run(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="doomed", command="exit 1",
                     retry={"attempts": 5, "delay": 60, "max_delay": 60})
    async with running_worker(settings, store, logs):
        rid = await jobs.run_now("doomed", actor="tests")
        await wait_final(logs, f"{rid}#1")
        await jobs.kill("doomed", actor="tests", target_run=rid)
        async with asyncio.timeout(10):  # not 60 s: the backoff wait is cut short
            await wait_deleted(store, keys.running("doomed", rid))
    assert await logs.runs.count_documents({"run_id": rid}) == 1


async def test_any_worker_hands_the_next_attempt_to_another_worker(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    command = '[ "$CRONSWARM_ATTEMPT" -ge 3 ] || exit 3; echo "done on $CRONSWARM_WORKER"'
    await create_job(jobs, name="roamer", command=command,
                     retry={"attempts": 3, "delay": 0.3, "jitter": 0, "any_worker": True})
    async with (
        running_worker(settings, store, logs, worker_id="wa") as wa,
        running_worker(settings, store, logs, worker_id="wb") as wb,
    ):
        for worker in (wa, wb):
            async with asyncio.timeout(30):
                await worker.workers.wait_for(lambda w=worker: len(w.workers.items) == 2)
        await synced(wa, wb)
        rid = await jobs.run_now("roamer", actor="tests")
        docs = [await wait_final(logs, f"{rid}#{n}") for n in (1, 2, 3)]
        async with asyncio.timeout(30):
            await wait_deleted(store, keys.running("roamer", rid))
        leftovers, _ = await store.get_prefix(keys.retry_dir)
        assert leftovers == []
        assert await store.get(keys.lock("roamer")) is None
    workers = [d["worker"] for d in docs]
    assert workers[0] != workers[1] and workers[1] != workers[2]  # each retry moved
    assert [d["status"] for d in docs] == ["failed", "failed", "succeeded"]
    assert docs[2]["output"] == f"done on {workers[2]}\n"
    assert [d["trigger"] for d in docs] == ["run_now", "retry", "retry"]
    for earlier, later in pairwise(docs):
        gap = ms(later["started"]) - ms(earlier["ended"])
        assert 300 <= gap <= 300 + TOLERANCE_MS + 1000 * settings.handoff_delay, gap


async def test_without_any_worker_retries_stay_on_the_same_worker(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="homebody", command='[ "$CRONSWARM_ATTEMPT" -ge 2 ] || exit 3',
                     retry={"attempts": 2, "delay": 0.1, "jitter": 0})
    async with (
        running_worker(settings, store, logs, worker_id="wa") as wa,
        running_worker(settings, store, logs, worker_id="wb"),
    ):
        async with asyncio.timeout(30):
            await wa.workers.wait_for(lambda: len(wa.workers.items) == 2)
        rid = await jobs.run_now("homebody", actor="tests")
        docs = [await wait_final(logs, f"{rid}#{n}") for n in (1, 2)]
    assert docs[0]["worker"] == docs[1]["worker"]
    assert docs[1]["status"] == "succeeded"


async def test_a_retry_nobody_takes_runs_where_it_failed(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    jobs = job_service(store, logs, keys)
    gate = Gate(tmp_path)
    command = f'[ "$CRONSWARM_ATTEMPT" -ge 2 ] || {{ echo waiting; {gate.wait_command}; exit 3; }}'
    await create_job(jobs, name="orphaned", command=command, misfire_window=0.5,
                     retry={"attempts": 2, "delay": 0.2, "jitter": 0, "any_worker": True})
    try:
        async with running_worker(settings, store, logs) as worker:
            rid = await jobs.run_now("orphaned", actor="tests")
            await wait_output(worker, f"{rid}#1", b"waiting")
            await jobs.delete("orphaned", actor="tests")  # no worker can take the retry now
            async with asyncio.timeout(30):
                await worker.jobs.wait_for(lambda: "orphaned" not in worker.jobs.items)
            gate.release()
            first = await wait_final(logs, f"{rid}#1")
            second = await wait_final(logs, f"{rid}#2")
            async with asyncio.timeout(30):
                await wait_deleted(store, keys.running("orphaned", rid))
            leftovers, _ = await store.get_prefix(keys.retry_dir)
            assert leftovers == []
    finally:
        gate.close()
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    assert second["worker"] == first["worker"]
    gap = ms(second["started"]) - ms(first["ended"])
    assert gap >= 200 + 500  # the delay, then the misfire window waiting for a taker


async def test_a_retry_goes_only_to_workers_matching_the_job_targets(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="zoned", command='[ "$CRONSWARM_ATTEMPT" -ge 2 ] || exit 3',
                     targets={"zone": "a"},
                     retry={"attempts": 2, "delay": 0.1, "jitter": 0, "any_worker": True})
    async with (
        running_worker(settings, store, logs, worker_id="a1", worker_labels={"zone": "a"}) as a1,
        running_worker(settings, store, logs, worker_id="b1", worker_labels={"zone": "b"}),
        running_worker(settings, store, logs, worker_id="a2", worker_labels={"zone": "a"}) as a2,
    ):
        for worker in (a1, a2):
            async with asyncio.timeout(30):
                await worker.workers.wait_for(lambda w=worker: len(w.workers.items) == 3)
        await synced(a1, a2)
        rid = await jobs.run_now("zoned", actor="tests")
        docs = [await wait_final(logs, f"{rid}#{n}") for n in (1, 2)]
    assert {docs[0]["worker"], docs[1]["worker"]} == {"a1", "a2"}
    assert docs[1]["status"] == "succeeded"


class LosingOfferReplies(EtcdStore):
    """etcd whose reply to this worker's first retry offer is lost after the
    offer committed (the request is in etcd; the origin cannot tell)."""

    def __init__(self, endpoints: Sequence[str], keys: Keyspace) -> None:
        super().__init__(endpoints)
        self.keys = keys
        self.lost = 0

    async def txn(self, compare: Sequence[Compare], success: Sequence[TxnOp],
                  failure: Sequence[TxnOp] = ()) -> TxnResult:
        result = await super().txn(compare, success, failure)
        offer = any(isinstance(op, Put) and op.key.startswith(self.keys.retry_dir)
                    for op in success)
        if result.succeeded and offer and not self.lost:
            self.lost += 1
            raise CoordUnavailable("test: reply lost")
        return result


async def test_a_retry_offer_whose_reply_is_lost_runs_once(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    jobs = job_service(store, logs, keys)
    witness = tmp_path / "witness"
    command = (f'echo "$CRONSWARM_ATTEMPT $CRONSWARM_WORKER" >> {witness}; '
               '[ "$CRONSWARM_ATTEMPT" -ge 2 ] || exit 3')
    await create_job(jobs, name="offered", command=command,
                     retry={"attempts": 2, "delay": 0.3, "jitter": 0, "any_worker": True})
    stores = [LosingOfferReplies(settings.etcd_endpoints, keys) for _ in range(2)]
    try:
        async with (
            running_worker(settings, stores[0], logs, worker_id="wa") as wa,
            running_worker(settings, stores[1], logs, worker_id="wb") as wb,
        ):
            for worker in (wa, wb):
                async with asyncio.timeout(30):
                    await worker.workers.wait_for(lambda w=worker: len(w.workers.items) == 2)
            await synced(wa, wb)
            rid = await jobs.run_now("offered", actor="tests")
            first = await wait_final(logs, f"{rid}#1")
            second = await wait_final(logs, f"{rid}#2")
            async with asyncio.timeout(30):
                await wait_deleted(store, keys.running("offered", rid))
                for worker in (wa, wb):  # every run of this process has ended
                    await worker.runs_idle.wait()
    finally:
        for faulty in stores:
            await faulty.close()
    assert sum(s.lost for s in stores) == 1
    lines = witness.read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == ["1", "2"], lines  # attempt 2 once
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    assert second["worker"] != first["worker"]  # the committed offer was taken
    assert await store.get(keys.lock("offered")) is None


async def test_every_attempt_runs_where_it_failed_when_nobody_takes_the_offers(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace, tmp_path: Path
) -> None:
    jobs = job_service(store, logs, keys)
    gate = Gate(tmp_path)
    command = (f'[ "$CRONSWARM_ATTEMPT" -ge 2 ] || {{ echo waiting; {gate.wait_command}; }}; '
               'exit 3')
    await create_job(jobs, name="forsaken", command=command, misfire_window=0.3,
                     retry={"attempts": 3, "delay": 0.1, "jitter": 0, "any_worker": True})
    try:
        async with running_worker(settings, store, logs) as worker:
            rid = await jobs.run_now("forsaken", actor="tests")
            await wait_output(worker, f"{rid}#1", b"waiting")
            await jobs.delete("forsaken", actor="tests")  # no worker can take a retry now
            async with asyncio.timeout(30):
                await worker.jobs.wait_for(lambda: "forsaken" not in worker.jobs.items)
            gate.release()
            # Each offer is withdrawn after the misfire window and kept here.
            docs = [await wait_final(logs, f"{rid}#{n}") for n in (1, 2, 3)]
            async with asyncio.timeout(30):
                await wait_deleted(store, keys.running("forsaken", rid))
    finally:
        gate.close()
    assert [d["status"] for d in docs] == ["failed"] * 3
    assert len({d["worker"] for d in docs}) == 1


class DrainingOnRetryClaims(EtcdStore):
    """etcd of a worker that is asked to stop just as it claims a retry, and
    whose claim's reply comes back late: after its log writer closed, unless
    the worker waits for that reply (at most ``LATE_REPLY_S``)."""

    LATE_REPLY_S = 3.0

    def __init__(self, endpoints: Sequence[str], keys: Keyspace) -> None:
        super().__init__(endpoints)
        self.keys = keys
        self.stop = asyncio.Event()
        self.writer_closed = asyncio.Event()
        self.claimed = 0

    def watch_close(self, writer: LogWriter) -> None:
        close = writer.close

        async def closing() -> None:
            await close()
            self.writer_closed.set()

        writer.close = closing  # type: ignore[method-assign]

    async def txn(self, compare: Sequence[Compare], success: Sequence[TxnOp],
                  failure: Sequence[TxnOp] = ()) -> TxnResult:
        claim = any(isinstance(op, Delete) and op.key.startswith(self.keys.retry_dir)
                    for op in success) and compare and compare[0].target == "mod"
        if not claim:
            return await super().txn(compare, success, failure)
        self.stop.set()  # the worker starts draining
        result = await super().txn(compare, success, failure)
        self.claimed += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.LATE_REPLY_S):
                await self.writer_closed.wait()
        return result


async def test_a_retry_claimed_as_the_worker_drains_runs_and_is_recorded(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
) -> None:
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="handed", command='[ "$CRONSWARM_ATTEMPT" -ge 2 ] || exit 3',
                     retry={"attempts": 2, "delay": 0.3, "jitter": 0, "any_worker": True})
    faulty = [DrainingOnRetryClaims(settings.etcd_endpoints, keys) for _ in range(2)]
    workers: list[Worker] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for i, etcd in enumerate(faulty):
            own = settings.with_overrides(spool_dir=f"{settings.spool_dir}/d{i}")
            writer = LogWriter.open(logs, own)
            etcd.watch_close(writer)
            worker = Worker(own, etcd, writer, worker_id=f"d{i}")
            workers.append(worker)
            tasks.append(asyncio.create_task(worker.run(etcd.stop)))
        async with asyncio.timeout(30):
            for worker in workers:
                await worker.ready.wait()
                await worker.workers.wait_for(lambda w=worker: len(w.workers.items) == 2)
        await synced(*workers)
        rid = await jobs.run_now("handed", actor="tests")
        first = await wait_final(logs, f"{rid}#1")
        second = await wait_final(logs, f"{rid}#2")
    finally:
        for etcd in faulty:
            etcd.stop.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*tasks)
        for etcd in faulty:
            await etcd.close()
    assert sum(etcd.claimed for etcd in faulty) == 1
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    assert second["worker"] != first["worker"]


async def test_the_retry_of_a_lost_run_waits_for_a_newer_run_to_free_the_lock(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
) -> None:
    jobs = job_service(store, logs, keys)
    await create_job(jobs, name="locked", command="echo retried", overlap="forbid",
                     retry={"attempts": 2, "delay": 0.1, "jitter": 0, "any_worker": True})
    newer = await store.grant_lease(30)  # a newer run's lock, on its worker's lease
    await store.put(keys.lock("locked"), b'{"run_id": "locked@2000"}', lease=newer)
    async with running_worker(settings, store, logs, worker_id="taker") as worker:
        await synced(worker)
        # As the elected master asks for the next attempt of a lost run.
        request = RetryRequest("locked@1000", "locked", 1000, 2, ms_now(), "leader:tests",
                               lost=True)
        lease = await store.grant_lease(60)
        await store.put(keys.retry("locked", "locked@1000"), request.encode(), lease=lease)
        async with asyncio.timeout(30):  # seen, and not claimable yet
            await worker.retries.mirror.wait_for(
                lambda: "locked/locked@1000" in worker.retries.mirror.items)
        assert await logs.get_run("locked@1000#2") is None
        await store.revoke_lease(newer)  # the newer run ends
        doc = await wait_final(logs, "locked@1000#2")
    assert (doc["status"], doc["output"], doc["trigger"]) == ("succeeded", "retried\n", "retry")


async def test_a_lost_runs_retry_nobody_could_take_is_recorded_when_it_expires(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
) -> None:
    unclaimed = UnclaimedRequests(store, logs, keys, SystemClock())
    task = asyncio.create_task(unclaimed.run())
    try:
        async with asyncio.timeout(30):
            await unclaimed.retries.ready.wait()
        request = RetryRequest("gone@1000", "gone", 1000, 2, ms_now(), "leader:tests",
                               lost=True)
        lease = await store.grant_lease(60)
        await store.put(keys.retry("gone", "gone@1000"), request.encode(), lease=lease)
        await store.revoke_lease(lease)  # expired: nobody took it
        await wait_for_count(logs.runs, {"_id": "gone@1000#2"}, lambda n: n == 1, timeout=30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    doc = await logs.runs.find_one({"_id": "gone@1000#2"})
    assert doc is not None
    assert (doc["status"], doc["trigger"], doc["extra"]["reason"]) == (
        "skipped", "retry", "retry_unclaimed")


def ms_now() -> int:
    return SystemClock().now_ms()
