import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given
from hypothesis import strategies as st

from cronswarm.common import CronSchedule, ValidationError, from_ms, preview, to_ms

UTC = dt.UTC


def ms(text: str) -> int:
    return to_ms(dt.datetime.fromisoformat(text))


@pytest.mark.parametrize(
    ("expr", "tz", "after", "expected"),
    [
        ("* * * * * *", "UTC", "2026-01-01T00:00:00.500+00:00", "2026-01-01T00:00:01+00:00"),
        ("*/15 * * * * *", "UTC", "2026-01-01T00:00:15+00:00", "2026-01-01T00:00:30+00:00"),
        ("30 2 * * *", "UTC", "2026-01-01T03:00+00:00", "2026-01-02T02:30+00:00"),
        ("0 9 * * 1-5", "UTC", "2026-01-02T10:00+00:00", "2026-01-05T09:00+00:00"),
        ("0 0 1 * *", "Asia/Tokyo", "2026-01-01T00:00+00:00", "2026-01-31T15:00+00:00"),
        ("@hourly", "UTC", "2026-01-01T00:59:59+00:00", "2026-01-01T01:00+00:00"),
        ("0 12 * * *", "America/New_York", "2026-07-01T00:00+00:00", "2026-07-01T16:00+00:00"),
        ("0 12 * * *", "America/New_York", "2026-12-01T00:00+00:00", "2026-12-01T17:00+00:00"),
    ],
)
def test_next_after(expr: str, tz: str, after: str, expected: str) -> None:
    assert CronSchedule.parse(expr, tz).next_after(ms(after)) == ms(expected)


def test_spring_forward_gap_fires_once_at_the_jump() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT in New York: 02:30 does not exist.
    schedule = CronSchedule.parse("30 2 * * *", "America/New_York")
    tick = schedule.next_after(ms("2026-03-07T12:00+00:00"))
    assert tick == ms("2026-03-08T03:00-04:00")  # the jump: 07:00 UTC
    assert schedule.next_after(tick) == ms("2026-03-09T02:30-04:00")


def test_spring_forward_every_minute_in_the_gap_fires_once() -> None:
    schedule = CronSchedule.parse("*/20 * * * *", "Europe/Berlin")
    # 2026-03-29 02:00 CET -> 03:00 CEST.
    ticks = list(schedule.fires_between(ms("2026-03-29T01:30+01:00"),
                                        ms("2026-03-29T03:30+02:00")))
    berlin = ZoneInfo("Europe/Berlin")
    assert [from_ms(t).astimezone(berlin).strftime("%H:%M %Z") for t in ticks] == [
        "01:40 CET", "03:00 CEST", "03:20 CEST"]


def test_fall_back_repeated_time_fires_once() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice.
    schedule = CronSchedule.parse("30 1 * * *", "America/New_York")
    first = schedule.next_after(ms("2026-11-01T00:00-04:00"))
    assert first == ms("2026-11-01T01:30-04:00")
    assert schedule.next_after(first) == ms("2026-11-02T01:30-05:00")


def test_fall_back_frequent_job_skips_the_repeated_hour() -> None:
    schedule = CronSchedule.parse("0,30 * * * *", "America/New_York")
    ticks = list(schedule.fires_between(ms("2026-11-01T00:45-04:00"),
                                        ms("2026-11-01T02:45-05:00")))
    assert ticks == [ms("2026-11-01T01:00-04:00"), ms("2026-11-01T01:30-04:00"),
                     ms("2026-11-01T02:00-05:00"), ms("2026-11-01T02:30-05:00")]


def test_never_firing_expression_returns_none() -> None:
    assert CronSchedule.parse("0 0 30 2 *").next_after(ms("2026-01-01T00:00+00:00")) is None


def test_bad_timezone_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as exc:
        CronSchedule.parse("* * * * *", "Nowhere/Land")
    assert exc.value.problems[0].field == "timezone"


def test_preview_returns_local_times() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    times = preview("0 8 * * *", "Europe/Paris", 3, now)
    assert [t.isoformat() for t in times] == [
        "2026-01-01T08:00:00+01:00", "2026-01-02T08:00:00+01:00", "2026-01-03T08:00:00+01:00"]


FIELD = st.one_of(
    st.just("*"),
    st.integers(0, 5).map(str),
    st.tuples(st.integers(0, 3), st.integers(4, 9)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.integers(1, 7).map(lambda n: f"*/{n}"),
)
FIVE_FIELDS = st.tuples(
    st.sampled_from(["*", "0", "*/7", "1,31"]),
    st.sampled_from(["*", "0", "*/6", "9-17"]),
    st.sampled_from(["*", "1", "15", "1-7"]),
    st.sampled_from(["*", "1", "2-3", "*/4"]),
    st.sampled_from(["*", "1-5", "0", "6"]),
).map(" ".join)
SIX_FIELDS = st.tuples(
    st.sampled_from(["*", "0", "*/10", "15,45", "5-20/5"]), FIVE_FIELDS).map(" ".join)
EXPRESSIONS = st.one_of(SIX_FIELDS, FIVE_FIELDS)
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata",
                         "Australia/Lord_Howe", "America/Sao_Paulo"])
START = st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2030, 1, 1),
                     timezones=st.just(UTC))


@given(expr=EXPRESSIONS, tz=ZONES, now=START)
def test_preview_is_strictly_increasing_and_matches(expr: str, tz: str,
                                                    now: dt.datetime) -> None:
    times = preview(expr, tz, 8, now)
    assert len(times) == 8  # every expression here fires within a year
    assert all(a < b for a, b in itertools.pairwise(times))
    assert all(t > now for t in times)
    for t in times:
        local = t.replace(tzinfo=None)
        # Each time matches the expression on the wall clock, except a time
        # moved to the end of a spring-forward gap (which is then the jump).
        if croniter.match(expr, local, second_at_beginning=True):
            continue
        before = (t - dt.timedelta(seconds=1)).astimezone(t.tzinfo)
        assert before.utcoffset() != t.utcoffset(), (expr, tz, t)


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_epoch_milliseconds_survive_a_datetime_round_trip(ms: int) -> None:
    assert to_ms(from_ms(ms)) == ms
