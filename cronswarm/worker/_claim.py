"""Claiming a tick: the fencing-token transaction of DESIGN.md section 3.

A claim is one etcd transaction that succeeds only if the tick is newer than
``/last/<job>`` and writes the tick there, so a tick can be claimed once and
only once in the cluster, whatever the workers' clocks. The lock is never what
makes a tick unique: it only tells the overlap policy whether a run is live.

* ``allow``: the claim writes the fencing token and the running key.
* ``forbid``: a nested transaction takes the lock if it is free; if not, the
  tick is still claimed (so exactly one worker records it) but as ``skipped``.
* ``replace``: the claim reads the lock's holder, takes the lock, and the
  winner asks the holder to stop through the killer key before it runs.

Everything here but ``claim``, ``claim_skip``, ``recover_claim`` and
``find_write`` is pure. What to claim (the misfire policy) is in ``_plan``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from ..common import Job, Keyspace, decode_tick, encode_tick
from ..coord import (
    Compare,
    CoordStore,
    CoordUnavailable,
    Delete,
    Get,
    KeyValue,
    Put,
    Txn,
    TxnOp,
    TxnResult,
    WatchCompacted,
)
from ._release import ReleaseBatcher, keys_of

log = logging.getLogger(__name__)

HISTORY_READ_S = 5.0  # reading a key's history to settle a write in doubt


class Outcome(Enum):
    WON = "won"  # claimed: run it
    SKIP = "skip"  # claimed, but the overlap policy says skip (forbid, lock held)
    TAKEN = "taken"  # another worker claimed this tick or a later one
    STALE = "stale"  # the fencing token moved under a catch-up plan: re-plan


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: Outcome
    last: bytes | None = None  # the fencing token seen when the claim failed
    holder: Mapping[str, Any] | None = None  # the lock's value: the live run (skip/replace)
    revision: int = 0

    @property
    def last_tick(self) -> int | None:
        return None if self.last is None else decode_tick(self.last)


@dataclass(frozen=True, slots=True)
class Ticket:
    """What one claim writes besides the tick: the run it starts, the value of
    its lock and running key (``run_info``), the lease they live on, and the
    claimant, unique to this claim, appended to the token (see encode_tick)."""

    run_id: str
    info: bytes
    lease: int
    claimant: str


def run_info(*, run_id: str, worker: str, lease: int, tick: int, started: int,
             attempt: int = 1, pid: int | None = None) -> bytes:
    """The value of the lock and running keys."""
    return json.dumps(
        {"run_id": run_id, "worker": worker, "lease": lease, "tick": tick,
         "attempt": attempt, "started": started, "pid": pid},
        separators=(",", ":"),
    ).encode()


def lease_of(info: bytes) -> int:
    """The lease named in a lock or running key's value (``run_info``)."""
    try:
        return int(json.loads(info).get("lease") or 0)
    except (ValueError, AttributeError, TypeError):
        return 0


def build_claim(keys: Keyspace, job: Job, tick: int, ticket: Ticket, *, first: bool = False,
                once_revision: int | None = None
                ) -> tuple[list[Compare], list[TxnOp], list[TxnOp]]:
    """The claim transaction (compare, success, failure) of ``ticket``.

    ``first`` claims a job whose ``/last`` key does not exist yet (etcd fails
    every value compare on a missing key). ``once_revision`` claims a run-now
    request instead of a tick: the request key must still be at that revision,
    and the claim deletes it.
    """
    last_key, lock_key = keys.last(job.name), keys.lock(job.name)
    running_key = keys.running(job.name, ticket.run_id)
    info, lease = ticket.info, ticket.lease
    success: list[TxnOp]
    if once_revision is not None:
        once_key = keys.once(job.name)
        compare = [Compare.mod_revision(once_key, "==", once_revision)]
        success = [Delete(once_key)]
        failure: list[TxnOp] = [Get(once_key)]
    else:
        if first:
            compare = [Compare.absent(last_key)]
        else:
            compare = [Compare.value(last_key, "<", encode_tick(tick))]
        success = [Put(last_key, encode_tick(tick, ticket.claimant))]
        failure = [Get(last_key)]
    run_ops: tuple[TxnOp, ...] = (Put(lock_key, info, lease), Put(running_key, info, lease))
    if job.overlap == "forbid":
        success.append(Txn((Compare.absent(lock_key),), run_ops, (Get(lock_key),)))
    elif job.overlap == "replace":
        success.append(Get(lock_key))
        success.extend(run_ops)
    else:
        success.append(Put(running_key, info, lease))
    return compare, success, failure


