"""Running one attempt of an HTTP job with the aiohttp client.

The request is the job's ``http`` (method, URL, headers, body, redirects);
the worker adds ``User-Agent`` and ``X-Cronswarm-Run-Id``/``-Attempt``
headers unless the job sets them, so endpoints can be idempotent per tick.
Secret headers and basic auth (opened for the run) are added last, and go
only to the origin of the job's URL, never to another a redirect points at.
The response body goes through the attempt's bounded output (head, tail,
true byte count) and its status is the record's ``http_status``; the attempt
succeeds when ``HttpRequest.status_ok`` accepts the status (any 2xx unless
``expect_status`` lists others).

Failures each say what happened: an unexpected status (with the expected
ones), the job's timeout (status ``timeout``), a refused or failed
connection, a DNS failure, TLS errors, too many redirects. A kill request
cancels the call in flight (status ``killed``).

The worker's own proxy environment is ignored (``trust_env=False``): a job
reaches exactly the URL it names.

With ``deny_local`` (``CRONSWARM_HTTP_DENY_LOCAL``) every address the call
is about to connect to, after DNS and on every redirect, is judged by
``local_address_reason``: loopback, link-local and metadata addresses are
refused before a packet is sent (the socket factory sees the resolved
address, so a name that resolves to 127.0.0.1 or a redirect to
169.254.169.254 is caught like a literal IP).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from .. import __version__
from ..common import (
    DENY_SETTING,
    HttpRequest,
    RunStatus,
    Scrubber,
    local_address_reason,
)
from ._executor import ExecResult, RunContext
from ._gate import killed_before_start, reach_gate

log = logging.getLogger(__name__)

_CHUNK = 65536
CONNECT_TIMEOUT_S = 30.0  # to establish a connection, when the job's timeout is longer
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(slots=True)
class _Progress:
    """What an interrupted call had got so far."""

    status: int | None = None
    reason: str | None = None


def expected_statuses(req: HttpRequest) -> str:
    if req.expect_status is None:
        return "2xx"
    return ", ".join(str(s) for s in req.expect_status)


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


# What each failure says, by the first class ``exc`` is an instance of
# (subclasses before their bases).
_EXPLANATIONS: tuple[tuple[type[BaseException], str], ...] = (
    (aiohttp.ClientConnectorDNSError, "cannot resolve host {host!r}: {os_reason}"),
    (aiohttp.ClientConnectorCertificateError,
     "TLS certificate of {where} rejected: {certificate_error}"),
    (aiohttp.ClientSSLError, "TLS error talking to {where}: {exc}"),
    (aiohttp.ClientConnectorError, "cannot connect to {where}: {os_reason}"),
    (aiohttp.ConnectionTimeoutError,
     "cannot connect to {where}: no connection within {connect_timeout:g}s"),
    (aiohttp.TooManyRedirects, "more than {max_redirects} redirects from {url}"),
    (aiohttp.ServerDisconnectedError, "{where} closed the connection before answering"),
    (aiohttp.ClientPayloadError, "broken response body from {where}: {exc}"),
    (aiohttp.InvalidURL, "invalid URL {url!r}"),
)


def describe_client_error(exc: BaseException, url: str,
                          connect_timeout: float = CONNECT_TIMEOUT_S) -> str:
    """A one-line, human explanation of an aiohttp client failure."""
    where = _host_port(url)
    text = next((text for kind, text in _EXPLANATIONS if isinstance(exc, kind)),
                "HTTP request to {where} failed: {kind}: {exc}")
    return text.format(
        where=where, url=url, host=urlsplit(url).hostname, exc=exc, kind=type(exc).__name__,
        os_reason=_os_reason(exc) if isinstance(exc, aiohttp.ClientConnectorError) else "",
        certificate_error=getattr(exc, "certificate_error", None),
        connect_timeout=connect_timeout, max_redirects=MAX_REDIRECTS)


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if isinstance(os_error, socket.gaierror):
        return os_error.strerror or str(os_error)
    if os_error.errno:  # "Connection refused" rather than "Connect call failed (...)"
        return os.strerror(os_error.errno)
    return str(os_error)


class DeniedAddress(OSError):
    """A connection to an address HTTP jobs may not call."""


def denying_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp's socket factory: refuses denied addresses, after resolution."""
    family, type_, proto, _, sockaddr = addr_info
    reason = local_address_reason(str(sockaddr[0]))
    if reason is not None:
        raise DeniedAddress(f"{reason}, denied by {DENY_SETTING}")
    return socket.socket(family=family, type=type_, proto=proto)


