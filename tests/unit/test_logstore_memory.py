"""What only the log store's twin offers: its switch, its refusals and copies.
What it shares with MongoDB is in tests/contract/test_logstore_contract.py."""

import pytest

from cronswarm.common import RunRecord, RunStatus
from cronswarm.logstore import LogStoreRejected, LogStoreUnavailable, MemoryLogStore, RunQuery


def run(tick: int) -> RunRecord:
    return RunRecord(run_id=f"j@{tick}", job="j", tick=tick, attempt=1, worker="w",
                     summary="true", status=RunStatus.RUNNING, extra={"k": ["v"]})


async def test_refused_records_are_named_and_the_others_stored() -> None:
    store = MemoryLogStore()
    store.reject = {run(2).record_id}
    with pytest.raises(LogStoreRejected) as raised:
        await store.write_runs([run(1), run(2), run(3)])
    assert list(raised.value.rejected) == ["j@2#1"]
    assert sorted(store.runs) == ["j@1#1", "j@3#1"]


async def test_switched_unavailable_it_stores_nothing() -> None:
    store = MemoryLogStore()
    store.available = False
    with pytest.raises(LogStoreUnavailable):
        await store.write_runs([run(1)])
    with pytest.raises(LogStoreUnavailable):
        await store.query_runs(RunQuery())
    assert store.runs == {}


async def test_records_in_and_out_are_copies() -> None:
    store = MemoryLogStore()
    written = run(1)
    await store.write_runs([written])
    written.extra["k"].append("changed by the writer")
    got = await store.get_run(written.record_id)
    assert got is not None and got.extra == {"k": ["v"]}
    got.extra["k"].append("changed by the reader")
    assert store.runs[written.record_id].extra == {"k": ["v"]}
