"""MONGODB_URI over TLS, against a MongoDB-protocol server serving TLS with
certificates made here: a real master and worker run a job whose record
reaches the server; with mutual TLS, a client certificate is needed; a
certificate the CA in the URI did not sign, or a missing client certificate,
ends the start at once with one line naming the URI option."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from aiohttp import ClientSession

from cronswarm.common import Settings
from cronswarm.devservices import MongoServer, free_port
from cronswarm.logstore import MongoLogStore
from tests import procs
from tests.conftest import TEST_RETENTION_DAYS
from tests.helpers import wait_for_count
from tests.procs import start_and_wait, the_error


@dataclass(frozen=True)
class Certs:
    ca: Path  # signed the server's and the client's certificates
    other_ca: Path  # signed nothing here
    server_chain: Path
    server_key: Path
    client: Path  # certificate and key in one PEM, for tlsCertificateKeyFile


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("mongodb-certs")
    ca, other_ca = trustme.CA(), trustme.CA()
    made = Certs(ca=folder / "ca.pem", other_ca=folder / "other-ca.pem",
                 server_chain=folder / "server.pem", server_key=folder / "server.key",
                 client=folder / "client.pem")
    ca.cert_pem.write_to_path(made.ca)
    other_ca.cert_pem.write_to_path(made.other_ca)
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(made.server_key)
    for i, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(made.server_chain, append=i > 0)
    ca.issue_cert("cronswarm-client").private_key_and_cert_chain_pem.write_to_path(made.client)
    return made


def tls_server(folder: Path, certs: Certs, *, mutual: bool) -> MongoServer:
    args = ["--tls-cert-file", str(certs.server_chain), "--tls-key-file", str(certs.server_key)]
    options = f"&tls=true&tlsCAFile={certs.ca}"
    if mutual:
        args += ["--tls-ca-file", str(certs.ca), "--tls-require-client-cert"]
        options += f"&tlsCertificateKeyFile={certs.client}"
    return MongoServer(folder, in_memory=True, extra_args=args, uri_options=options)


@pytest.fixture(scope="module")
def mongo_tls(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[MongoServer]:
    server = tls_server(tmp_path_factory.mktemp("mongodb-tls"), certs, mutual=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mongo_mutual_tls(tmp_path_factory: pytest.TempPathFactory, certs: Certs
                     ) -> Iterator[MongoServer]:
    server = tls_server(tmp_path_factory.mktemp("mongodb-mtls"), certs, mutual=True)
    server.start()
    yield server
    server.stop()


def tls_uri(server: MongoServer, ca: Path, client: Path | None = None) -> str:
    uri = f"mongodb://{server.host}:{server.port}/?directConnection=true&tls=true&tlsCAFile={ca}"
    return uri + (f"&tlsCertificateKeyFile={client}" if client else "")


@pytest.fixture
async def tls_logs(settings: Settings, mongo_tls: MongoServer
                   ) -> AsyncIterator[MongoLogStore]:
    mongo = MongoLogStore(mongo_tls.uri, database=settings.mongodb_database,
                          default_retention_days=TEST_RETENTION_DAYS)
    yield mongo
    await mongo.client.drop_database(settings.mongodb_database)
    await mongo.close()


async def test_a_job_run_by_a_worker_over_tls_reaches_the_server(
    settings: Settings, admin_token: str, mongo_tls: MongoServer, certs: Certs,
    tls_logs: MongoLogStore,
) -> None:
    port = free_port()
    own = settings.with_overrides(mongodb_uri=tls_uri(mongo_tls, certs.ca), master_port=port)
    master = await procs.start("master", own)
    worker = await procs.start("worker", own, CRONSWARM_WORKER_ID="tls-w1")
    try:
        await master.wait_for_line("master listening")
        await worker.wait_for_line("ready with")
        base = f"http://127.0.0.1:{port}"
        async with ClientSession(headers={"Authorization": f"Bearer {admin_token}"}) as http:
            resp = await http.post(f"{base}/api/jobs", json={
                "name": "over-tls", "schedule": "* * * * * *", "command": "echo over tls"})
            assert resp.status == 201, await resp.text()
            done = {"job": "over-tls", "status": "succeeded"}
            await wait_for_count(tls_logs.runs, done, lambda n: n >= 1, timeout=30)
            doc = await tls_logs.runs.find_one(done)
            assert doc is not None
            assert (doc["worker"], doc["output"], doc["exit_code"]) == ("tls-w1", "over tls\n", 0)
            # the master reads it back over TLS too
            runs = await (await http.get(f"{base}/api/runs?job=over-tls&limit=50")).json()
            assert doc["run_id"] in {run["run_id"] for run in runs["runs"]}
    finally:
        codes = await asyncio.gather(worker.stop(), master.stop())
    assert codes == [0, 0], (worker.lines[-20:], master.lines[-20:])
    assert not [line for line in (*worker.lines, *master.lines)
                if "MongoDB" in line and ("WARNING" in line or "error" in line)]


@pytest.mark.parametrize("command", ["worker", "master"])
async def test_with_mutual_tls_a_client_certificate_starts(
    settings: Settings, mongo_mutual_tls: MongoServer, certs: Certs, command: str,
) -> None:
    own = settings.with_overrides(mongodb_uri=tls_uri(mongo_mutual_tls, certs.ca, certs.client))
    code, proc = await start_and_wait(command, own)
    assert code is None or code == 0, proc.lines  # it was ready; stopped by us
    assert not [line for line in proc.lines if "error" in line.lower()], proc.lines
    assert not [line for line in proc.lines if "MongoDB does not answer" in line], proc.lines


@pytest.mark.parametrize("command", ["worker", "master"])
async def test_with_mutual_tls_no_client_certificate_ends_the_start_with_one_line(
    settings: Settings, mongo_mutual_tls: MongoServer, certs: Certs, command: str,
) -> None:
    own = settings.with_overrides(mongodb_uri=tls_uri(mongo_mutual_tls, certs.ca))
    code, proc = await start_and_wait(command, own)
    assert code == 2, proc.lines
    assert the_error(proc) == (
        "MongoDB ended our TLS handshake — if it asks for a client certificate, give "
        "MONGODB_URI tlsCertificateKeyFile (certificate and key in one PEM, signed by a CA "
        "the server trusts); if it does not serve TLS, drop tls=true")


@pytest.mark.parametrize("command", ["worker", "master"])
async def test_a_ca_that_did_not_sign_the_server_ends_the_start_with_one_line(
    settings: Settings, mongo_tls: MongoServer, certs: Certs, command: str,
) -> None:
    own = settings.with_overrides(mongodb_uri=tls_uri(mongo_tls, certs.other_ca))
    code, proc = await start_and_wait(command, own)  # within procs.START_DEADLINE
    assert code == 2, proc.lines
    assert the_error(proc) == (
        "TLS handshake with MongoDB failed: certificate verify failed — is tlsCAFile in "
        "MONGODB_URI the CA that signed the servers' certificates?")
