"""Contract of the log store, on a real MongoDB-protocol server."""

import pytest

from cronswarm.common import RunRecord, RunStatus, ValidationError
from cronswarm.logstore import AuditEntry, MongoLogStore, RunQuery


def record(job: str, tick: int, status: RunStatus = RunStatus.SUCCEEDED, attempt: int = 1,
           output: str = "", worker: str = "w1") -> RunRecord:
    return RunRecord(run_id=f"{job}@{tick}", job=job, tick=tick, attempt=attempt, worker=worker,
                     summary="true", status=status, started=tick + 5,
                     ended=None if status is RunStatus.RUNNING else tick + 50, output=output)


async def test_write_is_idempotent_and_never_downgrades(logs: MongoLogStore) -> None:
    running = record("a", 1000, RunStatus.RUNNING)
    done = record("a", 1000, RunStatus.SUCCEEDED, output="ok")
    await logs.write_runs([running])
    await logs.write_runs([done])
    await logs.write_runs([running, done, running])  # replays, any order
    assert await logs.runs.count_documents({}) == 1
    got = await logs.get_run("a@1000#1")
    assert got is not None
    assert got.status is RunStatus.SUCCEEDED
    assert got.output == "ok"
    lost = record("a", 1000, RunStatus.LOST)
    await logs.write_runs([lost])  # a master's guess never overrides the worker's result
    got = await logs.get_run("a@1000#1")
    assert got is not None and got.status is RunStatus.SUCCEEDED


async def test_unique_index_on_job_tick_attempt(logs: MongoLogStore) -> None:
    await logs.write_runs([record("a", 1000)])
    info = await logs.runs.index_information()
    unique = [v for v in info.values() if v.get("unique")]
    assert [list(dict(v["key"])) for v in unique] == [["job", "tick", "attempt"]]
    assert any(v.get("expireAfterSeconds") == 0 for v in info.values())
    await logs.ensure_indexes()  # idempotent


async def test_query_filters_and_cursor_pages(logs: MongoLogStore) -> None:
    await logs.write_runs([record("a", t * 1000) for t in range(1, 8)]
                          + [record("b", 3000, RunStatus.FAILED, output="Disk FULL", worker="w2")])
    page1 = await logs.query_runs(RunQuery(job="a", limit=3))
    assert [r.tick for r in page1.runs] == [7000, 6000, 5000]
    assert page1.next_cursor is not None
    page2 = await logs.query_runs(RunQuery(job="a", limit=3, cursor=page1.next_cursor))
    assert [r.tick for r in page2.runs] == [4000, 3000, 2000]
    page3 = await logs.query_runs(RunQuery(job="a", limit=3, cursor=page2.next_cursor))
    assert [r.tick for r in page3.runs] == [1000]
    assert page3.next_cursor is None
    assert [r.job for r in (await logs.query_runs(RunQuery(status=RunStatus.FAILED))).runs] == [
        "b"]
    assert [r.job for r in (await logs.query_runs(RunQuery(text="disk full"))).runs] == ["b"]
    assert [r.job for r in (await logs.query_runs(RunQuery(worker="w2"))).runs] == ["b"]
    ranged = await logs.query_runs(RunQuery(job="a", since=3000, until=5000))
    assert [r.tick for r in ranged.runs] == [4000, 3000]
    with pytest.raises(ValidationError):
        await logs.query_runs(RunQuery(cursor="not-a-cursor"))


async def test_last_runs_and_audit(logs: MongoLogStore) -> None:
    await logs.write_runs([record("a", 1000), record("a", 2000, RunStatus.FAILED)])
    last = await logs.last_runs(["a", "nope"])
    assert set(last) == {"a"}
    assert last["a"].tick == 2000
    await logs.write_audit(AuditEntry(5, "token:x", "job.create", "a", None, {"name": "a"}))
    entries = await logs.query_audit(target="a")
    assert [(e.actor, e.action, e.after) for e in entries] == [
        ("token:x", "job.create", {"name": "a"})]
