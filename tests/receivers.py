"""Local alert receivers for tests: a webhook endpoint (aiohttp) and an SMTP server
(aiosmtpd, STARTTLS with a test CA from trustme, AUTH required), both in the
test's event loop; tests wait on what they received, with deadlines."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from cronswarm.devservices import free_port


class Inbox:
    """Things received, in order; ``wait_for`` returns once a predicate holds."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, done: Callable[[list[Any]], bool], *, timeout: float) -> list[Any]:
        try:
            async with asyncio.timeout(timeout):
                while not done(self.items):
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"not received within {timeout}s; got {self.items}") from None
        return list(self.items)


@dataclass
class Webhook:
    url: str
    inbox: Inbox
    fail_first: int = 0  # answer fail_status to this many requests first
    fail_status: int = 500
    tried: Inbox = field(default_factory=Inbox)  # every request, refused ones too

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.tried.items

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [item["body"] for item in self.inbox.items]


@asynccontextmanager
async def webhook_receiver(*, fail_first: int = 0, fail_status: int = 500
                           ) -> AsyncIterator[Webhook]:
    port = free_port()
    hook = Webhook(f"http://127.0.0.1:{port}/hook?token=tok-5ecret-Hx93", Inbox(), fail_first,
                   fail_status)

    async def receive(request: web.Request) -> web.Response:
        item = {"headers": dict(request.headers), "raw": await request.read(),
                "query": dict(request.query), "at": time.monotonic()}
        item["body"] = json.loads(item["raw"])
        hook.tried.add(item)
        if len(hook.requests) <= hook.fail_first:
            return web.Response(status=hook.fail_status, text="try again")
        hook.inbox.add(item)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield hook
    finally:
        await runner.cleanup()


@dataclass
class Mailbox:
    host: str
    port: int
    username: str
    password: str
    inbox: Inbox
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)

    @property
    def messages(self) -> list[EmailMessage]:
        return [item["message"] for item in self.inbox.items]


class MailHandler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.box.inbox.add({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                            "message": message, "tls": session.ssl is not None or (
                                server.transport is not None and server.transport.
                                get_extra_info("ssl_object") is not None)})
        return "250 OK"


@asynccontextmanager
async def smtp_receiver(tmp_path: Path, *, username: str = "cron",
                        password: str = "pw-5ecret-Kq81") -> AsyncIterator[Mailbox]:
    """An SMTP server that requires STARTTLS and AUTH; its CA is written to
    ``tmp_path/ca.pem`` (clients here pass ``verify_tls: false`` instead)."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    box = Mailbox("127.0.0.1", free_port(), username, password, Inbox())

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (
            data.login.decode() == username and data.password.decode() == password)
        box.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "",
                           ok))
        return AuthResult(success=ok, handled=False)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(MailHandler(box), hostname="localhost", tls_context=context,
                     require_starttls=True, auth_required=True, auth_require_tls=True,
                     authenticator=authenticate),
        box.host, box.port)
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


def email_channel(box: Mailbox, **extra: Any) -> dict[str, Any]:
    return {"name": "mail", "type": "email", "host": box.host, "port": box.port,
            "security": "starttls", "verify_tls": False, "username": box.username,
            "password": box.password, "sender": "cron@example.com",
            "recipients": ["ops@example.com"], **extra}


def webhook_channel(hook: Webhook, **extra: Any) -> dict[str, Any]:
    return {"name": "hook", "type": "webhook", "url": hook.url,
            "headers": {"Authorization": "Bearer hdr-5ecret-Lm47"},
            "signing_secret": "sign-5ecret-Pq55", **extra}
