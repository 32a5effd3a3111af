"""faults.py's verdicts: plain functions over the witness file and the run records.

The witness file has one line per event, written by the job itself (its own,
unshifted clock; jobs get a minimal environment, so no libfaketime):

    S <ns> <run id> <attempt> <worker> <pid>       when an execution starts
    E <ns> <run id> <attempt> <worker> <pid> <rc>  when it ends (also on SIGTERM)

A SIGKILLed execution writes no end line; the harness watches each execution's
pid (a pidfd) and passes the time it saw it exit (``exits``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, int]  # (run id, attempt)

# A run that overlaps an execution on a worker frozen (SIGSTOP) past its lease,
# and started before that worker woke (plus this margin), is the window the
# README documents ("Self-fencing": what remains is a process frozen past its
# lease); it is counted apart from the overlaps nothing explains.
FROZEN_MARGIN_NS = 1_000_000_000


@dataclass
class Execution:
    run_id: str
    attempt: int
    worker: str
    pid: int
    start_ns: int
    end_ns: int | None = None
    exit_code: int | None = None

    @property
    def key(self) -> Key:
        return (self.run_id, self.attempt)

    @property
    def job(self) -> str:
        return self.run_id.rpartition("@")[0]

    @property
    def tick_ms(self) -> int:
        return int(self.run_id.rpartition("@")[2])


@dataclass(frozen=True)
class Window:
    """A fault (or ``none``) from its injection to the next one: its ticks are
    the ticks due in [start, end)."""

    name: str
    fault: str
    target: str
    start_ns: int
    end_ns: int

    def holds(self, tick_ms: int) -> bool:
        return self.start_ns <= tick_ms * 1_000_000 < self.end_ns


@dataclass(frozen=True)
class Freeze:
    worker: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class JobPlan:
    name: str
    period_s: int  # every second (1) or every N seconds, aligned on the minute
    forbid: bool
    attempts: int = 1  # retry.attempts (any_worker: lost runs are retried too)


@dataclass
class Verdict:
    ticks: int = 0
    forbid_ticks: int = 0
    executions: int = 0
    duplicates: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    overlaps_frozen: list[str] = field(default_factory=list)
    records_lost: list[str] = field(default_factory=list)
    retry_misses: list[str] = field(default_factory=list)
    needless_attempts: list[str] = field(default_factory=list)
    needless_frozen: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)

    def row(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "forbid_ticks": self.forbid_ticks,
                "executions": self.executions, "duplicates": len(self.duplicates),
                "silent_misses": len(self.misses), "overlaps": len(self.overlaps),
                "overlaps_frozen_worker": len(self.overlaps_frozen),
                "records_lost": len(self.records_lost),
                "silent_retry_misses": len(self.retry_misses),
                "needless_attempts": len(self.needless_attempts),
                "needless_attempts_frozen_worker": len(self.needless_frozen),
                **{f"recorded_{s}": n for s, n in sorted(self.statuses.items())}}

    def examples(self, limit: int = 5) -> dict[str, list[str]]:
        named = {"duplicates": self.duplicates, "silent_misses": self.misses,
                 "overlaps": self.overlaps, "overlaps_frozen_worker": self.overlaps_frozen,
                 "records_lost": self.records_lost, "silent_retry_misses": self.retry_misses,
                 "needless_attempts": self.needless_attempts,
                 "needless_attempts_frozen_worker": self.needless_frozen}
        return {k: v[:limit] for k, v in named.items() if v}


def parse_witness(lines: Iterable[str], exits: Mapping[Key, int]) -> list[Execution]:
    """Executions in start order, each with its end: its own end line, else the
    exit the harness saw."""
    runs: list[Execution] = []
    ends: dict[tuple[str, int, int], tuple[int, int]] = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[0] == "S":
            runs.append(Execution(parts[2], int(parts[3]), parts[4], int(parts[5]),
                                  int(parts[1])))
        elif len(parts) >= 7 and parts[0] == "E":
            ends[(parts[2], int(parts[3]), int(parts[5]))] = (int(parts[1]), int(parts[6]))
    for run in runs:
        end = ends.get((run.run_id, run.attempt, run.pid))
        if end is not None:
            run.end_ns, run.exit_code = end
        elif run.key in exits:
            run.end_ns = exits[run.key]
    return sorted(runs, key=lambda r: r.start_ns)


def tick_ms_of(doc: Mapping[str, Any]) -> int:
    tick: dt.datetime = doc["tick"]
    return round(tick.replace(tzinfo=dt.UTC).timestamp() * 1000)


def _ticks(job: JobPlan, window: Window) -> range:
    period = job.period_s * 1000
    first = -(-window.start_ns // 1_000_000 // period) * period
    return range(first, -(-window.end_ns // 1_000_000), period)


def _covered(docs: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    """Per job, the tick ranges that records account for (a skipped record
    stands for ``tick`` .. ``extra.skipped_until``)."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for d in docs:
        tick = tick_ms_of(d)
        until = (d.get("extra") or {}).get("skipped_until") if d["status"] == "skipped" else None
        out[d["job"]].append((tick, int(until) if until is not None else tick))
    return out


def _frozen_overlap(first: Execution, second: Execution, freezes: Sequence[Freeze]) -> bool:
    """``second`` started while ``first``'s worker was frozen (or just woke)."""
    return any(f.worker == first.worker and f.start_ns <= second.start_ns
               <= f.end_ns + FROZEN_MARGIN_NS and f.end_ns >= first.start_ns
               for f in freezes)


