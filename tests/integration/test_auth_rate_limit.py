"""Failed logins and bad API tokens are limited per client address: the 11th
failure within a minute is a 429 with Retry-After, and every failure is audited."""

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, CookieJar, TCPConnector
from aiohttp.test_utils import TestServer

from cronswarm.common import Settings
from cronswarm.logstore import MongoLogStore
from cronswarm.master import create_app

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
BAD = "cs_0123456789ab_not-the-secret"


@pytest.fixture
async def base(settings: Settings, admin_token: str, logs: MongoLogStore
               ) -> AsyncIterator[str]:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def client(address: str = "127.0.0.1") -> ClientSession:
    """A client whose connections come from ``address`` (any 127/8 address is local)."""
    return ClientSession(cookie_jar=CookieJar(unsafe=True),
                         connector=TCPConnector(local_addr=(address, 0)))


async def try_login(http: ClientSession, base: str, token: str) -> tuple[int, str | None]:
    async with http.get(base + "/login") as resp:
        found = CSRF_RE.search(await resp.text())
    assert found is not None
    async with http.post(base + "/login", allow_redirects=False,
                         data={"token": token, "csrf": found.group(1), "next": "/"}) as resp:
        return resp.status, resp.headers.get("Retry-After")


async def test_the_eleventh_bad_login_in_a_minute_is_429(
    base: str, admin_token: str, logs: MongoLogStore,
) -> None:
    async with client() as http:
        for _ in range(10):
            assert await try_login(http, base, BAD) == (401, None)
        status, retry_after = await try_login(http, base, BAD)
        assert status == 429
        assert retry_after is not None and 1 <= int(retry_after) <= 60
        # While the address is limited, not even a good token is tried.
        assert (await try_login(http, base, admin_token))[0] == 429
    async with client("127.0.0.2") as http:  # another address is not limited
        assert (await try_login(http, base, admin_token))[0] == 303
    failures = [e for e in await logs.query_audit() if e.action == "session.login_failed"]
    assert len(failures) == 10
    assert {e.details["address"] for e in failures} == {"127.0.0.1"}
    assert {e.target for e in failures} == {"token:0123456789ab"}


async def test_the_eleventh_bad_api_token_in_a_minute_is_429(
    base: str, admin_token: str, logs: MongoLogStore,
) -> None:
    bad = {"Authorization": f"Bearer {BAD}"}
    async with client() as http:
        for _ in range(10):
            async with http.get(base + "/api/me", headers=bad) as resp:
                assert resp.status == 401
        async with http.get(base + "/api/me", headers=bad) as resp:
            assert resp.status == 429
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
            assert (await resp.json())["error"]["code"] == "rate_limited"
        async with http.get(base + "/api/me",
                            headers={"Authorization": f"Bearer {admin_token}"}) as resp:
            assert resp.status == 429
        async with http.get(base + "/healthz") as resp:  # no credentials, no limit
            assert resp.status == 200
    good = {"Authorization": f"Bearer {admin_token}"}
    async with client("127.0.0.2") as http, http.get(base + "/api/me", headers=good) as resp:
        assert resp.status == 200
    failures = [e for e in await logs.query_audit() if e.action == "auth.token_failed"]
    assert len(failures) == 10
    assert all(e.details["address"] == "127.0.0.1" for e in failures)
