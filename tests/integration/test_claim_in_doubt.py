"""A claim whose reply is lost, and etcd then unreachable for longer than the
claim's own retries: the worker finds out on its next plan whether the claim
committed (in the key, or in its history when the token has moved on since),
so its tick is run or recorded, never left without a record."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from cronswarm.common import Keyspace, Settings, decode_tick
from cronswarm.coord import Compare, CoordUnavailable, EtcdStore, TxnOp, TxnResult
from cronswarm.logstore import MongoLogStore
from cronswarm.worker import LogWriter, Worker, rendezvous_owner
from cronswarm.worker._scheduler import CLAIM_AHEAD_MS
from tests.helpers import wait_for_count, wait_for_prefix
from tests.swarm import (
    Member,
    assert_every_second_once,
    assert_once_per_tick,
    create_job,
    pause_and_settle,
    runs_of,
    start_member,
)

BLACKOUT_S = 3.0  # longer than a claim's 2 s of retries


class LosingReplies(EtcdStore):
    """etcd whose reply to one chosen transaction is lost after it committed;
    every transaction then fails for ``BLACKOUT_S`` (the member is unreachable)."""

    def __init__(self, endpoints: Sequence[str], lose: Callable[[Sequence[Compare]], bool]
                 ) -> None:
        super().__init__(endpoints)
        self.lose = lose
        self.lost: list[bytes] = []  # the tokens whose reply was lost
        self.unreachable_until = 0.0

    def black_out(self, seconds: float) -> None:
        self.unreachable_until = asyncio.get_running_loop().time() + seconds

    async def txn(self, compare: Sequence[Compare], success: Sequence[TxnOp],
                  failure: Sequence[TxnOp] = ()) -> TxnResult:
        if asyncio.get_running_loop().time() < self.unreachable_until:
            raise CoordUnavailable("test: etcd unreachable")
        result = await super().txn(compare, success, failure)
        if result.succeeded and not self.lost and self.lose(compare):
            self.lost.append(next(op.value for op in success if hasattr(op, "value")))
            self.black_out(BLACKOUT_S)
            raise CoordUnavailable("test: reply lost")
        return result


@asynccontextmanager
async def faulty_worker(settings: Settings, logs: MongoLogStore, store: LosingReplies
                        ) -> AsyncIterator[Worker]:
    own = settings.with_overrides(worker_id="w0", spool_dir=f"{settings.spool_dir}/w0")
    worker = Worker(own, store, LogWriter.open(logs, own))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(20):
            await worker.ready.wait()
        yield worker
    finally:
        stop.set()
        await task
        await store.close()


def job_owned_by(worker: str, workers: Sequence[str]) -> str:
    return next(name for name in (f"doubt-{i}" for i in range(100))
                if rendezvous_owner(name, workers) == worker)


def is_claim_of(keys: Keyspace, name: str, op: str) -> Callable[[Sequence[Compare]], bool]:
    def check(compare: Sequence[Compare]) -> bool:
        return bool(compare) and compare[0].key == keys.last(name) and compare[0].op == op
    return check


async def test_a_claim_committed_without_reply_runs_once_though_others_claimed_since(
    settings: Settings, logs: MongoLogStore,
) -> None:
    keys = Keyspace(settings.key_prefix)
    name = job_owned_by("w0", ["w0", "w1"])
    armed = asyncio.Event()
    tick_claim = is_claim_of(keys, name, "<")
    store = LosingReplies(settings.etcd_endpoints, lambda c: armed.is_set() and tick_claim(c))
    other: Member | None = None
    async with faulty_worker(settings, logs, store) as worker:
        try:
            other = await start_member(settings, logs, "w1")
            admin = EtcdStore(settings.etcd_endpoints)
            try:
                await create_job(admin, logs, settings, name=name, schedule="* * * * * *",
                                 command="true", overlap="allow", misfire="run_all")
                await wait_for_count(logs.runs, {"job": name, "status": "succeeded"},
                                     lambda n: n >= 3, timeout=30)
                caught_up = {"job": name, "status": "succeeded", "trigger": "catch_up"}
                before = await logs.runs.count_documents(caught_up)
                armed.set()  # w0 (the owner) loses the reply to its next claim
                # While w0 cannot reach etcd, w1 claims the next ticks, so the
                # token has moved on when w0 asks whether its claim committed.
                await wait_for_count(logs.runs, caught_up, lambda n: n > before, timeout=30)
                await pause_and_settle(admin, logs, settings, name)
            finally:
                await admin.close()
        finally:
            if other is not None:
                await other.shutdown()
        counters = worker.counters
    docs = await runs_of(logs, name)
    assert_every_second_once(docs)
    assert len(store.lost) == 1
    lost_tick = decode_tick(store.lost[0])
    [record] = [d for d in docs if d["tick"].timestamp() * 1000 == lost_tick]
    assert (record["worker"], record["status"], record["trigger"]) == (
        "w0", "succeeded", "catch_up")
    # Run once w0 could tell, not on time (its claim went out CLAIM_AHEAD_MS early).
    assert record["lag"] >= BLACKOUT_S - 0.5 - CLAIM_AHEAD_MS / 1000
    later = [d for d in docs if d["tick"].timestamp() * 1000 > lost_tick]
    assert any(d["worker"] == "w1" for d in later)  # the token had moved on
    assert counters["claim_errors"] >= 1


async def test_a_skip_claim_committed_without_reply_is_recorded(
    settings: Settings, logs: MongoLogStore,
) -> None:
    keys = Keyspace(settings.key_prefix)
    name = "doubtful-skip"
    # Armed once the job runs: the first compare on the token's bytes is the
    # claim of the job's start (its start marker), not a skip.
    armed = asyncio.Event()
    skip_claim = is_claim_of(keys, name, "==")
    store = LosingReplies(settings.etcd_endpoints, lambda c: armed.is_set() and skip_claim(c))
    admin = EtcdStore(settings.etcd_endpoints)
    async with faulty_worker(settings, logs, store) as worker:
        try:
            await create_job(admin, logs, settings, name=name, schedule="* * * * * *",
                             command="true", overlap="allow", misfire="skip")
            await wait_for_count(logs.runs, {"job": name, "status": "succeeded"},
                                 lambda n: n >= 3, timeout=30)
            armed.set()
            # Ticks go by unclaimed; then the claim that skips them loses its reply.
            store.black_out(BLACKOUT_S)
            await wait_for_count(logs.runs, {"job": name, "status": "skipped"},
                                 lambda n: n >= 2, timeout=30)
            await pause_and_settle(admin, logs, settings, name)
        finally:
            await admin.close()
        counters = worker.counters
    docs = await runs_of(logs, name)
    assert_every_second_once(docs)
    assert len(store.lost) == 1
    until = decode_tick(store.lost[0])
    doubted = [d for d in docs if d["status"] == "skipped"
               and d["extra"]["skipped_until"] == until]
    assert len(doubted) == 1, "the skip claim that committed without reply has no record"
    assert doubted[0]["extra"]["skipped_ticks"] >= 2
    assert counters["claim_errors"] >= 1


class LosingReplyThenLagging(EtcdStore):
    """etcd whose reply to one chosen claim is lost after it committed; the
    claim's retry then reaches etcd only after another worker has claimed a
    later tick (a slow failover), so the token no longer names us."""

    def __init__(self, endpoints: Sequence[str], keys: Keyspace, name: str,
                 lose: Callable[[Sequence[Compare]], bool]) -> None:
        super().__init__(endpoints)
        self.keys = keys
        self.name = name
        self.lose = lose
        self.lost: list[bytes] = []
        self.retry_waited = False

    async def txn(self, compare: Sequence[Compare], success: Sequence[TxnOp],
                  failure: Sequence[TxnOp] = ()) -> TxnResult:
        if self.lost and not self.retry_waited and self.lose(compare):
            self.retry_waited = True
            lost_tick = decode_tick(self.lost[0])
            last = self.keys.last(self.name)
            await wait_for_prefix(  # the key itself is the mirror's item ""
                self, last, lambda items: "" in items
                and decode_tick(items[""].value) > lost_tick, timeout=30)
        result = await super().txn(compare, success, failure)
        if result.succeeded and not self.lost and self.lose(compare):
            self.lost.append(next(op.value for op in success if hasattr(op, "value")))
            raise CoordUnavailable("test: reply lost")
        return result


async def test_a_claim_whose_retry_finds_a_later_tick_claimed_runs_once(
    settings: Settings, logs: MongoLogStore,
) -> None:
    keys = Keyspace(settings.key_prefix)
    name = job_owned_by("w0", ["w0", "w1"])
    armed = asyncio.Event()
    tick_claim = is_claim_of(keys, name, "<")
    store = LosingReplyThenLagging(settings.etcd_endpoints, keys, name,
                                   lambda c: armed.is_set() and tick_claim(c))
    other: Member | None = None
    async with faulty_worker(settings, logs, store):
        try:
            other = await start_member(settings, logs, "w1")
            admin = EtcdStore(settings.etcd_endpoints)
            try:
                await create_job(admin, logs, settings, name=name, schedule="* * * * * *",
                                 command="true", overlap="forbid", misfire="run_all")
                await wait_for_count(logs.runs, {"job": name, "status": "succeeded"},
                                     lambda n: n >= 3, timeout=30)
                armed.set()  # w0 loses the reply to its next claim, retries late
                await wait_for_count(logs.runs, {"job": name, "worker": "w1"},
                                     lambda n: n >= 1, timeout=30)
                so_far = len(await runs_of(logs, name))
                await wait_for_count(logs.runs, {"job": name, "status": "succeeded"},
                                     lambda n: n >= so_far + 3, timeout=30)
                await pause_and_settle(admin, logs, settings, name)
            finally:
                await admin.close()
        finally:
            if other is not None:
                await other.shutdown()
    assert store.retry_waited and len(store.lost) == 1
    docs = await runs_of(logs, name)
    assert_every_second_once(docs)
    lost_tick = decode_tick(store.lost[0])
    [record] = [d for d in docs if d["tick"].timestamp() * 1000 == lost_tick]
    # Run by w0 (its claim committed); the lock it took was released, so the
    # ticks after it ran rather than being skipped as overlaps for ever.
    assert (record["worker"], record["status"]) == ("w0", "succeeded")
    later = [d for d in docs if d["tick"].timestamp() * 1000 > lost_tick + 2000]
    assert later and all(d["status"] == "succeeded" for d in later)


async def test_a_run_all_catch_up_after_a_claim_in_doubt_runs_its_ticks_one_after_another(
    settings: Settings, logs: MongoLogStore,
) -> None:
    """``forbid`` with ``run_all``: the claim of tick T commits but its reply is
    lost, and etcd is then unreachable while T+1… fall due. Once etcd answers,
    T (found committed) runs, and the ticks missed meanwhile run after it, one
    after another. Before, they were claimed at once, found T's run holding the
    lock and were recorded skipped as overlaps."""
    keys = Keyspace(settings.key_prefix)
    name = "doubtful-catch-up"
    armed = asyncio.Event()
    tick_claim = is_claim_of(keys, name, "<")
    store = LosingReplies(settings.etcd_endpoints, lambda c: armed.is_set() and tick_claim(c))
    admin = EtcdStore(settings.etcd_endpoints)
    try:
        async with faulty_worker(settings, logs, store):
            # Each run outlasts a claim's round trip: the next claim, if sent at
            # once, finds the lock held.
            await create_job(admin, logs, settings, name=name, schedule="* * * * * *",
                             command="sleep 0.5", overlap="forbid", misfire="run_all",
                             misfire_window=60)
            await wait_for_count(logs.runs, {"job": name, "status": "succeeded"},
                                 lambda n: n >= 2, timeout=30)
            armed.set()
            caught_up = {"job": name, "status": "succeeded", "trigger": "catch_up"}
            await wait_for_count(logs.runs, caught_up, lambda n: n >= 3, timeout=30)
            await pause_and_settle(admin, logs, settings, name)
    finally:
        await admin.close()
    docs = await runs_of(logs, name)
    assert_once_per_tick(docs)
    assert len(store.lost) == 1
    lost_tick = decode_tick(store.lost[0])
    blacked_out = [d for d in docs
                   if lost_tick <= d["tick"].timestamp() * 1000 < lost_tick + BLACKOUT_S * 1000]
    story = [(d["tick"].timestamp() * 1000 - lost_tick, d["status"], d.get("extra"))
             for d in docs]
    assert len(blacked_out) >= 3, story
    assert all(d["status"] == "succeeded" for d in blacked_out), story
    ordered = sorted(blacked_out, key=lambda d: d["tick"])
    for earlier, later in itertools.pairwise(ordered):
        assert later["started"] >= earlier["ended"], story  # one after another
