"""Pure pieces of the dashboard: the runs trend chart and the display formats."""

from cronswarm.common import RunRecord, RunStatus
from cronswarm.master._format import fmt_bytes, fmt_duration, fmt_time, iso_time
from cronswarm.master._trend import HEIGHT, MIN_BAR, WIDTH, run_trend

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def run(i: int, status: RunStatus, seconds: float | None) -> RunRecord:
    tick = T0 + i * 1000
    ended = None if seconds is None else tick + round(seconds * 1000)
    return RunRecord(run_id=f"a@{tick}", job="a", tick=tick, attempt=1, worker="w",
                     summary="true", status=status, started=tick, ended=ended)


def test_trend_bars_oldest_left_scaled_to_the_slowest_run() -> None:
    newest_first = [run(3, RunStatus.RUNNING, None), run(2, RunStatus.FAILED, 4.0),
                    run(1, RunStatus.SUCCEEDED, 2.0), run(0, RunStatus.SKIPPED, 0.0)]
    trend = run_trend(newest_first, slots=4)
    assert [b.status for b in trend.bars] == ["skipped", "succeeded", "failed", "running"]
    assert [b.height for b in trend.bars] == [MIN_BAR, HEIGHT / 2, HEIGHT, MIN_BAR]
    assert all(b.y + b.height == HEIGHT for b in trend.bars)
    xs = [b.x for b in trend.bars]
    assert xs == sorted(xs) and xs[-1] + trend.bars[-1].width <= WIDTH
    assert trend.bars[2].label == "2026-01-01 00:00:02 UTC: failed, 4.0 s"
    # Running and skipped runs do not count for the success rate.
    assert (trend.rated, trend.succeeded, trend.success_rate) == (2, 1, 0.5)
    assert trend.summary == "last 4 runs: 1 of 2 succeeded, slowest 4.0 s"


def test_trend_keeps_the_newest_runs_and_right_aligns_few() -> None:
    newest_first = [run(i, RunStatus.SUCCEEDED, 1.0) for i in range(30, 0, -1)]
    trend = run_trend(newest_first, slots=20)
    assert trend.runs == 20 and trend.bars[-1].label.startswith("2026-01-01 00:00:30")
    few = run_trend(newest_first[:2], slots=20)
    assert few.bars[-1].x + few.bars[-1].width <= WIDTH and few.bars[0].x > WIDTH / 2
    empty = run_trend([], slots=20)
    assert empty.bars == () and empty.success_rate is None and empty.summary == "no runs yet"


def test_formats() -> None:
    assert fmt_time(T0) == "2026-01-01 00:00:00 UTC" and fmt_time(None) == "—"
    assert iso_time(T0) == "2026-01-01T00:00:00Z"
    assert [fmt_duration(s) for s in (0.0123, 0.85, 4.24, 185, 7380)] == [
        "12 ms", "850 ms", "4.2 s", "3 min 5 s", "2 h 3 min"]
    assert fmt_duration(None) == "—" and fmt_duration(-0.5) == "-500 ms"
    assert [fmt_bytes(n) for n in (0, 1023, 2048, 5 << 20)] == [
        "0 bytes", "1023 bytes", "2.0 KiB", "5.0 MiB"]


def test_output_shows_head_gap_and_tail() -> None:
    from cronswarm.master._dash_runs import output_of

    whole = run(0, RunStatus.SUCCEEDED, 1.0)
    whole.output, whole.output_bytes = "all of it\n", 10
    assert output_of(whole) == type(output_of(whole))("all of it\n", "", 0)
    cut = run(1, RunStatus.SUCCEEDED, 1.0)
    cut.output, cut.output_tail, cut.truncated, cut.output_bytes = "héad", "tail", True, 1000
    shown = output_of(cut)
    assert (shown.head, shown.tail, shown.skipped) == ("héad", "tail", 1000 - 5 - 4)


def test_audit_changes_name_each_changed_field() -> None:
    from cronswarm.master._dash_admin import changes

    before = {"schedule": "@daily", "priority": 0, "env": {"A": "1"}}
    after = {"schedule": "@hourly", "priority": 0, "timeout": 5.0}
    assert [(c.field, c.before, c.after) for c in changes(before, after)] == [
        ("env", {"A": "1"}, None), ("schedule", "@daily", "@hourly"), ("timeout", None, 5.0)]
    assert changes(None, None) == []


def test_editor_fields_of_a_new_and_an_http_job() -> None:
    from cronswarm.common import Job
    from cronswarm.master._dash_jobs import editor_fields

    new = editor_fields(None)
    assert (new["kind"], new["timezone"], new["overlap"], new["retry"]["attempts"]) == (
        "shell", "UTC", "forbid", 1)
    http = editor_fields(Job.from_dict({
        "name": "ping", "schedule": "* * * * *", "targets": {"zone": "eu"},
        "http": {"url": "https://example.org/", "method": "POST",
                 "headers": {"X-A": "1"}, "expect_status": [200, 204]}}))
    assert (http["kind"], http["http_method"], http["http_headers"], http["http_expect"],
            http["targets_lines"]) == ("http", "POST", "X-A: 1", "200, 204", "zone=eu")
