"""Contract of the log store, on a real MongoDB-protocol server."""

import random
import time
from dataclasses import replace

import pytest

from cronswarm.common import (
    RunRecord,
    RunStatus,
    Settings,
    SystemClock,
    ValidationError,
    from_ms,
    to_ms,
)
from cronswarm.logstore import (
    AuditEntry,
    MongoLogStore,
    RunQuery,
    coalesce_records,
    doc_to_record,
    record_to_doc,
)
from cronswarm.logstore._rollup_entries import RECENT_KEPT
from tests.helpers import wait_for_count


class FixedClock:
    NOW = 1_800_000_000_000

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now


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


async def test_the_database_given_wins_then_the_one_in_the_uri(settings: Settings) -> None:
    tag = settings.mongodb_database
    assert tag is not None
    base = settings.mongodb_uri.split("?")[0].rstrip("/")
    named = f"{base}/{tag}_uri"
    stores = [MongoLogStore(named), MongoLogStore(named, database=f"{tag}_given"),
              MongoLogStore(base)]
    try:
        assert [s.db.name for s in stores] == [f"{tag}_uri", f"{tag}_given", "cronswarm"]
        await stores[1].write_runs([record("a", 1000)])
        assert await stores[1].client[f"{tag}_given"]["runs"].count_documents({}) == 1
        assert await stores[1].client[f"{tag}_uri"]["runs"].count_documents({}) == 0
    finally:
        await stores[1].client.drop_database(f"{tag}_given")
        for store in stores:
            await store.close()


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


async def test_indexes_serve_the_dashboard_queries(logs: MongoLogStore) -> None:
    runs = {k: list(dict(v["key"]).items())
            for k, v in (await logs.runs.index_information()).items()}
    assert runs["job_tick_id"] == [("job", 1), ("tick", 1), ("_id", 1)]
    assert runs["status_tick_id"] == [("status", 1), ("tick", 1), ("_id", 1)]
    assert runs["worker_tick_id"] == [("worker", 1), ("tick", 1), ("_id", 1)]
    assert runs["job_tick_attempt_unique"] == [("job", 1), ("tick", 1), ("attempt", 1)]
    assert runs["retention"] == [("expire_at", 1)]
    audit = {k: list(dict(v["key"]).items())
             for k, v in (await logs.audit.index_information()).items()}
    assert audit["target_at"] == [("target", 1), ("at", -1)]
    assert audit["actor_at"] == [("actor", 1), ("at", -1)]
    await logs.ensure_indexes()  # idempotent


async def test_retention_is_computed_when_the_run_ends(logs: MongoLogStore) -> None:
    now = SystemClock().now_ms()  # recent runs: none expires during the test
    default = record("a", now)
    short = record("b", now)
    short.retention_days = 2
    running = record("c", now, RunStatus.RUNNING)
    await logs.write_runs([default, short, running])
    docs = {d["job"]: d async for d in logs.runs.find({})}
    day_ms = 86_400_000
    days = logs.default_retention_days
    assert to_ms(docs["a"]["expire_at"]) == default.ended + days * day_ms  # cluster default
    assert to_ms(docs["b"]["expire_at"]) == now + 50 + 2 * day_ms  # the job's override
    assert "expire_at" not in docs["c"]  # a live run never expires
    info = await logs.runs.index_information()
    assert info["retention"]["expireAfterSeconds"] == 0
    got = await logs.get_run(short.record_id)
    assert got is not None and got.retention_days == 2


async def test_running_and_final_in_one_batch_leave_the_final(logs: MongoLogStore) -> None:
    running = record("a", 1000, RunStatus.RUNNING)
    done = record("a", 1000, RunStatus.FAILED, output="boom")
    await logs.write_runs([running, done, running])
    assert coalesce_records([running, done, running]) == [done]
    docs = await logs.runs.find({}).to_list(None)
    assert [(d["status"], d["output"]) for d in docs] == [("failed", "boom")]


