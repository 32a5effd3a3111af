"""Job secrets end to end on a real master and worker over real etcd and MongoDB.

A secret's value must reach the job and nowhere a viewer, the audit trail,
the run records or the logs can read it; it is sealed in etcd; rotation keeps
jobs running; a worker without the key fails the run naming the key id.
"""

import asyncio
import base64
import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cronswarm.cli import main
from cronswarm.common import (
    Job,
    Keyring,
    Keyspace,
    SecretInput,
    Settings,
    new_key_line,
    read_job_input,
)
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import JobService, Role, rotate_job_secrets
from tests.apiclient import Api, running_master
from tests.conftest import make_token
from tests.workerkit import NEVER, Gate, running_worker, wait_final, wait_output

KEY_A = new_key_line("a")
KEY_B = new_key_line("b")


def checks_secret(var: str, value: str) -> str:
    """Shell that exits 0 only if ``$var`` holds ``value`` (the command, which
    viewers see, holds only its digest)."""
    digest = hashlib.sha256(value.encode()).hexdigest()
    return (f'test "$(printf %s "${var}" | sha256sum | cut -d" " -f1)" = "{digest}"')


def assert_absent(value: str, *texts: str) -> None:
    for text in texts:
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    return settings.with_overrides(job_secret_keys=KEY_A)


