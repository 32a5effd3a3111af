"""The worker: job table, scheduler, claims, execution, run records."""

from ._claim import (
    Claim,
    Outcome,
    TickPlan,
    build_claim,
    build_skip,
    claim,
    claim_skip,
    plan_ticks,
    read_claim,
    rendezvous_owner,
    run_info,
)
from ._executor import ExecResult, Executor, KillSwitch, RunContext, ShellExecutor
from ._output import BoundedOutput
from ._sink import DirectSink, RunSink
from ._stats import LAG_BUCKETS, CountingSink, LagHistogram, RunStats
from ._timetable import Timetable
from ._worker import LiveRun, Worker, retry_delay

__all__ = [
    "LAG_BUCKETS",
    "BoundedOutput",
    "Claim",
    "CountingSink",
    "DirectSink",
    "ExecResult",
    "Executor",
    "KillSwitch",
    "LagHistogram",
    "LiveRun",
    "Outcome",
    "RunContext",
    "RunSink",
    "RunStats",
    "ShellExecutor",
    "TickPlan",
    "Timetable",
    "Worker",
    "build_claim",
    "build_skip",
    "claim",
    "claim_skip",
    "plan_ticks",
    "read_claim",
    "rendezvous_owner",
    "retry_delay",
    "run_info",
]
