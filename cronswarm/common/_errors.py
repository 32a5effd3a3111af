"""The exception tree of cronswarm.

Library code raises these; the HTTP views map them to status codes and the CLI
maps them to exit codes. Nothing else catches broad exceptions to translate
them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class CronswarmError(Exception):
    """Base class of every error cronswarm raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one field of an input document."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class ValidationError(CronswarmError):
    """Input that does not describe a valid object; names every bad field."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        if not problems:
            raise ValueError("a ValidationError needs at least one problem")
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in self.problems))

    @classmethod
    def single(cls, field: str, reason: str) -> ValidationError:
        return cls([FieldProblem(field, reason)])

    def prefixed(self, prefix: str) -> ValidationError:
        """The same problems with their field names nested under ``prefix``."""
        return ValidationError(
            [FieldProblem(f"{prefix}.{p.field}" if p.field else prefix, p.reason)
             for p in self.problems]
        )


class ConfigError(CronswarmError):
    """Configuration that is missing or malformed; names the variable or key."""

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"{setting}: {reason}")


class ServiceRefused(ConfigError):
    """A backing service refused our certificate, credentials or permissions:
    retrying cannot help; the settings named by ``setting`` (or the service's
    own) must change. The message is one complete sentence for an operator."""

    def __init__(self, setting: str, message: str) -> None:
        CronswarmError.__init__(self, message)
        self.setting = setting
        self.reason = message


class NotFoundError(CronswarmError):
    """The named object does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} does not exist")


class ConflictError(CronswarmError):
    """The write lost a race: the object exists already, or changed meanwhile."""

    def __init__(self, message: str, *, current: Mapping[str, object] | None = None) -> None:
        self.current = dict(current) if current is not None else None
        super().__init__(message)


class PreconditionFailed(ConflictError):
    """An ``If-Match`` revision no longer matches the stored object."""


class AuthError(CronswarmError):
    """The caller is not authenticated (no token, unknown or revoked token)."""


class TokenExpired(AuthError):
    """The caller's token was valid until its expiry, which has passed."""


class RateLimited(CronswarmError):
    """Too many failed attempts from one client; it may try again after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class TooManyStreams(RateLimited):
    """A live output stream refused: ``limit`` (``per_viewer`` or ``total``) of
    ``maximum`` streams is reached on this ``server`` (``master`` or ``worker``)."""

    def __init__(self, limit: str, maximum: int, server: str, retry_after: int) -> None:
        self.limit = limit
        self.maximum = maximum
        self.server = server
        scope = "for this viewer" if limit == "per_viewer" else "in total"
        super().__init__(f"too many live output streams: at most {maximum} {scope} on this "
                         f"{server}; retry in {retry_after} s", retry_after)

    def as_dict(self) -> dict[str, object]:
        """The API's error object, naming the limit."""
        return {"code": "too_many_streams", "message": str(self), "limit": self.limit,
                "max": self.maximum, "server": self.server}


class PermissionDenied(CronswarmError):
    """The caller is authenticated but its role does not allow the action."""

    def __init__(self, needed: str, has: str) -> None:
        self.needed = needed
        self.has = has
        super().__init__(f"this action needs role {needed!r}; the caller has {has!r}")


class ServiceUnavailable(CronswarmError):
    """A backing service (etcd, MongoDB) cannot be reached right now."""

    def __init__(self, service: str, reason: str) -> None:
        self.service = service
        self.reason = reason
        super().__init__(f"{service} is unavailable: {reason}")


class ServiceStartError(CronswarmError):
    """A local development service (etcd, MongoDB server) failed to start."""
