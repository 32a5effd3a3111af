"""The job model: what to run, when, and under which policies.

``Job.from_dict`` validates untrusted input once, at the boundary, and reports
every bad field; ``Job.to_dict``/``to_json`` and ``from_json`` are the one
place the etcd encoding lives.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from ._alerting import AlertRule
from ._cron import is_valid_expression
from ._errors import FieldProblem, ValidationError
from ._fields import FieldReader
from ._job_parts import (
    DEFAULT_RETRY,
    KILL_GRACE,
    MAX_TIMEOUT_S,
    MISFIRE_WINDOW,
    HttpRequest,
    RetryPolicy,
    check_env_key,
    check_header,
    check_label_key,
    check_schedule,
    check_timezone,
    check_user,
    is_default_retry,
)
from ._job_stored import (
    DEFAULT_RETRY_RAW,
    NO_TARGETS_RAW,
    CommonShape,
    decode_common,
    slot_filler,
)
from ._names import NAME_RE as NAME_RE
from ._names import check_name as check_name
from ._names import validate_name as validate_name
from ._secrets import (
    Sealed,
    sealed_from_stored,
    sealed_to_stored,
)

Overlap = Literal["allow", "forbid", "replace"]
Misfire = Literal["skip", "run_latest", "run_all"]
OVERLAP_POLICIES: tuple[Overlap, ...] = ("allow", "forbid", "replace")
MISFIRE_POLICIES: tuple[Misfire, ...] = ("skip", "run_latest", "run_all")
_NO_STRINGS: Mapping[str, str] = MappingProxyType({})  # shared by every job without env/targets
_NO_SECRETS: Mapping[str, Sealed] = MappingProxyType({})


@functools.lru_cache(maxsize=4096)
def _one_copy(text: str) -> str:
    """``text``, or an equal string returned recently: jobs with the same schedule
    share one copy, and a distinct one costs no entry in the interned strings."""
    return text


@dataclass(frozen=True, slots=True)
class Job:
    """One scheduled job. Exactly one of ``command`` and ``http`` is set."""

    name: str
    schedule: str
    command: str | None = None
    http: HttpRequest | None = None
    timezone: str = "UTC"
    enabled: bool = True
    description: str = ""
    shell: str | None = None  # None: the worker's configured shell
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: _NO_STRINGS)
    user: str | None = None  # run as this user (worker must be root)
    timeout: float | None = None  # seconds; None: no limit
    kill_grace: float = KILL_GRACE  # seconds between SIGTERM and SIGKILL
    overlap: Overlap = "forbid"
    misfire: Misfire = "run_latest"
    misfire_window: float = MISFIRE_WINDOW  # seconds a late tick may still start
    retry: RetryPolicy = DEFAULT_RETRY
    priority: int = 0  # higher starts first when a worker is saturated
    targets: Mapping[str, str] = field(default_factory=lambda: _NO_STRINGS)  # worker labels
    retention_days: int | None = None  # None: the cluster default
    expect_success_within: float | None = None  # seconds, dead-man alert
    alerts: AlertRule | None = None  # None: every kind, to the default channels
    # Write-only values, sealed (see ``_secrets``): slot -> ciphertext.
    secrets: Mapping[str, Sealed] = field(default_factory=lambda: _NO_SECRETS)

    FIELDS = (
        "name", "schedule", "command", "http", "timezone", "enabled", "description", "shell",
        "cwd", "env", "user", "timeout", "kill_grace", "overlap", "misfire", "misfire_window",
        "retry", "priority", "targets", "retention_days", "expect_success_within", "alerts",
        "secrets",
    )

    @property
    def kind(self) -> Literal["shell", "http"]:
        return "http" if self.http is not None else "shell"

    @property
    def summary(self) -> str:
        """What the job runs, in one line (for logs and run records)."""
        if self.http is not None:
            return f"{self.http.method} {self.http.url}"
        return self.command or ""

    @classmethod
    def from_dict(cls, data: object, *, name: str | None = None, stored: bool = False) -> Job:
        """Validate an untrusted JSON object; ``name`` overrides/provides the name.

        ``secrets`` (sealed values) are read only from the etcd encoding
        (``stored``): the API takes secret values in the clear apart and seals
        them. ``secrets_set`` (what ``to_dict`` shows) is read-only.
        """
        if name is not None and isinstance(data, Mapping):
            data = {**data, "name": name}
        r = FieldReader(data, allowed=_JOB_FIELDS)
        job_name = r.string("name", max_len=128, check=check_name)
        schedule = r.string("schedule", max_len=256, check=check_schedule)
        timezone = r.string("timezone", "UTC", max_len=64, check=check_timezone)
        command = r.string("command", None, max_len=65536)
        http = r.nested("http", HttpRequest.from_dict, None)
        if "http" not in r.data or r.data.get("http") is None:
            if command is None and r.data.get("command") is None:
                r.fail("command", "is required (or give 'http' for an HTTP job)")
        elif command is not None:
            r.fail("http", "give either 'command' or 'http', not both")
        enabled = r.boolean("enabled", True)
        description = r.string("description", "", max_len=1024, non_empty=False)
        shell = r.string("shell", None, max_len=1024)
        cwd = r.string("cwd", None, max_len=4096)
        if isinstance(cwd, str) and not cwd.startswith("/"):
            r.fail("cwd", "must be an absolute path")
        env = r.string_map("env", key_check=check_env_key) or _NO_STRINGS
        user = r.string("user", None, max_len=64, check=check_user)
        timeout = r.number("timeout", None, minimum=0, maximum=MAX_TIMEOUT_S,
                           exclusive_minimum=True)
        kill_grace = r.number("kill_grace", KILL_GRACE, minimum=0, maximum=3600)
        overlap = r.choice("overlap", OVERLAP_POLICIES, "forbid")
        misfire = r.choice("misfire", MISFIRE_POLICIES, "run_latest")
        misfire_window = r.number("misfire_window", MISFIRE_WINDOW, minimum=0,
                                  maximum=MAX_TIMEOUT_S)
        if is_default_retry(r.data.get("retry")):
            retry = DEFAULT_RETRY  # what most stored jobs hold: nothing to read
        else:
            retry = r.nested("retry", RetryPolicy.from_dict, DEFAULT_RETRY)
        priority = r.integer("priority", 0, minimum=-1000, maximum=1000)
        targets = r.string_map("targets", max_items=32, key_check=check_label_key,
                               max_value_len=256) or _NO_STRINGS
        retention = r.integer("retention_days", None, minimum=1, maximum=3650)
        dead_man = r.number("expect_success_within", None, minimum=1, maximum=366 * 86400)
        alerts = r.nested("alerts", AlertRule.from_dict, None)
        secrets: Mapping[str, Sealed] = _NO_SECRETS
        if r.data.get("secrets") is not None:
            if not stored:
                r.fail("secrets", "secret values are given in the clear to the API, which "
                                  "seals them")
            else:
                try:
                    secrets = sealed_from_stored(r.data["secrets"])
                except ValueError as exc:
                    r.fail("secrets", str(exc))
        if secrets:
            for where, reason in secret_slot_problems(secrets, http, env):
                r.fail(where, reason)
        if http is not None:
            for key in ("shell", "cwd", "user", "env"):
                if r.data.get(key):
                    r.fail(key, "applies to shell jobs only, not to HTTP jobs")
            if retry.on_exit_codes is not None:
                r.fail("retry.on_exit_codes", "applies to shell jobs; HTTP jobs retry on "
                                              "retry.on_http_statuses")
        elif retry.on_http_statuses is not None:
            r.fail("retry.on_http_statuses", "applies to HTTP jobs; shell jobs retry on "
                                             "retry.on_exit_codes")
        r.finish()
        # Workers hold every job: share the copies of values many jobs repeat.
        if retry == DEFAULT_RETRY:
            retry = DEFAULT_RETRY
        if kill_grace == KILL_GRACE:
            kill_grace = KILL_GRACE
        if misfire_window == MISFIRE_WINDOW:
            misfire_window = MISFIRE_WINDOW
        return cls(
            name=job_name, schedule=_one_copy(" ".join(schedule.split())), command=command,
            http=http, timezone=sys.intern(timezone), enabled=enabled,
            description=description or "", shell=shell, cwd=cwd,
            env=env, user=user, timeout=timeout, kill_grace=kill_grace, overlap=overlap,
            misfire=misfire, misfire_window=misfire_window, retry=retry, priority=priority,
            targets=targets, retention_days=retention, expect_success_within=dead_man,
            alerts=alerts, secrets=secrets,
        )

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON object: the API shape, which shows which secrets
        are set (``secrets_set``) and never their values."""
        out: dict[str, Any] = {"name": self.name, "schedule": self.schedule}
        if self.command is not None:
            out["command"] = self.command
        if self.http is not None:
            out["http"] = self.http.to_dict()
        out.update(
            timezone=self.timezone, enabled=self.enabled, description=self.description,
            timeout=self.timeout, kill_grace=self.kill_grace, overlap=self.overlap,
            misfire=self.misfire, misfire_window=self.misfire_window,
            retry=self.retry.to_dict(), priority=self.priority, targets=dict(self.targets),
        )
        for key in ("shell", "cwd", "user", "retention_days", "expect_success_within"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.env:
            out["env"] = dict(self.env)
        if self.alerts is not None:
            out["alerts"] = self.alerts.to_dict()
        out["secrets_set"] = sorted(self.secrets)
        return out

    def to_json(self) -> bytes:
        """The etcd encoding: ``to_dict`` with the sealed secrets."""
        out = self.to_dict()
        del out["secrets_set"]
        if self.secrets:
            out["secrets"] = sealed_to_stored(self.secrets)
        return json.dumps(out, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str, *, stored_as: str | None = None) -> Job:
        """Decode and validate; ``stored_as``: the name of the key it was read from.

        A job naming ``stored_as`` takes that very string as its name, so a
        worker holding 100,000 jobs keeps each name once.
        """
        shape = decode_common(raw)
        if shape is not None:
            if shape.name == stored_as:
                shape.name = stored_as
            if (job := _common_stored(shape)) is not None:
                return job
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError.single("body", f"is not valid JSON: {exc}") from exc
        if stored_as is not None and type(data) is dict and data.get("name") == stored_as:
            data["name"] = stored_as
        return cls.from_dict(data, stored=True)

    def patched(self, changes: Mapping[str, Any]) -> Job:
        """A new job with ``changes`` applied (a JSON merge patch); revalidated.

        Its secrets are this job's, unchecked: ``with_secrets`` checks them
        against the new job once their own changes are applied.
        """
        if not isinstance(changes, Mapping):
            raise ValidationError.single("body", "must be a JSON object")
        if "name" in changes and changes["name"] != self.name:
            raise ValidationError.single("name", "cannot be changed; create a new job instead")
        base = self.to_dict()
        del base["secrets_set"]
        merged = _merge_patch(base, changes)
        if "http" in changes and changes["http"] is not None:
            merged.pop("command", None)
        if "command" in changes and changes["command"] is not None:
            merged.pop("http", None)
        return replace(Job.from_dict(merged), secrets=self.secrets)

    def with_secrets(self, secrets: Mapping[str, Sealed]) -> Job:
        """This job holding ``secrets`` instead; ValidationError if they do not fit it."""
        problems = [FieldProblem(where, reason) for where, reason
                    in secret_slot_problems(secrets, self.http, self.env)]
        if problems:
            raise ValidationError(problems)
        return replace(self, secrets=dict(secrets) if secrets else _NO_SECRETS)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a worker advertising ``labels`` may run this job."""
        return not self.targets or all(labels.get(k) == v for k, v in self.targets.items())


_JOB_FIELDS = frozenset(Job.FIELDS)


def secret_slot_problems(secrets: Mapping[str, Sealed], http: HttpRequest | None,
                         env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Which secret slots do not fit the job: (field, reason) for each."""
    if not secrets:
        return []  # most jobs: nothing to build
    problems: list[tuple[str, str]] = []
    plain_headers = {k.lower() for k in http.headers} if http is not None else set()
    secret_headers: set[str] = set()
    for slot in sorted(secrets):
        kind, _, key = slot.partition(".")
        where = f"secrets.{slot}"
        if kind == "env":
            if http is not None:
                problems.append((where, "applies to shell jobs only (clear it with null)"))
            elif (reason := check_env_key(key)) is not None:
                problems.append((where, reason))
            elif key in env:
                problems.append((where, f"is also a plain variable (env.{key}); keep one"))
        elif http is None:
            problems.append((where, "applies to HTTP jobs only (clear it with null)"))
        elif kind == "headers":
            if (reason := check_header(key)) is not None:
                problems.append((where, reason))
            elif key.lower() in plain_headers:
                problems.append((where, f"is also a plain header (http.headers.{key})"))
            elif key.lower() in secret_headers:
                problems.append((where, "is set twice (header names ignore case)"))
            secret_headers.add(key.lower())
        elif slot != "basic_auth":
            problems.append((where, "is not a secret slot"))
    if "basic_auth" in secrets and http is not None and (
            "authorization" in plain_headers | secret_headers):
        problems.append(("secrets.basic_auth", "cannot be used with an Authorization header"))
    return problems


def _common_stored(shape: CommonShape) -> Job | None:
    """``Job.from_dict(data, stored=True)`` for the common shape (its types
    already checked by the decoder); None when a value is not valid (``from_dict``
    then reports every problem). Same rules, same result: ``test_job_stored.py``
    compares the two on edge values.
    """
    name, command, timezone, description = (
        shape.name, shape.command, shape.timezone, shape.description)
    timeout, kill_grace, window = shape.timeout, shape.kill_grace, shape.misfire_window
    overlap, misfire = shape.overlap, shape.misfire
    schedule = " ".join(shape.schedule.split())
    # What the decoder left of string_problem's rules: check_name alone rules
    # out empty and NUL; an empty schedule or timezone fails its own check.
    if not (check_name(name) is None
            and "\x00" not in schedule and is_valid_expression(schedule)
            and "\x00" not in command and command.strip()
            and "\x00" not in timezone and timezone.strip()
            and check_timezone(timezone) is None
            and "\x00" not in description
            and overlap in OVERLAP_POLICIES and misfire in MISFIRE_POLICIES
            and shape.retry == DEFAULT_RETRY_RAW and shape.targets == NO_TARGETS_RAW):
        return None
    return _new_common_job(
        name, _one_copy(schedule), command, sys.intern(timezone), shape.enabled, description,
        timeout, KILL_GRACE if kill_grace == KILL_GRACE else kill_grace,
        OVERLAP_POLICIES[OVERLAP_POLICIES.index(overlap)],
        MISFIRE_POLICIES[MISFIRE_POLICIES.index(misfire)],
        MISFIRE_WINDOW if window == MISFIRE_WINDOW else window, shape.priority)


# Job(name=..., ...) for the common shape's fields, in this order, at half the cost.
_new_common_job = slot_filler(Job, (
    "name", "schedule", "command", "timezone", "enabled", "description", "timeout",
    "kill_grace", "overlap", "misfire", "misfire_window", "priority"))


def _merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge_patch(out[key], value)
        else:
            out[key] = value
    return out
