"""The jobs list: filters, pages, next fire times and live runs (pure)."""

from cronswarm.common import Job, RunRecord, RunStatus
from cronswarm.coord import KeyValue
from cronswarm.master._joblist import NEVER, JobFilter, job_view, next_fire, page, running_by_job
from cronswarm.master._jobs import StoredJob

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def stored(name: str, **fields: object) -> StoredJob:
    body = {"name": name, "schedule": "0 * * * *", "command": "true", **fields}
    return StoredJob(Job.from_dict(body), 7)


def record(job: str, status: RunStatus) -> RunRecord:
    return RunRecord(run_id=f"{job}@{T0}", job=job, tick=T0, attempt=1, worker="w1",
                     summary="true", status=status)


def test_filters_combine_with_and() -> None:
    jobs = [stored("db-backup"), stored("db-vacuum", enabled=False),
            stored("web", targets={"zone": "eu"})]
    assert [j.job.name for j in jobs if JobFilter(name="DB").keeps(j)] == [
        "db-backup", "db-vacuum"]
    assert [j.job.name for j in jobs if JobFilter(name="db", enabled=True).keeps(j)] == [
        "db-backup"]
    assert [j.job.name for j in jobs if JobFilter(target=("zone", "eu")).keeps(j)] == ["web"]
    assert [j.job.name for j in jobs if JobFilter(target=("zone", "us")).keeps(j)] == []


def test_last_status_filter_and_never() -> None:
    assert JobFilter(last_status="failed").keeps_last(RunStatus.FAILED)
    assert not JobFilter(last_status="failed").keeps_last(RunStatus.SUCCEEDED)
    assert not JobFilter(last_status="failed").keeps_last(None)
    assert JobFilter(last_status=NEVER).keeps_last(None)
    assert JobFilter().keeps_last(None)


def test_pages_follow_the_cursor_to_the_end() -> None:
    jobs = [stored(f"job-{i:02d}") for i in range(5)]
    first, cursor = page(jobs, None, 2)
    assert [j.job.name for j in first] == ["job-00", "job-01"] and cursor == "job-01"
    second, cursor = page(jobs, cursor, 2)
    assert [j.job.name for j in second] == ["job-02", "job-03"] and cursor == "job-03"
    last, cursor = page(jobs, cursor, 2)
    assert [j.job.name for j in last] == ["job-04"] and cursor is None
    exact, cursor = page(jobs[:2], None, 2)
    assert len(exact) == 2 and cursor is None


def test_next_fire_is_none_when_paused_or_never() -> None:
    assert next_fire(stored("a"), T0) == T0 + 3600_000
    assert next_fire(stored("a", enabled=False), T0) is None
    assert next_fire(stored("a", schedule="0 0 30 2 *"), T0) is None  # 30 February


def test_running_by_job_groups_run_ids() -> None:
    d = "/cron/running/"
    kvs = [KeyValue(f"{d}a/a@2", b"{}", 1, 1, 1), KeyValue(f"{d}a/a@1", b"{}", 1, 1, 1),
           KeyValue(f"{d}b/b@1", b"{}", 1, 1, 1), KeyValue(f"{d}junk", b"{}", 1, 1, 1)]
    assert running_by_job(kvs, d) == {"a": ["a@1", "a@2"], "b": ["b@1"]}


def test_job_view_joins_job_last_run_and_live_runs() -> None:
    view = job_view(stored("a"), now_ms=T0, last=record("a", RunStatus.FAILED),
                    running=["a@5"])
    assert view["revision"] == 7 and view["next_fire"] == T0 + 3600_000
    assert view["last_run"]["status"] == "failed"
    assert view["last_run"]["record_id"] == f"a@{T0}#1"
    assert view["running"] == ["a@5"]


def test_history_span_covers_the_last_scheduled_ticks() -> None:
    from cronswarm.master._joblist import history_span

    minutely = stored("m", schedule="0 * * * * *")
    assert 20 * 60_000 <= history_span(minutely, 20, T0) <= 30 * 60_000
    daily = stored("d", schedule="30 2 * * *")
    assert 86_400_000 <= history_span(daily, 1, T0) <= 2 * 86_400_000
    never = stored("n", schedule="0 0 30 2 *")  # 30 February
    assert history_span(never, 20, T0) == 3600 * 1000