async def test_counts_per_status_over_a_window(logs: MongoLogStore) -> None:
    statuses = [RunStatus.SUCCEEDED] * 5 + [RunStatus.FAILED] * 2 + [RunStatus.TIMEOUT]
    await logs.write_runs([record("a", (i + 1) * 1000, s) for i, s in enumerate(statuses)]
                          + [record("b", 3000, RunStatus.FAILED),
                             record("b", 9000, RunStatus.RUNNING)])
    counts = await logs.count_runs(since=1000, until=9001)
    assert set(counts) == set(RunStatus)
    assert {s: n for s, n in counts.items() if n} == {
        RunStatus.SUCCEEDED: 5, RunStatus.FAILED: 3, RunStatus.TIMEOUT: 1,
        RunStatus.RUNNING: 1}
    window = await logs.count_runs(since=2000, until=6000)  # ticks 2000..5000
    assert window[RunStatus.SUCCEEDED] == 4 and window[RunStatus.FAILED] == 1
    of_a = await logs.count_runs(since=0, until=10_000, job="a")
    assert {s: n for s, n in of_a.items() if n} == {
        RunStatus.SUCCEEDED: 5, RunStatus.FAILED: 2, RunStatus.TIMEOUT: 1}
    assert sum((await logs.count_runs(since=0, until=10_000, job="nope")).values()) == 0


async def test_last_runs_of_few_and_of_many_jobs(logs: MongoLogStore) -> None:
    jobs = [f"j{i}" for i in range(100)]
    newest = {j: RunStatus.FAILED if i % 3 else RunStatus.SUCCEEDED for i, j in enumerate(jobs)}
    await logs.write_runs([record(j, t) for j in jobs for t in (1000, 3000)]
                          + [record(j, 5000, newest[j]) for j in jobs])
    for asked in (jobs[:10], jobs[:90]):  # a lookup by _id; a read of the whole rollup
        last = await logs.last_runs([*asked, "none", "j1"])
        assert set(last) == set(asked)
        assert {r.tick for r in last.values()} == {5000}
        assert await logs.last_statuses([*asked, "none", "j1"]) == {
            j: newest[j] for j in asked}


async def test_audit_by_target_actor_and_time(logs: MongoLogStore) -> None:
    for at, actor, action, target in [(10, "alice", "job.create", "a"),
                                      (20, "bob", "job.update", "a"),
                                      (30, "alice", "job.delete", "b"),
                                      (40, "alice", "token.create", "token:t1")]:
        await logs.write_audit(AuditEntry(at, actor, action, target, None, None))
    by_alice = await logs.query_audit(actor="alice")
    assert [e.at for e in by_alice] == [40, 30, 10]  # newest first
    assert [e.at for e in await logs.query_audit(actor="alice", target="a")] == [10]
    assert [e.at for e in await logs.query_audit(since=20, until=40)] == [30, 20]
    assert [e.action for e in await logs.query_audit(action="job.update")] == ["job.update"]
    page = await logs.query_audit(limit=2)
    older = await logs.query_audit(limit=2, until=page[-1].at)
    assert [e.at for e in page + older] == [40, 30, 20, 10]


async def test_audit_pages_are_exact_across_the_widening_windows(logs: MongoLogStore) -> None:
    now = time.time_ns() // 1_000_000
    # Entries at every distance: a burst in the last seconds, minutes, days, a year.
    ages = [0, 1, 2, 3, 500, 30_000, 90_000, 3_600_000, 86_400_000 * 3, 86_400_000 * 400]
    for i, age in enumerate(ages):
        await logs.write_audit(AuditEntry(now - age, f"u{i % 2}", "job.update", f"j{i}"))
    expected = [now - age for age in ages]  # newest first
    seen: list[int] = []
    until = None
    while True:
        page = await logs.query_audit(limit=3, until=until)
        seen += [e.at for e in page]
        if len(page) < 3:
            break
        until = page[-1].at
    assert seen == expected
    assert [e.at for e in await logs.query_audit(actor="u1", limit=100)] == expected[1::2]
    assert [e.at for e in await logs.query_audit(since=now - 90_000, limit=100)] == expected[:7]


