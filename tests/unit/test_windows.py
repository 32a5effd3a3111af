"""Windows for newest-first history reads: contiguous, growing, bounded."""

import itertools

from hypothesis import given
from hypothesis import strategies as st

from cronswarm.logstore._windows import windows


def test_windows_grow_back_to_the_floor() -> None:
    assert list(windows(1000, 900, first=10, growth=2)) == [
        (990, 1000), (970, 990), (930, 970), (900, 930)]
    assert list(windows(100, 100)) == []
    assert list(windows(1000, 0, first=10, growth=2, probes=2)) == [
        (990, 1000), (970, 990), (0, 970)]


@given(st.integers(0, 10**13), st.integers(0, 10**13), st.integers(1, 10**6),
       st.integers(2, 8))
def test_windows_cover_the_range_once(hi: int, floor: int, first: int, growth: int) -> None:
    spans = list(windows(hi, floor, first, growth))
    if hi <= floor:
        assert spans == []
        return
    assert spans[0][1] == hi and spans[-1][0] == floor
    assert all(a[0] == b[1] for a, b in itertools.pairwise(spans))
    assert all(lo < top for lo, top in spans)
    assert len(spans) <= 7  # a handful of probes for any range
