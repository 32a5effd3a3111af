"""Running a master or a worker process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from ..common import ServiceUnavailable, Settings
from ..coord import check_etcd_access, etcd_store
from ..logstore import MongoLogStore
from ..master import create_app
from ..worker import HttpExecutor, LogWriter, ShellExecutor, Worker, guardian_running

log = logging.getLogger(__name__)


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_master(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or stop_on_signals()
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.master_host, settings.master_port)
        await site.start()
        log.info("master listening on http://%s:%d/", settings.master_host, settings.master_port)
        await stop.wait()
    finally:
        await runner.cleanup()


async def serve_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or stop_on_signals()
    store = etcd_store(settings)
    logs = MongoLogStore(settings.mongodb_uri, database=settings.mongodb_database,
                         default_retention_days=settings.retention_days)
    try:
        await check_etcd_access(store, settings.key_prefix)
        try:
            await logs.check_access()
            await logs.ensure_indexes()
        except ServiceUnavailable as exc:
            log.warning("MongoDB does not answer at start-up (%s); run records wait in the "
                        "spool (%s) until it does", exc, settings.spool_dir)
        writer = LogWriter.open(logs, settings)
        try:
            # The guardian kills the runs' processes if this process dies
            # without stopping them (kill -9 included).
            async with guardian_running() as guardian:
                shell = ShellExecutor(guardian, reap_strays=True)
                worker = Worker(settings, store, writer,
                                executors={"shell": shell, "http": HttpExecutor(
                                    deny_local=settings.http_deny_local)})
                await worker.run(stop)
        finally:
            await writer.close()
    finally:
        await logs.close()
        await store.close()
