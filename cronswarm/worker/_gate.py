"""The gate of a run made ready before its instant (``RunContext.gate``).

The run's process starts early and waits for one line on its stdin; the
executor writes it at the instant. A POSIX shell waits itself and then runs
the command (``set --`` leaves no positional parameter, as ``sh -c`` does;
stdin is /dev/null again): the gate costs no exec, and the shell's start-up is
paid before the tick. Any other shell is waited for by ``/bin/sh``, which then
becomes ``<shell> -c <command>``. At end of file (the run killed before its
instant, or the worker gone) nothing runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._executor import KillSwitch, RunContext

GATE_SCRIPT = 'read -r _ || exit 0; exec </dev/null; eval "set --; $1"'
GATE_EXEC_SCRIPT = 'read -r _ || exit 0; exec "$0" -c "$1" </dev/null'
POSIX_SHELLS = frozenset({"sh", "dash", "bash", "ksh", "mksh", "zsh", "ash"})


def gated_argv(shell: str, command: str) -> list[str]:
    """The argv that runs ``command`` in ``shell`` once the gate opens."""
    if os.path.basename(shell) in POSIX_SHELLS:
        return [shell, "-c", GATE_SCRIPT, shell, command]
    return ["/bin/sh", "-c", GATE_EXEC_SCRIPT, shell, command]


async def reach_gate(ctx: RunContext, killer: asyncio.Future[Any]) -> bool:
    """Wait for the run's instant (``ctx.gate``, None: now); False if the kill
    request (``killer`` done) came first."""
    if ctx.gate is None:
        return not killer.done()
    instant = asyncio.ensure_future(ctx.gate())
    try:
        await asyncio.wait({instant, killer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        instant.cancel()
    return not ctx.kill.requested.is_set()


async def open_gate(ctx: RunContext, gate: IO[bytes], killer: asyncio.Task[Any],
                    before: Callable[[], None] | None = None) -> bool:
    """Let the waiting shell start the command at the run's instant; False if a
    kill request came first: the gate closes unopened and the shell exits.
    ``before`` is called just before the gate opens."""
    try:
        go = await reach_gate(ctx, killer)
        if go:
            if before is not None:
                before()
            os.write(gate.fileno(), b"\n")
            ctx.mark_started()
        return go
    finally:
        gate.close()


def killed_before_start(kill: KillSwitch) -> str:
    """The error of an attempt killed before it started (waiting for a slot,
    or at its gate)."""
    return f"killed before it started: {kill.reason} (by {kill.by})"
