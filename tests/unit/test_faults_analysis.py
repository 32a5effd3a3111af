"""The fault harness's verdicts (benchmarks/_faults_analysis.py) on made-up
witness lines and run records: each kind of failure is counted where it
happened, and what a record explains is not a miss."""

from __future__ import annotations

import datetime as dt
from typing import Any

from benchmarks._faults_analysis import (
    Freeze,
    JobPlan,
    Window,
    analyse,
    parse_witness,
    total,
)

S = 1_000_000_000  # ns
T0 = 1_800_000_000  # a whole second (s), the window's start
SEC = JobPlan("sec", 1, forbid=False)
LONG = JobPlan("long", 5, forbid=True)
WINDOW = Window("1", "kill9", "w1", T0 * S, (T0 + 10) * S)


def tick(seconds: int) -> int:
    return (T0 + seconds) * 1000


def start(job: str, t: int, attempt: int, worker: str, at: float, pid: int) -> str:
    return f"S {int((T0 + at) * S)} {job}@{tick(t)} {attempt} {worker} {pid}"


def end(job: str, t: int, attempt: int, worker: str, at: float, pid: int, rc: int = 0) -> str:
    return f"E {int((T0 + at) * S)} {job}@{tick(t)} {attempt} {worker} {pid} {rc}"


def record(job: str, t: int, attempt: int = 1, status: str = "succeeded",
           **extra: Any) -> dict[str, Any]:
    when = dt.datetime.fromtimestamp(tick(t) / 1000, dt.UTC).replace(tzinfo=None)
    return {"_id": f"{job}@{tick(t)}#{attempt}", "job": job, "tick": when, "attempt": attempt,
            "status": status, **({"extra": extra} if extra else {})}


def every_second_ran(seconds: range, skip: frozenset[int] = frozenset()
                     ) -> tuple[list[str], list[dict[str, Any]]]:
    lines: list[str] = []
    docs: list[dict[str, Any]] = []
    for s in seconds:
        if s in skip:
            continue
        lines += [start("sec", s, 1, "w1", s + 0.01, 100 + s),
                  end("sec", s, 1, "w1", s + 0.02, 100 + s)]
        docs.append(record("sec", s))
    return lines, docs


def test_a_clean_window_counts_ticks_and_executions_only() -> None:
    lines, docs = every_second_ran(range(10))
    lines += [start("long", 0, 1, "w2", 0.1, 7), end("long", 0, 1, "w2", 4.0, 7),
              start("long", 5, 1, "w3", 5.1, 8), end("long", 5, 1, "w3", 9.0, 8)]
    docs += [record("long", 0), record("long", 5)]
    v = analyse(WINDOW, [SEC, LONG], parse_witness(lines, {}), docs, [], open_end_ns=0)
    assert v.row() == {
        "ticks": 10, "forbid_ticks": 2, "executions": 12, "duplicates": 0, "silent_misses": 0,
        "overlaps": 0, "overlaps_frozen_worker": 0, "records_lost": 0, "silent_retry_misses": 0,
        "needless_attempts": 0, "needless_attempts_frozen_worker": 0, "recorded_succeeded": 12}


def test_a_tick_without_execution_is_a_miss_unless_a_record_says_why() -> None:
    lines, docs = every_second_ran(range(10), skip=frozenset({3, 4, 5, 7}))
    docs += [record("sec", 3, status="skipped", skipped_until=tick(4)),  # a range: 3 and 4
             record("sec", 7, status="lost")]
    v = analyse(WINDOW, [SEC], parse_witness(lines, {}), docs, [], open_end_ns=0)
    assert v.misses == [f"sec@{tick(5)}"]


def test_duplicates_and_executions_without_a_record_are_counted() -> None:
    lines, docs = every_second_ran(range(10))
    lines += [start("sec", 2, 1, "w4", 2.3, 999)]  # the same attempt again, elsewhere
    lines += [start("sec", 2, 2, "w4", 2.5, 998)]  # an attempt nobody recorded
    v = analyse(WINDOW, [SEC], parse_witness(lines, {}), docs, [], open_end_ns=0)
    assert v.duplicates == [f"sec@{tick(2)}#1 started 2 times"]
    assert v.records_lost == [f"sec@{tick(2)}#2 on w4"]
    # A next attempt of a run whose attempt succeeded: the tick ran twice.
    assert v.needless_attempts == [f"sec@{tick(2)}#2 on w4 ran after sec@{tick(2)}#1 succeeded"]


def test_overlaps_of_forbid_runs_use_the_seen_exit_when_there_is_no_end_line() -> None:
    lines = [start("long", 0, 1, "w2", 0.1, 7),  # SIGKILLed: no end line
             start("long", 0, 2, "w3", 3.0, 8), end("long", 0, 2, "w3", 6.0, 8),
             start("long", 5, 1, "w3", 6.5, 9), end("long", 5, 1, "w3", 9.0, 9)]
    docs = [record("long", 0), record("long", 0, 2), record("long", 5)]
    exited = {(f"long@{tick(0)}", 1): (T0 + 2) * S}
    v = analyse(WINDOW, [LONG], parse_witness(lines, exited), docs, [], open_end_ns=0)
    assert (v.overlaps, v.overlaps_frozen) == ([], [])
    # Had it lived to 4 s, the next attempt would have started beside it.
    later = {(f"long@{tick(0)}", 1): (T0 + 4) * S}
    v = analyse(WINDOW, [LONG], parse_witness(lines, later), docs, [], open_end_ns=0)
    assert len(v.overlaps) == 1 and v.overlaps[0].startswith(f"long@{tick(0)}#2 on w3")


