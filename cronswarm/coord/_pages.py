"""How many keys to ask for in each page of a prefix scan."""

from __future__ import annotations


class PageSizes:
    """How many keys to ask etcd for in each range read of a scan.

    Without ``page_bytes``: ``page_size``. With it, the first read asks for
    ``page_size`` keys and each later one for about ``page_bytes`` bytes, by the
    mean size of the keys read so far: etcd counts the whole rest of the range
    for every read, so 100,000 jobs read 1,000 at a time cost etcd 1.9 s, and
    0.9 s in reads of 1 MiB. A read whose reply is over the channel's limit
    is asked for again with half as many keys.
    """

    def __init__(self, page_size: int, page_bytes: int) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.page_size = page_size
        self.page_bytes = page_bytes
        self.keys = 0
        self.bytes = 0
        self.cap: int | None = None  # after a reply over the limit

    def limit(self) -> int:
        if self.page_bytes <= 0 or self.keys == 0:
            wanted = self.page_size
        else:
            wanted = max(1, self.page_bytes * self.keys // max(self.bytes, 1))
        return wanted if self.cap is None else max(1, min(wanted, self.cap))

    def seen(self, keys: int, size: int) -> None:
        self.keys += keys
        self.bytes += size

    def too_large(self, limit: int) -> None:
        self.cap = limit // 2
