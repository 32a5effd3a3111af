"""A job's alert rule: which events alert, through which channels, how often.

The events (``AlertKind``):

* ``failure``, ``timeout``, ``lost``: a run ended so (a lost run's worker died);
* ``dead_man``: the job has not succeeded within its ``expect_success_within``;
* ``recovery``: the job succeeded again after one of the above was alerted;
* ``clock_offset``: a worker's clock went beyond the maximum offset from the
  cluster's (it claims nothing meanwhile); about no job, so it goes to the
  default channels whatever the jobs' rules say.

A job without a rule alerts on every kind through the cluster's default
channels; ``{"on": []}`` silences it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ._fields import FieldReader
from ._names import check_name

MAX_SILENCE_S = 7 * 86400.0


class AlertKind(StrEnum):
    FAILURE = "failure"
    TIMEOUT = "timeout"
    LOST = "lost"
    DEAD_MAN = "dead_man"
    RECOVERY = "recovery"
    CLOCK_OFFSET = "clock_offset"  # a worker's clock, not a job (default channels)


ALERT_KINDS: tuple[str, ...] = tuple(k.value for k in AlertKind)
PROBLEM_KINDS = frozenset({AlertKind.FAILURE, AlertKind.TIMEOUT, AlertKind.LOST})


@dataclass(frozen=True, slots=True)
class AlertRule:
    on: frozenset[AlertKind] = frozenset(AlertKind)
    channels: tuple[str, ...] = ()  # empty: the channels marked default
    silence: float | None = None  # seconds; None: the cluster's CRONSWARM_ALERT_SILENCE

    FIELDS = ("on", "channels", "silence")

    @classmethod
    def from_dict(cls, data: object, path: str = "alerts") -> AlertRule:
        r = FieldReader(data, path=path, allowed=cls.FIELDS)
        on = frozenset(AlertKind)
        raw_on = r.data.get("on")
        if raw_on is not None:
            if not isinstance(raw_on, list) or not all(isinstance(k, str) for k in raw_on):
                r.fail("on", "must be a list of event kinds")
            elif bad := [k for k in raw_on if k not in ALERT_KINDS]:
                r.fail("on", f"unknown kind {bad[0]!r}; kinds are {', '.join(ALERT_KINDS)}")
            else:
                on = frozenset(AlertKind(k) for k in raw_on)
        channels: tuple[str, ...] = ()
        raw_channels = r.data.get("channels")
        if raw_channels is not None:
            if not isinstance(raw_channels, list) or len(raw_channels) > 16:
                r.fail("channels", "must be a list of at most 16 channel names")
            else:
                for item in raw_channels:
                    reason = check_name(item) if isinstance(item, str) else "not a string"
                    if reason is not None:
                        r.fail("channels", f"{item!r} is not a channel name: {reason}")
                        break
                else:
                    channels = tuple(dict.fromkeys(raw_channels))
        silence = r.number("silence", None, minimum=1, maximum=MAX_SILENCE_S)
        r.finish()
        return cls(on, channels, silence)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"on": [k.value for k in AlertKind if k in self.on],
                               "channels": list(self.channels)}
        if self.silence is not None:
            out["silence"] = self.silence
        return out

    def wants(self, kind: AlertKind) -> bool:
        return kind in self.on


DEFAULT_ALERT_RULE = AlertRule()
