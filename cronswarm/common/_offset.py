"""A worker's offset from the cluster's clock: the pure part (numbers in, numbers out).

Why peers and not a time server: etcd has no time API (leases are relative,
the ``Date`` header of its HTTP endpoints has one-second resolution), and the
promise is "on time by the cluster's clock, not the fastest worker's". So, as
CockroachDB does between its nodes, every worker measures its offset to its
peers and takes the **median**: one bad clock (or a minority of bad clocks)
cannot move the cluster's time, and a worker beyond a maximum offset from it
stops serving.

One measurement is an NTP exchange carried by etcd (``worker._clock_sync``):
worker A writes its beacon at its time ``t1``; B's watch delivers it at B's
time ``t2``; B's next beacon, written at B's time ``t3``, echoes ``(t1, t2)``;
A's watch delivers that at A's time ``t4``. Then, whatever B's clock and
however long B held the echo,

    offset(B - A) = ((t2 - t1) + (t3 - t4)) / 2
    delay         = (t4 - t1) - (t3 - t2)

and the true offset lies within ``delay / 2`` of the estimate (the error is
the asymmetry of the two paths, at most the whole delay). Per peer the sample
with the least delay among the recent ones is used (NTP's clock filter).

The cluster's time is the median of every member's clock, this worker's own
included (offset 0, exactly known). A median is monotone in its inputs, so if
each peer's true offset is within its bounds, the true median lies between
the median of the lower bounds and the median of the upper bounds: that is
the estimate's uncertainty, with no assumption about which peer is right.

With two workers the median is their midpoint: two clocks that disagree by
more than twice the maximum offset both stop, as nothing can tell which one
is right (add a third worker).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ._clock import Clock


@dataclass(frozen=True, slots=True)
class Sample:
    """One exchange with a peer: the peer's clock minus ours, within ``± delay / 2``."""

    offset_ms: float
    delay_ms: float
    at: float  # monotonic seconds when it was taken (to forget old samples)

    @property
    def uncertainty_ms(self) -> float:
        return self.delay_ms / 2


def ntp_sample(t1: float, t2: float, t3: float, t4: float, *, at: float) -> Sample:
    """The sample of one exchange (``t1``, ``t4`` on our clock; ``t2``, ``t3`` on the peer's)."""
    offset = ((t2 - t1) + (t3 - t4)) / 2
    # Clocks read in whole ms can make a fast exchange look negative.
    delay = max(0.0, (t4 - t1) - (t3 - t2))
    return Sample(offset, delay, at)


def best_sample(samples: Iterable[Sample]) -> Sample | None:
    """The sample with the least delay (the tightest bound); the newest on a tie."""
    best: Sample | None = None
    for sample in samples:
        if best is None or (sample.delay_ms, -sample.at) < (best.delay_ms, -best.at):
            best = sample
    return best


@dataclass(frozen=True, slots=True)
class Estimate:
    """Our clock minus the cluster's, within ``± uncertainty_ms``, from ``peers`` peers."""

    offset_ms: float
    uncertainty_ms: float
    peers: int


def cluster_offset(peer_samples: Iterable[Sample]) -> Estimate:
    """Our offset from the median clock of the cluster (us and each sampled peer).

    With no peer, our clock is the cluster's: offset 0, exactly.
    """
    samples = list(peer_samples)
    # The peers' clocks relative to ours; ours is 0 with no doubt.
    mid = [0.0] + [s.offset_ms for s in samples]
    low = [0.0] + [s.offset_ms - s.uncertainty_ms for s in samples]
    high = [0.0] + [s.offset_ms + s.uncertainty_ms for s in samples]
    median = statistics.median(mid)
    uncertainty = max(median - statistics.median(low), statistics.median(high) - median)
    # The cluster's clock is ahead of ours by the median: our offset is its negation.
    return Estimate(-median + 0.0, uncertainty, len(samples))


class ClockState(StrEnum):
    OK = "ok"
    UNSYNCED = "unsynced"  # peers exist, none measured yet (or no longer): wait
    OUT_OF_BOUNDS = "out_of_bounds"  # beyond the maximum offset: claim nothing


def clock_state(estimate: Estimate | None, max_offset_ms: float) -> ClockState:
    if estimate is None:
        return ClockState.UNSYNCED
    if abs(estimate.offset_ms) > max_offset_ms:
        return ClockState.OUT_OF_BOUNDS
    return ClockState.OK


@dataclass(frozen=True, slots=True)
class ClockReport:
    """What a worker publishes about its clock in its registry entry (``clock``)."""

    state: ClockState
    offset_ms: float
    uncertainty_ms: float
    peers: int
    max_offset_ms: float
    since: int  # cluster-time ms when ``state`` began

    @property
    def claiming(self) -> bool:
        return self.state is ClockState.OK

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "offset_ms": round(self.offset_ms, 1),
                "uncertainty_ms": round(self.uncertainty_ms, 1), "peers": self.peers,
                "max_offset_ms": self.max_offset_ms, "since": self.since}

    @classmethod
    def from_dict(cls, data: object) -> ClockReport | None:
        """The report in a registry entry; None if it has none or it is unreadable."""
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(ClockState(data["state"]), float(data["offset_ms"]),
                       float(data["uncertainty_ms"]), int(data["peers"]),
                       float(data["max_offset_ms"]), int(data["since"]))
        except (KeyError, ValueError, TypeError):
            return None


def registered_clock(value: bytes) -> ClockReport | None:
    """The clock report in a worker's registry value (``/workers/<id>``)."""
    try:
        info = json.loads(value)
    except ValueError:
        return None
    return ClockReport.from_dict(info.get("clock")) if isinstance(info, dict) else None


def may_own(value: bytes) -> bool:
    """Whether a registered worker may be chosen to own a tick: not one that
    said it claims nothing (a worker that reports no clock is trusted)."""
    report = registered_clock(value)
    return report is None or report.claiming


class ClusterClock:
    """The cluster's time as this worker knows it: its own clock less its offset.

    It reads the earliest the cluster's time can be (the offset's uncertainty
    taken against us), so a tick due by it is never due early by the cluster.
    """

    def __init__(self, local: Clock) -> None:
        self.local = local
        self.correction_ms = 0.0  # offset + uncertainty, set by the clock sync

    def now_ms(self) -> int:
        return int(self.local.now_ms() - self.correction_ms)
