"""Run records as spool payloads (JSON), and back."""

from __future__ import annotations

import json
from dataclasses import fields

from ..common import RunRecord, RunStatus, Trigger

_RECORD_FIELDS = frozenset(f.name for f in fields(RunRecord))
_DERIVED = ("duration", "lag")


def encode_record(record: RunRecord) -> bytes:
    data = record.to_dict()
    for name in _DERIVED:
        data.pop(name, None)
    return json.dumps(data, separators=(",", ":"), default=str).encode()


def decode_record(payload: bytes) -> RunRecord:
    """The record ``encode_record`` made; ValueError if it is not one."""
    try:
        data = json.loads(payload)
        values = {k: v for k, v in data.items() if k in _RECORD_FIELDS}
        values["status"] = RunStatus(values["status"])
        values["trigger"] = Trigger(values.get("trigger", Trigger.SCHEDULE.value))
        return RunRecord(**values)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a run record: {exc}") from exc
