"""Retrying a lost run: the elected master offers its next attempt to the workers.

A run whose worker died is recorded ``lost`` (``_reaper``). If its job's retry
policy allows it — attempts left, and ``retry.any_worker`` (the next attempt
may run on another worker, which is all a dead worker leaves) — the leader
puts a retry request at ``/retry/<job>/<run id>``, the key workers already
use to hand retries to each other (``worker._retry``): origin
``leader:<master id>``, ``lost: true``, on a lease of its own that outlives
the job's misfire window, so a request nobody can take goes away. A matching
worker claims it once the backoff delay has passed and runs the next attempt
(trigger ``retry``), taking the job's lock only if it is free.

The request is written under the leader's term (``Term.fence()``) and only if
none is pending for that run.
"""

from __future__ import annotations

import logging
import math

from ..common import Clock, Job, Keyspace, RetryRequest, RunRecord
from ..coord import Compare, CoordStore, Put, Term, read_job

log = logging.getLogger(__name__)


def lost_retry(job: Job, lost: RunRecord, *, now_ms: int, origin: str
               ) -> tuple[RetryRequest, float] | None:
    """The retry request for a lost attempt and its delay in seconds, or None
    when the job's policy does not retry it."""
    policy = job.retry
    if not policy.any_worker or lost.attempt >= policy.attempts:
        return None
    delay = policy.delay_after(lost.attempt)
    request = RetryRequest(lost.run_id, job.name, lost.tick, lost.attempt + 1,
                           now_ms + int(delay * 1000), origin, dict(job.targets), lost=True)
    return request, delay


async def request_retry(store: CoordStore, keys: Keyspace, term: Term, lost: RunRecord,
                        clock: Clock, *, handoff_delay: float) -> bool:
    """Ask the workers for the next attempt of ``lost`` if its job allows it."""
    job = await read_job(store, keys, lost.job)
    if job is None:
        return False
    planned = lost_retry(job, lost, now_ms=clock.now_ms(), origin=f"leader:{term.candidate}")
    if planned is None:
        return False
    request, delay = planned
    ttl = max(10, math.ceil(delay + job.misfire_window + handoff_delay + 5))
    lease = await store.grant_lease(ttl)
    key = keys.retry(job.name, lost.run_id)
    result = await store.txn([term.fence(), Compare.absent(key)],
                             [Put(key, request.encode(), lease)])
    if not result.succeeded:
        await store.revoke_lease(lease)
        return False
    log.info("asked the workers to retry lost run %s (attempt %d of %d) in %.1fs",
             lost.run_id, request.attempt, job.retry.attempts, delay)
    return True
