"""The alert engine's decisions: pure functions of a job's alert state, an event
and the time (epoch ms), never reading a clock or touching the network.

Per job, one state:

* a problem (a run ``failed``, ``timeout`` or ``lost``) opens an episode; it
  alerts unless another problem alert went out less than the silence window
  ago, in which case it is only counted (``suppressed``), and the next alert
  says how many were not sent. So a job failing every second sends one alert
  per window, and a job flapping between failure and success cannot send more
  either;
* a success newer than the episode's last problem closes it, with a
  ``recovery`` alert if a problem alert was sent in that episode;
* dead-man: a job with ``expect_success_within`` that has not succeeded
  within that many seconds (counted from its last success, or from when the
  check started watching it) alerts, again once per silence window while it
  stays overdue, and recovers once it succeeds.

A kind the job's rule does not list changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..common import AlertKind, AlertRule, RunRecord, RunStatus, from_ms

PROBLEM_STATUSES = {RunStatus.FAILED: AlertKind.FAILURE, RunStatus.TIMEOUT: AlertKind.TIMEOUT,
                    RunStatus.LOST: AlertKind.LOST}
_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class JobAlertState:
    job: str
    failing: bool = False  # an episode of problems is open
    alerted: bool = False  # a problem alert went out in this episode
    last_problem: int | None = None  # ended of the newest problem seen
    last_alert: int | None = None  # when the last problem alert was decided
    suppressed: int = 0  # problems not alerted since the last alert
    overdue: bool = False  # the dead-man alert went out; no success since
    dead_man_alert: int | None = None
    watch_since: int | None = None  # when the dead-man check started watching the job
    last_success: int | None = None  # ended of the newest success seen

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> JobAlertState:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass(frozen=True, slots=True)
class Notice:
    """One alert to send: what happened, in words and in fields."""

    event_id: str  # unique per event: deliveries are deduplicated on it
    kind: AlertKind
    job: str
    at: int  # epoch ms of the event
    title: str
    text: str
    fields: tuple[tuple[str, str], ...] = ()
    record_id: str | None = None
    suppressed: int = 0

    def to_doc(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = self.kind.value
        out["fields"] = [list(f) for f in self.fields]
        return out

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Notice:
        return cls(str(doc["event_id"]), AlertKind(doc["kind"]), str(doc["job"]),
                   int(doc["at"]), str(doc["title"]), str(doc["text"]),
                   tuple((str(a), str(b)) for a, b in doc.get("fields") or ()),
                   doc.get("record_id"), int(doc.get("suppressed") or 0))


def iso(ms: int) -> str:
    return from_ms(ms).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration_words(seconds: float) -> str:
    """``90`` -> ``1m 30s``; ``7200`` -> ``2h``."""
    total = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return " ".join(parts[:2]) or "0s"


def _problem_notice(kind: AlertKind, run: RunRecord, suppressed: int, silence_s: float
                    ) -> Notice:
    ended = run.ended or 0
    what = {AlertKind.FAILURE: "failed", AlertKind.TIMEOUT: "timed out",
            AlertKind.LOST: "was lost"}[kind]
    text = f"Run {run.run_id} (attempt {run.attempt}) of job {run.job} {what}"
    text += f" on worker {run.worker}." if run.worker else "."
    fields = [("Job", run.job), ("Run", run.record_id), ("Status", run.status.value),
              ("Worker", run.worker or "-"), ("Ended", iso(ended))]
    if run.exit_code is not None:
        fields.append(("Exit code", str(run.exit_code)))
    if run.http_status is not None:
        fields.append(("HTTP status", str(run.http_status)))
    if run.error:
        error = run.error[:_ERROR_CHARS]
        text += f" {error}"
        fields.append(("Error", error))
    if suppressed:
        note = (f"{suppressed} more problem(s) since the last alert were not sent "
                f"(silence window {duration_words(silence_s)}).")
        text += f" {note}"
        fields.append(("Not alerted", str(suppressed)))
    return Notice(f"{kind.value}:{run.record_id}", kind, run.job, ended,
                  f"{run.job} {what}", text, tuple(fields), run.record_id, suppressed)


def on_problem(state: JobAlertState, run: RunRecord, rule: AlertRule, silence_s: float
               ) -> tuple[JobAlertState, Notice | None]:
    """A run of the job ended ``failed``, ``timeout`` or ``lost``."""
    kind = PROBLEM_STATUSES.get(run.status)
    if kind is None or not rule.wants(kind) or run.ended is None:
        return state, None
    at = run.ended
    newest = at if state.last_problem is None else max(state.last_problem, at)
    due = state.last_alert is None or at - state.last_alert >= silence_s * 1000
    if not due:
        return replace(state, failing=True, last_problem=newest,
                       suppressed=state.suppressed + 1), None
    notice = _problem_notice(kind, run, state.suppressed, silence_s)
    return replace(state, failing=True, alerted=True, last_problem=newest, last_alert=at,
                   suppressed=0), notice


def on_success(state: JobAlertState, run: RunRecord, rule: AlertRule
               ) -> tuple[JobAlertState, Notice | None]:
    """The job succeeded (``run`` is its newest success); older news changes nothing."""
    at = run.ended
    if at is None or (state.last_success is not None and at <= state.last_success):
        return state, None
    closes_episode = state.failing and (state.last_problem is None or at > state.last_problem)
    closes_dead_man = state.overdue
    new = replace(state, last_success=at)
    if closes_episode:
        new = replace(new, failing=False, alerted=False, suppressed=0)
    if closes_dead_man:
        new = replace(new, overdue=False, dead_man_alert=None)
    was_alerted = (closes_episode and state.alerted) or closes_dead_man
    if not was_alerted or not rule.wants(AlertKind.RECOVERY):
        return new, None
    text = (f"Job {run.job} succeeded again: run {run.run_id} (attempt {run.attempt}) "
            f"on worker {run.worker or '-'} at {iso(at)}.")
    if closes_episode and state.suppressed:
        text += f" {state.suppressed} problem(s) since the last alert were not sent."
    fields = (("Job", run.job), ("Run", run.record_id), ("Status", run.status.value),
              ("Worker", run.worker or "-"), ("Ended", iso(at)))
    return new, Notice(f"recovery:{run.record_id}", AlertKind.RECOVERY, run.job, at,
                       f"{run.job} recovered", text, fields, run.record_id,
                       state.suppressed if closes_episode else 0)


def check_dead_man(state: JobAlertState, *, expect_s: float | None, enabled: bool,
                   now: int, rule: AlertRule, silence_s: float
                   ) -> tuple[JobAlertState, Notice | None]:
    """Whether the job has gone too long without a success.

    ``expect_s`` is the job's ``expect_success_within`` (None: not watched).
    The time without success counts from the newest success known
    (``state.last_success``, fed by ``on_success``) or, if later, from when
    the job was first watched (a new, changed or resumed job is not overdue
    at once).
    """
    if expect_s is None or not enabled:
        if state.watch_since is None and not state.overdue:
            return state, None
        return replace(state, overdue=False, dead_man_alert=None, watch_since=None), None
    watch_since = state.watch_since if state.watch_since is not None else now
    watched = replace(state, watch_since=watch_since)
    reference = max(state.last_success or 0, watch_since)
    late_ms = now - reference
    if late_ms <= expect_s * 1000:
        return (state if state.watch_since is not None else watched), None
    due = not state.overdue or state.dead_man_alert is None or (
        now - state.dead_man_alert >= silence_s * 1000)
    if not rule.wants(AlertKind.DEAD_MAN) or not due:
        return (state if state.watch_since is not None else watched), None
    since = ("none since it was first watched" if state.last_success is None
             else iso(state.last_success))
    text = (f"Job {state.job} has not succeeded for {duration_words(late_ms / 1000)}; "
            f"it is expected to succeed within {duration_words(expect_s)}. "
            f"Last success: {since}.")
    fields = (("Job", state.job), ("Expected within", duration_words(expect_s)),
              ("Last success", since), ("Checked", iso(now)))
    notice = Notice(f"dead_man:{state.job}:{now}", AlertKind.DEAD_MAN, state.job, now,
                    f"{state.job} has not succeeded in time", text, fields)
    return replace(watched, overdue=True, dead_man_alert=now), notice
