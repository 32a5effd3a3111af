"""The etcd store as the settings describe it, and the start-up check of access.

Every master, worker and CLI command opens etcd through ``etcd_store`` so TLS
and the etcd user apply everywhere. ``check_etcd_access`` runs once at start:
what retrying cannot fix (a wrong CA, an expired certificate, a wrong password,
a user without read or write on the key prefix) ends the process with one
line saying what to change; an etcd that merely does not answer yet is left
to the usual retries.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import grpc
from cryptography import x509

from ..common import ConfigError, ServiceRefused, Settings, read_pem_file
from ._abc import CoordUnavailable
from ._etcd import EtcdStore
from ._etcd_tls import (
    EtcdCredentials,
    EtcdTls,
    Refusal,
    credentials_problem,
    failed_address,
    handshake_problem,
    permission_denied,
    permission_message,
    target_name_override,
)
from ._kv import Compare, Put

log = logging.getLogger(__name__)


def _pem(path: str | None, var: str) -> bytes | None:
    if path is None:
        return None
    try:
        return read_pem_file(path)
    except ValueError as exc:
        raise ConfigError(var, str(exc)) from exc


def etcd_store(settings: Settings) -> EtcdStore:
    """An EtcdStore with the endpoints, timeout, TLS files and user of ``settings``."""
    settings.check_pairs()
    tls = None
    if settings.etcd_ca_file is not None or settings.etcd_cert_file is not None:
        tls = EtcdTls(ca=_pem(settings.etcd_ca_file, "CRONSWARM_ETCD_CA_FILE"),
                      cert=_pem(settings.etcd_cert_file, "CRONSWARM_ETCD_CERT_FILE"),
                      key=_pem(settings.etcd_key_file, "CRONSWARM_ETCD_KEY_FILE"),
                      cert_file=settings.etcd_cert_file)
    credentials = None
    if settings.etcd_user is not None and settings.etcd_password is not None:
        credentials = EtcdCredentials(settings.etcd_user, settings.etcd_password)
        if tls is None:
            log.warning("the etcd password goes over the network in clear text: set "
                        "CRONSWARM_ETCD_CA_FILE to talk to etcd over TLS")
    return EtcdStore(settings.etcd_endpoints, timeout=settings.etcd_timeout, tls=tls,
                     credentials=credentials)


async def check_etcd_access(store: EtcdStore, prefix: str) -> None:
    """Raise ServiceRefused if etcd refuses our handshake, our user, or reading
    and writing keys under ``prefix``; only warn if etcd does not answer."""
    user = store.credentials.user if store.credentials is not None else None
    probe = f"{prefix}/access-probe/{uuid.uuid4().hex}"
    steps = (
        ("authenticate", store.authenticate),
        ("read", lambda: store.probe_read(prefix + "/")),
        # etcd checks the permission of every op of a txn, run or not: a put
        # behind a compare that never holds proves write access, writing nothing.
        ("write", lambda: store.txn([Compare(probe, "mod", "<", 0)], [Put(probe, b"")])),
    )
    for access, step in steps:
        try:
            await step()
        except CoordUnavailable as exc:
            cause = exc.__cause__
            if not isinstance(cause, grpc.aio.AioRpcError):
                raise
            details = cause.details() or ""
            if access != "authenticate" and permission_denied(details):
                raise ServiceRefused("CRONSWARM_ETCD_USER",
                                     permission_message(user, access, prefix)) from None
            refusal = _refusal(store, details)
            if refusal is not None:
                raise ServiceRefused(refusal.setting, refusal.message) from None
            hint = ""
            if store.tls is None and "socket closed" in details.lower():
                hint = " (if etcd serves TLS, set CRONSWARM_ETCD_CA_FILE)"
            log.warning("etcd does not answer at start-up (%s)%s; going on as without "
                        "this check", exc, hint)
            return


def _refusal(store: EtcdStore, details: str) -> Refusal | None:
    tls = store.tls
    expired = None
    if tls is not None and tls.cert_file is not None:
        expired = _expired_at(tls.cert_file)
    handshake = handshake_problem(details, tls, client_cert_expired_at=expired,
                                  server_name=target_name_override(store.endpoints))
    if handshake is not None:
        where = failed_address(details, store.endpoints)
        return Refusal(handshake.setting,
                       f"TLS handshake with etcd at {where} failed: {handshake.message}")
    return credentials_problem(details, store.credentials)


def _expired_at(cert_file: str) -> str | None:
    """When our certificate expired, if it has (etcd only says "bad certificate")."""
    try:
        cert = x509.load_pem_x509_certificate(read_pem_file(cert_file))
    except ValueError:
        return None
    not_after = cert.not_valid_after_utc
    if not_after >= dt.datetime.now(dt.UTC):
        return None
    return not_after.strftime("%Y-%m-%d %H:%M:%S UTC")
