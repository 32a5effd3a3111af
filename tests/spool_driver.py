"""Submits run records to a log writer forever, printing each acknowledgement.

``python -m tests.spool_driver SPOOL_DIR``: MongoDB is unreachable (a closed
port), so every record stays in the spool. Four submitters run at once so that
their records share fsyncs. The kill -9 test reads the ``acked <record id>``
lines and kills this process in the middle.
"""

import asyncio
import sys

from cronswarm.common import RunRecord, RunStatus
from cronswarm.devservices import free_port
from cronswarm.logstore import MongoLogStore
from cronswarm.worker import LogWriter, Spool


async def submitter(writer: LogWriter, lane: int) -> None:
    tick = 1_700_000_000_000 + lane
    while True:
        tick += 10
        record = RunRecord(run_id=f"driven@{tick}", job="driven", tick=tick, attempt=1,
                           worker="driver", summary="true", status=RunStatus.SUCCEEDED,
                           started=tick, ended=tick + 1, output="x" * 200)
        await writer.submit(record)
        print("acked", record.record_id, flush=True)


async def main(spool_dir: str) -> None:
    store = MongoLogStore(f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
                          timeout_ms=200)
    writer = LogWriter(store, Spool(spool_dir, max_bytes=1 << 30))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(writer.run())
        for lane in range(4):
            tg.create_task(submitter(writer, lane))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
