"""Measuring this worker's offset from the cluster's clock, through etcd.

The estimation is pure (``common._offset``, which says why peers and a median);
this module carries the NTP exchanges. Every worker writes a beacon to
``/clock/<id>`` (on its lease) every ``BEACON_INTERVAL_S``:
``{"t": <its clock when sent>, "echo": {<peer>: [<peer's t>, <its clock when that arrived>]}}``
(and ``"need": true`` while its own clock is not known to be within the bound)
and watches the others'. A beacon that echoes one of ours closes an exchange:
``t1`` (ours, echoed), ``t2`` (the peer's arrival time, echoed), ``t3`` (the
beacon's own ``t``), ``t4`` (our clock when the watch delivered it).

Times are read from the worker's own clock (``local``), never from the
corrected one. What arrives late (a watch's first snapshot, a busy event loop)
only widens that sample's delay, and so its bound: the bound still holds, and
the least-delay filter prefers better samples.

Cost: one put per worker every ``STEADY_INTERVAL_S`` once its clock is
within the bound (every ``BEACON_INTERVAL_S`` until then), each seen by every
worker, each beacon naming at most ``MAX_ECHOES`` peers (a cluster larger than
that measures against a changing subset, which a median tolerates). A worker
that hears a beacon not echoing it (a peer that just joined, or lost sight of
it) answers at once, so a newcomer is measured within a second or two while
the steady cluster writes one beacon per worker every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ..common import (
    Clock,
    ClockReport,
    ClockState,
    ClusterClock,
    Estimate,
    Keyspace,
    Sample,
    best_sample,
    clock_state,
    cluster_offset,
    ntp_sample,
)
from ..coord import CoordStore, CoordUnavailable, KeyValue, LeaseKeeper, PrefixMirror

log = logging.getLogger(__name__)

BEACON_INTERVAL_S = 1.0  # while this worker's clock is not known to be within the bound
STEADY_INTERVAL_S = 5.0  # once it is (NTP's poll interval grows the same way)
ANSWER_GAP_S = 0.2  # the least time between two beacons
SAMPLES_PER_PEER = 8  # the least-delay one of these is used (NTP's clock filter)
SAMPLE_TTL_S = 15.0  # older samples are forgotten (a stepped clock shows within this)
MAX_ECHOES = 16
SENT_KEPT = 64  # our beacon times an echo may name


class ClockSync:
    """Keeps ``clock`` (the cluster's time) and ``report`` (for the registry) current."""

    def __init__(self, store: CoordStore, keys: Keyspace, worker_id: str, local: Clock,
                 lease: LeaseKeeper, *, max_offset_ms: float,
                 on_state: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.keys = keys
        self.id = worker_id
        self.local = local
        self.lease = lease
        self.max_offset_ms = max_offset_ms
        self.clock = ClusterClock(local)
        self.beacons = PrefixMirror(store, keys.clocks, on_change=self._on_beacon)
        self.ready = asyncio.Event()
        self.synced = asyncio.Event()  # set while the clock is within the maximum offset
        self._on_state = on_state
        self._state_changed = asyncio.Event()
        self._answer = asyncio.Event()  # a peer waits for a beacon echoing it
        self._samples: dict[str, deque[Sample]] = {}
        self._heard: dict[str, tuple[int, int, float]] = {}  # peer -> (its t, our t, mono)
        self._sent: deque[int] = deque(maxlen=SENT_KEPT)
        self._last: tuple[Estimate, float] | None = None  # the last estimate, when made
        self.estimate: Estimate | None = None
        self.report = ClockReport(ClockState.UNSYNCED, 0.0, 0.0, 0, max_offset_ms,
                                  local.now_ms())

    @property
    def may_claim(self) -> bool:
        return self.report.claiming

    async def run(self) -> None:
        """Beacon, listen and estimate until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.beacons.run(), name="clock-mirror")
            await self.beacons.ready.wait()
            self.evaluate()
            self.ready.set()
            tg.create_task(self._beacon_loop(), name="clock-beacon")
            if self._on_state is not None:
                tg.create_task(self._report_loop(self._on_state), name="clock-report")

    async def _beacon_loop(self) -> None:
        while True:
            try:
                await self._send_beacon()
            except CoordUnavailable as exc:
                log.debug("cannot write the clock beacon: %s", exc)
            self.evaluate()
            await asyncio.sleep(ANSWER_GAP_S)  # the least gap between two beacons
            period = (STEADY_INTERVAL_S if self.report.state is ClockState.OK
                      else BEACON_INTERVAL_S) - ANSWER_GAP_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answer.wait(), period)  # or a peer asks
            self._answer.clear()

    async def _report_loop(self, on_state: Callable[[], Awaitable[None]]) -> None:
        while True:
            await self._state_changed.wait()
            self._state_changed.clear()
            try:
                await on_state()
            except CoordUnavailable as exc:
                log.warning("cannot publish the clock state: %s", exc)

    async def _send_beacon(self) -> None:
        now_mono = time.monotonic()
        heard = sorted(((mono, peer, their_t, our_t)
                        for peer, (their_t, our_t, mono) in self._heard.items()
                        if now_mono - mono <= SAMPLE_TTL_S), reverse=True)[:MAX_ECHOES]
        sent_at = self.local.now_ms()
        beacon: dict[str, object] = {"t": sent_at, "echo": {
            peer: [their_t, our_t] for _, peer, their_t, our_t in heard}}
        if self.report.state is not ClockState.OK:
            beacon["need"] = True  # peers answer at once
        value = json.dumps(beacon, separators=(",", ":")).encode()
        self._sent.append(sent_at)
        await self.store.put(self.keys.clock(self.id), value, lease=self.lease.lease_id)

    def _on_beacon(self, peer: str, kv: KeyValue | None, _old: KeyValue | None) -> None:
        arrived = self.local.now_ms()  # first: the watch's delivery time is t4 / t2
        if peer == self.id:
            return
        if kv is None:
            self._heard.pop(peer, None)
            self._samples.pop(peer, None)
            self.evaluate()
            return
        try:
            beacon = json.loads(kv.value)
            their_t = int(beacon["t"])
            echo = beacon.get("echo") or {}
            mine = echo.get(self.id)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed clock beacon from %s", peer)
            return
        mono = time.monotonic()
        self._heard[peer] = (their_t, arrived, mono)
        if beacon.get("need") is True or (
                not isinstance(mine, list) and isinstance(echo, dict) and len(echo) < MAX_ECHOES):
            self._answer.set()  # the peer is not measured yet, or has not heard us
        if not (isinstance(mine, list) and len(mine) == 2):
            return
        try:
            t1, t2 = int(mine[0]), int(mine[1])
        except (ValueError, TypeError):
            return
        if t1 not in self._sent:
            return  # not a beacon of this process (an earlier one with our id)
        sample = ntp_sample(t1, t2, their_t, arrived, at=mono)
        if sample.delay_ms > self.max_offset_ms:
            return  # too slow an exchange to tell anything at this bound
        self._samples.setdefault(peer, deque(maxlen=SAMPLES_PER_PEER)).append(sample)
        self.evaluate()

    def evaluate(self) -> None:
        """Estimate from the samples kept; update the clock, the state and the report."""
        now_mono = time.monotonic()
        peers = [name for name in self.beacons.items if name != self.id]
        best: list[Sample] = []
        for peer in list(self._samples):
            fresh = [s for s in self._samples[peer] if now_mono - s.at <= SAMPLE_TTL_S]
            sample = best_sample(fresh)
            if sample is None or peer not in self.beacons.items:
                del self._samples[peer]
            else:
                best.append(sample)
        estimate: Estimate | None
        if best:
            estimate = cluster_offset(best)
        elif not peers:
            estimate = cluster_offset(())  # alone: our clock is the cluster's
        elif self._last is not None and now_mono - self._last[1] <= SAMPLE_TTL_S:
            estimate = self._last[0]  # a peer just joined: keep what we knew
        else:
            estimate = None
        if estimate is not None:
            self._last = (estimate, now_mono)
            self.clock.correction_ms = estimate.offset_ms + estimate.uncertainty_ms
        self.estimate = estimate
        state = clock_state(estimate, self.max_offset_ms)
        since = self.report.since
        if state is not self.report.state:
            since = self.clock.now_ms()
            self._log_state(state, estimate)
            self._state_changed.set()
        if state is ClockState.OK:
            self.synced.set()
        else:
            self.synced.clear()
        shown = estimate or Estimate(self.report.offset_ms, self.report.uncertainty_ms, 0)
        self.report = ClockReport(state, shown.offset_ms, shown.uncertainty_ms, shown.peers,
                                  self.max_offset_ms, since)

    def _log_state(self, state: ClockState, estimate: Estimate | None) -> None:
        if state is ClockState.OUT_OF_BOUNDS and estimate is not None:
            log.error("clock is %+.0f ms (± %.0f) off the cluster's, beyond the maximum of "
                      "%.0f ms: claiming nothing until it is back within", estimate.offset_ms,
                      estimate.uncertainty_ms, self.max_offset_ms)
        elif state is ClockState.UNSYNCED:
            log.info("clock offset unknown (no peer measured yet): claiming nothing")
        elif estimate is not None:
            log.info("clock is %+.0f ms (± %.0f) off the cluster's, from %d peers: claiming",
                     estimate.offset_ms, estimate.uncertainty_ms, estimate.peers)
