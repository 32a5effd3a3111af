"""The coordination store on etcd v3, through aetcd's gRPC stubs.

aetcd's high-level ``Client`` talks to one endpoint and multiplexes every
watch over one stream whose failure ends them all; we drive its generated
stubs directly instead, so that:

* the channel knows every endpoint of the cluster and fails over between
  them (gRPC ``pick_first`` over a static address list);
* each watch has its own stream and resumes from its last revision + 1 after
  a disconnect;
* transactions return the header revision and typed results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import grpc
from aetcd import rpc

from ._abc import CoordUnavailable, WatchCompacted
from ._etcd_auth import EtcdTokens
from ._etcd_channel import open_channel
from ._etcd_tls import EtcdCredentials, EtcdTls, permission_denied
from ._etcd_wire import compare_msg, kv_of, prefix_end, request_ops, txn_result, watch_event
from ._kv import Compare, KeyValue, TxnOp, TxnResult, WatchEvent
from ._pages import PageSizes

log = logging.getLogger(__name__)

_WATCH_BACKOFF = (0.05, 2.0)  # first and largest delay between watch reconnects


def _is_transient(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )


def _too_large(exc: CoordUnavailable) -> bool:
    """Whether a call failed because its reply was over the channel's size limit."""
    cause = exc.__cause__
    return (isinstance(cause, grpc.aio.AioRpcError)
            and cause.code() == grpc.StatusCode.RESOURCE_EXHAUSTED)


