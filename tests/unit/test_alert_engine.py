"""The alert engine's decisions, as tables of events and the alerts they give."""

from dataclasses import replace

import pytest

from cronswarm.alerts import JobAlertState, Notice, check_dead_man, on_problem, on_success
from cronswarm.common import AlertKind, AlertRule, RunRecord, RunStatus

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ALL = AlertRule()


def run(second: float, status: RunStatus, *, job: str = "j", attempt: int = 1) -> RunRecord:
    tick = T0 + int(second) * 1000
    return RunRecord(run_id=f"{job}@{tick}", job=job, tick=tick, attempt=attempt, worker="w1",
                     summary="false", status=status, started=tick + 10,
                     ended=T0 + int(second * 1000) + 50, exit_code=1,
                     error="exit code 1" if status is RunStatus.FAILED else None)


def feed(events: list[tuple[float, RunStatus]], rule: AlertRule = ALL, silence: float = 20
         ) -> tuple[JobAlertState, list[Notice]]:
    state = JobAlertState("j")
    notices = []
    for second, status in events:
        record = run(second, status)
        if status is RunStatus.SUCCEEDED:
            state, notice = on_success(state, record, rule)
        else:
            state, notice = on_problem(state, record, rule, silence)
        if notice is not None:
            notices.append(notice)
    return state, notices


def seconds_of(notices: list[Notice]) -> list[tuple[str, float]]:
    return [(n.kind.value, (n.at - T0 - 50) / 1000) for n in notices]


@pytest.mark.parametrize(("silence", "alerts"), [
    (20, [0, 20, 40]),
    (25, [0, 25, 50]),
    (30, [0, 30]),
    (60, [0]),
    (1, list(range(60))),
])
def test_a_job_failing_every_second_for_a_minute_alerts_once_per_window(
        silence: float, alerts: list[int]) -> None:
    failures = [(float(s), RunStatus.FAILED) for s in range(60)]
    state, notices = feed(failures, silence=silence)
    assert seconds_of(notices) == [("failure", float(s)) for s in alerts]
    # Each alert after the first says how many failures were not sent.
    assert [n.suppressed for n in notices[1:]] == [silence - 1] * (len(alerts) - 1)
    assert state.failing and state.alerted
    assert state.suppressed == 59 - alerts[-1]
    # Then it succeeds: one recovery, which counts the failures not alerted.
    state, recovery = on_success(state, run(60, RunStatus.SUCCEEDED), ALL)
    assert recovery is not None and recovery.kind is AlertKind.RECOVERY
    assert f"{59 - alerts[-1]} problem(s)" in recovery.text or alerts[-1] == 59
    assert not state.failing and not state.alerted and state.suppressed == 0


@pytest.mark.parametrize(("events", "expected"), [
    # one failure, then success: alert and recovery
    ([(0, RunStatus.FAILED), (1, RunStatus.SUCCEEDED)], [("failure", 0), ("recovery", 1)]),
    # timeouts and lost runs are problems too, each alerted under its own kind
    ([(0, RunStatus.TIMEOUT), (30, RunStatus.LOST), (31, RunStatus.SUCCEEDED)],
     [("timeout", 0), ("lost", 30), ("recovery", 31)]),
    # success with nothing open: nothing
    ([(0, RunStatus.SUCCEEDED), (1, RunStatus.SUCCEEDED)], []),
    # flapping: one problem alert and one recovery per window at most
    ([(s, RunStatus.FAILED if s % 2 == 0 else RunStatus.SUCCEEDED) for s in range(60)],
     [("failure", 0), ("recovery", 1), ("failure", 20), ("recovery", 21),
      ("failure", 40), ("recovery", 41)]),
    # a failure inside the window after a recovery: counted, no alert, so no recovery
    ([(0, RunStatus.FAILED), (1, RunStatus.SUCCEEDED), (5, RunStatus.FAILED),
      (6, RunStatus.SUCCEEDED)], [("failure", 0), ("recovery", 1)]),
    # killed and skipped runs are not problems
    ([(0, RunStatus.KILLED), (1, RunStatus.SKIPPED)], []),
])
def test_event_tables(events: list[tuple[float, RunStatus]],
                      expected: list[tuple[str, float]]) -> None:
    assert seconds_of(feed(events)[1]) == expected


