"""The spool: frame encoding (pure), and segment files on a temporary directory."""

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cronswarm.worker import Position, Spool, SpoolError, SpoolFull, encode_frame, scan_frames

payloads = st.lists(st.binary(max_size=300), max_size=20)


@given(payloads)
def test_frames_read_back_in_order(items: list[bytes]) -> None:
    data = b"".join(encode_frame(p) for p in items)
    scan = scan_frames(data)
    assert [f.payload for f in scan.frames] == items
    assert scan.skipped == 0
    assert [f.start for f in scan.frames[1:]] == [f.end for f in scan.frames[:-1]]


@given(payloads, st.data())
def test_a_torn_tail_is_skipped_and_the_frames_before_it_kept(items: list[bytes],
                                                              data: st.DataObject) -> None:
    frames = [encode_frame(p) for p in items]
    whole = b"".join(frames)
    cut = data.draw(st.integers(0, len(whole)))
    scan = scan_frames(whole[:cut])
    complete = 0
    offset = 0
    for frame in frames:
        if offset + len(frame) > cut:
            break
        offset += len(frame)
        complete += 1
    assert [f.payload for f in scan.frames] == items[:complete]
    assert scan.skipped == cut - offset


@given(st.lists(st.binary(min_size=1, max_size=100).filter(lambda b: b"CSR1" not in b),
                min_size=2, max_size=10), st.data())
def test_damage_in_one_frame_loses_that_frame_only(items: list[bytes],
                                                   data: st.DataObject) -> None:
    frames = [encode_frame(p) for p in items]
    victim = data.draw(st.integers(0, len(frames) - 1))
    start = sum(len(f) for f in frames[:victim])
    at = start + data.draw(st.integers(4, len(frames[victim]) - 1))  # past the magic
    damaged = bytearray(b"".join(frames))
    damaged[at] ^= 0xFF
    scan = scan_frames(bytes(damaged))
    assert [f.payload for f in scan.frames] == items[:victim] + items[victim + 1:]
    assert scan.skipped == len(frames[victim])


def test_garbage_without_magic_is_skipped_whole() -> None:
    good = encode_frame(b"ok")
    scan = scan_frames(b"\x00garbage" + good + b"tail")
    assert [f.payload for f in scan.frames] == [b"ok"]
    assert scan.skipped == len(b"\x00garbage") + len(b"tail")


def _read_all(spool: Spool, start: Position, batch: int = 3) -> tuple[list[bytes], Position]:
    out: list[bytes] = []
    position = start
    while True:
        got, position = spool.read(position, batch, 1 << 20)
        if not got:
            return out, position
        out += got


def test_append_read_release_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    records = [f"record {i} ".encode() * 20 for i in range(100)]  # ~200 bytes each
    ends = spool.append(records[:60])
    ends += spool.append(records[60:])
    assert len(ends) == 100 and ends == sorted(ends)
    assert len(list(spool.path.glob("*.seg"))) > 3  # rotated
    got, position = _read_all(spool, spool.start)
    assert got == records
    assert position == spool.head
    half, middle = spool.read(spool.start, 50, 1 << 20)
    assert half == records[:50] and middle == ends[49]
    before = len(list(spool.path.glob("*.seg")))
    spool.release(middle)
    assert len(list(spool.path.glob("*.seg"))) < before
    assert _read_all(spool, middle)[0] == records[50:]
    spool.close(drained=False)
    # Reopened: starts at the checkpoint, appends go to a new segment.
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    assert again.path == spool.path
    assert _read_all(again, again.start)[0] == records[50:]
    again.append([b"new"])
    assert _read_all(again, again.start)[0] == [*records[50:], b"new"]
    again.close(drained=True)
    assert list(again.path.glob("*.seg")) == []


def test_a_torn_tail_left_by_a_crash_is_ignored_on_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append([b"one", b"two"])
    spool.close(drained=False)
    segment = sorted(spool.path.glob("*.seg"))[-1]
    with open(segment, "ab") as f:
        f.write(encode_frame(b"three")[:-2])  # the process died mid-write
    again = Spool(tmp_path, max_bytes=1 << 20)
    again.append([b"four"])
    assert _read_all(again, again.start)[0] == [b"one", b"two", b"four"]
    again.close(drained=False)


def test_full_spool_raises_with_the_prefix_that_fit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200, segment_bytes=4096)
    with pytest.raises(SpoolFull, match="is full") as caught:
        spool.append([b"x" * 50, b"y" * 50, b"z" * 50, b"w" * 50])
    assert len(caught.value.written) == 3  # 3 x 62 bytes fit in 200
    assert _read_all(spool, spool.start)[0] == [b"x" * 50, b"y" * 50, b"z" * 50]
    spool.close(drained=False)


def test_processes_sharing_a_directory_get_their_own_slots_and_adopt_orphans(
        tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=1 << 20)
    second = Spool(tmp_path, max_bytes=1 << 20)
    assert first.path != second.path
    second.append([b"from the second"])
    second.close(drained=False)  # it dies with a record not yet written
    first.close(drained=True)
    third = Spool(tmp_path, max_bytes=1 << 20)  # takes the lowest slot, adopts the other
    assert third.path == first.path
    assert _read_all(third, third.start)[0] == [b"from the second"]
    assert list(second.path.glob("*.seg")) == []
    third.close(drained=False)


def test_segments_are_not_world_readable(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append([b"secret output"])
    for segment in spool.path.glob("*.seg"):
        assert os.stat(segment).st_mode & 0o077 == 0
    spool.close(drained=True)


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match="CRONSWARM_SPOOL_DIR"):
        Spool(blocker / "spool", max_bytes=1 << 20)
