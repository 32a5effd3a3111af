"""Why a TLS handshake with MongoDB cannot succeed by retrying.

pymongo reports a failed handshake only as the text of the server's last error
in a ServerSelectionTimeoutError; these are the texts of Python's ssl module
(OpenSSL). Other connection errors may be transient and are not matched.
"""

from __future__ import annotations

from pymongo import MongoClient
from pymongo.errors import PyMongoError

_WRONG_CA = ("certificate_verify_failed", "certificate verify failed")
# The server turned our client certificate down (or we sent none): OpenSSL's
# alerts, or, from a server that closes without one, an EOF mid-handshake —
# which a server not speaking TLS may also cause.
_CLIENT_CERT = ("certificate_required", "alert_unknown_ca", "bad_certificate",
                "eof occurred in violation of protocol", "unexpected_eof_while_reading")


def tls_refusal(error: str) -> str | None:
    """The sentence for an operator about a handshake that failed for good,
    else None. ``error`` is pymongo's text of the connection error."""
    text = error.lower()
    if any(marker in text for marker in _WRONG_CA):
        return ("TLS handshake with MongoDB failed: certificate verify failed — is "
                "tlsCAFile in MONGODB_URI the CA that signed the servers' certificates?")
    if any(marker in text for marker in _CLIENT_CERT):
        return ("MongoDB ended our TLS handshake — if it asks for a client certificate, "
                "give MONGODB_URI tlsCertificateKeyFile (certificate and key in one PEM, "
                "signed by a CA the server trusts); if it does not serve TLS, drop tls=true")
    return None


# pymongo's asyncio client reports a handshake the server ended (as SecantusDB
# does on a missing client certificate) only as this; its blocking client,
# on the ssl module's sockets, gives the reason.
CLOSED_AFTER_CONNECT = "connection is already closed"


def handshake_error(uri: str, timeout_ms: int) -> str:
    """pymongo's blocking client's error text for ``uri`` ('' if it answers).
    Blocks for up to ``timeout_ms``: run it in a thread."""
    client: MongoClient[dict[str, object]] = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms, appname="cronswarm")
    try:
        client.admin.command("ping")
        return ""
    except PyMongoError as exc:
        return str(exc)
    finally:
        client.close()
