import random
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cronswarm.common import Job, RetryPolicy, RetryRequest, RunStatus, backoff_delay
from cronswarm.logstore._last_runs import rewrite_delay
from cronswarm.worker import ExecResult
from cronswarm.worker._retry import retry_owner
from cronswarm.worker._runner import _retryable


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (10, 3.0)],
)
def test_backoff_is_exponential_and_capped(attempt: int, expected: float) -> None:
    policy = RetryPolicy.from_dict({"attempts": 5, "delay": 0.5, "max_delay": 3.0, "jitter": 0})
    assert policy.delay_after(attempt) == expected


@given(delay=st.floats(0, 100), multiplier=st.floats(1, 10), max_delay=st.floats(0, 1000),
       jitter=st.floats(0, 1), attempt=st.integers(1, 30), seed=st.integers(0, 1000))
def test_jitter_only_adds_up_to_its_fraction(delay: float, multiplier: float, max_delay: float,
                                             jitter: float, attempt: int, seed: int) -> None:
    base = min(max_delay, delay * multiplier ** (attempt - 1))
    got = backoff_delay(attempt, first=delay, cap=max_delay, multiplier=multiplier,
                        jitter=jitter, rng=random.Random(seed))
    assert base <= got <= base * (1 + jitter) + 1e-9


SHELL = {"name": "j", "schedule": "* * * * *", "command": "x"}
HTTP = {"name": "h", "schedule": "* * * * *", "http": {"url": "http://127.0.0.1/"}}


@pytest.mark.parametrize(
    ("job", "result", "retry"),
    [
        (SHELL, ExecResult(RunStatus.FAILED, exit_code=1), True),
        (SHELL, ExecResult(RunStatus.TIMEOUT, exit_code=-15), True),
        (SHELL, ExecResult(RunStatus.KILLED, exit_code=-15), False),
        (SHELL, ExecResult(RunStatus.SUCCEEDED, exit_code=0), False),
        ({**SHELL, "retry": {"attempts": 3, "on_exit_codes": [75]}},
         ExecResult(RunStatus.FAILED, exit_code=75), True),
        ({**SHELL, "retry": {"attempts": 3, "on_exit_codes": [75]}},
         ExecResult(RunStatus.FAILED, exit_code=1), False),
        ({**SHELL, "retry": {"attempts": 3, "on_exit_codes": [75]}},
         ExecResult(RunStatus.TIMEOUT, exit_code=-9), False),
        (HTTP, ExecResult(RunStatus.FAILED, http_status=500), True),
        (HTTP, ExecResult(RunStatus.FAILED, error="connection refused"), True),
        ({**HTTP, "retry": {"attempts": 3, "on_http_statuses": [503]}},
         ExecResult(RunStatus.FAILED, http_status=503), True),
        ({**HTTP, "retry": {"attempts": 3, "on_http_statuses": [503]}},
         ExecResult(RunStatus.FAILED, http_status=500), False),
        ({**HTTP, "retry": {"attempts": 3, "on_http_statuses": [503]}},
         ExecResult(RunStatus.FAILED, error="connection refused"), False),
    ],
)
def test_only_failures_retry_and_listed_codes_restrict_them(
        job: dict[str, object], result: ExecResult, retry: bool) -> None:
    assert _retryable(Job.from_dict(job), result) is retry


def test_a_retry_goes_to_another_worker_unless_the_origin_is_alone() -> None:
    request = RetryRequest("j@1000", "j", 1000, 2, 2000, "w1")
    assert retry_owner(request, ["w1"]) == "w1"
    assert retry_owner(request, []) == "w1"
    owner = retry_owner(request, ["w1", "w2", "w3"])
    assert owner in ("w2", "w3")
    assert retry_owner(request, ["w3", "w2", "w1"]) == owner  # order does not matter


def test_retry_requests_round_trip_and_match_labels_like_jobs() -> None:
    request = RetryRequest("j@1000", "j", 1000, 2, 2000, "w1", {"zone": "a"})
    assert RetryRequest.decode(request.encode()) == request
    frozen = RetryRequest("j@1000", "j", 1000, 2, 2000, "w1", MappingProxyType({"zone": "a"}))
    assert RetryRequest.decode(frozen.encode()) == request  # read-only mappings encode too
    assert request.matches({"zone": "a", "gpu": "yes"})
    assert not request.matches({"zone": "b"})
    assert RetryRequest("j@1000", "j", 1000, 2, 2000, "w1").matches({})


def test_the_delay_after_thousands_of_failures_is_the_cap() -> None:
    """Hours of an outage: the exponent must not overflow a float."""
    assert backoff_delay(5000, first=0.05, cap=2.0, jitter=0) == 2.0
    assert backoff_delay(5000, first=0.0, cap=2.0, jitter=0) == 0.0
    assert [rewrite_delay(n, 30.0) for n in (1, 2, 3, 6, 5000)] == [1.0, 2.0, 4.0, 30.0, 30.0]
