"""Every endpoint's role check: 401 without (or with a bad) token, 403 with too weak
a role (changing nothing), and the needed role is enough."""

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role
from cronswarm.master._openapi import document
from tests.apiclient import Api, running_master
from tests.conftest import make_token

JOB = {"name": "nightly", "schedule": "0 2 * * *", "command": "echo backup"}
HOOK = {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}
VIEW, OPER, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ADMIN

# (method, path, body, the weakest role allowed, its success status)
ENDPOINTS: list[tuple[str, str, Any, Role, int]] = [
    ("GET", "/api/me", None, VIEW, 200),
    ("GET", "/api/jobs", None, VIEW, 200),
    ("POST", "/api/jobs", {**JOB, "name": "other"}, ADMIN, 201),
    ("GET", "/api/jobs/nightly", None, VIEW, 200),
    ("PUT", "/api/jobs/nightly", {"schedule": "0 3 * * *", "command": "x"}, ADMIN, 200),
    ("PATCH", "/api/jobs/nightly", {"command": "echo v2"}, ADMIN, 200),
    ("PATCH", "/api/jobs/nightly", {"enabled": False}, OPER, 200),
    ("DELETE", "/api/jobs/nightly", None, ADMIN, 204),
    ("POST", "/api/jobs/nightly/pause", None, OPER, 200),
    ("POST", "/api/jobs/nightly/resume", None, OPER, 200),
    ("POST", "/api/jobs/nightly/run", None, OPER, 202),
    ("POST", "/api/jobs/nightly/kill", {}, OPER, 202),
    ("GET", "/api/runs", None, VIEW, 200),
    ("GET", "/api/runs/nightly@1000", None, VIEW, 404),
    ("GET", "/api/workers", None, VIEW, 200),
    ("GET", "/api/preview?expr=0+2+*+*+*", None, VIEW, 200),
    ("GET", "/api/tokens", None, ADMIN, 200),
    ("POST", "/api/tokens", {"name": "ci", "role": "viewer"}, ADMIN, 201),
    ("DELETE", "/api/tokens/0123456789ab", None, ADMIN, 404),
    ("GET", "/api/audit", None, ADMIN, 200),
    ("GET", "/api/runs/nightly@1000%231/live", None, VIEW, 404),
    ("GET", "/api/alerts", None, VIEW, 200),
    ("GET", "/api/leader", None, VIEW, 200),
    ("GET", "/api/alerts/channels", None, ADMIN, 200),
    ("POST", "/api/alerts/channels", {**HOOK, "name": "other"}, ADMIN, 201),
    ("GET", "/api/alerts/channels/hook", None, ADMIN, 200),
    ("PUT", "/api/alerts/channels/hook", {"type": "webhook", "url": "http://127.0.0.1:9/v2"},
     ADMIN, 200),
    ("DELETE", "/api/alerts/channels/hook", None, ADMIN, 204),
]


@pytest.fixture
async def api(settings: Settings, admin_token: str, logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(settings, admin_token) as client:
        assert (await client.call("POST", "/api/jobs", json=JOB)).status == 201
        assert (await client.call("POST", "/api/alerts/channels", json=HOOK)).status == 201
        yield client


async def snapshot(api: Api) -> Any:
    jobs = await (await api.call("GET", "/api/jobs")).json()
    tokens = await (await api.call("GET", "/api/tokens")).json()
    channels = await (await api.call("GET", "/api/alerts/channels")).json()
    return ([{k: v for k, v in j.items() if k != "next_fire"} for j in jobs["jobs"]], tokens,
            channels)


@pytest.mark.parametrize(("method", "path", "body", "needed", "ok"), ENDPOINTS,
                         ids=[f"{m} {p} {r.label}" for m, p, _, r, _ in ENDPOINTS])
async def test_role_checks(api: Api, store: EtcdStore, keys: Keyspace, method: str, path: str,
                           body: Any, needed: Role, ok: int) -> None:
    before = await snapshot(api)
    for token in (None, "cs_0123456789ab_nope", "not-a-token"):
        resp = await api.as_token(token).call(method, path, json=body)
        assert resp.status == 401, (token, await resp.text())
        assert (await resp.json())["error"]["code"] == "unauthenticated"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for weaker in (r for r in Role if r < needed):
        resp = await api.as_token(await make_token(store, keys, weaker)).call(
            method, path, json=body)
        assert resp.status == 403, (weaker, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == "forbidden" and needed.label in error["message"]
    after = await snapshot(api)
    assert after[0] == before[0]  # nothing changed by the refused calls
    assert after[2] == before[2]
    assert [t for t in after[1]["tokens"] if t["name"] == "ci"] == []
    resp = await api.as_token(await make_token(store, keys, needed)).call(
        method, path, json=body)
    assert resp.status == ok, await resp.text()


def test_the_table_holds_every_operation_that_needs_a_token() -> None:
    secured = {(method.upper(), path) for path, item in document()["paths"].items()
               for method, op in item.items() if isinstance(op, dict)
               and "responses" in op and op.get("security") != []}
    templates = {(method, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"))
                 for method, path in secured}
    tried = {(method, template.pattern) for method, path, *_ in ENDPOINTS
             for m, template in templates
             if m == method and template.match(path.split("?")[0])}
    assert tried == {(m, t.pattern) for m, t in templates}
