"""Pages of run history, newest first, with cursors (never skip).

Every query is shaped to walk one index range and stop after a page:

- equality on job, status or worker, then a range of ticks, sorted by
  (tick, _id) descending: the (field, tick, _id) indexes provide that order;
- no top-level ``$or`` (some servers then scan the collection): a cursor is
  two queries, the runs of the cursor's own tick after its _id and the runs
  of strictly older ticks; a text search is one query per text field, merged;
- tick is bounded with ``$gte``/``$lt`` only (see the indexes in _mongo.py);
- the search widens a window of ticks below the upper bound until it holds a
  full page, so that each round reads about a page of index entries even on
  servers that read a whole index range before sorting it (the development
  server). The newest ``n`` runs of a window that holds ``n`` are the newest
  ``n`` overall. The first window is ten seconds (a page of a busy cluster's
  whole history: 1,000 jobs a minute put 170 runs there), or ten minutes for
  one job (an every-second job puts 600 runs there); each next one is
  sized from the matches seen so far (2 to 16 times wider); after five rounds
  (up to four months) the window is unbounded, so sparse filters cost at most
  six round trips, each on its own index range.

A text search cannot use an index for the text: it reads every run of its
range, so its cost is bounded by the runs it reads, never by how old they are:

- when its first window does not fill the page, a count on the index range
  that is left (stopped after ``scan_at_once + 1`` entries, and by the server
  after ``count_time_ms``) tells whether the range holds few runs: then all of
  it is searched at once, however far back it reaches (a quiet job's matches
  of last year are on the first page);
- otherwise (many runs, or a server that cannot count them in time) it gets a
  time budget: its windows widen only as far as the time each one took says
  the next will fit in what is left, and when the budget is spent the page
  holds what the windows searched so far held, with ``stopped_at`` set to the
  oldest tick searched: the caller's next cursor goes on from there, with the
  next wider window (``next_width``), so the search keeps widening from
  request to request. Each request then costs about the budget, not the
  history.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import ExecutionTimeout

from ..common import ValidationError, from_ms
from ._abc import RunQuery

Doc = dict[str, Any]

FIRST_WINDOW_MS = 10_000
FIRST_JOB_WINDOW_MS = 600_000  # with a job filter
MIN_GROWTH, MAX_GROWTH = 2, 16
WINDOW_ROUNDS = 5  # bounded windows before the last, unbounded one
TEXT_FIELDS = ("output", "output_tail", "error")
# A text search reads at most this many runs at once without a time budget: on
# the development server that is about the 150 ms budget (30 us a run), on
# MongoDB a few milliseconds.
SCAN_AT_ONCE = 5_000
COUNT_TIME_MS = 50  # the server stops a count that takes longer (then: windows)
_ORDER = [("tick", DESCENDING), ("_id", DESCENDING)]


def encode_cursor(tick_ms: int, record_id: str, width_ms: int | None = None) -> str:
    """Runs older than (tick, record id); ``width_ms``: the window a text search
    that stopped there goes on with."""
    fields: list[object] = [tick_ms, record_id] if width_ms is None else [
        tick_ms, record_id, width_ms]
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str, int | None]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tick, record_id, *rest = json.loads(raw)
        width = rest[0] if rest else None
        if not isinstance(tick, int) or not isinstance(record_id, str) or len(rest) > 1 or (
                width is not None and (not isinstance(width, int) or width < 1)):
            raise TypeError("bad cursor fields")
    except (ValueError, TypeError) as exc:
        raise ValidationError.single("cursor", "is not a cursor returned by this API") from exc
    return tick, record_id, width


def _growth(need: int, found: int) -> float:
    """How much wider the next window is: aimed at 1.5 pages at the rate seen."""
    return float(min(MAX_GROWTH, max(MIN_GROWTH, 1.5 * need / max(found, 1))))


def _newest_first(doc: Mapping[str, Any]) -> tuple[Any, str]:
    return doc["tick"], doc["_id"]


class HistoryPager:
    """Finds the newest ``n`` runs matching a query below an upper tick."""

    def __init__(self, runs: AsyncCollection[Doc], query: RunQuery, *, now_ms: int,
                 max_time_ms: int, text_budget_ms: float | None = None,
                 scan_at_once: int = SCAN_AT_ONCE, count_time_ms: int = COUNT_TIME_MS) -> None:
        self.runs = runs
        self.query = query
        self.now_ms = now_ms
        self.max_time_ms = max_time_ms
        self.text_budget_ms = text_budget_ms  # None: search the whole range at once
        self.scan_at_once = scan_at_once  # see the module docstring
        self.count_time_ms = count_time_ms
        self.stopped_at: int | None = None  # see the module docstring
        self.next_width: int | None = None  # the window to go on with from there
        self._first_width: int | None = None
        self.base: Doc = {}
        for name in ("job", "status", "worker"):
            value = getattr(query, name)
            if value is not None:
                self.base[name] = getattr(value, "value", value)
        self.texts: list[Doc] = []
        if query.text:
            pattern = {"$regex": re.escape(query.text), "$options": "i"}
            self.texts = [{name: pattern} for name in TEXT_FIELDS]

    async def page(self, limit: int) -> list[Doc]:
        """Up to ``limit + 1`` documents, newest first, after the query's cursor."""
        query, need = self.query, limit + 1
        upper = query.until
        docs: list[Doc] = []
        if query.cursor is not None:
            at, record_id, self._first_width = decode_cursor(query.cursor)
            if (query.since is None or at >= query.since) and (upper is None or at < upper):
                docs = await self._matching(
                    {**self.base, "tick": from_ms(at), "_id": {"$lt": record_id}}, need)
            upper = at if upper is None else min(upper, at)
        if len(docs) < need:
            docs += await self._below(upper, need - len(docs))
        return docs

    async def _below(self, upper: int | None, need: int) -> list[Doc]:
        since = self.query.since
        top = self.now_ms if upper is None else upper
        width = self._first_width or (
            FIRST_JOB_WINDOW_MS if "job" in self.base else FIRST_WINDOW_MS)
        if self.texts and self.text_budget_ms is not None:
            return await self._search(since, top, upper, width, need, self.text_budget_ms / 1000)
        for _ in range(WINDOW_ROUNDS):
            lower = top - width
            if lower <= 0 or (since is not None and lower <= since):
                break  # the rest of the range is the last window (no tick is below 0)
            docs = await self._matching(self._window(lower, upper), need)
            if len(docs) >= need:
                return docs
            width = int(width * _growth(need, len(docs)))
        return await self._matching(self._window(since, upper), need)

    async def _search(self, since: int | None, top: int, upper: int | None, width: int,
                      need: int, budget: float) -> list[Doc]:
        """``_below`` for a text search, within ``budget`` seconds (module doc)."""
        end = time.monotonic() + budget
        # The last window searched in full: its lower end, width and matches.
        done: tuple[int, int, list[Doc]] | None = None
        deadline: float | None = None  # the first window may take the query's whole limit
        while True:
            lower = top - width
            last = lower <= 0 or (since is not None and lower <= since)
            began = time.monotonic()
            try:  # the last window is the rest of the range
                docs = await self._matching(
                    self._window(since if last else lower, upper), need, deadline)
            except ExecutionTimeout:
                if done is None:
                    raise
                break  # the server stopped it at the budget: keep the last window's
            if len(docs) >= need or last:
                return docs
            if done is None and await self._holds_few(since, lower):
                # Few runs are left below: search them all, whatever their age.
                return docs + await self._matching(self._window(since, lower), need - len(docs))
            done = (lower, width, docs)
            # This window's time says what a wider one would take (it reads the
            # runs of its whole range again): aim at half of what is left.
            took = max(time.monotonic() - began, 1e-3)
            growth = min(_growth(need, len(docs)), (end - time.monotonic()) / 2 / took)
            if growth < MIN_GROWTH:
                break
            width = int(width * growth)
            deadline = end
        assert done is not None
        # The next request goes on below with twice the last full window (which
        # took at most half of what was left of the budget).
        self.stopped_at, self.next_width = done[0], done[1] * MIN_GROWTH
        return done[2]

    async def _holds_few(self, since: int | None, upper: int) -> bool:
        """Whether ``[since, upper)`` holds at most ``scan_at_once`` runs, by a
        count on the index range that the server stops at ``count_time_ms``."""
        try:
            held = await self.runs.count_documents(
                self._window(since, upper), limit=self.scan_at_once + 1,
                maxTimeMS=self.count_time_ms)
        except ExecutionTimeout:
            return False  # too slow to count: too many to read at once
        return held <= self.scan_at_once

    def _window(self, lower: int | None, upper: int | None) -> Doc:
        tick: Doc = {}
        if lower is not None:
            tick["$gte"] = from_ms(lower)
        if upper is not None:
            tick["$lt"] = from_ms(upper)
        return {**self.base, "tick": tick} if tick else dict(self.base)

    async def _matching(self, flt: Doc, need: int, deadline: float | None = None
                        ) -> list[Doc]:
        """The newest ``need`` matches of ``flt``; each query stopped by the server
        at ``deadline`` (monotonic seconds) when given."""
        if not self.texts:
            return await self._find(flt, need, deadline)
        merged: dict[str, Doc] = {}
        for text in self.texts:
            for doc in await self._find({**flt, **text}, need, deadline):
                merged[doc["_id"]] = doc
        ordered: Callable[[Mapping[str, Any]], tuple[Any, str]] = _newest_first
        return sorted(merged.values(), key=ordered, reverse=True)[:need]

    async def _find(self, flt: Doc, need: int, deadline: float | None = None) -> list[Doc]:
        limit_ms = self.max_time_ms if deadline is None else min(
            self.max_time_ms, max(1, int((deadline - time.monotonic()) * 1000)))
        cursor = self.runs.find(flt).sort(_ORDER).limit(need).max_time_ms(limit_ms)
        return await cursor.to_list(length=need)
