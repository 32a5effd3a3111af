"""``cronswarm token``: manage API tokens with direct etcd access (bootstrap)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..common import Keyspace, Settings, SystemClock
from ..coord import EtcdStore
from ..master import Role, TokenStore


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser("token", help="manage API tokens (talks to etcd directly)")
    tsub = token.add_subparsers(dest="token_cmd", required=True)
    create = tsub.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    create.add_argument("--name", default=None, help="a label for the token (default: role)")
    create.add_argument("--json", action="store_true", help="print JSON")
    ls = tsub.add_parser("ls", help="list tokens (never their secrets)")
    ls.add_argument("--json", action="store_true")
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")


async def run(args: argparse.Namespace, settings: Settings) -> int:
    store = EtcdStore(settings.etcd_endpoints, timeout=settings.etcd_timeout)
    tokens = TokenStore(store, Keyspace(settings.key_prefix))
    try:
        if args.token_cmd == "create":
            role = Role.parse(args.role)
            token, record = await tokens.create(
                name=args.name or role.label, role=role,
                created_by=f"cli:{os.environ.get('USER', 'unknown')}",
                now_ms=SystemClock().now_ms())
            if args.json:
                print(json.dumps({"token": token, **record.to_public()}))
            else:
                print(token)
            return 0
        if args.token_cmd == "ls":
            records = await tokens.list_tokens()
            if args.json:
                print(json.dumps([r.to_public() for r in records]))
            else:
                for r in records:
                    print(f"{r.token_id}\t{r.role.label}\t{r.name}\t{r.created_by}")
            return 0
        revoked = await tokens.revoke(args.token_id)
        if revoked is None:
            print(f"error: no token with id {args.token_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {args.token_id} ({revoked.name})")
        return 0
    finally:
        await store.close()
