"""``cronswarm worker``, counting the MongoDB document writes it sends.

SecantusDB's ``serverStatus`` opcounters count write *commands* (one bulk
write of 200 records counts 1), so bench_fire counts documents where the
client sees them: a pymongo command listener, registered before the worker
creates its client, adds up the documents of every acknowledged insert, update
and delete command and prints the running totals as one stderr line:

    bench-mongo-writes <documents> <commands>

Everything else is the unchanged ``cronswarm worker`` command. With
``BENCH_FIRE_PROFILE=DIR`` in its environment, each worker writes a cProfile
of its whole life to ``DIR/worker-<pid>.prof`` when it stops.
"""

from __future__ import annotations

import cProfile
import os
import sys
import time

from pymongo import monitoring

from cronswarm.cli import main

_WRITES = {"insert": "documents", "update": "updates", "delete": "deletes"}


class WriteCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.pending: dict[tuple[int, int], int] = {}
        self.documents = 0
        self.commands = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        key = _WRITES.get(event.command_name)
        if key is not None:
            self.pending[(event.request_id, event.operation_id or 0)] = len(
                event.command.get(key, ()))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        count = self.pending.pop((event.request_id, event.operation_id or 0), None)
        if count is not None:
            self.documents += count
            self.commands += 1
            print(f"bench-mongo-writes {self.documents} {self.commands}", file=sys.stderr,
                  flush=True)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.pending.pop((event.request_id, event.operation_id or 0), None)


def run() -> int:
    profile_dir = os.environ.get("BENCH_FIRE_PROFILE")
    if not profile_dir:
        return main(["worker"])
    profiler = cProfile.Profile(time.thread_time)  # CPU time: what a fire costs
    try:
        return profiler.runcall(main, ["worker"])
    finally:
        profiler.dump_stats(os.path.join(profile_dir, f"worker-{os.getpid()}.prof"))


if __name__ == "__main__":
    monitoring.register(WriteCounter())
    sys.exit(run())
