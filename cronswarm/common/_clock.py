"""Wall-clock time behind an interface, so tests can give each worker its own skew."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What the scheduler knows about time: the wall clock, in epoch ms."""

    def now_ms(self) -> int: ...


class SystemClock:
    """The machine's wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class SkewedClock:
    """The machine's wall clock shifted by ``offset_ms`` (tests of clock skew)."""

    def __init__(self, offset_ms: int) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


def loop_deadline(clock: Clock, instant_ms: int) -> float:
    """The event-loop time at which ``clock`` will read ``instant_ms``."""
    loop = asyncio.get_running_loop()
    return loop.time() + max(0, instant_ms - clock.now_ms()) / 1000
