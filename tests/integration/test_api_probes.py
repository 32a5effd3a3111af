"""Probes: ``/readyz`` names what is down without the error text behind it."""

import socket
from collections.abc import AsyncIterator

import pytest

from cronswarm.common import Settings
from cronswarm.logstore import MongoLogStore
from tests.apiclient import Api, running_master


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def dead_mongo() -> AsyncIterator[MongoLogStore]:
    logs = MongoLogStore(f"mongodb://127.0.0.1:{closed_port()}/down", timeout_ms=300)
    yield logs
    await logs.close()


async def test_readyz_names_what_is_down_without_its_error_text(
    settings: Settings, admin_token: str, dead_mongo: MongoLogStore,
) -> None:
    async with running_master(settings, admin_token, logs=dead_mongo) as api:
        resp = await api.as_token(None).call("GET", "/readyz")
        assert resp.status == 503
        body = await resp.text()
        assert await resp.json() == {"status": "unavailable",
                                     "checks": {"etcd": "ok", "mongodb": "unavailable"}}
        for leak in ("127.0.0.1", "refused", "Errno", "Timeout", "topology"):
            assert leak.lower() not in body.lower()


async def test_readyz_is_ok_when_both_answer(api: Api) -> None:
    resp = await api.as_token(None).call("GET", "/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "checks": {"etcd": "ok", "mongodb": "ok"}}


@pytest.fixture
async def api(settings: Settings, admin_token: str, logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(settings, admin_token) as client:
        yield client


async def test_metrics_behind_a_token_when_one_is_set(
    settings: Settings, admin_token: str, logs: MongoLogStore,
) -> None:
    secret = "scrape-0123456789abcdef"
    async with running_master(settings.with_overrides(metrics_token=secret), None) as api:
        assert (await api.call("GET", "/metrics")).status == 401
        assert (await api.as_token("wrong").call("GET", "/metrics")).status == 401
        assert (await api.as_token(admin_token).call("GET", "/metrics")).status == 401
        for _ in range(12):  # a scraper's token is no failed attempt: never limited
            resp = await api.as_token(secret).call("GET", "/metrics")
            assert resp.status == 200
        assert "cronswarm_build_info" in await resp.text()
    failed = [e for e in await logs.query_audit() if e.action == "auth.metrics_failed"]
    assert len(failed) == 3


async def test_metrics_are_open_by_default(api: Api) -> None:
    resp = await api.as_token(None).call("GET", "/metrics")
    assert resp.status == 200 and "cronswarm_build_info" in await resp.text()
