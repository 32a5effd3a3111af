"""Registered workers with their health and live runs, for the API and the dashboard."""

from __future__ import annotations

from typing import Any

from ..common import ClockReport, ClockState, Settings
from ._jobs import JobService


def worker_health(worker: dict[str, Any], now_ms: int, stale_after_ms: float) -> str:
    """``ok``, ``saturated`` (every run slot busy), ``stale`` (no recent stats),
    ``clock_offset`` (its clock is beyond the maximum offset from the cluster's:
    it claims nothing) or ``unsynced`` (its offset is not measured yet)."""
    updated = worker.get("updated")
    if not isinstance(updated, int) or now_ms - updated > stale_after_ms:
        return "stale"
    clock = ClockReport.from_dict(worker.get("clock"))
    if clock is not None and clock.state is ClockState.OUT_OF_BOUNDS:
        return "clock_offset"
    if clock is not None and clock.state is ClockState.UNSYNCED:
        return "unsynced"
    running, max_runs = worker.get("running"), worker.get("max_runs")
    if isinstance(running, int) and isinstance(max_runs, int) and running >= max_runs:
        return "saturated"
    return "ok"


async def worker_views(service: JobService, settings: Settings) -> list[dict[str, Any]]:
    """Every registered worker (by id) with ``health`` and ``running_runs`` added.

    A worker that died stays registered until its lease expires; its stats stop
    moving meanwhile, so it shows as ``stale``.
    """
    workers = await service.workers()
    by_worker: dict[str, list[str]] = {}
    for run in await service.running():
        by_worker.setdefault(str(run.get("worker")), []).append(str(run.get("run_id")))
    now = service.clock.now_ms()
    stale_after = (3 * settings.stats_interval + settings.lease_ttl) * 1000
    for worker in workers:
        worker["health"] = worker_health(worker, now, stale_after)
        worker["running_runs"] = sorted(by_worker.get(str(worker["id"]), []))
    return workers
