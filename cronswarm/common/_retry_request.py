"""The messages masters and workers exchange about a run's next attempt.

A retry request (``/retry/<run id>`` in etcd) asks the workers to run a
run's next attempt: written by the worker whose attempt failed
(``retry.any_worker``) or by the elected master for an attempt that was
lost. The fence's reason marks a run a worker stopped because its lease may
have expired: the master retries such an attempt as a lost one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LEASE_LOST = "lease lost"  # the reason of runs stopped by the fence
LEASE_LOST_REASON = "lease_lost"  # the same, in a run record's ``extra.reason``


@dataclass(frozen=True, slots=True)
class RetryRequest:
    run_id: str
    job: str
    tick: int
    attempt: int  # the attempt to run
    not_before: int  # epoch ms
    origin: str  # the worker that asks
    targets: Mapping[str, str] = field(default_factory=dict)  # the job's, when asked
    # Asked by the elected master for a run whose worker died (``lost``): the
    # lock is not the origin's to hand over, so a claim takes it only if free.
    lost: bool = False

    def encode(self) -> bytes:
        data: dict[str, Any] = {"run_id": self.run_id, "job": self.job, "tick": self.tick,
                                "attempt": self.attempt, "not_before": self.not_before,
                                "origin": self.origin, "targets": dict(self.targets)}
        if self.lost:
            data["lost"] = True
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> RetryRequest:
        data = json.loads(raw)
        targets = data.get("targets") or {}
        if not isinstance(targets, dict):
            raise TypeError("targets must be an object")
        return cls(str(data["run_id"]), str(data["job"]), int(data["tick"]),
                   int(data["attempt"]), int(data["not_before"]), str(data["origin"]),
                   {str(k): str(v) for k, v in targets.items()}, data.get("lost") is True)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a worker with ``labels`` may take it (as ``Job.matches``)."""
        return all(labels.get(k) == v for k, v in self.targets.items())
