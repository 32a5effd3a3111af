import socket
import ssl

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from cronswarm.worker._http import describe_client_error

KEY = ConnectionKey("h", 443, True, True, None, None, None)
URL = "https://example.com:8443/x"


@pytest.mark.parametrize(("exc", "expected"), [
    (aiohttp.ClientConnectorDNSError(KEY, socket.gaierror(-2, "Name or service not known")),
     "cannot resolve host 'example.com': Name or service not known"),
    (aiohttp.ClientConnectorCertificateError(KEY, ValueError("self-signed")),
     "TLS certificate of example.com:8443 rejected: self-signed"),
    (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "refused")),
     "cannot connect to example.com:8443: Connection refused"),
    (aiohttp.ClientConnectorError(KEY, OSError("Connect call failed")),
     "cannot connect to example.com:8443: Connect call failed"),
    (aiohttp.ConnectionTimeoutError("t"),
     "cannot connect to example.com:8443: no connection within 2.5s"),
    (aiohttp.ServerDisconnectedError(), "example.com:8443 closed the connection before answering"),
    (aiohttp.ClientPayloadError("cut"), "broken response body from example.com:8443: cut"),
    (aiohttp.InvalidURL("::"), f"invalid URL {URL!r}"),
    (RuntimeError("boom"), "HTTP request to example.com:8443 failed: RuntimeError: boom"),
])
def test_each_client_failure_is_explained_by_its_most_specific_class(
        exc: BaseException, expected: str) -> None:
    assert describe_client_error(exc, URL, connect_timeout=2.5) == expected


def test_a_tls_failure_names_the_host_and_the_error() -> None:
    exc = aiohttp.ClientSSLError(KEY, ssl.SSLError(1, "wrong version"))
    assert describe_client_error(exc, URL).startswith("TLS error talking to example.com:8443: ")