async def test_pages_and_counts_are_exact_at_window_and_cursor_boundaries(
        logs: MongoLogStore) -> None:
    """Many runs share ticks (jobs, attempts); every page walk and every count
    must agree with a brute-force reference, bounds included."""
    rng = random.Random(5)
    statuses = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.RUNNING]
    records = []
    for i in range(240):
        r = record(f"j{i % 4}", rng.randrange(1, 13) * 1000, rng.choice(statuses),
                   attempt=i // 4 % 3 + 1, worker=f"w{i % 3}")
        records.append(r)
    records = list({r.record_id: r for r in records}.values())
    await logs.write_runs(records)

    def newest_first(rs: list[RunRecord]) -> list[str]:
        return [r.record_id for r in sorted(rs, key=lambda r: (r.tick, r.record_id),
                                            reverse=True)]

    for since, until in [(None, None), (3000, 9000), (5000, 5001), (1000, 13000)]:
        for field, value in [("job", "j1"), ("status", RunStatus.FAILED), ("worker", "w2"),
                             (None, None)]:
            expected = newest_first([
                r for r in records
                if (field is None or getattr(r, field) == value)
                and (since is None or r.tick >= since) and (until is None or r.tick < until)])
            query = RunQuery(**({field: value} if field else {}), since=since, until=until,
                             limit=7)
            walked: list[str] = []
            while True:
                page = await logs.query_runs(query)
                walked += [r.record_id for r in page.runs]
                if page.next_cursor is None:
                    break
                query = replace(query, cursor=page.next_cursor)
            assert walked == expected, (field, since, until)
        if since is not None and until is not None:
            counts = await logs.count_runs(since=since, until=until)
            assert counts == {s: sum(1 for r in records if r.status is s
                                     and since <= r.tick < until) for s in RunStatus}
            of_j1 = await logs.count_runs(since=since, until=until, job="j1")
            assert of_j1 == {s: sum(1 for r in records if r.status is s and r.job == "j1"
                                    and since <= r.tick < until) for s in RunStatus}


async def test_last_run_is_the_newest_whatever_the_order_of_writes(
        logs: MongoLogStore) -> None:
    first = record("a", 1000)
    retry_running = record("a", 2000, RunStatus.RUNNING, attempt=2)
    retry_done = record("a", 2000, RunStatus.FAILED, attempt=2, output="second try")
    older_lost = record("a", 1000, RunStatus.LOST)
    for batch in ([retry_done], [first], [retry_running], [older_lost], [retry_done]):
        await logs.write_runs(batch)  # replays and stale writes, in a bad order
    last = (await logs.last_runs(["a"]))["a"]
    assert (last.tick, last.attempt, last.status, last.output) == (
        2000, 2, RunStatus.FAILED, "")  # a summary: the output is in the run itself
    full = await logs.get_run(last.record_id)
    assert full is not None and full.output == "second try"
    assert await logs.db["run_last"].count_documents({}) == 1


async def test_last_runs_of_history_written_before_the_rollup(logs: MongoLogStore) -> None:
    old = record_to_doc(record("legacy", 7000, RunStatus.FAILED),
                        default_retention_days=logs.default_retention_days)
    await logs.runs.insert_one(old)  # as if written by an older version
    assert await logs.last_statuses(["legacy", "never-ran"]) == {"legacy": RunStatus.FAILED}
    assert (await logs.last_runs(["legacy", "never-ran"]))["legacy"].tick == 7000
    assert await logs.db["run_last"].find_one({"_id": "legacy"}) is not None  # remembered
    assert "never-ran" not in await logs.last_runs(["never-ran"])


async def test_hourly_counts_stay_exact_through_caching_and_late_writes(
        logs: MongoLogStore) -> None:
    hour = 3_600_000
    base = 1_700_000_000_000 - 1_700_000_000_000 % hour  # on an hour
    rng = random.Random(3)
    statuses = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED]
    records = [record(f"j{i % 5}", base + rng.randrange(6 * hour) // 1000 * 1000,
                      rng.choice(statuses), attempt=i + 1) for i in range(300)]
    await logs.write_runs(records)
    since, until = base + hour // 2, base + 5 * hour + hour // 6  # partial hours at both ends

    def expected() -> dict[RunStatus, int]:
        return {s: sum(1 for r in records if r.status is s and since <= r.tick < until)
                for s in RunStatus}

    assert await logs.count_runs(since=since, until=until) == expected()
    buckets = await logs.db["run_hours"].find({}).to_list(None)
    assert len(buckets) == 6 and all(b["rolled"] == b["version"] for b in buckets[1:5])
    assert await logs.count_runs(since=since, until=until) == expected()  # from the cache

    late = record("late", base + 2 * hour + 5000, RunStatus.FAILED)  # into a cached hour
    records.append(late)
    await logs.write_runs([late])
    assert await logs.count_runs(since=since, until=until) == expected()

    # A reader that counts between a writer's two bumps must not be trusted.
    sneaky = record("sneaky", base + 3 * hour + 7000, RunStatus.TIMEOUT)
    await logs.hourly.touch([from_ms(sneaky.tick)])  # the writer's first bump
    await logs.count_runs(since=since, until=until)  # caches the hour without it
    await logs.runs.insert_one(record_to_doc(sneaky,
                                             default_retention_days=logs.default_retention_days))
    await logs.hourly.touch([from_ms(sneaky.tick)])  # the writer's second bump
    records.append(sneaky)
    assert await logs.count_runs(since=since, until=until) == expected()

    await logs.db["run_hours"].drop()  # lost, or never built (older history)
    assert await logs.count_runs(since=since, until=until) == expected()
    assert await logs.count_runs(since=until, until=since) == dict.fromkeys(RunStatus, 0)


