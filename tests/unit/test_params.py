"""Query-parameter readers: every malformed value is a ValidationError naming it."""

import pytest

from cronswarm.common import ValidationError
from cronswarm.master._params import (
    MAX_MS,
    bool_param,
    choice_param,
    int_param,
    label_param,
    name_param,
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
