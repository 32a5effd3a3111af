"""tls_refusal: the texts pymongo gives for a failed TLS handshake, told apart
from errors that may pass."""

from __future__ import annotations

import pytest

from cronswarm.logstore._tls import tls_refusal

TIMEOUT = ", Timeout: 5.0s, Topology Description: <TopologyDescription ...>"


@pytest.mark.parametrize(("error", "names"), [
    ("127.0.0.1:5: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
     "certificate in certificate chain (_ssl.c:1006)" + TIMEOUT, "tlsCAFile"),
    ("db:27017: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get "
     "local issuer certificate (_ssl.c:1006)" + TIMEOUT, "tlsCAFile"),
    # a server closing on a client without certificate (SecantusDB)
    ("127.0.0.1:5: EOF occurred in violation of protocol (_ssl.c:2427) (configured "
     "timeouts: socketTimeoutMS: 30000.0ms)" + TIMEOUT, "tlsCertificateKeyFile"),
    # a server alerting it (OpenSSL, TLS 1.3)
    ("db:27017: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate "
     "required (_ssl.c:2580)" + TIMEOUT, "tlsCertificateKeyFile"),
    ("db:27017: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)"
     + TIMEOUT, "tlsCertificateKeyFile"),
    ("db:27017: [SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"
     + TIMEOUT, "tlsCertificateKeyFile"),
], ids=["wrong-ca", "unknown-issuer", "eof-no-client-cert", "certificate-required",
        "client-cert-unknown-ca", "bad-client-cert"])
def test_a_handshake_that_cannot_succeed_names_the_uri_option(error: str, names: str) -> None:
    sentence = tls_refusal(error)
    assert sentence is not None
    assert "MONGODB_URI" in sentence and names in sentence


@pytest.mark.parametrize("error", [
    "No servers found yet" + TIMEOUT,
    "127.0.0.1:5: [Errno 111] Connection refused (configured timeouts: ...)" + TIMEOUT,
    "127.0.0.1:5: timed out (configured timeouts: ...)" + TIMEOUT,
    "db:27017: connection closed" + TIMEOUT,
], ids=["no-answer", "refused", "timed-out", "closed"])
def test_an_error_that_may_pass_is_not_a_refusal(error: str) -> None:
    assert tls_refusal(error) is None
