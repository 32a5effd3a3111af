"""Electing one leader among candidates, on one etcd key held by a lease.

A candidate campaigns with one transaction that creates the key only if it
does not exist (``create_revision == 0``), on a lease of its own. The winner
leads until its key goes; the others watch the key and campaign again as soon
as it is deleted: when the leader resigns (it revokes its lease), at once;
when it dies, once etcd expires its lease, within the TTL.

Two leaders never act at once. A leader refreshes its lease every ``ttl / 3``
and knows, from the moment it sent the last successful refresh and the TTL
etcd granted, the earliest instant etcd may expire the lease. It stops
leading (its duties are cancelled and awaited) a safety margin before that
instant, whether or not etcd can be reached; etcd deletes the key no earlier
than that instant, and only then can another candidate win. Each term is
numbered by the key's create revision, which grows with every election, and
``Term.fence()`` lets a leader make its own etcd writes conditional on still
holding the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ._abc import CoordStore, CoordUnavailable, WatchCompacted
from ._kv import Compare, Get, KeyValue, Put

log = logging.getLogger(__name__)

_RETRY = (0.1, 2.0)  # first and largest delay between campaigns while etcd fails


class LeadershipLost(Exception):
    """This candidate's term ended (lease not refreshed in time, or key gone)."""


@dataclass(frozen=True, slots=True)
class Term:
    """One leader's tenure: ``number`` is the leader key's create revision."""

    number: int
    candidate: str
    key: str
    lease: int
    since_ms: int

    def fence(self) -> Compare:
        """A transaction condition that holds only while this term lasts."""
        return Compare.create_revision(self.key, "==", self.number)


def leader_value(candidate: str, since_ms: int) -> bytes:
    return json.dumps({"id": candidate, "since": since_ms}, separators=(",", ":")).encode()


def leader_of(kv: KeyValue | None) -> str | None:
    """The candidate named by a leader key's value (None: no leader)."""
    if kv is None:
        return None
    try:
        value = json.loads(kv.value)
    except ValueError:
        return None
    found = value.get("id") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


Lead = Callable[[Term], Awaitable[None]]


async def _call(lead: Lead, term: Term) -> None:
    await lead(term)


