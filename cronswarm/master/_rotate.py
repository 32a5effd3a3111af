"""Re-sealing every job's secrets under the first key (``cronswarm secrets rotate``).

Each job is rewritten in its own transaction guarded by the revision it was
read at, so an edit made meanwhile is never overwritten: the job is read
again and re-sealed once more. A job whose secrets do not open (a key id
that is not configured, a tampered value) is left as it is and reported by
name and key id; the others are rotated all the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..common import Job, Keyring, Keyspace, SecretKeyError, ValidationError
from ..coord import Compare, CoordStore, KeyValue, Put

log = logging.getLogger(__name__)

TRIES = 5  # reads of a job that keeps changing under the rotation


@dataclass(slots=True)
class RotationReport:
    rotated: int = 0  # jobs re-sealed now
    current: int = 0  # jobs with secrets already under the first key
    without: int = 0  # jobs without secrets
    failed: dict[str, str] = field(default_factory=dict)  # job -> why (no values)

    def to_dict(self) -> dict[str, object]:
        return {"rotated": self.rotated, "current": self.current, "without": self.without,
                "failed": dict(self.failed)}


async def rotate_job_secrets(store: CoordStore, keys: Keyspace, keyring: Keyring
                             ) -> RotationReport:
    report = RotationReport()
    kvs, _ = await store.get_prefix(keys.jobs)
    for kv in kvs:
        name = kv.key.removeprefix(keys.jobs)
        try:
            await _rotate_one(store, kv, keyring, report)
        except (SecretKeyError, ValidationError) as exc:
            report.failed[name] = str(exc)
    return report


async def _rotate_one(store: CoordStore, kv: KeyValue | None, keyring: Keyring,
                      report: RotationReport) -> None:
    for _ in range(TRIES):
        if kv is None:
            return  # deleted meanwhile
        job = Job.from_json(kv.value)
        if not job.secrets:
            report.without += 1
            return
        if all(s.kid == keyring.primary for s in job.secrets.values()):
            report.current += 1
            return
        resealed = {slot: keyring.reseal(job.name, slot, sealed)
                    for slot, sealed in job.secrets.items()}
        body = job.with_secrets(resealed).to_json()
        result = await store.txn([Compare.mod_revision(kv.key, "==", kv.mod_revision)],
                                 [Put(kv.key, body)], [])
        if result.succeeded:
            report.rotated += 1
            return
        kv = await store.get(kv.key)
    raise ValidationError.single("job", f"kept changing during {TRIES} tries; run again")
