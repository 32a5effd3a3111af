"""JSON Schemas of the job documents: as created, replaced, patched and shown.

They follow ``Job.from_dict``'s rules (required fields, enums, bounds,
patterns) from the same constants; what JSON Schema cannot say (that a cron
expression parses, that a timezone exists) is in the descriptions, and the
server answers 400 naming the field.
"""

from __future__ import annotations

from ..common import MISFIRE_POLICIES, OVERLAP_POLICIES
from ..common._job_parts import HTTP_METHODS, MAX_TIMEOUT_S
from ..common._secrets import MAX_SECRET_LEN
from ._openapi_blocks import (
    CRON_PATTERN,
    ENV_KEY,
    HEADER,
    LABEL_KEY,
    NAME_PATTERN,
    TEXT,
    URL_PATTERN,
    Schema,
    int_list,
    null_is_default,
    nullable,
    num_schema,
    ref,
    requiring,
    str_schema,
    string_map,
)


def http_request(*, partial: bool = False) -> Schema:
    schema: Schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": str_schema(8192, pattern=URL_PATTERN,
                           description="absolute http:// or https:// URL"),
            "method": {"type": "string", "enum": [*HTTP_METHODS], "default": "GET",
                       "description": "case-insensitive on input"},
            "headers": string_map(key_pattern=HEADER, max_items=64, partial=partial),
            "body": nullable(str_schema(1 << 20, non_empty=False)),
            "expect_status": nullable(int_list(100, 599)),
            "follow_redirects": {"type": "boolean", "default": True},
        },
    }
    return requiring(schema, [] if partial else ["url"])  # a merge patch requires nothing


def retry_policy(*, partial: bool = False) -> Schema:
    schema: Schema = {
        "type": "object",
        "additionalProperties": False,
        "description": "max_delay must be at least delay",
        "properties": {
            "attempts": {"type": "integer", "minimum": 1, "maximum": 100,
                         "description": "total attempts; 1 = no retry"},
            "delay": num_schema(0, 86400, default=1.0),
            "multiplier": num_schema(1, 100, default=2.0),
            "max_delay": num_schema(0, 86400, default=300.0),
            "jitter": num_schema(0, 1, default=0.1),
            "on_exit_codes": nullable(int_list(1, 255)),
            "on_http_statuses": nullable(int_list(100, 599)),
            "any_worker": {"type": "boolean", "default": False},
        },
    }
    return requiring(schema, [] if partial else ["attempts"])


def _job_properties(*, partial: bool) -> dict[str, Schema]:
    return {
        "name": str_schema(128, pattern=NAME_PATTERN),
        "schedule": str_schema(256, pattern=CRON_PATTERN, description=(
            "cron expression: 5 fields, or 6 with seconds first, or an @hourly-style "
            "shortcut")),
        "command": nullable(str_schema(65536, description="shell command (shell jobs)")),
        "http": nullable(ref("HttpRequestPatch") if partial else ref("HttpRequest")),
        "timezone": str_schema(64, default="UTC", description="IANA timezone name"),
        "enabled": {"type": "boolean", "default": True},
        "description": str_schema(1024, non_empty=False, default=""),
        "shell": nullable(str_schema(1024)),
        "cwd": nullable(str_schema(4096, pattern=r"^/[^\x00]*$",
                                description="absolute path")),
        "env": string_map(key_pattern=ENV_KEY, max_items=256, partial=partial),
        "user": nullable(str_schema(64)),
        "timeout": nullable(num_schema(0, MAX_TIMEOUT_S, exclusive_lo=True)),
        "kill_grace": num_schema(0, 3600, default=5.0),
        "overlap": {"type": "string", "enum": [*OVERLAP_POLICIES], "default": "forbid"},
        "misfire": {"type": "string", "enum": [*MISFIRE_POLICIES], "default": "run_latest"},
        "misfire_window": num_schema(0, MAX_TIMEOUT_S, default=60.0),
        "retry": nullable(ref("RetryPolicyPatch") if partial else ref("RetryPolicy")),
        "priority": {"type": "integer", "minimum": -1000, "maximum": 1000, "default": 0},
        "targets": string_map(key_pattern=LABEL_KEY, max_items=32, max_value_len=256,
                               partial=partial),
        "retention_days": nullable({"type": "integer", "minimum": 1, "maximum": 3650}),
        "expect_success_within": nullable(num_schema(1, 366 * 86400)),
        "alerts": nullable(ref("AlertRule")),
        "secrets": nullable(ref("JobSecrets")),
    }


