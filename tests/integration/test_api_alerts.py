"""Alert channels through the API: admin only, audited, and their secrets are
write-only: never in a response, the audit trail or the log. Deliveries and the
leader are readable; /metrics parses."""

import asyncio
import json
import logging
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master import Role
from cronswarm.master._http import LEADER
from tests.apiclient import Api, running_master
from tests.conftest import make_token

PASSWORD = "pw-5ecret-Kq81"
SLACK_URL = "https://hooks.slack.example/services/T0/B0/tok-5ecret-Zr22"
HOOK_URL = "http://127.0.0.1:9/hook?token=tok-5ecret-Hx93"
HEADER = "Bearer hdr-5ecret-Lm47"
SIGNING = "sign-5ecret-Pq55"
FEISHU_URL = "https://open.feishu.example/open-apis/bot/v2/hook/fs-5ecret-Wd18"
SECRETS = (PASSWORD, SLACK_URL, "tok-5ecret", HEADER, "hdr-5ecret", SIGNING, "fs-5ecret")

CHANNELS: list[dict[str, Any]] = [
    {"name": "mail", "type": "email", "host": "smtp.example.com", "security": "starttls",
     "username": "cron", "password": PASSWORD, "sender": "cron@example.com",
     "recipients": ["ops@example.com"], "default": True},
    {"name": "hook", "type": "webhook", "url": HOOK_URL,
     "headers": {"Authorization": HEADER}, "signing_secret": SIGNING},
    {"name": "slack", "type": "slack", "url": SLACK_URL},
    {"name": "lark", "type": "feishu", "url": FEISHU_URL, "signing_secret": SIGNING},
]


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret {secret!r} leaked: {text[:2000]}"


async def body(api: Api, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    resp = await api.call(method, path, **kw)
    raw = await resp.text()
    assert_no_secret(raw)
    return resp.status, (json.loads(raw) if raw else None)


async def wait_leading(api: Api) -> dict[str, Any]:
    """Once this (only) master has been elected and has run a duty."""
    assert api.app is not None
    async with asyncio.timeout(30):
        await api.app[LEADER].wait_duty("alerts")
    status, leader = await body(api, "GET", "/api/leader")
    assert status == 200 and leader["this_master_leads"], leader
    return leader


async def test_channels_are_admin_only_audited_and_never_show_their_secrets(
    settings: Settings, store: EtcdStore, keys: Keyspace, logs: MongoLogStore,
    admin_token: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    viewer = await make_token(store, keys, Role.VIEWER)
    async with running_master(settings, admin_token) as api:
        for channel in CHANNELS:
            status, created = await body(api, "POST", "/api/alerts/channels", json=channel)
            assert status == 201, created
            assert created["name"] == channel["name"]
        status, listed = await body(api, "GET", "/api/alerts/channels")
        assert status == 200
        shown = {c["name"]: c for c in listed["channels"]}
        assert shown["mail"]["secrets_set"] == ["password"]
        assert shown["mail"]["target"] == "smtp.example.com:587"
        assert shown["hook"]["secrets_set"] == ["headers", "signing_secret", "url"]
        assert shown["hook"]["target"] == "http://127.0.0.1:9"
        assert shown["slack"]["target"] == "https://hooks.slack.example"

        # Replacing without the secrets keeps them; null clears an optional one.
        status, replaced = await body(api, "PUT", "/api/alerts/channels/hook", json={
            "type": "webhook", "description": "ops hook", "signing_secret": None})
        assert status == 200, replaced
        assert replaced["secrets_set"] == ["headers", "url"]
        stored = json.loads((await store.get(keys.alert_channel("hook"))).value)
        assert stored["url"] == HOOK_URL and stored["headers"] == {"Authorization": HEADER}
        assert "signing_secret" not in stored
        status, mail = await body(api, "PUT", "/api/alerts/channels/mail", json={
            **{k: v for k, v in CHANNELS[0].items() if k != "password"}, "port": 2525})
        assert status == 200 and mail["port"] == 2525
        stored = json.loads((await store.get(keys.alert_channel("mail"))).value)
        assert stored["password"] == PASSWORD

        # Refusals: duplicates, unknown channels, bad input, weak roles.
        assert (await body(api, "POST", "/api/alerts/channels", json=CHANNELS[2]))[0] == 409
        assert (await body(api, "GET", "/api/alerts/channels/nope"))[0] == 404
        status, error = await body(api, "POST", "/api/alerts/channels", json={
            "name": "bad", "type": "email", "host": "h", "security": "none",
            "password": PASSWORD, "sender": "not-an-address", "recipients": []})
        assert status == 400
        fields = {f["field"] for f in error["error"]["fields"]}
        assert {"sender", "recipients", "username", "security"} <= fields
        status, error = await body(api, "POST", "/api/alerts/channels", json={
            "name": "bad", "type": "slack", "url": "ftp://x"})
        assert status == 400 and error["error"]["fields"][0]["field"] == "url"
        as_viewer = api.as_token(viewer)
        assert (await body(as_viewer, "GET", "/api/alerts/channels"))[0] == 403
        assert (await body(as_viewer, "POST", "/api/alerts/channels",
                           json=CHANNELS[2]))[0] == 403
        assert (await body(as_viewer, "GET", "/api/alerts"))[0] == 200

        status, _ = await body(api, "DELETE", "/api/alerts/channels/slack")
        assert status == 204
        assert (await body(api, "GET", "/api/alerts/channels/slack"))[0] == 404

        # Jobs name channels in their alert rule; the rule is validated.
        job = {"name": "j", "schedule": "0 0 1 1 *", "command": "true",
               "alerts": {"on": ["failure", "recovery"], "channels": ["hook"], "silence": 60}}
        status, created = await body(api, "POST", "/api/jobs", json=job)
        assert status == 201 and created["alerts"] == job["alerts"]
        status, error = await body(api, "POST", "/api/jobs", json={
            **job, "name": "k", "alerts": {"on": ["sometimes"], "channels": ["../x"]}})
        assert status == 400
        assert {f["field"] for f in error["error"]["fields"]} == {"alerts.on", "alerts.channels"}

        leader = await wait_leading(api)
        assert leader["leader"] == settings.master_id
        assert leader["terms"][0]["master"] == settings.master_id

        resp = await api.as_token(None).call("GET", "/metrics")
        assert resp.status == 200
        text = await resp.text()
        assert_no_secret(text)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["cronswarm_leader"].samples[0].value == 1
        assert families["cronswarm_cluster_jobs"].samples[0].value == 1

    entries = await logs.query_audit(limit=100)
    actions = [e.action for e in entries if e.target.startswith("channel:")]
    assert sorted(actions) == sorted(["channel.create"] * 4 + ["channel.update"] * 2
                                     + ["channel.delete"])
    assert_no_secret(json.dumps([e.to_dict() for e in entries], default=str))
    assert_no_secret("\n".join(r.getMessage() for r in caplog.records))
