"""An in-process master for API tests (aiohttp's TestServer on a real socket)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientResponse, ClientSession, web
from aiohttp.test_utils import TestServer

from cronswarm.common import Settings
from cronswarm.master import create_app


class Api:
    """Small JSON client bound to one token."""

    def __init__(self, session: ClientSession, base: str, token: str | None,
                 app: web.Application | None = None) -> None:
        self.session = session
        self.base = base
        self.token = token
        self.app = app  # the in-process master's app (for its services)

    def as_token(self, token: str | None) -> Api:
        return Api(self.session, self.base, token, self.app)

    async def call(self, method: str, path: str, *, json: Any = None,
                   headers: dict[str, str] | None = None, **kw: Any) -> ClientResponse:
        hdrs = dict(headers or {})
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        resp = await self.session.request(method, self.base + path, json=json, headers=hdrs,
                                          allow_redirects=False, **kw)
        await resp.read()
        return resp


@asynccontextmanager
async def running_master(settings: Settings, token: str | None) -> AsyncIterator[Api]:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as session:
            yield Api(session, str(server.make_url("")).rstrip("/"), token, server.app)
    finally:
        await server.close()
