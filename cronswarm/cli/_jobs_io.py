"""``cronswarm job export|import``: the job table as one JSON document, over the API.

``export`` pages through ``GET /api/jobs`` and keeps each job's own fields
(what ``POST /api/jobs`` takes: not its revision, next fire, last or live
runs). ``import`` creates each job of such a document through the API (so
each is written, audited and started afresh as any new job), and leaves jobs
that exist already alone, or replaces them with ``--replace``.

Job secrets are write-only: the document names them (``secrets_set``) but
holds no value. A job created by ``import`` has none (both commands say which
jobs need theirs set again); a job replaced keeps the secrets it has.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ._client import ApiClient, CliError, ExitCode, path, print_json

# Fields of the API's job view that describe its state, not the job.
VIEW_ONLY = ("revision", "next_fire", "last_run", "running")
SECRET_NAMES = "secrets_set"  # kept in the document; never sent back (read-only)
PAGE = 1000


async def all_jobs(client: ApiClient) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
        body = (await client.call("GET", "/api/jobs", params=params)).body
        jobs.extend(body["jobs"])
        cursor = body.get("next_cursor")
        if not cursor:
            return jobs


def job_document(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k not in VIEW_ONLY}


async def job_export(args: argparse.Namespace, client: ApiClient) -> int:
    jobs = sorted((job_document(j) for j in await all_jobs(client)), key=lambda j: j["name"])
    text = json.dumps({"jobs": jobs}, indent=2, sort_keys=True) + "\n"
    with_secrets = [j["name"] for j in jobs if j.get(SECRET_NAMES)]
    if with_secrets:
        print(f"{len(with_secrets)} jobs hold secrets, which are write-only and not "
              f"exported (only their names): {', '.join(with_secrets)}", file=sys.stderr)
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    # Jobs' environments may hold credentials: readable by the owner only.
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    except OSError as exc:
        raise CliError(f"cannot write {args.output}: {exc.strerror or exc}",
                       ExitCode.USAGE) from None
    print(f"exported {len(jobs)} jobs to {args.output}", file=sys.stderr)
    return 0


def _read_jobs(name: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(sys.stdin.read() if name == "-" else Path(name).read_text())
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}", ExitCode.USAGE) from None
    except ValueError as exc:
        raise CliError(f"{name} is not JSON: {exc}", ExitCode.USAGE) from None
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, list) or not all(
            isinstance(j, dict) and isinstance(j.get("name"), str) for j in jobs):
        raise CliError(f'{name} must hold {{"jobs": [job, ...]}} (as job export writes)',
                       ExitCode.USAGE)
    return jobs


async def job_import(args: argparse.Namespace, client: ApiClient) -> int:
    jobs = _read_jobs(args.file)
    existing = {j["name"] for j in await all_jobs(client)}
    outcome: dict[str, list[str]] = {"created": [], "replaced": [], "skipped": [],
                                     "secrets_to_set": []}
    for job in jobs:
        name = job["name"]
        body = {k: v for k, v in job.items() if k != SECRET_NAMES}
        try:
            if name not in existing:
                await client.call("POST", "/api/jobs", body=body)
                outcome["created"].append(name)
                if job.get(SECRET_NAMES):
                    outcome["secrets_to_set"].append(name)
            elif args.replace:  # (a replace that names no secret keeps them)
                await client.call("PUT", path("jobs", name), body=body)
                outcome["replaced"].append(name)
            else:
                outcome["skipped"].append(name)
        except CliError as exc:  # say how far it got, then fail
            done = ", ".join(f"{k} {len(outcome[k])}" for k in ("created", "replaced",
                                                                  "skipped"))
            raise CliError(f"job {name}: {exc} ({done} before it)", exc.code) from None
    if args.json:
        print_json(outcome)
    else:
        print(f"created {len(outcome['created'])}, replaced {len(outcome['replaced'])}, "
              f"skipped {len(outcome['skipped'])} (exist already"
              f"{'' if args.replace else '; --replace replaces them'})")
    if outcome["secrets_to_set"]:
        print("created without their secrets (set them again: README, Job secrets): "
              + ", ".join(outcome["secrets_to_set"]), file=sys.stderr)
    return 0
