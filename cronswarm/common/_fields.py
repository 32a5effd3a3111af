"""Reading typed fields out of untrusted JSON objects, collecting every problem.

Used by the model decoders so that one bad request reports all of its bad
fields at once, each by its dotted path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from ._errors import FieldProblem, ValidationError

T = TypeVar("T")
_MISSING: Any = object()


def string_problem(value: str, max_len: int, non_empty: bool = True,
                   check: Callable[[str], str | None] | None = None) -> str | None:
    """What is wrong with the string ``value`` of a field, or None: the one rule
    for string fields (``FieldReader.string`` and the stored-job decoder)."""
    if non_empty and not value.strip():
        return "must not be empty"
    if len(value) > max_len:
        return f"must be at most {max_len} characters (got {len(value)})"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None if check is None else check(value)


class FieldReader:
    """Reads fields of one JSON object; ``finish()`` raises if anything was wrong."""

    def __init__(self, data: object, *, path: str = "", allowed: Iterable[str] = ()) -> None:
        self.path = path
        self.problems: list[FieldProblem] = []
        if type(data) is not dict and not isinstance(data, Mapping):
            self.problems.append(FieldProblem(path or "body", "must be a JSON object"))
            data = {}
        self.data: Mapping[str, Any] = data
        # Decoders called for every stored job pass a frozenset: nothing to build.
        allowed_set = allowed if isinstance(allowed, frozenset) else frozenset(allowed)
        if allowed_set and not allowed_set.issuperset(data):
            for key in data:
                if key not in allowed_set:
                    self.fail(str(key), "unknown field")

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, reason: str) -> None:
        self.problems.append(FieldProblem(self.name(key), reason))

    def absorb(self, error: ValidationError, key: str | None = None) -> None:
        """Take the problems of a nested decode, prefixed with this reader's path."""
        for p in error.problems:
            field = p.field
            if key is not None and not field.startswith(self.name(key)):
                field = self.name(key) if field in ("", key) else f"{self.name(key)}.{field}"
            self.problems.append(FieldProblem(field, p.reason))

    def _absent(self, key: str, default: Any) -> Any:
        """What a missing or null field reads as (noting a problem if it is required).

        The readers test ``data.get(key) is None`` inline rather than calling
        ``_get``: a worker reads every field of every stored job.
        """
        if default is _MISSING:
            self.fail(key, "is required")
        return default

    def _get(self, key: str, default: Any) -> Any:
        """The raw value, or _MISSING (after noting a problem if it is required)."""
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                self.fail(key, "is required")
            return _MISSING
        return value

    def string(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        max_len: int = 4096,
        non_empty: bool = True,
        check: Callable[[str], str | None] | None = None,
    ) -> Any:
        value = self.data.get(key)
        if value is None:
            return self._absent(key, default)
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {_json_type(value)}")
            return default if default is not _MISSING else ""
        if (reason := string_problem(value, max_len, non_empty, check)) is not None:
            self.fail(key, reason)
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self.data.get(key)
        if value is None:
            return self._absent(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {_json_type(value)}")
            return default if default is not _MISSING else False
        return value

    def integer(
        self, key: str, default: Any = _MISSING, *, minimum: int | None = None,
        maximum: int | None = None,
    ) -> Any:
        value = self.data.get(key)
        if value is None:
            return self._absent(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, not {_json_type(value)}")
            return default if default is not _MISSING else 0
        return self._bounded(key, value, minimum, maximum)

    def number(
        self, key: str, default: Any = _MISSING, *, minimum: float | None = None,
        maximum: float | None = None, exclusive_minimum: bool = False,
    ) -> Any:
        value = self.data.get(key)
        if value is None:
            return self._absent(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"must be a number, not {_json_type(value)}")
            return default if default is not _MISSING else 0.0
        if not math.isfinite(value):
            self.fail(key, "must be a finite number")
            return default if default is not _MISSING else 0.0
        if exclusive_minimum and minimum is not None and value <= minimum:
            self.fail(key, f"must be greater than {minimum:g} (got {value:g})")
            return value
        return self._bounded(key, float(value), minimum, maximum)

    def _bounded(self, key: str, value: Any, minimum: Any, maximum: Any) -> Any:
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum:g} (got {value:g})")
        elif maximum is not None and value > maximum:
            self.fail(key, f"must be at most {maximum:g} (got {value:g})")
        return value

    def choice(self, key: str, options: Iterable[str], default: Any = _MISSING) -> Any:
        opts = tuple(options)
        value = self._get(key, default)
        if value is _MISSING:
            return default
        if value not in opts:
            self.fail(key, f"must be one of {', '.join(repr(o) for o in opts)} (got {value!r})")
            return default if default is not _MISSING else opts[0]
        return opts[opts.index(value)]  # the canonical object: one copy in memory

    def string_map(
        self, key: str, *, max_items: int = 256,
        key_check: Callable[[str], str | None] | None = None, max_value_len: int = 4096,
    ) -> dict[str, str]:
        value = self._get(key, {})
        if value is _MISSING:
            return {}
        if not isinstance(value, Mapping):
            self.fail(key, f"must be an object of strings, not {_json_type(value)}")
            return {}
        if len(value) > max_items:
            self.fail(key, f"must have at most {max_items} entries")
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(v, str):
                self.fail(f"{key}.{k}", f"must be a string, not {_json_type(v)}")
            elif len(v) > max_value_len or "\x00" in v:
                self.fail(f"{key}.{k}", f"must be at most {max_value_len} characters, no NUL")
            elif key_check is not None and (reason := key_check(k)) is not None:
                self.fail(f"{key}.{k}", reason)
            else:
                out[str(k)] = v
        return out

    def int_list(
        self, key: str, *, minimum: int, maximum: int, max_items: int = 64,
    ) -> tuple[int, ...] | None:
        value = self._get(key, None)
        if value is _MISSING:
            return None
        if not isinstance(value, list):
            self.fail(key, f"must be a list of integers, not {_json_type(value)}")
            return None
        if not value:
            self.fail(key, "must not be empty (omit the field instead)")
            return None
        if len(value) > max_items:
            self.fail(key, f"must have at most {max_items} entries")
            return None
        for item in value:
            valid = isinstance(item, int) and not isinstance(item, bool)
            if not valid or not minimum <= item <= maximum:
                self.fail(key, f"entries must be integers from {minimum} to {maximum} "
                               f"(got {item!r})")
                return None
        return tuple(sorted(set(value)))

    def nested(self, key: str, decode: Callable[[object, str], T], default: T) -> T:
        value = self.data.get(key)
        if value is None:
            return default
        try:
            return decode(value, self.name(key))
        except ValidationError as exc:
            self.problems.extend(exc.problems)
            return default

    def finish(self) -> None:
        if self.problems:
            raise ValidationError(self.problems)


def unencodable_text(value: object) -> FieldProblem | None:
    """The first string of a parsed JSON value, keys included, that is not text.

    JSON may escape a lone surrogate (``"\\ud800"``): Python decodes it into a
    ``str`` that UTF-8 cannot encode, so etcd, MongoDB and every header or
    argument it reaches would fail, each at its own moment. A document is
    checked whole before anything of it is used. Walks with its own stack: a
    document nested as deeply as the JSON parser allows must not overflow it.
    """
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if (reason := _not_text(item)) is not None:
                return FieldProblem(path or "body", reason)
        elif isinstance(item, Mapping):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and (reason := _not_text(key)) is not None:
                    return FieldProblem(_printable(name), f"has a name that {reason}")
                stack.append((name, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def escaped_text(value: Any) -> Any:
    """A copy of a JSON value whose strings (keys too) all encode to UTF-8: lone
    surrogates become their ``\\udXXX`` escapes. For values stored before
    ``unencodable_text`` checked them, on their way to a store that needs text."""
    if isinstance(value, str):
        return value if _not_text(value) is None else _printable(value)
    if isinstance(value, Mapping):
        return {escaped_text(k): escaped_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escaped_text(v) for v in value]
    return value


def _not_text(value: str) -> str | None:
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        return f"must be Unicode text: it holds a lone surrogate (U+{code:04X})"
    return None


def _printable(name: str) -> str:
    return name.encode(errors="backslashreplace").decode()


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
