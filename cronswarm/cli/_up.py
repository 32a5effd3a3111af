"""``cronswarm up``: the whole system on one machine, for development and demos.

Starts etcd and a MongoDB-protocol server (unless CRONSWARM_ETCD_ENDPOINTS /
MONGODB_URI are given), one master and N workers as child processes, creates
an admin token on first start and prints it with the dashboard URL, and stops
everything on Ctrl-C or SIGTERM (children get SIGTERM when ``up`` itself dies).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..common import ConfigError, Keyspace, Settings, SystemClock
from ..coord import check_etcd_access, etcd_store
from ..devservices import EtcdServer, MongoServer, dying_with_parent
from ..logstore import AuditEntry, MongoLogStore
from ..master import Role, TokenStore
from ..master._jobs import write_audit

log = logging.getLogger(__name__)


# Settings that only make sense with CRONSWARM_ETCD_ENDPOINTS.
_OWN_ETCD_ONLY = ("CRONSWARM_ETCD_CA_FILE", "CRONSWARM_ETCD_CERT_FILE", "CRONSWARM_ETCD_KEY_FILE",
                  "CRONSWARM_ETCD_USER", "CRONSWARM_ETCD_PASSWORD")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="start etcd, MongoDB, a master and workers locally")
    up.add_argument("--workers", type=int, default=2, help="how many workers (default 2)")
    up.add_argument("--host", default="127.0.0.1", help="master bind address")
    up.add_argument("--port", type=int, default=8080, help="master port (default 8080)")
    up.add_argument("--data-dir", default="var", help="where local servers keep data")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


async def _admin_token(settings: Settings, token_file: Path) -> str | None:
    """Create the first admin token if none exists; returns it (or None)."""
    store = etcd_store(settings)
    logs = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database)
    try:
        await check_etcd_access(store, settings.key_prefix)
        tokens = TokenStore(store, Keyspace(settings.key_prefix))
        if await tokens.any_admin():
            return None
        now = SystemClock().now_ms()
        token, record = await tokens.create(name="admin", role=Role.ADMIN,
                                            created_by="cronswarm-up", now_ms=now)
        # Recorded like every other token creation (the API's and the CLI's).
        await write_audit(logs, AuditEntry(now, "cronswarm-up", "token.create",
                                           f"token:{record.token_id}", None,
                                           record.to_public()))
    finally:
        await logs.close()
        await store.close()
    token_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError("master", f"exited with code {proc.returncode} during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)  # readiness probe of a child process
    raise ConfigError("master", f"did not answer on {url} within {timeout:.0f}s")


def run(args: argparse.Namespace, config_file: str | None) -> int:
    if args.workers < 0:
        raise ConfigError("--workers", "must be 0 or more")
    if not _port_free(args.host, args.port):
        raise ConfigError("--port", f"{args.host}:{args.port} is in use; pick another --port")
    data = Path(args.data_dir).resolve()
    env = dict(os.environ)
    if not env.get("CRONSWARM_ETCD_ENDPOINTS"):
        for var in _OWN_ETCD_ONLY:
            if env.get(var):
                raise ConfigError(var, "is for an etcd of yours: set CRONSWARM_ETCD_ENDPOINTS "
                                       "too (the etcd 'up' starts has no TLS and no users)")
    servers: list[EtcdServer | MongoServer] = []
    children: list[subprocess.Popen[bytes]] = []
    stop = {"flag": False}

    def request_stop(signum: int, frame: object) -> None:
        stop["flag"] = True

    def start_server(server: EtcdServer | MongoServer, label: str, var: str, address: str
                     ) -> None:
        """Start ``server`` and name its ``address`` in ``var``."""
        server.start()
        servers.append(server)
        env[var] = address
        print(f"{label:<12}{address}  (data in {server.data_dir})", flush=True)

    old_handlers = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not env.get("CRONSWARM_ETCD_ENDPOINTS"):
            etcd = EtcdServer(data / "etcd")
            start_server(etcd, "etcd", "CRONSWARM_ETCD_ENDPOINTS", etcd.endpoint)
        if not env.get("MONGODB_URI"):
            mongo = MongoServer(data / "mongodb")
            start_server(mongo, "mongodb", "MONGODB_URI", mongo.uri)
        env.setdefault("CRONSWARM_SPOOL_DIR", str(data / "spool"))
        settings = Settings.load(env, config_file)
        token = asyncio.run(_admin_token(settings, data / "admin-token"))
        base = [sys.executable, "-m", "cronswarm"]
        if config_file:
            base += ["--config", config_file]
        master_env = {**env, "CRONSWARM_MASTER_HOST": args.host,
                      "CRONSWARM_MASTER_PORT": str(args.port)}
        master = subprocess.Popen(dying_with_parent([*base, "master"]), env=master_env)
        children.append(master)
        for i in range(args.workers):
            worker_env = {**env, "CRONSWARM_WORKER_ID": f"{socket.gethostname()[:40]}-w{i + 1}"}
            children.append(subprocess.Popen(dying_with_parent([*base, "worker"]),
                                             env=worker_env))
        url_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        url = f"http://{url_host}:{args.port}/"
        _wait_http(url + "healthz", 60, master)
        print(f"dashboard   {url}", flush=True)
        if token:
            print(f"admin token {token}\n            (shown once; also saved in "
                  f"{data / 'admin-token'}, mode 600)", flush=True)
        else:
            print(f"admin token already exists (see {data / 'admin-token'} if this "
                  f"machine created it)", flush=True)
        print(json.dumps({"dashboard": url, "workers": args.workers}), flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while not stop["flag"]:
            if any(c.poll() is not None for c in children):
                dead = [c for c in children if c.poll() is not None]
                print(f"a child process exited (code {dead[0].returncode}); stopping",
                      file=sys.stderr, flush=True)
                break
            signal.sigtimedwait([signal.SIGCHLD], 0.5)
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=45)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for server in reversed(servers):
            server.stop()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        print("stopped", flush=True)
