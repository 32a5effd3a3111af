"""A local copy of every key under one prefix, kept fresh by a watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ._abc import CoordStore, CoordUnavailable, WatchCompacted
from ._kv import KeyValue

log = logging.getLogger(__name__)

# on_change(name, new, old): new is None for a delete; old is what the mirror
# held before (None for a new key; when keep_values is False, only a mod_revision:
# the key's own, or that of the snapshot it was read in).
_YIELD_EVERY = 500
_PAGE = 1000  # keys per page handed over while loading (and in the first read)
_PAGE_BYTES = 1 << 20  # about this much in each later one

ChangeCallback = Callable[[str, KeyValue | None, KeyValue | None], None]


class PrefixMirror:
    """Mirrors ``prefix``: ``items`` maps the key suffix to its KeyValue.

    ``on_change(name, new, old)`` is called for every change (``new`` None:
    deleted; ``old`` the previous value), including those found by a reload
    after the watch history was compacted.
    ``ready`` is set once the first snapshot is loaded and the watch is open.
    """

    def __init__(
        self, store: CoordStore, prefix: str, *, on_change: ChangeCallback | None = None,
        keep_values: bool = True,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.keep_values = keep_values  # False: items keep revisions only (less memory)
        self.items: dict[str, KeyValue] = {}
        self.revision = 0
        self.ready = asyncio.Event()
        self._on_change = on_change
        self._changed = asyncio.Event()
        self._key_waiters: dict[str, list[asyncio.Future[None]]] = {}  # wait_for_key

    def _apply(self, name: str, kv: KeyValue | None, read: KeyValue | None = None) -> None:
        """``read``: without values, what to keep for a key of the snapshot it names."""
        if kv is None:
            old = self.items.pop(name, None)
            if old is None:
                return
        else:
            old = self.items.get(name)
            if old is not None and old.mod_revision >= kv.mod_revision:
                return
            if self.keep_values:
                self.items[name] = kv
            else:
                # Only a revision at which the key held what we saw is needed
                # (the test above); every key of one snapshot shares it.
                self.items[name] = read or KeyValue("", b"", 0, kv.mod_revision, 0)
        if self._on_change is not None:
            self._on_change(name, kv, old)
        for waiter in self._key_waiters.pop(name, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _load(self) -> None:
        # Page by page: a big prefix (100,000 jobs) is never held twice (raw
        # reply and parsed values) next to what the callbacks build from it.
        gone = set(self.items)  # held before: deleted unless the snapshot has them
        revision = self.revision
        skip = len(self.prefix)
        count = 0
        pages = self.store.scan_prefix(self.prefix, page_size=_PAGE,
                                       page_bytes=_PAGE_BYTES)
        async with contextlib.aclosing(pages):  # no read left in flight on an error
            async for kvs, read_at in pages:
                revision = read_at
                read = KeyValue("", b"", 0, read_at, 0)
                for kv in kvs:
                    name = kv.key[skip:]
                    gone.discard(name)
                    self._apply(name, kv, read)
                    count += 1
                    if count % _YIELD_EVERY == 0:
                        # Must not starve the event loop: the lease keep-alive runs on it too.
                        await asyncio.sleep(0)
        for name in gone:
            self._apply(name, None)
        self.revision = revision
        self._notify()

    async def run(self) -> None:
        """Load and follow the prefix until cancelled."""
        delay = 0.05
        while True:
            try:
                await self._load()
                self.ready.set()
                delay = 0.05
                async for batch in self.store.watch_prefix(self.prefix, self.revision + 1):
                    for event in batch:
                        name = event.key[len(self.prefix):]
                        self._apply(name, None if event.type == "delete" else event.kv)
                        self.revision = max(self.revision, event.mod_revision)
                    self._notify()
            except WatchCompacted as exc:
                log.info("watch on %s fell behind compaction (%s); reloading", self.prefix, exc)
            except CoordUnavailable as exc:
                log.warning("cannot load %s (%s); retrying in %.2fs", self.prefix, exc, delay)
                await asyncio.sleep(delay)  # reconnect backoff
                delay = min(delay * 2, 2.0)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds (checked after every change)."""
        while not predicate():
            await self._changed.wait()

    async def wait_for_key(self, name: str, predicate: Callable[[], bool]) -> None:
        """``wait_for`` a predicate on the key ``name`` alone: checked after each
        change of that key, not of every key (many waiters, many keys)."""
        while not predicate():
            waiter = asyncio.get_running_loop().create_future()
            waiters = self._key_waiters.setdefault(name, [])
            waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters and self._key_waiters.get(name) is waiters:
                        del self._key_waiters[name]
