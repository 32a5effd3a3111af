"""The jobs list: filters, pages and the per-job view.

The view joins three sources: the job and its revision (etcd), the runs
alive now (etcd ``/running/``), and the last run record (MongoDB's
``run_last`` rollup), all read on every call. ``load_job_page`` is the one
query that gathers them, used by the API and the dashboard alike. The
dashboard's trends (a job's last 20 runs, from the ``run_trend`` rollup) are kept per
master in ``TrendCache`` and read again when the job's last run changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..common import CronSchedule, RunRecord, RunStatus, ValidationError
from ..coord import KeyValue
from ._jobs import JobService, StoredJob

NEVER = "never"  # the last-run status filter for jobs that have no run yet


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Filters of ``GET /api/jobs``, combined with AND."""

    name: str | None = None  # substring of the name, case-insensitive
    enabled: bool | None = None
    last_status: str | None = None  # a RunStatus value, or NEVER
    target: tuple[str, str] | None = None  # a label the job targets
    limit: int = 100
    cursor: str | None = None  # the last name of the previous page

    def keeps(self, job: StoredJob) -> bool:
        """Whether ``job`` passes the filters that need no run history."""
        if self.name is not None and self.name.lower() not in job.job.name.lower():
            return False
        if self.enabled is not None and job.job.enabled is not self.enabled:
            return False
        if self.target is not None:
            key, value = self.target
            if job.job.targets.get(key) != value:
                return False
        return True

    def keeps_last(self, last: RunStatus | None) -> bool:
        """Whether a job whose last run ended in ``last`` (None: never ran) passes."""
        if self.last_status is None:
            return True
        if last is None:
            return self.last_status == NEVER
        return last.value == self.last_status


def page(jobs: Sequence[StoredJob], cursor: str | None, limit: int
         ) -> tuple[list[StoredJob], str | None]:
    """One page of ``jobs`` (sorted by name) after ``cursor``, and the next cursor."""
    rest = [j for j in jobs if cursor is None or j.job.name > cursor]
    chosen = rest[:limit]
    next_cursor = chosen[-1].job.name if len(rest) > limit else None
    return chosen, next_cursor


def next_fire(stored: StoredJob, now_ms: int) -> int | None:
    """The job's next scheduled instant after ``now_ms``; None when paused or never."""
    if not stored.job.enabled:
        return None
    try:
        return CronSchedule.parse(stored.job.schedule, stored.job.timezone).next_after(now_ms)
    except ValidationError:
        return None


def running_by_job(kvs: Iterable[KeyValue], running_dir: str) -> dict[str, list[str]]:
    """Run ids alive now, by job, from the keys ``<running_dir><job>/<run id>``."""
    out: dict[str, list[str]] = {}
    for kv in kvs:
        name, sep, run = kv.key[len(running_dir):].partition("/")
        if sep and run:
            out.setdefault(name, []).append(run)
    return {name: sorted(runs) for name, runs in out.items()}


def last_run_view(run: RunRecord | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"run_id": run.run_id, "record_id": run.record_id, "attempt": run.attempt,
            "status": run.status.value, "tick": run.tick, "started": run.started,
            "ended": run.ended, "worker": run.worker}


def job_view(stored: StoredJob, *, now_ms: int, last: RunRecord | None,
             running: Sequence[str]) -> dict[str, Any]:
    """The API's job object: the job, its revision, next fire, last run, live runs."""
    body = stored.job.to_dict()
    body["revision"] = stored.revision
    body["next_fire"] = next_fire(stored, now_ms)
    body["last_run"] = last_run_view(last)
    body["running"] = list(running)
    return body


def views(jobs: Sequence[StoredJob], *, now_ms: int, last: Mapping[str, RunRecord],
          running: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    return [job_view(j, now_ms=now_ms, last=last.get(j.job.name),
                     running=running.get(j.job.name, ())) for j in jobs]


class SpanHints(Mapping[str, int]):
    """Jobs and their ``history_span``, computed only for the jobs asked for (a
    trend read from the rollup needs none; each costs about 20 fire times)."""

    def __init__(self, runs: int, now_ms: int) -> None:
        self.runs = runs
        self.now_ms = now_ms
        self.jobs: dict[str, StoredJob] = {}

    def __getitem__(self, name: str) -> int:
        return history_span(self.jobs[name], self.runs, self.now_ms)

    def __iter__(self) -> Iterator[str]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)


