"""Bad input that once got through: names with a trailing newline, lone
surrogates, URLs with line breaks, out-of-range ETags, run ids and cursors,
non-ASCII signed values and tokens. Each is a 4xx in the one error shape that
says what is wrong, and nothing is written: no job, token, channel or request
in etcd, no audit entry in MongoDB."""

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cronswarm.common import MAX_TICK_MS, Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from tests.apiclient import Api, raw_request, running_master

JOB = {"name": "nightly", "schedule": "0 2 * * *", "command": "echo backup"}
HOOK = {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}
MAIL = {"name": "mail", "type": "email", "host": "127.0.0.1", "sender": "cron@example.com",
        "recipients": ["ops@example.com"]}
NEW = {"name": "fresh", "schedule": "0 2 * * *", "command": "true"}
LONE = "\ud800"  # a lone surrogate: valid in a JSON string, not encodable as UTF-8
CRLF_URL = "http://127.0.0.1/a\r\nX-Injected: 1"
LAST = MAX_TICK_MS - 1  # the last tick a run id may name
TOO_BIG_ETAG = '"9999999999999999999"'  # 19 digits, more than an int64 holds


def cursor(*fields: object) -> str:
    """A cursor as the API writes them (base64 of a JSON list), holding ``fields``."""
    raw = json.dumps(list(fields)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# (method, path, keyword arguments of the call, status, field named)
CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    # '$' matched before a trailing newline: every name pattern must match whole.
    ("POST", "/api/jobs", {"json": {**NEW, "name": "job\n"}}, 400, "name"),
    ("POST", "/api/jobs", {"json": {**NEW, "user": "root\n"}}, 400, "user"),
    ("POST", "/api/jobs", {"json": {**NEW, "env": {"HOME\n": "/"}}}, 400, "env.HOME\n"),
    ("POST", "/api/jobs", {"json": {**NEW, "targets": {"zone\n": "a"}}}, 400,
     "targets.zone\n"),
    ("POST", "/api/jobs", {"json": {"name": "fresh", "schedule": "0 2 * * *",
                                    "http": {"url": "http://127.0.0.1/",
                                             "headers": {"X-A\n": "1"}}}}, 400,
     "http.headers.X-A\n"),
    ("POST", "/api/tokens", {"json": {"name": "bob\n", "role": "viewer"}}, 400, "name"),
    ("POST", "/api/alerts/channels", {"json": {**HOOK, "name": "hook2\n"}}, 400, "name"),
    ("POST", "/api/alerts/channels", {"json": {**MAIL, "host": "smtp\n"}}, 400, "host"),
    ("POST", "/api/alerts/channels", {"json": {**MAIL, "sender": "a@example.com\n"}}, 400,
     "sender"),
    ("POST", "/api/alerts/channels", {"json": {**HOOK, "name": "hook2",
                                               "headers": {"X-A\n": "1"}}}, 400,
     "headers.X-A\n"),
    ("GET", "/api/jobs/nightly%0A", {}, 400, "name"),
    ("POST", "/api/jobs/nightly%0A/run", {}, 400, "name"),
    ("GET", "/api/runs?job=nightly%0A", {}, 400, "job"),
    # Lone surrogates: refused before anything is written, wherever they are.
    ("POST", "/api/jobs", {"json": {**NEW, "command": f"echo {LONE}"}}, 400, "command"),
    ("POST", "/api/jobs", {"json": {**NEW, "description": LONE}}, 400, "description"),
    ("POST", "/api/jobs", {"json": {**NEW, "env": {"A": LONE}}}, 400, "env.A"),
    ("POST", "/api/jobs", {"json": {"name": "fresh", "schedule": "0 2 * * *",
                                    "http": {"url": "http://127.0.0.1/", "body": LONE}}},
     400, "http.body"),
    ("PATCH", "/api/jobs/nightly", {"json": {"description": LONE}}, 400, "description"),
    ("PUT", "/api/jobs/nightly", {"json": {**JOB, "command": LONE}}, 400, "command"),
    ("POST", "/api/tokens", {"json": {"name": "bob", "role": "viewer", "x": LONE}}, 400, "x"),
    ("POST", "/api/alerts/channels", {"json": {**MAIL, "recipients": [f"a{LONE}@x.org"]}},
     400, "recipients[0]"),
    ("PUT", "/api/alerts/channels/hook", {"json": {**HOOK, "description": LONE}}, 400,
     "description"),
    ("POST", "/api/jobs/nightly/kill", {"json": {"run_id": f"nightly@1{LONE}"}}, 400,
     "run_id"),
    # One URL validator for HTTP jobs and alert channels.
    ("POST", "/api/jobs", {"json": {"name": "fresh", "schedule": "0 2 * * *",
                                    "http": {"url": CRLF_URL}}}, 400, "http.url"),
    ("POST", "/api/alerts/channels", {"json": {**HOOK, "name": "hook2", "url": CRLF_URL}},
     400, "url"),
    ("POST", "/api/jobs", {"json": {"name": "fresh", "schedule": "0 2 * * *",
                                    "http": {"url": "http://127.0.0.1/a b"}}}, 400,
     "http.url"),
    ("POST", "/api/jobs", {"json": {"name": "fresh", "schedule": "0 2 * * *",
                                    "http": {"url": "http://127.0.0.1:99999/"}}}, 400,
     "http.url"),
    ("POST", "/api/alerts/channels", {"json": {**HOOK, "name": "hook2",
                                               "url": "http://127.0.0.1:99999/"}}, 400, "url"),
    ("POST", "/api/jobs", {"json": {"name": "fresh", "schedule": "0 2 * * *",
                                    "http": {"url": "http://:80/"}}}, 400, "http.url"),
    # ETags are etcd revisions: int64.
    ("PATCH", "/api/jobs/nightly", {"json": {"enabled": False},
                                    "headers": {"If-Match": TOO_BIG_ETAG}}, 400, "If-Match"),
    ("PUT", "/api/jobs/nightly", {"json": JOB, "headers": {"If-Match": TOO_BIG_ETAG}}, 400,
     "If-Match"),
    ("DELETE", "/api/jobs/nightly", {"headers": {"If-Match": TOO_BIG_ETAG}}, 400, "If-Match"),
    ("POST", "/api/jobs/nightly/pause", {"headers": {"If-Match": TOO_BIG_ETAG}}, 400,
     "If-Match"),
    # One parser of run ids, with the same rules everywhere.
    ("GET", "/api/runs/nightly@1%23%C2%B2/live", {}, 400, "record_id"),
    ("GET", "/api/runs/nightly@1%23%EF%BC%91/live", {}, 400, "record_id"),
    ("GET", "/api/runs/nightly@1%23%EF%BC%91", {}, 400, "record_id"),
    ("GET", "/api/runs/nightly@1%230/live", {}, 400, "record_id"),
    ("GET", "/api/runs/nightly@1%231001/live", {}, 400, "record_id"),
    ("GET", "/api/runs/nightly@99999999999999999999/live", {}, 400, "record_id"),
    ("GET", f"/api/runs/nightly@{MAX_TICK_MS}/live", {}, 400, "record_id"),
    ("GET", f"/api/runs/nightly@{MAX_TICK_MS}", {}, 400, "record_id"),
    ("GET", "/api/runs/nightly%0A@1/live", {}, 400, "record_id"),
    # Cursors are checked whole, their numbers included.
    ("GET", f"/api/runs?cursor={cursor(10**30, 'x')}", {}, 400, "cursor"),
    ("GET", f"/api/runs?cursor={cursor(-1, 'x')}", {}, 400, "cursor"),
    ("GET", f"/api/runs?cursor={cursor(-(10**30), 'x')}", {}, 400, "cursor"),
    ("GET", f"/api/runs?q=x&cursor={cursor(1, 'x', 10**30)}", {}, 400, "cursor"),
    ("GET", f"/api/runs?cursor={cursor(1, '', 10**6)}", {}, 400, "cursor"),  # needs its q
    ("GET", f"/api/runs?cursor={cursor(1, LONE)}", {}, 400, "cursor"),
    ("GET", f"/api/runs?q=x&cursor={cursor(10**30, 'x')}", {}, 400, "cursor"),
]


