"""``cronswarm runs`` and ``cronswarm workers`` over the HTTP API."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._client import ApiClient, add_client_options, fetch_list, path, print_json, show_one, table
from ._jobs import fmt_ms


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runs = sub.add_parser("runs", help="search run history, or show one run with its output")
    add_client_options(runs)
    runs.set_defaults(client_command=runs_command)
    runs.add_argument("record_id", nargs="?",
                      help="show this run (<job>@<tick>[#<attempt>]) with its full output")
    runs.add_argument("--job", help="runs of this job")
    runs.add_argument("--status", help="succeeded, failed, timeout, killed, lost, ...")
    runs.add_argument("--worker", help="runs on this worker")
    runs.add_argument("--since", help="ticks from (epoch ms or ISO 8601 with offset)")
    runs.add_argument("--until", help="ticks before (epoch ms or ISO 8601 with offset)")
    runs.add_argument("--grep", help="substring of the output or error")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--cursor", help="next_cursor of a previous page (see --json)")
    workers = sub.add_parser("workers", help="list live workers")
    add_client_options(workers)
    workers.set_defaults(client_command=workers_command)


def _duration(run: dict[str, Any]) -> str:
    value = run.get("duration")
    return f"{value:.1f}s" if isinstance(value, int | float) else "-"


def _show_run(run: dict[str, Any]) -> None:
    fields = [("run", f"{run['run_id']}#{run['attempt']}"), ("job", run["job"]),
              ("status", run["status"]), ("trigger", run["trigger"]),
              ("tick", fmt_ms(run["tick"])), ("started", fmt_ms(run.get("started"))),
              ("ended", fmt_ms(run.get("ended"))), ("duration", _duration(run)),
              ("worker", run["worker"]), ("command", run["summary"])]
    for key in ("exit_code", "http_status", "error", "killed_by"):
        if run.get(key) is not None:
            fields.append((key, str(run[key])))
    for key, value in fields:
        print(f"{key:<9} {value}")
    print(f"--- output ({run['output_bytes']} bytes"
          f"{', truncated' if run['truncated'] else ''}) ---")
    sys.stdout.write(run["output"])
    if run["truncated"]:
        print("\n[... truncated ...]")
        sys.stdout.write(run["output_tail"])


async def runs_command(args: argparse.Namespace, client: ApiClient) -> int:
    if args.record_id:
        return await show_one(client, args, path("runs", args.record_id), _show_run)
    params = {k: str(v) for k, v in (
        ("job", args.job), ("status", args.status), ("worker", args.worker),
        ("since", args.since), ("until", args.until), ("q", args.grep),
        ("limit", args.limit), ("cursor", args.cursor)) if v is not None}
    resp = await client.call("GET", "/api/runs", params=params)
    if args.json:
        print_json(resp.body)
        return 0
    runs = resp.body["runs"]
    searched_to = resp.body.get("searched_to")
    if runs:
        table([[f"{r['run_id']}#{r['attempt']}", r["status"], fmt_ms(r["tick"]), r["worker"],
                _duration(r), "-" if r.get("exit_code") is None else str(r["exit_code"])]
               for r in runs], ["RUN", "STATUS", "TICK (UTC)", "WORKER", "DURATION", "EXIT"])
    elif searched_to is None:
        print("no runs")
        return 0
    if searched_to is not None:
        print(f"searched the runs since {fmt_ms(searched_to)}; older ones not yet")
    if resp.body.get("next_cursor"):
        print(f"more: --cursor {resp.body['next_cursor']}")
    return 0


async def workers_command(args: argparse.Namespace, client: ApiClient) -> int:
    listed = await fetch_list(client, args, "/api/workers", "workers", empty="no live workers")
    if listed is None:
        return 0
    _, workers = listed
    table([[str(w["id"]), str(w["health"]), str(w.get("host", "-")),
            ",".join(f"{k}={v}" for k, v in sorted((w.get("labels") or {}).items())) or "-",
            f"{w.get('running', 0)}/{w.get('max_runs', '-')}",
            str(w.get("cpu_percent", "-")), json.dumps(w.get("load", []))]
           for w in workers], ["ID", "HEALTH", "HOST", "LABELS", "RUNS", "CPU%", "LOAD"])
    return 0
