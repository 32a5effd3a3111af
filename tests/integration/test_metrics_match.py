"""/metrics of real worker processes and of a master parse with prometheus-client's
parser, and their run counters match the runs in MongoDB, worker by worker."""

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from aiohttp import ClientSession
from prometheus_client.parser import text_string_to_metric_families

from cronswarm import __version__
from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore
from cronswarm.logstore import MongoLogStore
from tests import procs
from tests.apiclient import running_master
from tests.helpers import wait_for_count, wait_for_prefix
from tests.swarm import create_job, pause_job

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
STATUSES = ("succeeded", "failed", "timeout", "killed", "skipped")


async def scrape(http: ClientSession, url: str) -> Samples:
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def runs_total(samples: Samples) -> dict[str, float]:
    return {dict(labels)["status"]: value for (name, labels), value in samples.items()
            if name == "cronswarm_runs_total"}


@pytest.mark.slow
async def test_metrics_parse_and_count_the_runs_mongodb_holds(
    settings: Settings, store: EtcdStore, keys: Keyspace, logs: MongoLogStore,
    admin_token: str,
) -> None:
    workers = [await procs.start("worker", settings, CRONSWARM_WORKER_ID=f"mx{i}")
               for i in range(2)]
    try:
        for proc in workers:
            await proc.wait_for_line("ready with")
        jobs = {"ok": "true", "bad": "exit 3", "slow": "sleep 0.5", "late": "sleep 5"}
        for name, command in jobs.items():
            extra: dict[str, Any] = {"timeout": 1.5} if name == "late" else {}
            await create_job(store, logs, settings, name=name, schedule="* * * * * *",
                             command=command, overlap="forbid", **extra)
        # Enough history of every kind: successes, failures, timeouts, skips.
        for status, least in (("succeeded", 8), ("failed", 4), ("timeout", 2)):
            await wait_for_count(logs.runs, {"status": status}, lambda n, k=least: n >= k,
                                 timeout=60)
        for name in jobs:
            await pause_job(store, logs, settings, name)
        await wait_for_prefix(store, keys.running_dir, lambda items: not items, timeout=30)

        registry = {kv.key.rsplit("/", 1)[1]: json.loads(kv.value)
                    for kv in (await store.get_prefix(keys.workers))[0]}
        async with ClientSession() as http:
            scraped = {wid: await scrape(http, f"{registry[wid]['http']}/metrics")
                       for wid in ("mx0", "mx1")}
            async with running_master(settings, admin_token) as api:
                master = await scrape(http, f"{api.base}/metrics")
    finally:
        await asyncio.gather(*(p.stop() for p in workers))

    total: Counter[str] = Counter()
    for wid, samples in scraped.items():
        counted = runs_total(samples)
        assert set(counted) == set(STATUSES)
        assert samples[("cronswarm_build_info", (("id", wid), ("role", "worker"),
                                                 ("version", __version__)))] == 1
        for status in STATUSES:
            # The worker's writer may still be flushing: MongoDB converges to the count.
            await wait_for_count(logs.runs, {"worker": wid, "status": status},
                                 lambda n, want=counted[status]: n == want, timeout=30)
            total[status] += int(counted[status])
        started = samples[("cronswarm_attempts_started_total", ())]
        assert started == sum(v for s, v in counted.items() if s != "skipped")
        lag_count = samples[("cronswarm_fire_lag_seconds_count", ())]
        assert 0 < lag_count <= started
        assert samples[("cronswarm_running_runs", ())] == 0
        won = samples[("cronswarm_claims_total", (("outcome", "won"),))]
        assert won == lag_count  # one first attempt per tick won
        assert samples[("cronswarm_etcd_requests_total", (("kind", "txn"),
                                                          ("role", "worker")))] > 0
    assert total["succeeded"] >= 8 and total["failed"] >= 4 and total["timeout"] >= 2
    assert sum(total.values()) == await logs.runs.count_documents({})
    assert master[("cronswarm_cluster_workers", ())] == 2
    assert master[("cronswarm_runs_lost_total", ())] == 0

