"""Channel documents (validation, write-only secrets) and the messages each kind of
channel receives (built as data)."""

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from cronswarm.alerts import (
    Channel,
    Notice,
    email_message,
    feishu_body,
    feishu_sign,
    resolve_channels,
    slack_body,
    webhook_body,
    webhook_signature,
)
from cronswarm.alerts._delivery import MAX_RETRY_DELAY
from cronswarm.common import AlertKind, AlertRule, ValidationError, backoff_delay

SECRET = "s3cret-Value-77"
EMAIL = {"name": "mail", "type": "email", "host": "smtp.example.com", "username": "u",
         "password": SECRET, "sender": "a@example.com", "recipients": ["b@example.com"]}
WEBHOOK = {"name": "hook", "type": "webhook", "url": f"https://h.example/x?t={SECRET}",
           "headers": {"X-Token": SECRET}, "signing_secret": SECRET}
SLACK = {"name": "slack", "type": "slack", "url": f"https://hooks.example/services/{SECRET}"}
FEISHU = {"name": "lark", "type": "feishu", "url": f"https://open.example/hook/{SECRET}",
          "signing_secret": SECRET}


@pytest.mark.parametrize("data", [EMAIL, WEBHOOK, SLACK, FEISHU])
def test_public_view_never_holds_a_secret(data: dict[str, Any]) -> None:
    channel = Channel.from_dict(data)
    assert SECRET not in json.dumps(channel.public())
    assert channel.public()["secrets_set"]
    assert SECRET in channel.to_stored().decode()  # etcd keeps them
    assert Channel.from_stored(channel.to_stored()) == channel
    assert channel.scrub(f"error talking to {data.get('url', SECRET)}").count(SECRET) == 0
    if "url" in data:  # a library quoting only part of the URL, or its own way
        path = data["url"].split("://", 1)[1].split("/", 1)[1]
        assert SECRET not in channel.scrub(f"bad path /{path} (host h.example)")


@pytest.mark.parametrize(("data", "fields"), [
    ({"name": "x", "type": "pager"}, {"type"}),
    ({"type": "slack", "url": "https://x.example"}, {"name"}),
    ({"name": "../x", "type": "slack", "url": "https://x.example"}, {"name"}),
    ({"name": "x", "type": "slack"}, {"url"}),
    ({"name": "x", "type": "slack", "url": "ftp://x.example"}, {"url"}),
    ({"name": "x", "type": "slack", "url": "https://x.example/a b"}, {"url"}),
    ({"name": "x", "type": "slack", "url": "https://x.example", "host": "h"}, {"host"}),
    ({**EMAIL, "username": None}, {"username"}),
    ({**EMAIL, "security": "none"}, {"security"}),
    ({**EMAIL, "recipients": []}, {"recipients"}),
    ({**EMAIL, "recipients": ["a@b.c", "evil\r\nBcc: x@y.z"]}, {"recipients"}),
    ({**EMAIL, "recipients": [{}]}, {"recipients"}),
    ({**EMAIL, "recipients": "ops@example.com"}, {"recipients"}),
    ({**EMAIL, "sender": "nobody"}, {"sender"}),
    ({**EMAIL, "port": 70000}, {"port"}),
    ({**WEBHOOK, "headers": {"Content-Type": "text/plain"}}, {"headers.Content-Type"}),
    ({**WEBHOOK, "headers": {"X-A": "a\r\nX-B: b"}}, {"headers.X-A"}),
])
def test_invalid_channels_name_each_bad_field(data: dict[str, Any], fields: set[str]) -> None:
    with pytest.raises(ValidationError) as info:
        Channel.from_dict(data)
    assert {p.field for p in info.value.problems} == fields


