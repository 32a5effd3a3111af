"""The job API on a real master over real etcd and MongoDB."""

import json
import time
from collections.abc import AsyncIterator

import pytest

from cronswarm.common import Keyspace, RunRecord, RunStatus, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import AuditEntry, MongoLogStore
from cronswarm.master import Role
from tests.apiclient import Api, running_master
from tests.conftest import make_token

JOB = {"name": "nightly", "schedule": "0 2 * * *", "command": "echo backup"}
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


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


async def test_mutations_are_audited(api: Api, logs: MongoLogStore, store: EtcdStore,
                                     keys: Keyspace) -> None:
    await api.call("POST", "/api/jobs", json=JOB)
    await api.call("PATCH", "/api/jobs/nightly", json={"command": "echo v2"})
    await api.call("PUT", "/api/jobs/nightly", json={"schedule": "0 3 * * *", "command": "v3"})
    await api.call("POST", "/api/jobs/nightly/pause")
    await api.call("PATCH", "/api/jobs/nightly", json={"enabled": True})
    await api.call("POST", "/api/jobs/nightly/run")
    await fake_running(store, keys, "nightly", "nightly@1000")
    await api.call("POST", "/api/jobs/nightly/kill")
    created = await (await api.call("POST", "/api/tokens",
                                    json={"name": "ci", "role": "viewer"})).json()
    await api.call("DELETE", f"/api/tokens/{created['id']}")
    await api.call("DELETE", "/api/jobs/nightly")
    entries = await logs.query_audit(limit=50)
    assert sorted(e.action for e in entries) == sorted([
        "job.create", "job.update", "job.update", "job.pause", "job.resume", "job.run",
        "job.kill", "token.create", "token.revoke", "job.delete"])
    assert all(e.actor.startswith("token:test-admin(") and e.at > 0 for e in entries)

    def one(action: str, **match: object) -> AuditEntry:
        found = [e for e in entries if e.action == action
                 and all(e.after is not None and e.after.get(k) == v for k, v in match.items())]
        assert len(found) == 1, (action, entries)
        return found[0]

    create = one("job.create")
    assert create.before is None and create.after is not None
    assert create.after["command"] == "echo backup"
    update = one("job.update", command="echo v2")
    assert update.before is not None and update.before["command"] == "echo backup"
    replace = one("job.update", command="v3")
    assert replace.before is not None and replace.before["command"] == "echo v2"
    pause = one("job.pause")
    assert pause.before is not None and pause.before["enabled"] is True
    assert pause.after is not None and pause.after["enabled"] is False
    assert one("job.run").details["run_id"].startswith("nightly@")
    assert one("job.kill").details["runs"] == ["nightly@1000"]
    token = one("token.create")
    assert token.target == f"token:{created['id']}"
    assert token.after is not None and "digest" not in token.after
    assert created["token"] not in str([e.to_dict() for e in entries])  # no secret
    assert one("token.revoke").after is None
    delete = next(e for e in entries if e.action == "job.delete")
    assert delete.before is not None and delete.after is None
    via_api = await (await api.call("GET", "/api/audit?target=nightly&limit=50")).json()
    assert len(via_api["entries"]) == 8  # the job's own entries, not the token's
    assert {e["target"] for e in via_api["entries"]} == {"nightly"}


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


def run_record(job: str, tick: int, status: RunStatus, attempt: int = 1, **kw: object
               ) -> RunRecord:
    return RunRecord(run_id=f"{job}@{tick}", job=job, tick=tick, attempt=attempt,
                     worker="w1", summary="echo", status=status, started=tick,
                     ended=tick + 1500, **kw)  # type: ignore[arg-type]


async def fake_running(store: EtcdStore, keys: Keyspace, job: str, rid: str) -> None:
    """A live run as a worker registers it (without a worker, so it stays)."""
    info = json.dumps({"run_id": rid, "worker": "w1", "tick": 1, "attempt": 1}).encode()
    await store.put(keys.running(job, rid), info)


