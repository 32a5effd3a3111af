"""The etcd key layout (DESIGN.md section 2), in one place.

Names are validated slugs, so a key built here can never escape its prefix or
collide with another kind of key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from ._errors import ValidationError
from ._job import validate_name

TICK_DIGITS = 16  # zero-padded epoch ms: byte order equals numeric order
MAX_TICK_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant datetime holds
MAX_ATTEMPT = 1000
_ATTEMPT_RE = re.compile(r"[0-9]{1,4}")  # ASCII: "²".isdigit() is true


def encode_tick(tick_ms: int, claimant: str | None = None) -> bytes:
    """The fencing token stored in ``/last/<name>``: the tick, fixed width.

    A claim appends ``:<claimant>`` (who claimed it, with a nonce), so a worker
    whose claim transaction failed in flight can tell whether it committed.
    The suffix never changes the order: tokens compare by their first 16
    digits, and a token is never compared with one of the same tick but
    another suffix.
    """
    if not 0 <= tick_ms < 10**TICK_DIGITS:
        raise ValueError(f"tick {tick_ms} out of range")
    token = f"{tick_ms:0{TICK_DIGITS}d}"
    return (token if claimant is None else f"{token}:{claimant}").encode()


def decode_tick(raw: bytes) -> int:
    """The tick of a fencing token (ignoring any claimant suffix)."""
    return int(raw[:TICK_DIGITS].decode())


# A start marker in ``/last/<name>``: what a master writes there when it
# creates, reschedules or resumes a job (see ``encode_start``).
START_MARKER = b"9" * TICK_DIGITS + b"!start:"


def encode_start(floor_ms: int, nonce: str) -> bytes:
    """The start marker a master writes to ``/last/<name>``: "this job starts
    from when a worker learns of it", with no time in it.

    A master has no clock the cluster trusts (workers measure theirs against
    each other, masters do not): if the master wrote its own "now" there, a
    master N s ahead would make the workers skip the next N s of ticks, and one
    N s behind would make them catch up N s of ticks from before the job
    existed. So the master writes this marker in the same transaction as the
    job, and the first worker to plan the job replaces it with the cluster
    time at which it saw the marker (``worker._start``).

    Its first 16 digits are the largest tick, so no claim (a value compare
    ``/last < tick``) can pass it: a claim planned from the token before the
    edit fails, and its worker plans again. ``floor_ms`` is the tick the token
    held before (a start is never set below it: the token never moves back,
    so a tick already claimed can never be claimed again). ``nonce`` makes
    each marker unique, so a worker can tell a new one from one it has seen.
    """
    if not 0 <= floor_ms < 10**TICK_DIGITS:
        raise ValueError(f"tick {floor_ms} out of range")
    return START_MARKER + f"{floor_ms:0{TICK_DIGITS}d}:{nonce}".encode()


def start_floor(token: bytes) -> int | None:
    """The floor of a start marker (see ``encode_start``); None if ``token`` is a tick."""
    if not token.startswith(START_MARKER):
        return None
    return int(token[len(START_MARKER):len(START_MARKER) + TICK_DIGITS].decode())


def restart_token(current: bytes | None, nonce: str) -> bytes:
    """The start marker to replace the token ``current`` (None: absent) with:
    its floor is the tick ``current`` holds, or the floor it carries."""
    if current is None:
        return encode_start(0, nonce)
    floor = start_floor(current)
    return encode_start(decode_tick(current) if floor is None else floor, nonce)


def run_id(job: str, tick_ms: int) -> str:
    """The run id of a tick, ``<name>@<tick>`` (the same for all attempts)."""
    return f"{job}@{tick_ms}"


def parse_run_id(value: str) -> tuple[str, int]:
    """Inverse of ``run_id``; raises ValueError when ``value`` is not one."""
    name, sep, tick = value.rpartition("@")
    if not sep or not (tick.isascii() and tick.isdigit()):
        raise ValueError(f"{value!r} is not a run id (<job>@<tick>)")
    validate_name(name)
    return name, int(tick)


class RecordId(NamedTuple):
    """One attempt of a run (``<job>@<tick>#<attempt>``), or its newest attempt."""

    job: str
    tick: int
    attempt: int | None  # None: the newest attempt

    @property
    def run_id(self) -> str:
        return run_id(self.job, self.tick)

    def __str__(self) -> str:
        return self.run_id if self.attempt is None else f"{self.run_id}#{self.attempt}"


def parse_record_id(value: str) -> RecordId:
    """The one parser of record ids given by users (``<job>@<tick>[#<attempt>]``):
    raises ValidationError naming ``record_id`` when ``value`` is not one."""
    run, sep, attempt = value.partition("#")
    try:
        job, tick = parse_run_id(run)
    except (ValueError, ValidationError):
        raise ValidationError.single(
            "record_id", "must be <job>@<tick> or <job>@<tick>#<attempt>") from None
    if tick >= MAX_TICK_MS:  # a tick's attempts are looked up in [tick, tick + 1)
        raise ValidationError.single("record_id", "the tick is out of range (after year 9999)")
    if not sep:
        return RecordId(job, tick, None)
    if not _ATTEMPT_RE.fullmatch(attempt) or not 1 <= int(attempt) <= MAX_ATTEMPT:
        raise ValidationError.single("record_id", f"the attempt must be from 1 to {MAX_ATTEMPT}")
    return RecordId(job, tick, int(attempt))


@dataclass(frozen=True, slots=True)
class Keyspace:
    """Keys under one prefix (default ``/cron``)."""

    prefix: str = "/cron"

    def _dir(self, kind: str) -> str:
        return f"{self.prefix}/{kind}/"

    @property
    def jobs(self) -> str:
        return self._dir("jobs")

    @property
    def last_dir(self) -> str:
        return self._dir("last")

    @property
    def lock_dir(self) -> str:
        return self._dir("lock")

    @property
    def killer_dir(self) -> str:
        return self._dir("killer")

    @property
    def once_dir(self) -> str:
        return self._dir("once")

    @property
    def running_dir(self) -> str:
        return self._dir("running")

    @property
    def retry_dir(self) -> str:
        return self._dir("retry")

    @property
    def workers(self) -> str:
        return self._dir("workers")

    @property
    def tokens(self) -> str:
        return self._dir("tokens")

    @property
    def sessions(self) -> str:
        """Dashboard sessions, each on a lease of the session's lifetime."""
        return self._dir("sessions")

    @property
    def election(self) -> str:
        return self._dir("leader")

    @property
    def leader(self) -> str:
        """The elected master's key (on its lease); see coord.Election."""
        return self.election + "master"

    @property
    def alert_channels(self) -> str:
        return self._dir("alerts/channels")

    @property
    def clocks(self) -> str:
        """Workers' clock beacons (``worker._clock_sync``), each on its worker's lease."""
        return self._dir("clock")

    def job(self, name: str) -> str:
        return self.jobs + validate_name(name)

    def last(self, name: str) -> str:
        return self.last_dir + validate_name(name)

    def lock(self, name: str) -> str:
        return self.lock_dir + validate_name(name)

    def killer(self, name: str) -> str:
        return self.killer_dir + validate_name(name)

    def once(self, name: str) -> str:
        return self.once_dir + validate_name(name)

    def running_of(self, name: str) -> str:
        return f"{self.running_dir}{validate_name(name)}/"

    def running(self, name: str, run: str) -> str:
        return self.running_of(name) + run

    def alert_channel(self, name: str) -> str:
        return self.alert_channels + validate_name(name, "channel")

    def retry(self, name: str, run: str) -> str:
        """A request to run the next attempt of ``run`` on any worker (``_retry``)."""
        return f"{self.retry_dir}{validate_name(name)}/{run}"

    def worker(self, worker_id: str) -> str:
        return self.workers + validate_name(worker_id, "worker_id")

    def clock(self, worker_id: str) -> str:
        return self.clocks + validate_name(worker_id, "worker_id")

    def token(self, token_id: str) -> str:
        return self.tokens + validate_name(token_id, "token_id")

    def session(self, session_id: str) -> str:
        return self.sessions + validate_name(session_id, "session_id")
