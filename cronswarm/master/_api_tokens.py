"""``/api/tokens``: API tokens (admin only). A token's secret is returned once."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..common import FieldReader, NotFoundError, validate_name
from ..logstore import AuditEntry
from ._auth import MAX_EXPIRES_IN_S, Role
from ._http import JOBS, LOGS, SETTINGS, TOKEN_MIRROR, TOKENS, json_response, read_object, require
from ._jobs import write_audit

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

ROLES = tuple(r.label for r in Role)


@routes.get("/api/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    require(request, Role.ADMIN)
    tokens = await request.app[TOKENS].list_tokens()
    return json_response({"tokens": [t.to_public() for t in tokens]})


@routes.post("/api/tokens")
async def create_token(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    r = FieldReader(await read_object(request), allowed=("name", "role", "expires_in"))
    name = r.string("name", max_len=64)
    role = r.choice("role", ROLES)
    expires_in = r.integer("expires_in", None, minimum=1, maximum=MAX_EXPIRES_IN_S)
    r.finish()
    now = request.app[JOBS].clock.now_ms()
    token, record = await request.app[TOKENS].create(
        name=name, role=Role.parse(role), created_by=who.actor, now_ms=now,
        expires_in=expires_in)
    await write_audit(request.app[LOGS], AuditEntry(
        now, who.actor, "token.create", f"token:{record.token_id}", None, record.to_public()))
    return json_response({"token": token, **record.to_public()}, status=201)


@routes.delete("/api/tokens/{token_id}")
async def revoke_token(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    token_id = validate_name(request.match_info["token_id"], "token_id")
    record = await request.app[TOKENS].revoke(token_id)
    if record is None:
        raise NotFoundError("token", token_id)
    # This master refuses the token before answering; others within a watch event.
    mirror = request.app[TOKEN_MIRROR]
    try:
        async with asyncio.timeout(request.app[SETTINGS].etcd_timeout):
            await mirror.wait_for(lambda: token_id not in mirror.items)
    except TimeoutError:
        log.warning("token %s revoked, but this master's mirror has not seen it yet", token_id)
    await write_audit(request.app[LOGS], AuditEntry(
        request.app[JOBS].clock.now_ms(), who.actor, "token.revoke",
        f"token:{token_id}", record.to_public(), None))
    return web.Response(status=204)
