from cronswarm.worker import BoundedOutput, OutputFeeds
from cronswarm.worker._live import Subscriber


def test_a_subscriber_starts_with_head_and_tail_then_follows() -> None:
    out = BoundedOutput(4, 4)
    out.feed(b"0123456789")
    sub = Subscriber(out)
    assert sub.take() == [(0, b"0123"), (6, b"6789")]
    out.feed(b"ab")
    out.feed(b"cd")
    assert sub.take() == [(10, b"ab"), (12, b"cd")]
    sub.unsubscribe()
    out.feed(b"ef")
    assert sub.take() == []


def test_a_slow_subscriber_loses_the_oldest_chunks_not_memory() -> None:
    out = BoundedOutput(0, 0)
    sub = Subscriber(out, limit=10)
    for i in range(10):
        out.feed(bytes([65 + i]) * 4)
    pending = sub.take()
    assert sum(len(c) for _, c in pending) <= 10
    assert [o for o, _ in pending] == [32, 36]  # the newest two; offsets show the gap
    assert sub.dropped == 32


def test_feeds_keep_running_and_recent_attempts_only() -> None:
    feeds = OutputFeeds(keep_finished=2)
    with feeds.track("j@1#1", BoundedOutput()) as first:
        assert feeds.get("j@1#1") is first
        assert len(feeds) == 1
        first.finish("failed")
    with feeds.track("j@1#2", BoundedOutput()) as second:
        assert feeds.get("j@1") is second  # a bare run id: the newest attempt
        second.finish("succeeded")
    assert feeds.get("j@1#1") is first and first.status == "failed"
    with feeds.track("k@5#1", BoundedOutput()):
        pass  # left without finish: ends as failed
    unfinished = feeds.get("k@5#1")
    assert unfinished is not None and unfinished.status == "failed"
    assert feeds.get("j@1#1") is None  # only the last two finished are kept
    assert len(feeds) == 0
