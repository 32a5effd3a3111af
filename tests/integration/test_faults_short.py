"""The fault harness's short mode (benchmarks/faults.py --short): real processes
(3 etcd members, MongoDB, a master, 5 workers on shifted clocks behind proxies)
through each fault once — kill -9, SIGSTOP past the lease, an etcd member
stopped, a worker partitioned three ways, MongoDB stopped — and not one
duplicate, silent miss, overlap of a forbid job, process left behind or
execution without a record (README: "Under each fault"; the 30-minute soak is
``python -m benchmarks.faults``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.alone  # its 4 s leases assume a machine not saturated by other tests
@pytest.mark.timeout(420)
async def test_each_fault_once_leaves_no_duplicate_miss_overlap_orphan_or_lost_record(
    tmp_path: Path,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.faults", "--short", "--keep", str(tmp_path),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    result = json.loads(text.strip().splitlines()[-1])
    total = result["total"]
    assert {w["fault"] for w in result["windows"]} == {
        "none", "kill9", "sigstop", "etcd_member", "blackhole", "delay", "drop_replies",
        "mongodb"}, text
    assert total["ticks"] > 0 and total["executions"] > 0, text
    assert result["failed"] == {}, text
    assert proc.returncode == 0, text
    assert result["worker_exit_codes"] == [0] * 5, text
