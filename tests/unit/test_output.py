import bson
from hypothesis import given
from hypothesis import strategies as st

from cronswarm.common import MAX_OUTPUT_PART_BYTES, RunRecord, RunStatus
from cronswarm.logstore import record_to_doc
from cronswarm.worker import BoundedOutput


def test_small_output_is_kept_whole() -> None:
    out = BoundedOutput(10, 10)
    out.feed(b"hello")
    assert (out.head, out.tail, out.total, out.truncated) == (b"hello", b"", 5, False)


def test_large_output_keeps_head_and_tail_and_true_count() -> None:
    out = BoundedOutput(4, 4)
    for chunk in (b"0123", b"4567", b"89ab", b"cdef"):
        out.feed(chunk)
    assert out.head == b"0123"
    assert out.tail == b"cdef"
    assert out.total == 16
    assert out.truncated


@given(chunks=st.lists(st.binary(max_size=50), max_size=30),
       head=st.integers(0, 40), tail=st.integers(0, 40))
def test_head_and_tail_are_prefix_and_suffix(chunks: list[bytes], head: int, tail: int) -> None:
    out = BoundedOutput(head, tail)
    seen: list[bytes] = []
    out.subscribe(seen.append)
    for chunk in chunks:
        out.feed(chunk)
    whole = b"".join(chunks)
    assert out.total == len(whole)
    assert out.head == whole[:head]
    assert len(out.tail) <= tail
    assert whole.endswith(out.tail)
    assert out.truncated == (len(whole) > len(out.head) + len(out.tail))
    assert b"".join(seen) == whole
    if not out.truncated:
        assert out.head + out.tail == whole


def test_a_record_of_the_largest_undecodable_output_fits_in_one_mongodb_document() -> None:
    # Every byte invalid UTF-8: decoding replaces each by U+FFFD, three bytes.
    limit = MAX_OUTPUT_PART_BYTES
    out = BoundedOutput(limit, limit)
    for _ in range(3):
        out.feed(b"\xff" * limit)
    head, tail = out.text()
    record = RunRecord(run_id="j@1", job="j", tick=1, attempt=1, worker="w",
                       summary="x" * 65536, status=RunStatus.FAILED, started=1, ended=2,
                       error="e" * 4096, output=head, output_tail=tail,
                       output_bytes=out.total, truncated=out.truncated)
    size = len(bson.encode(record_to_doc(record, default_retention_days=30)))
    assert out.truncated
    assert 6 * limit < size < 16 * 1024 * 1024  # MongoDB's maxBsonObjectSize


def test_a_scrubbed_output_never_holds_a_secret_cut_by_reads_or_limits() -> None:
    from cronswarm.common import Scrubber

    out = BoundedOutput(8, 8)
    out.scrubber = Scrubber(["hunter2-pw"])
    seen: list[bytes] = []
    out.subscribe(seen.append)
    for chunk in (b"a hun", b"ter2-pw b ", b"x" * 20, b" hunter2", b"-pw"):
        out.feed(chunk)
    out.flush()
    whole = b"a [secret] b " + b"x" * 20 + b" [secret]"
    assert b"".join(seen) == whole  # the live stream
    assert out.head == whole[:8] and out.tail == whole[-8:]
    assert out.total == len(whole)
