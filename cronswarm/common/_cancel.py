"""Cancellation that a library swallowed: re-raise it.

pymongo's asyncio client can absorb a task's cancellation (seen when a task
is cancelled while an operation opens its connection): the operation then
finishes or fails as if nothing happened, the task's ``cancelling()`` count
stays raised, and a loop that goes on would never end. Loops that call such
clients check after each step.
"""

from __future__ import annotations

import asyncio


def reraise_cancellation() -> None:
    """Raise CancelledError if the current task has been asked to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
