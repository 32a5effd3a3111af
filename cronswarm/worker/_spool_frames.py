"""The spool's record frames: how a record is written to a segment file,
and read back past torn or damaged bytes.

One frame per record::

    "CSR1" | payload length (u32 BE) | crc32(length bytes + payload) (u32 BE) | payload

A crash during an append can leave a torn frame at the end of the newest
segment; reading detects it by length and CRC and skips it (and
resynchronises on the next magic should a frame in the middle ever be
damaged).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"CSR1"
_HEADER = struct.Struct(">4sII")
HEADER_SIZE = _HEADER.size
MAX_PAYLOAD = 32 << 20


@dataclass(frozen=True, slots=True)
class Frame:
    start: int
    end: int
    payload: bytes


@dataclass(slots=True)
class Scan:
    frames: list[Frame] = field(default_factory=list)
    skipped: int = 0  # bytes that are not valid frames (torn tail, damage)


def encode_frame(payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a spool record is limited to {MAX_PAYLOAD} bytes")
    length = len(payload).to_bytes(4, "big")
    crc = zlib.crc32(payload, zlib.crc32(length))
    return MAGIC + length + crc.to_bytes(4, "big") + payload


def scan_frames(buf: bytes, base: int = 0) -> Scan:
    """The valid frames of ``buf`` (which ends where the file ends), in order.

    Bytes that do not form a valid frame are skipped up to the next magic that
    starts one; an incomplete frame at the end is a torn tail and is skipped.
    Offsets are relative to ``base``.
    """
    out = Scan()
    pos, size = 0, len(buf)
    while pos < size:
        if size - pos >= HEADER_SIZE:
            magic, length, crc = _HEADER.unpack_from(buf, pos)
            end = pos + HEADER_SIZE + length
            if magic == MAGIC and length <= MAX_PAYLOAD and end <= size:
                payload = buf[pos + HEADER_SIZE:end]
                if zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "big"))) == crc:
                    out.frames.append(Frame(base + pos, base + end, payload))
                    pos = end
                    continue
        following = buf.find(MAGIC, pos + 1)
        following = size if following < 0 else following
        out.skipped += following - pos
        pos = following
    return out
