"""The ``run_hours`` rollup of the run history: counts per status per hour.

``run_hours`` holds, per hour of ticks, the number of runs in each status: a
cache with a version. Whoever writes runs bumps the version of each hour it
touches before and after writing (``touch``); a reader uses a bucket only if
its counts were taken at its current version, and otherwise recounts that
hour from the runs and stores the result if nobody bumped it meanwhile. A
writer that dies between its two bumps leaves the hour dirty (the first bump)
or is replayed from its spool (which bumps again), so a bucket never looks
fresh while missing a write. Counting a window then reads one small document
per full hour, recounts only the hours written since (in practice the current
one), and counts the partial hours at the ends from the runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from ._abc import LogStoreUnavailable
from ._codes import DUPLICATE_KEY

Doc = dict[str, Any]

_RECOUNT_CONCURRENCY = 8
HOUR = dt.timedelta(hours=1)
# The hours whose counts may be cached. A writer skips its bumps (``touch``)
# for an hour still open for writes: not ended ``OPEN_FOR`` ago by its clock;
# a reader caches an hour only once it ended ``CACHED_AFTER`` ago by its own.
# The difference is the clock offset and write delay this tolerates.
OPEN_FOR = dt.timedelta(minutes=5)
CACHED_AFTER = dt.timedelta(minutes=15)


def floor_hour(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def ceil_hour(t: dt.datetime) -> dt.datetime:
    floor = floor_hour(t)
    return floor if floor == t else floor + HOUR



class HourlyCounts:
    """The ``run_hours`` collection: counts per status of each hour of ticks."""

    def __init__(self, runs: AsyncCollection[Doc], hours: AsyncCollection[Doc], *,
                 default_retention_days: int) -> None:
        self.runs = runs
        self.hours = hours
        self.keep = dt.timedelta(days=default_retention_days)

    async def ensure_indexes(self) -> None:
        await self.hours.create_index("expire_at", expireAfterSeconds=0, name="retention")

    @staticmethod
    def closed(ticks: Iterable[dt.datetime], now: dt.datetime) -> set[dt.datetime]:
        """The hours of ``ticks`` a reader may have cached (or soon may):
        those a writer bumps (``touch``). Writes into an hour still open
        (the current one, in practice) need no bump: no reader caches it
        before they landed, and a write that lands late bumps it after."""
        return {hour for hour in map(floor_hour, ticks) if hour + HOUR + OPEN_FOR <= now}

    async def touch(self, ticks: Iterable[dt.datetime]) -> None:
        """Mark the hours of ``ticks`` as changed (before and after writing runs)."""
        ops = [UpdateOne({"_id": hour},
                         {"$inc": {"version": 1},
                          "$setOnInsert": {"rolled": -1, "counts": {},
                                           "expire_at": hour + HOUR + self.keep}},
                         upsert=True)
               for hour in sorted({floor_hour(t) for t in ticks})]
        if not ops:
            return
        for attempt in (1, 2):
            try:
                await self.hours.bulk_write(ops, ordered=False)
                return
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                # Two first upserts of one hour can race: the loser retries.
                if attempt == 1 and all(e.get("code") == DUPLICATE_KEY for e in errors):
                    ops = [ops[e["index"]] for e in errors]
                    continue
                raise LogStoreUnavailable(f"cannot update run_hours: {errors[:1]}") from exc
            except PyMongoError as exc:
                raise LogStoreUnavailable(str(exc)) from exc

    async def count(self, start: dt.datetime, end: dt.datetime, now: dt.datetime
                    ) -> Counter[str]:
        """Runs per status with ``start <= tick < end``; ``now`` by the reader's clock."""
        totals: Counter[str] = Counter()
        first, last = ceil_hour(start), floor_hour(end)
        if first >= last:
            totals.update((await self._recount(start, end))[0])
            return totals
        edges = [(a, b) for a, b in ((start, first), (last, end)) if a < b]
        full = [first + k * HOUR for k in range((last - first) // HOUR)]
        try:
            buckets = {b["_id"].replace(tzinfo=dt.UTC) if b["_id"].tzinfo is None
                       else b["_id"]: b
                       async for b in self.hours.find({"_id": {"$gte": first, "$lt": last}})}
            stale = []
            for hour in full:
                bucket = buckets.get(hour)
                if hour + HOUR + CACHED_AFTER > now:
                    edges.append((hour, hour + HOUR))  # still open to writers: counted, not cached
                elif bucket is not None and bucket["rolled"] == bucket["version"]:
                    totals.update(bucket["counts"])
                else:
                    stale.append((hour, bucket))
            limiter = asyncio.Semaphore(_RECOUNT_CONCURRENCY)

            async def refresh(hour: dt.datetime, bucket: Doc | None) -> Counter[str]:
                async with limiter:
                    counts, expiry = await self._recount(hour, hour + HOUR)
                    await self._store(hour, bucket, counts, expiry)
                    return counts

            async def live(a: dt.datetime, b: dt.datetime) -> Counter[str]:
                async with limiter:
                    return (await self._recount(a, b))[0]

            parts = await asyncio.gather(*(refresh(h, b) for h, b in stale),
                                         *(live(a, b) for a, b in edges))
        except PyMongoError as exc:
            raise LogStoreUnavailable(str(exc)) from exc
        for part in parts:
            totals.update(part)
        return totals

    async def _recount(self, start: dt.datetime, end: dt.datetime
                       ) -> tuple[Counter[str], dt.datetime | None]:
        cursor = await self.runs.aggregate([
            {"$match": {"tick": {"$gte": start, "$lt": end}}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}, "expiry": {"$min": "$expire_at"}}},
        ])
        counts: Counter[str] = Counter()
        expiries = []
        async for row in cursor:
            counts[str(row["_id"])] = int(row["n"])
            if row.get("expiry") is not None:
                expiries.append(row["expiry"])
        return counts, min(expiries) if expiries else None

    async def _store(self, hour: dt.datetime, bucket: Doc | None, counts: Counter[str],
                     expiry: dt.datetime | None) -> None:
        """Cache ``counts``, unless a writer bumped the hour since ``bucket`` was read.

        The bucket expires with the first of its runs to expire (it is then
        recounted), so the counts never include runs that retention removed.
        """
        version = 0 if bucket is None else bucket["version"]
        flt: Doc = {"_id": hour, "version": version}
        if bucket is None:
            flt = {"_id": hour, "version": {"$exists": False}}
        update = {"$set": {"counts": dict(counts), "rolled": version, "version": version,
                           "expire_at": expiry or hour + HOUR + self.keep}}
        try:
            await self.hours.update_one(flt, update, upsert=bucket is None)
        except PyMongoError as exc:
            if getattr(exc, "code", None) != DUPLICATE_KEY:  # else a writer created it first
                raise
