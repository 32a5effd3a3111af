"""Cron expressions and fire times: pure functions of an expression and ``now``.

Expressions have five fields (minute hour day-of-month month day-of-week) or
six with seconds first (``second minute hour day-of-month month day-of-week``),
as in the seed chapter on second-level cron. The ``@hourly``-style shortcuts
are accepted too.

Fire times are computed in the job's IANA timezone on wall-clock time, then
mapped to instants. The daylight-saving rule:

* a wall-clock time skipped by the spring jump fires once, at the first valid
  instant after the gap (the instant of the jump);
* a wall-clock time repeated by the autumn fall-back fires once, at its first
  occurrence; the repeated hour does not fire again.

Instants are epoch milliseconds (``int``) throughout; ``tick`` means one such
scheduled instant.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ._cronexpr import CronExpr, CroniterExpr, compile_cron
from ._errors import ValidationError

UTC = dt.UTC
_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MS = dt.timedelta(milliseconds=1)
_SHORTCUTS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


def to_ms(instant: dt.datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one")
    # Exact: timestamp() * 1000 is a float that truncates 1005 ms to 1004.
    return (instant - _UTC_EPOCH) // _MS


def from_ms(ms: int) -> dt.datetime:
    """The aware UTC datetime of an epoch-millisecond instant."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=UTC)


@functools.lru_cache(maxsize=4096)
def load_timezone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises ValidationError for unknown names."""
    if not name or name != name.strip() or "\\" in name or name.startswith("/") or ".." in name:
        raise ValidationError.single("timezone", f"{name!r} is not an IANA timezone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError.single(
            "timezone", f"unknown IANA timezone {name!r} (for example 'UTC', 'Europe/Paris')"
        ) from exc


def _fields(expression: str) -> tuple[str, bool]:
    """Normalise ``expression``; returns it and whether seconds come first."""
    expr = " ".join(expression.split())
    if not expr:
        raise ValidationError.single("schedule", "the cron expression is empty")
    if expr.startswith("@"):
        if expr.lower() not in _SHORTCUTS:
            raise ValidationError.single(
                "schedule",
                f"unknown shortcut {expr!r}; use one of {', '.join(sorted(_SHORTCUTS))}",
            )
        return expr.lower(), False
    count = len(expr.split(" "))
    if count not in (5, 6):
        raise ValidationError.single(
            "schedule",
            f"a cron expression has 5 fields (minute hour day month weekday) or 6 with "
            f"seconds first; {expr!r} has {count}",
        )
    return expr, count == 6


@functools.lru_cache(maxsize=8192)
def validate_expression(expression: str) -> str:
    """The normalised expression; raises ValidationError naming what is wrong."""
    expr, seconds_first = _fields(expression)
    if isinstance(compile_cron(expr), CronExpr):
        return expr  # standard syntax, every value in range: croniter agrees (tested)
    try:
        croniter.expand(expr, second_at_beginning=seconds_first)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ValidationError.single(
            "schedule", f"invalid cron expression {expr!r}: {exc}") from exc
    return expr


def is_valid_expression(expression: str) -> bool:
    """Whether ``validate_expression`` accepts a normalised ``expression``.

    For the stored-job decoder, which checks every job a worker loads, most
    with a distinct expression: standard syntax is valid once it compiles,
    without the validation cache (all misses there) or normalising again;
    anything else is left to ``validate_expression``.
    """
    if (expression[:1] != "@" and expression.count(" ") in (4, 5)
            and type(compile_cron(expression)) is CronExpr):
        return True
    try:
        validate_expression(expression)
    except ValidationError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A validated expression in a timezone; computes fire instants."""

    expression: str
    timezone: str = "UTC"
    _compiled: CronExpr | CroniterExpr = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", compile_cron(self.expression))
        object.__setattr__(self, "_zone", load_timezone(self.timezone))

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        expr = validate_expression(expression)
        load_timezone(timezone)
        return cls(expr, timezone)

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def shared(expression: str, timezone: str = "UTC") -> CronSchedule:
        """``CronSchedule(expression, timezone)``, one object per pair in use.

        For a validated job's schedule: a worker holding many jobs keeps their
        schedules here, not one copy per job.
        """
        return CronSchedule(expression, timezone)

    @property
    def seconds_first(self) -> bool:
        return not self.expression.startswith("@") and len(self.expression.split(" ")) == 6

    def next_after(self, after_ms: int) -> int | None:
        """The first fire instant strictly after ``after_ms``; None if it never fires."""
        return _next_after(self._compiled, self._zone, after_ms)

    def _walk(self, after_ms: int) -> int | None:
        """``next_after`` by walking wall-clock time (what the daily arithmetic must match)."""
        return _walk(self._compiled, self._zone, after_ms)

    def fires_between(self, after_ms: int, until_ms: int) -> Iterator[int]:
        """Every fire instant in ``(after_ms, until_ms]``, in order."""
        current = after_ms
        while True:
            nxt = self.next_after(current)
            if nxt is None or nxt > until_ms:
                return
            yield nxt
            current = nxt


