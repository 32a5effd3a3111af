"""``cronswarm up`` from nothing: its own etcd and MongoDB-protocol server, a
master and two workers; the dashboard answers, a job runs, the first admin
token is audited, and Ctrl-C (SIGINT) or SIGTERM leaves no process behind."""

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from aiohttp import ClientSession

from cronswarm.devservices import free_port
from cronswarm.logstore import MongoLogStore
from tests.helpers import wait_for_count
from tests.procs import ROOT, Proc


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
async def test_up_starts_everything_and_stops_without_orphans(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    port = free_port()
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items()
           if k not in ("CRONSWARM_ETCD_ENDPOINTS", "MONGODB_URI")}  # up starts its own
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    data = tmp_path / "var"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronswarm", "up", "--port", str(port), "--workers", "2",
        "--data-dir", str(data), cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    up = Proc(child, "up", child.stdout)
    logs: MongoLogStore | None = None
    family: list[psutil.Process] = []
    try:
        summary = json.loads(await up.wait_for_line('{"dashboard"', timeout=60))
        assert summary == {"dashboard": f"http://127.0.0.1:{port}/", "workers": 2}
        uri = (await up.wait_for_line("mongodb ")).split()[1]
        token = (data / "admin-token").read_text().strip()
        assert (await up.wait_for_line("admin token ")).split()[2] == token  # shown once
        assert oct((data / "admin-token").stat().st_mode & 0o777) == "0o600"
        family = psutil.Process(child.pid).children(recursive=True)
        # etcd, the MongoDB-protocol server, one master and two workers.
        assert len(family) >= 5, [p.cmdline() for p in family]

        base = summary["dashboard"].rstrip("/")
        async with ClientSession() as http:
            async with http.get(summary["dashboard"]) as resp:  # on to the login page
                assert resp.status == 200
                assert resp.url.path == "/login"
            assert time.monotonic() - started < 60
            async with http.get(base + "/api/jobs") as resp:
                assert resp.status == 401  # no default credentials
            auth = {"Authorization": f"Bearer {token}"}
            async with http.post(base + "/api/jobs", headers=auth, json={
                    "name": "hello", "schedule": "* * * * * *",
                    "command": "echo hello from up"}) as resp:
                assert resp.status == 201, await resp.text()
            logs = MongoLogStore(uri)
            await wait_for_count(logs.runs, {"job": "hello", "status": "succeeded"},
                                 lambda n: n >= 2, timeout=60)
            async with http.get(base + "/api/runs?job=hello&status=succeeded&limit=1",
                                headers=auth) as resp:
                runs = (await resp.json())["runs"]
            assert "hello from up" in runs[0]["output"]
            async with http.get(base + "/api/audit", headers=auth) as resp:
                entries = (await resp.json())["entries"]
            # Newest first: the job, then the token up created before anything.
            assert [e["action"] for e in entries] == ["job.create", "token.create"]
            assert entries[0]["actor"].startswith("token:admin(")
            assert entries[1]["actor"] == "cronswarm-up"
    finally:
        if logs is not None:  # before its server goes away with up
            await logs.close()
        code = await up.stop(stop_signal, timeout=60)
    assert code == 0, "\n".join(up.lines[-30:])
    assert up.lines[-1] == "stopped"
    left = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [p.cmdline() for p in left]
