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
from ._http import HttpExecutor
from ._live import Feed, LiveOutputServer, OutputFeeds
from ._output import BoundedOutput
from ._retry import HandOff, RetryBoard, RetryRequest
from ._sink import DirectSink, RunSink
from ._slots import SlotBook, Slots
from ._stats import LAG_BUCKETS, CountingSink, FlushStats, LagHistogram, RunStats
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
    "Feed",
    "FlushStats",
    "HandOff",
    "HttpExecutor",
    "KillSwitch",
    "LagHistogram",
    "LiveOutputServer",
    "LiveRun",
    "Outcome",
    "OutputFeeds",
    "RetryBoard",
    "RetryRequest",
    "RunContext",
    "RunSink",
    "RunStats",
    "ShellExecutor",
    "SlotBook",
    "Slots",
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
