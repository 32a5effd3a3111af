"""The common-shape decoder of stored jobs agrees with ``Job.from_dict``.

``Job.from_json`` decodes a stored job of the common shape in one pass
(msgspec into ``CommonShape``, then ``_common_stored``) and everything else
through ``json.loads`` and ``from_dict``: on every edge value of every field,
and on odd JSON texts, the one pass gives ``from_dict``'s job or steps aside.
"""

import json
import random
from typing import Any

import pytest

from cronswarm.common import Job, ValidationError
from cronswarm.common._job import _common_stored
from cronswarm.common._job_stored import COMMON_KEYS, decode_common, slot_filler

BASE = json.loads(Job.from_dict({"name": "nightly", "command": "backup.sh",
                                 "schedule": "0 3 * * *"}).to_json())

EDGES: dict[str, list[Any]] = {
    "name": ["a", "job-1.x_y", "", " ", "a" * 128, "a" * 129, "..", "a/b", "x\x00", 5, None],
    "schedule": ["* * * * * *", "0  3 * * *", "@daily", "0 0 L * *", "61 * * * *", "",
                 "* * *", "x" * 257, 3, None],
    "command": ["true", "", "   ", "a" * 65536, "a" * 65537, "a\x00b", 1, None, ["x"]],
    "timezone": ["UTC", "Europe/Paris", "Mars/Base", "", "../etc", 0, None],
    "description": ["", "nightly backup", "x" * 1024, "x" * 1025, "\x00", None, 7],
    "enabled": [True, False, 0, 1, "true", None],
    "timeout": [None, 0.5, 0.0, -1.0, 604800.0, 604800.5, 10, float("inf"), float("nan"),
                True, "10", 10**30],
    "kill_grace": [5.0, 0.0, 3600.0, 3600.5, -0.5, 5, None, False, float("nan")],
    "overlap": ["forbid", "allow", "replace", "FORBID", None, 1],
    "misfire": ["skip", "run_latest", "run_all", "latest", None],
    "misfire_window": [60.0, 0.0, 604800.0, 604801.0, 60, -1.0, None, float("inf")],
    "retry": [BASE["retry"], {**BASE["retry"], "attempts": 3}, {**BASE["retry"], "delay": 1},
              {}, None, "x"],
    "priority": [0, 1000, -1000, 1001, -1001, 1.0, True, None, "1", 2**70],
    "targets": [{}, {"zone": "a"}, None, [], "x"],
}


def enc(data: object) -> bytes:
    """As ``Job.to_json`` writes."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def fast(raw: bytes) -> Job | None:
    shape = decode_common(raw)
    return None if shape is None else _common_stored(shape)


def slow(raw: bytes) -> Job | None:
    try:
        return Job.from_dict(json.loads(raw), stored=True)
    except (ValidationError, ValueError):
        return None


def agree(raw: bytes) -> bool:
    """Both ways give the same job (or the one pass steps aside); True if it did not."""
    one, other = fast(raw), slow(raw)
    if one is not None:
        assert other is not None, raw
        assert one == other and one.to_json() == other.to_json(), raw
        assert all(type(getattr(one, f)) is type(getattr(other, f)) for f in Job.FIELDS)
    if other is None:
        with pytest.raises(ValidationError):
            Job.from_json(raw)
    else:
        assert Job.from_json(raw) == other
    return one is not None


def test_the_edges_cover_every_common_key() -> None:
    assert set(EDGES) == COMMON_KEYS == set(BASE)


@pytest.mark.parametrize("key", sorted(EDGES))
def test_each_edge_value_of_each_field_decodes_as_from_dict_does(key: str) -> None:
    for value in EDGES[key]:
        agree(enc({**BASE, key: value}))


def test_random_combinations_of_edge_values_decode_as_from_dict_does() -> None:
    rng = random.Random(7)
    taken = 0
    for _ in range(3000):
        data = {key: rng.choice(EDGES[key]) if rng.random() < 0.3 else BASE[key]
                for key in EDGES}
        taken += agree(enc(data))
    assert taken > 0  # the one pass was exercised, not only skipped


def test_odd_json_texts_decode_as_json_loads_and_from_dict_do() -> None:
    text = enc(BASE).decode()
    odd = [
        json.dumps(BASE),  # other spacing: the slow way, the same job
        "\ufeff" + text,  # byte-order mark: json.loads takes it, msgspec does not
        text.replace('"timeout":null', '"timeout":NaN'),
        text.replace('"timeout":null', '"timeout":Infinity'),
        text.replace('"name":"nightly"', '"name":"other","name":"nightly"'),  # last wins
        text.replace('"nightly"', '"night\\u006cy"'),
        text.replace('"backup.sh"', '"backup.sh \\ud800"'),  # a lone surrogate
        text.replace('"backup.sh"', '"caf\u00e9.sh"'),
        "  " + text + "\n",
        text + " 1",
        text.replace("{", "[", 1),
        "[]", "null", "",
    ]
    taken = [agree(t.encode()) for t in odd]
    assert taken == [False, False, False, False, True, True, False, True, True,
                     False, False, False, False, False]


def test_the_common_shape_takes_the_one_pass_and_others_step_aside() -> None:
    assert fast(enc(BASE)) == Job.from_dict(BASE, stored=True)
    for extra in ({"env": {"A": "1"}}, {"shell": "/bin/bash"}, {"unknown": 1}):
        assert decode_common(enc({**BASE, **extra})) is None
    assert decode_common(enc({k: v for k, v in BASE.items() if k != "targets"})) is None
    # The same values, written otherwise: the slow way decides.
    assert fast(enc(BASE).replace(b'"attempts":1', b'"attempts":1 ')) is None


def test_a_stored_job_takes_its_name_from_the_key_it_was_read_from() -> None:
    name = "".join(["night", "ly"])  # equal to BASE's name, not the same object
    job = Job.from_json(enc(BASE), stored_as=name)
    assert job.name is name


def test_from_json_gives_the_same_job_either_way() -> None:
    common = Job.from_dict({"name": "a", "command": "x", "schedule": "*/5 * * * *",
                            "timezone": "Europe/Paris", "timeout": 30})
    other = Job.from_dict({"name": "b", "command": "x", "schedule": "0 * * * *",
                           "env": {"A": "1"}, "retry": {"attempts": 2}})
    for job in (common, other):
        assert Job.from_json(job.to_json()) == job
    with pytest.raises(ValidationError):
        Job.from_json(json.dumps({**BASE, "priority": 5000}))


def test_the_slot_filler_builds_what_the_dataclass_would() -> None:
    from dataclasses import dataclass, field

    @dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int = 2
        tags: tuple[str, ...] = field(default_factory=tuple)

    make = slot_filler(Point, ("x",))
    assert make(1) == Point(1) and make(1).tags is Point(1).tags
    with pytest.raises(AttributeError):
        make(1).x = 3  # type: ignore[misc]  # still frozen
    with pytest.raises(TypeError, match="no default"):
        slot_filler(Point, ("y",))

    @dataclass(frozen=True, slots=True)
    class Fresh:
        items: list[int] = field(default_factory=list)

    with pytest.raises(TypeError, match="new values"):
        slot_filler(Fresh, ())
