"""A budgeted text search whose window the server stops (maxTimeMS): the page
keeps what the windows before it found and goes on from there. The collection
is a stand-in that answers nothing and stops the queries it is told to."""

import base64
import json
from typing import Any

import pytest
from pymongo.errors import ExecutionTimeout

from cronswarm.common import ValidationError, from_ms
from cronswarm.logstore import RunQuery, encode_cursor
from cronswarm.logstore._history import (
    FIRST_WINDOW_MS,
    SCAN_AT_ONCE,
    HistoryPager,
    decode_cursor,
)

NOW = 1_800_000_000_000


class Cursor:
    def __init__(self, runs: "Runs", flt: dict[str, Any]) -> None:
        self.runs, self.flt, self.ms = runs, flt, 0

    def sort(self, _order: object) -> "Cursor":
        return self

    def limit(self, _n: int) -> "Cursor":
        return self

    def max_time_ms(self, ms: int) -> "Cursor":
        self.ms = ms
        return self

    async def to_list(self, length: int) -> list[dict[str, Any]]:
        self.runs.calls.append((self.flt, self.ms))
        if len(self.runs.calls) > self.runs.answered:
            raise ExecutionTimeout("operation exceeded time limit", 50)
        return []


class Runs:
    def __init__(self, answered: int, held: int | None = None) -> None:
        self.answered = answered  # queries answered before the server stops one
        self.held = held  # runs a count finds (None: the server stops the count)
        self.calls: list[tuple[dict[str, Any], int]] = []
        self.counts: list[tuple[dict[str, Any], int, int]] = []

    def find(self, flt: dict[str, Any]) -> Cursor:
        return Cursor(self, flt)

    async def count_documents(self, flt: dict[str, Any], *, limit: int, maxTimeMS: int) -> int:  # noqa: N803
        self.counts.append((flt, limit, maxTimeMS))
        if self.held is None:
            raise ExecutionTimeout("operation exceeded time limit", 50)
        return min(self.held, limit)


async def test_a_window_stopped_by_the_server_leaves_the_page_to_the_ones_before() -> None:
    runs = Runs(answered=3)  # the first window: one query per text field
    pager = HistoryPager(runs, RunQuery(text="disk"), now_ms=NOW,  # type: ignore[arg-type]
                         max_time_ms=10_000, text_budget_ms=10_000)
    assert await pager.page(50) == []
    assert pager.stopped_at == NOW - FIRST_WINDOW_MS
    assert pager.next_width == 2 * FIRST_WINDOW_MS
    first, stopped = runs.calls[:3], runs.calls[3]
    assert all(ms == 10_000 for _, ms in first)  # the first window may take the query's limit
    assert all(f["tick"]["$gte"] == from_ms(NOW - FIRST_WINDOW_MS) for f, _ in first)
    assert stopped[0]["tick"]["$gte"] < from_ms(NOW - FIRST_WINDOW_MS)  # a wider one
    assert 0 < stopped[1] <= 10_000  # stopped by the server at the budget's end
    assert len(runs.calls) == 4


async def test_few_runs_below_the_first_window_are_searched_at_once_whatever_their_age() -> None:
    runs = Runs(answered=100, held=SCAN_AT_ONCE)
    pager = HistoryPager(runs, RunQuery(text="disk"), now_ms=NOW,  # type: ignore[arg-type]
                         max_time_ms=10_000, text_budget_ms=0)
    assert await pager.page(50) == []
    assert (pager.stopped_at, pager.next_width) == (None, None)  # nothing left to search
    [(counted, limit, _ms)] = runs.counts
    assert counted == {"tick": {"$lt": from_ms(NOW - FIRST_WINDOW_MS)}}
    assert limit == SCAN_AT_ONCE + 1  # stopped once it holds too many
    assert len(runs.calls) == 6  # the first window and the rest, each per text field
    assert all(f["tick"] == {"$lt": from_ms(NOW - FIRST_WINDOW_MS)} for f, _ in runs.calls[3:])


@pytest.mark.parametrize("held", [SCAN_AT_ONCE + 1, None])  # too many, or not counted in time
async def test_a_range_with_many_runs_is_searched_within_the_budget(held: int | None) -> None:
    runs = Runs(answered=100, held=held)
    pager = HistoryPager(runs, RunQuery(text="disk"), now_ms=NOW,  # type: ignore[arg-type]
                         max_time_ms=10_000, text_budget_ms=0)
    assert await pager.page(50) == []
    assert len(runs.counts) == 1 and len(runs.calls) == 3  # the first window only
    assert pager.stopped_at == NOW - FIRST_WINDOW_MS


async def test_a_first_window_stopped_by_the_server_is_an_error() -> None:
    pager = HistoryPager(Runs(answered=0), RunQuery(text="disk"),  # type: ignore[arg-type]
                         now_ms=NOW, max_time_ms=10_000, text_budget_ms=150)
    with pytest.raises(ExecutionTimeout):
        await pager.page(50)


def test_the_cursor_of_a_stopped_search_carries_its_next_window() -> None:
    assert decode_cursor(encode_cursor(NOW, "", 20_000)) == (NOW, "", 20_000)
    assert decode_cursor(encode_cursor(NOW, "j@1#1")) == (NOW, "j@1#1", None)
    for fields in ([NOW, "", 0], [NOW, "", -5], [NOW, "", "wide"], [NOW, "", 1, 2]):
        raw = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()
        with pytest.raises(ValidationError):
            decode_cursor(raw)


async def test_windows_that_widen_past_the_epoch_end_at_the_first_tick() -> None:
    # An unbudgeted text search with a cursor's wide first window (or any
    # search of an empty history) widens until it has read everything; it
    # must stop at tick 0, not compute a date before year 1.
    runs = Runs(answered=1000)
    cursor = encode_cursor(NOW, "job@1#1", NOW // 2)
    pager = HistoryPager(runs, RunQuery(text="disk", cursor=cursor),  # type: ignore[arg-type]
                         now_ms=NOW, max_time_ms=10_000, text_budget_ms=None)
    assert await pager.page(50) == []
    windows = [flt["tick"] for flt, _ in runs.calls if isinstance(flt.get("tick"), dict)]
    lowest = [w.get("$gte") for w in windows]
    assert all(t is None or t >= from_ms(0) for t in lowest)
    assert lowest[-1] is None  # the last window is the rest of the range
