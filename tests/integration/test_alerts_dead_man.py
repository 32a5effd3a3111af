"""The elected master's dead-man check alerts once on a job that has not
succeeded in time (and a recovery when it does); a delivery that keeps failing
is retried with growing delays, one refused for good is not, and both end
recorded as failed."""

import itertools
from pathlib import Path

from cronswarm.common import Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master._http import LEADER
from tests.apiclient import running_master
from tests.helpers import wait_for_count
from tests.receivers import webhook_channel, webhook_receiver
from tests.swarm import create_job, swarm


async def test_a_job_without_success_in_time_gets_one_dead_man_alert_then_a_recovery(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, admin_token: str,
    tmp_path: Path,
) -> None:
    settings = settings.with_overrides(alert_poll_interval=0.5, dead_man_interval=0.5)
    fixed = tmp_path / "fixed"
    async with (webhook_receiver() as hook,
                running_master(settings, admin_token) as api,
                swarm(settings, logs, 1)):
        resp = await api.call("POST", "/api/alerts/channels", json=webhook_channel(hook))
        assert resp.status == 201, await resp.text()
        await create_job(store, logs, settings, name="backup", schedule="* * * * * *",
                         command=f"test -e {fixed}", expect_success_within=3,
                         alerts={"on": ["dead_man", "recovery"], "channels": ["hook"],
                                 "silence": 600})
        await hook.inbox.wait_for(lambda got: len(got) >= 1, timeout=30)
        # It keeps failing: the next checks find it still overdue, inside the silence.
        assert api.app is not None
        await api.app[LEADER].wait_duty("dead-man", 4)
        failed_before_fix = await logs.runs.count_documents({"job": "backup",
                                                             "status": "failed"})
        fixed.touch()
        await hook.inbox.wait_for(lambda got: len(got) >= 2, timeout=30)
        await api.app[LEADER].wait_duty("dead-man", 4)  # and nothing more comes
        deliveries = (await (await api.call("GET", "/api/alerts?job=backup")).json())["alerts"]
    assert [b["kind"] for b in hook.bodies] == ["dead_man", "recovery"]
    dead_man = hook.bodies[0]
    assert dead_man["job"] == "backup"
    assert "has not succeeded for" in dead_man["text"]
    assert "expected to succeed within 3s" in dead_man["text"]
    assert failed_before_fix >= 3  # it was failing all along, not merely quiet
    assert sorted((d["kind"], d["status"]) for d in deliveries) == [
        ("dead_man", "sent"), ("recovery", "sent")]


async def test_deliveries_that_fail_are_retried_with_backoff_or_not_at_all_and_recorded(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, admin_token: str,
) -> None:
    settings = settings.with_overrides(alert_poll_interval=0.5, alert_attempts=4,
                                       alert_retry_delay=0.3)
    async with (webhook_receiver(fail_first=100) as busy,
                webhook_receiver(fail_first=100, fail_status=404) as gone,
                running_master(settings, admin_token) as api,
                swarm(settings, logs, 1)):
        for name, hook in (("busy", busy), ("gone", gone)):
            resp = await api.call("POST", "/api/alerts/channels",
                                  json=webhook_channel(hook, name=name))
            assert resp.status == 201, await resp.text()
        await create_job(store, logs, settings, name="broken", schedule="* * * * * *",
                         command="false", alerts={"on": ["failure"], "channels": ["busy", "gone"],
                                                  "silence": 600})

        async def finished() -> list[dict]:
            resp = await api.call("GET", "/api/alerts?job=broken")
            return [d for d in (await resp.json())["alerts"] if d["status"] != "pending"]

        await busy.tried.wait_for(lambda got: len(got) >= 4, timeout=30)
        await wait_for_count(logs.db["alerts"], {"job": "broken", "status": "failed"},
                             lambda n: n >= 2, timeout=30)
        deliveries = await finished()
        await wait_for_count(logs.runs, {"job": "broken", "status": "failed"},
                             lambda n: n >= 3, timeout=30)
    outcomes = sorted((d["channel"], d["status"], d["attempts"]) for d in deliveries)
    assert outcomes == [("busy", "failed", 4), ("gone", "failed", 1)]
    errors = {d["channel"]: d["error"] for d in deliveries}
    assert "500" in errors["busy"] and "404" in errors["gone"]
    assert len(busy.requests) == 4 and len(gone.requests) == 1  # one alert per silence
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(busy.requests)]
    # 0.3, 0.6, 1.2 s (doubling, up to 10 % jitter)
    assert all(0.3 * 2 ** i - 0.05 <= gap < 0.3 * 2 ** i * 1.1 + 0.5
               for i, gap in enumerate(gaps)), gaps
