"""parse_record_id: the one parser of record ids that users send."""

import pytest

from cronswarm.common import MAX_TICK_MS, RecordId, ValidationError, parse_record_id


@pytest.mark.parametrize(("text", "parsed"), [
    ("nightly@1", RecordId("nightly", 1, None)),
    ("nightly@1#1", RecordId("nightly", 1, 1)),
    ("a.b-c_d@1700000000000#1000", RecordId("a.b-c_d", 1700000000000, 1000)),
    ("x@y@5#2", None),  # '@' is not a name character
    (f"nightly@{MAX_TICK_MS - 1}", RecordId("nightly", MAX_TICK_MS - 1, None)),
])
def test_record_ids(text: str, parsed: RecordId | None) -> None:
    if parsed is None:
        with pytest.raises(ValidationError):
            parse_record_id(text)
        return
    assert parse_record_id(text) == parsed
    assert str(parsed) == text


def test_a_padded_record_id_reads_as_its_canonical_form() -> None:
    assert str(parse_record_id("nightly@0001#01")) == "nightly@1#1"


@pytest.mark.parametrize("text", [
    "nightly", "nightly@", "@1", "nightly@1#", "nightly@1#0", "nightly@1#1001",
    "nightly@1#²", "nightly@1#\uff11", "nightly@\uff11",  # superscript, fullwidth digits
    "nightly@-1", "nightly@1#-1", "nightly@1# 1",
    "nightly\n@1", "nightly@1\n", "nightly@1#1\n", "../x@1", f"nightly@{MAX_TICK_MS}",
    "nightly@" + "9" * 5000, "nightly@1#" + "1" * 5000,
])
def test_refused_record_ids_name_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_record_id(text)
    assert [p.field for p in exc.value.problems] == ["record_id"]
