"""The one check of an http(s) URL given by a user: HTTP jobs and alert channels."""

from __future__ import annotations

from urllib.parse import urlsplit


def check_http_url(url: str) -> str | None:
    """Why ``url`` is not an absolute http:// or https:// URL we may call, or None.

    White space and control characters are refused before parsing: ``urlsplit``
    silently drops CR, LF and TAB, so ``http://h/a\\r\\nX-Injected: 1`` would
    pass as ``http://h/aX-Injected: 1`` and reach a request line as it was given.
    """
    if any(c.isspace() or not c.isprintable() for c in url):
        return "must not contain white space or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError as exc:
        return f"is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http:// or https:// URL"
    return None