def test_an_overlap_with_a_run_of_a_frozen_worker_is_counted_apart() -> None:
    lines = [start("long", 0, 1, "w2", 0.1, 7), end("long", 0, 1, "w2", 8.0, 7, 143),
             start("long", 0, 2, "w3", 6.0, 8), end("long", 0, 2, "w3", 9.0, 8)]
    docs = [record("long", 0, status="lost"), record("long", 0, 2)]
    frozen = [Freeze("w2", (T0 + 1) * S, (T0 + 7) * S)]
    runs = parse_witness(lines, {})
    v = analyse(WINDOW, [LONG], runs, docs, frozen, open_end_ns=0)
    assert (len(v.overlaps), len(v.overlaps_frozen)) == (0, 1)
    v = analyse(WINDOW, [LONG], runs, docs, [], open_end_ns=0)
    assert (len(v.overlaps), len(v.overlaps_frozen)) == (1, 0)


def test_each_window_judges_the_ticks_due_in_it_and_the_total_adds_up() -> None:
    lines, docs = every_second_ran(range(20), skip=frozenset({15}))
    second = Window("2", "mongodb", "mongodb", (T0 + 10) * S, (T0 + 20) * S)
    runs = parse_witness(lines, {})
    verdicts = [analyse(w, [SEC], runs, docs, [], open_end_ns=0) for w in (WINDOW, second)]
    assert [len(v.misses) for v in verdicts] == [0, 1]
    assert total(verdicts).row()["ticks"] == 20
    assert total(verdicts).row()["silent_misses"] == 1


def test_a_lost_or_failed_attempt_with_attempts_left_needs_its_next_attempt_or_a_record() -> None:
    long2 = JobPlan("long", 5, forbid=True, attempts=2)
    ended = {"ended": dt.datetime.fromtimestamp(T0 + 4, dt.UTC).replace(tzinfo=None)}
    docs = [record("long", 0, status="lost") | ended,  # retried: attempt 2 ran
            record("long", 0, 2, status="failed") | ended,  # the last attempt: no more
            record("long", 5, status="lost") | ended]  # never retried, nothing says why
    v = analyse(WINDOW, [long2], [], docs, [], open_end_ns=0, retry_cutoff_ns=(T0 + 9) * S)
    assert [m.split(" ")[0] for m in v.retry_misses] == [f"long@{tick(5)}#1"]
    # An attempt that ended after the cut-off (the jobs were paused) is not judged.
    v = analyse(WINDOW, [long2], [], docs, [], open_end_ns=0, retry_cutoff_ns=(T0 + 3) * S)
    assert v.retry_misses == []


def test_an_attempt_after_a_success_on_a_frozen_worker_is_the_documented_window() -> None:
    lines, docs = every_second_ran(range(10))
    lines += [start("sec", 2, 2, "w4", 2.5, 998)]
    docs += [record("sec", 2, attempt=2)]
    runs = parse_witness(lines, {})
    [first] = [r for r in runs if r.key == (f"sec@{tick(2)}", 1)]
    frozen = [Freeze(first.worker, first.start_ns, first.start_ns + 5_000_000_000)]
    v = analyse(WINDOW, [SEC], runs, docs, frozen, open_end_ns=0)
    assert v.needless_attempts == []
    assert v.needless_frozen == [f"sec@{tick(2)}#2 on w4 ran after sec@{tick(2)}#1 succeeded"]
    v = analyse(WINDOW, [SEC], runs, docs, [], open_end_ns=0)  # no freeze: a failure
    assert len(v.needless_attempts) == 1 and v.needless_frozen == []


def test_an_attempt_long_after_a_success_that_ended_during_the_freeze_is_that_window() -> None:
    """The first attempt's job finished while its worker was frozen past its
    lease; the master had judged it lost, and the next attempt started only
    once the job's lock was free, long after the worker woke (seen in CI)."""
    lines, docs = every_second_ran(range(10))
    lines += [start("sec", 2, 2, "w4", 9.5, 998)]
    docs += [record("sec", 2, attempt=2)]
    runs = parse_witness(lines, {})
    [first] = [r for r in runs if r.key == (f"sec@{tick(2)}", 1)]
    assert first.end_ns is not None
    during = [Freeze(first.worker, first.start_ns, first.end_ns + 1_000_000_000)]
    v = analyse(WINDOW, [SEC], runs, docs, during, open_end_ns=0)
    assert v.needless_attempts == []
    assert v.needless_frozen == [f"sec@{tick(2)}#2 on w4 ran after sec@{tick(2)}#1 succeeded"]
    # A freeze that had ended well before the first attempt did: a failure.
    before = [Freeze(first.worker, first.start_ns - 9_000_000_000,
                     first.start_ns - 5_000_000_000)]
    v = analyse(WINDOW, [SEC], runs, docs, before, open_end_ns=0)
    assert len(v.needless_attempts) == 1 and v.needless_frozen == []
