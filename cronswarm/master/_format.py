"""How the dashboard writes times, durations and sizes (pure; jinja2 filters)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..common import from_ms

DASH = "—"


def fmt_time(ms: int | None) -> str:
    """An instant as ``2026-01-01 00:00:00 UTC``."""
    if ms is None:
        return DASH
    return from_ms(ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_time(ms: int | None) -> str:
    """An instant for ``<time datetime>``."""
    return "" if ms is None else from_ms(ms).isoformat().replace("+00:00", "Z")


def fmt_duration(seconds: float | None) -> str:
    """``850 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 3 min``."""
    if seconds is None:
        return DASH
    if seconds < 0:
        return "-" + fmt_duration(-seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def fmt_bytes(count: int | None) -> str:
    if count is None:
        return DASH
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.0%}"


FILTERS: dict[str, Callable[..., Any]] = {
    "time": fmt_time,
    "isotime": iso_time,
    "duration": fmt_duration,
    "bytes": fmt_bytes,
    "percent": fmt_percent,
}
