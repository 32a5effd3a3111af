"""A compiled cron expression and a fast "next matching wall-clock second".

croniter defines the syntax and validates it at the API boundary; this module
evaluates it quickly, because a worker computes the next tick of every job it
holds: croniter builds an iterator per call (~0.4 ms), this takes
microseconds. The standard syntax is compiled here (``*``, ``?``, numbers,
names, ranges, steps, lists, shortcuts); the rare extensions (``L``, ``W``,
``#``, ``H``, wrapped ranges) are left to croniter. Property tests compare the
two on random expressions.

Day matching follows croniter (and Vixie cron): when both day-of-month and
day-of-week are restricted, a day matches if either matches.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from bisect import bisect_left
from typing import NamedTuple

from croniter import CroniterBadDateError, croniter

_SHORTCUTS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (low, high, names) for second, minute, hour, day, month, weekday
_BOUNDS = ((0, 59, None), (0, 59, None), (0, 23, None), (1, 31, None), (1, 12, _MONTHS),
           (0, 7, _DAYS))
_MAX_YEARS = 5


class _Extended(Exception):
    pass


@functools.lru_cache(maxsize=4096)
def _field(text: str, index: int) -> tuple[int, ...] | None:
    """Sorted allowed values, or None for an unrestricted ``*``/``?``.

    Cached: a worker compiles the expression of every job it holds, and the
    same field text yields the same tuple, shared by every expression using it.
    """
    low, high, names = _BOUNDS[index]
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.lower().split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _Extended
            step = int(step_text)
        if body in ("*", "?"):
            start, end = low, high
        else:
            first, dash, last = body.partition("-")
            start = _number(first, names)
            # "a/n" runs to the field's end; for weekdays that is 6 (as croniter).
            open_end = 6 if index == 5 else high
            end = _number(last, names) if dash else (open_end if step_text else start)
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise _Extended  # croniter reports the precise error (or wraps ranges)
        values.update(range(start, end + 1, step))
    if index == 5 and 7 in values:
        values.discard(7)
        values.add(0)
    return tuple(sorted(values))


def _number(text: str, names: dict[str, int] | None) -> int:
    if text.isdigit():
        return int(text)
    if names is not None and text in names:
        return names[text]
    raise _Extended


class CronExpr(NamedTuple):
    """Allowed values per field of a standard expression; None means unrestricted.

    A named tuple, not a frozen dataclass: as immutable, and built in a third
    of the time (a worker compiles the expression of every job it loads).
    """

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...] | None  # day of month
    months: tuple[int, ...]
    weekdays: tuple[int, ...] | None  # 0 = Sunday

    def day_matches(self, year: int, month: int, day: int) -> bool:
        if self.days is None:
            return self.weekdays is None or _weekday(year, month, day) in self.weekdays
        if self.weekdays is None:
            return day in self.days
        return day in self.days or _weekday(year, month, day) in self.weekdays

    @property
    def daily(self) -> bool:
        """Whether every day matches (any day of month, weekday and month): the
        next fire is then found within a day (``next_second_of_day``)."""
        return self.days is None and self.weekdays is None and len(self.months) == 12

    def next_second_of_day(self, second: int) -> int:
        """For a ``daily`` expression: the first matching second of the day at or
        after ``second`` (0..86399), or that of the next day plus 86400."""
        hour, rest = divmod(second, 3600)
        minute, sec = divmod(rest, 60)
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        if hour in hours:
            if minute in minutes:
                i = bisect_left(seconds, sec)
                if i < len(seconds):
                    return hour * 3600 + minute * 60 + seconds[i]
            i = bisect_left(minutes, minute + 1)
            if i < len(minutes):
                return hour * 3600 + minutes[i] * 60 + seconds[0]
        i = bisect_left(hours, hour + 1)
        if i < len(hours):
            return hours[i] * 3600 + minutes[0] * 60 + seconds[0]
        return 86400 + hours[0] * 3600 + minutes[0] * 60 + seconds[0]

    def next_after(self, wall: dt.datetime) -> dt.datetime | None:
        """The first naive wall-clock second strictly after ``wall`` that matches."""
        t = wall.replace(microsecond=0) + dt.timedelta(seconds=1)
        year, month, day = t.year, t.month, t.day
        hour, minute, second = t.hour, t.minute, t.second
        limit = t.year + _MAX_YEARS
        while year <= limit:
            if month not in self.months:
                month, year = _next_in(self.months, month, 12, year)
                day, hour, minute, second = 1, 0, 0, 0
                continue
            if day > 28 and day > _days_in(year, month):
                month += 1
                if month > 12:
                    month, year = 1, year + 1
                day, hour, minute, second = 1, 0, 0, 0
                continue
            if not self.day_matches(year, month, day):
                day += 1
                hour, minute, second = 0, 0, 0
                continue
            if hour not in self.hours:
                nxt = _after(self.hours, hour)
                if nxt is None:
                    day += 1
                    hour, minute, second = 0, 0, 0
                else:
                    hour, minute, second = nxt, 0, 0
                continue
            if minute not in self.minutes:
                nxt = _after(self.minutes, minute)
                if nxt is None:
                    hour += 1
                    minute, second = 0, 0
                    if hour > 23:
                        day, hour = day + 1, 0
                else:
                    minute, second = nxt, 0
                continue
            if second not in self.seconds:
                nxt = _after(self.seconds, second)
                if nxt is None:
                    minute += 1
                    second = 0
                    if minute > 59:
                        hour, minute = hour + 1, 0
                        if hour > 23:
                            day, hour = day + 1, 0
                else:
                    second = nxt
                continue
            return dt.datetime(year, month, day, hour, minute, second)
        return None


def _after(values: tuple[int, ...], current: int) -> int | None:
    """The smallest allowed value >= current, or None."""
    i = bisect_left(values, current)
    return values[i] if i < len(values) else None


def _next_in(values: tuple[int, ...], current: int, _top: int, year: int) -> tuple[int, int]:
    nxt = _after(values, current)
    if nxt is None:
        return values[0], year + 1
    return nxt, year


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in(year: int, month: int) -> int:
    if month == 2 and calendar.isleap(year):
        return 29
    return _MONTH_DAYS[month]


def _weekday(year: int, month: int, day: int) -> int:
    return (dt.date(year, month, day).weekday() + 1) % 7  # Sunday = 0


class CroniterExpr:
    """Extended syntax (L, W, #, H, wrapped ranges): croniter evaluates it."""

    __slots__ = ("expression", "seconds_first")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.seconds_first = len(expression.split(" ")) == 6

    def next_after(self, wall: dt.datetime) -> dt.datetime | None:
        it = croniter(self.expression, wall.replace(microsecond=0),
                      second_at_beginning=self.seconds_first)
        try:
            nxt: dt.datetime = it.get_next(dt.datetime)
        except CroniterBadDateError:
            return None
        return nxt if nxt.year <= wall.year + _MAX_YEARS else None


_ALL = {i: tuple(range(lo, hi + 1)) for i, (lo, hi, _) in enumerate(_BOUNDS)}
_FULL_DAYS = tuple(range(1, 32))
_FULL_WEEKDAYS = tuple(range(7))
_INDEXES = range(6)


@functools.lru_cache(maxsize=8192)
def compile_cron(expression: str) -> CronExpr | CroniterExpr:
    """Compile a normalised, valid expression (5 fields, 6 with seconds first, or a shortcut)."""
    text = _SHORTCUTS.get(expression, expression).replace("?", "*")
    parts = text.split(" ")
    if len(parts) == 5:
        parts = ["0", *parts]
    try:
        seconds, minutes, hours, days, months, weekdays = map(_field, parts, _INDEXES)
    except _Extended:
        return CroniterExpr(text)
    # croniter's rule: a day field listing every value counts as unrestricted
    # ("*") only when the other day field contains a "*".
    if days == _FULL_DAYS and "*" in parts[5]:
        days = None
    if weekdays == _FULL_WEEKDAYS and "*" in parts[3]:
        weekdays = None
    return CronExpr(seconds or _ALL[0], minutes or _ALL[1], hours or _ALL[2], days,
                    months or _ALL[4], weekdays)
