"""The trend cache serves a job's runs only while its last run is the same one,
in the same state, and not for longer than its age limit."""

from dataclasses import replace

from cronswarm.common import RunRecord, RunStatus
from cronswarm.master._trend import TrendCache


def record(tick: int, status: RunStatus = RunStatus.SUCCEEDED,
           ended: int | None = None) -> RunRecord:
    return RunRecord(run_id=f"j@{tick}", job="j", tick=tick, attempt=1, worker="w",
                     summary="true", status=status, started=tick, ended=ended)


def test_a_hit_needs_the_same_last_run_in_the_same_state_and_size() -> None:
    cache = TrendCache(max_age_ms=30_000)
    running = record(2000, RunStatus.RUNNING)
    runs = [running, record(1000, ended=1010)]
    cache.put("j", 20, running, 0, runs)
    assert cache.get("j", 20, running, 10_000) == runs
    assert cache.get("j", 10, running, 10_000) is None  # another trend size
    done = replace(running, status=RunStatus.SUCCEEDED, ended=2010)
    assert cache.get("j", 20, done, 10_000) is None  # the last run ended
    assert cache.get("j", 20, record(3000, ended=3010), 10_000) is None  # a newer run
    assert cache.get("j", 20, None, 10_000) is None  # its history expired
    assert cache.get("other", 20, running, 10_000) is None


def test_entries_age_out_and_the_cache_stays_bounded() -> None:
    cache = TrendCache(max_age_ms=30_000, max_jobs=3)
    cache.put("j", 20, None, 0, [])
    assert cache.get("j", 20, None, 30_000) == []  # a job that never ran: cached too
    assert cache.get("j", 20, None, 30_001) is None
    for name in ("a", "b", "c", "d"):
        cache.put(name, 20, None, 0, [])
    assert len(cache.entries) <= 3
    assert cache.get("d", 20, None, 0) == []
