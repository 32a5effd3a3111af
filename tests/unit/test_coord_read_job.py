"""coord.read_job: the job stored under a name, as the lost-run retry and the
retry board read it before they claim."""

from cronswarm.common import Job, Keyspace
from cronswarm.coord import MemoryCoordStore, read_job


async def test_read_job_returns_the_stored_job_and_none_when_missing_or_invalid() -> None:
    keys = Keyspace("/c")
    store = MemoryCoordStore()
    job = Job.from_dict({"name": "j", "schedule": "* * * * * *", "command": "true"})
    await store.put(keys.job("j"), job.to_json())
    await store.put(keys.job("bad"), b'{"name": "bad"}')
    found = await read_job(store, keys, "j")
    assert found is not None and found.name == "j" and found.command == "true"
    assert await read_job(store, keys, "gone") is None
    assert await read_job(store, keys, "bad") is None  # fails validation
    await store.close()