def test_a_success_older_than_the_last_problem_does_not_recover() -> None:
    state, _ = feed([(0, RunStatus.FAILED), (5, RunStatus.FAILED)])
    state, notice = on_success(state, run(3, RunStatus.SUCCEEDED), ALL)
    assert notice is None and state.failing
    # nor does the same success twice
    state, notice = on_success(state, run(6, RunStatus.SUCCEEDED), ALL)
    assert notice is not None
    again, notice = on_success(state, run(6, RunStatus.SUCCEEDED), ALL)
    assert notice is None and again == state


@pytest.mark.parametrize(("on", "expected"), [
    ([], []),
    (["lost"], []),
    (["failure"], [("failure", 0)]),
    (["failure", "recovery"], [("failure", 0), ("recovery", 2)]),
    (["recovery"], []),  # nothing alerted, nothing to recover from
])
def test_the_rule_chooses_the_kinds(on: list[str], expected: list[tuple[str, float]]) -> None:
    rule = AlertRule.from_dict({"on": on})
    events = [(0, RunStatus.FAILED), (1, RunStatus.FAILED), (2, RunStatus.SUCCEEDED)]
    assert seconds_of(feed(events, rule)[1]) == expected


def test_notices_say_what_happened() -> None:
    _, [notice] = feed([(0, RunStatus.FAILED)])
    assert notice.event_id == f"failure:j@{T0}#1"
    assert notice.title == "j failed"
    assert "exit code 1" in notice.text
    assert dict(notice.fields)["Exit code"] == "1"
    assert Notice.from_doc(notice.to_doc()) == notice


MINUTE = 60_000


def dead_man(state: JobAlertState, at_ms: int, *, rule: AlertRule = ALL, expect: float = 60,
             enabled: bool = True, silence: float = 600) -> tuple[JobAlertState, Notice | None]:
    return check_dead_man(state, expect_s=expect, enabled=enabled, now=T0 + at_ms, rule=rule,
                          silence_s=silence)


def test_dead_man_alerts_when_overdue_once_per_window_and_recovers() -> None:
    state = JobAlertState("j")
    state, notice = dead_man(state, 0)
    assert notice is None and state.watch_since == T0  # watched from now on
    state, notice = dead_man(state, 59_000)
    assert notice is None
    state, notice = dead_man(state, 61_000)
    assert notice is not None and notice.kind is AlertKind.DEAD_MAN
    assert "none since it was first watched" in notice.text and state.overdue
    state, notice = dead_man(state, 5 * MINUTE)
    assert notice is None  # within the silence window
    state, notice = dead_man(state, 61_000 + 600_000)
    assert notice is not None  # still overdue a window later: again
    success = replace(run(700, RunStatus.SUCCEEDED))
    state, notice = on_success(state, success, ALL)
    assert notice is not None and notice.kind is AlertKind.RECOVERY and not state.overdue
    state, notice = dead_man(state, 710_000)
    assert notice is None and not state.overdue
    state, notice = dead_man(state, 700_050 + 61_000)
    assert notice is not None and "Last success: 2026-01-01 00:11:40 UTC" in notice.text


def test_dead_man_counts_from_the_last_success_and_ignores_paused_or_unwatched_jobs() -> None:
    state = replace(JobAlertState("j"), last_success=T0)
    state, notice = dead_man(state, 59_000)
    assert notice is None
    state, notice = dead_man(state, 70_000, enabled=False)
    assert notice is None and state.watch_since is None
    state, notice = dead_man(state, 80_000)  # resumed: watched from now
    assert notice is None and state.watch_since == T0 + 80_000
    state, notice = dead_man(state, 141_000, rule=AlertRule.from_dict({"on": ["failure"]}))
    assert notice is None and not state.overdue
    state, notice = check_dead_man(state, expect_s=None, enabled=True, now=T0 + 200_000,
                                   rule=ALL, silence_s=600)
    assert notice is None and state.watch_since is None


def test_state_round_trips_through_its_document() -> None:
    state, _ = feed([(0, RunStatus.FAILED), (1, RunStatus.FAILED)])
    assert JobAlertState.from_doc({**state.to_doc(), "_id": "ignored"}) == state
