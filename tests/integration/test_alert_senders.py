"""Each channel type against a local server: what it sends, how it fails (and that
a failure's message never carries the channel's secrets)."""

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiosmtpd.smtp import SMTP

from cronswarm.alerts import Channel, DeliveryError, Notice, Sender, feishu_sign
from cronswarm.common import AlertKind
from cronswarm.devservices import free_port
from tests.receivers import Inbox, Mailbox, MailHandler, email_channel, smtp_receiver

NOTICE = Notice("failure:j@1#1", AlertKind.FAILURE, "j", 1_767_225_600_000, "j failed",
                "Run j@1 (attempt 1) of job j failed.", (("Job", "j"), ("Exit code", "3")),
                "j@1#1")
TOKEN = "tok-5ecret-Qz11"


@asynccontextmanager
async def http_server(answers: dict[str, tuple[int, Any]]) -> AsyncIterator[tuple[str, list]]:
    """POST /<name>: records the JSON body, answers ``answers[name]``."""
    got: list[tuple[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        got.append((name, await request.json()))
        status, body = answers[name]
        return web.json_response(body, status=status) if not isinstance(body, str) else (
            web.Response(status=status, text=body))

    app = web.Application()
    app.router.add_post("/{name}/{token}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", got
    finally:
        await runner.cleanup()


async def test_slack_and_feishu_payloads_and_refusals() -> None:
    answers = {"slack": (200, "ok"), "lark": (200, {"code": 0, "msg": "success"}),
               "lark-bad": (200, {"code": 19021, "msg": "sign match fail"}),
               "gone": (404, "no_service"), "busy": (503, "later")}
    async with http_server(answers) as (base, got):
        sender = Sender(cluster="prod", timeout=5)
        try:
            slack = Channel.from_dict({"name": "s", "type": "slack",
                                       "url": f"{base}/slack/{TOKEN}"})
            await sender.send(slack, NOTICE, now_s=1_700_000_000)
            lark = Channel.from_dict({"name": "l", "type": "feishu",
                                      "url": f"{base}/lark/{TOKEN}", "signing_secret": "k"})
            await sender.send(lark, NOTICE, now_s=1_700_000_000)
            assert got[0][1]["text"] == "[prod] FAILED: j failed"
            card = got[1][1]
            assert card["msg_type"] == "interactive" and card["timestamp"] == "1700000000"
            assert card["sign"] == feishu_sign(1_700_000_000, "k")
            refusals = []
            for name, kind in (("lark-bad", "feishu"), ("gone", "slack"), ("busy", "slack")):
                channel = Channel.from_dict({"name": "x", "type": kind,
                                             "url": f"{base}/{name}/{TOKEN}"})
                with pytest.raises(DeliveryError) as info:
                    await sender.send(channel, NOTICE, now_s=1)
                refusals.append((str(info.value), info.value.retry))
        finally:
            await sender.close()
    assert refusals == [("Feishu refused the message: code 19021 sign match fail", False),
                        ("HTTP 404 Not Found", False), ("HTTP 503 Service Unavailable", True)]


async def test_unreachable_webhook_fails_without_its_token() -> None:
    port = free_port()  # nothing listens there
    channel = Channel.from_dict({"name": "h", "type": "webhook",
                                 "url": f"http://127.0.0.1:{port}/hook/{TOKEN}?t={TOKEN}"})
    sender = Sender(cluster="prod", timeout=5)
    try:
        with pytest.raises(DeliveryError) as info:
            await sender.send(channel, NOTICE, now_s=1)
    finally:
        await sender.close()
    assert info.value.retry and TOKEN not in str(info.value)


async def test_email_over_starttls_and_implicit_tls_and_a_refused_login(tmp_path: Path) -> None:
    sender = Sender(cluster="prod", timeout=10)
    try:
        async with smtp_receiver(tmp_path) as box:
            await sender.send(Channel.from_dict(email_channel(box)), NOTICE, now_s=1)
            letters = await box.inbox.wait_for(lambda got: len(got) == 1, timeout=10)
            assert letters[0]["tls"] and letters[0]["message"]["Subject"] == (
                "[prod] FAILED: j failed")
            wrong = Channel.from_dict(email_channel(box, password="pw-wr0ng-5ecret"))
            with pytest.raises(DeliveryError) as info:
                await sender.send(wrong, NOTICE, now_s=1)
            assert not info.value.retry and "535" in str(info.value)
            assert "pw-wr0ng-5ecret" not in str(info.value)
        async with implicit_tls_receiver(tmp_path) as box:
            channel = Channel.from_dict({**email_channel(box), "security": "tls",
                                         "username": None, "password": None})
            await sender.send(channel, NOTICE, now_s=1)
            letters = await box.inbox.wait_for(lambda got: len(got) == 1, timeout=10)
            assert letters[0]["tls"]
    finally:
        await sender.close()


@asynccontextmanager
async def implicit_tls_receiver(tmp_path: Path) -> AsyncIterator[Mailbox]:
    """SMTP over TLS from the first byte (port 465 style), no AUTH."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    box = Mailbox("127.0.0.1", free_port(), "", "", Inbox())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(MailHandler(box), hostname="localhost"),
                                      box.host, box.port, ssl=context)
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()

