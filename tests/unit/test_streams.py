import pytest

from cronswarm.common import StreamLimits, TooManyStreams


def test_a_viewer_gets_its_share_and_others_theirs_up_to_the_total() -> None:
    limits = StreamLimits(per_viewer=2, total=3, server="master")
    with limits.slot("alice"), limits.slot("alice"):
        with pytest.raises(TooManyStreams) as refused, limits.slot("alice"):
            pass
        assert (refused.value.limit, refused.value.maximum) == ("per_viewer", 2)
        assert refused.value.retry_after > 0
        with limits.slot("bob"):
            assert limits.open_streams == 3
            with pytest.raises(TooManyStreams) as full, limits.slot("carol"):
                pass
            assert full.value.as_dict() == {
                "code": "too_many_streams", "message": str(full.value), "limit": "total",
                "max": 3, "server": "master"}
        with limits.slot("carol"):  # bob's slot is free again
            assert limits.open_for("carol") == 1
    assert limits.open_streams == 0
    assert limits.open_for("alice") == 0
    assert limits.refused == {"per_viewer": 1, "total": 1}


def test_a_refused_or_failed_stream_holds_no_slot() -> None:
    limits = StreamLimits(per_viewer=1, total=1, server="worker")
    with pytest.raises(RuntimeError), limits.slot("alice"):
        raise RuntimeError("the stream broke")
    assert limits.open_streams == 0
    with limits.slot("alice"), pytest.raises(TooManyStreams), limits.slot("bob"):
        pass
    assert limits.open_streams == 0


def test_viewer_names_are_bounded_and_limits_positive() -> None:
    limits = StreamLimits(per_viewer=1, total=5, server="worker")
    # the same viewer, once cut to size
    with limits.slot("x" * 10_000), pytest.raises(TooManyStreams), limits.slot("x" * 300):
        pass
    with pytest.raises(ValueError, match="at least 1"):
        StreamLimits(per_viewer=0, total=5, server="master")
