"""The OpenAPI 3.1 document of the API, built as data and served at ``/api/openapi.json``.

Every route of ``_api``, ``_api_jobs`` and ``_api_tokens`` has its entry here;
a test compares this document with the app's router so the two cannot drift.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from .. import __version__
from ..alerts import DELIVERY_STATUSES
from ._api import RUN_STATUSES
from ._api_jobs import LAST_STATUSES
from ._http import json_response
from ._openapi_alerts import alert_components
from ._openapi_blocks import CRON_PATTERN, NAME_PATTERN, RECORD_ID_PATTERN, Schema, ref
from ._openapi_schemas import components

routes = web.RouteTableDef()

_ERRORS = {
    400: "invalid input; `error.fields` names each bad field and the reason",
    401: "no token, or an unknown, revoked or malformed one",
    403: "the token's role does not allow this",
    404: "no such object",
    409: "conflict: the object exists already, changed meanwhile, or a request is pending",
    412: "If-Match does not match the current revision; nothing was changed",
    413: "request body too large",
    429: "too many failed logins or bad tokens from this address: retry after "
         "`Retry-After` seconds",
    503: "etcd or MongoDB is unavailable",
}
_READ = (400, 401, 403, 503)
_WRITE = (400, 401, 403, 413, 503)


def _param(name: str, where: str, schema: Schema, description: str, *,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": description}


_EMPTY: Schema = {"type": "string", "maxLength": 0}


def _query(name: str, schema: Schema, description: str) -> dict[str, Any]:
    """An optional query parameter; given empty it counts as not given (as a
    form's empty field sends it)."""
    return _param(name, "query", {"anyOf": [schema, _EMPTY]}, description + " (empty: not given)")


_JOB_NAME = {**_param("name", "path", {"type": "string", "pattern": NAME_PATTERN},
                      "job name"), "example": "nightly"}
_IF_MATCH = _param("If-Match", "header",
                   {"type": "string", "pattern": r'^(\*|(W/)?("[0-9]{1,19}"|[0-9]{1,19}))$'},
                   'the ETag of the job as last read (e.g. "42"), or *')
# After a job is created, every operation on it can follow (the stateful phase
# of a fuzzer, or a client generator, learns the name from the response).
_JOB_LINKS = {
    op: {"operationId": op, "parameters": {"name": "$response.body#/name"}}
    for op in ("get_job", "replace_job", "patch_job", "delete_job", "pause_job",
               "resume_job", "run_job_now", "kill_job_runs")
}
_JOB_EXAMPLE = {"name": "backup", "schedule": "0 2 * * *", "command": "echo backup",
                "timezone": "Europe/Paris", "timeout": 3600}
_LIMIT = functools.partial(_query, "limit")
_ETAG_HEADER = {"ETag": {"required": True, "schema": {"type": "string"},
                         "description": "the job's revision, for If-Match"}}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _live_op() -> dict[str, Any]:
    """The live output stream: server-sent events, not JSON."""
    op = _op("Stream run output", "viewer", 200, None, errors=(*_READ, 404), tag="runs",
             ok_description=(
                 "text/event-stream: events {offset, data} with the output so far and as "
                 "it comes, then an `end` event with status, output_bytes and truncated "
                 "(and dropped: bytes this reader fell behind on and missed); a finished "
                 "run is replayed from history"),
             params=[_param("record_id", "path", {"type": "string",
                                                  "pattern": RECORD_ID_PATTERN},
                            "<job>@<tick>#<attempt>, or <job>@<tick> for the newest "
                            "attempt ('#' encoded as %23)")])
    # One parsed event (OpenAPI 3.1 tools read ``schema`` of an event stream per
    # event): its data line is JSON, described by contentSchema.
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "enum": ["message", "end", "error"],
                      "description": "absent (message): output; end: the run ended; "
                                     "error: the stream broke"},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"type": "object", "oneOf": [
                         {"required": ["offset", "data"]},
                         {"required": ["status", "output_bytes", "truncated"]},
                         {"required": ["message"]}]}},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }
    op["responses"]["200"]["content"] = {"text/event-stream": {"schema": event}}
    op["responses"]["429"] = {
        "description": "too many live output streams open (code too_many_streams: `limit`, "
                       "`max` and `server` say which), or too many failed logins or bad "
                       "tokens from this address: retry after `Retry-After` seconds",
        "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
        "content": _json(ref("Error"))}
    return op


