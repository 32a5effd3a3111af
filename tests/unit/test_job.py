import json

import pytest

from cronswarm.common import Job, ValidationError


def fields_of(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, str]:
    return {p.field: p.reason for p in exc.value.problems}


def test_minimal_shell_job_gets_defaults() -> None:
    job = Job.from_dict({"name": "backup.db-1", "schedule": "0 2 * * *", "command": "true"})
    assert job.kind == "shell"
    assert job.timezone == "UTC"
    assert job.enabled is True
    assert job.overlap == "forbid"
    assert job.retry.attempts == 1


def test_six_field_expression_is_accepted() -> None:
    job = Job.from_dict({"name": "s", "schedule": "*/5  *  * * * *", "command": "x"})
    assert job.schedule == "*/5 * * * * *"


@pytest.mark.parametrize(
    ("body", "field", "reason_part"),
    [
        ({"name": "a/b"}, "name", "letters, digits"),
        ({"name": ".."}, "name", "'..'"),
        ({"name": "a..b"}, "name", "'..'"),
        ({"name": "x" * 129}, "name", "at most 128"),
        ({"name": ""}, "name", "must not be empty"),
        ({"name": "job\n"}, "name", "letters, digits"),  # '$' matches before a newline
        ({"user": "root\n"}, "user", "must be a user name"),
        ({"env": {"HOME\n": "/"}}, "env.HOME\n", "not a valid environment variable"),
        ({"targets": {"zone\n": "a"}}, "targets.zone\n", "label names"),
        ({"schedule": "61 * * * *"}, "schedule", "out of range"),
        ({"schedule": "* * *"}, "schedule", "has 3"),
        ({"schedule": "* * * * * * *"}, "schedule", "has 7"),
        ({"schedule": "@sometimes"}, "schedule", "unknown shortcut"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown IANA timezone"),
        ({"timezone": "../etc/passwd"}, "timezone", "not an IANA"),
        ({"timeout": -1}, "timeout", "greater than 0"),
        ({"timeout": 0}, "timeout", "greater than 0"),
        ({"timeout": "10"}, "timeout", "must be a number"),
        ({"overlap": "sometimes"}, "overlap", "must be one of"),
        ({"misfire": "never"}, "misfire", "must be one of"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"retry": {}}, "retry.attempts", "is required"),
        ({"retry": {"attempts": 0}}, "retry.attempts", "at least 1"),
        ({"retry": {"attempts": 3, "on_exit_codes": [0]}}, "retry.on_exit_codes", "from 1"),
        ({"env": {"CRONSWARM_RUN_ID": "x"}}, "env.CRONSWARM_RUN_ID", "cannot be overridden"),
        ({"env": {"1BAD": "x"}}, "env.1BAD", "not a valid environment variable"),
        ({"cwd": "relative/dir"}, "cwd", "absolute path"),
        ({"priority": 5000}, "priority", "at most 1000"),
        ({"colour": "blue"}, "colour", "unknown field"),
    ],
)
def test_bad_fields_are_named(body: dict[str, object], field: str, reason_part: str) -> None:
    base = {"name": "ok", "schedule": "* * * * *", "command": "true"}
    with pytest.raises(ValidationError) as exc:
        Job.from_dict({**base, **body})
    problems = fields_of(exc)
    assert field in problems, problems
    assert reason_part in problems[field]


def test_missing_everything_reports_every_required_field() -> None:
    with pytest.raises(ValidationError) as exc:
        Job.from_dict({})
    assert set(fields_of(exc)) == {"name", "schedule", "command"}


def test_not_an_object() -> None:
    with pytest.raises(ValidationError) as exc:
        Job.from_dict(["name"])
    assert "body" in fields_of(exc)


