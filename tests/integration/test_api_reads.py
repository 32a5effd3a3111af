"""Read endpoints on a real master: runs (filters, cursor pages), one run with its
full output, workers, cron preview, tokens, whoami."""

import datetime as dt
import hashlib
import json
import time
from collections.abc import AsyncIterator

import pytest

from cronswarm.common import Keyspace, RunRecord, RunStatus, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from tests.apiclient import Api, running_master

# A midnight a year before today: the runs are a year old whatever the date, as
# a quiet job's history is (a text search must still find them on its first page).
T0 = (int(time.time()) // 86_400 - 365) * 86_400_000


@pytest.fixture
async def api(settings: Settings, admin_token: str, logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(settings, admin_token) as client:
        yield client


def run(job: str, second: int, status: RunStatus, attempt: int = 1, **kw: object) -> RunRecord:
    tick = T0 + second * 1000
    return RunRecord(run_id=f"{job}@{tick}", job=job, tick=tick, attempt=attempt,
                     worker="w1" if second % 2 else "w2", summary="echo", status=status,
                     started=tick + 10, ended=tick + 2010, **kw)  # type: ignore[arg-type]


async def test_runs_filters_and_cursor_pages(api: Api, logs: MongoLogStore) -> None:
    await logs.write_runs([run("a", i, RunStatus.SUCCEEDED, output=f"line {i}\n")
                           for i in range(5)])
    await logs.write_runs([run("b", 0, RunStatus.FAILED, error="boom", exit_code=3)])

    async def ids(query: str) -> list[str]:
        resp = await api.call("GET", "/api/runs?" + query)
        assert resp.status == 200, await resp.text()
        return [f"{r['job']}:{(r['tick'] - T0) // 1000}" for r in (await resp.json())["runs"]]

    assert await ids("job=a") == [f"a:{i}" for i in (4, 3, 2, 1, 0)]
    assert await ids("status=failed") == ["b:0"]
    assert await ids("worker=w1&job=a") == ["a:3", "a:1"]
    assert await ids(f"job=a&since={T0 + 2000}&until={T0 + 4000}") == ["a:3", "a:2"]
    since = dt.datetime.fromtimestamp(T0 / 1000 + 3, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert await ids(f"job=a&since={since}") == ["a:4", "a:3"]
    assert await ids("q=LINE+2") == ["a:2"]  # a year old, and few runs: all searched at once
    assert await ids("q=boom") == ["b:0"]
    seen: list[str] = []
    cursor = ""
    while True:
        body = await (await api.call("GET", f"/api/runs?job=a&limit=2{cursor}")).json()
        seen += [r["run_id"] for r in body["runs"]]
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert seen == [f"a@{T0 + i * 1000}" for i in (4, 3, 2, 1, 0)]


async def test_one_run_with_full_output_and_latest_attempt(api: Api,
                                                           logs: MongoLogStore) -> None:
    await logs.write_runs([
        run("a", 0, RunStatus.FAILED, attempt=1, output="first try\n"),
        run("a", 0, RunStatus.SUCCEEDED, attempt=2, output="head\n", output_tail="tail\n",
            truncated=True, output_bytes=200_000),
    ])
    rid = f"a@{T0}"
    first = await (await api.call("GET", f"/api/runs/{rid}%231")).json()
    assert first["attempt"] == 1 and first["output"] == "first try\n"
    latest = await (await api.call("GET", f"/api/runs/{rid}")).json()
    assert latest["attempt"] == 2 and latest["status"] == "succeeded"
    assert latest["output"] == "head\n" and latest["output_tail"] == "tail\n"
    assert latest["truncated"] is True and latest["output_bytes"] == 200_000
    assert latest["duration"] == 2.0
    missing = await api.call("GET", f"/api/runs/a@{T0 + 1}")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"


async def test_workers_show_health_labels_stats_and_runs(
    api: Api, store: EtcdStore, keys: Keyspace
) -> None:
    now = await (await api.call("GET", "/api/me")).json()  # any call: the master is up
    assert now["role"] == "admin"
    fresh = {"id": "w-fresh", "host": "h1", "labels": {"zone": "eu"}, "running": 1,
             "max_runs": 4, "cpu_percent": 3.5, "updated": 10**13}
    busy = {**fresh, "id": "w-busy", "running": 4}
    stale = {**fresh, "id": "w-stale", "updated": 1}
    for worker in (fresh, busy, stale):
        await store.put(keys.worker(worker["id"]), json.dumps(worker).encode())
    await store.put(keys.worker("w-junk"), b"not json")
    await store.put(keys.running("a", "a@1"),
                    json.dumps({"run_id": "a@1", "worker": "w-fresh"}).encode())
    body = await (await api.call("GET", "/api/workers")).json()
    workers = {w["id"]: w for w in body["workers"]}
    assert set(workers) == {"w-fresh", "w-busy", "w-stale"}
    assert workers["w-fresh"]["health"] == "ok"
    assert workers["w-busy"]["health"] == "saturated"
    assert workers["w-stale"]["health"] == "stale"
    assert workers["w-fresh"]["labels"] == {"zone": "eu"}
    assert workers["w-fresh"]["cpu_percent"] == 3.5
    assert workers["w-fresh"]["running_runs"] == ["a@1"]
    assert workers["w-busy"]["running_runs"] == []


async def test_cron_preview(api: Api) -> None:
    body = await (await api.call("GET", "/api/preview?expr=0+*/6+*+*+*&n=3")).json()
    assert body["tz"] == "UTC" and len(body["next"]) == 3
    assert all(t.endswith("+00:00") and t[14:19] == "00:00" for t in body["next"])
    seconds = await (await api.call("GET", "/api/preview?expr=*/15+*+*+*+*+*&n=4")).json()
    assert len({t[17:19] for t in seconds["next"]}) == 4  # 6 fields: seconds first
    never = await (await api.call("GET", "/api/preview?expr=0+0+30+2+*")).json()
    assert never["next"] == []
    bad = await (await api.call("GET", "/api/preview?expr=61+*+*+*+*")).json()
    assert bad["error"]["fields"][0]["field"] == "expr"
    assert "61" in bad["error"]["fields"][0]["reason"]


async def test_tokens_secret_shown_once_and_revocation_works_at_once(
    api: Api, store: EtcdStore, keys: Keyspace
) -> None:
    created = await api.call("POST", "/api/tokens", json={"name": "ci-bot", "role": "viewer"})
    assert created.status == 201
    body = await created.json()
    secret = body["token"]
    assert secret.startswith(f"cs_{body['id']}_") and body["role"] == "viewer"
    # etcd keeps only a SHA-256 of the secret part, never the token itself.
    stored = await store.get(keys.token(body["id"]))
    assert stored is not None
    part = secret.removeprefix(f"cs_{body['id']}_")
    assert part not in stored.value.decode()
    assert json.loads(stored.value)["digest"] == hashlib.sha256(part.encode()).hexdigest()
    listed = await (await api.call("GET", "/api/tokens")).json()
    ci = [t for t in listed["tokens"] if t["name"] == "ci-bot"]
    assert ci == [{k: v for k, v in body.items() if k != "token"}]
    assert secret not in json.dumps(listed) and "digest" not in json.dumps(listed)
    bot = api.as_token(secret)
    assert (await (await bot.call("GET", "/api/me")).json())["name"] == "ci-bot"
    assert (await api.call("DELETE", f"/api/tokens/{body['id']}")).status == 204
    assert (await bot.call("GET", "/api/me")).status == 401
    assert (await api.call("DELETE", f"/api/tokens/{body['id']}")).status == 404