class HttpExecutor:
    """Runs HTTP jobs; see the module docstring."""

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT_S,
                 deny_local: bool = False) -> None:
        self.connect_timeout = connect_timeout
        self.deny_local = deny_local

    async def execute(self, ctx: RunContext) -> ExecResult:
        req = ctx.job.http
        if req is None:
            return ExecResult(RunStatus.FAILED, error="not an HTTP job")
        progress = _Progress()
        killer = asyncio.create_task(ctx.kill.requested.wait())
        call: asyncio.Task[ExecResult] | None = None
        try:
            if not await reach_gate(ctx, killer):
                return ExecResult(RunStatus.KILLED, error=killed_before_start(ctx.kill),
                                  details={"reason": "killed"}, killed_by=ctx.kill.by)
            ctx.mark_started()
            call = asyncio.create_task(self._call(ctx, req, progress))
            done, _ = await asyncio.wait({call, killer}, timeout=ctx.job.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            killer.cancel()
            if call is not None and not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
        if call in done:
            return call.result()
        got = ""
        if progress.status is not None:
            got = f" (HTTP {progress.status} received, body still coming)"
        if killer in done:
            return ExecResult(RunStatus.KILLED, http_status=progress.status,
                              error=f"killed: {ctx.kill.reason} (by {ctx.kill.by}){got}",
                              killed_by=ctx.kill.by)
        return ExecResult(RunStatus.TIMEOUT, http_status=progress.status,
                          error=f"timed out after {ctx.job.timeout:g}s{got}")

    def _headers(self, ctx: RunContext, req: HttpRequest, *, secret: bool = True
                 ) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict({
            "User-Agent": f"cronswarm/{__version__}",
            "X-Cronswarm-Run-Id": ctx.run_id,
            "X-Cronswarm-Attempt": str(ctx.attempt),
        })
        for name, value in req.headers.items():
            headers[name] = value  # the job's own headers win
        if not secret:
            headers.popall("Authorization", None)
            return headers
        for name, value in ctx.secrets.headers.items():
            headers[name] = value
        if ctx.secrets.basic_auth is not None:
            user, password = ctx.secrets.basic_auth
            credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {credentials}"
        return headers

    async def _open(self, session: aiohttp.ClientSession, ctx: RunContext, req: HttpRequest
                    ) -> tuple[aiohttp.ClientResponse, int]:
        """The response (redirects followed if the job says so) and the redirect count.

        A job with secrets follows redirects itself: its secret headers and
        basic auth go only to the origin (scheme, host, port) of the job's URL,
        never to another one a redirect points at.
        """
        data = None if req.body is None else req.body.encode()
        if not req.follow_redirects or (not ctx.secrets.headers
                                        and ctx.secrets.basic_auth is None):
            resp = await session.request(req.method, req.url, headers=self._headers(ctx, req),
                                         data=data, allow_redirects=req.follow_redirects,
                                         max_redirects=MAX_REDIRECTS)
            return resp, len(resp.history)
        home = URL(req.url).origin()
        method, url = req.method, URL(req.url)
        for hops in range(MAX_REDIRECTS + 1):
            resp = await session.request(method, url, data=data, allow_redirects=False,
                                         headers=self._headers(ctx, req,
                                                               secret=url.origin() == home))
            location = resp.headers.get("Location")
            if resp.status not in _REDIRECTS or location is None:
                return resp, hops
            target = url.join(URL(location))
            if target.scheme not in ("http", "https"):
                return resp, hops  # not followed: the 3xx is the answer
            resp.release()
            if (resp.status == 303 and method != "HEAD") or (
                    resp.status in (301, 302) and method == "POST"):
                method, data = "GET", None  # as browsers (and aiohttp) do
            url = target
        raise aiohttp.TooManyRedirects(resp.request_info, ())

    async def _call(self, ctx: RunContext, req: HttpRequest, progress: _Progress
                    ) -> ExecResult:
        # The job's timeout is enforced around the whole call (status timeout);
        # this one only bounds connecting, for jobs without a timeout.
        connect = self.connect_timeout
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, connect=connect)
        connector = aiohttp.TCPConnector(socket_factory=denying_socket if self.deny_local
                                         else None)
        try:
            async with aiohttp.ClientSession(timeout=timeout, trust_env=False,
                                             connector=connector) as session:
                resp, hops = await self._open(session, ctx, req)
                async with resp:
                    progress.status, progress.reason = resp.status, resp.reason
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        ctx.output.feed(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = Scrubber(ctx.secrets.values()).text(
                describe_client_error(exc, req.url, connect))
            log.info("HTTP job %s: %s", ctx.run_id, error)
            return ExecResult(RunStatus.FAILED, http_status=progress.status, error=error)
        details: dict[str, object] = {"http_reason": resp.reason or ""}
        if str(resp.url) != req.url:
            details["final_url"] = str(resp.url)
        if hops:
            details["redirects"] = hops
        if req.status_ok(resp.status):
            return ExecResult(RunStatus.SUCCEEDED, http_status=resp.status, details=details)
        return ExecResult(
            RunStatus.FAILED, http_status=resp.status, details=details,
            error=(f"unexpected HTTP status {resp.status} {resp.reason or ''}".rstrip()
                   + f" (expected {expected_statuses(req)})"),
        )
