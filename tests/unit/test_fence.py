"""The self-fencing decision: a pure function of monotonic times, and the fence's
states (a lapse between two refreshes fences even if the second succeeded)."""

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from cronswarm.common import LEASE_LOST_REASON, RunRecord, RunStatus
from cronswarm.master._reaper import ended_on_its_own
from cronswarm.worker import FENCE_FRACTION, LeaseFence, fence_due

TTL = 9.0


def test_fence_falls_at_the_fraction_of_the_ttl_after_the_refresh_was_sent() -> None:
    assert FENCE_FRACTION < 1  # the rest of the TTL is the stop's time
    assert not fence_due(100.0, TTL, 100.0)
    assert not fence_due(100.0, TTL, 100.0 + TTL * FENCE_FRACTION - 0.001)
    assert fence_due(100.0, TTL, 100.0 + TTL * FENCE_FRACTION)
    assert fence_due(100.0, TTL, 100.0 + TTL)  # expired: certainly
    assert fence_due(None, TTL, 100.0)  # never granted


@given(sent=st.floats(0, 1e6), elapsed=st.floats(0, 100), fraction=st.floats(0.1, 0.9))
def test_fenced_exactly_from_the_fence_instant_and_always_before_expiry(
        sent: float, elapsed: float, fraction: float) -> None:
    due = fence_due(sent, TTL, sent + elapsed, fraction)
    assert due == (sent + elapsed >= sent + TTL * fraction)
    if elapsed >= TTL:
        assert due


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_fence() -> tuple[LeaseFence, FakeMonotonic, list[float]]:
    clock = FakeMonotonic()
    fenced_at: list[float] = []
    fence = LeaseFence(TTL, lambda: fenced_at.append(clock.now), monotonic=clock)
    return fence, clock, fenced_at


def test_check_fences_once_and_a_timely_refresh_lifts_it() -> None:
    fence, clock, fenced_at = make_fence()
    fence.refreshed(clock.now)  # the grant
    clock.now += 3
    fence.refreshed(clock.now)
    clock.now += 5.9
    assert fence.check() and not fenced_at
    clock.now += 0.1  # 6 s = 2/3 of 9 s after the last refresh was sent
    assert not fence.check()
    assert not fence.check()
    assert fenced_at == [clock.now] and fence.fences == 1
    clock.now += 0.5
    fence.refreshed(clock.now - 0.2)  # a refresh sent after the fence succeeded
    assert fence.check() and not fence.fenced
    assert fenced_at == [clock.now - 0.5]


def test_a_lapse_between_two_refreshes_fences_before_the_second_counts() -> None:
    """A process stopped (SIGSTOP) longer than the fence: the first refresh after it
    succeeds (new lease), but the runs of the lapse are fenced first."""
    fence, clock, fenced_at = make_fence()
    fence.refreshed(clock.now)
    clock.now += 20  # frozen: monotonic time kept counting
    fence.refreshed(clock.now)  # the lease was granted again at once
    assert fenced_at == [clock.now]
    assert fence.check()  # and the new lease is safe


def test_a_stale_refresh_reply_does_not_lift_the_fence() -> None:
    """A refresh sent before a freeze whose reply is read after it."""
    fence, clock, fenced_at = make_fence()
    fence.refreshed(clock.now)
    sent = clock.now + 1
    clock.now += 20
    fence.refreshed(sent)
    assert fenced_at and fence.fenced and not fence.check()


async def test_the_watch_fences_at_the_instant_without_any_other_action() -> None:
    fenced = asyncio.Event()
    loop = asyncio.get_running_loop()
    fence = LeaseFence(0.3, fenced.set, fraction=0.5, monotonic=loop.time)
    fence.refreshed(loop.time())
    watch = asyncio.create_task(fence.watch())
    try:
        async with asyncio.timeout(10):
            await fenced.wait()
        deadline = fence.deadline
        assert fence.fenced and deadline is not None and loop.time() >= deadline
    finally:
        watch.cancel()


def record(status: RunStatus, **extra: str) -> RunRecord:
    return RunRecord(run_id="j@1000", job="j", tick=1000, attempt=1, worker="w",
                     summary="", status=status, extra=dict(extra))


def test_the_master_retries_a_run_stopped_by_a_fence_as_lost_but_nothing_else() -> None:
    assert not ended_on_its_own(None)
    assert not ended_on_its_own(record(RunStatus.RUNNING))
    assert not ended_on_its_own(record(RunStatus.KILLED, reason=LEASE_LOST_REASON))
    assert ended_on_its_own(record(RunStatus.KILLED, reason="killed"))
    assert ended_on_its_own(record(RunStatus.SUCCEEDED))
    assert ended_on_its_own(record(RunStatus.LOST))  # never lost twice
