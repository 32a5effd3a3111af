"""JSON Schemas (OpenAPI 3.1 components) of the API's documents, built as data.

The job schemas follow ``Job.from_dict``'s rules (required fields, enums,
bounds, patterns) from the same constants; what JSON Schema cannot say (that
a cron expression parses, that a timezone exists) is in the descriptions, and
the server answers 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from ..common import MISFIRE_POLICIES, OVERLAP_POLICIES, RunStatus, Trigger
from ..common._job_parts import HTTP_METHODS, MAX_TIMEOUT_S
from ..common._secrets import MAX_SECRET_LEN
from ._auth import MAX_EXPIRES_IN_S, TOKEN_NAME_RE, Role

Schema = dict[str, Any]

# A job name: a slug of 1-128 characters, not "." and without "..".
NAME_PATTERN = r"^(?!\.$)(?!.*\.\.)[A-Za-z0-9_.-]{1,128}$"
_TEXT = r"^[^\x00]*$"  # no NUL
_NON_BLANK = r"^[^\x00]*[^\x00\s][^\x00]*$"  # no NUL, not only white space
_ENV_KEY = r"^(?![Cc][Rr][Oo][Nn][Ss][Ww][Aa][Rr][Mm]_)[A-Za-z_][A-Za-z0-9_]{0,127}$"
_LABEL_KEY = r"^[A-Za-z0-9_.\-/]{1,63}$"
_HEADER = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$"
# JSON Schema patterns search (ECMA): anchored here; the server fullmatches.
TOKEN_NAME_PATTERN = f"^{TOKEN_NAME_RE.pattern}$"
# 5 or 6 fields, or a shortcut; whether each field parses, JSON Schema cannot say.
CRON_PATTERN = r"^\s*(@[A-Za-z]+|[^\s\x00]+(\s+[^\s\x00]+){4,5})\s*$"
# What common.check_http_url accepts, as far as a pattern can say (not the port range).
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\x00-\x1f\x7f]+$"
RECORD_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}@[0-9]{1,16}(#[0-9]{1,4})?$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _string(max_len: int, *, non_empty: bool = True, pattern: str | None = None,
            **extra: Any) -> Schema:
    out: Schema = {"type": "string", "maxLength": max_len,
                   "pattern": pattern or (_NON_BLANK if non_empty else _TEXT)}
    if non_empty:
        out["minLength"] = 1
    out.update(extra)
    return out


def _number(lo: float, hi: float, *, exclusive_lo: bool = False, **extra: Any) -> Schema:
    out: Schema = {"type": "number", "maximum": hi}
    out["exclusiveMinimum" if exclusive_lo else "minimum"] = lo
    out.update(extra)
    return out


def _int_list(lo: int, hi: int) -> Schema:
    return {"type": "array", "minItems": 1, "maxItems": 64,
            "items": {"type": "integer", "minimum": lo, "maximum": hi}}


def _string_map(*, key_pattern: str, max_items: int, max_value_len: int = 4096,
                partial: bool = False) -> Schema:
    """An object of strings; in a merge patch (``partial``) null removes an entry."""
    value: Schema = {"type": "string", "maxLength": max_value_len, "pattern": _TEXT}
    return {"type": "object", "maxProperties": max_items,
            "propertyNames": {"pattern": key_pattern},
            "additionalProperties": nullable(value) if partial else value}


def null_is_default(props: dict[str, Schema], required: list[str]) -> dict[str, Schema]:
    """Optional fields also take null: the server reads it as not given. (Not
    the name: on a replace it must be the one in the URL, if given.)"""
    keep = {*required, "name"}
    return {k: v if k in keep or "anyOf" in v else nullable(v) for k, v in props.items()}


def _requiring(schema: Schema, required: list[str]) -> Schema:
    """``schema`` with ``required`` fields; the others also take null."""
    schema["properties"] = null_is_default(schema["properties"], required)
    if required:
        schema["required"] = required
    return schema


def http_request(*, partial: bool = False) -> Schema:
    schema: Schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": _string(8192, pattern=URL_PATTERN,
                           description="absolute http:// or https:// URL"),
            "method": {"type": "string", "enum": [*HTTP_METHODS], "default": "GET",
                       "description": "case-insensitive on input"},
            "headers": _string_map(key_pattern=_HEADER, max_items=64, partial=partial),
            "body": nullable(_string(1 << 20, non_empty=False)),
            "expect_status": nullable(_int_list(100, 599)),
            "follow_redirects": {"type": "boolean", "default": True},
        },
    }
    return _requiring(schema, [] if partial else ["url"])  # a merge patch requires nothing


def retry_policy(*, partial: bool = False) -> Schema:
    schema: Schema = {
        "type": "object",
        "additionalProperties": False,
        "description": "max_delay must be at least delay",
        "properties": {
            "attempts": {"type": "integer", "minimum": 1, "maximum": 100,
                         "description": "total attempts; 1 = no retry"},
            "delay": _number(0, 86400, default=1.0),
            "multiplier": _number(1, 100, default=2.0),
            "max_delay": _number(0, 86400, default=300.0),
            "jitter": _number(0, 1, default=0.1),
            "on_exit_codes": nullable(_int_list(1, 255)),
            "on_http_statuses": nullable(_int_list(100, 599)),
            "any_worker": {"type": "boolean", "default": False},
        },
    }
    return _requiring(schema, [] if partial else ["attempts"])


def _job_properties(*, partial: bool) -> dict[str, Schema]:
    return {
        "name": _string(128, pattern=NAME_PATTERN),
        "schedule": _string(256, pattern=CRON_PATTERN, description=(
            "cron expression: 5 fields, or 6 with seconds first, or an @hourly-style "
            "shortcut")),
        "command": nullable(_string(65536, description="shell command (shell jobs)")),
        "http": nullable(ref("HttpRequestPatch") if partial else ref("HttpRequest")),
        "timezone": _string(64, default="UTC", description="IANA timezone name"),
        "enabled": {"type": "boolean", "default": True},
        "description": _string(1024, non_empty=False, default=""),
        "shell": nullable(_string(1024)),
        "cwd": nullable(_string(4096, pattern=r"^/[^\x00]*$",
                                description="absolute path")),
        "env": _string_map(key_pattern=_ENV_KEY, max_items=256, partial=partial),
        "user": nullable(_string(64)),
        "timeout": nullable(_number(0, MAX_TIMEOUT_S, exclusive_lo=True)),
        "kill_grace": _number(0, 3600, default=5.0),
        "overlap": {"type": "string", "enum": [*OVERLAP_POLICIES], "default": "forbid"},
        "misfire": {"type": "string", "enum": [*MISFIRE_POLICIES], "default": "run_latest"},
        "misfire_window": _number(0, MAX_TIMEOUT_S, default=60.0),
        "retry": nullable(ref("RetryPolicyPatch") if partial else ref("RetryPolicy")),
        "priority": {"type": "integer", "minimum": -1000, "maximum": 1000, "default": 0},
        "targets": _string_map(key_pattern=_LABEL_KEY, max_items=32, max_value_len=256,
                               partial=partial),
        "retention_days": nullable({"type": "integer", "minimum": 1, "maximum": 3650}),
        "expect_success_within": nullable(_number(1, 366 * 86400)),
        "alerts": nullable(ref("AlertRule")),
        "secrets": nullable(ref("JobSecrets")),
    }


def job_secrets() -> Schema:
    """Write-only secret values (never in a response); see ``SecretInput``."""
    value = nullable({"type": "string", "minLength": 1, "maxLength": MAX_SECRET_LEN,
                      "pattern": _TEXT})
    return {
        "type": "object",
        "additionalProperties": False,
        "description": ("write-only: a named secret is set, null clears it, one not named "
                        "keeps its value; null for the whole object clears them all. "
                        "Responses show only secrets_set. Needs CRONSWARM_JOB_SECRET_KEYS "
                        "on the master"),
        "properties": {
            "env": {"type": "object", "propertyNames": {"pattern": _ENV_KEY},
                    "additionalProperties": value, "description": "shell jobs"},
            "headers": {"type": "object", "propertyNames": {"pattern": _HEADER},
                        "additionalProperties": value, "description": "HTTP jobs"},
            "basic_auth": nullable({
                "type": "object", "additionalProperties": False,
                "required": ["username", "password"], "description": "HTTP jobs",
                "properties": {
                    "username": {"type": "string", "minLength": 1, "maxLength": 256,
                                 "pattern": r"^[^:\x00]*$"},
                    "password": {"type": "string", "minLength": 1,
                                 "maxLength": MAX_SECRET_LEN, "pattern": _TEXT},
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


def _job_output() -> Schema:
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


def _job_view() -> Schema:
    out = _job_output()
    out["required"] = [*out["required"], "last_run", "running"]
    out["properties"] = {
        **out["properties"],
        "last_run": nullable(ref("LastRun")),
        "running": {"type": "array", "items": {"type": "string"},
                    "description": "run ids alive now"},
    }
    return out


_MS = {"type": "integer", "description": "epoch milliseconds"}
_MS_OR_NULL = nullable(_MS)

_RUN_STATUSES = [s.value for s in RunStatus]


def _last_run() -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["run_id", "record_id", "attempt", "status", "tick", "started", "ended",
                     "worker"],
        "properties": {
            "run_id": {"type": "string"}, "record_id": {"type": "string"},
            "attempt": {"type": "integer"}, "status": {"type": "string", "enum": _RUN_STATUSES},
            "tick": _MS, "started": _MS_OR_NULL, "ended": _MS_OR_NULL,
            "worker": {"type": "string"},
        },
    }


def _run() -> Schema:
    string = {"type": "string"}
    int_or_null = nullable({"type": "integer"})
    num_or_null = nullable({"type": "number"})
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["run_id", "job", "tick", "attempt", "worker", "summary", "status",
                     "trigger", "started", "ended", "exit_code", "http_status", "error",
                     "output", "output_tail", "output_bytes", "truncated", "killed_by",
                     "retention_days", "extra", "duration", "lag"],
        "properties": {
            "run_id": string, "job": string, "tick": _MS, "attempt": {"type": "integer"},
            "worker": string, "summary": string,
            "status": {"type": "string", "enum": _RUN_STATUSES},
            "trigger": {"type": "string", "enum": [t.value for t in Trigger]},
            "started": _MS_OR_NULL, "ended": _MS_OR_NULL, "exit_code": int_or_null,
            "http_status": int_or_null, "error": nullable(string),
            "output": {"type": "string", "description": "head of the output"},
            "output_tail": {"type": "string", "description": "tail, when truncated"},
            "output_bytes": {"type": "integer"}, "truncated": {"type": "boolean"},
            "killed_by": nullable(string), "retention_days": int_or_null,
            "extra": {"type": "object"},
            "duration": num_or_null, "lag": num_or_null,
        },
    }


def _worker() -> Schema:
    return {
        "type": "object",
        "required": ["id", "health", "running_runs"],
        "properties": {
            "id": {"type": "string"},
            "host": {"type": "string"},
            "pid": {"type": "integer"},
            "version": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "started": _MS, "updated": _MS,
            "cpu_percent": {"type": "number"}, "host_cpu_percent": {"type": "number"},
            "cpu_count": {"type": "integer"}, "rss_bytes": {"type": "integer"},
            "host_memory_percent": {"type": "number"},
            "load": {"type": "array", "items": {"type": "number"}},
            "running": {"type": "integer"}, "max_runs": {"type": "integer"},
            "health": {"type": "string",
                       "enum": ["ok", "saturated", "stale", "clock_offset", "unsynced"],
                       "description": "stale: no fresh stats; saturated: all run slots busy; "
                                      "clock_offset: its clock is beyond the maximum offset "
                                      "from the cluster's, it claims nothing; unsynced: its "
                                      "offset is not measured yet"},
            "clock": {"type": ["object", "null"], "properties": {
                "state": {"type": "string", "enum": ["ok", "unsynced", "out_of_bounds"]},
                "offset_ms": {"type": "number",
                              "description": "its clock minus the cluster's (median of peers)"},
                "uncertainty_ms": {"type": "number"}, "peers": {"type": "integer"},
                "max_offset_ms": {"type": "number"}, "since": _MS}},
            "running_runs": {"type": "array", "items": {"type": "string"}},
        },
    }


def _token() -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "name", "role", "created", "created_by", "expires"],
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "role": {"type": "string", "enum": [r.label for r in Role]},
            "created": _MS, "created_by": {"type": "string"},
            "expires": {**_MS_OR_NULL,
                        "description": "when the token stops working (null: never)"},
        },
    }


def _token_created() -> Schema:
    out = _token()
    out["required"] = [*out["required"], "token"]
    out["properties"] = {**out["properties"], "token": {
        "type": "string", "description": "the secret token, shown only this once"}}
    return out


def _audit_entry() -> Schema:
    obj_or_null = nullable({"type": "object"})
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["at", "actor", "action", "target", "before", "after", "details"],
        "properties": {
            "at": _MS, "actor": {"type": "string"}, "action": {"type": "string"},
            "target": {"type": "string"}, "before": obj_or_null, "after": obj_or_null,
            "details": {"type": "object"},
        },
    }


def _error() -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "machine-readable, e.g. invalid"},
                "message": {"type": "string"},
                "fields": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["field", "reason"],
                    "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
                }},
                # too_many_streams (429 of a live output stream): which limit, where
                "limit": {"type": "string", "enum": ["per_viewer", "total"]},
                "max": {"type": "integer", "minimum": 1},
                "server": {"type": "string", "enum": ["master", "worker"]},
            },
        }},
    }


def _list_of(key: str, item: Schema, *, cursor: bool = False, **extra: Schema) -> Schema:
    props: dict[str, Schema] = {key: {"type": "array", "items": item}, **extra}
    if cursor:
        props["next_cursor"] = nullable({"type": "string"})
    return {"type": "object", "additionalProperties": False, "required": list(props),
            "properties": props}


def components() -> dict[str, Schema]:
    return {
        "Error": _error(),
        "HttpRequest": http_request(),
        "HttpRequestPatch": http_request(partial=True),
        "JobSecrets": job_secrets(),
        "RetryPolicy": retry_policy(),
        "RetryPolicyPatch": retry_policy(partial=True),
        "JobCreate": job_input(name_required=True),
        "JobReplace": job_input(name_required=False),
        "JobPatch": job_patch(),
        "Job": _job_output(),
        "JobView": _job_view(),
        "JobList": _list_of("jobs", ref("JobView"), cursor=True,
                            total={"type": "integer",
                                   "description": "jobs matching the filters"}),
        "LastRun": _last_run(),
        "Run": _run(),
        "RunList": _list_of("runs", ref("Run"), cursor=True, searched_to=nullable({
            "type": "integer", "description":
            "A text search (q) stops reading when its time budget is spent: then runs "
            "older than this tick (epoch ms) were not searched yet, and next_cursor "
            "goes on from there. null: the page is complete."})),
        "RunRequested": {"type": "object", "additionalProperties": False,
                         "required": ["run_id"], "properties": {"run_id": {"type": "string"}}},
        "KillRequest": {"type": "object", "additionalProperties": False, "properties": {
            "run_id": nullable({"type": "string",
                                "description": "one run; absent or null: all live runs"})}},
        "KillRequested": _list_of("requested", {"type": "string"}),
        "Worker": _worker(),
        "WorkerList": _list_of("workers", ref("Worker")),
        "Preview": {"type": "object", "additionalProperties": False,
                    "required": ["expr", "tz", "next"],
                    "properties": {"expr": {"type": "string"}, "tz": {"type": "string"},
                                   "next": {"type": "array", "items": {
                                       "type": "string", "format": "date-time"}}}},
        "Me": {"type": "object", "additionalProperties": False,
               "required": ["id", "name", "role"],
               "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                              "role": {"type": "string", "enum": [r.label for r in Role]}}},
        "Token": _token(),
        "TokenCreated": _token_created(),
        "TokenList": _list_of("tokens", ref("Token")),
        "TokenCreate": {"type": "object", "additionalProperties": False,
                        "required": ["name", "role"],
                        "properties": {
                            "name": {"type": "string", "pattern": TOKEN_NAME_PATTERN},
                            "role": {"type": "string", "enum": [r.label for r in Role]},
                            "expires_in": {
                                **nullable({"type": "integer", "minimum": 1,
                                            "maximum": MAX_EXPIRES_IN_S}),
                                "description": "seconds the token is valid "
                                               "(absent or null: until revoked)"}}},
        "AuditEntry": _audit_entry(),
        "AuditList": _list_of("entries", ref("AuditEntry")),
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string", "enum": ["ok"]}}},
        "Ready": {"type": "object", "additionalProperties": False,
                  "required": ["status", "checks"],
                  "properties": {
                      "status": {"type": "string", "enum": ["ok", "unavailable"]},
                      "checks": {"type": "object",
                                 "additionalProperties": {
                                     "type": "string", "enum": ["ok", "unavailable"]}}}},
    }
