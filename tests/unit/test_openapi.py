"""The OpenAPI document: it names exactly the app's routes, and its job schemas
agree with ``Job.from_dict`` on what is a valid job."""

import copy
from typing import Any

import jsonschema_rs
import pytest

from cronswarm.common import Job, Settings, TooManyStreams, ValidationError
from cronswarm.master import create_app
from cronswarm.master._openapi import document

METHODS = {"get", "put", "post", "patch", "delete"}


def app_routes() -> set[tuple[str, str]]:
    settings = Settings.load({}, etcd_endpoints=("127.0.0.1:1",), mongodb_uri="mongodb://x")
    out = set()
    for route in create_app(settings).router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        method = route.method.lower()
        if path and method in METHODS and (path.startswith("/api/") or path in (
                "/healthz", "/readyz", "/metrics")):
            out.add((method, path))
    return out


def test_document_names_exactly_the_api_routes() -> None:
    documented = {(method, path) for path, item in document()["paths"].items()
                  for method in item if method in METHODS}
    assert documented == app_routes()


def test_every_operation_documents_its_auth_errors() -> None:
    for path, item in document()["paths"].items():
        for method, op in item.items():
            if method not in METHODS or op.get("security") == []:
                continue
            assert "401" in op["responses"], (method, path)


def validator(name: str) -> Any:
    root = copy.deepcopy(document())
    root["$ref"] = f"#/components/schemas/{name}"
    return jsonschema_rs.validator_for(root)


SHELL = {"name": "a", "schedule": "* * * * *", "command": "true"}
HTTP = {"name": "h", "schedule": "* * * * *", "http": {"url": "https://example.com/x"}}


@pytest.mark.parametrize(("body", "valid"), [
    (SHELL, True),
    (HTTP, True),
    ({**SHELL, "http": None, "timeout": 30, "retry": {"attempts": 3}}, True),
    ({**HTTP, "command": None, "shell": None}, True),
    ({**SHELL, "targets": {"zone": "eu"}, "env": {"A": "1"}, "priority": -1000}, True),
    ({"schedule": "* * * * *", "command": "true"}, False),  # no name
    ({"name": "a", "command": "true"}, False),  # no schedule
    ({"name": "a", "schedule": "* * * * *"}, False),  # neither command nor http
    ({"name": "a", "schedule": "* * * * *", "command": None}, False),
    ({**SHELL, "http": {"url": "https://x.org"}}, False),  # both
    ({**HTTP, "cwd": "/tmp"}, False),  # shell-only field on an HTTP job
    ({**SHELL, "name": "../x"}, False),
    ({**SHELL, "name": ".."}, False),
    ({**SHELL, "name": "."}, False),
    ({**SHELL, "name": "x" * 129}, False),
    ({**SHELL, "command": "   "}, False),
    ({**SHELL, "command": "a\x00b"}, False),
    ({**SHELL, "timeout": 0}, False),
    ({**SHELL, "timeout": -1}, False),
    ({**SHELL, "kill_grace": 3601}, False),
    ({**SHELL, "overlap": "sometimes"}, False),
    ({**SHELL, "misfire": "all"}, False),
    ({**SHELL, "priority": 1001}, False),
    ({**SHELL, "priority": True}, False),
    ({**SHELL, "enabled": "yes"}, False),
    ({**SHELL, "retry": {"delay": 1}}, False),  # attempts is required
    ({**SHELL, "retry": {"attempts": 0}}, False),
    ({**SHELL, "retry": {"attempts": 2, "on_exit_codes": []}}, False),
    ({**SHELL, "env": {"CRONSWARM_RUN_ID": "x"}}, False),
    ({**SHELL, "env": {"1BAD": "x"}}, False),
    ({**SHELL, "targets": {"bad key": "x"}}, False),
    ({**SHELL, "cwd": "relative/dir"}, False),
    ({**SHELL, "retention_days": 0}, False),
    ({**SHELL, "surprise": 1}, False),
    ({**HTTP, "http": {"url": "ftp://x.org/"}}, False),
    ({**HTTP, "http": {"url": "https://x.org", "method": "FETCH"}}, False),
    ({**HTTP, "http": {"url": "https://x.org", "expect_status": [99]}}, False),
    ({**HTTP, "http": {"method": "GET"}}, False),
])
def test_job_schema_agrees_with_the_model(body: dict[str, Any], valid: bool) -> None:
    assert validator("JobCreate").is_valid(body) is valid
    try:
        Job.from_dict(body)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is valid


def test_stored_jobs_match_the_output_schema() -> None:
    out = validator("Job")
    for body in (SHELL, HTTP, {**SHELL, "timeout": 5, "env": {"A": "b"}, "cwd": "/srv",
                               "retry": {"attempts": 3, "on_exit_codes": [1]}}):
        doc = {**Job.from_dict(body).to_dict(), "revision": 3, "next_fire": None}
        assert out.is_valid(doc), list(out.iter_errors(doc))


def test_a_refused_live_stream_matches_the_error_schema() -> None:
    refusal = TooManyStreams("per_viewer", 4, "worker", 5)
    assert validator("Error").is_valid({"error": refusal.as_dict()})
    live = document()["paths"]["/api/runs/{record_id}/live"]["get"]["responses"]["429"]
    assert "too_many_streams" in live["description"] and "Retry-After" in live["headers"]
