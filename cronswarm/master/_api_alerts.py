"""``/api/alerts``: alert channels (admin only, audited, secrets write-only),
the record of deliveries, and ``/api/leader``: who performs the cluster duties.

A channel's secrets (SMTP password, webhook URLs and headers, signing secrets)
are accepted on create and replace and never returned: responses and audit
entries carry ``Channel.public()``, which lists only which secrets are set.
"""

from __future__ import annotations

from aiohttp import web

from ..alerts import DELIVERY_STATUSES, ChannelRegistry
from ..common import ValidationError, validate_name
from ..coord import leader_of
from ..logstore import AuditEntry
from ._auth import Role
from ._http import (
    ALERTS,
    COORD,
    ELECTION,
    JOBS,
    LOGS,
    SETTINGS,
    TERMS,
    json_response,
    read_object,
    require,
)
from ._jobs import write_audit
from ._params import choice_param, int_param, name_param

routes = web.RouteTableDef()


def _registry(request: web.Request) -> ChannelRegistry:
    return ChannelRegistry(request.app[COORD], request.app[JOBS].keys)


async def _audit(request: web.Request, actor: str, action: str, name: str,
                 before: dict[str, object] | None, after: dict[str, object] | None) -> None:
    await write_audit(request.app[LOGS], AuditEntry(
        request.app[JOBS].clock.now_ms(), actor, action, f"channel:{name}", before, after))


@routes.get("/api/alerts/channels")
async def list_channels(request: web.Request) -> web.Response:
    require(request, Role.ADMIN)
    channels = await _registry(request).list()
    return json_response({"channels": [c.public() for c in channels]})


@routes.post("/api/alerts/channels")
async def create_channel(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    channel = await _registry(request).create(await read_object(request))
    await _audit(request, who.actor, "channel.create", channel.name, None, channel.public())
    return json_response(channel.public(), status=201,
                         headers={"Location": f"/api/alerts/channels/{channel.name}"})


@routes.get("/api/alerts/channels/{name}")
async def get_channel(request: web.Request) -> web.Response:
    require(request, Role.ADMIN)
    name = validate_name(request.match_info["name"], "name")
    return json_response((await _registry(request).get(name)).public())


@routes.put("/api/alerts/channels/{name}")
async def replace_channel(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    name = validate_name(request.match_info["name"], "name")
    body = await read_object(request)
    if "name" in body and body["name"] != name:
        raise ValidationError.single("name", "does not match the channel in the URL")
    before, after = await _registry(request).replace(name, body)
    await _audit(request, who.actor, "channel.update", name, before.public(), after.public())
    return json_response(after.public())


@routes.delete("/api/alerts/channels/{name}")
async def delete_channel(request: web.Request) -> web.Response:
    who = require(request, Role.ADMIN)
    name = validate_name(request.match_info["name"], "name")
    before = await _registry(request).delete(name)
    await _audit(request, who.actor, "channel.delete", name, before.public(), None)
    return web.Response(status=204)


@routes.get("/api/alerts")
async def list_alerts(request: web.Request) -> web.Response:
    """Deliveries, newest first: one per alert and channel, with its outcome."""
    require(request, Role.VIEWER)
    q = request.query
    deliveries = await request.app[ALERTS].list_deliveries(
        job=name_param(q, "job"), status=choice_param(q, "status", DELIVERY_STATUSES),
        limit=int_param(q, "limit", 100, 1, 1000))
    return json_response({"alerts": deliveries})


@routes.get("/api/leader")
async def get_leader(request: web.Request) -> web.Response:
    """The elected master now, and the latest terms with the duties each ran."""
    require(request, Role.VIEWER)
    kv = await request.app[COORD].get(request.app[JOBS].keys.leader)
    election = request.app[ELECTION]
    return json_response({
        "leader": leader_of(kv),
        "term": kv.create_revision if kv is not None else None,
        "this_master": request.app[SETTINGS].master_id,
        "this_master_leads": election.is_leader,
        "terms": await request.app[TERMS].recent(int_param(request.query, "limit", 20, 1, 100)),
    })