def read_claim(job: Job, result: TxnResult, *, once: bool = False) -> Claim:
    """Interpret the result of a ``build_claim`` transaction."""
    if not result.succeeded:
        found = result.gets[0] if result.gets else []
        last = found[0].value if found and not once else None
        return Claim(Outcome.TAKEN, last=last, revision=result.revision)
    if job.overlap == "forbid":
        inner = result.nested[0]
        if inner.succeeded:
            return Claim(Outcome.WON, revision=result.revision)
        holder = inner.gets[0][0] if inner.gets and inner.gets[0] else None
        return Claim(Outcome.SKIP, holder=_decode(holder), revision=result.revision)
    if job.overlap == "replace":
        holder = result.gets[0][0] if result.gets and result.gets[0] else None
        return Claim(Outcome.WON, holder=_decode(holder), revision=result.revision)
    return Claim(Outcome.WON, revision=result.revision)


def _decode(kv: KeyValue | None) -> dict[str, Any] | None:
    if kv is None:
        return None
    try:
        value = json.loads(kv.value)
    except ValueError:
        return {"raw": kv.value.decode(errors="replace")}
    return value if isinstance(value, dict) else {"raw": value}


class TxnSender(Protocol):
    """What sends a transaction: a ``CoordStore``, or a ``ClaimBatcher``."""

    async def txn(self, compare: Sequence[Compare], success: Sequence[TxnOp],
                  failure: Sequence[TxnOp] = ()) -> TxnResult: ...


