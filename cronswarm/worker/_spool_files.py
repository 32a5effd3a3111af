"""The spool's files (slots locked by live processes, segment files, checkpoints),
its positions and its errors.

Layout: ``<spool_dir>/slot-<n>/`` is the spool of one process, which holds an
exclusive ``flock`` on ``slot-<n>/lock`` while it lives. The kernel drops the
lock when the process dies, even by SIGKILL, so several workers can share one
``spool_dir`` and a restarted worker adopts the spool of a dead one (the lowest
free slot, plus the segments of any other abandoned slot). A slot holds
numbered segment files (``<16 hex digits>.seg``) and ``checkpoint``, where
reading starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..common import CronswarmError

log = logging.getLogger(__name__)

_CHECKPOINT = struct.Struct(">QQI")
_MAX_SLOTS = 4096


class SpoolError(CronswarmError):
    """The spool cannot take records: full, or the disk failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.written: list[Position] = []  # end positions of the records that were written


class SpoolFull(SpoolError):
    """Appending would pass the spool's size limit."""

    def __init__(self, path: Path, used: int, limit: int, needed: int) -> None:
        self.path = path
        self.used = used
        self.limit = limit
        super().__init__(
            f"spool {path} is full: {used} of {limit} bytes used, {needed} more needed "
            f"(raise CRONSWARM_SPOOL_MAX_BYTES, or bring MongoDB back so the spool drains)")


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """A place in the spool: a segment number and a byte offset in it."""

    segment: int
    offset: int


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_name(number: int) -> str:
    return f"{number:016x}.seg"


def segments_in(path: Path) -> list[int]:
    numbers = []
    for entry in path.glob("*.seg"):
        with contextlib.suppress(ValueError):
            numbers.append(int(entry.stem, 16))
    return sorted(numbers)


def try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def take_slot(root: Path) -> tuple[Path, int]:
    """The lowest free slot of ``root``, locked: its path and the lock's descriptor."""
    for n in range(_MAX_SLOTS):
        slot = root / f"slot-{n}"
        if not slot.exists():
            slot.mkdir(exist_ok=True)
            fsync_dir(root)
        fd = try_lock(slot / "lock")
        if fd is not None:
            return slot, fd
    raise SpoolError(f"no free spool slot in {root} ({_MAX_SLOTS} are locked)")


def load_checkpoint(path: Path, numbers: list[int]) -> Position:
    """Where reading starts in ``path`` (a slot holding segments ``numbers``)."""
    try:
        raw = (path / "checkpoint").read_bytes()
        segment, offset, crc = _CHECKPOINT.unpack(raw)
    except (OSError, struct.error):
        return Position(numbers[0] if numbers else 1, 0)
    if zlib.crc32(raw[:16]) != crc or segment not in numbers:
        return Position(numbers[0] if numbers else 1, 0)
    return Position(segment, offset)


def write_checkpoint(path: Path, upto: Position) -> None:
    """Write ``upto`` to the checkpoint of ``path`` (a slot): a hint, without fsync."""
    raw = struct.pack(">QQ", upto.segment, upto.offset)
    with contextlib.suppress(OSError):
        tmp = path / "checkpoint.tmp"
        tmp.write_bytes(raw + zlib.crc32(raw).to_bytes(4, "big"))
        os.replace(tmp, path / "checkpoint")


def adopt_orphans(root: Path, path: Path, first_number: int) -> list[int]:
    """Move the segments of the abandoned slots of ``root`` into ``path`` (a slot),
    numbered from ``first_number``; returns their new numbers."""
    adopted: list[int] = []
    number = first_number
    for slot in sorted(root.glob("slot-*")):
        if slot == path or not slot.is_dir():
            continue
        fd = try_lock(slot / "lock")
        if fd is None:
            continue  # a live process owns it
        try:
            found = segments_in(slot)
            for old in found:
                os.rename(slot / segment_name(old), path / segment_name(number))
                adopted.append(number)
                number += 1
            if found:
                with contextlib.suppress(FileNotFoundError):
                    (slot / "checkpoint").unlink()
                fsync_dir(path)
                fsync_dir(slot)
                log.info("spool %s adopted %d segments of abandoned %s",
                         path, len(found), slot)
        finally:
            unlock(fd)
    return adopted
