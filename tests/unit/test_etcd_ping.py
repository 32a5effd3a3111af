"""What counts as etcd answering a readiness probe (``EtcdStore.ping``)."""

from typing import Any

import grpc
import pytest

from cronswarm.coord import CoordUnavailable, EtcdStore


class Maintenance:
    """The Status call, answering with the given gRPC error."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    async def Status(self, _request: Any, **_kwargs: Any) -> Any:  # gRPC names it so
        raise grpc.aio.AioRpcError(self.code, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                   details="test")


def store_answering(code: grpc.StatusCode) -> EtcdStore:
    store = EtcdStore(["127.0.0.1:1"])
    store._stubs()  # the channel is never used: the Status stub is replaced
    store._maintenance = Maintenance(code)
    return store


async def test_a_user_refused_the_status_call_still_finds_etcd_answering() -> None:
    store = store_answering(grpc.StatusCode.PERMISSION_DENIED)
    try:
        await store.ping()  # newer etcd allows Status to root only: still an answer
    finally:
        await store.close()


async def test_etcd_not_answering_fails_the_ping() -> None:
    store = store_answering(grpc.StatusCode.UNAVAILABLE)
    try:
        with pytest.raises(CoordUnavailable, match="UNAVAILABLE"):
            await store.ping()
    finally:
        await store.close()
