"""Property-based fuzzing of the whole API with schemathesis, from /api/openapi.json.

schemathesis runs as a separate process against a real master (etcd and
MongoDB behind it) with a bounded number of examples per operation; it fails
on any 5xx, on any response that violates the document (status code,
content type, headers, body schema), on a secured operation that answers
without the token, and on data the document forbids that is not refused.
"""

import asyncio
import sys
from pathlib import Path

import pytest

from cronswarm.common import Settings
from cronswarm.logstore import MongoLogStore
from tests.apiclient import running_master

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",  # each secured operation, tried again without the token, must be 401
    "negative_data_rejection",  # data the document forbids must be refused with a 4xx
])
MAX_EXAMPLES = 25  # per operation and phase: the whole test takes about a minute
SEED = 20260601
JOB = {"name": "nightly", "schedule": "0 2 * * *", "command": "echo backup"}


async def schemathesis(base: str, token: str, cwd: Path, *args: str) -> str:
    """Run ``schemathesis run`` against ``base``; returns its report, fails on exit != 0."""
    exe = Path(sys.executable).with_name("schemathesis")
    proc = await asyncio.create_subprocess_exec(
        str(exe), "--no-color", "run", f"{base}/api/openapi.json",
        "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        "--generation-database", "none", "--request-timeout", "30",
        "--suppress-health-check", "all", "-H", f"Authorization: Bearer {token}", *args,
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(240):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-30000:]
    return report


@pytest.mark.slow
@pytest.mark.timeout(480)  # two schemathesis runs of at most 240 s each; ~80 s usually
async def test_fuzz_finds_no_server_error_and_no_schema_violation(
    settings: Settings, admin_token: str, logs: MongoLogStore, tmp_path: Path
) -> None:
    # Run-now requests (no worker here) expire in 2 s and become skipped runs
    # that the run and live-output operations can then reach through links.
    # The fuzzer sends many bad tokens on purpose: lift the per-address limit.
    settings = settings.with_overrides(request_ttl=2, auth_failure_limit=1_000_000)
    async with running_master(settings, admin_token) as api:
        assert (await api.call("POST", "/api/jobs", json=JOB)).status == 201
        # Every operation, in every phase, except revoking tokens: the stateful
        # phase lists the tokens and would revoke the one the run is using.
        report = await schemathesis(api.base, admin_token, tmp_path,
                                    "--exclude-operation-id", "revoke_token",
                                    "--phases", "examples,coverage,fuzzing,stateful")
        assert "Operations:       29 selected" in report, report
        # Revoking, fuzzed on its own (random ids never name the run's token).
        await schemathesis(api.base, admin_token, tmp_path,
                           "--include-operation-id", "revoke_token",
                           "--phases", "coverage,fuzzing")
        assert (await api.call("GET", "/api/me")).status == 200
