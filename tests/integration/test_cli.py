"""The ``cronswarm`` client commands against a real master (main() in a thread)."""

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cronswarm.cli import main
from cronswarm.common import Keyspace, RunRecord, RunStatus, Settings
from cronswarm.coord import EtcdStore
from cronswarm.devservices import free_port
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role
from tests.apiclient import Api, running_master
from tests.conftest import make_token
from tests.helpers import wait_for_count
from tests.workerkit import running_worker, wait_final

T0 = 1_767_225_600_000


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], url: str, token: str) -> None:
        self.capsys = capsys
        self.url = url
        self.token = token

    async def __call__(self, *argv: str, token: str | None = None, url: str | None = None
                       ) -> Result:
        connection = ["--url", url or self.url, "--token", token or self.token]
        code = await asyncio.to_thread(main, [*argv, *connection])
        captured = self.capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(code, captured.out, captured.err)


@pytest.fixture
async def master(settings: Settings, admin_token: str, logs: MongoLogStore
                 ) -> AsyncIterator[Api]:
    async with running_master(settings, admin_token) as api:
        yield api


@pytest.fixture
def cli(master: Api, admin_token: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys, master.base, admin_token)


async def test_job_life_cycle(cli: Cli, master: Api) -> None:
    r = await cli("job", "add", "nightly", "--schedule", "0 2 * * *", "--command", "echo hi",
                  "--timezone", "Europe/Paris", "--target", "zone=eu", "--retries", "2")
    assert r.code == 0 and r.out.startswith("created job nightly (revision ")
    job = await (await master.call("GET", "/api/jobs/nightly")).json()
    assert job["targets"] == {"zone": "eu"} and job["retry"]["attempts"] == 3
    r = await cli("job", "ls")
    assert r.code == 0
    header, row = r.out.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "SCHEDULE", "TZ"]
    assert row.startswith("nightly") and "Europe/Paris" in row
    r = await cli("job", "ls", "--json")
    assert [j["name"] for j in r.json()["jobs"]] == ["nightly"]  # type: ignore[index]
    r = await cli("job", "ls", "--paused")
    assert r.out.strip() == "no jobs"
    r = await cli("job", "show", "nightly")
    assert "command" in r.out and "echo hi" in r.out and "revision" in r.out
    r = await cli("job", "edit", "nightly", "--set", "priority=5", "--description", "d")
    assert r.code == 0 and r.out.startswith("updated job nightly")
    r = await cli("job", "show", "nightly", "--json")
    shown = r.json()
    assert shown["priority"] == 5 and shown["description"] == "d"  # type: ignore[index]
    assert (await cli("job", "pause", "nightly")).out.startswith("paused job nightly")
    assert (await cli("job", "resume", "nightly")).out.startswith("resumed job nightly")
    r = await cli("job", "run", "nightly")
    assert r.code == 0 and r.out.startswith("run requested: nightly@")
    r = await cli("job", "kill", "nightly")
    assert r.code == 0 and r.out.strip() == "no live runs of nightly"
    r = await cli("job", "rm", "nightly")
    assert r.code == 0 and r.out.strip() == "deleted job nightly"
    assert (await master.call("GET", "/api/jobs/nightly")).status == 404


async def test_add_and_replace_from_a_file(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"name": "hook", "schedule": "*/5 * * * *",
                                "http": {"url": "https://example.com/ping"}}))
    r = await cli("job", "add", "--file", str(spec), "--json")
    assert r.code == 0 and r.json()["http"]["url"] == "https://example.com/ping"  # type: ignore[index]
    spec.write_text(json.dumps({"schedule": "0 * * * *", "command": "true"}))
    r = await cli("job", "edit", "hook", "--file", str(spec))
    assert r.code == 0 and r.out.startswith("replaced job hook")


