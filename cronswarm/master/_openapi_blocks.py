"""The building blocks of the API's JSON Schemas (OpenAPI 3.1 components):
patterns shared with the server's own checks, and small schema constructors."""

from __future__ import annotations

from typing import Any

from ._auth import TOKEN_NAME_RE

Schema = dict[str, Any]

# A job name: a slug of 1-128 characters, not "." and without "..".
NAME_PATTERN = r"^(?!\.$)(?!.*\.\.)[A-Za-z0-9_.-]{1,128}$"
TEXT = r"^[^\x00]*$"  # no NUL
NON_BLANK = r"^[^\x00]*[^\x00\s][^\x00]*$"  # no NUL, not only white space
ENV_KEY = r"^(?![Cc][Rr][Oo][Nn][Ss][Ww][Aa][Rr][Mm]_)[A-Za-z_][A-Za-z0-9_]{0,127}$"
LABEL_KEY = r"^[A-Za-z0-9_.\-/]{1,63}$"
HEADER = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$"
# JSON Schema patterns search (ECMA): anchored here; the server fullmatches.
TOKEN_NAME_PATTERN = f"^{TOKEN_NAME_RE.pattern}$"
# 5 or 6 fields, or a shortcut; whether each field parses, JSON Schema cannot say.
CRON_PATTERN = r"^\s*(@[A-Za-z]+|[^\s\x00]+(\s+[^\s\x00]+){4,5})\s*$"
# What common.check_http_url accepts, as far as a pattern can say (not the port range).
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\x00-\x1f\x7f]+$"
RECORD_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}@[0-9]{1,16}(#[0-9]{1,4})?$"
MS = {"type": "integer", "description": "epoch milliseconds"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def str_schema(max_len: int, *, non_empty: bool = True, pattern: str | None = None,
            **extra: Any) -> Schema:
    out: Schema = {"type": "string", "maxLength": max_len,
                   "pattern": pattern or (NON_BLANK if non_empty else TEXT)}
    if non_empty:
        out["minLength"] = 1
    out.update(extra)
    return out


def num_schema(lo: float, hi: float, *, exclusive_lo: bool = False, **extra: Any) -> Schema:
    out: Schema = {"type": "number", "maximum": hi}
    out["exclusiveMinimum" if exclusive_lo else "minimum"] = lo
    out.update(extra)
    return out


def int_list(lo: int, hi: int) -> Schema:
    return {"type": "array", "minItems": 1, "maxItems": 64,
            "items": {"type": "integer", "minimum": lo, "maximum": hi}}


def string_map(*, key_pattern: str, max_items: int, max_value_len: int = 4096,
                partial: bool = False) -> Schema:
    """An object of strings; in a merge patch (``partial``) null removes an entry."""
    value: Schema = {"type": "string", "maxLength": max_value_len, "pattern": TEXT}
    return {"type": "object", "maxProperties": max_items,
            "propertyNames": {"pattern": key_pattern},
            "additionalProperties": nullable(value) if partial else value}


def null_is_default(props: dict[str, Schema], required: list[str]) -> dict[str, Schema]:
    """Optional fields also take null: the server reads it as not given. (Not
    the name: on a replace it must be the one in the URL, if given.)"""
    keep = {*required, "name"}
    return {k: v if k in keep or "anyOf" in v else nullable(v) for k, v in props.items()}


def requiring(schema: Schema, required: list[str]) -> Schema:
    """``schema`` with ``required`` fields; the others also take null."""
    schema["properties"] = null_is_default(schema["properties"], required)
    if required:
        schema["required"] = required
    return schema
