"""Server-sent events for live run output (worker -> master -> dashboard).

The stream is a series of unnamed events, each ``{"offset": int, "data": str}``
(``offset`` is the byte offset of the chunk in the attempt's output; a jump
means bytes were left out: the middle of a truncated output, or chunks a slow
reader fell behind on), then one ``end`` event holding the attempt's final
status, ``output_bytes``, ``truncated`` and, when this reader fell behind and
chunks were dropped for it, ``dropped`` (bytes).
"""

from __future__ import annotations

import json
from typing import Any

SSE_CONTENT_TYPE = "text/event-stream"
SSE_HEADERS = {
    "Content-Type": f"{SSE_CONTENT_TYPE}; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # let reverse proxies pass events on at once
}


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One event: optional ``event:`` line, one ``data:`` line of JSON, blank line."""
    text = json.dumps(data, separators=(",", ":"))  # JSON never holds a raw newline
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def output_event(offset: int, data: str) -> bytes:
    return sse_event({"offset": offset, "data": data})


def end_event(status: str, *, output_bytes: int, truncated: bool, dropped: int = 0) -> bytes:
    """The last event; ``dropped`` (only when > 0): bytes this reader fell behind
    on and did not get."""
    data: dict[str, Any] = {"status": status, "output_bytes": output_bytes,
                            "truncated": truncated}
    if dropped:
        data["dropped"] = dropped
    return sse_event(data, event="end")


def sse_comment(text: str) -> bytes:
    """A comment line: keeps idle connections open through proxies."""
    return f": {text}\n\n".encode()