SPAN_SAMPLE = 20  # fire times computed to estimate a job's period
_UNKNOWN_SPAN_MS = 3600 * 1000


def history_span(stored: StoredJob, runs: int, now_ms: int) -> int:
    """About how far back (ms) a job's last ``runs`` scheduled ticks reach, from
    its next fire times: the first window of its history query."""
    try:
        schedule = CronSchedule.parse(stored.job.schedule, stored.job.timezone)
    except ValidationError:
        return _UNKNOWN_SPAN_MS
    sample = max(1, min(runs, SPAN_SAMPLE))
    times = []
    current = now_ms
    for _ in range(sample + 1):
        nxt = schedule.next_after(current)
        if nxt is None:
            return _UNKNOWN_SPAN_MS
        times.append(nxt)
        current = nxt
    period = (times[-1] - times[0]) / sample
    return int(period * runs * 1.25) + 1000


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of the jobs list with what its views need."""

    jobs: list[StoredJob]
    last: dict[str, RunRecord]
    running: dict[str, list[str]]
    next_cursor: str | None
    total: int  # jobs passing the filters, on every page
    now_ms: int
    recent: dict[str, list[RunRecord]]  # newest first, without output

    def views(self) -> list[dict[str, Any]]:
        return views(self.jobs, now_ms=self.now_ms, last=self.last, running=self.running)


async def recent_history(service: JobService, jobs: Sequence[StoredJob], runs: int,
                         now_ms: int, latest: Mapping[str, RunRecord] | None = None
                         ) -> dict[str, list[RunRecord]]:
    """The newest ``runs`` records of each job: from the trend cache for jobs whose
    last run is unchanged, else each read from its own index range."""
    if latest is None:
        latest = await last_runs_of(service, jobs)
    out: dict[str, list[RunRecord]] = {}
    stale = SpanHints(runs, now_ms)
    for stored in jobs:
        name = stored.job.name
        if name not in latest:
            continue  # no run at all (the rollup read asks the runs for such jobs)
        cached = service.trends.get(name, runs, latest.get(name), now_ms)
        if cached is None:
            stale.jobs[name] = stored
        elif cached:
            out[name] = cached
    if stale:
        fetched = await service.logs.recent_runs(stale, runs)
        for name in stale:
            records = fetched.get(name, [])
            service.trends.put(name, runs, latest.get(name), now_ms, records)
            if records:
                out[name] = records
    return out


async def last_runs_of(service: JobService, jobs: Sequence[StoredJob]
                       ) -> dict[str, RunRecord]:
    """The last run of each of many jobs, from the last-run rollup (one read)."""
    return await service.logs.last_runs([j.job.name for j in jobs])


async def load_job_page(service: JobService, wanted: JobFilter, *, history: int = 1
                        ) -> JobPage:
    """The page of jobs ``wanted`` selects, with the newest ``history`` runs of each
    (the first is the last run). ``history=0`` reads no run records (MongoDB
    down): no last runs, and the last-status filter is ignored."""
    now = service.clock.now_ms()
    jobs = [j for j in await service.list_jobs() if wanted.keeps(j)]
    recent: dict[str, list[RunRecord]] = {}
    if history and wanted.last_status is not None:
        # Only the statuses of every job (small), then the page's last runs.
        statuses = await service.logs.last_statuses([j.job.name for j in jobs])
        jobs = [j for j in jobs if wanted.keeps_last(statuses.get(j.job.name))]
        chosen, next_cursor = page(jobs, wanted.cursor, wanted.limit)
        latest = await last_runs_of(service, chosen)
        if history == 1:
            recent = {j.job.name: [latest[j.job.name]] for j in chosen if j.job.name in latest}
        else:
            recent = await recent_history(service, chosen, history, now, latest)
    else:
        chosen, next_cursor = page(jobs, wanted.cursor, wanted.limit)
        if history == 1:
            latest = await last_runs_of(service, chosen)
            recent = {name: [record] for name, record in latest.items()}
        elif history:
            recent = await recent_history(service, chosen, history, now)
    last = {name: runs[0] for name, runs in recent.items() if runs}
    running = running_by_job(await service.running_keys(), service.keys.running_dir)
    return JobPage(chosen, last, running, next_cursor, len(jobs), now, recent)