def _ended_frozen(execution: Execution, freezes: Sequence[Freeze]) -> bool:
    """``execution`` ended while its worker was frozen (or just woke): the
    worker could not record its end before the master judged the run lost."""
    end = execution.end_ns
    return end is not None and any(
        f.worker == execution.worker and f.start_ns <= end <= f.end_ns + FROZEN_MARGIN_NS
        for f in freezes)


def _retried(doc: Mapping[str, Any]) -> bool:
    """Does this attempt's end call for the next attempt (when one is left)?
    Failures and timeouts do; so do lost runs and runs stopped because their
    worker's lease was lost (``retry.any_worker``), README "Self-fencing"."""
    status = doc["status"]
    return status in ("failed", "timeout", "lost") or (
        status == "killed" and "lease lost" in str(doc.get("error") or ""))


def _ended_ns(doc: Mapping[str, Any]) -> int | None:
    ended: dt.datetime | None = doc.get("ended")
    return None if ended is None else round(
        ended.replace(tzinfo=dt.UTC).timestamp() * 1_000_000_000)


def analyse(window: Window, jobs: Sequence[JobPlan], runs: Sequence[Execution],
            docs: Sequence[Mapping[str, Any]], freezes: Sequence[Freeze],
            open_end_ns: int, retry_cutoff_ns: int | None = None) -> Verdict:
    """The verdict on the ticks due in ``window`` (an execution or a record
    belongs to the window of its tick). ``open_end_ns``: the end assumed for
    an execution whose end was never seen; attempts that ended after
    ``retry_cutoff_ns`` are not asked for their next attempt."""
    v = Verdict()
    mine = [r for r in runs if window.holds(r.tick_ms)]
    v.executions = len(mine)
    for key, n in Counter(r.key for r in mine).items():
        if n > 1:
            v.duplicates.append(f"{key[0]}#{key[1]} started {n} times")
    my_docs = [d for d in docs if window.holds(tick_ms_of(d))]
    record_ids = {d["_id"] for d in docs}
    v.statuses.update(d["status"] for d in my_docs)
    v.records_lost = [f"{r.run_id}#{r.attempt} on {r.worker}" for r in mine
                      if f"{r.run_id}#{r.attempt}" not in record_ids]
    executed = {r.run_id for r in runs}
    status_of = {d["_id"]: d["status"] for d in docs}
    by_key = {r.key: r for r in runs}
    for r in mine:
        before = f"{r.run_id}#{r.attempt - 1}"
        if r.attempt > 1 and status_of.get(before) == "succeeded":
            text = f"{r.run_id}#{r.attempt} on {r.worker} ran after {before} succeeded"
            previous = by_key.get((r.run_id, r.attempt - 1))
            if previous is not None and (_frozen_overlap(previous, r, freezes)
                                         or _ended_frozen(previous, freezes)):
                # It succeeded while its worker was frozen past its lease (the
                # next attempt may start then, or later, once the lock is
                # free): the same documented window as the overlaps above.
                v.needless_frozen.append(text)
            else:
                v.needless_attempts.append(text)
    attempts = {j.name: j.attempts for j in jobs}
    later = record_ids | {f"{r.run_id}#{r.attempt}" for r in runs}
    for d in my_docs:
        ended = _ended_ns(d)
        if (d["attempt"] < attempts.get(d["job"], 1) and _retried(d)
                and (retry_cutoff_ns is None or (ended is not None and ended < retry_cutoff_ns))
                and f"{d['job']}@{tick_ms_of(d)}#{d['attempt'] + 1}" not in later):
            v.retry_misses.append(f"{d['_id']} {d['status']} on {d.get('worker')}: "
                                  f"no attempt {d['attempt'] + 1}, no record of one")
    covered = _covered(docs)
    for job in jobs:
        for tick in _ticks(job, window):
            if job.period_s == 1:
                v.ticks += 1
            else:
                v.forbid_ticks += 1
            run_id = f"{job.name}@{tick}"
            if run_id in executed:
                continue
            if any(lo <= tick <= hi for lo, hi in covered.get(job.name, ())):
                continue
            v.misses.append(run_id)
    for job in (j for j in jobs if j.forbid):
        execs = sorted((r for r in runs if r.job == job.name), key=lambda r: r.start_ns)
        for i, first in enumerate(execs):
            end = first.end_ns if first.end_ns is not None else open_end_ns
            for second in execs[i + 1:]:
                if second.start_ns >= end:
                    break
                if not window.holds(second.tick_ms):
                    continue
                text = (f"{second.run_id}#{second.attempt} on {second.worker} started "
                        f"{(end - second.start_ns) / 1e9:.2f}s before "
                        f"{first.run_id}#{first.attempt} on {first.worker} ended")
                if _frozen_overlap(first, second, freezes):
                    v.overlaps_frozen.append(text)
                else:
                    v.overlaps.append(text)
    return v


def total(verdicts: Sequence[Verdict]) -> Verdict:
    out = Verdict()
    for v in verdicts:
        out.ticks += v.ticks
        out.forbid_ticks += v.forbid_ticks
        out.executions += v.executions
        out.duplicates += v.duplicates
        out.misses += v.misses
        out.overlaps += v.overlaps
        out.overlaps_frozen += v.overlaps_frozen
        out.records_lost += v.records_lost
        out.retry_misses += v.retry_misses
        out.needless_attempts += v.needless_attempts
        out.needless_frozen += v.needless_frozen
        out.statuses.update(v.statuses)
    return out
