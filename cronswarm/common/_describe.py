"""Cron expressions in words, for people: ``describe("0 30 2 * * *") == "at 02:30 daily"``.

A pure function of the expression. It covers the common shapes (steps that
divide their unit evenly, fixed times, lists of hours, weekdays, days of the
month, months) and answers the raw expression for anything else: a wrong
description is worse than none.
"""

from __future__ import annotations

from dataclasses import dataclass

_SHORTCUTS = {
    "@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_NAMES = {m[:3].lower(): i for i, m in enumerate(_MONTHS, 1)}
_DAY_NAMES = {d[:3].lower(): i for i, d in enumerate(_DAYS)}
_MAX_LISTED = 6  # longer lists read worse than the expression


class _Unsupported(Exception):
    """A shape this module does not put in words."""


@dataclass(frozen=True, slots=True)
class _Field:
    """One cron field: ``*``, ``*/step``, or an explicit sorted list of values."""

    every: bool = False
    step: int = 1
    values: tuple[int, ...] = ()

    @property
    def single(self) -> int | None:
        return self.values[0] if len(self.values) == 1 else None


def _number(text: str, low: int, high: int, names: dict[str, int] | None) -> int:
    lowered = text.lower()
    if names is not None and lowered in names:
        return names[lowered]
    if not (text.isascii() and text.isdigit()):
        raise _Unsupported
    value = int(text)
    if not low <= value <= high:
        raise _Unsupported
    return value


def _parse(text: str, low: int, high: int, names: dict[str, int] | None = None) -> _Field:
    if text in ("*", "?"):
        return _Field(every=True)
    if text.startswith("*/"):
        step_text = text[2:]
        if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
            raise _Unsupported
        step = int(step_text)
        return _Field(every=True) if step == 1 else _Field(every=True, step=step)
    values: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        start = _number(first, low, high, names)
        end = _number(last, low, high, names) if dash else start
        if end < start:
            raise _Unsupported
        values.update(range(start, end + 1))
    return _Field(values=tuple(sorted(values)))


def _plural(n: int, unit: str) -> str:
    return f"every {unit}" if n == 1 else f"every {n} {unit}s"


def _step(field: _Field, unit: str, span: int) -> str:
    """``every n <unit>s``, only when ``n`` divides the span evenly (no drift at wrap)."""
    if span % field.step:
        raise _Unsupported
    return _plural(field.step, unit)


def _join(words: list[str]) -> str:
    if len(words) > _MAX_LISTED:
        raise _Unsupported
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _listed(values: tuple[int, ...], names: tuple[str, ...] | None = None) -> str:
    """``values`` in words; ``names[v - 1]`` names value ``v`` when given."""
    return _join([names[v - 1] if names is not None else str(v) for v in values])


def _clock(hour: int, minute: int, second: int) -> str:
    return f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


def _time(sec: _Field, minute: _Field, hour: _Field) -> tuple[str, bool]:
    """The time-of-day phrase, and whether it names fixed clock times."""
    if sec.every:
        if minute.every and minute.step == 1 and hour.every and hour.step == 1:
            return _step(sec, "second", 60), False
        raise _Unsupported
    s = sec.single
    if s is None:
        raise _Unsupported
    if minute.every:
        if not (hour.every and hour.step == 1):
            raise _Unsupported
        if minute.step == 1:
            return ("every minute" if s == 0 else f"every minute at second {s}"), False
        if s != 0:
            raise _Unsupported
        return _step(minute, "minute", 60), False
    m = minute.single
    if m is None:
        raise _Unsupported
    if hour.every:
        phrase = _step(hour, "hour", 24)
        if s == 0 and m == 0:
            return phrase, False
        return f"{phrase} at minute {m}" + (f", second {s}" if s else ""), False
    return "at " + _join([_clock(h, m, s) for h in hour.values]), True


def _days(dom: _Field, month: _Field, dow: _Field, fixed_time: bool) -> str:
    parts: list[str] = []
    if not dom.every and not dow.every:
        raise _Unsupported  # either may match (Vixie cron): too subtle for one phrase
    if dom.step != 1 or dow.step != 1 or month.step != 1:
        raise _Unsupported
    if not dow.every:
        days = tuple(sorted({d % 7 for d in dow.values}))
        if days == (1, 2, 3, 4, 5):
            parts.append("on weekdays")
        elif days == (0, 6):
            parts.append("on weekends")
        else:
            parts.append("on " + _listed(tuple(d + 1 for d in days), _DAYS))
    if len(dom.values) == 1 and len(month.values) == 1 and dow.every:
        return f"on {dom.values[0]} {_MONTHS[month.values[0] - 1]}"  # once a year
    if not dom.every:
        noun = "day" if len(dom.values) == 1 else "days"
        parts.append(f"on {noun} {_listed(dom.values)} of the month")
    if not month.every:
        parts.append("in " + _listed(month.values, _MONTHS))
    if not parts and fixed_time:
        return "daily"
    return " ".join(parts)


def describe(expression: str) -> str:
    """``expression`` in words, or the expression itself when it has an unusual shape."""
    expr = " ".join(expression.split())
    fields = _SHORTCUTS.get(expr.lower(), expr).split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        return expr
    try:
        sec = _parse(fields[0], 0, 59)
        minute = _parse(fields[1], 0, 59)
        hour = _parse(fields[2], 0, 23)
        dom = _parse(fields[3], 1, 31)
        month = _parse(fields[4], 1, 12, _MONTH_NAMES)
        dow = _parse(fields[5], 0, 7, _DAY_NAMES)
        when, fixed = _time(sec, minute, hour)
        days = _days(dom, month, dow, fixed)
    except _Unsupported:
        return expr
    return f"{when} {days}" if days else when
