"""unencodable_text: the one check that a JSON document is text through and through."""

import json

import pytest

from cronswarm.common import escaped_text, unencodable_text

LONE = "\ud800"


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (LONE, "body"),
        ({"command": f"echo {LONE}"}, "command"),
        ({"http": {"headers": {"X-A": LONE}}}, "http.headers.X-A"),
        ({"recipients": ["a@b.org", f"{LONE}@b.org"]}, "recipients[1]"),
        ({"env": {f"A{LONE}": "1"}}, "env.A\\ud800"),
        ([[{"x": [LONE]}]], "[0][0].x[0]"),
    ],
)
def test_the_first_unencodable_string_is_named(document: object, field: str) -> None:
    problem = unencodable_text(document)
    assert problem is not None and problem.field == field
    assert "lone surrogate (U+D800)" in problem.reason
    json.dumps(problem.as_dict(), ensure_ascii=False).encode()  # the answer itself is text


@pytest.mark.parametrize("document", [
    None, 1, 2.5, True, "", "échec ✓ 🙂", {"a": ["b", {"c": "\U0001f642"}]}, [],
])
def test_text_passes(document: object) -> None:
    assert unencodable_text(document) is None


def test_a_document_nested_as_deep_as_the_parser_allows_is_walked() -> None:
    deep = json.loads("[" * 900 + json.dumps(LONE) + "]" * 900)
    problem = unencodable_text(deep)
    assert problem is not None and problem.field == "[0]" * 900


def test_escaped_text_escapes_only_what_utf8_cannot_hold() -> None:
    document = {"command": f"echo {LONE} é", f"k{LONE}": [LONE, 1, None], "n": 2}
    escaped = escaped_text(document)
    assert escaped == {"command": "echo \\ud800 é", "k\\ud800": ["\\ud800", 1, None], "n": 2}
    assert unencodable_text(escaped) is None
    assert escaped_text({"a": "é"}) == {"a": "é"}
