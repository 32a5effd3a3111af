"""Delivering notices: one pending record per notice and channel, then attempts
with exponential backoff until one succeeds, the error is final, or the
attempts run out; the outcome is recorded on the same document.

A notice is recorded before it is sent, under an id made of its event and the
channel, so it is never sent twice through a channel by this mechanism; a
leader that dies mid-delivery leaves it ``pending`` and the next leader sends
it (at least once, then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from ..common import AlertRule, Clock, ServiceUnavailable, backoff_delay
from ._channels import Channel
from ._engine import Notice
from ._senders import DeliveryError, Sender
from ._store import AlertStore

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 60.0


def resolve_channels(rule: AlertRule, channels: Iterable[Channel]) -> list[str]:
    """The channels a notice goes to: those the rule names, else every default one.

    Named channels are kept even when unknown (the delivery then fails, which
    is recorded: a typo in a rule does not go unnoticed); disabled ones are not.
    """
    known = {c.name: c for c in channels}
    if rule.channels:
        return [n for n in rule.channels if n not in known or known[n].enabled]
    return sorted(c.name for c in known.values() if c.default and c.enabled)


ChannelLookup = Callable[[str], Channel | None]
Duty = Callable[[str], AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def plain_unit(name: str) -> AsyncIterator[None]:
    """Outside a leader's term: a step that fails for want of MongoDB is logged."""
    try:
        yield
    except ServiceUnavailable as exc:
        log.warning("%s failed: %s", name, exc)


@dataclass(slots=True)
class AlertStats:
    """Counters over every term of this process (for its metrics)."""

    notices: Counter[str] = field(default_factory=Counter)  # decided, by kind
    suppressed: int = 0  # problems inside a silence window
    sent: Counter[str] = field(default_factory=Counter)  # deliveries, by channel type
    failed: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)  # attempts after a failure


class Dispatcher:
    """Records and delivers notices while ``run`` runs (the leader's term)."""

    def __init__(self, store: AlertStore, sender: Sender, lookup: ChannelLookup, clock: Clock,
                 *, attempts: int, base_delay: float, stats: AlertStats | None = None) -> None:
        self.store = store
        self.sender = sender
        self.lookup = lookup
        self.clock = clock
        self.attempts = attempts
        self.base_delay = base_delay
        self.stats = stats or AlertStats()
        self.duty: Duty = plain_unit  # the leader's units of work (see AlertMonitor.run)
        self._queue: asyncio.Queue[tuple[str, str, Notice]] = asyncio.Queue()

    async def dispatch(self, notice: Notice, channels: Iterable[str]) -> int:
        """Record ``notice`` for each channel and queue it; returns how many were new."""
        queued = 0
        now = self.clock.now_ms()
        for name in channels:
            channel = self.lookup(name)
            kind = channel.type if channel is not None else "unknown"
            doc_id = await self.store.add_delivery(notice, name, kind, now)
            if doc_id is not None:
                self._queue.put_nowait((doc_id, name, notice))
                queued += 1
        return queued

    async def resume(self, since_ms: int) -> int:
        """Queue deliveries a previous term left pending."""
        pending = await self.store.pending(since_ms)
        for item in pending:
            self._queue.put_nowait(item)
        return len(pending)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            while True:
                doc_id, name, notice = await self._queue.get()
                tg.create_task(self._deliver(doc_id, name, notice), name=f"alert:{doc_id}")

    async def _deliver(self, doc_id: str, name: str, notice: Notice) -> None:
        attempt = 0
        error: str | None = None
        kind = "unknown"
        status = "failed"
        while attempt < self.attempts:
            attempt += 1
            channel = self.lookup(name)
            if channel is None:
                error = f"no channel named {name!r}"
                break
            kind = channel.type
            try:
                await self.sender.send(channel, notice, now_s=self.clock.now_ms() // 1000)
            except DeliveryError as exc:
                error = str(exc)
                log.warning("alert %s to %s (%s) failed, attempt %d/%d: %s",
                            notice.event_id, name, kind, attempt, self.attempts, error)
                if not exc.retry:
                    break
                if attempt < self.attempts:
                    self.stats.retried[kind] += 1
                    await asyncio.sleep(backoff_delay(  # backoff
                        attempt, first=self.base_delay, cap=MAX_RETRY_DELAY))
                continue
            except Exception as exc:  # a bug must not stop the other deliveries
                # Only the type: the message of an unexpected error may quote a secret.
                error = f"internal error: {type(exc).__name__}"
                log.error("alert %s to %s (%s): %s", notice.event_id, name, kind, error)
                break
            status, error = "sent", None
            break
        (self.stats.sent if status == "sent" else self.stats.failed)[kind] += 1
        if status == "sent":
            log.info("alert %s sent to %s (%s)", notice.event_id, name, kind)
        else:
            log.error("alert %s to %s (%s) not delivered: %s", notice.event_id, name, kind,
                      error)
        async with self.duty("alert-delivery"):
            await self.store.finish_delivery(doc_id, status=status, attempts=attempt,
                                             error=error, now_ms=self.clock.now_ms())
