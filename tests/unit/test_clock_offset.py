"""The pure offset estimation (common._offset), its health view and its alert."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cronswarm.alerts._clocks import CLOCK_ALERT_AFTER_MS, clock_notice
from cronswarm.common import (
    AlertKind,
    ClockReport,
    ClockState,
    ClusterClock,
    Estimate,
    Sample,
    best_sample,
    clock_state,
    cluster_offset,
    may_own,
    ntp_sample,
    registered_clock,
)
from cronswarm.master._workerlist import worker_health


class FixedClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms


def test_an_exchange_gives_the_peer_offset_whatever_the_peer_held_the_echo() -> None:
    # The peer is 2000 ms ahead; each path takes 5 ms; the peer held the echo 700 ms.
    t1 = 1_000
    t2 = t1 + 5 + 2000
    t3 = t2 + 700
    t4 = t3 - 2000 + 5
    sample = ntp_sample(t1, t2, t3, t4, at=0)
    assert sample.offset_ms == 2000
    assert sample.delay_ms == 10
    assert sample.uncertainty_ms == 5


@given(offset=st.integers(-10_000, 10_000), out=st.integers(0, 500),
       back=st.integers(0, 500), hold=st.integers(0, 2000))
def test_the_true_offset_is_within_the_bound(offset: int, out: int, back: int,
                                             hold: int) -> None:
    t1 = 50_000
    t2 = t1 + out + offset
    t3 = t2 + hold
    t4 = t3 - offset + back
    sample = ntp_sample(t1, t2, t3, t4, at=0)
    assert abs(sample.offset_ms - offset) <= sample.uncertainty_ms
    assert sample.delay_ms == out + back


def test_a_whole_ms_clock_never_gives_a_negative_delay() -> None:
    assert ntp_sample(10, 10, 11, 10, at=0).delay_ms == 0


def test_the_least_delay_sample_wins_and_the_newest_on_a_tie() -> None:
    samples = [Sample(30, 40, at=1), Sample(2, 4, at=2), Sample(3, 4, at=3)]
    assert best_sample(samples) == Sample(3, 4, at=3)
    assert best_sample([]) is None


def test_alone_the_offset_is_zero_exactly() -> None:
    assert cluster_offset([]) == Estimate(0.0, 0.0, 0)


def test_five_clocks_one_second_apart_each_find_its_own_skew() -> None:
    clocks = [-2000, -1000, 0, 1000, 2000]
    for own in clocks:
        peers = [Sample(other - own, 2, at=0) for other in clocks if other != own]
        estimate = cluster_offset(peers)
        assert estimate.offset_ms == own
        # The middle clock is its own median: known exactly.
        assert estimate.uncertainty_ms == (0 if own == 0 else 1)
        assert estimate.peers == 4


def test_one_wild_clock_cannot_move_the_cluster() -> None:
    # Us and two peers agree; a third is an hour ahead.
    peers = [Sample(3, 2, at=0), Sample(-2, 2, at=0), Sample(3_600_000, 2, at=0)]
    assert abs(cluster_offset(peers).offset_ms) <= 3


def test_the_uncertainty_bounds_the_median_of_the_true_clocks() -> None:
    peers = [Sample(100, 40, at=0), Sample(120, 200, at=0)]
    estimate = cluster_offset(peers)
    assert estimate.offset_ms == -100  # median of 0, 100, 120
    # True peer offsets may be 80..120 and 20..220: the true median is in 20..120.
    assert estimate.uncertainty_ms == 80


@given(st.lists(st.tuples(st.integers(-5000, 5000), st.integers(0, 400),
                          st.integers(-200, 200)), max_size=9))
def test_the_true_median_is_always_within_the_estimate(
        peers: list[tuple[int, int, int]]) -> None:
    # (measured offset, delay, error within ± delay / 2 as a fraction of 200)
    samples = [Sample(o, d, at=0) for o, d, _ in peers]
    true = sorted([0.0] + [o + e / 200 * d / 2 for o, d, e in peers])
    n = len(true)
    true_median = (true[n // 2] + true[(n - 1) // 2]) / 2
    estimate = cluster_offset(samples)
    assert abs(-estimate.offset_ms - true_median) <= estimate.uncertainty_ms + 1e-9


@pytest.mark.parametrize(("estimate", "state"), [
    (None, ClockState.UNSYNCED),
    (Estimate(0, 0, 0), ClockState.OK),
    (Estimate(500, 10, 2), ClockState.OK),
    (Estimate(-501, 10, 2), ClockState.OUT_OF_BOUNDS),
    (Estimate(2000, 1, 2), ClockState.OUT_OF_BOUNDS),
])
def test_beyond_the_maximum_the_worker_is_out(estimate: Estimate | None,
                                              state: ClockState) -> None:
    assert clock_state(estimate, 500) is state


def test_the_cluster_clock_reads_the_earliest_the_cluster_time_can_be() -> None:
    clock = ClusterClock(FixedClock(10_000))
    assert clock.now_ms() == 10_000
    clock.correction_ms = 2000 + 3  # 2 s ahead, ± 3 ms
    assert clock.now_ms() == 7_997


def report(state: ClockState, since: int = 1_000) -> ClockReport:
    return ClockReport(state, 2000.4, 1.2, 2, 500, since)


def test_the_report_round_trips_and_says_who_may_own_ticks() -> None:
    out = report(ClockState.OUT_OF_BOUNDS)
    assert ClockReport.from_dict(json.loads(json.dumps(out.to_dict()))) == ClockReport(
        ClockState.OUT_OF_BOUNDS, 2000.4, 1.2, 2, 500, 1_000)
    assert not may_own(json.dumps({"id": "w", "clock": out.to_dict()}).encode())
    assert may_own(json.dumps({"id": "w", "clock": report(ClockState.OK).to_dict()}).encode())
    # A worker that reports no clock (an older version) is trusted.
    assert may_own(json.dumps({"id": "w"}).encode())
    assert registered_clock(b"not json") is None
    assert ClockReport.from_dict({"state": "sideways"}) is None


def test_the_workers_page_shows_a_worker_off_the_cluster_clock() -> None:
    base = {"updated": 10_000, "running": 0, "max_runs": 4}
    clock = {"clock": report(ClockState.OUT_OF_BOUNDS).to_dict()}
    assert worker_health({**base, **clock}, 10_500, 5_000) == "clock_offset"
    unsynced = {"clock": report(ClockState.UNSYNCED).to_dict()}
    assert worker_health({**base, **unsynced}, 10_500, 5_000) == "unsynced"
    assert worker_health({**base, "clock": report(ClockState.OK).to_dict()},
                         10_500, 5_000) == "ok"
    assert worker_health({**base, **clock}, 20_000, 5_000) == "stale"


def test_a_clock_alert_waits_out_a_short_episode_and_names_it() -> None:
    out = report(ClockState.OUT_OF_BOUNDS, since=1_000)
    assert clock_notice("w1", out, 1_000 + CLOCK_ALERT_AFTER_MS - 1) is None
    notice = clock_notice("w1", out, 1_000 + CLOCK_ALERT_AFTER_MS)
    assert notice is not None
    assert notice.kind is AlertKind.CLOCK_OFFSET
    assert notice.event_id == "clock_offset:w1:1000"
    assert dict(notice.fields)["Worker"] == "w1"
    assert clock_notice("w1", report(ClockState.OK), 100_000) is None
