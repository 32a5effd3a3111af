from hypothesis import given
from hypothesis import strategies as st

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