@pytest.fixture
async def api(keyed: Settings, admin_token: str, logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(keyed, admin_token) as client:
        yield client


async def _page(api: Api, path: str) -> str:
    resp = await api.call("GET", path)
    assert resp.status == 200, path
    return await resp.text()


async def test_a_secret_reaches_the_job_and_nowhere_a_viewer_can_read(
    api: Api, keyed: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    value = "tok-" + secrets.token_hex(16)
    gate = Gate(tmp_path)
    command = (f'echo "token=$SECRET"; echo "err:$SECRET" >&2; {gate.wait_command}; '
               f'{checks_secret("SECRET", value)}')
    resp = await api.call("POST", "/api/jobs", json={
        "name": "deploy", "schedule": NEVER, "command": command, "env": {"PLAIN": "shown"},
        "secrets": {"env": {"SECRET": value}}})
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["secrets_set"] == ["env.SECRET"] and created["env"] == {"PLAIN": "shown"}
    stored = await store.get(keys.job("deploy"))
    assert stored is not None
    assert_absent(value, stored.value.decode())  # sealed at rest
    assert json.loads(stored.value)["secrets"]["env.SECRET"]["kid"] == "a"

    # A replace that does not name the secret keeps it; the audit names no value.
    body = {k: v for k, v in created.items() if k not in ("revision", "next_fire",
                                                           "secrets_set")}
    resp = await api.call("PUT", "/api/jobs/deploy", json={**body, "description": "v2"})
    assert resp.status == 200 and (await resp.json())["secrets_set"] == ["env.SECRET"]

    viewer = api.as_token(await make_token(store, keys, Role.VIEWER))
    readable = []
    for who in (api, viewer):
        for path in ("/api/jobs/deploy", "/api/jobs", "/"):
            readable.append(await _page(who, path))
    for path in ("/jobs/deploy/edit", "/audit", "/api/audit?target=deploy"):
        readable.append(await _page(api, path))  # admin pages
    assert "env.SECRET" in readable[0]
    assert "Secrets set: env.SECRET" in readable[6]  # the editor says which, not what

    async with running_worker(keyed, store, logs) as worker:
        rid = (await (await api.call("POST", "/api/jobs/deploy/run")).json())["run_id"]
        record_id = f"{rid}#1"
        live = await wait_output(worker, record_id, lambda out: out.count(b"[secret]") == 2)
        gate.release()
        doc = await wait_final(logs, record_id)
        readable.append(await _page(viewer, f"/runs/{record_id}"))
        readable.append(await _page(viewer, f"/api/runs/{record_id}"))
    gate.close()
    assert doc["status"] == "succeeded", doc  # the job saw the real value
    assert "token=[secret]" in doc["output"] and "err:[secret]" in doc["output"]
    audit = [e.to_dict() for e in await logs.query_audit(target="deploy")]
    assert {e["action"] for e in audit} >= {"job.create", "job.update", "job.run"}
    assert_absent(value, live.decode(), json.dumps(doc, default=str),
                  json.dumps(audit, default=str), caplog.text, *readable)


async def test_secrets_can_be_cleared_and_must_fit_the_job(api: Api) -> None:
    job = {"name": "report", "schedule": NEVER, "command": "true"}
    resp = await api.call("POST", "/api/jobs", json={**job, "secrets": {
        "env": {"A": "value-a1", "B": "value-b1"}}})
    assert resp.status == 201
    resp = await api.call("PATCH", "/api/jobs/report", json={"secrets": {"env": {"A": None}}})
    assert (await resp.json())["secrets_set"] == ["env.B"]
    resp = await api.call("PATCH", "/api/jobs/report",
                          json={"command": None, "http": {"url": "http://example.com/"}})
    assert resp.status == 400  # an env secret on an HTTP job: clear it first
    fields = [f["field"] for f in (await resp.json())["error"]["fields"]]
    assert fields == ["secrets.env.B"]
    resp = await api.call("PATCH", "/api/jobs/report", json={
        "command": None, "http": {"url": "http://example.com/"}, "secrets": None})
    assert resp.status == 200 and (await resp.json())["secrets_set"] == []
    resp = await api.call("POST", "/api/jobs", json={
        **job, "name": "bad", "schedule": "nope", "secrets": {"env": {"X": "value-x1"}}})
    assert resp.status == 400
    assert (await api.call("GET", "/api/jobs/bad")).status == 404  # nothing half-written


async def test_a_master_without_keys_refuses_secrets_and_writes_nothing(
    settings: Settings, admin_token: str, logs: MongoLogStore
) -> None:
    async with running_master(settings, admin_token) as api:
        resp = await api.call("POST", "/api/jobs", json={
            "name": "deploy", "schedule": NEVER, "command": "true",
            "secrets": {"env": {"SECRET": "value-12345"}}})
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert "CRONSWARM_JOB_SECRET_KEYS" in error["message"]
        assert "value-12345" not in json.dumps(error)
        assert (await api.call("GET", "/api/jobs/deploy")).status == 404


async def test_http_secret_headers_and_basic_auth_reach_the_server(
    api: Api, keyed: Settings, store: EtcdStore, logs: MongoLogStore
) -> None:
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text=f"key={request.headers.get('X-Api-Key')} "
                                 f"auth={request.headers.get('Authorization')}")

    app = web.Application()
    app.router.add_get("/hook", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    key, password = "key-" + secrets.token_hex(12), "pw-" + secrets.token_hex(12)
    try:
        resp = await api.call("POST", "/api/jobs", json={
            "name": "hook", "schedule": NEVER,
            "http": {"url": str(server.make_url("/hook")), "headers": {"X-Plain": "p"}},
            "secrets": {"headers": {"X-Api-Key": key},
                        "basic_auth": {"username": "bot", "password": password}}})
        assert resp.status == 201, await resp.text()
        view = await (await api.call("GET", "/api/jobs/hook")).text()
        async with running_worker(keyed, store, logs):
            rid = (await (await api.call("POST", "/api/jobs/hook/run")).json())["run_id"]
            doc = await wait_final(logs, f"{rid}#1")
    finally:
        await server.close()
    assert doc["status"] == "succeeded", doc.get("error")
    assert seen[0]["X-Api-Key"] == key and seen[0]["X-Plain"] == "p"
    basic = base64.b64encode(f"bot:{password}".encode()).decode()
    assert seen[0]["Authorization"] == f"Basic {basic}"
    assert doc["output"] == "key=[secret] auth=Basic [secret]"
    assert_absent(key, view, json.dumps(doc, default=str))
    assert_absent(password, view, json.dumps(doc, default=str))


async def _create(jobs: JobService, name: str, value: str) -> None:
    job, given = _job_input(name, value)
    await jobs.create(job, actor="tests", secrets=given)


def _job_input(name: str, value: str) -> tuple[Job, SecretInput | None]:
    return read_job_input({"name": name, "schedule": NEVER,
                           "command": checks_secret("SECRET", value),
                           "secrets": {"env": {"SECRET": value}}})


async def _run(jobs: JobService, logs: MongoLogStore, name: str) -> dict[str, Any]:
    rid = await jobs.run_now(name, actor="tests")
    return await wait_final(logs, f"{rid}#1")


async def test_rotation_keeps_jobs_running_and_a_missing_key_fails_the_run_clearly(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = JobService(store, logs, keys, keyring=Keyring.parse(KEY_A))
    value = "v-" + secrets.token_hex(8)
    await _create(jobs, "rotated", value)
    await _create(jobs, "other", value)

    # Rotate to B (B first, A still listed): both jobs re-sealed under B.
    report = await rotate_job_secrets(store, keys, Keyring.parse(f"{KEY_B},{KEY_A}"))
    assert (report.rotated, report.failed) == (2, {})
    again = await rotate_job_secrets(store, keys, Keyring.parse(f"{KEY_B},{KEY_A}"))
    assert (again.rotated, again.current) == (0, 2)
    kv = await store.get(keys.job("rotated"))
    assert kv is not None and json.loads(kv.value)["secrets"]["env.SECRET"]["kid"] == "b"

    # A third job is sealed with A after the rotation, then A is dropped.
    await _create(JobService(store, logs, keys, keyring=Keyring.parse(KEY_A)), "late", value)
    only_b = settings.with_overrides(job_secret_keys=KEY_B)
    async with running_worker(only_b, store, logs):
        assert (await _run(jobs, logs, "rotated"))["status"] == "succeeded"
        failed = await _run(jobs, logs, "late")
    assert failed["status"] == "failed"
    assert "key id 'a'" in failed["error"] and "CRONSWARM_JOB_SECRET_KEYS" in failed["error"]
    assert value not in json.dumps(failed, default=str)

    report = await rotate_job_secrets(store, keys, Keyring.parse(KEY_B))
    assert report.current == 2 and list(report.failed) == ["late"]
    assert "key id 'a'" in report.failed["late"]


async def test_a_worker_without_any_key_fails_runs_of_jobs_with_secrets(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace
) -> None:
    jobs = JobService(store, logs, keys, keyring=Keyring.parse(KEY_A))
    await _create(jobs, "deploy", "value-12345")
    async with running_worker(settings, store, logs):
        doc = await _run(jobs, logs, "deploy")
    assert doc["status"] == "failed"
    assert "key id 'a'" in doc["error"] and "no CRONSWARM_JOB_SECRET_KEYS" in doc["error"]


async def test_the_cli_makes_keys_and_rotates_reporting_counts(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await asyncio.to_thread(main, ["secrets", "keygen", "--id", "k2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("k2:") and Keyring.parse(line).primary == "k2"
    await _create(JobService(store, logs, keys, keyring=Keyring.parse(KEY_A)), "deploy", "v-123")
    await _create(JobService(store, logs, keys, keyring=Keyring.parse(KEY_B)), "stray", "v-123")
    for name, value in settings.with_overrides(job_secret_keys=f"{line},{KEY_A}").env().items():
        monkeypatch.setenv(name, value)
    code = await asyncio.to_thread(main, ["secrets", "rotate"])
    captured = capsys.readouterr()
    assert code == 1  # one job's key ('b') is not listed: it is named, the others rotate
    assert "1 job(s) rotated" in captured.out and "1 failed" in captured.out
    assert "stray" in captured.err and "key id 'b'" in captured.err
    kv = await store.get(keys.job("deploy"))
    assert kv is not None and json.loads(kv.value)["secrets"]["env.SECRET"]["kid"] == "k2"
    audit = await logs.query_audit(action="secrets.rotate")
    assert audit[0].details["rotated"] == 1 and audit[0].details["key_id"] == "k2"
    monkeypatch.delenv("CRONSWARM_JOB_SECRET_KEYS")
    assert await asyncio.to_thread(main, ["secrets", "rotate"]) == 2
    assert "CRONSWARM_JOB_SECRET_KEYS" in capsys.readouterr().err


async def test_secret_headers_do_not_follow_a_redirect_to_another_origin(
    api: Api, keyed: Settings, store: EtcdStore, logs: MongoLogStore
) -> None:
    seen: dict[str, dict[str, str]] = {}

    async def record(request: web.Request) -> web.Response:
        seen[f"{request.host}{request.path}"] = dict(request.headers)
        if request.path == "/start":
            raise web.HTTPFound("/same")  # the job's own origin: secrets go along
        if request.path == "/same":
            raise web.HTTPTemporaryRedirect(str(other.make_url("/away")))
        return web.Response(text="done")

    servers = []
    for _ in range(2):
        app = web.Application()
        app.router.add_get("/{tail:.*}", record)
        servers.append(TestServer(app, host="127.0.0.1"))
        await servers[-1].start_server()
    home, other = servers
    key = "key-" + secrets.token_hex(12)
    try:
        resp = await api.call("POST", "/api/jobs", json={
            "name": "hook", "schedule": NEVER,
            "http": {"url": str(home.make_url("/start")), "headers": {"X-Plain": "p"}},
            "secrets": {"headers": {"X-Api-Key": key},
                        "basic_auth": {"username": "bot", "password": "pw-12345678"}}})
        assert resp.status == 201, await resp.text()
        async with running_worker(keyed, store, logs):
            rid = (await (await api.call("POST", "/api/jobs/hook/run")).json())["run_id"]
            doc = await wait_final(logs, f"{rid}#1")
    finally:
        for server in servers:
            await server.close()
    assert doc["status"] == "succeeded", doc.get("error")
    assert doc["extra"]["redirects"] == 2 and doc["extra"]["final_url"].endswith("/away")
    by_path = {path.rpartition("/")[2]: headers for path, headers in seen.items()}
    for path in ("start", "same"):
        assert by_path[path]["X-Api-Key"] == key and "Authorization" in by_path[path]
    assert by_path["away"]["X-Plain"] == "p"
    assert "X-Api-Key" not in by_path["away"] and "Authorization" not in by_path["away"]
