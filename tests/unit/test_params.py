"""Query-parameter readers: every malformed value is a ValidationError naming it."""

import pytest

from cronswarm.common import ValidationError
from cronswarm.logstore import encode_cursor
from cronswarm.master._params import (
    MAX_MS,
    bool_param,
    choice_param,
    int_param,
    label_param,
    name_param,
    run_cursor_param,
    text_param,
    time_param,
)


@pytest.mark.parametrize(("raw", "value"), [(None, 7), ("", 7), ("1", 1), (" 10 ", 10)])
def test_int_param_reads_integers(raw: str | None, value: int) -> None:
    query = {} if raw is None else {"n": raw}
    assert int_param(query, "n", 7, 1, 10) == value


@pytest.mark.parametrize("raw", ["abc", "1.5", "0", "11", "¹", "٣", "9" * 40, "--1"])
def test_int_param_rejects_non_integers_and_out_of_range(raw: str) -> None:
    with pytest.raises(ValidationError) as exc:
        int_param({"n": raw}, "n", 7, 1, 10)
    assert exc.value.problems[0].field == "n"


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("1", True), ("False", False),
                                            ("no", False), ("", None)])
def test_bool_param(raw: str, value: bool | None) -> None:
    assert bool_param({"b": raw}, "b") is value


def test_bool_param_rejects_other_words() -> None:
    with pytest.raises(ValidationError):
        bool_param({"b": "maybe"}, "b")


@pytest.mark.parametrize(("raw", "value"), [
    ("1700000000000", 1700000000000),
    ("2026-01-01T00:00:00Z", 1767225600000),
    ("2026-01-01T01:00:00+01:00", 1767225600000),
])
def test_time_param_reads_ms_and_iso(raw: str, value: int) -> None:
    assert time_param({"t": raw}, "t") == value


@pytest.mark.parametrize("raw", ["yesterday", "2026-01-01T00:00:00", "¹", str(MAX_MS + 1),
                                 "9" * 30, "-5"])
def test_time_param_rejects_bad_times(raw: str) -> None:
    with pytest.raises(ValidationError) as exc:
        time_param({"t": raw}, "t")
    assert exc.value.problems[0].field == "t"


def test_text_name_choice_and_label_params() -> None:
    assert text_param({"q": "x" * 200}, "q") == "x" * 200
    with pytest.raises(ValidationError):
        text_param({"q": "x" * 201}, "q")
    with pytest.raises(ValidationError):
        text_param({"q": "a\x00b"}, "q")
    assert name_param({"job": "a.b-c"}, "job") == "a.b-c"
    with pytest.raises(ValidationError):
        name_param({"job": "../x"}, "job")
    assert choice_param({"s": "b"}, "s", ("a", "b")) == "b"
    with pytest.raises(ValidationError):
        choice_param({"s": "c"}, "s", ("a", "b"))
    assert label_param({"t": "zone=eu=1"}, "t") == ("zone", "eu=1")
    with pytest.raises(ValidationError):
        label_param({"t": "zone"}, "t")


@pytest.mark.parametrize(("cursor", "text_search"), [
    (encode_cursor(0, ""), False), (encode_cursor(MAX_MS, "nightly@1#1"), False),
    (encode_cursor(1_700_000_000_000, "", 60_000), True),
    (encode_cursor(MAX_MS, "", MAX_MS), True),
])
def test_run_cursor_param_takes_the_cursors_the_api_writes(cursor: str, text_search: bool
                                                            ) -> None:
    assert run_cursor_param({"cursor": cursor}, "cursor", text_search=text_search) == cursor


@pytest.mark.parametrize(("cursor", "text_search"), [
    (encode_cursor(-1, ""), False), (encode_cursor(-(10**30), ""), False),
    (encode_cursor(MAX_MS + 1, ""), False), (encode_cursor(10**30, ""), True),
    (encode_cursor(1, "\ud800"), False), (encode_cursor(1, "", 10**30), True),
    (encode_cursor(1, "", 60_000), False), ("garbage", False),
])
def test_run_cursor_param_refuses_what_the_api_never_wrote(cursor: str, text_search: bool
                                                           ) -> None:
    with pytest.raises(ValidationError) as exc:
        run_cursor_param({"cursor": cursor}, "cursor", text_search=text_search)
    assert [p.field for p in exc.value.problems] == ["cursor"]
