"""Shared by the benchmarks: a server to run against, and realistic run records."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cronswarm.common import RunRecord, RunStatus, Trigger
from cronswarm.devservices import MongoServer

DAY_MS = 86_400_000


@contextlib.contextmanager
def mongodb(data_dir: str | None = None) -> Iterator[tuple[str, str]]:
    """(uri, description): MONGODB_URI if set, else a local server started here."""
    given = os.environ.get("MONGODB_URI")
    if given:
        yield given, "MONGODB_URI"
        return
    with contextlib.ExitStack() as stack:
        path = data_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        server = MongoServer(Path(path) / "mongodb")
        server.start(timeout=120)
        stack.callback(server.stop)
        yield server.uri, "SecantusDB (local, on disk)"


def status_of(n: int) -> RunStatus:
    """A fixed mix: 90% succeeded, 6% failed, 2% timeout, then killed, lost, skipped."""
    bucket = n % 1000
    for limit, status in ((900, RunStatus.SUCCEEDED), (960, RunStatus.FAILED),
                          (980, RunStatus.TIMEOUT), (990, RunStatus.KILLED),
                          (995, RunStatus.LOST)):
        if bucket < limit:
            return status
    return RunStatus.SKIPPED


def make_record(job: int, tick: int, n: int, *, workers: int = 20) -> RunRecord:
    status = status_of(n * 7919)
    failed = status in (RunStatus.FAILED, RunStatus.TIMEOUT)
    if failed and n % 7 == 0:
        output = f"copying batch {n}\nERROR: disk full on /var/spool ({n} bytes left)\n"
    elif failed:
        output = f"connecting to db-{n % 5}\nERROR: connection refused\n"
    else:
        output = f"tick {tick}: processed {n % 997} items in {n % 89} ms\n"
    return RunRecord(
        run_id=f"job-{job:04d}@{tick}", job=f"job-{job:04d}", tick=tick, attempt=1,
        worker=f"worker-{(job + n) % workers:02d}", summary=f"/opt/jobs/job-{job:04d}.sh",
        status=status, trigger=Trigger.SCHEDULE, started=tick + 3 + n % 50,
        ended=None if status is RunStatus.RUNNING else tick + 200 + n % 5000,
        exit_code=1 if failed else (0 if status is RunStatus.SUCCEEDED else None),
        error="exit status 1" if failed else None,
        output=output, output_bytes=len(output),
    )


def summarize(samples: list[float]) -> dict[str, float]:
    """Milliseconds: the first (cold) sample, then median and p95 of the rest."""
    ms = [s * 1000 for s in samples]
    warm = sorted(ms[1:]) or ms
    p95 = warm[min(len(warm) - 1, round(0.95 * (len(warm) - 1)))]
    return {"cold_ms": round(ms[0], 2), "median_ms": round(statistics.median(warm), 2),
            "p95_ms": round(p95, 2), "samples": len(ms)}
