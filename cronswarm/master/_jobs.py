"""Job operations shared by the API and the dashboard, each one audited.

Masters keep no state: every call reads and writes etcd (jobs, requests) and
MongoDB (runs, audit), so any number of masters agree at once.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..common import (
    Clock,
    ConflictError,
    Job,
    Keyring,
    Keyspace,
    NotFoundError,
    PreconditionFailed,
    SecretInput,
    SystemClock,
    ValidationError,
    escaped_text,
    parse_run_id,
    restart_token,
    run_id,
    unencodable_text,
    validate_name,
)
from ..coord import Compare, CoordStore, Delete, Get, KeyValue, Put, TxnOp, TxnResult
from ..logstore import AuditEntry, LogStore, LogStoreUnavailable
from ._trend import TrendCache

log = logging.getLogger(__name__)

REQUEST_TTL = 60  # seconds a run-now or kill request waits for a worker
MAX_REVISION = 2**63 - 1  # etcd revisions are int64: a larger one cannot go in a compare
_ETAG_RE = re.compile(r'(?:W/)?("?)([0-9]{1,19})\1')  # ASCII digits only
RESTART_TRIES = 20  # reads of a fencing token that claims keep moving (one per tick)


@dataclass(frozen=True, slots=True)
class StoredJob:
    job: Job
    revision: int  # etcd mod_revision: the ETag for optimistic concurrency

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'


def parse_etag(value: str | None) -> int | None:
    """The revision in an ``If-Match`` header (``"123"`` or ``123``).

    None when the header is absent or ``*`` (any current version).
    """
    if value is None:
        return None
    text = value.strip()
    if text == "*":
        return None
    found = _ETAG_RE.fullmatch(text)
    if found is None or int(found[2]) > MAX_REVISION:
        raise ValidationError.single("If-Match", "must be an ETag returned by this API")
    return int(found[2])


class JobService:
    def __init__(self, store: CoordStore, logs: LogStore, keys: Keyspace,
                 clock: Clock | None = None, *, request_ttl: int = REQUEST_TTL,
                 check_job: Callable[[Job], None] | None = None,
                 keyring: Keyring | None = None) -> None:
        self.store = store
        # Seals the secret values of jobs written here (None: jobs cannot get any).
        self.keyring = keyring
        # A cluster policy a job must meet to be written (raises ValidationError).
        self.check_job = check_job
        self.logs = logs
        self.keys = keys
        self.clock = clock or SystemClock()
        self.request_ttl = request_ttl
        # Jobs as parsed at their revision: a list of 1,000 jobs validates
        # only those that changed since the last read (jobs are immutable).
        self._parsed: dict[str, tuple[int, Job]] = {}
        self.trends = TrendCache()

    # -- reads ----------------------------------------------------------------

    def _parse(self, kv: KeyValue) -> Job:
        hit = self._parsed.get(kv.key)
        if hit is not None and hit[0] == kv.mod_revision:
            return hit[1]
        job = Job.from_json(kv.value)
        self._parsed[kv.key] = (kv.mod_revision, job)
        return job

    async def list_jobs(self) -> list[StoredJob]:
        kvs, _ = await self.store.get_prefix(self.keys.jobs)
        out = []
        for kv in kvs:
            try:
                out.append(StoredJob(self._parse(kv), kv.mod_revision))
            except ValidationError as exc:
                log.error("skipping invalid job at %s: %s", kv.key, exc)
        if len(self._parsed) > len(kvs):  # forget deleted jobs
            present = {kv.key for kv in kvs}
            self._parsed = {k: v for k, v in self._parsed.items() if k in present}
        return sorted(out, key=lambda s: s.job.name)

    async def get(self, name: str) -> StoredJob:
        validate_name(name)
        kv = await self.store.get(self.keys.job(name))
        if kv is None:
            raise NotFoundError("job", name)
        return StoredJob(self._parse(kv), kv.mod_revision)

    async def running(self, name: str | None = None) -> list[dict[str, Any]]:
        prefix = self.keys.running_of(name) if name else self.keys.running_dir
        kvs, _ = await self.store.get_prefix(prefix)
        return [_json(kv) for kv in kvs]

    async def running_keys(self) -> list[KeyValue]:
        """Every ``/running/<job>/<run id>`` key (one read for all jobs)."""
        kvs, _ = await self.store.get_prefix(self.keys.running_dir)
        return kvs

    async def workers(self) -> list[dict[str, Any]]:
        """Registered workers (alive: their keys live on their leases), by id."""
        kvs, _ = await self.store.get_prefix(self.keys.workers)
        out = []
        for kv in kvs:
            info = _json(kv)
            if "raw" in info or not isinstance(info.get("id"), str):
                log.warning("skipping unreadable worker entry %s", kv.key)
                continue
            out.append(info)
        return sorted(out, key=lambda w: str(w["id"]))

    # -- writes ---------------------------------------------------------------

    async def _commit(self, name: str, guard: Compare, ops: list[TxnOp], *,
                      restart: bool) -> TxnResult | None:
        """Commit ``ops`` if ``guard`` (a compare on the job's key) holds; None if not.

        With ``restart`` (a job created, rescheduled or resumed) the job starts
        from when a worker learns of it, not from this master's clock: the
        same transaction replaces the fencing token with a start marker
        (``encode_start``; the workers turn it into the cluster's time when
        they first saw it). The marker's floor is the token as read just
        before, and the write holds only if the token is still at that
        revision, so the token never moves back and a tick already claimed can
        never be claimed again. A claim that commits in between means reading
        the token again, not a conflict.
        """
        if not restart:
            result = await self.store.txn([guard], ops, [])
            return result if result.succeeded else None
        key, last = self.keys.job(name), self.keys.last(name)
        token = await self.store.get(last)
        for _ in range(RESTART_TRIES):
            seen = (Compare.absent(last) if token is None
                    else Compare.mod_revision(last, "==", token.mod_revision))
            marker = restart_token(None if token is None else token.value, uuid.uuid4().hex[:12])
            result = await self.store.txn([guard, seen], [*ops, Put(last, marker)],
                                          [Get(key), Get(last)])
            if result.succeeded:
                return result
            found_job, found_token = result.gets
            if not guard.holds_for(found_job[0] if found_job else None):
                return None
            token = found_token[0] if found_token else None
        raise ConflictError(f"the fencing token of job {name!r} kept moving; retry")

    async def create(self, job: Job, *, actor: str, secrets: SecretInput | None = None
                     ) -> StoredJob:
        if secrets is not None:
            job = secrets.apply(job, {}, self.keyring)
        if self.check_job is not None:
            self.check_job(job)
        key = self.keys.job(job.name)
        result = await self._commit(job.name, Compare.absent(key), [Put(key, job.to_json())],
                                    restart=True)
        if result is None:
            raise ConflictError(f"job {job.name!r} already exists")
        await self._audit(actor, "job.create", job.name, None, job.to_dict(),
                          _secret_details(secrets))
        return StoredJob(job, result.revision)

    async def replace(self, job: Job, *, actor: str, if_match: int | None,
                      secrets: SecretInput | None = None) -> StoredJob:
        current = await self.get(job.name)
        return await self._write(current, job, actor=actor, if_match=if_match,
                                 action="job.update", secrets=secrets)

    async def patch(self, name: str, changes: Mapping[str, Any], *, actor: str,
                    if_match: int | None, action: str = "job.update",
                    secrets: SecretInput | None = None) -> StoredJob:
        current = await self.get(name)
        return await self._write(current, current.job.patched(changes), actor=actor,
                                 if_match=if_match, action=action, secrets=secrets)

    async def _write(self, current: StoredJob, job: Job, *, actor: str,
                     if_match: int | None, action: str,
                     secrets: SecretInput | None = None) -> StoredJob:
        # Secrets a request does not name keep their stored (sealed) values.
        job = (secrets or _NO_CHANGE).apply(job, current.job.secrets, self.keyring)
        if self.check_job is not None and job.http != current.job.http:
            self.check_job(job)  # (a job written before the policy can still be paused)
        key = self.keys.job(job.name)
        expected = current.revision if if_match is None else if_match
        old = current.job
        # A new schedule or a resumed job starts afresh: the ticks before are
        # not missed ones.
        restart = (job.schedule, job.timezone) != (old.schedule, old.timezone) or (
            job.enabled and not old.enabled)
        result = await self._commit(job.name, Compare.mod_revision(key, "==", expected),
                                    [Put(key, job.to_json())], restart=restart)
        if result is None:
            if if_match is not None:
                raise PreconditionFailed(
                    f"job {job.name!r} changed since revision {if_match}; reload and retry")
            raise ConflictError(f"job {job.name!r} changed meanwhile; retry")
        await self._audit(actor, action, job.name, old.to_dict(), job.to_dict(),
                          _secret_details(secrets))
        return StoredJob(job, result.revision)

    async def delete(self, name: str, *, actor: str, if_match: int | None = None) -> None:
        current = await self.get(name)
        key = self.keys.job(name)
        expected = current.revision if if_match is None else if_match
        result = await self.store.txn(
            [Compare.mod_revision(key, "==", expected)],
            [Delete(key), Delete(self.keys.last(name)), Delete(self.keys.once(name))],
            [],
        )
        if not result.succeeded:
            if if_match is not None:
                raise PreconditionFailed(
                    f"job {name!r} changed since revision {if_match}; reload and retry")
            raise ConflictError(f"job {name!r} changed meanwhile; retry")
        await self._audit(actor, "job.delete", name, current.job.to_dict(), None)

    async def set_enabled(self, name: str, enabled: bool, *, actor: str,
                          if_match: int | None = None) -> StoredJob:
        return await self.patch(name, {"enabled": enabled}, actor=actor, if_match=if_match,
                                action="job.resume" if enabled else "job.pause")

    async def run_now(self, name: str, *, actor: str) -> str:
        """Ask one matching worker to run the job once; returns the run id."""
        await self.get(name)
        at = self.clock.now_ms()
        if at % 1000 == 0:
            at += 1  # never a whole second, so never the id of a scheduled tick
        lease = await self.store.grant_lease(self.request_ttl)
        body = json.dumps({"at": at, "by": actor}).encode()
        key = self.keys.once(name)
        result = await self.store.txn([Compare.absent(key)], [Put(key, body, lease)],
                                      [])
        if not result.succeeded:
            await self.store.revoke_lease(lease)
            raise ConflictError(f"a run-now request for {name!r} is already waiting for a worker")
        rid = run_id(name, at)
        await self._audit(actor, "job.run", name, None, None, {"run_id": rid})
        return rid

    async def kill(self, name: str, *, actor: str, target_run: str | None = None,
                   reason: str = "kill requested") -> list[str]:
        """Ask the workers to stop the job's live runs (or one of them).

        Returns the run ids asked to stop. Workers stop only runs that started
        before the request, so when none is alive nothing is written.
        """
        await self.get(name)
        if target_run is not None:
            try:
                owner, _ = parse_run_id(target_run)
            except (ValueError, ValidationError):
                raise ValidationError.single(
                    "run_id", f"{target_run!r} is not a run id (<job>@<tick>)") from None
            if owner != name:
                raise ValidationError.single("run_id", f"is a run of {owner!r}, not of {name!r}")
        running = [r for r in await self.running(name)
                   if target_run is None or r.get("run_id") == target_run]
        if target_run is not None and not running:
            raise NotFoundError("running run", target_run)
        if running:
            lease = await self.store.grant_lease(self.request_ttl)
            body = json.dumps({"run_id": target_run, "by": actor, "reason": reason,
                               "at": self.clock.now_ms()}).encode()
            await self.store.put(self.keys.killer(name), body, lease=lease)
        runs = sorted(str(r.get("run_id")) for r in running)
        await self._audit(actor, "job.kill", name, None, None,
                          {"run_id": target_run, "runs": runs})
        return runs

    async def _audit(self, actor: str, action: str, target: str,
                     before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                     details: Mapping[str, Any] | None = None) -> None:
        entry = AuditEntry(self.clock.now_ms(), actor, action, target, before, after,
                           dict(details or {}))
        await write_audit(self.logs, entry)


_NO_CHANGE = SecretInput({})


def _secret_details(secrets: SecretInput | None) -> dict[str, Any] | None:
    """What the audit says of a secret change: which slots, never a value."""
    if secrets is None:
        return None
    details: dict[str, Any] = {"secrets_changed": secrets.touched}
    if secrets.clear_all:
        details["secrets_cleared"] = True
    return details


async def write_audit(logs: LogStore, entry: AuditEntry) -> None:
    """Record ``entry``; if MongoDB is down, the entry goes to the error log whole."""
    parts = (entry.before, entry.after, entry.details)
    if any(unencodable_text(part) is not None for part in parts):
        # A job stored before bodies were checked (see read_json): its entry keeps
        # the bad strings escaped, so that the job can still be changed or deleted.
        entry = replace(entry, before=escaped_text(entry.before),
                        after=escaped_text(entry.after), details=escaped_text(entry.details))
    try:
        await logs.write_audit(entry)
    except LogStoreUnavailable as exc:
        log.error("audit store unavailable (%s); audit entry: %s", exc,
                  json.dumps(entry.to_dict(), default=str))


def _json(kv: KeyValue) -> dict[str, Any]:
    try:
        value = json.loads(kv.value)
    except ValueError:
        return {"key": kv.key, "raw": kv.value.decode(errors="replace")}
    return value if isinstance(value, dict) else {"key": kv.key, "value": value}
