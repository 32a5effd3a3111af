"""An in-process master for API tests (aiohttp's TestServer on a real socket)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientResponse, ClientSession, web
from aiohttp.test_utils import TestServer

from cronswarm.common import Settings
from cronswarm.logstore import LogStore
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
async def running_master(settings: Settings, token: str | None, *,
                         logs: LogStore | None = None) -> AsyncIterator[Api]:
    server = TestServer(create_app(settings, logs=logs), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as session:
            yield Api(session, str(server.make_url("")).rstrip("/"), token, server.app)
    finally:
        await server.close()


async def raw_request(base: str, head: bytes, body: bytes = b""
                      ) -> tuple[int, dict[str, str], bytes]:
    """Send a request line and headers as raw bytes (a client library would refuse
    them), then ``body``: (status, headers by lower-case name, body)."""
    url = urlsplit(base)
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        length = b"Content-Length: %d\r\n" % len(body) if body else b""
        writer.write(head + length + b"Host: test\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        reply = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    header, _, answer = reply.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    fields = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), fields, answer
