"""Reading one job's definition from the coordination store."""

from __future__ import annotations

from ..common import Job, Keyspace, ValidationError
from ._abc import CoordStore


async def read_job(store: CoordStore, keys: Keyspace, name: str) -> Job | None:
    """The job stored under ``name`` as it is now; None if it does not exist or
    does not validate (its writers and watchers report that one)."""
    kv = await store.get(keys.job(name))
    try:
        return None if kv is None else Job.from_json(kv.value)
    except ValidationError:
        return None
