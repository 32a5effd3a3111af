"""Which lost runs the leader asks the workers to retry, and how."""

import pytest

from cronswarm.common import Job, Keyspace, RetryRequest, RunRecord, RunStatus
from cronswarm.master._lost_retry import lost_retry
from cronswarm.worker._retry import build_retry_claim

T0 = 1_767_225_600_000


def lost(attempt: int) -> RunRecord:
    return RunRecord(run_id=f"j@{T0}", job="j", tick=T0, attempt=attempt, worker="w1",
                     summary="x", status=RunStatus.LOST, ended=T0 + 5000)


def job(**retry: object) -> Job:
    return Job.from_dict({"name": "j", "schedule": "* * * * *", "command": "x",
                          "targets": {"zone": "eu"}, "retry": retry or None})


@pytest.mark.parametrize(("policy", "attempt", "retried"), [
    ({}, 1, False),  # no retry policy
    ({"attempts": 3}, 1, False),  # retries stay on the worker that ran it: it is dead
    ({"attempts": 3, "any_worker": True}, 1, True),
    ({"attempts": 3, "any_worker": True}, 2, True),
    ({"attempts": 3, "any_worker": True}, 3, False),  # no attempt left
])
def test_only_policies_that_allow_another_worker_and_have_attempts_left_retry(
        policy: dict[str, object], attempt: int, retried: bool) -> None:
    planned = lost_retry(job(**policy), lost(attempt), now_ms=T0 + 6000, origin="leader:m1")
    assert (planned is not None) is retried


def test_the_request_is_the_next_attempt_after_the_backoff_and_takes_a_free_lock_only() -> None:
    planned = lost_retry(job(attempts=3, any_worker=True, delay=4, jitter=0), lost(1),
                         now_ms=T0 + 6000, origin="leader:m1")
    assert planned is not None
    request, delay = planned
    assert delay == 4
    assert request == RetryRequest(f"j@{T0}", "j", T0, 2, T0 + 10_000, "leader:m1",
                                   {"zone": "eu"}, lost=True)
    assert RetryRequest.decode(request.encode()) == request
    keys = Keyspace("/cron")
    compare, _, _ = build_retry_claim(keys, job(attempts=3, any_worker=True), request, 7,
                                      b"info", 1)
    assert [(c.key, c.target) for c in compare] == [
        (keys.retry("j", f"j@{T0}"), "mod"), (keys.lock("j"), "version")]
    # A worker's own hand-off keeps its lock: no such compare.
    own = RetryRequest(f"j@{T0}", "j", T0, 2, T0, "w1", {})
    compare, _, _ = build_retry_claim(keys, job(attempts=3, any_worker=True), own, 7, b"i", 1)
    assert len(compare) == 1