async def test_pages_are_exact_when_the_search_widens_across_windows(
        logs: MongoLogStore, settings: Settings) -> None:
    now = FixedClock.NOW

    store = MongoLogStore(logs.client, database=settings.mongodb_database, clock=FixedClock(),
                          default_retention_days=logs.default_retention_days)
    minute, hour, day = 60_000, 3_600_000, 86_400_000
    offsets = [minute, 2 * minute, 2 * minute, 3 * hour, 5 * hour, 2 * day, 40 * day,
               400 * day, 4000 * day, 20_000 * day, -5 * minute]  # one tick in the future
    records = [record(f"j{i % 2}", now - off, attempt=i + 1) for i, off in enumerate(offsets)]
    await store.write_runs(records)
    for limit in (1, 2, 3, 20):
        for job in (None, "j0"):
            walked: list[str] = []
            query = RunQuery(job=job, limit=limit)
            while True:
                page = await store.query_runs(query)
                walked += [r.record_id for r in page.runs]
                if page.next_cursor is None:
                    break
                query = replace(query, cursor=page.next_cursor)
            mine = [r for r in records if job is None or r.job == job]
            assert walked == [r.record_id for r in sorted(
                mine, key=lambda r: (r.tick, r.record_id), reverse=True)], (limit, job)


