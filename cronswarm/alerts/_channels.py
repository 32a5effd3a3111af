"""Alert channels: where alerts go (email, a webhook, Slack, Feishu).

A channel is stored whole in etcd at ``/alerts/channels/<name>``. Its secret
fields (the SMTP password, webhook URLs, which carry tokens, header values and
signing secrets) are write-only: ``public()`` never includes them, only which
of them are set, and ``secret_values()`` lists them so that error messages can
be scrubbed before they are logged or recorded.

On replace, a secret field that is absent keeps its stored value (the client
never sees it, so it cannot send it back); ``null`` clears an optional one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..common import FieldReader, ValidationError, check_http_url, check_name

CHANNEL_TYPES = ("email", "webhook", "slack", "feishu")
EMAIL_SECURITY = ("starttls", "tls", "none")
_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_EMAIL_RE = re.compile(r"[^@\s<>,;\"]{1,64}@[A-Za-z0-9.-]{1,255}")
_HOST_RE = re.compile(r"[A-Za-z0-9.\-:\[\]]{1,255}")
_HEADER_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host"})
_COMMON = ("name", "type", "enabled", "default", "description")
# Per type: its settings (shown) and its secrets (never shown).
SETTINGS: dict[str, tuple[str, ...]] = {
    "email": ("host", "port", "security", "verify_tls", "username", "sender", "recipients"),
    "webhook": (),
    "slack": (),
    "feishu": (),
}
SECRETS: dict[str, tuple[str, ...]] = {
    "email": ("password",),
    "webhook": ("url", "headers", "signing_secret"),
    "slack": ("url",),
    "feishu": ("url", "signing_secret"),
}
REQUIRED_SECRETS = {"webhook": ("url",), "slack": ("url",), "feishu": ("url",)}


def _check_email(address: str) -> str | None:
    return None if _EMAIL_RE.fullmatch(address) else "is not an email address (user@domain)"


def _check_host(host: str) -> str | None:
    return None if _HOST_RE.fullmatch(host) else "is not a host name or address"


def _check_header(name: str) -> str | None:
    if not _HEADER_RE.fullmatch(name):
        return "is not a valid HTTP header name"
    if name.lower() in _RESERVED_HEADERS:
        return "is set by cronswarm"
    return None


def _check_header_value(value: str) -> str | None:
    return "must not contain line breaks" if "\r" in value or "\n" in value else None


def url_target(url: str) -> str:
    """What a URL may show of itself: scheme and host (tokens live in the rest)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    type: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    default: bool = False  # receives alerts of jobs whose rule names no channel
    description: str = ""

    @classmethod
    def from_dict(cls, data: object, *, name: str | None = None,
                  stored: Channel | None = None) -> Channel:
        """Validate an untrusted object; missing secrets are taken from ``stored``."""
        if name is not None and isinstance(data, Mapping):
            data = {**data, "name": name}
        kind = data.get("type") if isinstance(data, Mapping) else None
        allowed = _COMMON + SETTINGS.get(str(kind), ()) + SECRETS.get(str(kind), ())
        r = FieldReader(data, allowed=allowed if kind in CHANNEL_TYPES else ())
        channel_name = r.string("name", max_len=128, check=check_name)
        kind = r.choice("type", CHANNEL_TYPES)
        if r.data.get("type") not in CHANNEL_TYPES:
            r.finish()  # nothing else can be checked without a type
        if stored is not None and stored.type != kind:
            r.fail("type", f"cannot change from {stored.type!r}; delete and create instead")
        enabled = r.boolean("enabled", True)
        default = r.boolean("default", False)
        description = r.string("description", "", max_len=1024, non_empty=False)
        reader = _READERS[kind]
        settings, secrets = reader(r)
        kept = dict(stored.secrets) if stored is not None else {}
        for key in SECRETS[kind]:
            if key not in r.data and key in kept:
                secrets[key] = kept[key]  # given values replace, null or {} clears
        for key in REQUIRED_SECRETS.get(kind, ()):
            if key not in secrets and not any(p.field == key for p in r.problems):
                r.fail(key, "is required")
        if kind == "email" and secrets.get("password"):
            if not settings.get("username"):
                r.fail("username", "is required with a password")
            if settings.get("security") == "none":
                r.fail("security", "must be starttls or tls to send a password")
        r.finish()
        return cls(channel_name, kind, settings, secrets, enabled, default, description)

    def to_stored(self) -> bytes:
        """The etcd encoding: everything, secrets included."""
        return json.dumps({
            "name": self.name, "type": self.type, "enabled": self.enabled,
            "default": self.default, "description": self.description,
            **self.settings, **self.secrets,
        }, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_stored(cls, raw: bytes) -> Channel:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError.single("channel", f"is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def public(self) -> dict[str, Any]:
        """What the API shows and the audit trail records: no secret, ever."""
        out: dict[str, Any] = {
            "name": self.name, "type": self.type, "enabled": self.enabled,
            "default": self.default, "description": self.description, **self.settings,
            "secrets_set": sorted(k for k in SECRETS[self.type] if self.secrets.get(k)),
        }
        url = self.secrets.get("url")
        if isinstance(url, str):
            out["target"] = url_target(url)
        if self.type == "email":
            out["target"] = f"{self.settings['host']}:{self.settings['port']}"
        return out

    def secret_values(self) -> list[str]:
        """Every secret string of the channel (to scrub them from messages): a
        URL's path and query count too, whole and piece by piece, since a
        library may quote a URL in its own form."""
        whole: list[str] = []
        pieces: list[str] = []
        for key, value in self.secrets.items():
            if isinstance(value, str):
                whole.append(value)
                if key == "url":
                    parts = urlsplit(value)
                    pieces += [parts.path, parts.query, *re.split(r"[/?&=]", parts.path),
                               *re.split(r"[&=]", parts.query)]
            elif isinstance(value, Mapping):
                whole.extend(str(v) for v in value.values())
        return [v for v in whole if len(v) >= 4] + [v for v in pieces if len(v) >= 8]

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this channel replaced by ``***``."""
        for secret in sorted(self.secret_values(), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


Reader = Callable[[FieldReader], tuple[dict[str, Any], dict[str, Any]]]


def _email(r: FieldReader) -> tuple[dict[str, Any], dict[str, Any]]:
    host = r.string("host", max_len=255, check=_check_host)
    security = r.choice("security", EMAIL_SECURITY, "starttls")
    port = r.integer("port", _DEFAULT_PORTS[security], minimum=1, maximum=65535)
    verify = r.boolean("verify_tls", True)
    username = r.string("username", None, max_len=256)
    sender = r.string("sender", max_len=320, check=_check_email)
    recipients = r.data.get("recipients")
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= 50:
        r.fail("recipients", "must be a list of 1 to 50 email addresses")
        recipients = []
    else:
        for item in recipients:
            reason = _check_email(item) if isinstance(item, str) else "is not a string"
            if reason is not None:
                r.fail("recipients", f"{item!r} {reason}")
                recipients = []
                break
    password = r.string("password", None, max_len=1024)
    settings = {"host": host, "port": port, "security": security, "verify_tls": verify,
                "sender": sender, "recipients": list(dict.fromkeys(recipients))}
    if username is not None:
        settings["username"] = username
    return settings, {} if password is None else {"password": password}


def _url_secrets(r: FieldReader, *, headers: bool = False, signing: bool = False
                 ) -> dict[str, Any]:
    secrets: dict[str, Any] = {}
    url = r.string("url", None, max_len=4096, check=check_http_url)
    if url is not None:
        secrets["url"] = url
    if headers:
        values = r.string_map("headers", max_items=32, key_check=_check_header)
        for key, value in values.items():
            if (reason := _check_header_value(value)) is not None:
                r.fail(f"headers.{key}", reason)
        if values:
            secrets["headers"] = values
    if signing:
        secret = r.string("signing_secret", None, max_len=1024)
        if secret is not None:
            secrets["signing_secret"] = secret
    return secrets


_READERS: dict[str, Reader] = {
    "email": _email,
    "webhook": lambda r: ({}, _url_secrets(r, headers=True, signing=True)),
    "slack": lambda r: ({}, _url_secrets(r)),
    "feishu": lambda r: ({}, _url_secrets(r, signing=True)),
}
