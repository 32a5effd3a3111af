"""Job secrets: sealing with the operator's keys, the write-only model, scrubbing."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cronswarm.common import (
    ConfigError,
    Job,
    Keyring,
    Scrubber,
    SecretKeyError,
    Settings,
    ValidationError,
    new_key_line,
    open_secrets,
    read_job_input,
)
from cronswarm.common._secrets import SCRUBBED, Sealed

KEY_A = new_key_line("a")
KEY_B = new_key_line("b")


def test_the_first_key_seals_and_every_key_opens() -> None:
    old = Keyring.parse(KEY_A)
    sealed = old.seal("backup", "env.TOKEN", "s3cr3t-value")
    assert sealed.kid == "a" and b"s3cr3t" not in sealed.ct
    both = Keyring.parse(f"{KEY_B}, {KEY_A}")
    assert both.primary == "b"
    assert both.open("backup", "env.TOKEN", sealed) == "s3cr3t-value"
    moved = both.reseal("backup", "env.TOKEN", sealed)
    assert moved.kid == "b"
    assert Keyring.parse(KEY_B).open("backup", "env.TOKEN", moved) == "s3cr3t-value"


def test_a_missing_key_id_is_named_and_the_value_is_not() -> None:
    sealed = Keyring.parse(KEY_A).seal("backup", "env.TOKEN", "s3cr3t-value")
    with pytest.raises(SecretKeyError) as caught:
        Keyring.parse(KEY_B).open("backup", "env.TOKEN", sealed)
    message = str(caught.value)
    assert "'a'" in message and "CRONSWARM_JOB_SECRET_KEYS" in message
    assert "s3cr3t" not in message


def test_the_same_key_id_with_another_key_does_not_open() -> None:
    sealed = Keyring.parse(KEY_A).seal("backup", "env.TOKEN", "s3cr3t-value")
    impostor = Keyring.parse(new_key_line("a"))
    with pytest.raises(SecretKeyError, match="does not open"):
        impostor.open("backup", "env.TOKEN", sealed)


def test_a_tampered_ciphertext_does_not_open() -> None:
    ring = Keyring.parse(KEY_A)
    sealed = ring.seal("backup", "env.TOKEN", "s3cr3t-value")
    flipped = bytes([sealed.ct[0] ^ 1]) + sealed.ct[1:]
    with pytest.raises(SecretKeyError, match="tampered"):
        ring.open("backup", "env.TOKEN", replace(sealed, ct=flipped))
    with pytest.raises(SecretKeyError):
        ring.open("backup", "env.TOKEN", replace(sealed, nonce=bytes(12)))


def test_a_ciphertext_moved_to_another_job_or_slot_does_not_open() -> None:
    ring = Keyring.parse(KEY_A)
    sealed = ring.seal("backup", "env.TOKEN", "s3cr3t-value")
    with pytest.raises(SecretKeyError):
        ring.open("report", "env.TOKEN", sealed)
    with pytest.raises(SecretKeyError):
        ring.open("backup", "env.OTHER", sealed)


@pytest.mark.parametrize(("text", "problem"), [
    ("", "no keys"),
    ("a", "id:base64-key"),
    ("a:not base64!", "not base64"),
    (f"a:{base64.b64encode(bytes(16)).decode()}", "32 bytes"),
    (f"{KEY_A},{KEY_A}", "twice"),
    ("bad id!:AAAA", "id:base64-key"),
], ids=["empty", "no-key", "not-base64", "short-key", "listed-twice", "bad-id"])
def test_bad_key_settings_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Keyring.parse(text)


def test_the_setting_is_checked_when_loaded_and_never_printed() -> None:
    with pytest.raises(ConfigError, match="CRONSWARM_JOB_SECRET_KEYS"):
        Settings.load(env={"CRONSWARM_ETCD_ENDPOINTS": "127.0.0.1:2379",
                           "MONGODB_URI": "mongodb://x", "CRONSWARM_JOB_SECRET_KEYS": "a:zz"})
    settings = Settings.load(env={"CRONSWARM_ETCD_ENDPOINTS": "127.0.0.1:2379",
                                  "MONGODB_URI": "mongodb://x",
                                  "CRONSWARM_JOB_SECRET_KEYS": KEY_A})
    assert settings.job_secret_keys == KEY_A
    assert KEY_A.partition(":")[2] not in repr(settings)
    assert settings.env()["CRONSWARM_JOB_SECRET_KEYS"] == KEY_A  # child processes get it


# -- the job model ----------------------------------------------------------------

SHELL = {"name": "backup", "schedule": "* * * * *", "command": "echo"}
HTTP = {"name": "ping", "schedule": "* * * * *", "http": {"url": "http://example.com/"}}


def _with(body: dict[str, object], secrets: object, ring: Keyring | None = None) -> Job:
    job, given = read_job_input({**body, "secrets": secrets})
    assert given is not None
    return given.apply(job, {}, ring or Keyring.parse(KEY_A))


def test_a_job_shows_which_secrets_are_set_and_stores_them_sealed() -> None:
    job = _with(SHELL, {"env": {"TOKEN": "s3cr3t-value"}})
    assert job.to_dict()["secrets_set"] == ["env.TOKEN"]
    assert "s3cr3t" not in json.dumps(job.to_dict())
    stored = job.to_json()
    assert b"s3cr3t" not in stored
    assert set(json.loads(stored)["secrets"]["env.TOKEN"]) == {"kid", "nonce", "ct"}
    again = Job.from_json(stored)
    assert again == job
    assert open_secrets(Keyring.parse(KEY_A), "backup", again.secrets).env == {
        "TOKEN": "s3cr3t-value"}


def test_http_secrets_open_as_headers_and_basic_auth() -> None:
    job = _with(HTTP, {"headers": {"X-Api-Key": "key-12345"},
                       "basic_auth": {"username": "bot", "password": "pw-12345"}})
    assert job.to_dict()["secrets_set"] == ["basic_auth", "headers.X-Api-Key"]
    opened = open_secrets(Keyring.parse(KEY_A), "ping", Job.from_json(job.to_json()).secrets)
    assert opened.headers == {"X-Api-Key": "key-12345"}
    assert opened.basic_auth == ("bot", "pw-12345")
    assert base64.b64encode(b"bot:pw-12345").decode() in opened.values()


@pytest.mark.parametrize(("body", "secrets", "field"), [
    (HTTP, {"env": {"TOKEN": "x-1234"}}, "secrets.env.TOKEN"),
    (SHELL, {"headers": {"X-Key": "x-1234"}}, "secrets.headers.X-Key"),
    ({**SHELL, "env": {"TOKEN": "plain"}}, {"env": {"TOKEN": "x-1234"}}, "secrets.env.TOKEN"),
    (SHELL, {"env": {"CRONSWARM_X": "x-1234"}}, "secrets.env.CRONSWARM_X"),
    ({**HTTP, "http": {"url": "http://e.com/", "headers": {"authorization": "x"}}},
     {"basic_auth": {"username": "u", "password": "p-1234"}}, "secrets.basic_auth"),
    (HTTP, {"headers": {"X-Key": "a\nb"}}, "secrets.headers.X-Key"),
    (HTTP, {"basic_auth": {"username": "a:b", "password": "p"}}, "secrets.basic_auth.username"),
    (SHELL, {"files": {}}, "secrets.files"),
    (SHELL, {"env": {"TOKEN": ""}}, "secrets.env.TOKEN"),
])
def test_secrets_that_do_not_fit_the_job_are_refused(body: dict[str, object], secrets: object,
                                                     field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _with(body, secrets)
    assert field in [p.field for p in caught.value.problems]
    assert "x-1234" not in str(caught.value)


def test_every_problem_of_a_request_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        read_job_input({**SHELL, "schedule": "nope", "secrets": {"env": {"1X": "v"}}})
    fields = {p.field for p in caught.value.problems}
    assert {"schedule", "secrets.env.1X"} <= fields


def test_without_a_key_a_secret_cannot_be_set_and_the_error_names_the_setting() -> None:
    job, given = read_job_input({**SHELL, "secrets": {"env": {"TOKEN": "s3cr3t-value"}}})
    assert given is not None
    with pytest.raises(ValidationError, match="CRONSWARM_JOB_SECRET_KEYS"):
        given.apply(job, {}, None)


def test_omitted_secrets_are_kept_null_clears_and_names_given_replace() -> None:
    ring = Keyring.parse(KEY_A)
    stored = _with(SHELL, {"env": {"A": "value-a", "B": "value-b"}})
    job, given = read_job_input({**SHELL, "secrets": {"env": {"B": None, "C": "value-c"}}})
    assert given is not None
    changed = given.apply(job, stored.secrets, ring)
    assert sorted(changed.secrets) == ["env.A", "env.C"]
    assert changed.secrets["env.A"] == stored.secrets["env.A"]  # untouched, not resealed
    job, given = read_job_input(SHELL)
    assert given is None
    job, given = read_job_input({**SHELL, "secrets": None})
    assert given is not None and given.apply(job, stored.secrets, ring).secrets == {}


def test_a_patch_keeps_the_secrets_and_a_change_of_kind_must_clear_them() -> None:
    stored = _with(SHELL, {"env": {"A": "value-a"}})
    patched = stored.patched({"description": "x"})
    assert patched.secrets == stored.secrets
    with pytest.raises(ValidationError, match="shell jobs only"):
        patched.patched({"http": {"url": "http://e.com/"}}).with_secrets(patched.secrets)


def test_the_api_cannot_inject_sealed_values() -> None:
    sealed = Keyring.parse(KEY_A).seal("backup", "env.A", "value-a").to_dict()
    with pytest.raises(ValidationError):
        Job.from_dict({**SHELL, "secrets": {"env.A": sealed}})


def test_a_stored_job_with_a_broken_sealed_value_is_invalid() -> None:
    sealed = Keyring.parse(KEY_A).seal("backup", "env.A", "value-a").to_dict()
    data = {**SHELL, "secrets": {"env.A": {**sealed, "nonce": "AAAA"}}}
    with pytest.raises(ValidationError, match="secrets"):
        Job.from_json(json.dumps(data))
    assert Sealed.from_dict(sealed).kid == "a"


def test_a_worker_without_keys_names_the_key_id() -> None:
    job = _with(SHELL, {"env": {"A": "value-a"}})
    with pytest.raises(SecretKeyError, match=r"'a'.*CRONSWARM_JOB_SECRET_KEYS"):
        open_secrets(None, "backup", job.secrets)


# -- scrubbing ----------------------------------------------------------------------

def _scrub_chunks(values: list[str], chunks: list[bytes]) -> bytes:
    scrubber = Scrubber(values)
    return b"".join(scrubber.feed(c) for c in chunks) + scrubber.flush()


def test_a_value_split_across_reads_is_scrubbed() -> None:
    out = _scrub_chunks(["hunter2-secret"], [b"token=hun", b"ter2-se", b"cret; ok\n"])
    assert out == b"token=" + SCRUBBED + b"; ok\n"


def test_a_value_at_the_very_end_is_scrubbed_on_flush() -> None:
    assert _scrub_chunks(["hunter2"], [b"a hunt", b"er2"]) == b"a " + SCRUBBED


def test_short_values_are_not_scrubbed_and_longest_wins() -> None:
    assert _scrub_chunks(["abc", "abcdef", "abcd"], [b"abcdefabcd"]) == SCRUBBED * 2
    assert _scrub_chunks(["ab"], [b"abab"]) == b"abab"


def test_without_values_output_passes_untouched() -> None:
    scrubber = Scrubber([])
    assert not scrubber
    assert scrubber.feed(b"x") == b"x" and scrubber.flush() == b""


@given(st.lists(st.sampled_from([b"s3cr3t!", b"s3c", b"r3t", b"x", b"\n", b"!"]), max_size=30),
       st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=30))
def test_scrubbing_does_not_depend_on_how_the_stream_is_cut(parts: list[bytes],
                                                            cuts: list[int]) -> None:
    stream = b"".join(parts)
    chunks, pos, i = [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        chunks.append(stream[pos:pos + step])
        pos, i = pos + step, i + 1
    whole = _scrub_chunks(["s3cr3t!"], [stream])
    assert _scrub_chunks(["s3cr3t!"], chunks) == whole
    assert b"s3cr3t!" not in whole
    assert whole == stream.replace(b"s3cr3t!", SCRUBBED)


def test_error_texts_are_scrubbed() -> None:
    assert Scrubber(["s3cr3t!"]).text("bad token s3cr3t! here") == "bad token [secret] here"
