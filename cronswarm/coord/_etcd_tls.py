"""How the etcd client proves itself and checks etcd: TLS and etcd users.

Plain data and pure functions: the channel options for TLS, and the one-line
explanations of the refusals that retrying cannot fix (a wrong CA, an expired
certificate, a wrong password, a missing permission), read from gRPC's error
text. ``_etcd`` applies them; ``_etcd_access`` runs the start-up check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# The error texts etcd (3.4, 3.5) and gRPC's TLS layer (BoringSSL) give.
_TOKEN_REJECTED = ("invalid auth token", "revision of auth store is old")
_BAD_PASSWORD = "invalid user id or password"  # noqa: S105 - an error text
_AUTH_NOT_ENABLED = "authentication is not enabled"
_NO_USER = "user name is empty"
_PERMISSION_DENIED = "permission denied"
_ADDRESS = re.compile(r"ipv[46]:(\S+?):\s")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why etcd refuses us for good, and the setting an operator should look at."""

    setting: str
    message: str


@dataclass(frozen=True, slots=True)
class EtcdTls:
    """PEM bytes: the CA that signed etcd's certificates (None: the system's
    CAs) and, for mutual TLS, our certificate chain and its key."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)
    cert_file: str | None = None  # named in messages about our certificate


@dataclass(frozen=True, slots=True)
class EtcdCredentials:
    """An etcd user (``etcdctl user add``) whose token goes with every call."""

    user: str
    password: str = field(repr=False)


def target_name_override(endpoints: Sequence[str]) -> str | None:
    """The name every member's certificate is checked against, for several endpoints.

    One endpoint is checked against its own host name (gRPC does that). Several
    are dialled through one static ``ipv4:``/``ipv6:`` address list, whose
    authority is no host name at all; gRPC checks every member against one name,
    so we give it the first endpoint's host as written: each member's
    certificate must carry it (or list one DNS name resolving to every member,
    whose certificates all carry that name).
    """
    if len(endpoints) < 2:
        return None
    host, _, _ = endpoints[0].rpartition(":")
    return host.strip("[]")


def token_rejected(code_name: str, details: str) -> bool:
    """etcd no longer accepts our token (expired, or the auth store changed)."""
    text = details.lower()
    return code_name == "UNAUTHENTICATED" or any(t in text for t in _TOKEN_REJECTED)


def no_user_given(details: str) -> bool:
    """etcd wants a user and the call carried no token."""
    return _NO_USER in details.lower()


def auth_not_enabled(details: str) -> bool:
    return _AUTH_NOT_ENABLED in details.lower()


def permission_denied(details: str) -> bool:
    return _PERMISSION_DENIED in details.lower()


def failed_address(details: str, endpoints: Sequence[str]) -> str:
    """The address gRPC names in a connection error, else every endpoint."""
    found = _ADDRESS.search(details)
    return found.group(1) if found else ",".join(endpoints)


def handshake_problem(details: str, tls: EtcdTls | None, *,
                      client_cert_expired_at: str | None = None,
                      server_name: str | None = None) -> Refusal | None:
    """Why a TLS handshake cannot succeed by retrying, else None.

    ``details`` is gRPC's text of the UNAVAILABLE error."""
    text = details.lower()
    if tls is None:
        return None
    if "hostname verification" in text:
        name = f" {server_name!r}" if server_name else " the host name it was dialled by"
        return Refusal("CRONSWARM_ETCD_ENDPOINTS", (
            f"etcd's certificate does not name{name} — give each member a certificate "
            "carrying the endpoint's host name (with several endpoints: the first one's)"))
    if "certificate has expired" in text:
        return Refusal("CRONSWARM_ETCD_CA_FILE", "etcd's certificate has expired — renew it")
    if "certificate_verify_failed" in text or "certificate verify failed" in text:
        return Refusal("CRONSWARM_ETCD_CA_FILE", (
            "certificate verify failed — is CRONSWARM_ETCD_CA_FILE the CA that signed "
            "etcd's certificate?"))
    if "alert_certificate_expired" in text or (
            client_cert_expired_at is not None and "alert" in text):
        when = f" on {client_cert_expired_at}" if client_cert_expired_at else ""
        return Refusal("CRONSWARM_ETCD_CERT_FILE",
                       f"etcd refused our client certificate {tls.cert_file!r}: it expired{when}")
    if "bad_certificate" in text or "certificate_required" in text or (
            "alert_unknown_ca" in text):
        if tls.cert is None:
            return Refusal("CRONSWARM_ETCD_CERT_FILE", (
                "etcd asks for a client certificate — set CRONSWARM_ETCD_CERT_FILE and "
                "CRONSWARM_ETCD_KEY_FILE"))
        return Refusal("CRONSWARM_ETCD_CERT_FILE", (
            f"etcd refused our client certificate {tls.cert_file!r} — is it signed by a "
            "CA in etcd's --trusted-ca-file?"))
    # A plain etcd closes the connection on our TLS hello (gRPC: "Handshake read
    # failed (Socket closed)"); other TLS stacks answer with a version error.
    if "handshake read failed" in text or "wrong_version_number" in text:
        return Refusal("CRONSWARM_ETCD_CA_FILE", (
            "etcd does not speak TLS there — start it with --cert-file/--key-file and "
            "https:// client URLs, or unset CRONSWARM_ETCD_CA_FILE"))
    return None


def credentials_problem(details: str, credentials: EtcdCredentials | None
                        ) -> Refusal | None:
    """Why etcd refuses who we are, else None."""
    text = details.lower()
    if credentials is not None and _BAD_PASSWORD in text:
        return Refusal("CRONSWARM_ETCD_PASSWORD",
                       f"etcd refused user {credentials.user!r}: wrong user name or password")
    if credentials is None and _NO_USER in text:
        return Refusal("CRONSWARM_ETCD_USER", (
            "etcd has authentication enabled — set CRONSWARM_ETCD_USER and "
            "CRONSWARM_ETCD_PASSWORD"))
    return None


def permission_message(user: str | None, access: str, prefix: str) -> str:
    if user is None:
        # With --client-cert-auth etcd takes the certificate's common name as
        # the user; without a certificate there is none.
        return (f"etcd does not let us {access} keys under {prefix!r} without a user: "
                "permission denied; set CRONSWARM_ETCD_USER and CRONSWARM_ETCD_PASSWORD (or "
                "grant our client certificate's common name a role readwrite on prefix "
                f"{prefix}/)")
    return (f"etcd user {user!r} may not {access} keys under {prefix!r}: permission denied; "
            f"grant a role readwrite on prefix {prefix}/")