def test_replace_keeps_secrets_left_out_and_clears_those_given_as_null() -> None:
    stored = Channel.from_dict(WEBHOOK)
    kept = Channel.from_dict({"type": "webhook", "description": "d"}, name="hook",
                             stored=stored)
    assert kept.secrets == stored.secrets and kept.description == "d"
    cleared = Channel.from_dict({"type": "webhook", "signing_secret": None, "headers": {}},
                                name="hook", stored=stored)
    assert set(cleared.secrets) == {"url"}
    with pytest.raises(ValidationError):
        Channel.from_dict({"type": "slack"}, name="hook", stored=stored)  # type is fixed
    email = Channel.from_dict(EMAIL)
    assert email.settings["port"] == 587
    assert Channel.from_dict({**EMAIL, "security": "tls"}).settings["port"] == 465


NOTICE = Notice("failure:j@1#1", AlertKind.FAILURE, 'job "<x>"&', 1_767_225_600_000,
                'job "<x>"& failed', "Run failed: <b>oops</b>\n\"quoted\" {{card}}",
                (("Job", 'job "<x>"&'), ("Error", "line1\nline2 <at email=''>all</at>")))


def test_feishu_card_is_data_and_carries_text_verbatim() -> None:
    body = feishu_body(NOTICE, cluster="prod", secret=SECRET, timestamp=1_700_000_000)
    wire = json.dumps(body)
    back = json.loads(wire)
    card = back["card"]
    assert back["msg_type"] == "interactive"
    assert card["header"]["template"] == "red"
    texts = [card["elements"][0]["text"]["content"]]
    texts += [f["text"]["content"] for f in card["elements"][1]["fields"]]
    assert texts[0] == NOTICE.text  # newlines, quotes and braces intact
    assert "Error: line1\nline2 <at email=''>all</at>" in texts
    # every piece of text is plain_text: nothing is read as markup
    assert all(f["text"]["tag"] == "plain_text" for f in card["elements"][1]["fields"])
    expected = base64.b64encode(hmac.new(f"1700000000\n{SECRET}".encode(), b"",
                                         hashlib.sha256).digest()).decode()
    assert back["sign"] == expected == feishu_sign(1_700_000_000, SECRET)
    assert back["timestamp"] == "1700000000"
    assert "sign" not in feishu_body(NOTICE, cluster="prod", secret=None, timestamp=1)


def test_slack_escapes_its_markup_and_webhook_bodies_are_signed() -> None:
    body = slack_body(NOTICE, cluster="prod")
    markup = [body["text"], body["blocks"][1]["text"]["text"],
              *(f["text"] for f in body["blocks"][2]["fields"])]
    assert not any("<" in text or ">" in text for text in markup)
    assert "&lt;x&gt;" in body["text"]
    assert body["blocks"][0]["text"]["type"] == "plain_text"  # not markup: kept verbatim
    hook = webhook_body(NOTICE, cluster="prod")
    assert hook["kind"] == "failure" and hook["fields"]["Job"] == 'job "<x>"&'
    raw = json.dumps(hook).encode()
    assert webhook_signature(raw, SECRET) == "sha256=" + hmac.new(
        SECRET.encode(), raw, hashlib.sha256).hexdigest()


def test_email_has_one_line_headers_and_the_fields_in_its_body() -> None:
    message = email_message(NOTICE, cluster="prod", sender="a@example.com",
                            recipients=["b@example.com", "c@example.com"])
    assert message["Subject"] == '[prod] FAILED: job "<x>"& failed'
    assert message["To"] == "b@example.com, c@example.com"
    text = message.get_content()
    assert "Run failed: <b>oops</b>" in text and "Error  line1" in text


def test_channel_resolution_and_retry_backoff() -> None:
    channels = [Channel.from_dict({**SLACK, "default": True}),
                Channel.from_dict({**FEISHU, "enabled": False, "default": True}),
                Channel.from_dict(WEBHOOK)]
    assert resolve_channels(AlertRule(), channels) == ["slack"]
    named = AlertRule.from_dict({"channels": ["hook", "lark", "typo"]})
    assert resolve_channels(named, channels) == ["hook", "typo"]
    for attempt, base in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (9, 60)]:
        assert base <= backoff_delay(attempt, first=2, cap=MAX_RETRY_DELAY) <= base * 1.1
