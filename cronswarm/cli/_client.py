"""The CLI's HTTP client of the master API, and how its failures become exit codes.

The master is named by ``--url`` or ``CRONSWARM_URL``, the caller by
``--token`` or ``CRONSWARM_TOKEN``. Every failure is one line on stderr and a
distinct exit code (see ``ExitCode``); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from ..common import CronswarmError


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the master refused the request (invalid, not found, conflict)
    USAGE = 2  # bad command line or configuration
    AUTH = 3  # no token, a bad token, or a role too weak (401/403)
    UNREACHABLE = 4  # the master cannot be reached
    SERVER = 5  # the master or a service behind it failed (5xx)


class CliError(CronswarmError):
    """A failure to report in one line, with its exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


def error_message(status: int, body: Any) -> str:
    """One line from the API's error shape (or from whatever the server sent)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {status}"
    message = str(error.get("message", f"HTTP {status}"))
    fields = error.get("fields")
    if isinstance(fields, list) and fields:
        details = "; ".join(f"{f.get('field')}: {f.get('reason')}" for f in fields
                            if isinstance(f, dict))
        if details:
            return details
    return message


def _exit_code(status: int) -> ExitCode:
    if status in (401, 403):
        return ExitCode.AUTH
    if status >= 500:
        return ExitCode.SERVER
    return ExitCode.FAILED


class ApiClient:
    """JSON over HTTP to one master, as one token."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"--url / CRONSWARM_URL must be http(s)://host:port, not {url!r}",
                           ExitCode.USAGE)
        self.base = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def call(self, method: str, path: str, *, body: Any = None,
                   params: Mapping[str, str] | None = None,
                   headers: Mapping[str, str] | None = None) -> ApiResponse:
        """Send one request; raises CliError unless the answer is a success."""
        hdrs = {"Accept": "application/json", **(headers or {})}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                    method, self.base + path, json=body, params=params, headers=hdrs,
                    allow_redirects=False) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, dict(resp.headers)
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(f"cannot reach the master at {self.base}: {reason}",
                           ExitCode.UNREACHABLE) from None
        except aiohttp.ClientError as exc:
            raise CliError(f"request to {self.base} failed: {exc}", ExitCode.UNREACHABLE) from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if status >= 400:
            raise CliError(error_message(status, data), _exit_code(status))
        if raw and data is None:
            raise CliError(f"the server at {self.base} did not answer JSON (HTTP {status}); "
                           "is --url a cronswarm master?", ExitCode.SERVER)
        return ApiResponse(status, data, resp_headers)


def path(*parts: str) -> str:
    """An API path with each dynamic part percent-encoded."""
    return "/api/" + "/".join(quote(p, safe="") for p in parts)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help="master URL (default: $CRONSWARM_URL)")
    parser.add_argument("--token", default=None,
                        help="API token (default: $CRONSWARM_TOKEN)")
    parser.add_argument("--request-timeout", type=float, default=30.0,
                        help="seconds to wait for the master (default 30)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def client_from(args: argparse.Namespace) -> ApiClient:
    url = args.url or os.environ.get("CRONSWARM_URL")
    if not url:
        raise CliError("no master given: set CRONSWARM_URL or pass --url", ExitCode.USAGE)
    token = args.token or os.environ.get("CRONSWARM_TOKEN")
    if not token:
        raise CliError("no token given: set CRONSWARM_TOKEN or pass --token", ExitCode.USAGE)
    return ApiClient(url, token, timeout=args.request_timeout)


Command = Callable[[argparse.Namespace, ApiClient], Coroutine[Any, Any, int]]


def run_client_command(command: Command, args: argparse.Namespace) -> int:
    """Run one API command; a CliError becomes its message on stderr and exit code."""
    try:
        return asyncio.run(command(args, client_from(args)))
    except CliError as exc:
        print(f"cronswarm: error: {exc}", file=sys.stderr)
        return int(exc.code)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


async def show_one(client: ApiClient, args: argparse.Namespace, url: str,
                   show: Callable[[dict[str, Any]], None]) -> int:
    """GET one object: printed whole with ``--json``, else by ``show``."""
    resp = await client.call("GET", url)
    if args.json:
        print_json(resp.body)
    else:
        show(resp.body)
    return 0


async def fetch_list(client: ApiClient, args: argparse.Namespace, url: str, key: str, *,
                     empty: str, params: dict[str, str] | None = None
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """GET a list: printed whole with ``--json``, ``empty`` printed when it lists
    no ``key``; else (a table to print) the body and its items."""
    resp = await client.call("GET", url, params=params)
    if args.json:
        print_json(resp.body)
        return None
    items = resp.body[key]
    if not items:
        print(empty)
        return None
    return resp.body, items


def table(rows: list[list[str]], header: list[str]) -> None:
    """Print left-aligned columns."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
