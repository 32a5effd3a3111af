import asyncio

import pytest

from cronswarm.worker import SlotBook, Slots


def test_free_slots_go_to_the_highest_priority_then_the_earliest() -> None:
    book = SlotBook(2)
    a, b = book.request(0), book.request(0)
    assert book.grant() == [a, b]
    low, high, mid, high2 = book.request(0), book.request(10), book.request(5), book.request(10)
    assert (book.busy, book.waiting, book.grant()) == (2, 4, [])
    book.release()
    assert book.grant() == [high]
    book.release()
    book.release()
    assert book.grant() == [high2, mid]
    assert book.waiting == 1
    book.release()
    assert book.grant() == [low]
    assert (book.busy, book.waiting) == (2, 0)


def test_cancelled_requests_are_skipped_and_counted_once() -> None:
    book = SlotBook(1)
    first = book.request(0)
    assert book.grant() == [first]
    gone, kept = book.request(9), book.request(1)
    book.cancel(gone)
    book.cancel(gone)
    assert book.waiting == 1
    book.release()
    assert book.grant() == [kept]


def test_release_without_a_slot_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        SlotBook(1).release()
    with pytest.raises(ValueError, match="at least 1"):
        SlotBook(0)


async def test_waiters_start_by_priority_as_slots_free_up() -> None:
    slots = Slots(1)
    assert await slots.acquire(0)
    order: list[str] = []

    async def run(name: str, priority: int) -> None:
        assert await slots.acquire(priority)
        order.append(name)
        slots.release()

    tasks = [asyncio.create_task(run("low", 0))]
    await slots.wait_for(lambda: slots.waiting == 1)
    tasks.append(asyncio.create_task(run("high", 7)))
    await slots.wait_for(lambda: slots.waiting == 2)
    slots.release()
    await asyncio.gather(*tasks)
    assert order == ["high", "low"]
    assert (slots.busy, slots.waiting) == (0, 0)


async def test_a_waiter_gives_up_at_its_deadline_or_when_cancelled() -> None:
    slots = Slots(1)
    assert await slots.acquire(0)
    loop = asyncio.get_running_loop()
    assert not await slots.acquire(5, deadline=loop.time() + 0.05)
    cancel = asyncio.Event()
    waiter = asyncio.create_task(slots.acquire(5, cancel=cancel))
    await slots.wait_for(lambda: slots.waiting == 1)
    cancel.set()
    assert not await waiter
    assert (slots.busy, slots.waiting) == (1, 0)
    slots.release()
    assert await slots.acquire(0, deadline=loop.time())  # free: granted even at the deadline


async def test_a_task_cancelled_while_waiting_leaves_no_slot_behind() -> None:
    slots = Slots(1)
    assert await slots.acquire(0)
    waiter = asyncio.create_task(slots.acquire(0))
    await slots.wait_for(lambda: slots.waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    slots.release()
    assert (slots.busy, slots.waiting) == (0, 0)
