"""``cronswarm secrets keygen|rotate``: the keys that seal jobs' secrets.

``keygen`` prints a new ``id:base64-key`` entry for
``CRONSWARM_JOB_SECRET_KEYS``. To rotate: put the new entry first, keep the
old ones after it, give that list to every master and worker, then run
``rotate`` (cluster settings from the environment or ``--config``): every
job's secrets are re-sealed under the first key. Once it reports no failure,
the old keys can be dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import sys

from ..common import (
    KEYS_SETTING,
    ConfigError,
    Keyring,
    Keyspace,
    Settings,
    SystemClock,
    new_key_line,
)
from ..coord import EtcdStore
from ..logstore import AuditEntry, MongoLogStore
from ..master import rotate_job_secrets
from ..master._jobs import write_audit
from ._client import CliError, ExitCode


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    secrets = sub.add_parser("secrets", help="keys that seal jobs' secrets")
    ssub = secrets.add_subparsers(dest="secrets_cmd", required=True)
    keygen = ssub.add_parser("keygen", help=f"print a new key entry for {KEYS_SETTING}")
    keygen.add_argument("--id", default=None,
                        help="the key id (default: k<UTC date and time>)")
    rotate = ssub.add_parser("rotate", help="re-seal every job's secrets with the first key")
    rotate.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, config_file: str | None) -> int:
    if args.secrets_cmd == "keygen":
        kid = args.id or dt.datetime.now(dt.UTC).strftime("k%Y%m%d%H%M%S")
        try:
            print(new_key_line(kid))
        except ValueError as exc:
            raise CliError(str(exc), ExitCode.USAGE) from None
        return 0
    return asyncio.run(run_rotate(args, Settings.load(config_file=config_file)))


async def run_rotate(args: argparse.Namespace, settings: Settings) -> int:
    keyring = Keyring.from_setting(settings.job_secret_keys)
    if keyring is None:
        raise ConfigError(KEYS_SETTING, "is required to rotate (the new key first, the old "
                                        "ones after it)")
    store = EtcdStore(settings.etcd_endpoints, timeout=settings.etcd_timeout)
    logs = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database)
    try:
        report = await rotate_job_secrets(store, Keyspace(settings.key_prefix), keyring)
        actor = f"cli:{getpass.getuser()}"
        await write_audit(logs, AuditEntry(SystemClock().now_ms(), actor, "secrets.rotate",
                                           "jobs", None, None,
                                           {"key_id": keyring.primary, **report.to_dict()}))
    finally:
        await logs.close()
        await store.close()
    if args.json:
        print(json.dumps({"key_id": keyring.primary, **report.to_dict()}, indent=2))
    else:
        print(f"re-sealed under key {keyring.primary!r}: {report.rotated} job(s) rotated, "
              f"{report.current} already current, {report.without} without secrets, "
              f"{len(report.failed)} failed")
        for name, why in sorted(report.failed.items()):
            print(f"  {name}: {why}", file=sys.stderr)
    return int(ExitCode.FAILED) if report.failed else 0
