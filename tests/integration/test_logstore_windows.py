"""Newest-first history reads: the pages, the per-job recent runs (read window by
window) and the last runs are exactly what one sorted query would give."""

import time

from cronswarm.common import RunRecord, RunStatus
from cronswarm.logstore import MongoLogStore, RunQuery

HOUR = 3_600_000


def record(job: str, tick: int, status: RunStatus = RunStatus.SUCCEEDED,
           attempt: int = 1) -> RunRecord:
    return RunRecord(run_id=f"{job}@{tick}", job=job, tick=tick, attempt=attempt, worker="w",
                     summary="true", status=status, started=tick, ended=tick + 10,
                     output="x" * 100)


async def test_windowed_reads_match_one_sorted_query(logs: MongoLogStore) -> None:
    now = time.time_ns() // 1_000_000
    # Runs at every distance from now: seconds, minutes, hours, days, a year; one
    # in the future (a worker whose clock runs ahead); two attempts of one tick.
    offsets = [-60_000, 0, 1_000, 2_000, 7_000, 30_000, 100_000, 20 * 60_000, 3 * HOUR,
               30 * HOUR, 10 * 24 * HOUR, 400 * 24 * HOUR]
    records = [record("a" if i % 2 else "b", now - off) for i, off in enumerate(offsets)]
    records.append(record("b", now - 7_000, RunStatus.FAILED, attempt=2))
    await logs.write_runs(records)
    expected = sorted(records, key=lambda r: (r.tick, r.record_id), reverse=True)

    seen: list[str] = []
    cursor = None
    while True:
        page = await logs.query_runs(RunQuery(limit=3, cursor=cursor))
        seen += [r.record_id for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [r.record_id for r in expected]

    only_b = await logs.query_runs(RunQuery(job="b", limit=100))
    assert [r.record_id for r in only_b.runs] == [r.record_id for r in expected if r.job == "b"]
    failed = await logs.query_runs(RunQuery(status=RunStatus.FAILED))
    assert [r.attempt for r in failed.runs] == [2]

    recent = await logs.recent_runs({"a": 1_000, "b": 1_000, "none": 1_000}, 3)
    assert set(recent) == {"a", "b"}
    newest_b = sorted((r for r in records if r.job == "b"), key=lambda r: (r.tick, r.attempt),
                      reverse=True)
    assert [(r.tick, r.attempt) for r in recent["b"]] == [
        (r.tick, r.attempt) for r in newest_b[:3]]
    assert recent["b"][0].output == ""  # trends need no output

    latest = await logs.last_runs(["a", "b", "none"])
    for job in ("a", "b"):
        want = max((r for r in records if r.job == job), key=lambda r: (r.tick, r.attempt))
        assert (latest[job].tick, latest[job].attempt) == (want.tick, want.attempt)
    assert latest["b"].tick == now + 60_000  # from a clock ahead: still the newest
    assert "none" not in latest
