"""JSON Schemas (OpenAPI 3.1 components) of the API's documents, built as data:
the components, and those of runs, workers, tokens, audit entries and errors
(jobs: _openapi_jobs.py; alerts: _openapi_alerts.py; building blocks:
_openapi_blocks.py)."""

from __future__ import annotations

from ..common import RunStatus, Trigger
from ._auth import MAX_EXPIRES_IN_S, Role
from ._openapi_blocks import MS, TOKEN_NAME_PATTERN, Schema, nullable, ref
from ._openapi_jobs import (
    http_request,
    job_input,
    job_output,
    job_patch,
    job_secrets,
    job_view,
    retry_policy,
)

_MS_OR_NULL = nullable(MS)

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
            "tick": MS, "started": _MS_OR_NULL, "ended": _MS_OR_NULL,
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
            "run_id": string, "job": string, "tick": MS, "attempt": {"type": "integer"},
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
            "started": MS, "updated": MS,
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
                "max_offset_ms": {"type": "number"}, "since": MS}},
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
            "created": MS, "created_by": {"type": "string"},
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
            "at": MS, "actor": {"type": "string"}, "action": {"type": "string"},
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
        "Job": job_output(),
        "JobView": job_view(),
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
