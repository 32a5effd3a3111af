"""API tokens with an optional expiry: an expired token is a 401 saying so."""

import time
from collections.abc import AsyncIterator

import pytest

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role, TokenStore
from tests.apiclient import Api, running_master


@pytest.fixture
async def api(settings: Settings, admin_token: str, logs: MongoLogStore) -> AsyncIterator[Api]:
    async with running_master(settings, admin_token) as client:
        yield client


async def test_a_token_created_with_an_expiry_says_when_and_works_until_then(api: Api) -> None:
    resp = await api.call("POST", "/api/tokens",
                          json={"name": "ci", "role": "viewer", "expires_in": 3600})
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["expires"] == created["created"] + 3600 * 1000
    assert (await api.as_token(created["token"]).call("GET", "/api/me")).status == 200
    listed = await (await api.call("GET", "/api/tokens")).json()
    assert {t["name"]: t["expires"] for t in listed["tokens"]}["ci"] == created["expires"]


async def test_a_token_without_an_expiry_never_expires(api: Api) -> None:
    resp = await api.call("POST", "/api/tokens", json={"name": "ops", "role": "viewer"})
    assert resp.status == 201
    assert (await resp.json())["expires"] is None


@pytest.mark.parametrize("expires_in", [0, -5, "1h", 1.5, True, 10 * 366 * 86400 + 1])
async def test_a_bad_expiry_is_400_naming_the_field(api: Api, expires_in: object) -> None:
    resp = await api.call("POST", "/api/tokens",
                          json={"name": "ci", "role": "viewer", "expires_in": expires_in})
    assert resp.status == 400
    assert [f["field"] for f in (await resp.json())["error"]["fields"]] == ["expires_in"]


async def test_an_expired_token_is_401_with_a_clear_error(
    api: Api, store: EtcdStore, keys: Keyspace,
) -> None:
    # Created an hour ago with a one-minute expiry (no waiting on the clock).
    an_hour_ago = int(time.time() * 1000) - 3600 * 1000
    token, _ = await TokenStore(store, keys).create(
        name="old", role=Role.ADMIN, created_by="tests", now_ms=an_hour_ago, expires_in=60)
    resp = await api.as_token(token).call("GET", "/api/me")
    assert resp.status == 401
    error = (await resp.json())["error"]
    assert error["code"] == "token_expired"
    assert "expired" in error["message"]
