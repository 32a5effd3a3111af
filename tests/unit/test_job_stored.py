"""The common-shape decoder of stored jobs agrees with ``Job.from_dict``.

``Job.from_json`` decodes a stored job of the common shape in one pass
(``_common_stored``) and everything else through ``from_dict``: on every edge
value of every field, the one pass gives ``from_dict``'s job or steps aside.
"""

import json
import random
from typing import Any

import pytest

from cronswarm.common import Job, ValidationError
from cronswarm.common._job import _COMMON_KEYS, _common_stored

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
                True, "10"],
    "kill_grace": [5.0, 0.0, 3600.0, 3600.5, -0.5, 5, None, False, float("nan")],
    "overlap": ["forbid", "allow", "replace", "FORBID", None, 1],
    "misfire": ["skip", "run_latest", "run_all", "latest", None],
    "misfire_window": [60.0, 0.0, 604800.0, 604801.0, 60, -1.0, None, float("inf")],
    "retry": [BASE["retry"], {**BASE["retry"], "attempts": 3}, {**BASE["retry"], "delay": 1},
              {}, None, "x"],
    "priority": [0, 1000, -1000, 1001, -1001, 1.0, True, None, "1"],
    "targets": [{}, {"zone": "a"}, None, [], "x"],
}


def full(data: dict[str, Any]) -> Job | None:
    try:
        return Job.from_dict(data, stored=True)
    except ValidationError:
        return None


def agree(data: dict[str, Any]) -> None:
    fast, slow = _common_stored(data), full(data)
    if fast is not None:
        assert slow is not None, data
        assert fast == slow and fast.to_json() == slow.to_json(), data
        assert all(type(getattr(fast, f)) is type(getattr(slow, f)) for f in Job.FIELDS)


def test_the_edges_cover_every_common_key() -> None:
    assert set(EDGES) == _COMMON_KEYS == set(BASE)


@pytest.mark.parametrize("key", sorted(EDGES))
def test_each_edge_value_of_each_field_decodes_as_from_dict_does(key: str) -> None:
    for value in EDGES[key]:
        agree({**BASE, key: value})


def test_random_combinations_of_edge_values_decode_as_from_dict_does() -> None:
    rng = random.Random(7)
    taken = 0
    for _ in range(3000):
        data = {key: rng.choice(EDGES[key]) if rng.random() < 0.3 else BASE[key]
                for key in EDGES}
        agree(data)
        taken += _common_stored(data) is not None
    assert taken > 0  # the one pass was exercised, not only skipped


def test_the_common_shape_takes_the_one_pass_and_others_step_aside() -> None:
    assert _common_stored(dict(BASE)) == Job.from_dict(BASE, stored=True)
    for extra in ({"env": {"A": "1"}}, {"shell": "/bin/bash"}, {"unknown": 1}):
        assert _common_stored({**BASE, **extra}) is None
    assert _common_stored({k: v for k, v in BASE.items() if k != "targets"}) is None


def test_from_json_gives_the_same_job_either_way() -> None:
    common = Job.from_dict({"name": "a", "command": "x", "schedule": "*/5 * * * *",
                            "timezone": "Europe/Paris", "timeout": 30})
    other = Job.from_dict({"name": "b", "command": "x", "schedule": "0 * * * *",
                           "env": {"A": "1"}, "retry": {"attempts": 2}})
    for job in (common, other):
        assert Job.from_json(job.to_json()) == job
    with pytest.raises(ValidationError):
        Job.from_json(json.dumps({**BASE, "priority": 5000}))
