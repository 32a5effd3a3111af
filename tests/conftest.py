"""Test harness: a real etcd and a real MongoDB-protocol server per test session.

Both are started here (or taken from CRONSWARM_TEST_ETCD_ENDPOINTS and
CRONSWARM_TEST_MONGODB_URI). A test that needs one and cannot get it fails:
nothing is skipped. Each test gets its own etcd key prefix and MongoDB
database, so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.devservices import EtcdServer, MongoServer
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role, TokenStore

hypothesis_settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile(
    "thorough", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: with the suite spread over several processes
    (scripts/test.sh) they then run beside the many short ones, not last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer | None]:
    if os.environ.get("CRONSWARM_TEST_ETCD_ENDPOINTS"):
        yield None
        return
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    server.start()  # raises ServiceStartError: every test using it errors, none skips
    yield server
    server.stop()


@pytest.fixture(scope="session")
def etcd_endpoints(etcd_server: EtcdServer | None) -> list[str]:
    given = os.environ.get("CRONSWARM_TEST_ETCD_ENDPOINTS")
    if given:
        return given.split(",")
    assert etcd_server is not None
    return [etcd_server.endpoint]


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer | None]:
    if os.environ.get("CRONSWARM_TEST_MONGODB_URI"):
        yield None
        return
    server = MongoServer(tmp_path_factory.mktemp("mongodb"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo_uri(mongo_server: MongoServer | None) -> str:
    given = os.environ.get("CRONSWARM_TEST_MONGODB_URI")
    if given:
        return given
    assert mongo_server is not None
    return mongo_server.uri


@pytest.fixture
async def own_etcd(tmp_path: Path) -> AsyncIterator[EtcdServer]:
    """An etcd of the test's own, for tests that stop and restart it."""
    server = EtcdServer(tmp_path / "etcd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_mongo(tmp_path: Path) -> Iterator[MongoServer]:
    """A MongoDB-protocol server of the test's own, for tests that stop and
    restart it (on disk: it keeps its data through a restart)."""
    server = MongoServer(tmp_path / "mongodb")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(etcd_endpoints: list[str], mongo_uri: str, tmp_path: Path) -> Settings:
    """Settings isolated to this test: own key prefix, own database, own spool."""
    tag = uuid.uuid4().hex[:10]
    return Settings.load(
        {},
        etcd_endpoints=tuple(etcd_endpoints),
        mongodb_uri=mongo_uri,
        mongodb_database=f"test_{tag}",
        key_prefix=f"/test-{tag}",
        lease_ttl=3,
        handoff_delay=0.2,
        stats_interval=1.0,
        shutdown_grace=5.0,
        spool_dir=str(tmp_path / "spool"),
        log_flush_interval=0.1,
    )


@pytest.fixture
def keys(settings: Settings) -> Keyspace:
    return Keyspace(settings.key_prefix)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[EtcdStore]:
    etcd = EtcdStore(settings.etcd_endpoints, timeout=settings.etcd_timeout)
    await etcd.ping()
    yield etcd
    await etcd.delete(settings.key_prefix + "/", prefix=True)
    await etcd.close()


# Test records have ticks from 1970 on: with the default retention they would
# be expired at once, and the server's TTL sweeper (every 60 s) could delete
# them in the middle of a test.
TEST_RETENTION_DAYS = 100 * 366


@pytest.fixture
async def logs(settings: Settings) -> AsyncIterator[MongoLogStore]:
    mongo = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database,
                          default_retention_days=TEST_RETENTION_DAYS)
    await mongo.ensure_indexes()
    yield mongo
    await mongo.client.drop_database(settings.mongodb_database)
    await mongo.close()


async def make_token(store: EtcdStore, keys: Keyspace, role: Role) -> str:
    token, _ = await TokenStore(store, keys).create(
        name=f"test-{role.label}", role=role, created_by="tests", now_ms=0)
    return token


@pytest.fixture
async def admin_token(store: EtcdStore, keys: Keyspace) -> str:
    return await make_token(store, keys, Role.ADMIN)
