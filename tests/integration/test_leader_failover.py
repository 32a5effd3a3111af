"""Three master processes: the leader killed -9 is replaced within the lease TTL and
the duties go on; a leader stopped with SIGTERM hands over at once. Every duty
run is recorded under its term (master, term, first and last duty): terms never
overlap, so two masters never acted as leader at once."""

import asyncio
import itertools
import signal
import sys
import time
from typing import Any

import pytest

from cronswarm.common import Keyspace, Settings
from cronswarm.coord import EtcdStore, leader_of
from cronswarm.devservices import free_port
from cronswarm.logstore import MongoLogStore
from tests import procs
from tests.helpers import wait_for_count, wait_for_prefix


async def next_leader(store: EtcdStore, keys: Keyspace, *, not_in: set[str | None],
                      timeout: float) -> tuple[str, int]:
    """The leader (and term) once it is none of ``not_in``."""
    items = await wait_for_prefix(
        store, keys.election,
        lambda items: leader_of(items.get("master")) not in not_in, timeout=timeout)
    kv = items["master"]
    leader = leader_of(kv)
    assert leader is not None
    return leader, kv.create_revision


async def duties_ran(logs: MongoLogStore, term: int, count: int) -> None:
    await wait_for_count(logs.db["leader_terms"],
                         {"_id": term, "duties.alerts": {"$gte": count}},
                         lambda n: n == 1, timeout=30)


@pytest.mark.slow
async def test_a_killed_leader_is_replaced_within_the_ttl_and_terms_never_overlap(
    settings: Settings, store: EtcdStore, keys: Keyspace, logs: MongoLogStore,
) -> None:
    settings = settings.with_overrides(alert_poll_interval=0.5, lease_ttl=5)
    ttl = settings.lease_ttl  # the leader's own lease is 70 % of it (3 s)
    masters = {}
    for i in range(3):
        mid = f"fo-m{i}"
        masters[mid] = await procs.start("master", settings.with_overrides(
            master_port=free_port()), CRONSWARM_MASTER_ID=mid)
    try:
        for proc in masters.values():
            await proc.wait_for_line("master listening")
        first, term1 = await next_leader(store, keys, not_in={None}, timeout=30)
        await duties_ran(logs, term1, 3)

        killed_at = time.monotonic()
        masters[first].proc.send_signal(signal.SIGKILL)
        await masters[first].proc.wait()
        second, term2 = await next_leader(store, keys, not_in={None, first}, timeout=ttl * 4)
        takeover = time.monotonic() - killed_at
        await duties_ran(logs, term2, 3)  # the duties go on

        stopped_at = time.monotonic()
        stopping = asyncio.create_task(masters[second].stop())  # SIGTERM: it resigns
        third, term3 = await next_leader(store, keys, not_in={None, first, second},
                                         timeout=ttl * 4)
        handover = time.monotonic() - stopped_at
        assert await stopping == 0
        await duties_ran(logs, term3, 3)
    finally:
        await asyncio.gather(*(p.stop() for p in masters.values()))
    sys.stderr.write(f"takeover after kill -9: {takeover:.2f}s (lease TTL {ttl}s); "
                     f"hand-over on SIGTERM: {handover:.2f}s\n")
    assert takeover <= ttl, takeover
    assert handover < 1.5, handover
    assert term1 < term2 < term3
    terms: list[dict[str, Any]] = await logs.db["leader_terms"].find({}).sort(
        "_id", 1).to_list(None)
    assert [(t["_id"], t["master"]) for t in terms] == [
        (term1, first), (term2, second), (term3, third)]
    for earlier, later in itertools.pairwise(terms):
        assert earlier["last_duty"] < later["first_duty"], (earlier, later)
    assert all(t["duties"]["alerts"] >= 3 and t["duties"]["lost-run-sweep"] >= 1
               for t in terms), terms
    assert "ended" not in terms[0] and "ended" in terms[1]  # killed vs resigned
    assert any("stepped down" in line for line in masters[second].lines)
