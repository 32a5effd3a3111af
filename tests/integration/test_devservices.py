"""The local servers die with the process that started them (a killed test run
or benchmark leaves no etcd or MongoDB-protocol server behind)."""

import asyncio
import signal
import sys
from pathlib import Path

from cronswarm.worker._proctree import wait_gone
from tests.procs import ROOT

STARTER = """
import sys, threading
from pathlib import Path
from cronswarm.devservices import EtcdServer, MongoServer
servers = [EtcdServer(Path(sys.argv[1]) / "etcd"), MongoServer(Path(sys.argv[1]) / "mongo")]
for server in servers:
    server.start()
print(*(server.process.pid for server in servers), flush=True)
threading.Event().wait()  # until killed
"""


async def test_servers_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    starter = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STARTER, str(tmp_path), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE)
    assert starter.stdout is not None
    async with asyncio.timeout(60):
        pids = {int(p) for p in (await starter.stdout.readline()).split()}
    assert len(pids) == 2
    starter.send_signal(signal.SIGKILL)  # no chance to stop them itself
    await starter.wait()
    assert await wait_gone(pids, 30) == set()
