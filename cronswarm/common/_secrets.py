"""Job secrets: sealed at rest with the operator's keys, scrubbed from output.

A job's secret values (environment variables, HTTP headers, HTTP basic auth)
each live in one *slot*: ``env.<NAME>``, ``headers.<Name>`` or ``basic_auth``
(whose plain value is ``username:password``). Masters seal each value with
AES-256-GCM under the first key of ``CRONSWARM_JOB_SECRET_KEYS`` before it is
written to etcd; workers open them when a run starts. The associated data is
the job's name and the slot, so a ciphertext moved to another job (or to
another slot of the same job) does not open.

Secrets are write-only: the API shows which slots are set, never a value. A
run's output and error texts are scrubbed of the values (``Scrubber``).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import ConfigError, CronswarmError, FieldProblem, ValidationError

KEYS_SETTING = "CRONSWARM_JOB_SECRET_KEYS"
SCRUBBED = b"[secret]"
MIN_SCRUB_LEN = 4  # shorter values would blank ordinary output; they are not scrubbed
_KID_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_NONCE_BYTES = 12
_KEY_BYTES = 32
MAX_SECRET_LEN = 16384
SECRET_KINDS = ("env", "headers", "basic_auth")


class SecretKeyError(CronswarmError):
    """A sealed value cannot be opened: its key is missing or it was tampered with.

    The message names the slot and key id, never a value.
    """


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"is not base64: {exc}") from None


@dataclass(frozen=True, slots=True)
class Sealed:
    """One secret value as stored in etcd."""

    kid: str
    nonce: bytes
    ct: bytes

    def to_dict(self) -> dict[str, str]:
        return {"kid": self.kid, "nonce": _b64(self.nonce), "ct": _b64(self.ct)}

    @classmethod
    def from_dict(cls, data: object) -> Sealed:
        if not isinstance(data, Mapping) or set(data) != {"kid", "nonce", "ct"}:
            raise ValueError("must be a sealed value {kid, nonce, ct}")
        kid = data["kid"]
        if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
            raise ValueError("has an invalid key id")
        nonce, ct = _unb64(data["nonce"]), _unb64(data["ct"])
        if len(nonce) != _NONCE_BYTES or len(ct) < 16:
            raise ValueError("has a nonce or ciphertext of the wrong size")
        return cls(kid, nonce, ct)


def _aad(job: str, slot: str) -> bytes:
    return f"cronswarm-job-secret\x00{job}\x00{slot}".encode()


class Keyring:
    """The operator's keys: the first seals, every one opens (for rotation)."""

    def __init__(self, keys: Iterable[tuple[str, bytes]]) -> None:
        self._keys: dict[str, AESGCM] = {}
        self.ids: list[str] = []
        for kid, key in keys:
            if kid in self._keys:
                raise ValueError(f"key id {kid!r} is listed twice")
            if len(key) != _KEY_BYTES:
                raise ValueError(f"key {kid!r} must be {_KEY_BYTES} bytes, not {len(key)}")
            self._keys[kid] = AESGCM(key)
            self.ids.append(kid)
        if not self.ids:
            raise ValueError("no keys given")

    @property
    def primary(self) -> str:
        return self.ids[0]

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """``id:base64key,id:base64key,...`` (what ``KEYS_SETTING`` holds)."""
        pairs = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            kid, sep, encoded = item.partition(":")
            kid = kid.strip()
            if not sep or not _KID_RE.fullmatch(kid):
                raise ValueError("each key must be id:base64-key, the id 1-32 of "
                                 "[A-Za-z0-9_.-]")
            try:
                key = _unb64(encoded.strip())
            except ValueError:
                raise ValueError(f"key {kid!r} is not base64") from None
            pairs.append((kid, key))
        return cls(pairs)

    @classmethod
    def from_setting(cls, text: str | None) -> Keyring | None:
        if text is None or not text.strip():
            return None
        try:
            return cls.parse(text)
        except ValueError as exc:
            raise ConfigError(KEYS_SETTING, str(exc)) from exc

    def seal(self, job: str, slot: str, value: str) -> Sealed:
        nonce = os.urandom(_NONCE_BYTES)
        ct = self._keys[self.primary].encrypt(nonce, value.encode(), _aad(job, slot))
        return Sealed(self.primary, nonce, ct)

    def open(self, job: str, slot: str, sealed: Sealed) -> str:
        key = self._keys.get(sealed.kid)
        if key is None:
            raise SecretKeyError(
                f"secret {slot} of job {job!r} is sealed with key id {sealed.kid!r}, which "
                f"is not in {KEYS_SETTING} (configured: {', '.join(self.ids)})")
        try:
            return key.decrypt(sealed.nonce, sealed.ct, _aad(job, slot)).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise SecretKeyError(
                f"secret {slot} of job {job!r} does not open with key id {sealed.kid!r}: "
                "it was tampered with, moved from another job, or the key differs") from None

    def reseal(self, job: str, slot: str, sealed: Sealed) -> Sealed:
        """``sealed`` under the primary key (itself when it already is)."""
        if sealed.kid == self.primary:
            return sealed
        return self.seal(job, slot, self.open(job, slot, sealed))


