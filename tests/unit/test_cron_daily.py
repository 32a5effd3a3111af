"""Expressions that match every day take an arithmetic path to their next fire
(``_next_daily``): it gives what walking wall-clock time gives, in every zone,
across daylight-saving transitions."""

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cronswarm.common import CronSchedule

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe",
         "America/St_Johns", "Asia/Kolkata", "Pacific/Chatham", "America/Santiago"]
DAILY = ["* * * * * *", "0 * * * * *", "*/7 * * * * *", "30 2 * * *", "0 0 * * *",
         "15,45 1-3 * * *", "59 59 23 * * *", "0 30 2 * * *", "5 4 * * *", "*/20 * * * *",
         "@hourly", "@daily", "0 0,12 * * *"]


def transitions(zone: ZoneInfo, year: int) -> list[int]:
    """Epoch seconds at which ``zone`` changes its offset during ``year``."""
    start = int(dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp())
    found: list[int] = []
    previous = dt.datetime.fromtimestamp(start, zone).utcoffset()
    for hour in range(1, 366 * 24):
        offset = dt.datetime.fromtimestamp(start + hour * 3600, zone).utcoffset()
        if offset != previous:
            found.append(start + hour * 3600)
            previous = offset
    return found


@pytest.mark.parametrize("tz", ZONES)
def test_the_arithmetic_path_agrees_with_the_walk_around_every_transition(tz: str) -> None:
    rng = random.Random(tz)
    instants = [t + rng.randint(-2 * 86400, 2 * 86400) * 1000 // 1000
                for year in (2025, 2026, 2027) for t in transitions(ZoneInfo(tz), year)
                for _ in range(40)]
    instants += [rng.randint(1_700_000_000, 2_000_000_000) for _ in range(200)]
    assert tz == "UTC" or "Asia" in tz or len(instants) > 200  # DST zones have transitions
    for expr in DAILY:
        schedule = CronSchedule.parse(expr, tz)
        for instant in instants:
            after_ms = instant * 1000 + rng.randint(0, 999)
            assert schedule.next_after(after_ms) == schedule._walk(after_ms), (expr, tz, after_ms)


@given(expr=st.sampled_from(DAILY), tz=st.sampled_from(ZONES),
       after_ms=st.integers(0, 4_000_000_000_000))
def test_the_arithmetic_path_agrees_with_the_walk_anywhere(expr: str, tz: str,
                                                           after_ms: int) -> None:
    schedule = CronSchedule.parse(expr, tz)
    assert schedule.next_after(after_ms) == schedule._walk(after_ms)