def job_secrets() -> Schema:
    """Write-only secret values (never in a response); see ``SecretInput``."""
    value = nullable({"type": "string", "minLength": 1, "maxLength": MAX_SECRET_LEN,
                      "pattern": TEXT})
    return {
        "type": "object",
        "additionalProperties": False,
        "description": ("write-only: a named secret is set, null clears it, one not named "
                        "keeps its value; null for the whole object clears them all. "
                        "Responses show only secrets_set. Needs CRONSWARM_JOB_SECRET_KEYS "
                        "on the master"),
        "properties": {
            "env": {"type": "object", "propertyNames": {"pattern": ENV_KEY},
                    "additionalProperties": value, "description": "shell jobs"},
            "headers": {"type": "object", "propertyNames": {"pattern": HEADER},
                        "additionalProperties": value, "description": "HTTP jobs"},
            "basic_auth": nullable({
                "type": "object", "additionalProperties": False,
                "required": ["username", "password"], "description": "HTTP jobs",
                "properties": {
                    "username": {"type": "string", "minLength": 1, "maxLength": 256,
                                 "pattern": r"^[^:\x00]*$"},
                    "password": {"type": "string", "minLength": 1,
                                 "maxLength": MAX_SECRET_LEN, "pattern": TEXT},
                },
            }),
        },
    }


_SHELL_ONLY = ("shell", "cwd", "user")


def job_input(*, name_required: bool) -> Schema:
    """A job as created (POST) or replaced (PUT, where the name comes from the URL)."""
    shell_job: Schema = {"required": ["command"],
                         "properties": {"command": {"type": "string"},
                                        "http": {"type": "null"}}}
    http_job: Schema = {"required": ["http"],
                        "properties": {"http": {"type": "object"},
                                       "command": {"type": "null"},
                                       **{k: {"type": "null"} for k in _SHELL_ONLY}}}
    required = ["name", "schedule"] if name_required else ["schedule"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": null_is_default(_job_properties(partial=False), required),
        "oneOf": [shell_job, http_job],
        "description": "exactly one of command (shell job) or http (HTTP job)",
    }


def job_patch() -> Schema:
    """A JSON merge patch (RFC 7386): null removes a field; objects merge."""
    props = _job_properties(partial=True)
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {k: v if "anyOf" in v else nullable(v) for k, v in props.items()},
        "description": "the result is validated as a whole job; the name cannot change",
    }


def job_output() -> Schema:
    props = _job_properties(partial=False)
    del props["secrets"]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "schedule", "timezone", "enabled", "description", "timeout",
                     "kill_grace", "overlap", "misfire", "misfire_window", "retry",
                     "priority", "targets", "secrets_set", "revision", "next_fire"],
        "properties": {
            **props,
            "secrets_set": {"type": "array", "items": {"type": "string"}, "description": (
                "which secrets the job holds (env.NAME, headers.Name, basic_auth), never "
                "their values")},
            "retry": ref("RetryPolicy"),
            "http": ref("HttpRequest"),
            "revision": {"type": "integer", "description": "etcd mod_revision (the ETag)"},
            "next_fire": nullable({"type": "integer", "description": "epoch ms"}),
        },
    }


def job_view() -> Schema:
    out = job_output()
    out["required"] = [*out["required"], "last_run", "running"]
    out["properties"] = {
        **out["properties"],
        "last_run": nullable(ref("LastRun")),
        "running": {"type": "array", "items": {"type": "string"},
                    "description": "run ids alive now"},
    }
    return out