async def test_a_text_search_out_of_time_stops_and_its_cursor_goes_on_exactly(
        logs: MongoLogStore, settings: Settings) -> None:
    now = FixedClock.NOW

    def store(budget_ms: float | None) -> MongoLogStore:
        # text_scan_at_once=0: never few enough runs to search them all at once
        return MongoLogStore(logs.client, database=settings.mongodb_database, clock=FixedClock(),
                             default_retention_days=logs.default_retention_days,
                             text_budget_ms=budget_ms, text_scan_at_once=0)

    minute, day = 60_000, 86_400_000
    offsets = [5_000, minute, 3 * minute, 2 * day, 30 * day, 400 * day, 9000 * day]
    records = [record("j", now - off, attempt=i + 1, output="disk full" if i % 2 else "ok")
               for i, off in enumerate(offsets)]
    await store(None).write_runs(records)
    matches = [r.record_id for r in sorted(records, key=lambda r: (r.tick, r.record_id),
                                           reverse=True) if r.output == "disk full"]
    # Without a budget: one page of every match.
    whole = await store(None).query_runs(RunQuery(text="DISK", limit=10))
    assert [r.record_id for r in whole.runs] == matches
    assert (whole.next_cursor, whole.searched_to) == (None, None)
    # No time at all: each request searches one window, says how far it got,
    # and its cursor goes on from there; walked to the end, every match comes
    # once, in order.
    spent, walked, stops = store(0), [], []
    query = RunQuery(text="DISK", limit=10)
    while True:
        page = await spent.query_runs(query)
        walked += [r.record_id for r in page.runs]
        if page.searched_to is not None:
            assert page.next_cursor is not None
            assert all(r.tick >= page.searched_to for r in page.runs)
            assert not stops or page.searched_to < stops[-1]
            stops.append(page.searched_to)
        if page.next_cursor is None:
            break
        query = replace(query, cursor=page.next_cursor)
    assert walked == matches
    assert len(stops) >= 3
    # A page that fills up before the budget is spent is an ordinary page.
    full = await store(10_000).query_runs(RunQuery(text="disk", limit=1))
    assert [r.record_id for r in full.runs] == matches[:1]
    assert full.searched_to is None and full.next_cursor is not None


async def test_a_text_search_of_few_runs_finds_matches_a_year_old_on_its_first_page(
        logs: MongoLogStore, settings: Settings) -> None:
    now, day = FixedClock.NOW, 86_400_000
    offsets = [1_000, 60_000, 30 * day, 365 * day, 366 * day, 3000 * day]
    records = [record("j", now - off, attempt=i + 1, output="disk full" if off >= 365 * day
                      else "ok") for i, off in enumerate(offsets)]
    # No time budget at all: the few runs below the first window are read at once.
    store = MongoLogStore(logs.client, database=settings.mongodb_database, clock=FixedClock(),
                          default_retention_days=100_000, text_budget_ms=0)
    await store.write_runs(records)
    page = await store.query_runs(RunQuery(text="disk", limit=10))
    assert [r.tick for r in page.runs] == [now - off for off in offsets[3:]]
    assert (page.next_cursor, page.searched_to) == (None, None)
    older = await store.query_runs(RunQuery(text="disk", limit=2))  # a full page goes on
    assert [r.tick for r in older.runs] == [now - off for off in offsets[3:5]]
    assert older.searched_to is None and older.next_cursor is not None
    rest = await store.query_runs(RunQuery(text="disk", limit=2, cursor=older.next_cursor))
    assert [r.tick for r in rest.runs] == [now - offsets[5]] and rest.next_cursor is None


def _trend_of(records: list[RunRecord]) -> list[tuple[int, int, RunStatus]]:
    return [(r.tick, r.attempt, r.status) for r in records]


async def _truth(logs: MongoLogStore, job: str, n: int) -> list[tuple[int, int, RunStatus]]:
    docs = await logs.runs.find({"job": job}).sort([("tick", -1), ("attempt", -1)]).to_list(n)
    return [(int(d["tick"].timestamp() * 1000), d["attempt"], RunStatus(d["status"]))
            for d in docs]


