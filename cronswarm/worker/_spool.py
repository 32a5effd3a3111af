"""An append-only spool of run records on local disk (the log writer's write-ahead log).

The files (slots, segments, checkpoint): _spool_files.py; the record frames:
_spool_frames.py.

``append`` writes a group of frames and fsyncs once (group commit): when it
returns, the records survive the death of the process or of the machine. A
process never appends to a segment written by an earlier process.

The reader keeps a position (segment, offset); ``release`` deletes the
segments before it and writes it to ``checkpoint`` (a hint without fsync: a
stale checkpoint only replays records that MongoDB already has, which the
unique run index turns into no-ops).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from ._spool_files import (
    Position,
    SpoolError,
    SpoolFull,
    adopt_orphans,
    fsync_dir,
    load_checkpoint,
    segment_name,
    segments_in,
    take_slot,
    unlock,
    write_checkpoint,
)
from ._spool_frames import Scan, encode_frame, scan_frames

log = logging.getLogger(__name__)

class Spool:
    """One process's spool. Blocking file I/O: call it from a thread in async code.

    ``append`` may run in one thread while ``read`` and ``release`` run in
    another; appends must not run concurrently with each other.
    """

    def __init__(self, directory: str | Path, *, max_bytes: int,
                 segment_bytes: int = 4 << 20) -> None:
        self.root = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4))
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}  # segment -> committed bytes
        self._cache: tuple[int, int, Scan] | None = None  # segment, scanned size, frames
        self._closed = False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.path, self._lock_fd = take_slot(self.root)
        except OSError as exc:
            raise SpoolError(f"cannot open the spool in {self.root}: {exc} "
                             f"(set CRONSWARM_SPOOL_DIR to a writable local directory)"
                             ) from exc
        try:
            self._open()
        except OSError as exc:
            unlock(self._lock_fd)
            raise SpoolError(f"cannot open the spool in {self.path}: {exc}") from exc
        except BaseException:
            unlock(self._lock_fd)
            raise

    # -- opening -------------------------------------------------------------

    def _open(self) -> None:
        numbers = segments_in(self.path)
        start = load_checkpoint(self.path, numbers)
        for number in numbers:
            if number < start.segment:  # written to MongoDB before the checkpoint
                (self.path / segment_name(number)).unlink()
        numbers = [n for n in numbers if n >= start.segment]
        numbers += adopt_orphans(self.root, self.path, numbers[-1] + 1 if numbers else 1)
        for number in numbers:
            self._sizes[number] = (self.path / segment_name(number)).stat().st_size
        self.start = start if numbers and start.segment == numbers[0] else Position(
            numbers[0] if numbers else 1, 0)
        self._active = (numbers[-1] + 1) if numbers else max(1, self.start.segment)
        self._active_fd = self._create_segment(self._active)
        backlog = sum(self._sizes.values()) - (self.start.offset if numbers else 0)
        if backlog > 0:
            log.info("spool %s holds %d bytes of run records from an earlier process",
                     self.path, backlog)

    def _create_segment(self, number: int) -> int:
        fd = os.open(self.path / segment_name(number),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fsync_dir(self.path)
        self._sizes[number] = 0
        return fd

    # -- state ---------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    @property
    def head(self) -> Position:
        """Where the next record will be appended."""
        with self._lock:
            return Position(self._active, self._sizes[self._active])

    def has_records_after(self, position: Position) -> bool:
        """Whether bytes (possibly only a torn tail) lie after ``position``."""
        with self._lock:
            return any(size > (position.offset if number == position.segment else 0)
                       for number, size in self._sizes.items() if number >= position.segment)

    # -- writing -------------------------------------------------------------

    def append(self, payloads: Sequence[bytes]) -> list[Position]:
        """Append records durably (one fsync per segment touched); returns the
        end position of each record.

        Raises ``SpoolFull`` when the size limit is reached, ``SpoolError`` when
        the disk fails; either carries in ``written`` the end positions of the
        records (a prefix) that were written nonetheless.
        """
        if self._closed:
            raise SpoolError(f"spool {self.path} is closed")
        ends: list[Position] = []
        try:
            self._append(payloads, ends)
        except SpoolError as exc:
            exc.written = ends
            raise
        return ends

    def _append(self, payloads: Sequence[bytes], ends: list[Position]) -> None:
        pending: list[bytes] = []
        pending_bytes = 0
        with self._lock:
            used = sum(self._sizes.values())
        for payload in payloads:
            try:
                frame = encode_frame(payload)
            except ValueError as exc:
                raise SpoolError(str(exc)) from exc
            if used + pending_bytes + len(frame) > self.max_bytes:
                if pending:
                    ends += self._write(pending)
                raise SpoolFull(self.path, used + pending_bytes, self.max_bytes, len(frame))
            active_size = self._sizes[self._active]
            if pending and active_size + pending_bytes + len(frame) > self.segment_bytes:
                ends += self._write(pending)
                used += pending_bytes
                pending, pending_bytes = [], 0
                active_size = self._sizes[self._active]
            if not pending and active_size > 0 and active_size + len(frame) > \
                    self.segment_bytes:
                self._rotate()
            pending.append(frame)
            pending_bytes += len(frame)
        if pending:
            ends += self._write(pending)

    def _write(self, frames: list[bytes]) -> list[Position]:
        start = self._sizes[self._active]
        data = b"".join(frames)
        try:
            written = os.write(self._active_fd, data)
            while written < len(data):
                written += os.write(self._active_fd, data[written:])
            os.fsync(self._active_fd)
        except OSError as exc:
            # Leave no partial frame behind: later appends follow a clean end.
            with contextlib.suppress(OSError):
                os.ftruncate(self._active_fd, start)
            raise SpoolError(f"cannot write to spool {self.path}: {exc}") from exc
        ends = []
        offset = start
        for frame in frames:
            offset += len(frame)
            ends.append(Position(self._active, offset))
        with self._lock:
            self._sizes[self._active] = offset
        return ends

    def _rotate(self) -> None:
        fd = self._create_segment(self._active + 1)
        old = self._active_fd
        with self._lock:
            self._active += 1
            self._active_fd = fd
        os.close(old)

    # -- reading -------------------------------------------------------------

    def read(self, start: Position, max_records: int, max_bytes: int
             ) -> tuple[list[bytes], Position]:
        """Up to ``max_records`` records (and about ``max_bytes``) from ``start`` on,
        and the position after the last one returned (past any skipped bytes)."""
        out: list[bytes] = []
        taken = 0
        segment, offset = start.segment, start.offset
        while True:
            with self._lock:
                sizes = dict(self._sizes)
            later = sorted(n for n in sizes if n >= segment)
            if not later:
                return out, Position(segment, offset)
            if later[0] != segment:
                segment, offset = later[0], 0
            size = sizes[segment]
            if offset < size:
                frames = self._frames(segment, size).frames
                index = bisect.bisect_left([f.start for f in frames], offset)
                for frame in frames[index:]:
                    if len(out) >= max_records or (out and taken + len(frame.payload)
                                                   > max_bytes):
                        return out, Position(segment, frame.start)
                    out.append(frame.payload)
                    taken += len(frame.payload)
                offset = size  # the rest of the segment, skipped bytes included
            if len(later) == 1:  # the active segment: nothing after it yet
                return out, Position(segment, offset)
            segment, offset = later[1], 0

    def _frames(self, segment: int, size: int) -> Scan:
        cached = self._cache
        if cached is not None and cached[0] == segment and cached[1] == size:
            return cached[2]
        try:
            with open(self.path / segment_name(segment), "rb") as f:
                data = f.read(size)
        except OSError as exc:
            raise SpoolError(f"cannot read spool segment {segment}: {exc}") from exc
        scan = scan_frames(data)
        if scan.skipped and segment != self._active:
            log.warning("spool segment %s: skipped %d bytes that are not whole records "
                        "(a torn write at a crash, or damage)", segment_name(segment),
                        scan.skipped)
        self._cache = (segment, size, scan)
        return scan

    def release(self, upto: Position) -> None:
        """Everything before ``upto`` is in MongoDB: drop whole segments before it."""
        with self._lock:
            active = self._active
            doomed = [n for n in self._sizes if n < upto.segment and n != active]
            for number in doomed:
                del self._sizes[number]
        for number in doomed:
            try:
                (self.path / segment_name(number)).unlink(missing_ok=True)
            except OSError as exc:  # the next start replays it: no-ops in MongoDB
                log.warning("cannot delete spool segment %s: %s", segment_name(number), exc)
        write_checkpoint(self.path, upto)

    def close(self, *, drained: bool) -> None:
        """Close and unlock; ``drained``: every record is in MongoDB, delete them all."""
        if self._closed:
            return
        self._closed = True
        os.close(self._active_fd)
        if drained:
            for number in list(self._sizes):
                with contextlib.suppress(FileNotFoundError):
                    (self.path / segment_name(number)).unlink()
            with contextlib.suppress(FileNotFoundError):
                (self.path / "checkpoint").unlink()
            self._sizes.clear()
        unlock(self._lock_fd)