def new_key_line(kid: str) -> str:
    """A fresh ``id:base64key`` entry for ``KEYS_SETTING``."""
    if not _KID_RE.fullmatch(kid):
        raise ValueError("a key id is 1-32 of [A-Za-z0-9_.-]")
    return f"{kid}:{_b64(AESGCM.generate_key(bit_length=256))}"


def no_keyring_error() -> ValidationError:
    return ValidationError.single(
        "secrets", f"cannot be stored: this master has no job secret key; set {KEYS_SETTING} "
                   "(generate one with 'cronswarm secrets keygen') on masters and workers")


def slot_kind(slot: str) -> str:
    return slot.partition(".")[0]


# -- what the API accepts -------------------------------------------------------

NameCheck = Callable[[str], str | None]  # a reason the name is invalid, or None


def read_secret_changes(data: object, *, check_env: NameCheck, check_header: NameCheck
                        ) -> dict[str, str | None]:
    """The ``secrets`` of a request: slot -> new value, or None to clear it.

    ``{"env": {"A": "v", "B": null}, "headers": {...}, "basic_auth":
    {"username": .., "password": ..} | null}``; ``"secrets": null`` (handled
    by the caller) clears them all. Raises ``ValidationError`` naming every bad field.
    """
    problems: list[FieldProblem] = []
    out: dict[str, str | None] = {}

    def fail(path: str, reason: str) -> None:
        problems.append(FieldProblem(f"secrets.{path}" if path else "secrets", reason))

    if not isinstance(data, Mapping):
        raise ValidationError([FieldProblem("secrets", "must be a JSON object or null")])
    for kind, value in data.items():
        if kind not in SECRET_KINDS:
            fail(str(kind), f"unknown field (secrets are {', '.join(SECRET_KINDS)})")
        elif kind == "basic_auth":
            _read_basic_auth(value, out, fail)
        elif value is None:
            fail(kind, "must be an object (give null for each secret to clear)")
        elif not isinstance(value, Mapping):
            fail(kind, "must be an object of name -> value (or null to clear)")
        else:
            check = check_env if kind == "env" else check_header
            for name, item in value.items():
                reason = check(name) if isinstance(name, str) else "is not a string"
                if reason is not None:
                    fail(f"{kind}.{name}", reason)
                elif item is None:
                    out[f"{kind}.{name}"] = None
                elif (reason := _value_problem(item, header=kind == "headers")) is not None:
                    fail(f"{kind}.{name}", reason)
                else:
                    out[f"{kind}.{name}"] = item
    if problems:
        raise ValidationError(problems)
    return out


def _value_problem(value: object, *, header: bool = False) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string (or null to clear)"
    if len(value) > MAX_SECRET_LEN:
        return f"must be at most {MAX_SECRET_LEN} characters"
    if "\x00" in value:
        return "must not contain NUL"
    if header and ("\r" in value or "\n" in value):
        return "must not contain line breaks"
    return None


def _read_basic_auth(value: object, out: dict[str, str | None],
                     fail: Callable[[str, str], None]) -> None:
    if value is None:
        out["basic_auth"] = None
        return
    if not isinstance(value, Mapping) or set(value) != {"username", "password"}:
        fail("basic_auth", "must be {\"username\": .., \"password\": ..} (or null to clear)")
        return
    user, password = value["username"], value["password"]
    if not isinstance(user, str) or not user or ":" in user or len(user) > 256:
        fail("basic_auth.username", "must be a non-empty string without ':'")
    elif (reason := _value_problem(password, header=True)) is not None:
        fail("basic_auth.password", reason)
    else:
        out["basic_auth"] = f"{user}:{password}"


