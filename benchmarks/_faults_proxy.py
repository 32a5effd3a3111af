"""faults.py's network faults: an asyncio TCP proxy between one worker and etcd.

Each worker reaches each etcd member through a listening port of its own
(``Proxy``); the worker's proxies share a mode (``Link``):

- ``pass``: bytes flow both ways;
- ``blackhole``: connections are held open and nothing is forwarded either way
  (nothing is read, so nothing is lost: what was sent during the partition is
  delivered when it ends, like TCP retransmitting after a short partition);
- ``delay``: every chunk, both ways, is delivered ``delay`` seconds after it
  was read, in order;
- ``drop-replies``: the worker's requests reach etcd, etcd's replies are read
  and discarded. A connection that lost bytes cannot be resumed (the HTTP/2
  stream is cut mid-frame), so leaving this mode closes those connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

MODES = ("pass", "blackhole", "delay", "drop-replies")


class Link:
    """The mode of one worker's proxies; ``changed`` wakes whoever waits on it."""

    def __init__(self, delay: float) -> None:
        self.mode = "pass"
        self.delay = delay
        self._changed = asyncio.Event()
        self._tainted: set[Pipe] = set()

    def set(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode
        if mode != "drop-replies":
            for pipe in list(self._tainted):
                pipe.close()
            self._tainted.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    def taint(self, pipe: Pipe) -> None:
        self._tainted.add(pipe)


class Pipe:
    """One proxied connection: two directions, each a reader and a writer
    with a queue of (deliver at, bytes) between them."""

    def __init__(self, link: Link, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 server: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.link = link
        self.client = client
        self.server = server
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        up: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        down: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        self.tasks = [
            asyncio.create_task(self._read(self.client[0], up, reply=False)),
            asyncio.create_task(self._write(up, self.server[1])),
            asyncio.create_task(self._read(self.server[0], down, reply=True)),
            asyncio.create_task(self._write(down, self.client[1])),
        ]
        try:
            await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.close()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for _, writer in (self.client, self.server):
            writer.close()

    async def _read(self, reader: asyncio.StreamReader,
                    queue: asyncio.Queue[tuple[float, bytes] | None], *, reply: bool) -> None:
        try:
            while True:
                while self.link.mode == "blackhole":
                    await self.link.changed()
                data = await reader.read(65536)
                if not data:
                    return
                mode = self.link.mode
                if mode == "drop-replies" and reply:
                    self.link.taint(self)
                    continue
                delay = self.link.delay if mode == "delay" else 0.0
                queue.put_nowait((time.monotonic() + delay, data))
        finally:
            queue.put_nowait(None)

    async def _write(self, queue: asyncio.Queue[tuple[float, bytes] | None],
                     writer: asyncio.StreamWriter) -> None:
        while (item := await queue.get()) is not None:
            due, data = item
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)  # the injected latency itself
            while self.link.mode == "blackhole":
                await self.link.changed()
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()


class Proxy:
    """A listening port on loopback forwarding to ``target`` (host:port)."""

    def __init__(self, link: Link, target: str) -> None:
        self.link = link
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while self.link.mode == "blackhole":  # held: neither refused nor connected on
            await self.link.changed()
        try:
            upstream = await asyncio.open_connection(*self.target)
        except OSError:  # the member is down: the worker sees a reset, as it would directly
            writer.close()
            return
        task = asyncio.create_task(Pipe(self.link, (reader, writer), upstream).run())
        self.pipes.add(task)
        task.add_done_callback(self.pipes.discard)
        await task

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


async def start_proxies(targets: list[str], delay: float) -> tuple[Link, list[Proxy]]:
    """One link and a proxy per etcd member for one worker."""
    link = Link(delay)
    proxies = [Proxy(link, t) for t in targets]
    for proxy in proxies:
        await proxy.start()
    return link, proxies
