"""The parts of a job model: its HTTP request, its retry policy, and the
checks of the values a job names (environment, labels, headers, users,
schedules, timezones)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._backoff import backoff_delay
from ._cron import load_timezone, validate_expression
from ._errors import ValidationError
from ._fields import FieldReader
from ._urls import check_http_url

_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_LABEL_KEY_RE = re.compile(r"[A-Za-z0-9_.\-/]{1,63}")
_HEADER_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_TIMEOUT_S = 7 * 24 * 3600.0


def check_env_key(key: str) -> str | None:
    if not _ENV_KEY_RE.fullmatch(key):
        return "is not a valid environment variable name"
    if key.upper().startswith("CRONSWARM_"):
        return "CRONSWARM_* variables are set by the worker and cannot be overridden"
    return None


def check_label_key(key: str) -> str | None:
    return None if _LABEL_KEY_RE.fullmatch(key) else "label names are 1-63 of [A-Za-z0-9_.-/]"


def check_header(key: str) -> str | None:
    return None if _HEADER_RE.fullmatch(key) else "is not a valid HTTP header name"


def check_user(user: str) -> str | None:
    if _USER_RE.fullmatch(user):
        return None
    return "must be a user name: 1-32 of letters, digits, '_', '.', '-' (not starting with '-')"


def _reason_check(validate: Callable[[str], object]) -> Callable[[str], str | None]:
    """A check (None, or what is wrong) from a validator that raises ValidationError."""

    def check(value: str) -> str | None:
        try:
            validate(value)
        except ValidationError as exc:
            return exc.problems[0].reason
        return None

    return check


check_schedule = _reason_check(validate_expression)
check_timezone = _reason_check(load_timezone)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP call made by an HTTP job."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    expect_status: tuple[int, ...] | None = None  # None: any 2xx succeeds
    follow_redirects: bool = True

    FIELDS = ("url", "method", "headers", "body", "expect_status", "follow_redirects")

    @classmethod
    def from_dict(cls, data: object, path: str = "http") -> HttpRequest:
        r = FieldReader(data, path=path, allowed=_HTTP_FIELDS)
        url = r.string("url", max_len=8192, check=check_http_url)
        method = r.data.get("method", "GET")
        if isinstance(method, str):
            method = method.upper()
        if method not in HTTP_METHODS:
            r.fail("method", f"must be one of {', '.join(HTTP_METHODS)} (got {method!r})")
        headers = r.string_map("headers", max_items=64, key_check=check_header)
        for key, value in headers.items():
            if "\r" in value or "\n" in value:
                r.fail(f"headers.{key}", "must not contain line breaks")
        body = r.string("body", None, max_len=1 << 20, non_empty=False)
        expect = r.int_list("expect_status", minimum=100, maximum=599)
        follow = r.boolean("follow_redirects", True)
        r.finish()
        return cls(url, method, headers, body, expect, follow)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "method": self.method}
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.body is not None:
            out["body"] = self.body
        if self.expect_status is not None:
            out["expect_status"] = list(self.expect_status)
        out["follow_redirects"] = self.follow_redirects
        return out

    def status_ok(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status < 300
        return status in self.expect_status


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts of one tick are retried."""

    attempts: int = 1  # total attempts, 1 = no retry
    delay: float = 1.0  # seconds before the first retry
    multiplier: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.1  # fraction of the delay, added at random
    on_exit_codes: tuple[int, ...] | None = None  # None: any failure retries
    on_http_statuses: tuple[int, ...] | None = None
    any_worker: bool = False  # may a retry run on another worker?

    FIELDS = (
        "attempts", "delay", "multiplier", "max_delay", "jitter", "on_exit_codes",
        "on_http_statuses", "any_worker",
    )

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds between attempt ``attempt`` and the next (see ``backoff_delay``)."""
        return backoff_delay(attempt, first=self.delay, cap=self.max_delay,
                             multiplier=self.multiplier, jitter=self.jitter, rng=rng)

    @classmethod
    def from_dict(cls, data: object, path: str = "retry") -> RetryPolicy:
        r = FieldReader(data, path=path, allowed=_RETRY_FIELDS)
        attempts = r.integer("attempts", minimum=1, maximum=100)
        delay = r.number("delay", 1.0, minimum=0, maximum=86400)
        multiplier = r.number("multiplier", 2.0, minimum=1, maximum=100)
        max_delay = r.number("max_delay", 300.0, minimum=0, maximum=86400)
        jitter = r.number("jitter", 0.1, minimum=0, maximum=1)
        codes = r.int_list("on_exit_codes", minimum=1, maximum=255)
        statuses = r.int_list("on_http_statuses", minimum=100, maximum=599)
        any_worker = r.boolean("any_worker", False)
        if isinstance(delay, float) and isinstance(max_delay, float) and max_delay < delay:
            r.fail("max_delay", f"must be at least delay ({delay:g})")
        retry_rules = [k for k in ("on_exit_codes", "on_http_statuses") if r.data.get(k)]
        if any_worker is True:
            retry_rules.append("any_worker")
        if attempts == 1 and retry_rules:
            r.fail("attempts", f"must be at least 2 for {', '.join(retry_rules)} to matter "
                               "(attempts counts the first run)")
        r.finish()
        return cls(attempts, delay, multiplier, max_delay, jitter, codes, statuses, any_worker)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attempts": self.attempts, "delay": self.delay, "multiplier": self.multiplier,
            "max_delay": self.max_delay, "jitter": self.jitter, "any_worker": self.any_worker,
        }
        if self.on_exit_codes is not None:
            out["on_exit_codes"] = list(self.on_exit_codes)
        if self.on_http_statuses is not None:
            out["on_http_statuses"] = list(self.on_http_statuses)
        return out


_HTTP_FIELDS = frozenset(HttpRequest.FIELDS)
_RETRY_FIELDS = frozenset(RetryPolicy.FIELDS)
DEFAULT_RETRY = RetryPolicy()
DEFAULT_RETRY_JSON = DEFAULT_RETRY.to_dict()
_RETRY_TYPES = [type(v) for v in DEFAULT_RETRY_JSON.values()]
KILL_GRACE = 5.0
MISFIRE_WINDOW = 60.0


def is_default_retry(value: object) -> bool:
    """Whether ``value`` is the default policy's own encoding, JSON types included
    (``1.0`` is not ``1``, ``false`` is not ``0``): it decodes to ``DEFAULT_RETRY``."""
    return (type(value) is dict and value == DEFAULT_RETRY_JSON
            and list(map(type, map(value.__getitem__, DEFAULT_RETRY_JSON))) == _RETRY_TYPES)