_UTC_ZONE = ZoneInfo("UTC")


def next_fire(expression: str, timezone: str, after_ms: int) -> int | None:
    """``CronSchedule(expression, timezone).next_after(after_ms)`` without
    building the schedule: a worker loading 100,000 jobs asks this once per
    job, right after validating the expression (which compiled it)."""
    return _next_after(compile_cron(expression), load_timezone(timezone), after_ms)


def _next_after(expr: CronExpr | CroniterExpr, zone: ZoneInfo, after_ms: int) -> int | None:
    if type(expr) is CronExpr and expr.daily:
        found = _next_daily(expr, zone, after_ms)
        if found is not None:
            return found
    return _walk(expr, zone, after_ms)


def _walk(expr: CronExpr | CroniterExpr, zone: ZoneInfo, after_ms: int) -> int | None:
    """``next_after`` by walking wall-clock time (any expression, any zone)."""
    if zone is _UTC_ZONE:
        candidate = expr.next_after(_naive_utc(after_ms))
        return None if candidate is None else _naive_utc_ms(candidate)
    # Walk naive wall-clock time (no DST surprises inside the evaluator),
    # then map each candidate to an instant by the DST rule.
    wall = from_ms(after_ms).astimezone(zone).replace(tzinfo=None)
    while True:
        candidate = expr.next_after(wall)
        if candidate is None:
            return None
        instant = _wall_to_instant_ms(candidate, zone)
        if instant > after_ms:
            return instant
        wall = candidate


def _next_daily(expr: CronExpr, zone: ZoneInfo, after_ms: int) -> int | None:
    """``next_after`` for an expression matching every day, by arithmetic on
    seconds: a worker computes this for every job it loads. In another zone
    than UTC the answer stands only if the zone's offset is the same at
    ``after_ms`` and at the answer (no transition within the day between);
    None otherwise, and the caller walks wall-clock time instead."""
    after_s = after_ms // 1000
    if zone is _UTC_ZONE:
        day, second = divmod(after_s + 1, 86400)
        return (day * 86400 + expr.next_second_of_day(second)) * 1000
    offset = _offset_s(zone, after_s)
    day, second = divmod(after_s + offset + 1, 86400)
    instant = day * 86400 + expr.next_second_of_day(second) - offset
    # The same offset three hours before the answer as well: no fall-back just
    # before it, whose repeated wall-clock times the DST rule does not fire again.
    if _offset_s(zone, instant) != offset or _offset_s(zone, instant - 3 * 3600) != offset:
        return None
    return instant * 1000


_WINDOW_S = 900


def _offset_s(zone: ZoneInfo, instant_s: int) -> int:
    """The zone's UTC offset at ``instant_s``, in seconds."""
    steady = _steady_offset(zone, instant_s // _WINDOW_S)
    return _exact_offset_s(zone, instant_s) if steady is None else steady


@functools.lru_cache(maxsize=8192)
def _steady_offset(zone: ZoneInfo, window: int) -> int | None:
    """The offset throughout a quarter of an hour, None if it changes within
    it: a worker loading many jobs asks for the same few windows."""
    start = window * _WINDOW_S
    offset = _exact_offset_s(zone, start)
    return offset if _exact_offset_s(zone, start + _WINDOW_S - 1) == offset else None


def _exact_offset_s(zone: ZoneInfo, instant_s: int) -> int:
    offset = dt.datetime.fromtimestamp(instant_s, zone).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


_EPOCH = dt.datetime(1970, 1, 1)


def _naive_utc(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def _naive_utc_ms(wall: dt.datetime) -> int:
    return (wall - _EPOCH) // dt.timedelta(milliseconds=1)


def _wall_to_instant_ms(wall: dt.datetime, zone: ZoneInfo) -> int:
    """Map a naive wall-clock time in ``zone`` to an instant by the DST rule."""
    first = wall.replace(tzinfo=zone, fold=0)
    instant = to_ms(first)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return instant  # exists (if repeated, fold=0 is its first occurrence)
    # Skipped by a spring-forward gap: fire at the jump, the first valid
    # instant whose wall-clock time is past ``wall``.
    low = to_ms(wall.replace(tzinfo=zone, fold=1))
    high = instant
    if low > high:
        low, high = high, low
    while high - low > 1000:
        mid = (low + high) // 2
        if from_ms(mid).astimezone(zone).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid
    return high - high % 1000


def preview(expression: str, timezone: str, n: int, now: dt.datetime) -> list[dt.datetime]:
    """The next ``n`` fire times after ``now``, as aware datetimes in ``timezone``."""
    schedule = CronSchedule.parse(expression, timezone)
    zone = load_timezone(timezone)
    out: list[dt.datetime] = []
    current = to_ms(now)
    while len(out) < n:
        nxt = schedule.next_after(current)
        if nxt is None:
            break
        out.append(from_ms(nxt).astimezone(zone))
        current = nxt
    return out