async def test_errors_are_one_line_with_distinct_exit_codes(
    cli: Cli, store: EtcdStore, keys: Keyspace
) -> None:
    r = await cli("job", "add", "bad", "--schedule", "every day", "--command", "x")
    assert r.code == 1 and r.out == ""
    assert r.err.startswith("cronswarm: error: schedule: ") and r.err.count("\n") == 1
    r = await cli("job", "show", "missing")
    assert r.code == 1 and "job 'missing' does not exist" in r.err
    await cli("job", "add", "x", "--schedule", "0 2 * * *", "--command", "true")
    r = await cli("job", "rm", "x", "--if-match", '"1"')
    assert r.code == 1 and "changed since revision 1" in r.err
    viewer = await make_token(store, keys, Role.VIEWER)
    r = await cli("job", "rm", "x", token=viewer)
    assert r.code == 3 and "needs role 'admin'" in r.err
    r = await cli("job", "ls", token="cs_0123456789ab_wrong")
    assert r.code == 3 and "unknown or revoked token" in r.err
    r = await cli("job", "ls", url=f"http://127.0.0.1:{free_port()}")
    assert r.code == 4 and "cannot reach the master" in r.err
    r = await cli("job", "ls", url="ftp://nowhere")
    assert r.code == 2
    r = await cli("job", "edit", "x")
    assert r.code == 2 and "nothing to change" in r.err
    r = await cli("job", "add", "y", "--schedule", "* * * * *", "--command", "x",
                  "--target", "nolabel")
    assert r.code == 2 and "--target takes key=value" in r.err