# -- the opened secrets of one run ----------------------------------------------

@dataclass(frozen=True, slots=True)
class OpenedSecrets:
    """A job's secrets in the clear, for one run (never stored, never logged)."""

    env: Mapping[str, str]
    headers: Mapping[str, str]
    basic_auth: tuple[str, str] | None

    def values(self) -> list[str]:
        """What must never show: each value, and the basic auth password and
        its ``Authorization`` credentials (a server may echo the header)."""
        out = [*self.env.values(), *self.headers.values()]
        if self.basic_auth is not None:
            user, password = self.basic_auth
            out += [password, _b64(f"{user}:{password}".encode())]
        return out


NO_SECRETS = OpenedSecrets({}, {}, None)


def open_secrets(keyring: Keyring | None, job: str, sealed: Mapping[str, Sealed]
                 ) -> OpenedSecrets:
    if not sealed:
        return NO_SECRETS
    if keyring is None:
        first = sorted(sealed)[0]
        raise SecretKeyError(
            f"job {job!r} has secrets (sealed with key id {sealed[first].kid!r}) but this "
            f"worker has no {KEYS_SETTING}")
    env: dict[str, str] = {}
    headers: dict[str, str] = {}
    basic: tuple[str, str] | None = None
    for slot in sorted(sealed):
        value = keyring.open(job, slot, sealed[slot])
        kind, _, name = slot.partition(".")
        if kind == "env":
            env[name] = value
        elif kind == "headers":
            headers[name] = value
        else:
            user, _, password = value.partition(":")
            basic = (user, password)
    return OpenedSecrets(env, headers, basic)


# -- scrubbing ------------------------------------------------------------------

class Scrubber:
    """Replaces secret values in a stream of bytes with ``[secret]``.

    The rule: a value is replaced wherever it occurs whole in the stream,
    however the reads split it. ``feed`` holds back the last
    ``len(longest value) - 1`` bytes (they may start a value that the next
    chunk completes) and ``flush`` releases them at the end. Values shorter
    than ``MIN_SCRUB_LEN`` are not scrubbed.
    """

    def __init__(self, values: Iterable[str]) -> None:
        wanted = sorted({v.encode() for v in values if len(v) >= MIN_SCRUB_LEN},
                        key=len, reverse=True)
        self._pattern = re.compile(b"|".join(re.escape(v) for v in wanted)) if wanted else None
        self._hold = max((len(v) for v in wanted), default=1) - 1
        self._carry = b""

    def __bool__(self) -> bool:
        return self._pattern is not None

    def feed(self, chunk: bytes) -> bytes:
        if self._pattern is None:
            return chunk
        buf = self._carry + chunk
        # A value starting before ``safe`` lies wholly inside ``buf``.
        safe = len(buf) - self._hold
        out: list[bytes] = []
        pos = 0
        for found in self._pattern.finditer(buf):
            if found.start() >= safe:
                break
            out += [buf[pos:found.start()], SCRUBBED]
            pos = found.end()
        cut = max(pos, safe)
        out.append(buf[pos:cut])
        self._carry = buf[cut:]
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._carry = self._carry, b""
        if self._pattern is None or not rest:
            return rest
        return self._pattern.sub(SCRUBBED, rest)

    def text(self, text: str) -> str:
        """A whole string, scrubbed (error messages)."""
        if self._pattern is None:
            return text
        return self._pattern.sub(SCRUBBED, text.encode()).decode(errors="replace")


def sealed_from_stored(data: object) -> dict[str, Sealed]:
    """The ``secrets`` object of a stored job (slot -> sealed); ValueError if bad."""
    if not isinstance(data, Mapping):
        raise ValueError("must be an object of slot -> sealed value")
    out = {}
    for slot, value in data.items():
        if not isinstance(slot, str) or slot_kind(slot) not in SECRET_KINDS:
            raise ValueError(f"has an unknown slot {slot!r}")
        try:
            out[slot] = Sealed.from_dict(value)
        except ValueError as exc:
            raise ValueError(f"{slot} {exc}") from None
    return out


def sealed_to_stored(sealed: Mapping[str, Sealed]) -> dict[str, dict[str, str]]:
    return {slot: sealed[slot].to_dict() for slot in sorted(sealed)}
