"""The failure limiter: a sliding window per address, bounded memory."""

from cronswarm.master._ratelimit import FailureLimiter, client_address


def test_the_eleventh_failure_within_the_window_waits_for_the_oldest_to_leave() -> None:
    limiter = FailureLimiter(limit=10, window=60.0)
    for i in range(10):
        assert limiter.retry_after("a", 100.0 + i) is None
        limiter.failed("a", 100.0 + i)
    assert limiter.retry_after("a", 109.0) == 51  # the first failure leaves at 160
    assert limiter.retry_after("a", 159.5) == 1
    assert limiter.retry_after("a", 160.0) is None
    assert limiter.retry_after("b", 109.0) is None  # per address


def test_failures_spread_over_more_than_the_window_are_never_limited() -> None:
    limiter = FailureLimiter(limit=10, window=60.0)
    for i in range(100):
        now = i * 7.0  # fewer than 10 in any 60 s
        assert limiter.retry_after("a", now) is None
        limiter.failed("a", now)


def test_memory_is_bounded_by_addresses_and_limit() -> None:
    limiter = FailureLimiter(limit=3, window=60.0, max_addresses=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", float(i))
        limiter.failed("kept", float(i))  # recently failing addresses stay
    assert len(limiter) == 100
    assert limiter.retry_after("kept", 999.0) == 58


def test_the_client_address_trusts_only_our_own_proxies() -> None:
    assert client_address("10.0.0.5", "6.6.6.6", 0) == "10.0.0.5"  # no proxy: the peer
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4", 1) == "1.2.3.4"
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9", 2) == "1.2.3.4"
    assert client_address("10.0.0.5", "1.2.3.4", 2) == "10.0.0.5"  # bypassed a proxy
    assert client_address("10.0.0.5", None, 1) == "10.0.0.5"
    assert client_address(None, None, 0) == "unknown"
