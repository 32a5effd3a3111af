"""JSON Schemas of the alert documents: job alert rules, channels (as written and
as shown: secrets are write-only), deliveries, and the leader's terms."""

from __future__ import annotations

from ..alerts import CHANNEL_TYPES, DELIVERY_STATUSES, EMAIL_SECURITY, SECRETS
from ..common import ALERT_KINDS
from ..common._alerting import MAX_SILENCE_S
from ._openapi_blocks import (
    MS,
    NAME_PATTERN,
    NON_BLANK,
    TEXT,
    URL_PATTERN,
    Schema,
    null_is_default,
    nullable,
    ref,
)

_EMAIL = r"^[^@\s<>,;\"\x00]{1,64}@[A-Za-z0-9.-]{1,255}$"
_HOST = r"^[A-Za-z0-9.\-:\[\]]{1,255}$"
_HEADER = (r"^(?![Cc][Oo][Nn][Tt][Ee][Nn][Tt]-([Tt][Yy][Pp][Ee]|[Ll][Ee][Nn][Gg][Tt][Hh])$"
           r"|[Hh][Oo][Ss][Tt]$)[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")


def alert_rule() -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "description": "which events alert, through which channels; no rule: every kind, "
                       "to the default channels; on: [] silences the job",
        "properties": {
            "on": nullable({"type": "array", "maxItems": 16,
                            "items": {"type": "string", "enum": list(ALERT_KINDS)}}),
            "channels": nullable({"type": "array", "maxItems": 16, "items": {
                "type": "string", "pattern": NAME_PATTERN}, "description":
                "channel names; empty: the channels marked default"}),
            "silence": nullable({"type": "number", "minimum": 1, "maximum": MAX_SILENCE_S,
                                 "description": "seconds between two problem alerts of the "
                                                "job (default: CRONSWARM_ALERT_SILENCE)"}),
        },
    }


def _string(max_len: int, pattern: str = NON_BLANK, **extra: object) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": pattern,
            **extra}


def _secret(schema: Schema) -> Schema:
    return {**schema, "writeOnly": True, "description": "secret: stored, never returned"}


def _common(*, name_required: bool, kind: str) -> tuple[dict[str, Schema], list[str]]:
    props: dict[str, Schema] = {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "type": {"type": "string", "const": kind},
        "enabled": {"type": "boolean", "default": True},
        "default": {"type": "boolean", "default": False,
                    "description": "receives the alerts of jobs whose rule names no channel"},
        "description": {"type": "string", "maxLength": 1024, "pattern": TEXT},
    }
    return props, ["name", "type"] if name_required else ["type"]


def _variant(kind: str, *, create: bool) -> Schema:
    props, required = _common(name_required=create, kind=kind)
    url = _secret(_string(4096, URL_PATTERN, description="absolute http(s) URL"))
    signing = nullable(_secret(_string(1024)))
    if kind == "email":
        props.update({
            "host": _string(255, _HOST),
            "port": {"type": "integer", "minimum": 1, "maximum": 65535,
                     "description": "default: 587 (starttls), 465 (tls), 25 (none)"},
            "security": {"type": "string", "enum": list(EMAIL_SECURITY),
                         "default": "starttls"},
            "verify_tls": {"type": "boolean", "default": True},
            "username": nullable(_string(256)),
            "password": nullable(_secret(_string(1024))),
            "sender": _string(320, _EMAIL),
            "recipients": {"type": "array", "minItems": 1, "maxItems": 50,
                           "items": _string(320, _EMAIL)},
        })
        required += ["host", "sender", "recipients"]
        schema: Schema = {
            "if": {"required": ["password"], "properties": {"password": {"type": "string"}}},
            "then": {"required": ["username"], "properties": {
                "username": {"type": "string"},
                "security": {"enum": ["starttls", "tls"]}}},
        }
    else:
        props["url"] = url
        if create:
            required.append("url")
        if kind == "webhook":
            props["headers"] = _secret({
                "type": "object", "maxProperties": 32, "propertyNames": {"pattern": _HEADER},
                "additionalProperties": {"type": "string", "maxLength": 4096,
                                         "pattern": r"^[^\x00\r\n]*$"}})
        if kind in ("webhook", "feishu"):
            props["signing_secret"] = signing
        schema = {}
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": null_is_default(props, required), **schema}