def _op(summary: str, role: str | None, ok: int, ok_schema: Schema | None, *,
        errors: tuple[int, ...] = _READ, params: list[dict[str, Any]] | None = None,
        body: Schema | None = None, body_required: bool = True,
        headers: dict[str, Any] | None = None, tag: str = "jobs",
        ok_description: str = "success", links: dict[str, Any] | None = None,
        example: dict[str, Any] | None = None) -> dict[str, Any]:
    ok_response: dict[str, Any] = {"description": ok_description}
    if ok_schema is not None:
        ok_response["content"] = _json(ok_schema)
    if headers:
        ok_response["headers"] = headers
    if links:
        ok_response["links"] = links
    responses: dict[str, Any] = {str(ok): ok_response}
    # Whoever presents a token may be refused for the failures of its address.
    for code in sorted({*errors, 429} if 401 in errors else errors):
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": summary.lower().replace(" ", "_").replace("'", ""),
        "tags": [tag],
        "responses": responses,
    }
    if role is None:
        op["security"] = []
    else:
        op["description"] = f"Needs role `{role}` or higher."
    if params:
        op["parameters"] = params
    if body is not None:
        content = _json(body)
        if example is not None:
            content["application/json"]["example"] = example
        op["requestBody"] = {"required": body_required, "content": content}
    return op


