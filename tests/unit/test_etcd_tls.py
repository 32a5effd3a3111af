"""Reading gRPC's and etcd's error texts into one line for an operator.

The texts are the ones gRPC 1.85 (BoringSSL) and etcd 3.5 gave here."""

import pytest

from cronswarm.coord._etcd_tls import (
    EtcdCredentials,
    EtcdTls,
    credentials_problem,
    failed_address,
    handshake_problem,
    target_name_override,
    token_rejected,
)

WRONG_CA = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:26438: "
            "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
            "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer "
            "certificate: OK")
BAD_CLIENT_CERT = ("failed to connect to all addresses; last error: UNKNOWN: "
                   "ipv4:127.0.0.1:26438: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
                   "SSL_ERROR_SSL: error:10000412:SSL routines:OPENSSL_internal:"
                   "SSLV3_ALERT_BAD_CERTIFICATE: OK")
HOSTNAME = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:21137: "
            "Custom verification check failed with error: UNAUTHENTICATED: Hostname "
            "Verification Check failed.")
REFUSED = ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: "
           "Connection refused")
TLS = EtcdTls(ca=b"ca", cert=b"cert", key=b"key", cert_file="/etc/cron/client.pem")


def test_wrong_ca_points_at_the_ca_setting() -> None:
    refusal = handshake_problem(WRONG_CA, TLS)
    assert refusal is not None and refusal.setting == "CRONSWARM_ETCD_CA_FILE"
    assert refusal.message == ("certificate verify failed — is CRONSWARM_ETCD_CA_FILE the CA "
                               "that signed etcd's certificate?")


def test_expired_server_certificate() -> None:
    text = WRONG_CA.replace("unable to get local issuer certificate", "certificate has expired")
    refusal = handshake_problem(text, TLS)
    assert refusal is not None and refusal.message == "etcd's certificate has expired — renew it"


def test_refused_client_certificate_says_expired_when_it_is() -> None:
    refusal = handshake_problem(BAD_CLIENT_CERT, TLS,
                                client_cert_expired_at="2026-12-05 05:00:00 UTC")
    assert refusal is not None and refusal.setting == "CRONSWARM_ETCD_CERT_FILE"
    assert refusal.message == ("etcd refused our client certificate '/etc/cron/client.pem': "
                               "it expired on 2026-12-05 05:00:00 UTC")
    refusal = handshake_problem(BAD_CLIENT_CERT, TLS)
    assert refusal is not None and "is it signed by a CA in etcd's --trusted-ca-file?" in (
        refusal.message)


def test_no_client_certificate_when_etcd_asks_for_one() -> None:
    refusal = handshake_problem(BAD_CLIENT_CERT, EtcdTls(ca=b"ca"))
    assert refusal is not None and "set CRONSWARM_ETCD_CERT_FILE" in refusal.message


def test_hostname_mismatch_names_the_checked_name() -> None:
    refusal = handshake_problem(HOSTNAME, TLS, server_name="10.0.0.1")
    assert refusal is not None and refusal.setting == "CRONSWARM_ETCD_ENDPOINTS"
    assert refusal.message.startswith("etcd's certificate does not name '10.0.0.1'")


@pytest.mark.parametrize("tls", [None, TLS])
def test_an_unreachable_etcd_is_no_refusal(tls: EtcdTls | None) -> None:
    assert handshake_problem(REFUSED, tls) is None
    assert credentials_problem(REFUSED, EtcdCredentials("cron", "pw")) is None


def test_failed_address_is_read_from_the_error() -> None:
    assert failed_address(WRONG_CA, ["a:1", "b:2"]) == "127.0.0.1:26438"
    assert failed_address("deadline exceeded", ["a:1", "b:2"]) == "a:1,b:2"
    assert failed_address("last error: UNKNOWN: ipv6:[::1]:2379: Tls handshake failed",
                          ["x:1"]) == "[::1]:2379"


def test_credentials() -> None:
    wrong = "etcdserver: authentication failed, invalid user ID or password"
    refusal = credentials_problem(wrong, EtcdCredentials("cron", "pw"))
    assert refusal is not None and refusal.setting == "CRONSWARM_ETCD_PASSWORD"
    assert refusal.message == "etcd refused user 'cron': wrong user name or password"
    refusal = credentials_problem("etcdserver: user name is empty", None)
    assert refusal is not None and "set CRONSWARM_ETCD_USER" in refusal.message


@pytest.mark.parametrize(("code", "details", "rejected"), [
    ("UNAUTHENTICATED", "etcdserver: invalid auth token", True),
    ("INVALID_ARGUMENT", "etcdserver: invalid auth token", True),
    ("INVALID_ARGUMENT", "etcdserver: revision of auth store is old", True),
    ("PERMISSION_DENIED", "etcdserver: permission denied", False),
    ("UNAVAILABLE", "Connection refused", False),
])
def test_token_rejected(code: str, details: str, rejected: bool) -> None:
    assert token_rejected(code, details) is rejected


def test_several_endpoints_are_checked_against_the_first_host() -> None:
    assert target_name_override(["etcd-1.example:2379"]) is None  # gRPC uses the host
    assert target_name_override(["etcd-1.example:2379", "etcd-2.example:2379"]) == (
        "etcd-1.example")
    assert target_name_override(["[::1]:2379", "[::1]:2380"]) == "::1"


def test_tls_to_a_plain_etcd() -> None:
    text = ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:23791: "
            "Handshake read failed (Socket closed)")
    refusal = handshake_problem(text, TLS)
    assert refusal is not None and refusal.message.startswith("etcd does not speak TLS there")
    assert handshake_problem(text, None) is None  # plain to plain: a closed socket is no refusal