class EtcdStore:
    """CoordStore on an etcd v3 cluster.

    ``stats`` counts requests by kind (``range``, ``put``, ``delete``, ``txn``,
    ``lease_grant``, ``lease_keepalive``, ``lease_revoke``, ``watch``,
    ``authenticate``), ``errors``, and ``reauthenticate`` (calls that etcd
    refused for an expired token); writes are ``put + delete + txn``.

    With ``tls`` the channel is TLS; with ``credentials`` every call carries
    the token of an etcd user (etcd's Auth service), fetched again once when
    etcd rejects it (simple tokens expire after ``--auth-token-ttl`` unused; a
    member we fail over to may not know ours).
    """

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 5.0,
                 tls: EtcdTls | None = None,
                 credentials: EtcdCredentials | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        self.tls = tls
        self.credentials = credentials
        self.stats: Counter[str] = Counter()
        self._channel: grpc.aio.Channel | None = None
        self._kv: Any = None
        self._lease: Any = None
        self._watch: Any = None
        self._maintenance: Any = None
        self._auth: Any = None
        self._tokens = EtcdTokens(credentials, self.stats)

    def _stubs(self) -> None:
        if self._channel is None:
            self._channel = open_channel(self.endpoints, self.tls)
            self._kv = rpc.KVStub(self._channel)
            self._lease = rpc.LeaseStub(self._channel)
            self._watch = rpc.WatchStub(self._channel)
            self._maintenance = rpc.MaintenanceStub(self._channel)
            self._auth = rpc.AuthStub(self._channel)

    async def authenticate(self, stale: str | None = None) -> None:
        """Get a token for our etcd user, unless we hold one other than ``stale``
        (a no-op without credentials)."""
        self._stubs()
        await self._tokens.ensure(self._auth, self.timeout, stale)

    async def _unary(self, kind: str, method_name: str, stub_name: str, request: Any) -> Any:
        self._stubs()
        method = getattr(getattr(self, stub_name), method_name)
        self.stats[kind] += 1
        deadline = time.monotonic() + self.timeout
        await self.authenticate()
        token = self._tokens.token
        try:
            try:
                return await method(request, timeout=self.timeout,
                                    metadata=self._tokens.metadata())
            except grpc.aio.AioRpcError as exc:
                if not self._tokens.rejected(exc):
                    raise
                log.info("etcd rejected our token (%s); authenticating again", exc.details())
            self.stats["reauthenticate"] += 1
            await self.authenticate(stale=token)
            # Once, within what is left of the call's timeout.
            return await method(request, timeout=max(deadline - time.monotonic(), 0.001),
                                metadata=self._tokens.metadata())
        except grpc.aio.AioRpcError as exc:
            self.stats["errors"] += 1
            raise CoordUnavailable(f"{method_name}: {exc.code().name}: {exc.details()}") from exc

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._unary("range", "Range", "_kv", rpc.RangeRequest(key=key.encode()))
        return kv_of(resp.kvs[0]) if resp.kvs else None

    async def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        raw = prefix.encode()
        resp = await self._unary(
            "range", "Range", "_kv", rpc.RangeRequest(key=raw, range_end=prefix_end(raw))
        )
        return [kv_of(kv) for kv in resp.kvs], resp.header.revision

    async def scan_prefix(
        self, prefix: str, *, page_size: int = 1000, page_bytes: int = 0,
    ) -> AsyncGenerator[tuple[list[KeyValue], int], None]:
        raw = prefix.encode()
        end = prefix_end(raw)
        sizes = PageSizes(page_size, page_bytes)

        async def page(start: bytes, revision: int) -> Any:
            while True:
                limit = sizes.limit()
                try:
                    return await self._unary("range", "Range", "_kv", rpc.RangeRequest(
                        key=start, range_end=end, limit=limit, revision=revision))
                except CoordUnavailable as exc:
                    if limit == 1 or not _too_large(exc):
                        raise
                    sizes.too_large(limit)  # bigger values than the pages before: fewer

        resp = await page(raw, 0)
        # Every later page reads at the first one's revision: one snapshot.
        revision = int(resp.header.revision)
        following: asyncio.Future[Any] | None = None
        try:
            while True:
                sizes.seen(len(resp.kvs), resp.ByteSize())
                if resp.more and resp.kvs:
                    # Asked for before this page is handed over: etcd counts the
                    # rest of the range for every page, which takes about as long
                    # as the caller's work on one page.
                    following = asyncio.ensure_future(
                        page(bytes(resp.kvs[-1].key) + b"\x00", revision))
                # In pages of at most page_size keys: fewer objects alive at
                # once (a reply of 1 MiB is some 2,500 jobs), and so less memory
                # left in pieces behind what the caller keeps.
                raw_kvs, step = resp.kvs, sizes.page_size
                del resp
                for start in range(0, max(len(raw_kvs), 1), step):
                    yield [kv_of(kv) for kv in raw_kvs[start:start + step]], revision
                del raw_kvs
                if following is None:
                    return
                resp, following = await following, None
        finally:
            if following is not None:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, CoordUnavailable):
                    await following

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        resp = await self._unary(
            "put", "Put", "_kv", rpc.PutRequest(key=key.encode(), value=value, lease=lease)
        )
        return int(resp.header.revision)

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        raw = key.encode()
        request = rpc.DeleteRangeRequest(key=raw)
        if prefix:
            request.range_end = prefix_end(raw)
        resp = await self._unary("delete", "DeleteRange", "_kv", request)
        return int(resp.deleted)

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[TxnOp],
        failure: Sequence[TxnOp] = (),
    ) -> TxnResult:
        request = rpc.TxnRequest(
            compare=[compare_msg(c) for c in compare],
            success=request_ops(success),
            failure=request_ops(failure),
        )
        resp = await self._unary("txn", "Txn", "_kv", request)
        return txn_result(resp, int(resp.header.revision))

    async def grant_lease(self, ttl: int) -> int:
        resp = await self._unary("lease_grant", "LeaseGrant", "_lease",
                                 rpc.LeaseGrantRequest(TTL=ttl))
        if resp.error:
            raise CoordUnavailable(f"LeaseGrant: {resp.error}")
        return int(resp.ID)

    async def keepalive(self, lease_id: int) -> int:
        self._stubs()
        self.stats["lease_keepalive"] += 1
        try:
            async with asyncio.timeout(self.timeout):
                await self.authenticate()
                token = self._tokens.token
                try:
                    return await self._keepalive_once(lease_id)
                except grpc.aio.AioRpcError as exc:
                    if not self._tokens.rejected(exc):
                        raise
                self.stats["reauthenticate"] += 1
                await self.authenticate(stale=token)
                return await self._keepalive_once(lease_id)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            self.stats["errors"] += 1
            raise CoordUnavailable(f"LeaseKeepAlive: {exc}") from exc

    async def _keepalive_once(self, lease_id: int) -> int:
        call = self._lease.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]),
                                          metadata=self._tokens.metadata())
        try:
            async for reply in call:
                return int(reply.TTL)
        finally:
            call.cancel()
        return 0

    async def revoke_lease(self, lease_id: int) -> None:
        try:
            await self._unary("lease_revoke", "LeaseRevoke", "_lease",
                              rpc.LeaseRevokeRequest(ID=lease_id))
        except CoordUnavailable as exc:
            cause = exc.__cause__
            gone = isinstance(cause, grpc.aio.AioRpcError) and (
                cause.code() == grpc.StatusCode.NOT_FOUND)
            if gone:
                return  # already expired: the goal is reached
            raise

    async def lease_ttl(self, lease_id: int) -> int:
        resp = await self._unary("lease_ttl", "LeaseTimeToLive", "_lease",
                                 rpc.LeaseTimeToLiveRequest(ID=lease_id))
        return int(resp.TTL)

    async def ping(self) -> None:
        """Return if etcd answers. A user without etcd's root role may be
        refused its Status call (newer etcd allows it to root only): a refusal
        is an answer too."""
        try:
            await self._unary("status", "Status", "_maintenance", rpc.StatusRequest())
        except CoordUnavailable as exc:
            cause = exc.__cause__
            if not (isinstance(cause, grpc.aio.AioRpcError)
                    and cause.code() is grpc.StatusCode.PERMISSION_DENIED):
                raise

    async def probe_read(self, prefix: str) -> None:
        """One key under ``prefix``, read as etcd checks it: permission on the whole range."""
        raw = prefix.encode()
        await self._unary("range", "Range", "_kv", rpc.RangeRequest(
            key=raw, range_end=prefix_end(raw), limit=1, keys_only=True))

    async def watch_prefix(
        self, prefix: str, start_revision: int
    ) -> AsyncIterator[list[WatchEvent]]:
        raw = prefix.encode()
        create = rpc.WatchCreateRequest(key=raw, range_end=prefix_end(raw), progress_notify=True)
        next_revision = start_revision
        delay = _WATCH_BACKOFF[0]
        refused: str | None = None  # a token etcd refused: authenticate again
        reauthenticated = False  # since the last watch etcd accepted
        while True:
            self._stubs()
            create.start_revision = next_revision
            try:
                await self.authenticate(stale=refused)
            except CoordUnavailable as exc:
                cause = exc.__cause__
                if not (isinstance(cause, grpc.aio.AioRpcError) and _is_transient(cause)):
                    raise
                log.warning("etcd watch on %s cannot authenticate (%s); retrying", prefix,
                            cause.code().name)
                await asyncio.sleep(delay)  # reconnect backoff, not synchronisation
                delay = min(delay * 2, _WATCH_BACKOFF[1])
                continue
            token = self._tokens.token
            retry_now = False
            hold_open = asyncio.Event()
            call = self._watch.Watch(_requests(rpc.WatchRequest(create_request=create), hold_open),
                                     metadata=self._tokens.metadata())
            self.stats["watch"] += 1
            try:
                async for resp in call:
                    if resp.compact_revision:
                        raise WatchCompacted(int(resp.compact_revision))
                    if resp.canceled:
                        # etcd refuses a watch whose token expired as "permission
                        # denied": authenticate again, once, before believing it.
                        if (token is not None and permission_denied(resp.cancel_reason)
                                and not reauthenticated):
                            refused, reauthenticated, retry_now = token, True, True
                            self.stats["reauthenticate"] += 1
                            log.info("etcd refused the watch on %s (%s); authenticating again",
                                     prefix, resp.cancel_reason)
                            break
                        raise CoordUnavailable(f"watch canceled: {resp.cancel_reason}")
                    if resp.created:
                        delay = _WATCH_BACKOFF[0]
                        reauthenticated = False
                    events = [watch_event(e) for e in resp.events]
                    if events:
                        next_revision = events[-1].mod_revision + 1
                        yield events
                    elif not resp.created and resp.header.revision >= next_revision:
                        next_revision = resp.header.revision + 1  # progress notification
                else:
                    # The server ended the stream: treat like a disconnect.
                    log.info("etcd watch on %s ended by the server; resuming at %d",
                             prefix, next_revision)
                if retry_now:
                    continue  # with a new token, at once
            except grpc.aio.AioRpcError as exc:
                if self._tokens.rejected(exc) and not reauthenticated:
                    refused, reauthenticated = token, True
                    self.stats["reauthenticate"] += 1
                    log.info("etcd rejected the token of the watch on %s (%s); "
                             "authenticating again", prefix, exc.details())
                    continue
                if not _is_transient(exc):
                    raise CoordUnavailable(f"watch: {exc.code().name}: {exc.details()}") from exc
                self.stats["errors"] += 1
                log.warning("etcd watch on %s lost (%s); resuming at revision %d",
                            prefix, exc.code().name, next_revision)
            finally:
                hold_open.set()
                call.cancel()
            await asyncio.sleep(delay)  # reconnect backoff, not synchronisation
            delay = min(delay * 2, _WATCH_BACKOFF[1])

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            with contextlib.suppress(Exception):
                await channel.close()


async def _requests(first: Any, hold_open: asyncio.Event) -> AsyncIterator[Any]:
    """A watch request stream: the create request, then open until cancelled."""
    yield first
    await hold_open.wait()