async def test_list_shows_next_fire_last_run_and_live_runs(
    api: Api, store: EtcdStore, keys: Keyspace, logs: MongoLogStore
) -> None:
    for body in ({**JOB, "name": "a-backup"}, {**JOB, "name": "b-report", "enabled": False},
                 {**JOB, "name": "c-sync", "targets": {"zone": "eu"}}):
        assert (await api.call("POST", "/api/jobs", json=body)).status == 201
    await logs.write_runs([run_record("a-backup", T0, RunStatus.FAILED),
                           run_record("c-sync", T0, RunStatus.SUCCEEDED)])
    await fake_running(store, keys, "c-sync", "c-sync@5")
    body = await (await api.call("GET", "/api/jobs")).json()
    jobs = {j["name"]: j for j in body["jobs"]}
    assert body["total"] == 3 and body["next_cursor"] is None
    assert jobs["a-backup"]["last_run"]["status"] == "failed"
    assert jobs["b-report"]["last_run"] is None
    assert jobs["c-sync"]["running"] == ["c-sync@5"] and jobs["a-backup"]["running"] == []
    next_fire = jobs["a-backup"]["next_fire"]
    assert next_fire > time.time() * 1000 and next_fire % 86_400_000 == 2 * 3_600_000
    assert jobs["b-report"]["next_fire"] is None  # paused

    async def names(query: str) -> list[str]:
        resp = await api.call("GET", "/api/jobs?" + query)
        assert resp.status == 200, await resp.text()
        return [j["name"] for j in (await resp.json())["jobs"]]

    assert await names("name=BACK") == ["a-backup"]
    assert await names("enabled=false") == ["b-report"]
    assert await names("enabled=true") == ["a-backup", "c-sync"]
    assert await names("status=failed") == ["a-backup"]
    assert await names("status=never") == ["b-report"]
    assert await names("target=zone%3Deu") == ["c-sync"]
    assert await names("target=zone%3Dus") == []
    first = await (await api.call("GET", "/api/jobs?limit=2")).json()
    assert [j["name"] for j in first["jobs"]] == ["a-backup", "b-report"]
    assert first["next_cursor"] == "b-report"
    assert await names(f"limit=2&cursor={first['next_cursor']}") == ["c-sync"]


async def test_get_job_view_and_replace_with_etag(api: Api, logs: MongoLogStore) -> None:
    created = await api.call("POST", "/api/jobs", json=JOB)
    etag = created.headers["ETag"]
    await logs.write_runs([run_record("nightly", T0, RunStatus.SUCCEEDED)])
    view = await api.call("GET", "/api/jobs/nightly")
    body = await view.json()
    assert view.headers["ETag"] == etag and body["last_run"]["status"] == "succeeded"
    replaced = await api.call("PUT", "/api/jobs/nightly", headers={"If-Match": etag},
                              json={"schedule": "30 3 * * *", "command": "echo v2"})
    assert replaced.status == 200, await replaced.text()
    new = await replaced.json()
    assert new["schedule"] == "30 3 * * *" and new["timeout"] is None
    assert replaced.headers["ETag"] == f'"{new["revision"]}"' != etag
    stale = await api.call("PUT", "/api/jobs/nightly", headers={"If-Match": etag},
                           json={"schedule": "0 4 * * *", "command": "echo v3"})
    assert stale.status == 412
    current = await (await api.call("GET", "/api/jobs/nightly")).json()
    assert current["command"] == "echo v2" and current["revision"] == new["revision"]
    star = await api.call("PATCH", "/api/jobs/nightly", headers={"If-Match": "*"},
                          json={"description": "any version"})
    assert star.status == 200


async def test_stale_etag_on_delete_and_pause_changes_nothing(api: Api) -> None:
    etag = (await api.call("POST", "/api/jobs", json=JOB)).headers["ETag"]
    assert (await api.call("PATCH", "/api/jobs/nightly",
                           json={"description": "moved on"})).status == 200
    for method, path in (("DELETE", "/api/jobs/nightly"), ("POST", "/api/jobs/nightly/pause")):
        resp = await api.call(method, path, headers={"If-Match": etag})
        assert resp.status == 412, (method, await resp.text())
    current = await (await api.call("GET", "/api/jobs/nightly")).json()
    assert current["enabled"] is True and current["description"] == "moved on"
    fresh = (await api.call("GET", "/api/jobs/nightly")).headers["ETag"]
    assert (await api.call("DELETE", "/api/jobs/nightly",
                           headers={"If-Match": fresh})).status == 204