class Election:
    """Campaign for ``key`` as ``candidate`` until cancelled; lead while elected.

    ``run(lead)`` calls ``lead(term)`` each time this candidate wins and
    cancels it when the term ends. If ``lead`` raises, the candidate resigns
    and campaigns again after a pause. Cancelling ``run`` resigns at once.
    """

    def __init__(self, store: CoordStore, key: str, candidate: str, ttl: int, *,
                 margin: float | None = None, now_ms: Callable[[], int] | None = None) -> None:
        if ttl < 2:
            raise ValueError("an election lease TTL below 2 s cannot be kept reliably")
        self.store = store
        self.key = key
        self.candidate = candidate
        self.ttl = ttl
        # Stop leading this long before the lease could expire at etcd.
        self.margin = margin if margin is not None else max(0.3, ttl * 0.15)
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.term: Term | None = None  # set while leading
        self.leader: str | None = None  # the current leader as last seen
        self.terms_won = 0
        self.changed = asyncio.Event()  # set (and replaced) at every change of term
        self._valid_until = 0.0  # monotonic: the lease cannot expire before this

    @property
    def is_leader(self) -> bool:
        return self.term is not None

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def run(self, lead: Lead) -> None:
        delay = _RETRY[0]
        while True:
            try:
                term = await self._campaign()
                delay = _RETRY[0]
                await self._lead(term, lead)
            except CoordUnavailable as exc:
                log.warning("election on %s: etcd unavailable (%s); retrying in %.1fs",
                            self.key, exc, delay)
            except LeadershipLost as exc:
                log.warning("%s is no longer the leader: %s", self.candidate, exc)
                delay = _RETRY[0]
                continue
            except Exception:
                log.exception("leader duties of %s failed; resigning", self.candidate)
            await asyncio.sleep(delay)  # retry backoff, not synchronisation
            delay = min(delay * 2, _RETRY[1])

    async def _campaign(self) -> Term:
        """Return once this candidate holds the key (a fresh lease is granted per try)."""
        while True:
            current = await self.store.get(self.key)
            if current is not None:
                self.leader = leader_of(current)
                await self._wait_vacant(current)
                continue
            sent = time.monotonic()
            lease = await self.store.grant_lease(self.ttl)
            since = self._now_ms()
            try:
                result = await self.store.txn(
                    [Compare.create_revision(self.key, "==", 0)],
                    [Put(self.key, leader_value(self.candidate, since), lease)],
                    [Get(self.key)],
                )
            except BaseException:
                await self._revoke(lease)
                raise
            if result.succeeded:
                self._valid_until = sent + self.ttl
                return Term(result.revision, self.candidate, self.key, lease, since)
            await self._revoke(lease)
            found = result.gets[0][0] if result.gets and result.gets[0] else None
            self.leader = leader_of(found)

    async def _wait_vacant(self, current: KeyValue) -> None:
        """Return once the leader key seen in ``current`` is deleted (or replaced)."""
        try:
            async for batch in self.store.watch_prefix(self.key, current.mod_revision + 1):
                for event in batch:
                    if event.key != self.key:
                        continue
                    if event.type == "delete":
                        self.leader = None
                        return
                    self.leader = leader_of(event.kv)
        except WatchCompacted:
            return  # read the key again

    async def _lead(self, term: Term, lead: Lead) -> None:
        self.term = term
        self.leader = self.candidate
        self.terms_won += 1
        self._notify()
        log.info("%s became the leader (term %d)", self.candidate, term.number)
        tasks = [asyncio.create_task(self._keep(term), name="election-keepalive"),
                 asyncio.create_task(self._watch_key(term), name="election-watch"),
                 asyncio.create_task(_call(lead, term), name="leader-duties")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Duties stop (cancelled and awaited) before the key is let go.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.term = None
            self.leader = None
            self._notify()
            await self._revoke(term.lease)
            log.info("%s stepped down (term %d)", self.candidate, term.number)
        first = done.pop()
        exc = first.exception()
        if exc is not None:
            raise exc
        raise RuntimeError("the leader duties returned")

    async def _keep(self, term: Term) -> None:
        """Refresh the lease; raise LeadershipLost before it could have expired."""
        interval = self.ttl / 3
        loop = asyncio.get_running_loop()
        next_refresh = time.monotonic() + interval
        while True:
            deadline = self._valid_until - self.margin
            now = time.monotonic()
            if now >= deadline:
                raise LeadershipLost(f"lease {term.lease:x} not refreshed in time")
            await asyncio.sleep(max(0.0, min(next_refresh, deadline) - now))  # refresh timer
            if time.monotonic() >= deadline:
                raise LeadershipLost(f"lease {term.lease:x} not refreshed in time")
            sent = time.monotonic()
            try:
                async with asyncio.timeout_at(loop.time() + (deadline - sent)):
                    remaining = await self.store.keepalive(term.lease)
            except (CoordUnavailable, TimeoutError) as exc:
                log.warning("leader lease refresh failed (%s)", exc or "timeout")
                next_refresh = time.monotonic() + min(0.5, interval)
                continue
            if remaining <= 0:
                raise LeadershipLost(f"lease {term.lease:x} expired")
            self._valid_until = max(self._valid_until, sent + remaining)
            next_refresh = sent + interval

    async def _watch_key(self, term: Term) -> None:
        """Raise LeadershipLost if the key is deleted or taken over."""
        while True:
            try:
                async for batch in self.store.watch_prefix(self.key, term.number + 1):
                    for event in batch:
                        if event.key == self.key:
                            raise LeadershipLost("the leader key was deleted or replaced")
            except WatchCompacted:
                kv = await self.store.get(self.key)
                if kv is None or kv.create_revision != term.number:
                    raise LeadershipLost("the leader key was deleted or replaced") from None

    async def _revoke(self, lease: int) -> None:
        with contextlib.suppress(CoordUnavailable, TimeoutError):
            async with asyncio.timeout(self.ttl):
                await self.store.revoke_lease(lease)