def channel_input(*, create: bool) -> Schema:
    return {"oneOf": [_variant(kind, create=create) for kind in CHANNEL_TYPES],
            "description": "secret fields left out of a replace keep their stored value; "
                           "null clears an optional one"}


def channel_view() -> Schema:
    return {
        "type": "object",
        "required": ["name", "type", "enabled", "default", "description", "secrets_set",
                     "target"],
        "properties": {
            "name": {"type": "string"},
            "type": {"type": "string", "enum": list(CHANNEL_TYPES)},
            "enabled": {"type": "boolean"}, "default": {"type": "boolean"},
            "description": {"type": "string"},
            "secrets_set": {"type": "array", "items": {"type": "string", "enum": sorted(
                {s for names in SECRETS.values() for s in names})},
                "description": "which secret fields have a value (values are never shown)"},
            "target": {"type": "string",
                       "description": "scheme://host of the URL, or host:port of the server"},
            "host": {"type": "string"}, "port": {"type": "integer"},
            "security": {"type": "string", "enum": list(EMAIL_SECURITY)},
            "verify_tls": {"type": "boolean"}, "username": {"type": "string"},
            "sender": {"type": "string"},
            "recipients": {"type": "array", "items": {"type": "string"}},
        },
    }


def delivery() -> Schema:
    string_or_null = nullable({"type": "string"})
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "event_id", "job", "kind", "channel", "channel_type", "status",
                     "attempts", "error", "created", "updated", "title", "record_id"],
        "properties": {
            "id": {"type": "string"}, "event_id": {"type": "string"},
            "job": {"type": "string"}, "kind": {"type": "string", "enum": list(ALERT_KINDS)},
            "channel": {"type": "string"}, "channel_type": {"type": "string"},
            "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
            "attempts": {"type": "integer"}, "error": string_or_null,
            "created": nullable(MS), "updated": nullable(MS),
            "title": string_or_null, "record_id": string_or_null,
        },
    }


def leader() -> Schema:
    ms_or_null = nullable(MS)
    term = {
        "type": "object",
        "additionalProperties": False,
        "required": ["term", "master", "won", "first_duty", "last_duty", "ended", "duties"],
        "properties": {
            "term": {"type": "integer", "description": "the leader key's create revision"},
            "master": nullable({"type": "string"}), "won": ms_or_null,
            "first_duty": ms_or_null, "last_duty": ms_or_null, "ended": ms_or_null,
            "duties": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "how many units of each duty the term ran"},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["leader", "term", "this_master", "this_master_leads", "terms"],
        "properties": {
            "leader": nullable({"type": "string"}), "term": nullable({"type": "integer"}),
            "this_master": {"type": "string"}, "this_master_leads": {"type": "boolean"},
            "terms": {"type": "array", "items": term},
        },
    }


def alert_components() -> dict[str, Schema]:
    return {
        "AlertRule": alert_rule(),
        "ChannelCreate": channel_input(create=True),
        "ChannelReplace": channel_input(create=False),
        "Channel": channel_view(),
        "ChannelList": {"type": "object", "additionalProperties": False,
                        "required": ["channels"],
                        "properties": {"channels": {"type": "array", "items": ref("Channel")}}},
        "Delivery": delivery(),
        "DeliveryList": {"type": "object", "additionalProperties": False,
                         "required": ["alerts"],
                         "properties": {"alerts": {"type": "array", "items": ref("Delivery")}}},
        "Leader": leader(),
    }
