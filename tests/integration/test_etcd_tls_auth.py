"""etcd over TLS with users: a real three-member cluster serving clients over
mutual TLS, with authentication on and simple tokens living 2 s.

Masters and workers run jobs through it end to end; every setting that cannot
work (wrong CA, expired certificate, wrong password, a user without read or
write on the prefix) ends the process at start with one line saying what to
change; and a store whose token expired authenticates again by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import ClientSession

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import CoordUnavailable, EtcdStore, etcd_store
from cronswarm.devservices import (
    EtcdCluster,
    EtcdServer,
    EtcdServerTls,
    find_executable,
    free_port,
)
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role
from tests import procs
from tests.conftest import make_token
from tests.helpers import wait_for_count

pytestmark = pytest.mark.slow  # a three-member cluster, about a minute in all

TOKEN_TTL = 2  # seconds a simple token lives unused (--auth-token-ttl)
PASSWORDS = {"root": "root-pw", "cron": "cron-pw", "reader": "reader-pw",
             "stranger": "stranger-pw"}


@dataclass(frozen=True)
class SecureEtcd:
    endpoints: tuple[str, ...]
    prefix: str
    ca: Path
    cert: Path
    key: Path
    wrong_ca: Path
    expired_cert: Path
    expired_key: Path
    cluster: EtcdCluster


def _write(path: Path, blob: trustme.Blob) -> Path:
    blob.write_to_path(str(path))
    return path


def _etcdctl(etcd: SecureEtcd, *args: str, user: str | None = None) -> None:
    cmd = [find_executable("etcdctl", "CRONSWARM_ETCDCTL_BIN"),
           "--endpoints", ",".join(f"https://{e}" for e in etcd.endpoints),
           "--cacert", str(etcd.ca), "--cert", str(etcd.cert), "--key", str(etcd.key)]
    if user is not None:
        cmd += ["--user", f"{user}:{PASSWORDS[user]}"]
    subprocess.run([*cmd, *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def secure_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEtcd]:
    base = tmp_path_factory.mktemp("etcd-tls")
    ca, wrong = trustme.CA(), trustme.CA()
    # One server certificate for every member: the client checks each against
    # the first endpoint's host (see target_name_override).
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("cronswarm-client")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    expired = ca.issue_cert("cronswarm-client", not_before=past - dt.timedelta(days=30),
                            not_after=past)
    tls = EtcdServerTls(
        cert_file=_write(base / "server.pem", server.cert_chain_pems[0]),
        key_file=_write(base / "server.key", server.private_key_pem),
        ca_file=_write(base / "ca.pem", ca.cert_pem),
        client_cert_file=_write(base / "client.pem", client.cert_chain_pems[0]),
        client_key_file=_write(base / "client.key", client.private_key_pem),
    )
    cluster = EtcdCluster(base, size=3, tls=tls, extra_args=[
        "--auth-token", "simple", "--auth-token-ttl", str(TOKEN_TTL)])
    cluster.start()
    try:
        assert tls.ca_file and tls.client_cert_file and tls.client_key_file
        etcd = SecureEtcd(
            endpoints=tuple(cluster.endpoints), prefix=f"/tls-{uuid.uuid4().hex[:8]}",
            ca=tls.ca_file, cert=tls.client_cert_file, key=tls.client_key_file,
            wrong_ca=_write(base / "wrong-ca.pem", wrong.cert_pem),
            expired_cert=_write(base / "expired.pem", expired.cert_chain_pems[0]),
            expired_key=_write(base / "expired.key", expired.private_key_pem),
            cluster=cluster)
        p = etcd.prefix
        grants = {"cron": ("readwrite", f"{p}/"), "reader": ("read", f"{p}/"),
                  "stranger": ("readwrite", "/elsewhere/")}
        _etcdctl(etcd, "user", "add", f"root:{PASSWORDS['root']}", "--interactive=false")
        for user, (access, prefix) in grants.items():
            _etcdctl(etcd, "role", "add", f"{user}-role")
            _etcdctl(etcd, "role", "grant-permission", f"{user}-role", access, prefix,
                     "--prefix=true")
            _etcdctl(etcd, "user", "add", f"{user}:{PASSWORDS[user]}", "--interactive=false")
            _etcdctl(etcd, "user", "grant-role", user, f"{user}-role")
        _etcdctl(etcd, "auth", "enable")
        yield etcd
    finally:
        cluster.stop()


def secure_settings(etcd: SecureEtcd, mongo_uri: str, tmp_path: Path, **changes: Any
                    ) -> Settings:
    values: dict[str, Any] = {
        "etcd_endpoints": etcd.endpoints, "mongodb_uri": mongo_uri,
        "mongodb_database": f"test_{uuid.uuid4().hex[:10]}", "key_prefix": etcd.prefix,
        "etcd_ca_file": str(etcd.ca), "etcd_cert_file": str(etcd.cert),
        "etcd_key_file": str(etcd.key), "etcd_user": "cron",
        "etcd_password": PASSWORDS["cron"], "lease_ttl": 3, "handoff_delay": 0.2,
        "stats_interval": 1.0, "shutdown_grace": 5.0, "log_flush_interval": 0.1,
        "spool_dir": str(tmp_path / "spool"),
    }
    values.update(changes)
    return Settings.load({}, **values)


async def test_masters_and_workers_run_jobs_over_tls_with_a_user(
    secure_etcd: SecureEtcd, mongo_uri: str, tmp_path: Path,
) -> None:
    settings = secure_settings(secure_etcd, mongo_uri, tmp_path)
    store = etcd_store(settings)
    logs = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database)
    port = free_port()
    token = await make_token(store, Keyspace(settings.key_prefix), Role.ADMIN)
    worker = await procs.start("worker", settings, CRONSWARM_WORKER_ID="tls-w1")
    master = await procs.start("master", settings, CRONSWARM_MASTER_PORT=str(port))
    try:
        await worker.wait_for_line("ready with")
        await master.wait_for_line("master listening")
        async with ClientSession() as http, http.post(
                f"http://127.0.0.1:{port}/api/jobs",
                headers={"Authorization": f"Bearer {token}"},
                json={"name": "over-tls", "schedule": "* * * * * *",
                      "command": "echo hello over tls"}) as resp:
            assert resp.status == 201, await resp.text()
        await wait_for_count(logs.runs, {"job": "over-tls", "status": "succeeded"},
                             lambda n: n >= 2, timeout=60)
    finally:
        codes = await asyncio.gather(worker.stop(), master.stop())
        await store.delete(settings.key_prefix + "/", prefix=True)
        await store.close()
        await logs.client.drop_database(settings.mongodb_database)
        await logs.close()
    assert codes == [0, 0], (worker.lines[-20:], master.lines[-20:])
    said = worker.lines + master.lines
    assert not [line for line in said if "Traceback" in line or "does not answer" in line]


START_DEADLINE = procs.START_DEADLINE


@pytest.mark.parametrize(("command", "changes", "expected"), [
    ("worker", {"etcd_ca_file": "wrong_ca"},
     ("failed: certificate verify failed — is CRONSWARM_ETCD_CA_FILE the CA that signed "
      "etcd's certificate?")),
    ("worker", {"etcd_cert_file": "expired_cert", "etcd_key_file": "expired_key"},
     "failed: etcd refused our client certificate '{expired_cert}': it expired on 20"),
    ("master", {"etcd_password": "not-the-password"},
     "etcd refused user 'cron': wrong user name or password"),
    ("worker", {"etcd_user": None, "etcd_password": None},
     ("etcd does not let us read keys under '{prefix}' without a user: permission denied; "
      "set CRONSWARM_ETCD_USER and CRONSWARM_ETCD_PASSWORD")),
    ("master", {"etcd_user": "stranger", "etcd_password": PASSWORDS["stranger"]},
     ("etcd user 'stranger' may not read keys under '{prefix}': permission denied; "
      "grant a role readwrite on prefix {prefix}/")),
    ("worker", {"etcd_user": "reader", "etcd_password": PASSWORDS["reader"]},
     ("etcd user 'reader' may not write keys under '{prefix}': permission denied; "
      "grant a role readwrite on prefix {prefix}/")),
], ids=["wrong-ca", "expired-client-cert", "wrong-password", "no-user", "other-prefix",
        "read-only"])
async def test_settings_etcd_refuses_end_the_process_at_once_with_one_line(
    secure_etcd: SecureEtcd, mongo_uri: str, tmp_path: Path, command: str,
    changes: dict[str, Any], expected: str,
) -> None:
    paths = {"wrong_ca": secure_etcd.wrong_ca, "expired_cert": secure_etcd.expired_cert,
             "expired_key": secure_etcd.expired_key}
    changes = {k: str(paths[v]) if v in paths else v for k, v in changes.items()}
    settings = secure_settings(secure_etcd, mongo_uri, tmp_path, **changes)
    code, proc = await procs.start_and_wait(command, settings)
    assert code == 2, proc.lines
    want = expected.format(prefix=secure_etcd.prefix, expired_cert=secure_etcd.expired_cert)
    assert want in procs.the_error(proc), proc.lines
    assert not [line for line in proc.lines if "Traceback" in line], proc.lines


async def after_token_expiry(store: EtcdStore, action: Callable[[], Awaitable[None]]) -> None:
    """Leave ``store`` unused until etcd drops its token, then run ``action``.

    etcd forgets a simple token TOKEN_TTL seconds after its last use (checked
    once a second): idling is what expires it, so the wait here is the stimulus,
    not a synchronisation. Proof that it expired is the store authenticating
    again during ``action``; a slow etcd that kept the token gets another round.
    """
    async with asyncio.timeout(60):
        while True:
            before = store.stats["reauthenticate"]
            await asyncio.sleep(TOKEN_TTL * 2)  # unused, so the token expires
            await action()
            if store.stats["reauthenticate"] > before:
                return


async def test_the_store_authenticates_again_when_its_token_expires(
    secure_etcd: SecureEtcd, mongo_uri: str, tmp_path: Path,
) -> None:
    settings = secure_settings(secure_etcd, mongo_uri, tmp_path)
    store = etcd_store(settings)
    key = f"{settings.key_prefix}/expiry/{uuid.uuid4().hex[:8]}"
    try:
        revision = await store.put(key, b"first")
        assert store.stats["authenticate"] == 1

        async def read() -> None:
            got = await store.get(key)
            assert got is not None and got.value == b"first"

        await after_token_expiry(store, read)

        async def watch() -> None:
            async with contextlib.aclosing(store.watch_prefix(key, revision)) as batches:
                batch = await anext(batches)
            assert [e.kv.value for e in batch] == [b"first"]

        await after_token_expiry(store, watch)  # a watch opened with an expired token
        lease = await store.grant_lease(30)

        async def keep_alive() -> None:
            assert await store.keepalive(lease) > 0
            await read()

        await after_token_expiry(store, keep_alive)
        await store.revoke_lease(lease)
        assert store.stats["authenticate"] >= 4
        assert store.stats["errors"] == 0
    finally:
        await store.delete(key)
        await store.close()


async def test_one_endpoint_is_checked_against_its_own_host(
    secure_etcd: SecureEtcd, mongo_uri: str, tmp_path: Path,
) -> None:
    for endpoint in (secure_etcd.endpoints[0],
                     secure_etcd.endpoints[1].replace("127.0.0.1", "localhost")):
        settings = secure_settings(secure_etcd, mongo_uri, tmp_path, etcd_endpoints=(endpoint,))
        store = etcd_store(settings)
        key = f"{settings.key_prefix}/one/{uuid.uuid4().hex[:8]}"
        try:
            await store.put(key, b"x")
            got = await store.get(key)
            assert got is not None and got.value == b"x"
        finally:
            await store.delete(key)
            await store.close()


async def test_up_refuses_tls_settings_without_an_etcd_of_yours(
    secure_etcd: SecureEtcd, tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CRONSWARM_ETCD_ENDPOINTS"}
    env.update(CRONSWARM_ETCD_CA_FILE=str(secure_etcd.ca),
               PYTHONPATH=str(procs.ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronswarm", "up", "--data-dir", str(tmp_path / "var"),
        "--port", str(free_port()), cwd=procs.ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(START_DEADLINE):
        _, err = await child.communicate()
    assert child.returncode == 2
    assert err.decode().strip() == (
        "cronswarm: error: CRONSWARM_ETCD_CA_FILE: is for an etcd of yours: set "
        "CRONSWARM_ETCD_ENDPOINTS too (the etcd 'up' starts has no TLS and no users)")
    assert not (tmp_path / "var").exists()  # nothing was started


async def test_an_expired_etcd_certificate_ends_the_start_with_one_line(
    mongo_uri: str, tmp_path: Path,
) -> None:
    ca = trustme.CA()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    server = ca.issue_cert("127.0.0.1", not_before=past - dt.timedelta(days=30),
                           not_after=past)
    etcd = EtcdServer(tmp_path / "etcd", tls=EtcdServerTls(
        cert_file=_write(tmp_path / "server.pem", server.cert_chain_pems[0]),
        key_file=_write(tmp_path / "server.key", server.private_key_pem),
        probe_verifies=False))
    etcd.start()
    try:
        settings = Settings.load(
            {}, etcd_endpoints=(etcd.endpoint,), mongodb_uri=mongo_uri,
            etcd_ca_file=str(_write(tmp_path / "ca.pem", ca.cert_pem)))
        started = time.monotonic()
        proc = await procs.start("worker", settings)
        try:
            async with asyncio.timeout(START_DEADLINE):
                code = await proc.proc.wait()
        finally:
            await proc.stop()
        assert time.monotonic() - started < START_DEADLINE
    finally:
        etcd.stop()
    assert code == 2, proc.lines
    expected = (f"cronswarm: error: TLS handshake with etcd at {etcd.endpoint} failed: "
                "etcd's certificate has expired — renew it")
    assert [line for line in proc.lines if line.startswith("cronswarm: error:")] == [
        expected], proc.lines


async def test_tls_to_a_plain_etcd_ends_the_start_with_one_line(
    secure_etcd: SecureEtcd, settings: Settings,
) -> None:
    plain = settings.with_overrides(etcd_ca_file=str(secure_etcd.ca))
    code, proc = await procs.start_and_wait("worker", plain)
    assert code == 2, proc.lines
    assert procs.the_error(proc).endswith(
        "failed: etcd does not speak TLS there — start it with --cert-file/--key-file and "
        "https:// client URLs, or unset CRONSWARM_ETCD_CA_FILE"), proc.lines


async def test_the_store_fails_over_to_another_member_with_its_user(
    secure_etcd: SecureEtcd, mongo_uri: str, tmp_path: Path,
) -> None:
    """Last in the module: it kills the member the store talks to (the first
    endpoint), then starts it again."""
    settings = secure_settings(secure_etcd, mongo_uri, tmp_path)
    store = etcd_store(settings)
    key = f"{settings.key_prefix}/failover/{uuid.uuid4().hex[:8]}"
    first = secure_etcd.cluster.members[0]
    try:
        await store.put(key, b"before")
        first.kill()
        # Calls in flight when the member died fail; callers retry, as here.
        async with asyncio.timeout(30):
            while True:
                try:
                    await store.put(key, b"after")
                    break
                except CoordUnavailable:
                    await asyncio.sleep(0.05)  # retry backoff, not synchronisation
        got = await store.get(key)
        assert got is not None and got.value == b"after"
        # The other member either knew the token or made the store authenticate again.
        assert store.stats["authenticate"] == 1 + store.stats["reauthenticate"], store.stats
    finally:
        first.start()
        secure_etcd.cluster.wait_healthy()
        await store.delete(key)
        await store.close()
