"""Each contract test runs twice: on the in-memory twin and on the real server.

The real servers are the session's (tests/conftest.py): a test that cannot
reach one fails, it never skips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from aetcd import rpc

from cronswarm.coord import CoordStore, EtcdStore, MemoryCoordStore
from cronswarm.devservices import EtcdServer
from cronswarm.logstore import LogStore, MemoryLogStore

# Test records have ticks from 1970 on: a retention this long keeps them (as the
# ``logs`` fixture does on the real server).
TEST_RETENTION_DAYS = 100 * 366


class ManualClock:
    """Monotonic seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Coord:
    """A coordination store under test, with its own key prefix."""

    store: CoordStore
    prefix: str
    kind: str  # "memory" or "etcd"
    clock: ManualClock | None = None  # the twin's

    def key(self, name: str) -> str:
        return self.prefix + name

    def let_time_pass(self, seconds: float) -> None:
        """Move the twin's clock (and collect its expired leases). On etcd time
        passes by itself: a test waits for what it expects, with a deadline."""
        if isinstance(self.store, MemoryCoordStore):
            assert self.clock is not None
            self.clock.now += seconds
            self.store.expire_leases()

    async def compact(self, revision: int) -> None:
        """Compact the store's history below ``revision``."""
        if isinstance(self.store, MemoryCoordStore):
            self.store.compact(revision)
            return
        assert isinstance(self.store, EtcdStore)
        self.store._stubs()
        try:
            await self.store._kv.Compact(rpc.CompactionRequest(revision=revision, physical=True),
                                         timeout=self.store.timeout)
        except grpc.aio.AioRpcError as exc:
            raise AssertionError(f"etcd refused the compaction: {exc.details()}") from exc


@pytest.fixture
def compacts() -> None:
    """Asked for by a test that compacts the store's history: on etcd it gets a
    server of its own, so that no other test's watch loses its revisions."""


@pytest.fixture(params=["memory", "etcd"])
def real_coord(request: pytest.FixtureRequest) -> tuple[EtcdStore, str, bool] | None:
    """The real store, its key prefix (cleaned up after the test) and whether the
    test owns it, or None for the twin. A plain fixture: it sets the async
    fixtures up outside the test's loop."""
    if request.param == "memory":
        return None
    if "compacts" in request.fixturenames:
        server: EtcdServer = request.getfixturevalue("own_etcd")
        return EtcdStore([server.endpoint]), "/contract/", True
    prefix = request.getfixturevalue("settings").key_prefix + "/"
    return request.getfixturevalue("store"), prefix, False


@pytest.fixture
async def coord(real_coord: tuple[EtcdStore, str, bool] | None) -> AsyncIterator[Coord]:
    if real_coord is not None:
        real, prefix, owned = real_coord
        yield Coord(real, prefix, "etcd")
        if owned:
            await real.close()
        return
    clock = ManualClock()
    twin = MemoryCoordStore(clock=clock)
    yield Coord(twin, "/contract/", "memory", clock)
    await twin.close()


@pytest.fixture(params=["memory", "mongodb"])
def real_logstore(request: pytest.FixtureRequest) -> LogStore | None:
    """The real store (its own database, dropped after the test), or None."""
    return None if request.param == "memory" else request.getfixturevalue("logs")  # type: ignore[no-any-return]


@pytest.fixture
async def logstore(real_logstore: LogStore | None) -> AsyncIterator[LogStore]:
    if real_logstore is not None:
        yield real_logstore
        return
    twin = MemoryLogStore(default_retention_days=TEST_RETENTION_DAYS)
    yield twin
    await twin.close()
