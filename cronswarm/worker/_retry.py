"""Retries that may run on another worker (``retry.any_worker``).

Without ``any_worker`` a failed attempt is retried by the worker that ran
it, after the backoff delay. With it, the next attempt is offered to every
matching worker through etcd and exactly one of them claims it.

Key (under the prefix, default ``/cron``):

========================  =========================================  ============================
key                       value                                      lease
========================  =========================================  ============================
``/retry/<name>/<run>``   ``RetryRequest`` JSON: run id, job, tick,   the requesting worker's
                          next attempt, ``not_before`` (epoch ms),
                          ``origin`` (requesting worker)
========================  =========================================  ============================

Protocol:

1. The worker whose attempt failed keeps the run's lock and running key and
   puts the request, in one transaction that checks the running key still
   holds its run info (a ``replace`` may have taken the run away).
2. Every worker mirrors ``/retry/``. At ``not_before`` the owner (rendezvous
   hash of ``<run>#<attempt>`` over the live matching workers other than the
   origin; the origin itself when it is alone) claims at once, the others
   after ``handoff_delay`` if the request is still there.
3. The claim is one transaction on the request's mod revision: it deletes
   the request and writes the running key (and the lock, unless the overlap
   policy is ``allow``) with the claimer's run info on the claimer's lease.
   One worker wins; the run goes on there from the next attempt.
4. The origin waits for the request to go. If the running key now holds
   another worker's info, the run was handed off: the origin forgets it
   without releasing anything. A kill request that arrives first makes the
   origin withdraw the request (a transaction on its mod revision); if a
   claim won that race, the claimer applies the kill, which is newer than
   the request.
5. If nobody takes the request within the job's misfire window (plus the
   hand-off delay) after ``not_before`` (the job was deleted, or no other
   worker matches any more), the origin withdraws it and runs the attempt
   itself.
6. If the origin dies, its lease takes the request, the lock and the running
   key with it: the run is lost, like any run of a dead worker.
7. The elected master asks for the next attempt of a lost run the same way
   (origin ``leader:<master id>``, ``lost: true``, on a lease of its own that
   ends after the job's misfire window); nobody holds that run's lock any
   more, so the claim takes it only if it is free (see ``master._lost_retry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import Enum
from typing import Any

from ..common import Clock, Job, Keyspace, RetryRequest, loop_deadline
from ..coord import (
    Compare,
    CoordStore,
    CoordUnavailable,
    Delete,
    KeyValue,
    LeaseKeeper,
    PrefixMirror,
    Put,
    TxnOp,
    read_job,
    wait_deleted,
)
from ._claim import run_info
from ._plan import rendezvous_owner
from ._registry import registered_labels

log = logging.getLogger(__name__)


class HandOff(Enum):
    HANDED_OFF = "handed_off"  # another claim took the run: forget it, release nothing
    WITHDRAWN = "withdrawn"  # no further attempt (killed, or the run is not ours any more)
    KEPT = "kept"  # nobody took it (our lease was renewed meanwhile): retry here


def build_offer(keys: Keyspace, request: RetryRequest, info: bytes, lease: int
                ) -> tuple[list[Compare], list[TxnOp], list[TxnOp]]:
    """The origin's transaction: put the request if the run is still ours."""
    running = keys.running(request.job, request.run_id)
    return ([Compare.value(running, "==", info)],
            [Put(keys.retry(request.job, request.run_id), request.encode(), lease)], [])


def build_retry_claim(keys: Keyspace, job: Job, request: RetryRequest, revision: int,
                      info: bytes, lease: int
                      ) -> tuple[list[Compare], list[TxnOp], list[TxnOp]]:
    """A claimer's transaction: take the request at ``revision`` and the run with it.

    The retry of a lost run takes the job's lock only if it is free (unless the
    overlap policy is ``allow``): a newer run holding it goes on alone.
    """
    key = keys.retry(request.job, request.run_id)
    success: list[TxnOp] = [Delete(key), Put(keys.running(job.name, request.run_id), info, lease)]
    compare = [Compare.mod_revision(key, "==", revision)]
    if job.overlap != "allow":
        success.append(Put(keys.lock(job.name), info, lease))
        if request.lost:
            compare.append(Compare.absent(keys.lock(job.name)))
    return compare, success, []


def retry_owner(request: RetryRequest, candidates: list[str]) -> str:
    """Who claims first: any worker but the origin, unless the origin is alone."""
    others = [w for w in candidates if w != request.origin]
    return rendezvous_owner(f"{request.run_id}#{request.attempt}", others) or request.origin


StartRetry = Callable[[Job, RetryRequest, int, bytes], None]


