"""Names of jobs, workers, channels: validated slugs, safe inside etcd keys."""

from __future__ import annotations

import re

from ._errors import ValidationError

# Always fullmatch: "$" would also match before a trailing newline.
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def check_name(name: str) -> str | None:
    """Why ``name`` is not a valid job name, or None if it is."""
    if not NAME_RE.fullmatch(name):
        return "must be 1-128 characters of letters, digits, '-', '_' and '.'"
    if ".." in name or name == ".":
        return "must not be '.' or contain '..'"
    return None


def validate_name(name: object, field_name: str = "name") -> str:
    """``name`` if it is a valid job name; raises ValidationError otherwise."""
    if not isinstance(name, str):
        raise ValidationError.single(field_name, "must be a string")
    if (reason := check_name(name)) is not None:
        raise ValidationError.single(field_name, reason)
    return name
