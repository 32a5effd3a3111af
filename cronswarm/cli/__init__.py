"""The ``cronswarm`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .. import __version__
from ..common import CronswarmError, Settings
from . import _token, _up
from ._serve import serve_master, serve_worker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cronswarm", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cronswarm {__version__}")
    parser.add_argument("--config", help="TOML settings file (environment variables win)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("master", help="run a master (HTTP API and dashboard)")
    sub.add_parser("worker", help="run a worker")
    _up.add_parser(sub)
    _token.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "up":
            return _up.run(args, args.config)
        settings = Settings.load(config_file=args.config)
        if args.command == "master":
            asyncio.run(serve_master(settings))
            return 0
        if args.command == "worker":
            asyncio.run(serve_worker(settings))
            return 0
        return asyncio.run(_token.run(args, settings))
    except CronswarmError as exc:
        print(f"cronswarm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
