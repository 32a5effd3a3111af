"""What to claim, and who first: the pure decisions a plan makes before its claims.

``plan_ticks`` applies a job's misfire policy to its unclaimed ticks;
``in_time`` and ``still_due`` judge a tick again when its claim goes out or
comes back late; ``rendezvous_owner`` names the worker that claims first.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from ..common import CronSchedule, Job


def rendezvous_owner(key: str, workers: Iterable[str]) -> str | None:
    """The worker that owns ``key``: highest hash of (key, worker); stable, no coordination.

    When a worker leaves, only the keys it owned move; each to a different
    survivor.
    """
    best: tuple[bytes, str] | None = None
    for worker in workers:
        digest = hashlib.blake2b(f"{key}\x00{worker}".encode(), digest_size=8).digest()
        if best is None or digest > best[0]:
            best = (digest, worker)
    return None if best is None else best[1]


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What to do with a job's unclaimed ticks, those in ``(last, now]``.

    Ticks in ``skip_first..skip_until`` will not run; they are claimed at once
    and recorded as one ``skipped`` run at ``skip_first`` (``skip_count`` of
    them, counted up to a cap). ``run`` holds the ticks to claim and run, oldest
    first; every one of them is newer than ``skip_until``.
    """

    skip_first: int | None = None
    skip_until: int | None = None
    skip_count: int = 0
    run: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return self.skip_count == 0 and not self.run


def plan_ticks(
    schedule: CronSchedule,
    job: Job,
    *,
    last: int,
    now: int,
    on_time_ms: int,
    cap: int = 10_000,
) -> TickPlan:
    """Apply the job's misfire policy to its unclaimed ticks ``(last, now]``.

    The newest of them is on time if it is at most ``on_time_ms`` old; every
    other one was missed (workers or etcd were down, or the job was just
    loaded). With ``W = misfire_window``:

    * ``skip``: missed ticks are skipped; the newest runs only if on time;
    * ``run_latest``: the newest runs if at most W old; older ones are skipped;
    * ``run_all``: every tick at most W old runs, oldest first (the newest
      ``cap``); older ones are skipped.
    """
    window_ms = int(job.misfire_window * 1000)
    recent_from = max(last, now - max(window_ms, on_time_ms) - 1)
    skip_first: int | None = None
    skip_until: int | None = None
    count = 0
    for tick in schedule.fires_between(last, recent_from):
        if skip_first is None:
            skip_first = tick
        skip_until = tick
        count += 1
        if count >= cap:
            skip_until = recent_from  # a fence past every old tick, counted or not
            break
    recent: deque[int] = deque()
    for tick in schedule.fires_between(recent_from, now):
        recent.append(tick)
        if len(recent) > cap:
            # Beyond the cap: skipped on record like the older ones, not dropped.
            old = recent.popleft()
            if skip_first is None:
                skip_first = old
            skip_until = old
            count += 1
    newest = recent[-1] if recent else None
    if newest is None:
        to_run: list[int] = []
    elif job.misfire == "skip":
        to_run = [newest] if now - newest <= on_time_ms else []
    elif job.misfire == "run_latest":
        to_run = [newest] if now - newest <= max(window_ms, on_time_ms) else []
    else:
        to_run = [t for t in recent if now - t <= max(window_ms, on_time_ms)]
    dropped = [t for t in recent if not to_run or t < to_run[0]]
    if dropped:
        skip_first = dropped[0] if skip_first is None else skip_first
        skip_until = dropped[-1]
        count += len(dropped)
    return TickPlan(skip_first, skip_until, count, tuple(to_run))


def in_time(job: Job, tick: int, *, now: int, on_time_ms: int) -> bool:
    """Whether ``tick``, claimed at ``now``, may still start: on time under
    ``skip``, inside the misfire window otherwise.

    Applied when a claim comes back (a later tick falling due meanwhile does
    not matter then: that one has its own plan).
    """
    window_ms = int(job.misfire_window * 1000)
    limit = on_time_ms if job.misfire == "skip" else max(window_ms, on_time_ms)
    return now - tick <= limit


def still_due(schedule: CronSchedule, job: Job, tick: int, *, now: int, on_time_ms: int) -> bool:
    """Whether a plan made at ``now`` would still run ``tick`` (see ``plan_ticks``).

    A plan is made before its claims are sent; when etcd is slow or failing
    over, a claim can go out, or come back, after its tick has become a misfire.
    Under ``skip`` and ``run_latest`` only the newest due tick runs, and only
    while it is on time (``skip``) or inside the misfire window.
    """
    if not in_time(job, tick, now=now, on_time_ms=on_time_ms):
        return False
    if job.misfire == "run_all":
        return True
    later = schedule.next_after(tick)
    return later is None or later > now
