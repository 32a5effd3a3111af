"""``cronswarm job ls|show|add|edit|rm|pause|resume|run|kill|export|import`` over the HTTP
API (export and import: ``_jobs_io``)."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

from ..common import from_ms
from ._client import (
    ApiClient,
    CliError,
    Command,
    ExitCode,
    add_client_options,
    fetch_list,
    path,
    print_json,
    show_one,
    table,
)
from ._jobs_io import job_export, job_import


def fmt_ms(ms: object) -> str:
    if not isinstance(ms, int):
        return "-"
    return from_ms(ms).strftime("%Y-%m-%d %H:%M:%S")


def _pairs(values: list[str] | None, flag: str) -> dict[str, str] | None:
    if values is None:
        return None
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{flag} takes key=value, not {item!r}", ExitCode.USAGE)
        out[key] = value
    return out


def _read_file(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        data = json.loads(text)
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}", ExitCode.USAGE) from None
    except ValueError as exc:
        raise CliError(f"{name} is not JSON: {exc}", ExitCode.USAGE) from None
    if not isinstance(data, dict):
        raise CliError(f"{name} must hold a JSON object (a job)", ExitCode.USAGE)
    return data


def _field_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true, null, objects), else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _job_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job fields given as options (only those given)."""
    out: dict[str, Any] = {}
    simple = {"schedule": args.schedule, "command": args.command, "timezone": args.timezone,
              "description": args.description, "timeout": args.timeout_s,
              "overlap": args.overlap, "misfire": args.misfire}
    out.update({k: v for k, v in simple.items() if v is not None})
    if args.http_url is not None:
        out["http"] = {"url": args.http_url, "method": args.http_method or "GET"}
    if args.enabled is not None:
        out["enabled"] = args.enabled
    if args.retries is not None:
        out["retry"] = {"attempts": args.retries + 1}
    for key, flag in (("targets", "--target"), ("env", "--env")):
        pairs = _pairs(getattr(args, key), flag)
        if pairs is not None:
            out[key] = pairs
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set takes field=value, not {item!r}", ExitCode.USAGE)
        out[key] = _field_value(value)
    return out


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schedule", help="cron expression (5 fields, or 6 with seconds)")
    parser.add_argument("--command", help="shell command")
    parser.add_argument("--http-url", help="URL to call (an HTTP job)")
    parser.add_argument("--http-method", help="HTTP method (default GET)")
    parser.add_argument("--timezone", help="IANA timezone (default UTC)")
    parser.add_argument("--description")
    parser.add_argument("--timeout", dest="timeout_s", type=float,
                        help="seconds before the run is killed")
    parser.add_argument("--overlap", choices=["allow", "forbid", "replace"])
    parser.add_argument("--misfire", choices=["skip", "run_latest", "run_all"])
    parser.add_argument("--retries", type=int, help="retries after a failed attempt")
    parser.add_argument("--enabled", dest="enabled", action="store_true", default=None)
    parser.add_argument("--disabled", dest="enabled", action="store_false")
    parser.add_argument("--target", dest="targets", action="append", metavar="KEY=VALUE",
                        help="worker label required (repeatable)")
    parser.add_argument("--env", action="append", metavar="KEY=VALUE",
                        help="environment variable (repeatable)")
    parser.add_argument("--set", action="append", metavar="FIELD=VALUE",
                        help="any other job field; VALUE is JSON or a string (repeatable)")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    job = sub.add_parser("job", help="manage jobs through a master's API")
    jsub = job.add_subparsers(dest="job_cmd", required=True)

    def leaf(name: str, command: Command, help_text: str) -> argparse.ArgumentParser:
        parser = jsub.add_parser(name, help=help_text)
        add_client_options(parser)
        parser.set_defaults(client_command=command)
        return parser

    ls = leaf("ls", job_ls, "list jobs")
    ls.add_argument("--name", help="only names containing this")
    ls.add_argument("--enabled", dest="enabled", action="store_const", const="true")
    ls.add_argument("--paused", dest="enabled", action="store_const", const="false")
    ls.add_argument("--status", help="status of the last run (or 'never')")
    ls.add_argument("--target", help="only jobs targeting this worker label key=value")
    ls.add_argument("--limit", type=int, default=1000, help="at most this many (per page)")
    show = leaf("show", job_show, "show one job")
    show.add_argument("name")
    add = leaf("add", job_add, "create a job from options or a JSON file")
    add.add_argument("name", nargs="?", help="job name (or 'name' in --file)")
    add.add_argument("--file", help="JSON job document ('-' for stdin)")
    _add_job_options(add)
    edit = leaf("edit", job_edit, "change fields of a job (or replace it with --file)")
    edit.add_argument("name")
    edit.add_argument("--file", help="replace the whole job with this JSON document")
    edit.add_argument("--if-match", help="fail unless the job is still at this ETag")
    _add_job_options(edit)
    rm = leaf("rm", job_rm, "delete a job")
    rm.add_argument("name")
    rm.add_argument("--if-match", help="fail unless the job is still at this ETag")
    for name, verb in (("pause", "stop scheduling"), ("resume", "resume scheduling")):
        parser = leaf(name, partial(job_toggle, name), f"{verb} a job")
        parser.add_argument("name")
    run = leaf("run", job_run, "run a job once now, on some worker")
    run.add_argument("name")
    kill = leaf("kill", job_kill, "stop a job's live runs (or one run)")
    kill.add_argument("name")
    kill.add_argument("--run", dest="run_id", help="only this run id (<job>@<tick>)")
    export = leaf("export", job_export, "write every job as one JSON document")
    export.add_argument("-o", "--output", help="file to write (mode 0600; default stdout)")
    imp = leaf("import", job_import, "create the jobs of a document written by job export")
    imp.add_argument("file", help="the JSON document ('-' for stdin)")
    imp.add_argument("--replace", action="store_true",
                     help="replace jobs that exist already (default: leave them)")


