"""One rule for waiting longer after each failure: exponential, capped, jittered."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, first: float, cap: float, multiplier: float = 2.0,
                  jitter: float = 0.1, rng: random.Random | None = None) -> float:
    """Seconds to wait after failure number ``attempt`` (1 for the first):
    ``first * multiplier ** (attempt - 1)``, at most ``cap``, plus up to
    ``jitter`` of itself at random (so many waiters do not all come back at once)."""
    base = min(cap, first * multiplier ** min(attempt - 1, 100))  # no float overflow
    spread = base * jitter
    return base + (rng or random).uniform(0, spread) if spread else base


class Backoff:
    """The delays between tries of one action that keeps failing: ``next()``
    is ``backoff_delay`` of the failures so far; ``reset()`` after a success."""

    __slots__ = ("cap", "failures", "first", "jitter")

    def __init__(self, first: float, cap: float, *, jitter: float = 0.0) -> None:
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return backoff_delay(self.failures, first=self.first, cap=self.cap, jitter=self.jitter)

    def reset(self) -> None:
        self.failures = 0