async def test_url_and_token_from_the_environment(
    master: Api, admin_token: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRONSWARM_URL", master.base)
    monkeypatch.setenv("CRONSWARM_TOKEN", admin_token)
    assert await asyncio.to_thread(main, ["workers"]) == 0
    assert capsys.readouterr().out.strip() == "no live workers"
    monkeypatch.delenv("CRONSWARM_TOKEN")
    assert await asyncio.to_thread(main, ["workers"]) == 2
    assert "CRONSWARM_TOKEN" in capsys.readouterr().err


async def test_runs_and_workers(cli: Cli, logs: MongoLogStore, store: EtcdStore,
                                keys: Keyspace) -> None:
    assert (await cli("runs")).out.strip() == "no runs"
    await logs.write_runs([RunRecord(
        run_id=f"a@{T0}", job="a", tick=T0, attempt=1, worker="w1", summary="echo",
        status=RunStatus.FAILED, started=T0, ended=T0 + 1500, exit_code=2,
        output="some output\n")])
    r = await cli("runs", "--job", "a")
    assert r.code == 0 and f"a@{T0}#1" in r.out and "failed" in r.out and "1.5s" in r.out
    r = await cli("runs", "--status", "succeeded", "--json")
    assert r.json() == {"runs": [], "next_cursor": None, "searched_to": None}
    r = await cli("runs", f"a@{T0}")
    assert r.code == 0 and "exit_code 2" in r.out and r.out.endswith("some output\n")
    r = await cli("runs", "--since", "yesterday")
    assert r.code == 1 and "since: " in r.err
    await store.put(keys.worker("w1"), json.dumps(
        {"id": "w1", "host": "h", "labels": {"zone": "eu"}, "running": 0, "max_runs": 4,
         "updated": 10**13}).encode())
    r = await cli("workers")
    assert r.code == 0 and "w1" in r.out and "zone=eu" in r.out and "ok" in r.out
    r = await cli("workers", "--json")
    assert r.json()["workers"][0]["health"] == "ok"  # type: ignore[index]


async def test_tokens_through_the_api(cli: Cli, master: Api, logs: MongoLogStore) -> None:
    r = await cli("token", "create", "--role", "operator", "--name", "ops")
    assert r.code == 0 and "shown once" in r.err
    token = r.out.strip()
    assert token.startswith("cs_")
    me = await (await master.as_token(token).call("GET", "/api/me")).json()
    assert me == {"id": token.split("_")[1], "name": "ops", "role": "operator"}
    r = await cli("token", "ls")
    assert "ops" in r.out and token not in r.out
    r = await cli("token", "create", "--role", "viewer", "--json")
    created = r.json()
    assert created["role"] == "viewer" and created["token"].startswith("cs_")  # type: ignore[index]
    r = await cli("token", "revoke", me["id"])
    assert r.code == 0
    assert (await master.as_token(token).call("GET", "/api/me")).status == 401
    r = await cli("token", "revoke", me["id"])
    assert r.code == 1 and "does not exist" in r.err
    actions = sorted(e.action for e in await logs.query_audit())
    # the revoked token's call is a failed attempt, audited
    assert actions == ["auth.token_failed", "token.create", "token.create", "token.revoke"]


async def test_a_token_with_an_expiry_through_the_api(cli: Cli) -> None:
    r = await cli("token", "create", "--role", "viewer", "--expires-in", "3600", "--json")
    created = r.json()
    assert r.code == 0
    assert created["expires"] == created["created"] + 3_600_000  # type: ignore[index]
    r = await cli("token", "ls")
    assert "EXPIRES" in r.out and "never" in r.out  # the test's admin token never expires
    r = await cli("token", "create", "--role", "viewer", "--expires-in", "0")
    assert r.code != 0 and "expires_in" in r.err


async def test_bootstrap_token_goes_straight_to_etcd_and_is_audited(
    settings: Settings, master: Api, logs: MongoLogStore, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in settings.env().items():
        monkeypatch.setenv(name, value)
    code = await asyncio.to_thread(main, ["token", "create", "--role", "admin", "--bootstrap"])
    out = capsys.readouterr().out
    assert code == 0
    token = out.strip()
    me = await (await master.as_token(token).call("GET", "/api/me")).json()
    assert me["role"] == "admin" and me["name"] == "admin"
    entries = await logs.query_audit()
    assert [e.action for e in entries] == ["token.create"]
    assert entries[0].actor.startswith("cli:") and token not in str(entries[0].to_dict())


async def test_every_job_command_prints_the_api_answer_with_json(
    cli: Cli, master: Api
) -> None:
    r = await cli("job", "add", "nightly", "--schedule", "0 2 * * *", "--command", "true",
                  "--json")
    assert r.code == 0 and r.json()["name"] == "nightly"  # type: ignore[index]
    r = await cli("job", "edit", "nightly", "--set", "priority=3", "--json")
    assert r.json()["priority"] == 3  # type: ignore[index]
    r = await cli("job", "pause", "nightly", "--json")
    assert r.json()["enabled"] is False  # type: ignore[index]
    r = await cli("job", "resume", "nightly", "--json")
    assert r.json()["enabled"] is True  # type: ignore[index]
    r = await cli("job", "run", "nightly", "--json")
    assert r.json()["run_id"].startswith("nightly@")  # type: ignore[index]
    r = await cli("job", "kill", "nightly", "--json")
    assert r.json()["requested"] == []  # type: ignore[index]
    r = await cli("token", "ls", "--json")
    assert [t["role"] for t in r.json()["tokens"]] == ["admin"]  # type: ignore[index]
    r = await cli("job", "rm", "nightly", "--json")
    assert r.json() == {"deleted": "nightly"}
    assert (await master.call("GET", "/api/jobs/nightly")).status == 404


async def test_kill_stops_a_live_run(cli: Cli, settings: Settings, store: EtcdStore,
                                     logs: MongoLogStore) -> None:
    r = await cli("job", "add", "long", "--schedule", "0 0 1 1 *", "--command", "sleep 600")
    assert r.code == 0, r.err
    async with running_worker(settings, store, logs):
        run_id = (await cli("job", "run", "long", "--json")).json()["run_id"]  # type: ignore[index]
        await wait_for_count(logs.runs, {"_id": f"{run_id}#1", "status": "running"},
                             lambda n: n == 1, timeout=30)
        r = await cli("job", "kill", "long", "--run", run_id)
        assert r.code == 0 and r.out.strip() == f"kill requested: {run_id}"
        doc = await wait_final(logs, f"{run_id}#1")
    assert doc["status"] == "killed" and doc["killed_by"].startswith("token:")


async def test_export_then_import_restores_the_job_table(cli: Cli, tmp_path: Path) -> None:
    for argv in (("hourly", "--schedule", "0 * * * *", "--command", "echo hi", "--env", "A=1",
                  "--target", "zone=a", "--retries", "2"),
                 ("poll", "--schedule", "*/5 * * * * *", "--http-url", "https://example.org/",
                  "--disabled", "--set", "timeout=30")):
        assert (await cli("job", "add", *argv)).code == 0
    saved = tmp_path / "jobs.json"
    result = await cli("job", "export", "-o", str(saved))
    assert result.code == 0 and "exported 2 jobs" in result.err
    assert saved.stat().st_mode & 0o777 == 0o600
    exported = json.loads(saved.read_text())["jobs"]
    assert [j["name"] for j in exported] == ["hourly", "poll"]
    assert not {"revision", "next_fire", "last_run", "running"} & {k for j in exported for k in j}
    assert (await cli("job", "export")).json() == {"jobs": exported}  # stdout: the same

    # One job lost, the other changed: import creates the first and leaves the second...
    assert (await cli("job", "rm", "hourly")).code == 0
    assert (await cli("job", "edit", "poll", "--schedule", "0 0 * * *")).code == 0
    result = await cli("job", "import", str(saved))
    assert result.code == 0, result.err
    assert result.out.startswith("created 1, replaced 0, skipped 1")
    assert (await cli("job", "show", "poll", "--json")).json()["schedule"] == "0 0 * * *"
    # ... and --replace puts it back as exported.
    result = await cli("job", "import", str(saved), "--replace", "--json")
    assert result.json() == {"created": [], "replaced": ["hourly", "poll"], "skipped": [],
                             "secrets_to_set": []}
    assert (await cli("job", "export")).json() == {"jobs": exported}


async def test_import_refuses_a_bad_document_and_stops_at_a_bad_job(
        cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "x"}]')
    result = await cli("job", "import", str(bad))
    assert result.code == 2 and "must hold" in result.err
    bad.write_text(json.dumps({"jobs": [
        {"name": "fine", "schedule": "0 * * * *", "command": "true"},
        {"name": "broken", "schedule": "not cron", "command": "true"},
        {"name": "after", "schedule": "0 * * * *", "command": "true"}]}))
    result = await cli("job", "import", str(bad))
    assert result.code == 1
    assert "job broken: schedule" in result.err and "created 1" in result.err
    names = [j["name"] for j in (await cli("job", "export")).json()["jobs"]]  # type: ignore[index]
    assert names == ["fine"]


async def test_export_names_secrets_and_import_says_which_to_set_again(
    settings: Settings, admin_token: str, logs: MongoLogStore, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = "k1:" + base64.b64encode(bytes(range(32))).decode()
    async with running_master(settings.with_overrides(job_secret_keys=keys),
                              admin_token) as api:
        cli = Cli(capsys, api.base, admin_token)
        spec = tmp_path / "job.json"
        spec.write_text(json.dumps({"name": "backup", "schedule": "0 2 * * *",
                                    "command": "echo $DB_PASSWORD",
                                    "secrets": {"env": {"DB_PASSWORD": "hunter2"}}}))
        assert (await cli("job", "add", "--file", str(spec))).code == 0
        saved = tmp_path / "jobs.json"
        result = await cli("job", "export", "-o", str(saved))
        assert "1 jobs hold secrets" in result.err and "backup" in result.err
        assert "hunter2" not in saved.read_text()
        (job,) = json.loads(saved.read_text())["jobs"]
        assert job["secrets_set"] == ["env.DB_PASSWORD"]
        # Replaced, the job keeps the secrets it has; created anew, it has none.
        result = await cli("job", "import", str(saved), "--replace")
        assert result.code == 0 and result.err == ""
        shown = (await cli("job", "show", "backup", "--json")).json()
        assert shown["secrets_set"] == ["env.DB_PASSWORD"]  # type: ignore[index]
        assert (await cli("job", "rm", "backup")).code == 0
        result = await cli("job", "import", str(saved))
        assert result.code == 0 and result.out.startswith("created 1")
        assert "created without their secrets" in result.err and "backup" in result.err
        shown = (await cli("job", "show", "backup", "--json")).json()
        assert shown["secrets_set"] == []  # type: ignore[index]