def _paths() -> dict[str, Any]:
    job_filters = [
        _query("name", {"type": "string", "maxLength": 128}, "substring of the name"),
        _query("enabled", {"type": "boolean"}, "only enabled (true) or paused (false) jobs"),
        _query("status", {"type": "string", "enum": list(LAST_STATUSES)},
               "status of the last run (never: no run yet)"),
        _query("target", {"type": "string", "pattern": "^[^=]+=.*$", "maxLength": 320},
               "a worker label the job targets, key=value"),
        _LIMIT({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
               "page size"),
        _query("cursor", {"type": "string", "pattern": NAME_PATTERN},
               "next_cursor of the previous page"),
    ]
    run_filters = [
        _query("job", {"type": "string", "pattern": NAME_PATTERN}, "job name"),
        _query("status", {"type": "string", "enum": list(RUN_STATUSES)}, "run status"),
        _query("worker", {"type": "string", "pattern": NAME_PATTERN}, "worker id"),
        _query("since", {"type": "string", "maxLength": 64},
               "tick >= since: epoch ms or ISO 8601 with offset"),
        _query("until", {"type": "string", "maxLength": 64},
               "tick < until: epoch ms or ISO 8601 with offset"),
        _query("q", {"type": "string", "maxLength": 200},
               "case-insensitive substring of the output or error"),
        _LIMIT({"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
               "page size"),
        _query("cursor", {"type": "string", "maxLength": 512},
               "next_cursor of the previous page"),
    ]
    edit = (*_WRITE, 404, 409, 412)
    return {
        "/healthz": {"get": _op("Liveness", None, 200, ref("Health"), errors=(),
                                tag="health")},
        "/readyz": {"get": {
            **_op("Readiness", None, 200, ref("Ready"), errors=(), tag="health"),
            "responses": {
                "200": {"description": "etcd and MongoDB answer",
                        "content": _json(ref("Ready"))},
                "503": {"description": "etcd or MongoDB does not answer",
                        "content": _json(ref("Ready"))},
            },
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "operationId": "prometheus_metrics",
            "tags": ["meta"],
            "security": [],
            "description": "This master's metrics in the Prometheus text format (counts "
                           "only: no job names, no secrets). Open by default; when the "
                           "master has CRONSWARM_METRICS_TOKEN, send "
                           "`Authorization: Bearer <that token>` (not an API token).",
            "responses": {"200": {"description": "the metrics",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "401": {"$ref": "#/components/responses/E401"},
                          "429": {"$ref": "#/components/responses/E429"}},
        }},
        "/api/openapi.json": {"get": _op("OpenAPI document", None, 200, {"type": "object"},
                                         errors=(), tag="meta")},
        "/api/me": {"get": _op("Who am I", "viewer", 200, ref("Me"), errors=(401, 503),
                               tag="meta")},
        "/api/jobs": {
            "get": _op("List jobs", "viewer", 200, ref("JobList"), params=job_filters),
            "post": _op("Create job", "admin", 201, ref("Job"), body=ref("JobCreate"),
                        errors=(*_WRITE, 409), links=_JOB_LINKS, example=_JOB_EXAMPLE,
                        headers={
                            **_ETAG_HEADER,
                            "Location": {"required": True, "schema": {"type": "string"}}}),
        },
        "/api/jobs/{name}": {
            "parameters": [_JOB_NAME],
            "get": _op("Get job", "viewer", 200, ref("JobView"), errors=(*_READ, 404),
                       headers=_ETAG_HEADER),
            "put": _op("Replace job", "admin", 200, ref("Job"), body=ref("JobReplace"),
                       params=[_IF_MATCH], errors=edit, headers=_ETAG_HEADER),
            "patch": {
                **_op("Patch job", "admin", 200, ref("Job"), params=[_IF_MATCH],
                      errors=edit, headers=_ETAG_HEADER),
                "description": "A JSON merge patch. Role `operator` may change `enabled` "
                               "alone (pause/resume); any other change needs `admin`.",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref("JobPatch")},
                    "application/merge-patch+json": {"schema": ref("JobPatch")}}},
            },
            "delete": _op("Delete job", "admin", 204, None, params=[_IF_MATCH],
                          errors=edit, ok_description="deleted"),
        },
        "/api/jobs/{name}/pause": {
            "parameters": [_JOB_NAME],
            "post": _op("Pause job", "operator", 200, ref("Job"), params=[_IF_MATCH],
                        errors=(*_READ, 404, 409, 412), headers=_ETAG_HEADER),
        },
        "/api/jobs/{name}/resume": {
            "parameters": [_JOB_NAME],
            "post": _op("Resume job", "operator", 200, ref("Job"), params=[_IF_MATCH],
                        errors=(*_READ, 404, 409, 412), headers=_ETAG_HEADER),
        },
        "/api/jobs/{name}/run": {
            "parameters": [_JOB_NAME],
            "post": _op("Run job now", "operator", 202, ref("RunRequested"),
                        errors=(*_READ, 404, 409),
                        ok_description="one matching worker will run it once"),
        },
        "/api/jobs/{name}/kill": {
            "parameters": [_JOB_NAME],
            "post": _op("Kill job runs", "operator", 202, ref("KillRequested"),
                        body=ref("KillRequest"), body_required=False,
                        errors=(*_WRITE, 404),
                        ok_description="the workers running these runs will stop them"),
        },
        "/api/runs": {"get": _op("List runs", "viewer", 200, ref("RunList"),
                                 params=run_filters, tag="runs")},
        "/api/runs/{record_id}": {"get": _op(
            "Get run", "viewer", 200, ref("Run"), errors=(*_READ, 404), tag="runs",
            params=[_param("record_id", "path", {"type": "string",
                                                 "pattern": RECORD_ID_PATTERN},
                           "<job>@<tick>#<attempt>, or <job>@<tick> for the latest "
                           "attempt ('#' encoded as %23)")])},
        "/api/runs/{record_id}/live": {"get": _live_op()},
        "/api/workers": {"get": _op("List workers", "viewer", 200, ref("WorkerList"),
                                    tag="workers")},
        "/api/preview": {"get": _op("Preview cron expression", "viewer", 200, ref("Preview"),
                                    tag="meta", params=[
            _param("expr", "query", {"type": "string", "maxLength": 256,
                                     "pattern": CRON_PATTERN},
                   "cron expression", required=True),
            _query("tz", {"type": "string", "maxLength": 64, "default": "UTC"},
                   "IANA timezone"),
            _query("n", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                   "how many fire times"),
        ])},
        "/api/tokens": {
            "get": _op("List tokens", "admin", 200, ref("TokenList"), tag="tokens"),
            "post": _op("Create token", "admin", 201, ref("TokenCreated"),
                        body=ref("TokenCreate"), errors=_WRITE, tag="tokens"),
        },
        "/api/tokens/{token_id}": {"delete": _op(
            "Revoke token", "admin", 204, None, errors=(*_READ, 404), tag="tokens",
            ok_description="revoked",
            params=[_param("token_id", "path", {"type": "string", "pattern": NAME_PATTERN},
                           "token id")])},
        **_alert_paths(),
        "/api/audit": {"get": _op("List audit entries", "admin", 200, ref("AuditList"),
                                  tag="audit", params=[
            _query("target", {"type": "string", "maxLength": 256},
                   "object, e.g. a job name or token:<id>"),
            _LIMIT({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                   "how many, newest first"),
        ])},
    }


_CHANNEL_NAME = _param("name", "path", {"type": "string", "pattern": NAME_PATTERN},
                       "channel name")


def _alert_paths() -> dict[str, Any]:
    location = {"Location": {"required": True, "schema": {"type": "string"}}}
    return {
        "/api/alerts/channels": {
            "get": _op("List alert channels", "admin", 200, ref("ChannelList"),
                       tag="alerts"),
            "post": _op("Create alert channel", "admin", 201, ref("Channel"),
                        body=ref("ChannelCreate"), errors=(*_WRITE, 409), tag="alerts",
                        headers=location, example={
                            "name": "ops-mail", "type": "email", "host": "smtp.example.com",
                            "sender": "cron@example.com", "recipients": ["ops@example.com"],
                            "default": True}),
        },
        "/api/alerts/channels/{name}": {
            "parameters": [_CHANNEL_NAME],
            "get": _op("Get alert channel", "admin", 200, ref("Channel"),
                       errors=(*_READ, 404), tag="alerts"),
            "put": _op("Replace alert channel", "admin", 200, ref("Channel"),
                       body=ref("ChannelReplace"), errors=(*_WRITE, 404, 409), tag="alerts"),
            "delete": _op("Delete alert channel", "admin", 204, None,
                          errors=(*_READ, 404, 409), tag="alerts", ok_description="deleted"),
        },
        "/api/alerts": {"get": _op("List alert deliveries", "viewer", 200, ref("DeliveryList"),
                                   tag="alerts", params=[
            _query("job", {"type": "string", "pattern": NAME_PATTERN}, "job name"),
            _query("status", {"type": "string", "enum": list(DELIVERY_STATUSES)},
                   "delivery status"),
            _LIMIT({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                   "how many, newest first"),
        ])},
        "/api/leader": {"get": _op("Get leader", "viewer", 200, ref("Leader"), tag="cluster",
                                   params=[_LIMIT({"type": "integer", "minimum": 1,
                                                   "maximum": 100, "default": 20},
                                                  "how many recent terms")])},
    }


@functools.cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (built once per process)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cronswarm",
            "version": __version__,
            "description": (
                "The HTTP API of cronswarm masters. Authenticate with "
                "`Authorization: Bearer <token>`; roles are viewer < operator < admin. "
                "Every error has the shape {\"error\": {code, message, fields?}}. "
                "Times are epoch milliseconds unless said otherwise."),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "cs_<id>_<secret>"}},
            "schemas": {**components(), **alert_components()},
            "responses": {
                f"E{code}": {"description": text, "content": _json(ref("Error")),
                             **({"headers": {"Retry-After": {
                                 "description": "seconds", "schema": {"type": "integer"}}}}
                                if code == 429 else {})}
                for code, text in _ERRORS.items()
            },
        },
    }


@routes.get("/api/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return json_response(document())
