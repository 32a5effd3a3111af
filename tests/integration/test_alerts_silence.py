"""A job failing every second for a minute sends one alert per silence window (and
a recovery when it succeeds again); a delivery that fails is retried and the
outcome recorded."""

import itertools
from pathlib import Path

import pytest

from cronswarm.common import Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master._http import LEADER
from tests.apiclient import running_master
from tests.helpers import wait_for_count
from tests.receivers import webhook_channel, webhook_receiver
from tests.swarm import create_job, swarm

SILENCE = 25  # seconds: a minute of failures is 3 windows (at 0, 25 and 50 s)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_job_failing_every_second_for_a_minute_alerts_once_per_window(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, admin_token: str,
    tmp_path: Path,
) -> None:
    settings = settings.with_overrides(alert_poll_interval=0.5, alert_retry_delay=0.5)
    fixed = tmp_path / "fixed"
    async with (webhook_receiver(fail_first=1) as hook,
                running_master(settings, admin_token) as api,
                swarm(settings, logs, 1)):
        resp = await api.call("POST", "/api/alerts/channels", json=webhook_channel(hook))
        assert resp.status == 201, await resp.text()
        await create_job(store, logs, settings, name="flaky", schedule="* * * * * *",
                         command=f"test -e {fixed}",
                         alerts={"on": ["failure", "recovery"], "channels": ["hook"],
                                 "silence": SILENCE})
        await wait_for_count(logs.runs, {"job": "flaky", "status": "failed"},
                             lambda n: n >= 60, timeout=150)
        fixed.touch()  # from now on it succeeds
        await hook.inbox.wait_for(
            lambda got: any(i["body"]["kind"] == "recovery" for i in got), timeout=30)
        assert api.app is not None
        await api.app[LEADER].wait_duty("alerts", 3)  # nothing more comes
        failed = await logs.runs.count_documents({"job": "flaky", "status": "failed"})
        resp = await api.call("GET", "/api/alerts?job=flaky")
        deliveries = (await resp.json())["alerts"]

    bodies = hook.bodies
    assert [b["kind"] for b in bodies] == ["failure", "failure", "failure", "recovery"]
    times = [b["at"] for b in bodies[:3]]
    assert all(b - a >= SILENCE * 1000 for a, b in itertools.pairwise(times)), times
    assert times[2] - times[0] < 3 * SILENCE * 1000
    # Every failure is either alerted or counted in the next alert (or the recovery).
    assert 3 + sum(b["suppressed"] for b in bodies[1:]) == failed
    # (a window holds SILENCE ticks: the alerted one and about SILENCE - 1 others)
    assert all(SILENCE - 3 <= b["suppressed"] <= SILENCE for b in bodies[1:3]), bodies
    # The first delivery failed once (HTTP 500) and went through on its retry.
    assert len(hook.requests) == 5
    outcomes = sorted((d["kind"], d["status"], d["attempts"]) for d in deliveries)
    assert outcomes == [("failure", "sent", 1), ("failure", "sent", 1),
                        ("failure", "sent", 2), ("recovery", "sent", 1)]
