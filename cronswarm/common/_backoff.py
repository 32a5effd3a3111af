"""One rule for waiting longer after each failure: exponential, capped, jittered."""

from __future__ import annotations

import math
import random


def backoff_delay(attempt: int, *, first: float, cap: float, multiplier: float = 2.0,
                  jitter: float = 0.1, rng: random.Random | None = None) -> float:
    """Seconds to wait after failure number ``attempt`` (1 for the first):
    ``first * multiplier ** (attempt - 1)``, at most ``cap``, plus up to ``jitter``
    of itself at random (so many waiters do not all come back at once)."""
    try:
        grown = first * multiplier ** (attempt - 1)
    except OverflowError:  # thousands of failures (hours of an outage): far past any cap
        grown = math.inf if first > 0 else 0.0
    base = min(cap, grown)
    spread = base * jitter
    return base + (rng or random).uniform(0, spread) if spread else base