async def _txn_retrying(
    store: TxnSender, ops: tuple[list[Compare], list[TxnOp], list[TxnOp]], retry_for: float,
) -> tuple[TxnResult, bool]:
    """Run a transaction, retrying transient failures for ``retry_for`` seconds.

    Returns the result and whether an earlier attempt failed in flight (it may
    have committed: the caller checks its own claimant in the token).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    delay = 0.05
    in_doubt = False
    while True:
        try:
            return await store.txn(*ops), in_doubt
        except CoordUnavailable:
            if loop.time() + delay > deadline:
                raise
            in_doubt = True
            await asyncio.sleep(delay)  # retry backoff while etcd fails over
            delay = min(delay * 2, 0.5)


async def claim(store: CoordStore, keys: Keyspace, job: Job, tick: int, ticket: Ticket, *,
                once_revision: int | None = None, retry_for: float = 2.0, since: int = 0,
                carry: ReleaseBatcher | None = None, send: TxnSender | None = None) -> Claim:
    """Claim ``tick`` of ``job`` for ``ticket`` (one transaction; two for a
    job's first tick), or with ``once_revision`` the run-now request at that
    revision.

    Transient etcd errors are retried for ``retry_for`` seconds (a member
    failing over). A claim that committed although its reply was lost is
    recognised by its claimant in the token — in the key, or in its history
    after ``since`` (a revision before the first attempt) when another worker
    claimed a later tick meanwhile — so it is neither lost nor run twice.

    ``carry``: the claim takes along the releases waiting there (see
    ``ReleaseBatcher.carry``), so frequent ticks cost one transaction each.
    ``send``: what sends the claim's transaction (a ``ClaimBatcher``: with the
    other claims of the moment); ``store`` by default.
    """
    once = once_revision is not None
    info = ticket.info
    ops = build_claim(keys, job, tick, ticket, once_revision=once_revision)
    carried = None if carry is None else carry.carry(
        keys_of(Txn(tuple(ops[0]), tuple(ops[1]), tuple(ops[2]))))
    if carried is not None and carried.items:
        # Sent in both branches: they happen whether or not the claim is won.
        ops = (ops[0], [*ops[1], *carried.ops], [*ops[2], *carried.ops])
    try:
        result, in_doubt = await _txn_retrying(send or store, ops, retry_for)
    except BaseException:
        if carried is not None:
            carried.give_back()  # may not have committed: they go out alone
        raise
    if carried is not None:
        carried.sent()
    outcome = read_claim(job, result, once=once)
    if outcome.outcome is Outcome.TAKEN and not once:
        if outcome.last is None:
            # /last does not exist (a job written without it): claim the first tick.
            ops = build_claim(keys, job, tick, ticket, first=True)
            result, in_doubt = await _txn_retrying(store, ops, retry_for)
            outcome = read_claim(job, result)
        if in_doubt and outcome.outcome is Outcome.TAKEN:
            token = encode_tick(tick, ticket.claimant)
            if outcome.last == token:
                outcome = await recover_claim(store, keys, job, info, outcome.revision)
            else:
                write = await find_write(store, keys.last(job.name), token, since)
                if write is not None:
                    outcome = await recover_claim(store, keys, job, info, write.mod_revision)
    elif outcome.outcome is Outcome.TAKEN and in_doubt:
        # A run-now claim deletes the request: our running key is the evidence.
        mine = await store.get(keys.running(job.name, ticket.run_id))
        if mine is not None and mine.value == info:
            outcome = Claim(Outcome.WON, revision=mine.create_revision)
    return outcome


async def recover_claim(store: CoordStore, keys: Keyspace, job: Job, info: bytes,
                        revision: int) -> Claim:
    """Our claim committed but its reply was lost: did it also take the lock?"""
    if job.overlap == "allow":
        return Claim(Outcome.WON, revision=revision)
    lock = await store.get(keys.lock(job.name))
    if lock is not None and lock.value == info:
        return Claim(Outcome.WON, revision=lock.mod_revision)
    return Claim(Outcome.SKIP, holder=_decode(lock), revision=revision)


async def claim_skip(store: CoordStore, keys: Keyspace, job: Job, *, fence: bytes,
                     until: int, claimant: str, since: int = 0) -> Claim:
    """Claim a range of missed ticks as skipped (see ``build_skip``); a claim
    in doubt is settled like ``claim``'s."""
    ops = build_skip(keys, job, fence=fence, until=until, claimant=claimant)
    result, in_doubt = await _txn_retrying(store, ops, 2.0)
    if result.succeeded:
        return Claim(Outcome.WON, revision=result.revision)
    found = result.gets[0] if result.gets else []
    last = found[0].value if found else None
    token = encode_tick(until, claimant)
    if in_doubt and (last == token or await find_write(
            store, keys.last(job.name), token, since) is not None):
        return Claim(Outcome.WON, revision=result.revision)
    return Claim(Outcome.STALE, last=last, revision=result.revision)


async def find_write(store: CoordStore, key: str, value: bytes, since: int) -> KeyValue | None:
    """Our write of ``value`` (unique: it names its claimant) to ``key`` after
    revision ``since``, if it happened: the key now, or else from its history.

    None if it did not, or if the history cannot tell (compacted, or not read
    within ``HISTORY_READ_S``): logged, and taken as not written.
    """
    now = await store.get(key)
    if now is not None and now.value == value:
        return now
    if now is None or now.mod_revision <= since or since <= 0:
        return None  # not written since before the write was sent
    try:
        async with asyncio.timeout(HISTORY_READ_S):
            async for batch in store.watch_prefix(key, since + 1):
                for event in batch:
                    if event.key != key:
                        continue  # another job whose name starts with this one's
                    if event.value == value:
                        return event.kv
                    if event.mod_revision >= now.mod_revision:
                        return None
    except (TimeoutError, WatchCompacted) as exc:
        log.warning("cannot tell whether %s was written to %s (%s); taking it as not",
                    value.decode(errors="replace"), key, exc or "timed out")
    return None


def build_skip(keys: Keyspace, job: Job, *, fence: bytes, until: int, claimant: str
               ) -> tuple[list[Compare], list[TxnOp], list[TxnOp]]:
    """Claim a range of missed ticks as skipped: move the token from ``fence`` to ``until``."""
    last_key = keys.last(job.name)
    return ([Compare.value(last_key, "==", fence)],
            [Put(last_key, encode_tick(until, claimant))], [Get(last_key)])