@pytest.mark.parametrize(
    ("http", "field", "reason_part"),
    [
        ({"url": "ftp://x"}, "http.url", "http:// or https://"),
        ({"url": "http://x", "method": "BREW"}, "http.method", "must be one of"),
        ({"url": "http://x", "expect_status": [99]}, "http.expect_status", "from 100"),
        ({"url": "http://x", "headers": {"bad header": "v"}}, "http.headers.bad header",
         "not a valid HTTP header"),
        ({"method": "GET"}, "http.url", "is required"),
        ({"url": "http://x", "headers": {"X-A\n": "v"}}, "http.headers.X-A\n",
         "not a valid HTTP header"),
    ],
)
def test_bad_http_jobs(http: dict[str, object], field: str, reason_part: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Job.from_dict({"name": "h", "schedule": "* * * * *", "http": http})
    problems = fields_of(exc)
    assert field in problems, problems
    assert reason_part in problems[field]


def test_command_and_http_together_is_an_error() -> None:
    with pytest.raises(ValidationError) as exc:
        Job.from_dict({"name": "h", "schedule": "* * * * *", "command": "x",
                       "http": {"url": "http://x"}})
    assert "http" in fields_of(exc)


def test_json_round_trip_is_identity() -> None:
    job = Job.from_dict({
        "name": "full", "schedule": "0 */2 * * * *", "command": "echo $X", "timezone":
        "Europe/Paris", "env": {"X": "1"}, "timeout": 12.5, "overlap": "replace",
        "misfire": "run_all", "misfire_window": 600, "priority": 3,
        "retry": {"attempts": 3, "delay": 0.5, "on_exit_codes": [2, 1]},
        "targets": {"zone": "eu"}, "retention_days": 7, "cwd": "/tmp",
    })
    again = Job.from_json(job.to_json())
    assert again == job
    assert json.loads(job.to_json())["retry"]["on_exit_codes"] == [1, 2]


def test_patch_merges_and_revalidates() -> None:
    job = Job.from_dict({"name": "p", "schedule": "* * * * *", "command": "a",
                         "env": {"A": "1", "B": "2"}})
    patched = job.patched({"enabled": False, "env": {"B": None, "C": "3"}})
    assert patched.enabled is False
    assert dict(patched.env) == {"A": "1", "C": "3"}
    with pytest.raises(ValidationError):
        job.patched({"schedule": "nope"})
    with pytest.raises(ValidationError):
        job.patched({"name": "other"})


def test_patch_switching_to_http_drops_command() -> None:
    job = Job.from_dict({"name": "p", "schedule": "* * * * *", "command": "a"})
    patched = job.patched({"http": {"url": "https://example.org/ping"}})
    assert patched.kind == "http"
    assert patched.command is None


def test_targets_match_worker_labels() -> None:
    job = Job.from_dict({"name": "t", "schedule": "* * * * *", "command": "a",
                         "targets": {"zone": "eu", "gpu": "yes"}})
    assert job.matches({"zone": "eu", "gpu": "yes", "extra": "1"})
    assert not job.matches({"zone": "eu"})
    assert not job.matches({"zone": "us", "gpu": "yes"})


BASE = {"name": "j", "schedule": "* * * * *", "command": "true"}
DEFAULT_RETRY = Job.from_dict(BASE).to_dict()["retry"]


@pytest.mark.parametrize(("changes", "field"), [
    ({"attempts": True}, "retry.attempts"),
    ({"any_worker": 0}, "retry.any_worker"),
    ({"delay": "1.0"}, "retry.delay"),
    ({"extra": 1}, "retry.extra"),
])
def test_a_retry_equal_to_the_default_only_in_value_is_still_validated(
        changes: dict[str, object], field: str) -> None:
    # True == 1 and 0 == False in Python: the shortcut for the default policy
    # must not let these through.
    with pytest.raises(ValidationError) as exc:
        Job.from_dict({**BASE, "retry": {**DEFAULT_RETRY, **changes}})
    assert field in fields_of(exc)


def test_the_default_retry_policy_decodes_to_one_shared_object() -> None:
    stored = [Job.from_json(Job.from_dict({**BASE, "name": f"j{i}"}).to_json())
              for i in range(2)]
    assert stored[0].retry is stored[1].retry
    assert stored[0].kill_grace is stored[1].kill_grace
    assert stored[0].misfire_window is stored[1].misfire_window
    # An int where the encoding has a float reads through the validator, to the same policy.
    as_ints = Job.from_dict({**BASE, "retry": {**DEFAULT_RETRY, "delay": 1}})
    assert as_ints.retry == stored[0].retry


def test_a_stored_job_takes_the_name_of_its_key() -> None:
    raw = Job.from_dict({**BASE, "name": "nightly"}).to_json()
    key = "".join(["night", "ly"])  # an equal string, not the same object
    assert Job.from_json(raw, stored_as=key).name is key
    other = Job.from_json(raw, stored_as="daily")
    assert other.name == "nightly"  # the caller sees the mismatch and rejects it
