"""The job API on a real master over real etcd and MongoDB."""

from collections.abc import AsyncIterator

import pytest

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role
from tests.apiclient import Api, running_master
from tests.conftest import make_token

JOB = {"name": "nightly", "schedule": "0 2 * * *", "command": "echo backup"}


@pytest.fixture
async def api(settings: Settings, admin_token: str, logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(settings, admin_token) as client:
        yield client


async def test_create_get_list_delete(api: Api, store: EtcdStore, keys: Keyspace) -> None:
    resp = await api.call("POST", "/api/jobs", json=JOB)
    assert resp.status == 201
    body = await resp.json()
    assert body["name"] == "nightly" and body["overlap"] == "forbid"
    assert resp.headers["ETag"] == f'"{body["revision"]}"'
    assert await store.get(keys.last("nightly")) is not None  # fencing token created with it
    resp = await api.call("GET", "/api/jobs/nightly")
    assert (await resp.json())["command"] == "echo backup"
    resp = await api.call("GET", "/api/jobs")
    assert [j["name"] for j in (await resp.json())["jobs"]] == ["nightly"]
    assert (await api.call("POST", "/api/jobs", json=JOB)).status == 409
    assert (await api.call("DELETE", "/api/jobs/nightly")).status == 204
    assert (await api.call("GET", "/api/jobs/nightly")).status == 404
    assert await store.get(keys.last("nightly")) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**JOB, "schedule": "every day"}, "schedule"),
        ({**JOB, "name": "../etc"}, "name"),
        ({"name": "x", "schedule": "* * * * *"}, "command"),
        ({"schedule": "* * * * *", "command": "x"}, "name"),
        ({**JOB, "timeout": -5}, "timeout"),
        ({**JOB, "retry": {"delay": 2}}, "retry.attempts"),
        ({**JOB, "http": {"url": "http://x", "method": "FETCH"}, "command": None}, "http.method"),
    ],
)
async def test_bad_job_gets_400_naming_the_field(api: Api, body: dict[str, object],
                                                 field: str) -> None:
    resp = await api.call("POST", "/api/jobs", json=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid"
    assert field in [f["field"] for f in error["fields"]]
    assert (await api.call("GET", "/api/jobs/x")).status == 404  # nothing half-written


async def test_malformed_json_and_wrong_content_type(api: Api) -> None:
    resp = await api.call("POST", "/api/jobs", data=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["fields"][0]["field"] == "body"
    resp = await api.call("POST", "/api/jobs", data=b"name=x",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 400


async def test_stale_etag_gets_412_and_changes_nothing(api: Api) -> None:
    created = await api.call("POST", "/api/jobs", json=JOB)
    etag = created.headers["ETag"]
    first = await api.call("PATCH", "/api/jobs/nightly", json={"command": "echo v2"},
                           headers={"If-Match": etag})
    assert first.status == 200
    stale = await api.call("PATCH", "/api/jobs/nightly", json={"command": "echo v3"},
                           headers={"If-Match": etag})
    assert stale.status == 412
    assert (await stale.json())["error"]["code"] == "precondition_failed"
    current = await (await api.call("GET", "/api/jobs/nightly")).json()
    assert current["command"] == "echo v2"


async def test_roles(api: Api, store: EtcdStore, keys: Keyspace) -> None:
    await api.call("POST", "/api/jobs", json=JOB)
    viewer = api.as_token(await make_token(store, keys, Role.VIEWER))
    operator = api.as_token(await make_token(store, keys, Role.OPERATOR))
    anonymous = api.as_token(None)
    assert (await anonymous.call("GET", "/api/jobs")).status == 401
    assert (await api.as_token("cs_nope_nope").call("GET", "/api/jobs")).status == 401
    assert (await viewer.call("GET", "/api/jobs")).status == 200
    assert (await viewer.call("POST", "/api/jobs/nightly/run")).status == 403
    assert (await viewer.call("PATCH", "/api/jobs/nightly", json={"enabled": False})).status == 403
    assert (await operator.call("PATCH", "/api/jobs/nightly",
                                json={"enabled": False})).status == 200
    assert (await operator.call("PATCH", "/api/jobs/nightly",
                                json={"command": "rm -rf /"})).status == 403
    assert (await operator.call("POST", "/api/jobs", json={**JOB, "name": "x"})).status == 403
    assert (await operator.call("DELETE", "/api/jobs/nightly")).status == 403
    assert (await operator.call("POST", "/api/tokens",
                                json={"name": "t", "role": "admin"})).status == 403


async def test_mutations_are_audited(api: Api, logs: MongoLogStore) -> None:
    await api.call("POST", "/api/jobs", json=JOB)
    await api.call("PATCH", "/api/jobs/nightly", json={"command": "echo v2"})
    await api.call("POST", "/api/jobs/nightly/run")
    await api.call("POST", "/api/tokens", json={"name": "ci", "role": "viewer"})
    await api.call("DELETE", "/api/jobs/nightly")
    actions = [e.action for e in await logs.query_audit(limit=20)]
    assert sorted(actions) == sorted(
        ["job.create", "job.update", "job.run", "token.create", "job.delete"])
    update = next(e for e in await logs.query_audit(target="nightly") if e.action == "job.update")
    assert update.before is not None and update.before["command"] == "echo backup"
    assert update.after is not None and update.after["command"] == "echo v2"
    assert update.actor.startswith("token:test-admin")


async def test_preview_and_health(api: Api) -> None:
    resp = await api.call("GET", "/api/preview?expr=0+8+*+*+*&tz=Europe/Paris&n=2")
    assert resp.status == 200
    assert all(t.endswith(("+01:00", "+02:00")) for t in (await resp.json())["next"])
    resp = await api.call("GET", "/api/preview?expr=99+*+*+*+*")
    assert resp.status == 400
    assert (await resp.json())["error"]["fields"][0]["field"] == "expr"
    assert (await api.as_token(None).call("GET", "/healthz")).status == 200
    ready = await api.as_token(None).call("GET", "/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"etcd": "ok", "mongodb": "ok"}
