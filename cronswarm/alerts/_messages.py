"""What each kind of channel receives, built as data (never by string templates).

Everything here is pure: a ``Notice`` in, an email message or a JSON-ready
``dict`` out. Senders serialise the dicts with ``json.dumps``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from ..common import AlertKind, from_ms
from ._engine import Notice

_LABELS = {
    AlertKind.FAILURE: "FAILED",
    AlertKind.TIMEOUT: "TIMEOUT",
    AlertKind.LOST: "LOST",
    AlertKind.DEAD_MAN: "OVERDUE",
    AlertKind.RECOVERY: "RECOVERED",
    AlertKind.CLOCK_OFFSET: "CLOCK",
}
# Feishu card header colours.
_TEMPLATES = {
    AlertKind.FAILURE: "red", AlertKind.TIMEOUT: "orange", AlertKind.LOST: "red",
    AlertKind.DEAD_MAN: "orange", AlertKind.RECOVERY: "green", AlertKind.CLOCK_OFFSET: "red",
}


def subject(notice: Notice, cluster: str) -> str:
    return f"[{cluster}] {_LABELS[notice.kind]}: {notice.title}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def email_message(notice: Notice, *, cluster: str, sender: str,
                  recipients: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = _one_line(subject(notice, cluster))
    message["Date"] = format_datetime(from_ms(notice.at))
    message["Message-ID"] = make_msgid(domain="cronswarm.invalid")
    message["X-Cronswarm-Event"] = notice.event_id
    lines = [notice.text, ""]
    width = max((len(label) for label, _ in notice.fields), default=0)
    lines += [f"{label.ljust(width)}  {value}" for label, value in notice.fields]
    lines += ["", f"-- {cluster} (cronswarm)"]
    message.set_content("\n".join(lines))
    return message


def webhook_body(notice: Notice, *, cluster: str) -> dict[str, Any]:
    """The generic webhook's JSON document."""
    return {
        "cluster": cluster,
        "event_id": notice.event_id,
        "kind": notice.kind.value,
        "job": notice.job,
        "at": notice.at,
        "title": notice.title,
        "text": notice.text,
        "record_id": notice.record_id,
        "suppressed": notice.suppressed,
        "fields": dict(notice.fields),
    }


def webhook_signature(body: bytes, secret: str) -> str:
    """``X-Cronswarm-Signature``: ``sha256=`` and the HMAC-SHA256 of the body, in hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn needs only these three escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(notice: Notice, *, cluster: str) -> dict[str, Any]:
    """A Slack incoming-webhook message: a fallback text and Block Kit blocks."""
    title = _slack_escape(subject(notice, cluster))
    fields = [{"type": "mrkdwn", "text": f"*{_slack_escape(label)}*\n{_slack_escape(value)}"}
              for label, value in notice.fields[:10]]  # Slack allows 10 per section
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": subject(notice, cluster)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(notice.text)}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    return {"text": title, "blocks": blocks}


def feishu_sign(timestamp: int, secret: str) -> str:
    """Feishu's custom-bot signature: HMAC-SHA256 keyed by ``"<ts>\\n<secret>"`` over
    nothing, base64."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def feishu_card(notice: Notice, *, cluster: str) -> dict[str, Any]:
    """A Feishu (Lark) interactive card. Values go in ``plain_text`` elements, so
    nothing in a job name or an error message is read as markup."""
    fields = [
        {"is_short": len(value) <= 40,
         "text": {"tag": "plain_text", "content": f"{label}: {value}"}}
        for label, value in notice.fields
    ]
    elements: list[dict[str, Any]] = [
        {"tag": "div", "text": {"tag": "plain_text", "content": notice.text}},
    ]
    if fields:
        elements.append({"tag": "div", "fields": fields})
    elements.append({"tag": "hr"})
    elements.append({"tag": "note", "elements": [
        {"tag": "plain_text", "content": f"{cluster} · {notice.event_id}"}]})
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "title": {"tag": "plain_text", "content": subject(notice, cluster)},
                "template": _TEMPLATES[notice.kind],
            },
            "elements": elements,
        },
    }


def feishu_body(notice: Notice, *, cluster: str, secret: str | None, timestamp: int
                ) -> dict[str, Any]:
    body = feishu_card(notice, cluster=cluster)
    if secret:
        body = {"timestamp": str(timestamp), "sign": feishu_sign(timestamp, secret), **body}
    return body
