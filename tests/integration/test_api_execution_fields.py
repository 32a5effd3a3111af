"""Bad execution settings are rejected by the API with a JSON error naming the field."""

from collections.abc import AsyncIterator

import pytest

from cronswarm.common import Settings
from cronswarm.logstore import MongoLogStore
from tests.apiclient import Api, running_master

SHELL = {"name": "exec", "schedule": "* * * * *", "command": "true"}
HTTP = {"name": "exec", "schedule": "* * * * *", "http": {"url": "http://127.0.0.1:9/"}}


@pytest.fixture
async def api(settings: Settings, admin_token: str, logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(settings, admin_token) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({**SHELL, "timeout": -1}, "timeout", "greater than 0"),
        ({**SHELL, "timeout": 0}, "timeout", "greater than 0"),
        ({**SHELL, "timeout": 8 * 86400}, "timeout", "at most"),
        ({**SHELL, "kill_grace": -0.5}, "kill_grace", "at least 0"),
        ({**SHELL, "misfire_window": -1}, "misfire_window", "at least 0"),
        ({**SHELL, "priority": 1.5}, "priority", "integer"),
        ({**SHELL, "user": "-rf"}, "user", "user name"),
        ({**SHELL, "shell": ""}, "shell", "must not be empty"),
        ({**SHELL, "retry": {"delay": 1}}, "retry.attempts", "is required"),
        ({**SHELL, "retry": {"attempts": 0}}, "retry.attempts", "at least 1"),
        ({**SHELL, "retry": {"attempts": 1, "on_exit_codes": [2]}}, "retry.attempts",
         "at least 2"),
        ({**SHELL, "retry": {"attempts": 1, "any_worker": True}}, "retry.attempts", "at least 2"),
        ({**SHELL, "retry": {"attempts": 3, "delay": -1}}, "retry.delay", "at least 0"),
        ({**SHELL, "retry": {"attempts": 3, "multiplier": 0.5}}, "retry.multiplier",
         "at least 1"),
        ({**SHELL, "retry": {"attempts": 3, "jitter": 2}}, "retry.jitter", "at most 1"),
        ({**SHELL, "retry": {"attempts": 3, "delay": 10, "max_delay": 5}}, "retry.max_delay",
         "at least delay"),
        ({**SHELL, "retry": {"attempts": 3, "on_exit_codes": [0]}}, "retry.on_exit_codes",
         "from 1 to 255"),
        ({**SHELL, "retry": {"attempts": 3, "on_http_statuses": [503]}},
         "retry.on_http_statuses", "HTTP jobs"),
        ({**SHELL, "retry": {"attempts": 3, "any_worker": "yes"}}, "retry.any_worker",
         "true or false"),
        ({**HTTP, "http": {"url": "http://x/", "method": "FETCH"}}, "http.method",
         "must be one of"),
        ({**HTTP, "http": {"url": "ftp://x/"}}, "http.url", "http:// or https://"),
        ({**HTTP, "http": {"method": "GET"}}, "http.url", "is required"),
        ({**HTTP, "http": {"url": "http://x/", "expect_status": [99]}}, "http.expect_status",
         "from 100 to 599"),
        ({**HTTP, "http": {"url": "http://x/", "headers": {"X-A": "a\r\nInjected: 1"}}},
         "http.headers.X-A", "line breaks"),
        ({**HTTP, "http": {"url": "http://x/", "headers": {"bad header": "v"}}},
         "http.headers.bad header", "not a valid HTTP header name"),
        ({**HTTP, "http": {"url": "http://x/", "follow_redirects": "no"}},
         "http.follow_redirects", "true or false"),
        ({**HTTP, "user": "nobody"}, "user", "shell jobs only"),
        ({**HTTP, "env": {"A": "b"}}, "env", "shell jobs only"),
        ({**HTTP, "retry": {"attempts": 2, "on_exit_codes": [1]}}, "retry.on_exit_codes",
         "shell jobs"),
    ],
)
async def test_bad_execution_field_is_named(api: Api, body: dict[str, object], field: str,
                                            reason: str) -> None:
    resp = await api.call("POST", "/api/jobs", json=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid"
    reasons = {f["field"]: f["reason"] for f in error["fields"]}
    assert field in reasons, reasons
    assert reason in reasons[field]
    assert (await api.call("GET", "/api/jobs/exec")).status == 404


async def test_good_execution_fields_round_trip(api: Api) -> None:
    body = {**HTTP, "timeout": 5, "priority": 3,
            "http": {"url": "http://127.0.0.1:9/x", "method": "post", "body": "{}",
                     "headers": {"Content-Type": "application/json"},
                     "expect_status": [200, 202], "follow_redirects": False},
            "retry": {"attempts": 3, "delay": 0.5, "multiplier": 3, "max_delay": 4,
                      "jitter": 0.2, "on_http_statuses": [502, 503], "any_worker": True}}
    resp = await api.call("POST", "/api/jobs", json=body)
    assert resp.status == 201, await resp.text()
    got = await resp.json()
    assert got["http"]["method"] == "POST"
    assert got["http"]["expect_status"] == [200, 202]
    assert got["retry"] == {"attempts": 3, "delay": 0.5, "multiplier": 3, "max_delay": 4,
                            "jitter": 0.2, "on_http_statuses": [502, 503], "any_worker": True}
