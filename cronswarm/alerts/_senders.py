"""Sending one notice through one channel: SMTP (aiosmtplib) or HTTP (aiohttp).

Errors come out as ``DeliveryError`` whose message is scrubbed of the
channel's secrets (a URL's token, a password echoed by a server), so it can
be logged and recorded as it is.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp
import aiosmtplib

from .. import __version__
from ._channels import Channel
from ._engine import Notice
from ._messages import email_message, feishu_body, slack_body, webhook_body, webhook_signature


class DeliveryError(Exception):
    """A delivery attempt failed; ``retry`` says whether another may succeed."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        self.retry = retry
        super().__init__(message)


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class Sender:
    """Delivers notices; one aiohttp session for every HTTP channel."""

    def __init__(self, *, cluster: str, timeout: float) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": f"cronswarm/{__version__}"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, channel: Channel, notice: Notice, *, now_s: int) -> None:
        try:
            if channel.type == "email":
                await self._email(channel, notice)
            elif channel.type == "webhook":
                await self._webhook(channel, notice)
            elif channel.type == "slack":
                await self._post(channel, _dumps(slack_body(notice, cluster=self.cluster)), {})
            elif channel.type == "feishu":
                body = feishu_body(notice, cluster=self.cluster,
                                   secret=channel.secrets.get("signing_secret"), timestamp=now_s)
                reply = await self._post(channel, _dumps(body), {})
                _check_feishu(reply)
            else:  # pragma: no cover - types are validated on input
                raise DeliveryError(f"unknown channel type {channel.type!r}", retry=False)
        except DeliveryError as exc:
            raise DeliveryError(channel.scrub(str(exc)), retry=exc.retry) from None
        except (aiohttp.ClientError, aiosmtplib.SMTPException, ssl.SSLError, OSError,
                TimeoutError) as exc:
            detail = channel.scrub(str(exc)) or "no detail"
            raise DeliveryError(f"{type(exc).__name__}: {detail}") from None

    async def _email(self, channel: Channel, notice: Notice) -> None:
        s = channel.settings
        message = email_message(notice, cluster=self.cluster, sender=s["sender"],
                                recipients=list(s["recipients"]))
        security = s["security"]
        try:
            await aiosmtplib.send(
                message, hostname=s["host"], port=s["port"], username=s.get("username"),
                password=channel.secrets.get("password"), use_tls=security == "tls",
                start_tls=security == "starttls", validate_certs=s["verify_tls"],
                timeout=self.timeout)
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx: the server refuses (bad recipient, bad login): retrying will not help.
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}",
                                retry=exc.code < 500) from None

    async def _webhook(self, channel: Channel, notice: Notice) -> None:
        body = _dumps(webhook_body(notice, cluster=self.cluster))
        headers = dict(channel.secrets.get("headers") or {})
        secret = channel.secrets.get("signing_secret")
        if secret:
            headers["X-Cronswarm-Signature"] = webhook_signature(body, secret)
        await self._post(channel, body, headers)

    async def _post(self, channel: Channel, body: bytes, headers: dict[str, str]) -> bytes:
        url = channel.secrets["url"]
        headers = {**headers, "Content-Type": "application/json"}
        async with self._http().post(url, data=body, headers=headers,
                                     allow_redirects=False) as resp:
            reply = await resp.content.read(64 << 10)
            if resp.status >= 300:
                raise DeliveryError(f"HTTP {resp.status} {resp.reason or ''}".rstrip(),
                                    retry=resp.status >= 500 or resp.status in (408, 429))
            return reply


def _check_feishu(reply: bytes) -> None:
    """Feishu answers 200 with ``{"code": 0}`` (or ``StatusCode``) on success."""
    try:
        data = json.loads(reply or b"{}")
    except ValueError:
        return
    if not isinstance(data, dict):
        return
    code = data.get("code", data.get("StatusCode", 0))
    if code not in (0, None):
        message = str(data.get("msg") or data.get("StatusMessage") or "")[:200]
        raise DeliveryError(f"Feishu refused the message: code {code} {message}".rstrip(),
                            retry=False)