@pytest.fixture
async def api(settings: Settings, admin_token: str, logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(settings, admin_token) as client:
        for path, body in (("/api/jobs", JOB), ("/api/alerts/channels", HOOK)):
            resp = await client.call("POST", path, json=body)
            assert resp.status == 201, await resp.text()
        yield client


async def written(store: EtcdStore, keys: Keyspace, logs: MongoLogStore) -> object:
    """What a request may write: keys of jobs, requests, tokens, channels; the audit."""
    found: list[tuple[str, int]] = []
    for directory in (keys.jobs, keys.last_dir, keys.once_dir, keys.killer_dir, keys.tokens,
                      keys.alert_channels):
        kvs, _ = await store.get_prefix(directory)
        found += [(kv.key, kv.mod_revision) for kv in kvs]
    audit = [(e.action, e.target) for e in await logs.query_audit(limit=1000)]
    return sorted(found), audit


def assert_refused(status: int, body: dict[str, Any], expected: int, field: str) -> None:
    assert status == expected, body
    error = body["error"]
    assert error["code"] == "invalid" and error["message"]
    assert field in [f["field"] for f in error["fields"]], error
    assert all(f["reason"] for f in error["fields"])


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), CASES,
                         ids=[f"{c[0]} {c[1][:50]} {c[4]!r}" for c in CASES])
async def test_bad_input_is_refused_and_nothing_is_written(
    api: Api, store: EtcdStore, keys: Keyspace, logs: MongoLogStore, method: str, path: str,
    kwargs: dict[str, Any], status: int, field: str,
) -> None:
    before = await written(store, keys, logs)
    resp = await api.call(method, path, **kwargs)
    assert resp.content_type == "application/json", await resp.text()
    assert_refused(resp.status, await resp.json(), status, field)
    assert await written(store, keys, logs) == before