def _job_rows(jobs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for job in jobs:
        last = job.get("last_run") or {}
        rows.append([
            str(job["name"]), str(job["schedule"]), str(job["timezone"]),
            "yes" if job["enabled"] else "paused", fmt_ms(job.get("next_fire")),
            str(last.get("status", "-")), str(len(job.get("running", []))),
        ])
    return rows


async def job_ls(args: argparse.Namespace, client: ApiClient) -> int:
    params = {k: str(v) for k, v in (("name", args.name), ("enabled", args.enabled),
                                    ("status", args.status), ("target", args.target),
                                    ("limit", args.limit)) if v is not None}
    listed = await fetch_list(client, args, "/api/jobs", "jobs", empty="no jobs", params=params)
    if listed is None:
        return 0
    body, jobs = listed
    table(_job_rows(jobs), ["NAME", "SCHEDULE", "TZ", "ENABLED", "NEXT FIRE (UTC)",
                            "LAST", "RUNNING"])
    if body.get("next_cursor"):
        print(f"... {body['total'] - len(jobs)} more; use --limit or filters")
    return 0


def _show_job(job: dict[str, Any]) -> None:
    last = job.get("last_run")
    extra = {"revision": job.get("revision"), "next_fire": fmt_ms(job.get("next_fire"))}
    if "last_run" in job:
        extra["last_run"] = (f"{last['status']} {last['record_id']} at {fmt_ms(last['tick'])}"
                             if last else "-")
        extra["running"] = ", ".join(job.get("running", [])) or "-"
    skip = {"revision", "next_fire", "last_run", "running"}
    width = max(len(k) for k in [*job, *extra])
    for key, value in job.items():
        if key in skip:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        print(f"{key.ljust(width)}  {text}")
    for key, value in extra.items():
        print(f"{key.ljust(width)}  {value}")


async def job_show(args: argparse.Namespace, client: ApiClient) -> int:
    return await show_one(client, args, path("jobs", args.name), _show_job)


def _written(args: argparse.Namespace, verb: str, body: dict[str, Any]) -> int:
    if args.json:
        print_json(body)
    else:
        print(f"{verb} job {body['name']} (revision {body['revision']})")
    return 0


async def job_add(args: argparse.Namespace, client: ApiClient) -> int:
    job = _read_file(args.file) if args.file else {}
    job.update(_job_fields(args))
    if args.name:
        job["name"] = args.name
    if "name" not in job:
        raise CliError("give the job's name (or 'name' in --file)", ExitCode.USAGE)
    resp = await client.call("POST", "/api/jobs", body=job)
    return _written(args, "created", resp.body)


async def job_edit(args: argparse.Namespace, client: ApiClient) -> int:
    headers = {"If-Match": args.if_match} if args.if_match else {}
    changes = _job_fields(args)
    if args.file:
        body = _read_file(args.file)
        body.update(changes)
        resp = await client.call("PUT", path("jobs", args.name), body=body, headers=headers)
        return _written(args, "replaced", resp.body)
    if not changes:
        raise CliError("nothing to change: give options such as --schedule, --set or --file",
                       ExitCode.USAGE)
    resp = await client.call("PATCH", path("jobs", args.name), body=changes, headers=headers)
    return _written(args, "updated", resp.body)


async def job_rm(args: argparse.Namespace, client: ApiClient) -> int:
    headers = {"If-Match": args.if_match} if args.if_match else {}
    await client.call("DELETE", path("jobs", args.name), headers=headers)
    if args.json:
        print_json({"deleted": args.name})
    else:
        print(f"deleted job {args.name}")
    return 0


async def job_toggle(action: str, args: argparse.Namespace, client: ApiClient) -> int:
    resp = await client.call("POST", path("jobs", args.name, action))
    return _written(args, "paused" if action == "pause" else "resumed", resp.body)


async def job_run(args: argparse.Namespace, client: ApiClient) -> int:
    resp = await client.call("POST", path("jobs", args.name, "run"))
    if args.json:
        print_json(resp.body)
    else:
        print(f"run requested: {resp.body['run_id']}")
    return 0


async def job_kill(args: argparse.Namespace, client: ApiClient) -> int:
    body = {"run_id": args.run_id} if args.run_id else {}
    resp = await client.call("POST", path("jobs", args.name, "kill"), body=body)
    if args.json:
        print_json(resp.body)
    elif resp.body["requested"]:
        print("kill requested: " + ", ".join(resp.body["requested"]))
    else:
        print(f"no live runs of {args.name}")
    return 0
