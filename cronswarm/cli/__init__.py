"""The ``cronswarm`` command.

Server commands (``master``, ``worker``, ``up``) read the cluster settings;
client commands (``job``, ``runs``, ``workers``, ``token``) talk to a master's
HTTP API (``CRONSWARM_URL``, ``CRONSWARM_TOKEN``); ``secrets`` makes keys and
re-seals jobs' secrets in etcd. Exit codes: 0 success, 1 refused by the master
(or a job's secrets could not be rotated), 2 bad usage or configuration, 3 not
authenticated or not allowed, 4 master (or etcd) unreachable, 5 server error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .. import __version__
from ..common import ConfigError, CronswarmError, ServiceUnavailable, Settings
from . import _jobs, _runs, _secrets, _token, _up
from ._client import CliError, ExitCode, run_client_command
from ._serve import serve_master, serve_worker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cronswarm", description="A distributed crontab.",
        epilog="Client commands read CRONSWARM_URL and CRONSWARM_TOKEN.")
    parser.add_argument("--version", action="version", version=f"cronswarm {__version__}")
    parser.add_argument("--config", help="TOML settings file (environment variables win)")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level (default WARNING; INFO for master, worker, up)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("master", help="run a master (HTTP API and dashboard)")
    sub.add_parser("worker", help="run a worker")
    _up.add_parser(sub)
    _jobs.add_parser(sub)
    _runs.add_parser(sub)
    _token.add_parser(sub)
    _secrets.add_parser(sub)
    return parser


def _exit_code(exc: CronswarmError) -> ExitCode:
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    if isinstance(exc, ServiceUnavailable):
        return ExitCode.UNREACHABLE
    return ExitCode.FAILED


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    server = args.command in ("master", "worker", "up")
    level = "INFO" if server and args.log_level == "WARNING" else args.log_level
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        if args.command == "up":
            return _up.run(args, args.config)
        if args.command == "token":
            return _token.run(args, args.config)
        if args.command == "secrets":
            return _secrets.run(args, args.config)
        if not server:
            return run_client_command(args.client_command, args)
        settings = Settings.load(config_file=args.config)
        if args.command == "master":
            asyncio.run(serve_master(settings))
        else:
            asyncio.run(serve_worker(settings))
        return 0
    except CronswarmError as exc:
        print(f"cronswarm: error: {exc}", file=sys.stderr)
        return int(_exit_code(exc))
    except KeyboardInterrupt:
        return 130