async def test_a_refused_name_leaves_the_job_absent(api: Api) -> None:
    """The name with a newline made a job and an audit entry, then dropped the
    connection on its Location header: now there is no such job at all."""
    resp = await api.call("POST", "/api/jobs", json={**NEW, "name": "job\n"})
    assert resp.status == 400
    listed = await api.call("GET", "/api/jobs")
    assert [j["name"] for j in (await listed.json())["jobs"]] == ["nightly"]


NON_ASCII_CREDENTIALS = [  # {id}: the id of a live admin token
    b"Authorization: Bearer cs_{id}_s\xffcret\r\n",
    b"Authorization: Bearer cs_{id}_s\xc3\xa9cret\r\n",
    b"Authorization: Bearer cs_\xc3\xa9_secret\r\n",
    b"Authorization: Bearer \xff\r\n",
    b"Cookie: cronswarm_session=\xc3\xa9.\xc3\xa9\r\n",
    b"Cookie: cronswarm_session=e30.\xff\xfe\r\n",
    b"Cookie: cronswarm_session=\xff.e30\r\n",
]


@pytest.mark.parametrize("credential", NON_ASCII_CREDENTIALS,
                         ids=[c.decode("latin-1").strip() for c in NON_ASCII_CREDENTIALS])
async def test_non_ascii_credentials_are_unauthenticated(
    api: Api, admin_token: str, store: EtcdStore, keys: Keyspace, logs: MongoLogStore,
    credential: bytes,
) -> None:
    token_id = admin_token.split("_")[1].encode()
    credential = credential.replace(b"{id}", token_id)
    before = await written(store, keys, logs)
    for request_line in (b"GET /api/me HTTP/1.1\r\n", b"DELETE /api/jobs/nightly HTTP/1.1\r\n"):
        status, headers, body = await raw_request(api.base, request_line + credential)
        assert status == 401, body
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"]["code"] == "unauthenticated"
    etcd_after, audit_after = await written(store, keys, logs)
    failures = [a for a in audit_after if a[0] == "auth.token_failed"]
    # A bad bearer token is a failed attempt, audited; a session cookie is not one.
    assert len(failures) == (2 if credential.startswith(b"Authorization") else 0)
    assert (etcd_after, [a for a in audit_after if a not in failures]) == before


async def test_the_largest_revision_etcd_holds_is_a_stale_etag(
    api: Api, store: EtcdStore, keys: Keyspace, logs: MongoLogStore,
) -> None:
    """2**63 - 1 is a revision etcd can compare (and the job is not at): 412."""
    before = await written(store, keys, logs)
    resp = await api.call("PATCH", "/api/jobs/nightly", json={"enabled": False},
                          headers={"If-Match": f'"{2**63 - 1}"'})
    assert resp.status == 412, await resp.text()
    assert (await resp.json())["error"]["code"] == "precondition_failed"
    assert await written(store, keys, logs) == before


@pytest.mark.parametrize("path", [
    "/api/runs/nightly@1", "/api/runs/nightly@1/live", "/api/runs/nightly@1%231/live",
    f"/api/runs/nightly@{LAST}", f"/api/runs/nightly@{LAST}/live",
    f"/api/runs/nightly@{LAST}%231000/live", f"/api/runs/nightly@{LAST}%231000",
])
async def test_run_ids_at_the_edges_of_their_range_are_just_absent(api: Api, path: str) -> None:
    resp = await api.call("GET", path)
    assert resp.status == 404, await resp.text()
    assert (await resp.json())["error"]["code"] == "not_found"


EDGE_CURSORS = [cursor(0, ""), cursor(1, "nightly@1#1"), cursor(MAX_TICK_MS, "x")]
SEARCH_CURSORS = [cursor(1, "", 1), cursor(MAX_TICK_MS, "", MAX_TICK_MS)]


@pytest.mark.parametrize("query", [
    *(f"cursor={c}" for c in EDGE_CURSORS),
    *(f"q=x&cursor={c}" for c in EDGE_CURSORS + SEARCH_CURSORS)])
async def test_cursors_at_the_edges_of_their_range_are_pages(api: Api, query: str) -> None:
    """Ticks from 1970 to year 9999, text-search windows as wide: an empty page."""
    resp = await api.call("GET", f"/api/runs?{query}")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["runs"] == []


async def test_a_job_stored_with_a_lone_surrogate_can_still_be_deleted(
    api: Api, store: EtcdStore, keys: Keyspace, logs: MongoLogStore,
) -> None:
    """Written before bodies were checked: deleting it failed on its audit entry
    (500, after the etcd delete). Its entry now keeps the string escaped."""
    await store.put(keys.job("legacy"), json.dumps(
        {"name": "legacy", "schedule": "0 2 * * *", "command": f"echo {LONE}"}).encode())
    resp = await api.call("DELETE", "/api/jobs/legacy")
    assert resp.status == 204, await resp.text()
    assert (await api.call("GET", "/api/jobs/legacy")).status == 404
    [entry] = await logs.query_audit(target="legacy")
    assert entry.action == "job.delete" and entry.before is not None
    assert entry.before["command"] == "echo \\ud800"
