"""The worker: job table, scheduler, claims, execution, run records."""

from ._claim import (
    Claim,
    Outcome,
    Ticket,
    build_claim,
    build_skip,
    claim,
    claim_skip,
    read_claim,
    run_info,
)
from ._core import LiveRun
from ._executor import ExecResult, Executor, KillSwitch, RunContext, ShellExecutor
from ._fence import FENCE_FRACTION, Fenced, LeaseFence, fence_due
from ._guardian import Guardian, guardian_running
from ._http import HttpExecutor
from ._live import Feed, LiveOutputServer, OutputFeeds
from ._logwriter import LogWriter
from ._logwriter_types import FlushEvent, WriterCounters
from ._output import BoundedOutput
from ._plan import TickPlan, in_time, plan_ticks, rendezvous_owner, still_due
from ._retry import HandOff, RetryBoard
from ._sink import RunSink
from ._slots import SlotBook, Slots
from ._spool import Spool
from ._spool_files import Position, SpoolError, SpoolFull
from ._spool_frames import encode_frame, scan_frames
from ._spool_records import decode_record, encode_record
from ._stats import LAG_BUCKETS, CountingSink, FlushStats, LagHistogram, RunStats
from ._timetable import Timetable
from ._worker import Worker

__all__ = [
    "FENCE_FRACTION",
    "LAG_BUCKETS",
    "BoundedOutput",
    "Claim",
    "CountingSink",
    "ExecResult",
    "Executor",
    "Feed",
    "Fenced",
    "FlushEvent",
    "FlushStats",
    "Guardian",
    "HandOff",
    "HttpExecutor",
    "KillSwitch",
    "LagHistogram",
    "LeaseFence",
    "LiveOutputServer",
    "LiveRun",
    "LogWriter",
    "Outcome",
    "OutputFeeds",
    "Position",
    "RetryBoard",
    "RunContext",
    "RunSink",
    "RunStats",
    "ShellExecutor",
    "SlotBook",
    "Slots",
    "Spool",
    "SpoolError",
    "SpoolFull",
    "TickPlan",
    "Ticket",
    "Timetable",
    "Worker",
    "WriterCounters",
    "build_claim",
    "build_skip",
    "claim",
    "claim_skip",
    "decode_record",
    "encode_frame",
    "encode_record",
    "fence_due",
    "guardian_running",
    "in_time",
    "plan_ticks",
    "read_claim",
    "rendezvous_owner",
    "run_info",
    "scan_frames",
    "still_due",
]