async def test_pause_resume_and_merge_patch(api: Api) -> None:
    await api.call("POST", "/api/jobs", json={**JOB, "retry": {"attempts": 3, "delay": 5}})
    paused = await api.call("POST", "/api/jobs/nightly/pause")
    assert paused.status == 200 and (await paused.json())["enabled"] is False
    assert (await paused.json())["next_fire"] is None
    resumed = await api.call("POST", "/api/jobs/nightly/resume")
    assert (await resumed.json())["enabled"] is True
    patched = await api.call("PATCH", "/api/jobs/nightly",
                             json={"retry": {"delay": 9}, "timeout": 30},
                             headers={"Content-Type": "application/merge-patch+json"})
    body = await patched.json()
    assert body["retry"]["attempts"] == 3 and body["retry"]["delay"] == 9
    assert body["timeout"] == 30
    removed = await (await api.call("PATCH", "/api/jobs/nightly", json={"timeout": None})).json()
    assert removed["timeout"] is None
    http = await (await api.call("PATCH", "/api/jobs/nightly",
                                 json={"http": {"url": "https://example.com/hook"}})).json()
    assert "command" not in http and http["http"]["method"] == "GET"


async def test_run_now_is_requested_once(api: Api, store: EtcdStore, keys: Keyspace) -> None:
    await api.call("POST", "/api/jobs", json=JOB)
    resp = await api.call("POST", "/api/jobs/nightly/run")
    assert resp.status == 202
    run_id = (await resp.json())["run_id"]
    name, _, tick = run_id.partition("@")
    assert name == "nightly" and int(tick) % 1000 != 0  # never a scheduled tick's id
    request = await store.get(keys.once("nightly"))
    assert request is not None and json.loads(request.value)["at"] == int(tick)
    again = await api.call("POST", "/api/jobs/nightly/run")
    assert again.status == 409 and (await again.json())["error"]["code"] == "conflict"


async def test_kill_all_or_one_run(api: Api, store: EtcdStore, keys: Keyspace) -> None:
    await api.call("POST", "/api/jobs", json=JOB)
    resp = await api.call("POST", "/api/jobs/nightly/kill")
    assert resp.status == 202 and (await resp.json())["requested"] == []
    assert await store.get(keys.killer("nightly")) is None  # nothing alive: nothing written
    await fake_running(store, keys, "nightly", "nightly@1000")
    await fake_running(store, keys, "nightly", "nightly@2000")
    resp = await api.call("POST", "/api/jobs/nightly/kill", json={"run_id": "nightly@2000"})
    assert (await resp.json())["requested"] == ["nightly@2000"]
    request = await store.get(keys.killer("nightly"))
    assert request is not None
    assert json.loads(request.value)["run_id"] == "nightly@2000"
    assert json.loads(request.value)["by"].startswith("token:test-admin")
    resp = await api.call("POST", "/api/jobs/nightly/kill", json={})
    assert (await resp.json())["requested"] == ["nightly@1000", "nightly@2000"]
    request = await store.get(keys.killer("nightly"))
    assert request is not None and json.loads(request.value)["run_id"] is None
    assert request.lease != 0  # the request expires if no worker takes it


async def test_http_jobs_to_literal_local_addresses_are_refused_when_asked(
    settings: Settings, admin_token: str, logs: MongoLogStore,
) -> None:
    deny = settings.with_overrides(http_deny_local=True)
    async with running_master(deny, admin_token) as api:
        for url in ("http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/x",
                    "http://127.0.0.1:9/"):
            job = {"name": "meta", "schedule": "* * * * *", "http": {"url": url}}
            resp = await api.call("POST", "/api/jobs", json=job)
            assert resp.status == 400, url
            assert [f["field"] for f in (await resp.json())["error"]["fields"]] == ["http.url"]
        ok = {"name": "ok", "schedule": "* * * * *", "http": {"url": "https://example.com/"}}
        assert (await api.call("POST", "/api/jobs", json=ok)).status == 201
        resp = await api.call("PATCH", "/api/jobs/ok",
                              json={"http": {"url": "http://169.254.169.254/"}})
        assert resp.status == 400
        resp = await api.call("PUT", "/api/jobs/ok", json={
            "schedule": "* * * * *", "http": {"url": "http://169.254.169.254/"}})
        assert resp.status == 400
        got = await (await api.call("GET", "/api/jobs/ok")).json()
        assert got["http"]["url"] == "https://example.com/"
    async with running_master(settings, admin_token) as api:  # allowed by default
        job = {"name": "local", "schedule": "* * * * *", "http": {"url": "http://127.0.0.1:9/"}}
        assert (await api.call("POST", "/api/jobs", json=job)).status == 201
