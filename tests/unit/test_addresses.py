"""Which addresses HTTP jobs may be denied: loopback, link-local, metadata."""

import pytest

from cronswarm.common import local_address_reason, local_url_reason

DENIED = ["127.0.0.1", "127.255.0.9", "::1", "0.0.0.0", "0.1.2.3", "::",
          "169.254.169.254", "169.254.0.1", "fe80::1", "::ffff:127.0.0.1",
          "::ffff:169.254.169.254", "fd00:ec2::254", "100.100.100.200"]
ALLOWED = ["10.0.0.5", "192.168.1.10", "172.16.0.1", "8.8.8.8", "2001:db8::1", "100.64.0.1"]


@pytest.mark.parametrize("address", DENIED)
def test_local_and_metadata_addresses_are_named(address: str) -> None:
    assert local_address_reason(address) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_other_addresses_are_allowed(address: str) -> None:
    assert local_address_reason(address) is None


def test_only_literal_ips_in_urls_are_judged_without_dns() -> None:
    assert local_url_reason("http://169.254.169.254/latest/meta-data") is not None
    assert local_url_reason("http://[::1]:8080/") is not None
    assert local_url_reason("https://127.1/") is None  # not a literal IP: DNS decides
    assert local_url_reason("https://localhost/") is None  # resolved on the worker
    assert local_url_reason("https://example.com/") is None
