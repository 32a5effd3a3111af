"""A master and a worker started as the systemd units in deploy/systemd say,
with the example env files: the units' ExecStart command, their
EnvironmentFile read as systemd reads it, and nothing else of this process's
environment.

No systemd runs here (it is not PID 1), so this is what is not checked: the
``cronswarm`` user, the hardening options and the cgroup kill (see
``tests/unit/test_systemd_units.py`` for ``systemd-analyze verify``). What the
test changes in the env files, and why: the endpoints, URI, key prefix,
database, addresses and spool point at this test's etcd, MongoDB-protocol
server, ports and directory; the etcd TLS and auth lines are dropped (the
test's etcd has neither); the placeholder secrets get real values. Every other
setting is the example file's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import signal
import sys
from pathlib import Path

from aiohttp import ClientSession

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.devservices import free_port
from tests.helpers import wait_for_prefix
from tests.procs import Proc
from tests.units import SYSTEMD_DIR, UNITS, example_env, exec_start, service

DROPPED = ("CRONSWARM_ETCD_CA_FILE", "CRONSWARM_ETCD_CERT_FILE", "CRONSWARM_ETCD_KEY_FILE",
           "CRONSWARM_ETCD_USER", "CRONSWARM_ETCD_PASSWORD")


def unit_env(unit: Path, settings: Settings, directory: Path, **changes: str) -> dict[str, str]:
    env = {k: v for k, v in example_env(unit).items() if k not in DROPPED}
    env.update({
        "CRONSWARM_ETCD_ENDPOINTS": ",".join(settings.etcd_endpoints),
        "MONGODB_URI": settings.mongodb_uri,
        "CRONSWARM_MONGODB_DATABASE": str(settings.mongodb_database),
        "CRONSWARM_KEY_PREFIX": settings.key_prefix,
        "CRONSWARM_SECRET_KEY": secrets.token_hex(32),
        "CRONSWARM_JOB_SECRET_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    })
    if "CRONSWARM_SPOOL_DIR" in env:
        env["CRONSWARM_SPOOL_DIR"] = str(directory / "spool")
    env.update(changes)
    return env


async def start_unit(name: str, env: dict[str, str], directory: Path) -> Proc:
    """Run the unit's ExecStart as systemd would: its EnvironmentFile as the whole
    environment (plus what systemd itself sets), in its WorkingDirectory."""
    unit = SYSTEMD_DIR / name
    argv = exec_start(unit)
    argv[0] = str(Path(sys.executable).parent / Path(argv[0]).name)  # installed here
    assert service(unit)["WorkingDirectory"] == ["/var/lib/cronswarm"]
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(directory), "LANG": "C.UTF-8"}
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=directory, env={**base, **env}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    return Proc(proc, name)


async def test_a_master_and_a_worker_start_from_the_units_and_env_files(
    settings: Settings, store: EtcdStore, keys: Keyspace, tmp_path: Path,
) -> None:
    master_unit, worker_unit = (SYSTEMD_DIR / name for name in UNITS)
    port, worker_port = free_port(), free_port()
    master_env = unit_env(master_unit, settings, tmp_path, CRONSWARM_MASTER_HOST="127.0.0.1",
                          CRONSWARM_MASTER_PORT=str(port))
    worker_env = unit_env(worker_unit, settings, tmp_path,
                          CRONSWARM_WORKER_HTTP_HOST="127.0.0.1",
                          CRONSWARM_WORKER_HTTP_PORT=str(worker_port),
                          CRONSWARM_SECRET_KEY=master_env["CRONSWARM_SECRET_KEY"],
                          CRONSWARM_JOB_SECRET_KEYS=master_env["CRONSWARM_JOB_SECRET_KEYS"])
    (tmp_path / "master").mkdir()
    (tmp_path / "worker").mkdir()
    master = await start_unit(UNITS[0], master_env, tmp_path / "master")
    worker = await start_unit(UNITS[1], worker_env, tmp_path / "worker")
    stops = {name: int(service(SYSTEMD_DIR / name)["TimeoutStopSec"][0]) for name in UNITS}
    try:
        await master.wait_for_line("master listening")
        registered = await wait_for_prefix(store, keys.workers, lambda found: len(found) == 1,
                                           timeout=30)
        (info,) = (json.loads(kv.value) for kv in registered.values())
        assert info["labels"] == {"zone": "a"}  # the env file's CRONSWARM_WORKER_LABELS
        assert info["http"] == f"http://127.0.0.1:{worker_port}"
        token = master_env["CRONSWARM_METRICS_TOKEN"]
        assert token == worker_env["CRONSWARM_METRICS_TOKEN"]
        scraper = {"Authorization": f"Bearer {token}"}
        async with ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            resp = await http.get(f"{base}/readyz")
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["checks"] == {"etcd": "ok", "mongodb": "ok"}
            for url in (f"{base}/metrics", f"{info['http']}/metrics"):
                async with http.get(url) as refused:  # the env files set a token
                    assert refused.status == 401
                async with http.get(url, headers=scraper) as scraped:
                    assert scraped.status == 200
        # systemd stops with SIGTERM (KillMode=mixed: to the main process) and
        # waits TimeoutStopSec before SIGKILL: both end cleanly well within it.
        codes = [await proc.stop(signal.SIGTERM, timeout=stops[proc.name])
                 for proc in (worker, master)]
        assert codes == [0, 0]
    finally:
        for proc in (worker, master):
            if proc.proc.returncode is None:
                await proc.stop(signal.SIGKILL)
    assert (tmp_path / "spool").is_dir()  # the worker's spool: the env file's, moved here
