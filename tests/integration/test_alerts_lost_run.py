"""A worker killed -9 mid-run: its run becomes lost, the leader sends one alert to a
local webhook and one email to a local SMTP server (STARTTLS, AUTH) and, as the
job's retry policy allows, has the next attempt run on the surviving worker; the
master's metrics count what MongoDB holds; no secret reaches the log."""

import asyncio
import contextlib
import hashlib
import hmac
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from cronswarm.master._http import LEADER
from tests import procs
from tests.apiclient import running_master
from tests.helpers import wait_for_count
from tests.integration.test_swarm_kill9 import job_processes, kill_9_the_runner
from tests.receivers import email_channel, smtp_receiver, webhook_channel, webhook_receiver
from tests.swarm import create_job

SECRETS = ("pw-5ecret", "tok-5ecret", "hdr-5ecret", "sign-5ecret")


@pytest.mark.slow
async def test_kill_9_gives_one_lost_run_one_webhook_and_one_email(
    settings: Settings, store: EtcdStore, logs: MongoLogStore, keys: Keyspace,
    admin_token: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings.with_overrides(alert_poll_interval=0.5, cluster_name="test-cluster")
    workers = {wid: await procs.start("worker", settings, CRONSWARM_WORKER_ID=wid)
               for wid in ("k1", "k2")}
    try:
        async with (webhook_receiver() as hook, smtp_receiver(tmp_path) as mail,
                    running_master(settings, admin_token) as api):
            for channel in (webhook_channel(hook), email_channel(mail)):
                resp = await api.call("POST", "/api/alerts/channels", json=channel)
                assert resp.status == 201, await resp.text()
            for proc in workers.values():
                await proc.wait_for_line("ready with")
            # Run once (not on a schedule); its policy retries a lost attempt elsewhere.
            await create_job(store, logs, settings, name="long", schedule="0 0 1 1 *",
                             command="sleep 30", overlap="forbid",
                             retry={"attempts": 2, "any_worker": True, "delay": 0.5},
                             alerts={"on": ["lost", "failure", "recovery"],
                                     "channels": ["hook", "mail"]})
            resp = await api.call("POST", "/api/jobs/long/run")
            assert resp.status == 202, await resp.text()
            run_id = (await resp.json())["run_id"]
            await wait_for_count(logs.runs, {"_id": f"{run_id}#1", "status": "running"},
                                 lambda n: n == 1, timeout=30)
            victim_run, survivor = await kill_9_the_runner(store, keys, "long", workers)
            victim = victim_run["worker"]
            record_id = f"{run_id}#1"
            await wait_for_count(logs.runs, {"_id": record_id, "status": "lost"},
                                 lambda n: n == 1, timeout=30)
            # The leader asks for attempt 2, which the survivor takes.
            await wait_for_count(logs.runs, {"_id": f"{run_id}#2", "status": "running",
                                             "worker": survivor, "trigger": "retry"},
                                 lambda n: n == 1, timeout=30)

            await hook.inbox.wait_for(lambda got: len(got) >= 1, timeout=30)
            await mail.inbox.wait_for(lambda got: len(got) >= 1, timeout=30)
            # Two more rounds of the leader's alert duty: nothing else arrives.
            assert api.app is not None
            async with asyncio.timeout(30):
                await api.app[LEADER].wait_duty("alerts", 2)
                await api.app[LEADER].wait_duty("lost-run-sweep", 1)

            assert len(hook.inbox.items) == 1 and len(mail.inbox.items) == 1
            request = hook.inbox.items[0]
            body = request["body"]
            assert body["kind"] == "lost" and body["job"] == "long"
            assert body["record_id"] == record_id and body["cluster"] == "test-cluster"
            assert body["fields"]["Worker"] == victim
            assert request["headers"]["Authorization"] == "Bearer hdr-5ecret-Lm47"
            expected = hmac.new(b"sign-5ecret-Pq55", request["raw"], hashlib.sha256).hexdigest()
            assert request["headers"]["X-Cronswarm-Signature"] == f"sha256={expected}"
            letter = mail.inbox.items[0]
            assert letter["tls"] and mail.logins == [("cron", True)]
            assert letter["to"] == ["ops@example.com"]
            message = letter["message"]
            assert message["Subject"] == "[test-cluster] LOST: long was lost"
            assert record_id in message.get_content()

            resp = await api.call("GET", "/api/alerts?job=long")
            deliveries = (await resp.json())["alerts"]
            assert sorted((d["channel"], d["status"], d["attempts"]) for d in deliveries) == [
                ("hook", "sent", 1), ("mail", "sent", 1)]

            # The master's counters match MongoDB.
            resp = await api.as_token(None).call("GET", "/metrics")
            text = await resp.text()
            values = {(s.name, tuple(sorted(s.labels.items()))): s.value
                      for f in text_string_to_metric_families(text) for s in f.samples}
            lost_in_mongo = await logs.runs.count_documents({"status": "lost"})
            assert values[("cronswarm_runs_lost_total", ())] == lost_in_mongo == 1
            sent = await logs.db["alerts"].count_documents({"status": "sent"})
            assert sent == 2
            assert values[("cronswarm_alerts_sent_total", (("channel_type", "webhook"),))] == 1
            assert values[("cronswarm_alerts_sent_total", (("channel_type", "email"),))] == 1
            assert values[("cronswarm_alerts_total", (("kind", "lost"),))] == 1
            assert values[("cronswarm_lost_runs_retried_total", ())] == 1
            for secret in SECRETS:
                assert secret not in text
    finally:
        await asyncio.gather(*(p.stop() for p in workers.values()))
        for orphan in job_processes("long"):  # the dead worker's job
            with contextlib.suppress(Exception):
                orphan.kill()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "alert lost:" in logged
    for secret in SECRETS:
        assert secret not in logged