async def test_recent_runs_kept_in_the_rollup_match_the_history_whatever_the_writes(
        logs: MongoLogStore) -> None:
    rng = random.Random(7)

    def states(ticks: range) -> list[RunRecord]:
        out: list[RunRecord] = []
        for tick in ticks:
            final = rng.choice([RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMEOUT])
            out += [record("t", tick, RunStatus.RUNNING), record("t", tick, final)]
            if tick % 7000 == 0:  # a retry on a second attempt
                out += [record("t", tick, RunStatus.RUNNING, attempt=2),
                        record("t", tick, RunStatus.SUCCEEDED, attempt=2)]
        return out

    async def write_shuffled(records: list[RunRecord]) -> None:
        # In order, in batches of random size, with replays and a few stale
        # running states written after their final one.
        writes = records + rng.sample(records, len(records) // 4)
        while writes:
            size = rng.randint(1, 6)
            await logs.write_runs(writes[:size])
            writes = writes[size:]

    await write_shuffled(states(range(10_000, 55_000, 1000)))  # more than the rollup keeps
    stored = await logs.db["run_trend"].find_one({"_id": "t"})
    assert stored is not None and len(stored["recent"]) <= RECENT_KEPT
    # First read: completed from the runs (once); then the rollup's alone.
    got = await logs.recent_runs({"t": 60_000}, 20)
    assert _trend_of(got["t"]) == await _truth(logs, "t", 20)
    kept = (await logs.last.recent(["t"]))["t"]
    assert kept is not None and len(kept) >= 20
    assert _trend_of([doc_to_record(d) for d in kept[:20]]) == await _truth(logs, "t", 20)
    # Writes after that keep it exact.
    await write_shuffled(states(range(55_000, 63_000, 1000)))
    kept = (await logs.last.recent(["t"]))["t"]
    assert kept is not None
    assert _trend_of([doc_to_record(d) for d in kept[:20]]) == await _truth(logs, "t", 20)
    got = await logs.recent_runs({"t": 60_000}, 20)
    assert _trend_of(got["t"]) == await _truth(logs, "t", 20)


async def test_recent_runs_of_history_written_before_the_rollup_kept_them(
        logs: MongoLogStore) -> None:
    old = [record_to_doc(record("old", 1000 * (i + 1), RunStatus.FAILED),
                         default_retention_days=logs.default_retention_days)
           for i in range(25)]
    await logs.runs.insert_many(old)  # as if written by an older version
    assert (await logs.last.recent(["old"]))["old"] is None
    first = await logs.recent_runs({"old": 60_000}, 20)
    assert _trend_of(first["old"]) == await _truth(logs, "old", 20)
    # The answer filled the entry: the next read is the rollup's, and new runs add to it.
    await logs.write_runs([record("old", 99_000, RunStatus.SUCCEEDED)])
    kept = (await logs.last.recent(["old"]))["old"]
    assert kept is not None
    assert [int(d["tick"].timestamp() * 1000) for d in kept[:21]] == [99_000] + [
        1000 * (i + 1) for i in reversed(range(5, 25))]
    second = await logs.recent_runs({"old": 60_000}, 20)
    assert _trend_of(second["old"]) == await _truth(logs, "old", 20)


async def test_a_frequent_jobs_rollups_are_written_once_per_interval_and_changes_at_once(
        logs: MongoLogStore, settings: Settings) -> None:
    def shown(status: RunStatus, tick: int) -> tuple[str, int]:
        return status.value, tick

    async def last_seen() -> tuple[str, int]:
        # Read by another process's store: it sees only what was written.
        doc = await logs.db["run_last"].find_one({"_id": "often"})
        assert doc is not None
        return doc["run"]["status"], to_ms(doc["run"]["tick"])

    writer = MongoLogStore(logs.client, database=settings.mongodb_database)
    writer.last.every_s = 3600.0  # nothing held back comes due during this part
    try:
        await writer.write_runs([record("often", 1000)])
        assert await last_seen() == shown(RunStatus.SUCCEEDED, 1000)  # new: at once
        await writer.write_runs([record("often", 2000)])
        assert await last_seen() == shown(RunStatus.SUCCEEDED, 1000)  # same news: held
        await writer.write_runs([record("often", 3000, RunStatus.FAILED)])
        assert await last_seen() == shown(RunStatus.FAILED, 3000)  # a change: at once
        await writer.write_runs([record("often", 4000, RunStatus.RUNNING)])
        assert await last_seen() == shown(RunStatus.RUNNING, 4000)
        await writer.write_runs([record("often", 4000, RunStatus.FAILED)])
        assert await last_seen() == shown(RunStatus.FAILED, 4000)  # after running: at once
        await writer.write_runs([record("often", 5000, RunStatus.FAILED)])
        assert await last_seen() == shown(RunStatus.FAILED, 4000)
        trend = (await logs.db["run_trend"].find_one({"_id": "often"})) or {}
        assert 5000 not in [to_ms(e["tick"]) for e in trend.get("recent", [])]
    finally:
        await writer.close()  # writes what it held back
    assert await last_seen() == shown(RunStatus.FAILED, 5000)
    trend = (await logs.db["run_trend"].find_one({"_id": "often"})) or {}
    assert sorted({to_ms(e["tick"]) for e in trend["recent"]}) == [1000, 2000, 3000, 4000, 5000]

    # Held back, then written by the store's timer when due.
    timed = MongoLogStore(logs.client, database=settings.mongodb_database)
    timed.last.every_s = 0.2
    try:
        await timed.write_runs([record("often", 6000, RunStatus.FAILED)])
        await timed.write_runs([record("often", 7000, RunStatus.FAILED)])
        await wait_for_count(logs.db["run_last"], {"_id": "often", "run.tick": from_ms(7000)},
                             lambda n: n == 1, timeout=30)
        assert await last_seen() == shown(RunStatus.FAILED, 7000)
    finally:
        await timed.close()


async def test_runs_of_hours_still_open_to_writers_are_counted_without_bumps(
        logs: MongoLogStore, settings: Settings) -> None:
    hour = 3_600_000
    now = FixedClock.NOW - FixedClock.NOW % hour + 10 * 60_000  # ten minutes into an hour
    store = MongoLogStore(logs.client, database=settings.mongodb_database,
                          clock=FixedClock(now))
    try:
        current = [record("c", now - 60_000 * i, RunStatus.SUCCEEDED, attempt=i + 1)
                   for i in range(5)]
        before = [record("b", now - 11 * 60_000 - 1000 * i, RunStatus.FAILED)
                  for i in range(3)]  # the hour that ended ten minutes ago
        older = [record("o", now - 3 * hour, RunStatus.TIMEOUT)]
        await store.write_runs(current + before + older)
        this_hour = now // hour * hour
        hours = {to_ms(b["_id"]) async for b in logs.db["run_hours"].find({})}
        assert hours == {this_hour - 3 * hour, this_hour - hour}  # not the one still open
        counts = await store.count_runs(since=now - 4 * hour, until=now + hour)
        assert (counts[RunStatus.SUCCEEDED], counts[RunStatus.FAILED],
                counts[RunStatus.TIMEOUT]) == (5, 3, 1)
        # The hour before is counted, not cached, until every writer is done with it.
        buckets = {to_ms(b["_id"]): b async for b in logs.db["run_hours"].find({})}
        assert buckets[this_hour - hour]["rolled"] != buckets[this_hour - hour]["version"]
        assert buckets[this_hour - 3 * hour]["rolled"] == buckets[this_hour - 3 * hour]["version"]
        late = record("b", now - 11 * 60_000 - 500, RunStatus.FAILED, attempt=2)
        await store.write_runs([late])
        counts = await store.count_runs(since=now - 4 * hour, until=now + hour)
        assert counts[RunStatus.FAILED] == 4
    finally:
        await store.close()


async def test_a_workers_result_wins_over_a_masters_skipped_record_of_the_same_run(
        logs: MongoLogStore) -> None:
    # The master saw a run-now request expire while a worker took it at the
    # last instant: its "nobody took it" record must not discard the result.
    guess = replace(record("late", 1000, RunStatus.SKIPPED), worker="")
    result = record("late", 1000, RunStatus.SUCCEEDED, output="done", worker="w7")
    await logs.write_runs([guess])
    await logs.write_runs([result])
    got = await logs.get_run("late@1000#1")
    assert got is not None and (got.status, got.worker, got.output) == (
        RunStatus.SUCCEEDED, "w7", "done")
    await logs.write_runs([guess])  # replayed late: still the worker's
    got = await logs.get_run("late@1000#1")
    assert got is not None and got.status is RunStatus.SUCCEEDED
