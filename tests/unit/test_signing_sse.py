import json

from cronswarm.common import (
    check_live_auth,
    end_event,
    live_auth_header,
    output_event,
    same_signature,
    sse_event,
)

KEY = bytes(range(32))


def test_live_auth_accepts_only_the_signature_of_that_record_with_that_key() -> None:
    header = live_auth_header(KEY, "job@1000#2")
    assert header.startswith("Cronswarm ")
    assert check_live_auth(KEY, "job@1000#2", header)
    assert not check_live_auth(KEY, "job@1000#3", header)
    assert not check_live_auth(bytes(32), "job@1000#2", header)
    assert not check_live_auth(KEY, "job@1000#2", None)
    assert not check_live_auth(KEY, "job@1000#2", header.replace("Cronswarm", "Bearer"))
    assert not check_live_auth(KEY, "job@1000#2", "Cronswarm ")


def test_non_ascii_signatures_and_record_ids_are_wrong_not_errors() -> None:
    """Headers arrive as any bytes (decoded with surrogate escapes): compare_digest
    raises TypeError on non-ASCII strings, encode() on surrogates."""
    header = live_auth_header(KEY, "job@1000#2")
    for forged in (header + "\u00e9", header[:-1] + "\udcff", "Cronswarm \u00e9" * 32):
        assert not check_live_auth(KEY, "job@1000#2", forged)
    assert not check_live_auth(KEY, "job@1000#2\udcff", header)
    assert not check_live_auth(KEY, "j\u00f6b@1000#2", header)
    assert same_signature("abc", "abc")
    assert not same_signature("ab\u00e9", "abc") and not same_signature("\udcff", "abc")


def test_events_are_one_json_data_line_each() -> None:
    raw = output_event(7, "line one\nline two\n").decode()
    assert raw.endswith("\n\n")
    lines = raw.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("data: ")
    assert json.loads(lines[0][6:]) == {"offset": 7, "data": "line one\nline two\n"}
    end = end_event("succeeded", output_bytes=5, truncated=False).decode()
    assert end.startswith("event: end\ndata: ")
    assert json.loads(end.split("data: ")[1]) == {
        "status": "succeeded", "output_bytes": 5, "truncated": False}
    assert sse_event({"a": 1}) == b'data: {"a":1}\n\n'
