from cronswarm.common import Job
from cronswarm.worker import Timetable


def job(name: str, schedule: str) -> Job:
    return Job.from_dict({"name": name, "schedule": schedule, "command": "true"})


def test_pops_only_due_jobs_in_order() -> None:
    table = Timetable()
    table.set(job("every2", "*/2 * * * * *"), 0)
    table.set(job("every3", "*/3 * * * * *"), 0)
    assert table.next_due() == 2000
    assert [(e.job.name, t) for e, t in table.pop_due(2500)] == [("every2", 2000)]
    assert table.next_due() == 3000
    table.advance("every2", 2000)
    assert [(e.job.name, t) for e, t in table.pop_due(4000)] == [
        ("every3", 3000), ("every2", 4000)]


def test_replacing_and_removing_leave_no_stale_entries() -> None:
    table = Timetable()
    table.set(job("a", "*/5 * * * * *"), 0)
    table.set(job("a", "*/7 * * * * *"), 0)
    assert table.next_due() == 7000
    table.remove("a")
    assert table.next_due() is None
    assert table.pop_due(10**12) == []


def test_heap_stays_bounded_under_constant_edits() -> None:
    table = Timetable()
    for i in range(10_000):
        table.set(job("a", f"{i % 60} * * * * *"), 0)
    assert len(table) == 1
    assert len(table._heap) <= 2 + 1024


def test_jobs_with_one_schedule_share_its_compiled_form() -> None:
    table = Timetable()
    first = table.set(job("a", "0 */5 * * * *"), 0)
    second = table.set(job("b", "0  */5 * * * *"), 0)
    assert first.schedule is second.schedule
    assert (first.next_tick, second.next_tick) == (300_000, 300_000)
