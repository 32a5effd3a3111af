"""check_http_url: the one URL check of HTTP jobs and alert channels."""

import pytest

from cronswarm.common import check_http_url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a", "https://example.com:8443/hook?x=1&y=%20", "HTTP://h/",
    "http://[::1]:80/", "https://bücher.example/pfad",
])
def test_urls_we_may_call(url: str) -> None:
    assert check_http_url(url) is None


@pytest.mark.parametrize(("url", "reason_part"), [
    ("http://127.0.0.1/a\r\nX-Injected: 1", "white space or control"),  # urlsplit drops CRLF
    ("http://127.0.0.1/a\tb", "white space or control"),
    ("http://127.0.0.1/a b", "white space or control"),
    ("http://127.0.0.1/a\x7f", "white space or control"),
    ("http://127.0.0.1/a\u2028", "white space or control"),
    ("http://127.0.0.1:99999/", "not a valid URL"),
    ("http://127.0.0.1:x/", "not a valid URL"),
    ("http://[::1/", "not a valid URL"),
    ("ftp://h/x", "http:// or https://"),
    ("http://:80/", "http:// or https://"),
    ("/relative", "http:// or https://"),
])
def test_urls_refused(url: str, reason_part: str) -> None:
    reason = check_http_url(url)
    assert reason is not None and reason_part in reason
