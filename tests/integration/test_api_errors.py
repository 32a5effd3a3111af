"""Bad input to every endpoint: a 4xx in the one error shape, naming the field and
the reason; never a 500, never a traceback, nothing half-written."""

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from tests.apiclient import Api, running_master

JOB = {"name": "nightly", "schedule": "0 2 * * *", "command": "echo backup"}
HOOK = {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}
DEEP = "[" * 100_000 + "]" * 100_000

# (method, path, keyword arguments of the call, status, field named or None)
CASES: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("GET", "/api/jobs?limit=0", {}, 400, "limit"),
    ("GET", "/api/jobs?limit=ten", {}, 400, "limit"),
    ("GET", "/api/jobs?enabled=maybe", {}, 400, "enabled"),
    ("GET", "/api/jobs?status=odd", {}, 400, "status"),
    ("GET", "/api/jobs?target=zone", {}, 400, "target"),
    ("GET", "/api/jobs?cursor=..%2Fx", {}, 400, "cursor"),
    ("POST", "/api/jobs", {"json": [JOB]}, 400, "body"),
    ("POST", "/api/jobs", {"json": {**JOB, "name": "x", "extra": 1}}, 400, "extra"),
    ("POST", "/api/jobs", {"data": b"{", "headers": {"Content-Type": "application/json"}},
     400, "body"),
    ("POST", "/api/jobs", {"data": DEEP.encode(),
                           "headers": {"Content-Type": "application/json"}}, 400, "body"),
    ("POST", "/api/jobs", {"data": b"name=x", "headers": {"Content-Type": "text/plain"}},
     400, "Content-Type"),
    ("POST", "/api/jobs", {}, 400, "body"),
    ("POST", "/api/jobs", {"data": io.BytesIO(b"x" * (3 << 20)),
                           "headers": {"Content-Type": "application/json"}}, 413, None),
    ("GET", "/api/jobs/a..b", {}, 400, "name"),
    ("GET", "/api/jobs/missing", {}, 404, None),
    ("PUT", "/api/jobs/nightly", {"json": {**JOB, "name": "other"}}, 400, "name"),
    ("PUT", "/api/jobs/nightly", {"json": {"schedule": "0 2 * * *"}}, 400, "command"),
    ("PUT", "/api/jobs/missing", {"json": JOB | {"name": "missing"}}, 404, None),
    ("PATCH", "/api/jobs/nightly", {"json": {"name": "other"}}, 400, "name"),
    ("PATCH", "/api/jobs/nightly", {"json": {"timeout": "soon"}}, 400, "timeout"),
    ("PATCH", "/api/jobs/nightly", {"json": {"enabled": "yes"}}, 400, "enabled"),
    ("PATCH", "/api/jobs/nightly", {"json": {"retry": {"attempts": 0}}}, 400,
     "retry.attempts"),
    ("PATCH", "/api/jobs/nightly", {"json": {"command": "x"}, "headers": {"If-Match": "abc"}},
     400, "If-Match"),
    ("PATCH", "/api/jobs/nightly", {"json": "enabled"}, 400, "body"),
    ("DELETE", "/api/jobs/nightly", {"headers": {"If-Match": '"¹"'}}, 400, "If-Match"),
    ("DELETE", "/api/jobs/missing", {}, 404, None),
    ("POST", "/api/jobs/nightly/pause", {"headers": {"If-Match": "W/x"}}, 400, "If-Match"),
    ("POST", "/api/jobs/missing/resume", {}, 404, None),
    ("POST", "/api/jobs/missing/run", {}, 404, None),
    ("POST", "/api/jobs/nightly/kill", {"json": {"run_id": 5}}, 400, "run_id"),
    ("POST", "/api/jobs/nightly/kill", {"json": {"run_id": "other@1"}}, 400, "run_id"),
    ("POST", "/api/jobs/nightly/kill", {"json": {"run_id": "garbage"}}, 400, "run_id"),
    ("POST", "/api/jobs/nightly/kill", {"json": {"run": "nightly@1"}}, 400, "run"),
    ("POST", "/api/jobs/nightly/kill", {"json": {"run_id": "nightly@1"}}, 404, None),
    ("POST", "/api/jobs/missing/kill", {}, 404, None),
    ("GET", "/api/runs?status=bad", {}, 400, "status"),
    ("GET", "/api/runs?since=yesterday", {}, 400, "since"),
    ("GET", "/api/runs?until=99999999999999999", {}, 400, "until"),
    ("GET", "/api/runs?limit=abc", {}, 400, "limit"),
    ("GET", "/api/runs?cursor=garbage", {}, 400, "cursor"),
    ("GET", "/api/runs?job=..%2F", {}, 400, "job"),
    ("GET", "/api/runs?worker=a%2Fb", {}, 400, "worker"),
    ("GET", "/api/runs/garbage", {}, 400, "record_id"),
    ("GET", "/api/runs/x@1%2399999", {}, 400, "record_id"),
    ("GET", "/api/runs/x@99999999999999999999", {}, 400, "record_id"),
    ("GET", "/api/runs/nightly@1%231", {}, 404, None),
    ("GET", "/api/preview", {}, 400, "expr"),
    ("GET", "/api/preview?expr=every+day", {}, 400, "expr"),
    ("GET", "/api/preview?expr=*+*+*+*+*&tz=Mars/Base", {}, 400, "tz"),
    ("GET", "/api/preview?expr=*+*+*+*+*&n=0", {}, 400, "n"),
    ("POST", "/api/tokens", {"json": {"name": "x", "role": "root"}}, 400, "role"),
    ("POST", "/api/tokens", {"json": {"name": "bad name!", "role": "viewer"}}, 400, "name"),
    ("POST", "/api/tokens", {"json": {"role": "viewer"}}, 400, "name"),
    ("POST", "/api/tokens", {"json": {"name": "x", "role": "viewer", "admin": True}}, 400,
     "admin"),
    ("DELETE", "/api/tokens/a..b", {}, 400, "token_id"),
    ("DELETE", "/api/tokens/0123456789ab", {}, 404, None),
    ("GET", "/api/audit?limit=5000", {}, 400, "limit"),
    ("GET", "/api/alerts?status=odd", {}, 400, "status"),
    ("GET", "/api/alerts?job=a..b", {}, 400, "job"),
    ("GET", "/api/leader?limit=0", {}, 400, "limit"),
    ("POST", "/api/alerts/channels", {"json": {"name": "x", "type": "pager"}}, 400, "type"),
    ("POST", "/api/alerts/channels", {"json": {**HOOK, "url": "ftp://h/x"}}, 400, "url"),
    ("PUT", "/api/alerts/channels/hook", {"json": {**HOOK, "name": "other"}}, 400, "name"),
    ("PUT", "/api/alerts/channels/hook", {"json": {"type": "slack", "url": "https://h/x"}},
     400, "type"),
    ("PUT", "/api/alerts/channels/missing", {"json": {**HOOK, "name": "missing"}}, 404, None),
    ("DELETE", "/api/alerts/channels/missing", {}, 404, None),
    ("GET", "/api/nothing-here", {}, 404, None),
    ("DELETE", "/api/runs", {}, 405, None),
    ("POST", "/healthz", {}, 405, None),
]


@pytest.fixture
async def api(settings: Settings, admin_token: str, logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(settings, admin_token) as client:
        assert (await client.call("POST", "/api/jobs", json=JOB)).status == 201
        assert (await client.call("POST", "/api/alerts/channels", json=HOOK)).status == 201
        yield client


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), CASES,
                         ids=[f"{c[0]} {c[1][:60]} {c[4] or c[3]}" for c in CASES])
async def test_bad_input_is_a_4xx_naming_the_field(
    api: Api, store: EtcdStore, keys: Keyspace, method: str, path: str,
    kwargs: dict[str, Any], status: int, field: str | None,
) -> None:
    before = await store.get(keys.job("nightly"))
    resp = await api.call(method, path, **kwargs)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert set(error) <= {"code", "message", "fields"} and error["message"]
    if field is not None:
        assert error["code"] == "invalid"
        assert field in [f["field"] for f in error["fields"]], error
        assert all(f["reason"] for f in error["fields"])
    if status == 405:
        assert resp.headers["Allow"]
    after = await store.get(keys.job("nightly"))
    assert after is not None and before is not None
    assert after.mod_revision == before.mod_revision  # nothing written
