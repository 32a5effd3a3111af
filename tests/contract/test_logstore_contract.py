"""The LogStore contract: each test one promise, on the twin and on the real
MongoDB-protocol server."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from cronswarm.common import RunRecord, RunStatus, Trigger, ValidationError
from cronswarm.logstore import AuditEntry, LogStore, RunQuery

from .conftest import TEST_RETENTION_DAYS

S = RunStatus


def run(job: str, tick: int, status: RunStatus = S.SUCCEEDED, *, attempt: int = 1,
        worker: str = "w1", output: str = "", error: str | None = None) -> RunRecord:
    final = status is not S.RUNNING
    return RunRecord(run_id=f"{job}@{tick}", job=job, tick=tick, attempt=attempt, worker=worker,
                     summary="true", status=status, started=tick + 5,
                     ended=tick + 50 if final else None, exit_code=0 if final else None,
                     error=error, output=output)


async def ticks_of(store: LogStore, query: RunQuery) -> list[tuple[str, int, int]]:
    """Every page of ``query`` in turn, as (job, tick, attempt)."""
    out: list[tuple[str, int, int]] = []
    cursor = None
    while True:
        page = await store.query_runs(replace(query, cursor=cursor))
        out += [(r.job, r.tick, r.attempt) for r in page.runs]
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


async def test_a_written_run_reads_back_whole(logstore: LogStore) -> None:
    full = replace(run("a", 1000, S.FAILED, output="head", error="exit 3"), exit_code=3,
                   trigger=Trigger.RETRY, http_status=None, output_tail="tail",
                   output_bytes=12345, truncated=True, killed_by="alice", retention_days=7,
                   extra={"env": {"K": "v"}, "n": [1, 2]})
    running = run("a", 2000, S.RUNNING)
    await logstore.write_runs([full, running])
    assert await logstore.get_run(full.record_id) == full
    assert await logstore.get_run(running.record_id) == running
    assert await logstore.get_run("a@3000#1") is None


async def test_a_finished_run_without_retention_gets_the_stores_default(
        logstore: LogStore) -> None:
    await logstore.write_runs([run("a", 1000), run("a", 2000, S.RUNNING)])
    done, live = await logstore.get_run("a@1000#1"), await logstore.get_run("a@2000#1")
    assert done is not None and done.retention_days == TEST_RETENTION_DAYS
    assert live is not None and live.retention_days is None


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_replays_in_any_order_leave_the_final_record_once(
        logstore: LogStore, order: tuple[int, ...]) -> None:
    states = [run("a", 1000, S.RUNNING), run("a", 1000, S.FAILED, output="boom"),
              run("a", 1000, S.RUNNING)]
    for i in order:
        await logstore.write_runs([states[i]])
    await logstore.write_runs(states)  # and all at once
    page = await logstore.query_runs(RunQuery(job="a"))
    assert [(r.status, r.output) for r in page.runs] == [(S.FAILED, "boom")]


async def test_a_lost_verdict_keeps_what_the_worker_wrote_and_adds_the_end(
        logstore: LogStore) -> None:
    started = run("a", 1000, S.RUNNING, output="so far")
    await logstore.write_runs([started])
    verdict = replace(run("a", 1000, S.LOST, error="worker lease expired"), worker="",
                      started=None, summary="", output="", ended=99_000)
    await logstore.write_runs([verdict])
    got = await logstore.get_run(started.record_id)
    assert got is not None
    assert (got.status, got.ended, got.error) == (S.LOST, 99_000, "worker lease expired")
    assert (got.worker, got.started, got.summary, got.output) == ("w1", 1005, "true", "so far")
    await logstore.write_runs([run("a", 1000, S.SUCCEEDED, output="done")])  # the worker's wins
    got = await logstore.get_run(started.record_id)
    assert got is not None and (got.status, got.output) == (S.SUCCEEDED, "done")
    await logstore.write_runs([verdict, started])  # and stays
    assert await logstore.get_run(started.record_id) == got


async def test_a_workers_result_wins_over_a_masters_record_of_the_same_run(
        logstore: LogStore) -> None:
    guess = replace(run("late", 1000, S.SKIPPED), worker="")
    result = run("late", 1000, S.SUCCEEDED, output="done", worker="w7")
    for batch in ([guess], [result], [guess]):
        await logstore.write_runs(batch)
    got = await logstore.get_run(result.record_id)
    assert got is not None and (got.status, got.worker, got.output) == (S.SUCCEEDED, "w7", "done")


async def _history(store: LogStore) -> None:
    await store.write_runs(
        [run("a", t * 1000) for t in range(1, 8)]
        + [run("a", 4000, S.FAILED, attempt=2, output="Disk FULL (a.*)"),
           run("b", 3000, S.FAILED, worker="w2", error="disk full"),
           run("b", 5000, S.RUNNING, worker="w2"),
           replace(run("c", 5000), output_tail="...the DISK was full")])


@pytest.mark.parametrize(("query", "expected"), [
    (RunQuery(job="b"), [("b", 5000, 1), ("b", 3000, 1)]),
    (RunQuery(status=S.FAILED), [("a", 4000, 2), ("b", 3000, 1)]),
    (RunQuery(worker="w2", status=S.RUNNING), [("b", 5000, 1)]),
    (RunQuery(job="a", since=3000, until=5000),  # since inclusive, until exclusive
     [("a", 4000, 2), ("a", 4000, 1), ("a", 3000, 1)]),
    (RunQuery(since=5000), [("a", 7000, 1), ("a", 6000, 1),  # one tick: by id, descending
                            ("c", 5000, 1), ("b", 5000, 1), ("a", 5000, 1)]),
    (RunQuery(text="disk full"), [("a", 4000, 2), ("b", 3000, 1)]),  # output, error
    (RunQuery(text="DISK WAS"), [("c", 5000, 1)]),  # the output's tail
    (RunQuery(text="(a.*)"), [("a", 4000, 2)]),  # the text is literal, not a pattern
    (RunQuery(text="disk", until=4000), [("b", 3000, 1)]),
    (RunQuery(job="nope"), []),
])
async def test_queries_filter_and_order_newest_first_by_tick_then_id(
        logstore: LogStore, query: RunQuery, expected: list[tuple[str, int, int]]) -> None:
    await _history(logstore)
    page = await logstore.query_runs(query)
    assert [(r.job, r.tick, r.attempt) for r in page.runs] == expected
    assert page.next_cursor is None


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
async def test_pages_with_cursors_walk_the_whole_history_once(logstore: LogStore,
                                                              limit: int) -> None:
    await _history(logstore)
    everything = (await logstore.query_runs(RunQuery(limit=50))).runs
    assert len(everything) == 11
    walked = await ticks_of(logstore, RunQuery(limit=limit))
    assert walked == [(r.job, r.tick, r.attempt) for r in everything]
    failed_text = await ticks_of(logstore, RunQuery(text="disk", limit=limit))
    assert failed_text == [("c", 5000, 1), ("a", 4000, 2), ("b", 3000, 1)]


async def test_a_cursor_keeps_its_place_when_newer_runs_arrive(logstore: LogStore) -> None:
    await _history(logstore)
    first = await logstore.query_runs(RunQuery(job="a", limit=3))
    await logstore.write_runs([run("a", 9000), run("a", 6500)])
    assert first.next_cursor is not None
    second = await logstore.query_runs(RunQuery(job="a", limit=3, cursor=first.next_cursor))
    assert [r.tick for r in first.runs + second.runs] == [7000, 6000, 5000, 4000, 4000, 3000]


async def test_a_page_holds_at_least_one_and_at_most_a_thousand_runs(
        logstore: LogStore) -> None:
    await logstore.write_runs([run("a", t) for t in range(1, 1003)])
    assert len((await logstore.query_runs(RunQuery(limit=0))).runs) == 1
    big = await logstore.query_runs(RunQuery(limit=5000))
    assert len(big.runs) == 1000 and big.next_cursor is not None


async def test_a_cursor_not_from_the_store_is_refused(logstore: LogStore) -> None:
    with pytest.raises(ValidationError):
        await logstore.query_runs(RunQuery(cursor="not-a-cursor"))


async def test_last_runs_are_the_newest_by_tick_then_attempt_without_output(
        logstore: LogStore) -> None:
    await _history(logstore)
    await logstore.write_runs([run("a", 2000, S.TIMEOUT, attempt=3, output="x")])
    last = await logstore.last_runs(["a", "b", "c", "never-ran", "a"])
    assert {j: (r.tick, r.attempt, r.status) for j, r in last.items()} == {
        "a": (7000, 1, S.SUCCEEDED), "b": (5000, 1, S.RUNNING), "c": (5000, 1, S.SUCCEEDED)}
    assert [(r.output, r.output_tail, r.extra) for r in last.values()] == [("", "", {})] * 3
    assert last["b"].worker == "w2"
    assert await logstore.last_statuses(["a", "b", "never-ran"]) == {
        "a": S.SUCCEEDED, "b": S.RUNNING}
    await logstore.write_runs([run("a", 7000, S.FAILED, attempt=2)])
    assert await logstore.last_statuses(["a"]) == {"a": S.FAILED}


def trend_fields(r: RunRecord | None) -> tuple[object, ...]:
    """What ``recent_runs`` promises of a record."""
    assert r is not None
    return r.run_id, r.job, r.tick, r.attempt, r.status, r.started, r.ended, r.output


async def test_recent_runs_are_each_jobs_newest_with_their_trend_fields(
        logstore: LogStore) -> None:
    await _history(logstore)
    expected = {"a": ["a@7000#1", "a@6000#1", "a@5000#1"], "b": ["b@5000#1", "b@3000#1"]}
    for _ in range(2):  # the first read and the next (which may come from a rollup)
        recent = await logstore.recent_runs({"a": 60_000, "b": 60_000, "none": 60_000}, 3)
        assert {job: [r.record_id for r in runs] for job, runs in recent.items()} == expected
        for runs in recent.values():
            for r in runs:
                stored = await logstore.get_run(r.record_id)
                assert trend_fields(r) == trend_fields(stored and replace(stored, output=""))


async def test_counts_hold_every_status_over_a_half_open_window(logstore: LogStore) -> None:
    await _history(logstore)
    everything = await logstore.count_runs(since=0, until=10_000)
    assert everything == {**dict.fromkeys(S, 0), S.SUCCEEDED: 8, S.FAILED: 2, S.RUNNING: 1}
    window = await logstore.count_runs(since=3000, until=5000)
    assert {s: n for s, n in window.items() if n} == {S.SUCCEEDED: 2, S.FAILED: 2}
    assert {s: n for s, n in (await logstore.count_runs(since=3000, until=6000, job="b")
                              ).items() if n} == {S.FAILED: 1, S.RUNNING: 1}
    assert await logstore.count_runs(since=5000, until=5000) == dict.fromkeys(S, 0)


async def test_audit_filters_newest_first_and_pages_back_by_until(logstore: LogStore) -> None:
    for at, actor, action, target in [(10, "alice", "job.create", "a"),
                                      (20, "bob", "job.update", "a"),
                                      (30, "alice", "job.delete", "b"),
                                      (40, "alice", "token.create", "t1")]:
        await logstore.write_audit(AuditEntry(at, actor, action, target, None,
                                              {"at": at}, {"why": "test"}))

    async def ats(**filters: object) -> list[int]:
        return [e.at for e in await logstore.query_audit(**filters)]  # type: ignore[arg-type]

    assert await ats() == [40, 30, 20, 10]
    assert await ats(target="a") == [20, 10]
    assert await ats(actor="alice", action="job.delete") == [30]
    assert await ats(since=20, until=40) == [30, 20]
    assert await ats(limit=2) == [40, 30]
    assert await ats(limit=2, until=30) == [20, 10]
    entry = (await logstore.query_audit(target="t1"))[0]
    assert entry == AuditEntry(40, "alice", "token.create", "t1", None, {"at": 40},
                               {"why": "test"})


async def test_ping_and_ensure_indexes_answer(logstore: LogStore) -> None:
    await logstore.ensure_indexes()
    await logstore.ensure_indexes()  # idempotent
    await logstore.ping()
