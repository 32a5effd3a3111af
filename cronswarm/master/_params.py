"""Query-string parameters, validated once at the boundary.

Each reader returns a typed value or raises ValidationError naming the
parameter, so a malformed query is a 400 with the one error shape.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from ..common import MAX_TICK_MS, ValidationError, check_name, to_ms, unencodable_text
from ..logstore import decode_cursor

E = TypeVar("E", bound=str)
_MAX_TEXT = 200
_INT_RE = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII only: "¹".isdigit() is true
_MS_RE = re.compile(r"[0-9]{1,15}")
MAX_MS = MAX_TICK_MS
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if not _INT_RE.fullmatch(text):
        raise ValidationError.single(name, f"must be an integer (got {raw[:40]!r})")
    value = int(text)
    if not lo <= value <= hi:
        raise ValidationError.single(name, f"must be between {lo} and {hi} (got {value})")
    return value


def bool_param(query: Mapping[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationError.single(name, f"must be true or false (got {raw[:40]!r})")


def time_param(query: Mapping[str, str], name: str) -> int | None:
    """An epoch-ms integer or an ISO 8601 time with an offset."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if _MS_RE.fullmatch(text):
        if int(text) > MAX_MS:
            raise ValidationError.single(name, f"must be at most {MAX_MS} (year 9999)")
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError.single(
            name, "must be epoch milliseconds or an ISO 8601 time such as "
                  "2026-01-01T00:00:00Z") from None
    if when.tzinfo is None:
        raise ValidationError.single(name, "ISO times need an offset, e.g. 2026-01-01T00:00Z")
    try:
        return max(0, to_ms(when))
    except (OverflowError, ValueError):
        raise ValidationError.single(name, "is out of range") from None


def text_param(query: Mapping[str, str], name: str, max_len: int = _MAX_TEXT) -> str | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise ValidationError.single(name, f"must be at most {max_len} characters")
    if "\x00" in raw:
        raise ValidationError.single(name, "must not contain NUL characters")
    return raw


def name_param(query: Mapping[str, str], name: str) -> str | None:
    """A job or worker name (a slug)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if (reason := check_name(raw)) is not None:
        raise ValidationError.single(name, reason)
    return raw


def run_cursor_param(query: Mapping[str, str], name: str, *, text_search: bool) -> str | None:
    """A cursor of the run history (``RunPage.next_cursor``), checked whole.

    Its tick must be an instant a datetime holds and its record id text that
    MongoDB can take. A window width comes only in the cursors of a text search
    (``q``), which stops widening at tick 0; without ``q`` the history widens
    the window by up to 16 times a round, past year 1 from a large width.
    """
    raw = text_param(query, name, 512)
    if raw is None:
        return None
    tick, record_id, width = decode_cursor(raw)
    if not 0 <= tick <= MAX_MS or unencodable_text(record_id) is not None:
        raise ValidationError.single(name, "is not a cursor returned by this API")
    if width is not None and (width > MAX_MS or not text_search):
        raise ValidationError.single(
            name, "is the cursor of a text search: send it with the same q")
    return raw


def choice_param(query: Mapping[str, str], name: str, options: Iterable[E]) -> E | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    opts = tuple(options)
    for option in opts:
        if raw == option:
            return option
    raise ValidationError.single(name, f"must be one of {', '.join(opts)} (got {raw[:40]!r})")


def label_param(query: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """A ``key=value`` worker label."""
    raw = text_param(query, name, 320)
    if raw is None:
        return None
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise ValidationError.single(name, f"must be key=value (got {raw[:40]!r})")
    return key, value
