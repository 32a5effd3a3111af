"""``cronswarm token create|ls|revoke``: API tokens.

By default through a master's API (``CRONSWARM_URL`` / ``CRONSWARM_TOKEN``,
an admin token). With ``--bootstrap`` straight in etcd (the cluster settings:
``CRONSWARM_ETCD_ENDPOINTS``, ``MONGODB_URI``), for the first admin token or
when no admin token is left; those calls are audited too, as ``cli:<user>``.
The secret of a new token is printed once and never stored.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import sys
from typing import Any

from ..common import Keyspace, Settings, SystemClock
from ..coord import check_etcd_access, etcd_store
from ..logstore import AuditEntry, MongoLogStore
from ..master import Role, TokenStore
from ..master._jobs import write_audit
from ._client import (
    ApiClient,
    CliError,
    ExitCode,
    add_client_options,
    path,
    print_json,
    run_client_command,
    table,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser(
        "token", help="manage API tokens (through the API, or --bootstrap through etcd)")
    tsub = token.add_subparsers(dest="token_cmd", required=True)

    def leaf(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = tsub.add_parser(name, help=help_text)
        add_client_options(parser)
        parser.add_argument("--bootstrap", action="store_true",
                            help="talk to etcd directly (cluster settings from the "
                                 "environment or --config), not to a master")
        return parser

    create = leaf("create", "create a token and print it once")
    create.add_argument("--role", required=True, choices=[r.label for r in Role])
    create.add_argument("--name", default=None, help="a label for the token (default: role)")
    create.add_argument("--expires-in", type=int, default=None, metavar="SECONDS",
                        help="the token stops working after this many seconds "
                             "(default: valid until revoked)")
    leaf("ls", "list tokens (never their secrets)")
    revoke = leaf("revoke", "revoke a token by id")
    revoke.add_argument("token_id")


def run(args: argparse.Namespace, config_file: str | None) -> int:
    if args.bootstrap:
        return asyncio.run(run_bootstrap(args, Settings.load(config_file=config_file)))
    return run_client_command(run_api, args)


def _print_created(args: argparse.Namespace, created: dict[str, Any]) -> None:
    if args.json:
        print_json(created)
    else:
        print(created["token"])
        print(f"(token {created['id']}, role {created['role']}: shown once, keep it safe)",
              file=sys.stderr)


def _print_tokens(args: argparse.Namespace, tokens: list[dict[str, Any]]) -> None:
    if args.json:
        print_json({"tokens": tokens})
    elif not tokens:
        print("no tokens")
    else:
        table([[t["id"], t["role"], t["name"], t["created_by"], _expiry(t.get("expires"))]
               for t in tokens], ["ID", "ROLE", "NAME", "CREATED BY", "EXPIRES"])


def _expiry(expires: int | None) -> str:
    if expires is None:
        return "never"
    return dt.datetime.fromtimestamp(expires / 1000, dt.UTC).isoformat(timespec="seconds")


async def run_api(args: argparse.Namespace, client: ApiClient) -> int:
    if args.token_cmd == "create":
        body: dict[str, Any] = {"name": args.name or args.role, "role": args.role}
        if args.expires_in is not None:
            body["expires_in"] = args.expires_in
        resp = await client.call("POST", "/api/tokens", body=body)
        _print_created(args, resp.body)
    elif args.token_cmd == "ls":
        resp = await client.call("GET", "/api/tokens")
        _print_tokens(args, resp.body["tokens"])
    else:
        await client.call("DELETE", path("tokens", args.token_id))
        print(f"revoked {args.token_id}")
    return 0


async def run_bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    store = etcd_store(settings)
    logs = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database)
    tokens = TokenStore(store, Keyspace(settings.key_prefix))
    actor = f"cli:{getpass.getuser()}"
    now = SystemClock().now_ms()
    try:
        await check_etcd_access(store, settings.key_prefix)
        if args.token_cmd == "create":
            token, record = await tokens.create(name=args.name or args.role,
                                                role=Role.parse(args.role),
                                                created_by=actor, now_ms=now,
                                                expires_in=args.expires_in)
            await write_audit(logs, AuditEntry(now, actor, "token.create",
                                               f"token:{record.token_id}", None,
                                               record.to_public()))
            _print_created(args, {"token": token, **record.to_public()})
        elif args.token_cmd == "ls":
            _print_tokens(args, [r.to_public() for r in await tokens.list_tokens()])
        else:
            revoked = await tokens.revoke(args.token_id)
            if revoked is None:
                raise CliError(f"no token with id {args.token_id!r}", ExitCode.FAILED)
            await write_audit(logs, AuditEntry(now, actor, "token.revoke",
                                               f"token:{args.token_id}", revoked.to_public(),
                                               None))
            print(f"revoked {args.token_id} ({revoked.name})")
        return 0
    finally:
        await logs.close()
        await store.close()
