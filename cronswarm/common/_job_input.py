"""What a create, replace or patch of a job asks: the job, and its secrets in the clear.

The API takes secret values apart from the rest of the body (``Job.from_dict``
reads only sealed ones, from etcd) and seals them with the master's keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import FieldProblem, ValidationError
from ._job import Job
from ._job_parts import check_env_key, check_header
from ._secrets import Keyring, Sealed, no_keyring_error, read_secret_changes


@dataclass(frozen=True, slots=True)
class SecretInput:
    """The ``secrets`` of a create, replace or patch: values in the clear.

    A slot given a value is set, a slot given null is cleared, a slot not
    named keeps its stored value (the client never sees it, so it cannot send
    it back); ``clear_all`` (``"secrets": null``) clears every slot first.
    """

    changes: Mapping[str, str | None]
    clear_all: bool = False

    @property
    def touched(self) -> list[str]:
        return sorted(self.changes)

    def apply(self, job: Job, stored: Mapping[str, Sealed], keyring: Keyring | None) -> Job:
        """``job`` holding ``stored`` changed by this input, new values sealed with
        ``keyring``; ValidationError (nothing sealed or written) if they do not fit."""
        merged = {} if self.clear_all else dict(stored)
        for slot, value in self.changes.items():
            if value is None:
                merged.pop(slot, None)
            elif keyring is None:
                raise no_keyring_error()
            else:
                merged[slot] = keyring.seal(job.name, slot, value)
        return job.with_secrets(merged)


def split_secret_input(body: Mapping[str, Any]
                       ) -> tuple[dict[str, Any], SecretInput | None, list[FieldProblem]]:
    """``body`` without its ``secrets``, those secrets read, and their problems."""
    rest = dict(body)
    if "secrets" not in rest:
        return rest, None, []
    raw = rest.pop("secrets")
    if raw is None:
        return rest, SecretInput({}, clear_all=True), []
    try:
        changes = read_secret_changes(raw, check_env=check_env_key, check_header=check_header)
    except ValidationError as exc:
        return rest, None, list(exc.problems)
    return rest, SecretInput(changes), []


def read_job_input(body: Mapping[str, Any], *, name: str | None = None
                   ) -> tuple[Job, SecretInput | None]:
    """A create or replace request: the job (its secrets not applied yet) and
    its secret input, every problem of both reported at once."""
    rest, secrets, problems = split_secret_input(body)
    try:
        job = Job.from_dict(rest, name=name)
    except ValidationError as exc:
        raise ValidationError([*exc.problems, *problems]) from None
    if problems:
        raise ValidationError(problems)
    return job, secrets
