"""Dashboard login: signed session cookie (HttpOnly, SameSite=Strict) and CSRF on
every state-changing request a session authenticates; a failed CSRF check is a
403, never a login redirect."""

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from html import unescape
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode

import pytest
from aiohttp import ClientResponse, ClientSession, CookieJar
from aiohttp.test_utils import TestServer

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import TokenRecord, create_app
from tests.apiclient import raw_request

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    def __init__(self, http: ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def get(self, path: str) -> tuple[ClientResponse, str]:
        resp = await self.http.get(self.base + path, allow_redirects=False)
        return resp, await resp.text()

    async def post(self, path: str, **kw: object) -> ClientResponse:
        resp = await self.http.post(self.base + path, allow_redirects=False, **kw)
        await resp.read()
        return resp

    async def csrf_of(self, path: str) -> str:
        resp, html = await self.get(path)
        assert resp.status == 200, html
        found = CSRF_RE.search(html)
        assert found is not None, html
        return found.group(1)

    async def log_in(self, token: str) -> ClientResponse:
        csrf = await self.csrf_of("/login")
        return await self.post("/login", data={"token": token, "csrf": csrf, "next": "/"})


@pytest.fixture
async def browser(settings: Settings, admin_token: str, logs: MongoLogStore
                  ) -> AsyncIterator[Browser]:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
            yield Browser(http, str(server.make_url("")).rstrip("/"))
    finally:
        await server.close()


def set_cookie(resp: ClientResponse, name: str) -> str:
    for header in resp.headers.getall("Set-Cookie", []):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no Set-Cookie for {name}: {resp.headers}")


async def test_login_sets_a_strict_httponly_session(browser: Browser, admin_token: str,
                                                    logs: MongoLogStore) -> None:
    resp, _ = await browser.get("/")
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
    resp = await browser.log_in(admin_token)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    cookie = set_cookie(resp, "cronswarm_session")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    value = SimpleCookie(cookie)["cronswarm_session"].value
    assert admin_token not in value and "." in value  # signed payload, not the token
    resp, html = await browser.get("/")
    assert resp.status == 200 and "Jobs" in html
    assert [e.action for e in await logs.query_audit()] == ["session.login"]


async def test_login_without_a_valid_csrf_token_is_403(browser: Browser,
                                                       admin_token: str) -> None:
    resp = await browser.post("/login", data={"token": admin_token})
    assert resp.status == 403
    assert "cronswarm_session" not in resp.cookies
    csrf = await browser.csrf_of("/login")
    browser.http.cookie_jar.clear()  # the form's token without the nonce cookie
    resp = await browser.post("/login", data={"token": admin_token, "csrf": csrf})
    assert resp.status == 403
    csrf = await browser.csrf_of("/login")
    resp = await browser.post("/login", data={"token": admin_token, "csrf": csrf + "x"})
    assert resp.status == 403


async def test_bad_token_at_login_is_refused(browser: Browser) -> None:
    csrf = await browser.csrf_of("/login")
    resp = await browser.post("/login", data={"token": "cs_nope_nope", "csrf": csrf})
    assert resp.status == 401
    assert "cronswarm_session" not in resp.cookies


async def test_logout_needs_the_csrf_token(browser: Browser, admin_token: str,
                                           logs: MongoLogStore) -> None:
    await browser.log_in(admin_token)
    resp = await browser.post("/logout", data={})
    assert resp.status == 403  # not a redirect to the login page
    resp = await browser.post("/logout", data={"csrf": "forged"})
    assert resp.status == 403
    assert (await browser.get("/"))[0].status == 200  # still logged in
    csrf = await browser.csrf_of("/")
    resp = await browser.post("/logout", data={"csrf": csrf})
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert (await browser.get("/"))[0].status == 302
    assert "session.logout" in [e.action for e in await logs.query_audit()]


async def test_session_cookie_on_the_api_needs_the_csrf_header(browser: Browser,
                                                               admin_token: str) -> None:
    await browser.log_in(admin_token)
    job = {"name": "via-session", "schedule": "0 2 * * *", "command": "true"}
    assert (await browser.get("/api/jobs"))[0].status == 200  # reads need none
    resp = await browser.post("/api/jobs", json=job)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf"
    assert (await browser.get("/api/jobs/via-session"))[0].status == 404
    csrf = await browser.csrf_of("/")
    resp = await browser.post("/api/jobs", json=job, headers={"X-CSRF-Token": csrf})
    assert resp.status == 201


async def test_a_tampered_session_is_no_session(browser: Browser, admin_token: str) -> None:
    await browser.log_in(admin_token)
    cookie = next(c for c in browser.http.cookie_jar if c.key == "cronswarm_session")
    payload, _, signature = cookie.value.partition(".")
    browser.http.cookie_jar.clear()
    forged = {"Cookie": f"cronswarm_session={payload}.{signature[::-1]}"}
    resp = await browser.http.get(browser.base + "/", headers=forged, allow_redirects=False)
    assert resp.status == 302
    resp = await browser.http.get(browser.base + "/api/jobs", headers=forged)
    assert resp.status == 401
    resp = await browser.http.get(browser.base + "/", allow_redirects=False,
                                  headers={"Cookie": f"cronswarm_session={cookie.value}"})
    assert resp.status == 200  # the untouched cookie still works


NEXT_RE = re.compile(r'name="next" value="([^"]*)"')
# (the ``next`` the login receives, after the query or form is decoded; where it goes)
NEXT_TARGETS = [
    ("/jobs?status=failed", "/jobs?status=failed"),
    ("/runs/nightly@1%231", "/runs/nightly@1%231"),
    ("/", "/"),
    ("/\\evil.com", "/"),  # browsers read '\' as '/': //evil.com
    ("/\\\\evil.com", "/"),
    ("/\\/evil.com", "/"),
    ("//evil.com", "/"),
    ("///evil.com", "/"),
    ("/\t/evil.com", "/"),  # browsers drop tabs and line breaks in URLs
    ("/\r\n/evil.com", "/"),
    ("/%2F/evil.com", "/"),  # '//' once decoded
    ("/%5Cevil.com", "/"),
    ("https://evil.com/", "/"),
    ("evil.com", "/"),
    ("", "/"),
]


@pytest.mark.parametrize(("wanted", "target"), NEXT_TARGETS,
                         ids=[repr(w) for w, _ in NEXT_TARGETS])
async def test_the_login_sends_the_user_only_to_a_path_on_this_site(
    browser: Browser, admin_token: str, wanted: str, target: str,
) -> None:
    resp, html = await browser.get("/login?" + urlencode({"next": wanted}))
    assert resp.status == 200
    found = NEXT_RE.search(html)
    assert found is not None and unescape(found.group(1)) == target
    csrf = await browser.csrf_of("/login")
    resp = await browser.post("/login", data={"token": admin_token, "csrf": csrf,
                                              "next": wanted})
    assert resp.status == 303 and resp.headers["Location"] == target


async def test_a_page_sends_to_the_login_and_back(browser: Browser, admin_token: str) -> None:
    resp, _ = await browser.get("/runs?status=failed&job=nightly")
    assert resp.status == 302
    location = resp.headers["Location"]
    assert location.startswith("/login?")
    assert parse_qs(location.split("?", 1)[1])["next"] == ["/runs?status=failed&job=nightly"]


async def raw_page(browser: Browser, head: bytes, body: bytes = b""
                   ) -> tuple[int, dict[str, str], str]:
    status, headers, answer = await raw_request(browser.base, head, body)
    return status, headers, answer.decode()


@pytest.mark.parametrize("cookie", [
    b"cronswarm_login=\xc3\xa9", b"cronswarm_login=\xff", b"cronswarm_session=\xc3\xa9.\xff",
])
async def test_non_ascii_cookies_on_the_login_page_are_ignored(browser: Browser,
                                                               cookie: bytes) -> None:
    status, headers, html = await raw_page(
        browser, b"GET /login HTTP/1.1\r\nCookie: " + cookie + b"\r\n")
    assert status == 200, html
    assert CSRF_RE.search(html) is not None
    assert "cronswarm_login=" in headers["set-cookie"]  # a fresh nonce of our own


async def test_a_non_ascii_login_nonce_or_csrf_token_is_a_403(browser: Browser,
                                                               admin_token: str) -> None:
    form = urlencode({"token": admin_token, "csrf": "x", "next": "/"}).encode()
    for cookie in (b"cronswarm_login=\xff", b"cronswarm_login=\xc3\xa9" * 16):
        status, _, html = await raw_page(browser, (
            b"POST /login HTTP/1.1\r\nCookie: " + cookie + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"), form)
        assert status == 403, html
    await browser.log_in(admin_token)
    session = next(c for c in browser.http.cookie_jar if c.key == "cronswarm_session")
    for token in (b"\xff", b"\xc3\xa9"):
        status, _, body = await raw_page(browser, (
            b"POST /api/jobs/nightly/pause HTTP/1.1\r\n"
            b"Cookie: cronswarm_session=" + session.value.encode() + b"\r\n"
            b"X-CSRF-Token: " + token + b"\r\n"))
        assert status == 403, body
        assert json.loads(body)["error"]["code"] == "csrf"


async def test_secure_cookies_can_be_forced_behind_a_tls_proxy(
    settings: Settings, admin_token: str, logs: MongoLogStore,
) -> None:
    # The master sees plain HTTP from a TLS-terminating proxy; the browser sees HTTPS.
    server = TestServer(create_app(settings.with_overrides(secure_cookies=True)),
                        host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
            browser = Browser(http, str(server.make_url("")).rstrip("/"))
            resp, html = await browser.get("/login")
            assert "Secure" in set_cookie(resp, "cronswarm_login")
            found = CSRF_RE.search(html)
            assert found is not None
            # The jar keeps a Secure cookie away from http://: send the nonce by hand.
            nonce = SimpleCookie(set_cookie(resp, "cronswarm_login"))["cronswarm_login"].value
            resp = await browser.post(
                "/login", data={"token": admin_token, "csrf": found.group(1), "next": "/"},
                headers={"Cookie": f"cronswarm_login={nonce}"})
            assert resp.status == 303
            assert "Secure" in set_cookie(resp, "cronswarm_session")
    finally:
        await server.close()


async def test_cookies_are_not_secure_over_plain_http_by_default(browser: Browser,
                                                                 admin_token: str) -> None:
    resp, _ = await browser.get("/login")
    assert "Secure" not in set_cookie(resp, "cronswarm_login")
    resp = await browser.log_in(admin_token)
    assert "Secure" not in set_cookie(resp, "cronswarm_session")


async def test_a_copied_session_cookie_stops_working_after_logout_on_every_master(
    browser: Browser, settings: Settings, admin_token: str,
) -> None:
    await browser.log_in(admin_token)
    session = next(c for c in browser.http.cookie_jar if c.key == "cronswarm_session")
    copied = {"Cookie": f"cronswarm_session={session.value}"}
    other = TestServer(create_app(settings), host="127.0.0.1")  # a second master
    await other.start_server()
    try:
        other_base = str(other.make_url("")).rstrip("/")
        async with ClientSession() as thief:
            resp = await thief.get(other_base + "/api/me", headers=copied)
            assert resp.status == 200  # the cookie is good on any master
            csrf = await browser.csrf_of("/")
            assert (await browser.post("/logout", data={"csrf": csrf})).status == 303
            for base in (browser.base, other_base):
                resp = await thief.get(base + "/api/me", headers=copied)
                assert resp.status == 401, base
                resp = await thief.get(base + "/", headers=copied, allow_redirects=False)
                assert resp.status == 302, base
    finally:
        await other.close()


async def test_a_session_ends_when_its_token_expires(
    browser: Browser, admin_token: str, store: EtcdStore, keys: Keyspace,
) -> None:
    assert (await browser.log_in(admin_token)).status == 303
    assert (await browser.get("/api/me"))[0].status == 200
    token_id = admin_token.split("_")[1]
    kv = await store.get(keys.token(token_id))
    assert kv is not None
    expired = replace(TokenRecord.decode(kv, token_id), expires=1)  # long past
    await store.put(keys.token(token_id), expired.encode())
    resp, body = await browser.get("/api/me")
    assert resp.status == 401 and json.loads(body)["error"]["code"] == "token_expired"
    browser.http.cookie_jar.clear()
    assert (await browser.log_in(admin_token)).status == 401
