"""The common shape of a stored job, decoded from JSON in one pass.

A worker decodes every job in etcd when it starts: 100,000 jobs cost seconds
through ``json.loads`` and ``FieldReader``. Most stored jobs are plain shell
jobs that set only the common fields (``to_json`` writes every one of them),
and msgspec decodes those straight into typed fields. It is stricter than
``json.loads`` (no ``NaN``, no byte-order mark, no int where a bool is due):
whatever it refuses, ``Job.from_json`` decodes the slow way, which accepts or
reports it as before. ``tests/unit/test_job_stored.py`` holds the two to the
same result.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import msgspec

from ._job_parts import DEFAULT_RETRY_JSON, MAX_TIMEOUT_S

_Str128 = Annotated[str, msgspec.Meta(max_length=128)]
_Str256 = Annotated[str, msgspec.Meta(max_length=256)]
_Str65536 = Annotated[str, msgspec.Meta(max_length=65536)]
_Str64 = Annotated[str, msgspec.Meta(max_length=64)]
_Str1024 = Annotated[str, msgspec.Meta(max_length=1024)]


class CommonShape(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Every key of a stored shell job that sets only the common fields, with
    the bounds ``Job.from_dict`` sets on them (lengths in characters); the
    decoder checks those, ``_job._common_stored`` the rest."""

    name: _Str128
    schedule: _Str256
    command: _Str65536
    timezone: _Str64
    enabled: bool
    description: _Str1024
    timeout: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)] | None
    kill_grace: Annotated[float, msgspec.Meta(ge=0, le=3600)]
    overlap: str
    misfire: str
    misfire_window: Annotated[float, msgspec.Meta(ge=0, le=MAX_TIMEOUT_S)]
    retry: msgspec.Raw  # as written, compared with DEFAULT_RETRY_RAW
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000)]
    targets: msgspec.Raw  # as written, compared with NO_TARGETS_RAW


COMMON_KEYS = frozenset(CommonShape.__struct_fields__)
_DECODER = msgspec.json.Decoder(CommonShape)
# The common shape's retry policy and targets, as ``Job.to_json`` writes them:
# these very bytes decode to the default policy and to no targets. Anything
# else, even the same values written otherwise, takes the slow way.
DEFAULT_RETRY_RAW = msgspec.Raw(
    json.dumps(DEFAULT_RETRY_JSON, separators=(",", ":"), sort_keys=True).encode())
NO_TARGETS_RAW = msgspec.Raw(b"{}")
T = TypeVar("T")


def decode_common(raw: bytes | str) -> CommonShape | None:
    """``raw`` as the common shape; None if it is anything else, or not JSON."""
    try:
        return _DECODER.decode(raw)
    except msgspec.DecodeError:  # msgspec.ValidationError is one too
        return None


def slot_filler(cls: type[T], given: Sequence[str]) -> Callable[..., T]:
    """A constructor of the frozen, slotted dataclass ``cls`` that takes the
    fields ``given`` by position and gives every other one its default.

    Equal to calling ``cls`` with those fields, at half the cost: the
    dataclass's ``__init__`` sets each of Job's 23 fields through
    ``object.__setattr__``; this calls each slot's setter directly, in code
    generated once (as ``dataclasses`` generates ``__init__``). Without
    ``__post_init__`` only. A default factory must give one shared value,
    since it is called once, here.
    """
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make({', '.join(given)}):", "    obj = _new(_cls)"]
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        env[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.name in given:
            lines.append(f"    _set_{f.name}(obj, {f.name})")
            continue
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if f.default_factory() is not default:
                raise TypeError(f"{cls.__name__}.{f.name}: its default factory gives new values")
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            raise TypeError(f"{cls.__name__}.{f.name} has no default")
        env[f"_default_{f.name}"] = default
        lines.append(f"    _set_{f.name}(obj, _default_{f.name})")
    lines.append("    return obj")
    exec("\n".join(lines), env)  # noqa: S102 - our own field names, checked by dataclasses
    make: Callable[..., T] = env["make"]
    return make