class RetryBoard:
    """This worker's side of the protocol: offering retries and claiming them."""

    def __init__(
        self,
        store: CoordStore,
        keys: Keyspace,
        worker_id: str,
        lease: LeaseKeeper,
        clock: Clock,
        *,
        handoff_delay: float,
        labels: Mapping[str, str],
        workers: PrefixMirror,
        start: StartRetry,
        draining: Callable[[], bool],
    ) -> None:
        self.store = store
        self.keys = keys
        self.worker_id = worker_id
        self.lease = lease
        self.clock = clock
        self.handoff_delay = handoff_delay
        self.labels = dict(labels)
        self.workers = workers  # the registry mirror: who else could take a request
        self._start = start
        self._draining = draining
        self.mirror = PrefixMirror(store, keys.retry_dir, on_change=self._on_change)
        self._tasks: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._claiming = 0  # claims sent and not yet answered
        self._claims_settled = asyncio.Event()
        self._claims_settled.set()

    async def claims_settled(self) -> None:
        """Return once no claim is in flight (a draining worker waits for the
        claims it sent before it stopped claiming: a claim won must run)."""
        await self._claims_settled.wait()

    async def run(self) -> None:
        """Follow the requests until cancelled."""
        try:
            await self.mirror.run()
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # -- the origin ---------------------------------------------------------

    async def offer(self, job: Job, request: RetryRequest, info: bytes,
                    kill: asyncio.Event, *, give_up_at: int) -> HandOff:
        """Offer the next attempt to every matching worker; see the module doc.

        Nobody may take it (the job was deleted or changed its targets): at
        ``give_up_at`` (epoch ms) the request is withdrawn and the attempt is
        kept here.
        """
        key = self.keys.retry(job.name, request.run_id)
        try:
            result = await self.store.txn(*build_offer(self.keys, request, info,
                                                       self.lease.lease_id))
        except CoordUnavailable as exc:
            settled = await self._settle_offer(job, request, info, give_up_at)
            if isinstance(settled, HandOff):
                if settled is HandOff.KEPT:
                    log.warning("cannot offer %s#%d to other workers (%s); retrying here",
                                request.run_id, request.attempt, exc)
                return settled
            revision = settled  # it committed: wait for a taker as usual
        else:
            if not result.succeeded:
                return HandOff.WITHDRAWN
            revision = result.revision
        suffix = key[len(self.keys.retry_dir):]

        def taken() -> bool:
            if self.mirror.revision < revision:
                return False  # our own put is not mirrored yet
            current = self.mirror.items.get(suffix)
            return current is None or current.mod_revision != revision

        deadline = loop_deadline(self.clock, give_up_at)
        if not await _until(self.mirror.wait_for(taken), kill, deadline):
            try:
                withdrawn = await self.store.txn(
                    [Compare.mod_revision(key, "==", revision)], [Delete(key)], [])
            except CoordUnavailable as exc:
                log.warning("cannot withdraw %s#%d (%s)", request.run_id, request.attempt, exc)
                return HandOff.HANDED_OFF  # unknown: never risk a second copy
            if withdrawn.succeeded:
                if kill.is_set():
                    return HandOff.WITHDRAWN
                log.warning("no worker took %s#%d; running it here", request.run_id,
                            request.attempt)
                return HandOff.KEPT
        try:
            running = await self.store.get(self.keys.running(job.name, request.run_id))
        except CoordUnavailable as exc:
            log.warning("cannot tell who took %s#%d (%s)", request.run_id, request.attempt, exc)
            return HandOff.HANDED_OFF
        if running is None:
            return HandOff.WITHDRAWN  # our lease expired: the run is lost with it
        return HandOff.KEPT if running.value == info else HandOff.HANDED_OFF

    async def _settle_offer(self, job: Job, request: RetryRequest, info: bytes,
                            give_up_at: int) -> int | HandOff:
        """The offer's reply was lost: did it commit? Its request's revision if
        it did and is still there; else ``HANDED_OFF`` if another worker holds
        the run now (it took the request), ``KEPT`` if the run is still ours
        alone (the offer did not commit). Asked until etcd answers or
        ``give_up_at``; still unknown then, ``WITHDRAWN``: no attempt here (it
        may run elsewhere), and the run's keys are released only where they
        still hold our value."""
        key = self.keys.retry(job.name, request.run_id)
        running = self.keys.running(job.name, request.run_id)
        delay = 0.1
        while True:
            try:
                pending = await self.store.get(key)
                if pending is not None and pending.value == request.encode():
                    return pending.mod_revision
                holder = await self.store.get(running)
            except CoordUnavailable as exc:
                if self.clock.now_ms() >= give_up_at:
                    log.warning("cannot tell whether the offer of %s#%d committed (%s); "
                                "not running it here", request.run_id, request.attempt, exc)
                    return HandOff.WITHDRAWN
                await asyncio.sleep(delay)  # retry backoff while etcd fails over
                delay = min(delay * 2, 1.0)
                continue
            if holder is not None and holder.value == info:
                return HandOff.KEPT
            return HandOff.HANDED_OFF

    # -- claimers -----------------------------------------------------------

    def _on_change(self, suffix: str, kv: KeyValue | None, _old: KeyValue | None = None
                   ) -> None:
        if kv is None:
            return
        key = (suffix, kv.mod_revision)
        if key not in self._tasks:
            task = asyncio.ensure_future(self._consider(suffix, kv))
            self._tasks[key] = task
            task.add_done_callback(lambda _: self._tasks.pop(key, None))

    def _peers(self, request: RetryRequest) -> list[str]:
        return [name for name, kv in self.workers.items.items()
                if request.matches(registered_labels(kv))]

    async def _consider(self, suffix: str, kv: KeyValue) -> None:
        try:
            request = RetryRequest.decode(kv.value)
        except (ValueError, KeyError, TypeError):
            log.error("ignoring malformed retry request %s", kv.key)
            return
        if not request.matches(self.labels):
            return

        def gone() -> bool:
            current = self.mirror.items.get(suffix)
            return current is None or current.mod_revision != kv.mod_revision

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(loop_deadline(self.clock, request.not_before)):
                await self.mirror.wait_for(gone)
        if retry_owner(request, self._peers(request)) != self.worker_id:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.handoff_delay):
                    await self.mirror.wait_for(gone)
        while not gone() and not self._draining():
            try:
                job = await self._current_job(request.job)
                if job is None:
                    return
                if await self._claim(job, request, kv.mod_revision):
                    return
                if not request.lost or job.overlap == "allow":
                    return  # taken by another worker
                # A newer run holds the lock: the retry of the lost run waits
                # for it (the request lives on its own lease; gone unclaimed,
                # the master records why).
                await self._until_free(job, gone)
            except CoordUnavailable as exc:
                log.warning("cannot claim retry %s#%d: %s", request.run_id, request.attempt,
                            exc)
                return

    async def _claim(self, job: Job, request: RetryRequest, revision: int) -> bool:
        """One claim of ``request``; True if it won (the attempt is started)."""
        self._claiming += 1
        self._claims_settled.clear()
        try:
            info = run_info(run_id=request.run_id, worker=self.worker_id,
                            lease=self.lease.lease_id, tick=request.tick,
                            started=self.clock.now_ms(), attempt=request.attempt)
            result = await self.store.txn(*build_retry_claim(
                self.keys, job, request, revision, info, self.lease.lease_id))
            if result.succeeded:
                log.info("took over %s at attempt %d from %s", request.run_id, request.attempt,
                         request.origin)
                self._start(job, request, revision, info)
            return result.succeeded
        finally:
            self._claiming -= 1
            if not self._claiming:
                self._claims_settled.set()

    async def _until_free(self, job: Job, gone: Callable[[], bool]) -> None:
        """Until the job's lock is free or the request is gone."""
        lock = asyncio.ensure_future(wait_deleted(self.store, self.keys.lock(job.name)))
        request = asyncio.ensure_future(self.mirror.wait_for(gone))
        try:
            await asyncio.wait({lock, request}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (lock, request):
                task.cancel()
            await asyncio.gather(lock, request, return_exceptions=True)
        if lock.done() and not lock.cancelled() and lock.exception() is not None:
            raise lock.exception()  # type: ignore[misc]

    async def _current_job(self, name: str) -> Job | None:
        """The job as it is now, if it still exists and this worker may run it.

        Read from etcd, only by a worker about to claim (the owner, or others
        after the hand-off delay): the worker's job table is not needed.
        """
        job = await read_job(self.store, self.keys, name)
        return job if job is not None and job.matches(self.labels) else None


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _until(done: Awaitable[Any], kill: asyncio.Event, deadline: float) -> bool:
    """Await ``done`` unless ``kill`` is set or ``deadline`` (loop time) passes first;
    True if ``done`` finished."""
    task = asyncio.ensure_future(done)
    killed = asyncio.ensure_future(kill.wait())
    try:
        await asyncio.wait({task, killed}, timeout=max(0.0, deadline - _now()),
                           return_when=asyncio.FIRST_COMPLETED)
        return task.done() and not task.cancelled()
    finally:
        for t in (task, killed):
            t.cancel()
