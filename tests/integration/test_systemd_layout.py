"""A master and a worker started as the systemd units in deploy/systemd say,
with the example env files: the units' ExecStart command, their
EnvironmentFile read as systemd reads it, and nothing else of this process's
environment.

No systemd runs here (it is not PID 1), so this is what is not checked: the
``cronswarm`` user, the hardening options and the cgroup kill (see
``tests/unit/test_systemd_units.py`` for ``systemd-analyze verify``). What the
test changes in the env files, and why: the endpoints, URI, key prefix,
database, addresses and spool point at this test's etcd, MongoDB-protocol
server, ports and directory; the placeholder secrets get real values. With the
suite's plain etcd the etcd TLS and user lines are dropped; a second test runs
an etcd of its own over mutual TLS with authentication on, set up with the
guide's commands, and keeps those lines (paths and password are its own). The
MongoDB URI is the suite's server, without TLS or users (the MongoDB-protocol
server used here has neither). Every other setting is the example file's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import trustme
from aiohttp import ClientSession

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore, etcd_store
from cronswarm.devservices import EtcdServer, EtcdServerTls, find_executable, free_port
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


async def run_layout(master_env: dict[str, str], worker_env: dict[str, str],
                     store: EtcdStore, keys: Keyspace, directory: Path) -> None:
    """Start both units' commands; check /readyz, the worker's registration and
    /metrics behind the token; stop them as systemd would."""
    port = int(master_env["CRONSWARM_MASTER_PORT"])
    worker_port = int(worker_env["CRONSWARM_WORKER_HTTP_PORT"])
    (directory / "master").mkdir()
    (directory / "worker").mkdir()
    master = await start_unit(UNITS[0], master_env, directory / "master")
    worker = await start_unit(UNITS[1], worker_env, directory / "worker")
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
        assert codes == [0, 0], (master.lines[-5:], worker.lines[-5:])
    finally:
        for proc in (worker, master):
            if proc.proc.returncode is None:
                await proc.stop(signal.SIGKILL)
    assert (directory / "spool").is_dir()  # the worker's spool: the env file's, moved here


def local_envs(settings: Settings, directory: Path, **changes: str
               ) -> tuple[dict[str, str], dict[str, str]]:
    master_unit, worker_unit = (SYSTEMD_DIR / name for name in UNITS)
    master_env = unit_env(master_unit, settings, directory, CRONSWARM_MASTER_HOST="127.0.0.1",
                          CRONSWARM_MASTER_PORT=str(free_port()), **changes)
    worker_env = unit_env(worker_unit, settings, directory,
                          CRONSWARM_WORKER_HTTP_HOST="127.0.0.1",
                          CRONSWARM_WORKER_HTTP_PORT=str(free_port()),
                          CRONSWARM_SECRET_KEY=master_env["CRONSWARM_SECRET_KEY"],
                          CRONSWARM_JOB_SECRET_KEYS=master_env["CRONSWARM_JOB_SECRET_KEYS"],
                          **changes)
    return master_env, worker_env


async def test_a_master_and_a_worker_start_from_the_units_and_env_files(
    settings: Settings, store: EtcdStore, keys: Keyspace, tmp_path: Path,
) -> None:
    """The test's plain etcd: the env files' etcd TLS and user lines are dropped."""
    master_env, worker_env = local_envs(settings, tmp_path)
    await run_layout(master_env, worker_env, store, keys, tmp_path)


def etcdctl(etcd: EtcdServer, files: dict[str, Path], *args: str) -> None:
    cmd = [find_executable("etcdctl", "CRONSWARM_ETCDCTL_BIN"), "--endpoints",
           etcd.client_url, "--cacert", str(files["ca"]), "--cert", str(files["cert"]),
           "--key", str(files["key"])]
    subprocess.run([*cmd, *args], check=True, capture_output=True, timeout=30)


async def test_the_guides_layout_with_etcd_over_mutual_tls_and_its_user(
    settings: Settings, tmp_path: Path,
) -> None:
    """An etcd of our own serving clients over mutual TLS with authentication on,
    its user and role made with the guide's commands; the env files' etcd lines
    (prefix /cron, user cronswarm) kept, only the paths and password are this test's."""
    ca = trustme.CA()
    server, client = ca.issue_cert("127.0.0.1", "localhost"), ca.issue_cert("cronswarm")
    files = {"ca": tmp_path / "etcd-ca.pem", "cert": tmp_path / "etcd-client.pem",
             "key": tmp_path / "etcd-client-key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    etcd = EtcdServer(tmp_path / "etcd", tls=EtcdServerTls(
        cert_file=tmp_path / "server.pem", key_file=tmp_path / "server.key",
        ca_file=files["ca"], client_cert_file=files["cert"], client_key_file=files["key"]))
    etcd.start()
    password = secrets.token_urlsafe(16)
    try:
        # docs/deploy.md, "etcd: TLS, the user and its role"
        etcdctl(etcd, files, "user", "add", f"root:{secrets.token_urlsafe(16)}",
                "--interactive=false")
        etcdctl(etcd, files, "user", "grant-role", "root", "root")
        etcdctl(etcd, files, "role", "add", "cronswarm")
        etcdctl(etcd, files, "role", "grant-permission", "cronswarm", "readwrite",
                "--prefix=true", "/cron/")
        etcdctl(etcd, files, "user", "add", f"cronswarm:{password}", "--interactive=false")
        etcdctl(etcd, files, "user", "grant-role", "cronswarm", "cronswarm")
        etcdctl(etcd, files, "auth", "enable")
        example = example_env(SYSTEMD_DIR / UNITS[1])
        assert (example["CRONSWARM_ETCD_USER"], example["CRONSWARM_KEY_PREFIX"]) == (
            "cronswarm", "/cron")
        master_env, worker_env = local_envs(
            settings, tmp_path, CRONSWARM_ETCD_ENDPOINTS=etcd.endpoint,
            CRONSWARM_ETCD_CA_FILE=str(files["ca"]), CRONSWARM_ETCD_CERT_FILE=str(files["cert"]),
            CRONSWARM_ETCD_KEY_FILE=str(files["key"]), CRONSWARM_ETCD_PASSWORD=password,
            CRONSWARM_ETCD_USER=example["CRONSWARM_ETCD_USER"],
            CRONSWARM_KEY_PREFIX=example["CRONSWARM_KEY_PREFIX"])
        store = etcd_store(Settings.load(worker_env))
        try:
            await run_layout(master_env, worker_env, store, Keyspace("/cron"), tmp_path)
        finally:
            await store.close()
    finally:
        etcd.stop()
