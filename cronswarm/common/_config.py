"""Settings of masters and workers: defaults, then a TOML file, then environment.

Every setting has one environment variable; a TOML file (``--config``) uses the
field names as keys, flat or under a ``[cronswarm]`` table. Required settings
that are missing fail with the variable's name.
"""

from __future__ import annotations

import os
import socket
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ._errors import ConfigError
from ._job import check_name
from ._secrets import KEYS_SETTING, Keyring

_REQUIRED: Any = object()


def _endpoints(raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        for scheme in ("http://", "https://"):
            text = text.removeprefix(scheme)
        host, sep, port = text.rstrip("/").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port")
        out.append(f"{host}:{int(port)}")
    if not out:
        raise ValueError("no endpoints given")
    return tuple(out)


def _labels(raw: object) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for item in str(raw).split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def _prefix(raw: object) -> str:
    text = "/" + str(raw).strip().strip("/")
    if text == "/" or any(not part or part in (".", "..") for part in text[1:].split("/")):
        raise ValueError(f"{raw!r} is not a key prefix such as /cron")
    return text


def _port(raw: object) -> int:
    value = int(str(raw))
    if not 0 <= value < 65536:
        raise ValueError(f"{raw!r} is not a TCP port")
    return value


def _positive_float(raw: object) -> float:
    value = float(str(raw))
    if not value > 0:
        raise ValueError(f"{raw!r} must be greater than 0")
    return value


def _non_negative_float(raw: object) -> float:
    value = float(str(raw))
    if not value >= 0:
        raise ValueError(f"{raw!r} must be 0 or more")
    return value


def _positive_int(raw: object) -> int:
    value = int(str(raw))
    if value < 1:
        raise ValueError(f"{raw!r} must be at least 1")
    return value


# A run document holds the output's head and tail decoded as UTF-8 (an
# undecodable byte becomes U+FFFD, three bytes): at 2 MiB each it stays far
# below MongoDB's 16 MiB document limit with the command and error beside it.
MAX_OUTPUT_PART_BYTES = 2 << 20


def _non_negative_int(raw: object) -> int:
    value = int(str(raw))
    if value < 0:
        raise ValueError(f"{raw!r} must be 0 or more")
    return value


def _output_bytes(raw: object) -> int:
    value = _positive_int(raw)
    if value > MAX_OUTPUT_PART_BYTES:
        raise ValueError(f"{raw!r} is more than {MAX_OUTPUT_PART_BYTES} (2 MiB): a run "
                         "record must fit in one MongoDB document")
    return value


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{raw!r} is not a boolean (true/false)")


def _job_secret_keys(raw: object) -> str:
    text = str(raw).strip()
    Keyring.parse(text)  # ValueError names what is wrong, never a key
    return text


def _non_empty(raw: object) -> str:
    text = str(raw)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def read_pem_file(path: str) -> bytes:
    """The bytes of a PEM file; ValueError naming the path if unreadable or not PEM."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise ValueError(f"{path!r} is not a PEM file (no '-----BEGIN' line)")
    return data


def _pem_file(raw: object) -> str:
    path = str(raw).strip()
    read_pem_file(path)
    return path


def _worker_id(raw: object) -> str:
    text = str(raw)
    if (reason := check_name(text)) is not None:
        raise ValueError(f"{text!r} {reason}")
    return text


def default_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"{host[:80] or 'worker'}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _setting(env: str, parse: Callable[[object], Any], default: Any = _REQUIRED,
             factory: Callable[[], Any] | None = None) -> Any:
    meta = {"env": env, "parse": parse}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    if default is _REQUIRED:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a master or worker needs to run."""

    etcd_endpoints: tuple[str, ...] = _setting("CRONSWARM_ETCD_ENDPOINTS", _endpoints)
    mongodb_uri: str = _setting("MONGODB_URI", str)
    # None: the database named in MONGODB_URI, else "cronswarm"
    mongodb_database: str | None = _setting("CRONSWARM_MONGODB_DATABASE", str, None)
    key_prefix: str = _setting("CRONSWARM_KEY_PREFIX", _prefix, "/cron")
    etcd_timeout: float = _setting("CRONSWARM_ETCD_TIMEOUT", _positive_float, 5.0)
    # etcd over TLS (a CA file turns it on; a certificate and key add mutual
    # TLS) and etcd's own authentication (user and password together)
    etcd_ca_file: str | None = _setting("CRONSWARM_ETCD_CA_FILE", _pem_file, None)
    etcd_cert_file: str | None = _setting("CRONSWARM_ETCD_CERT_FILE", _pem_file, None)
    etcd_key_file: str | None = _setting("CRONSWARM_ETCD_KEY_FILE", _pem_file, None)
    etcd_user: str | None = _setting("CRONSWARM_ETCD_USER", _non_empty, None)
    etcd_password: str | None = field(default=None, repr=False, metadata={
        "env": "CRONSWARM_ETCD_PASSWORD", "parse": _non_empty})
    # master
    master_host: str = _setting("CRONSWARM_MASTER_HOST", str, "127.0.0.1")
    master_port: int = _setting("CRONSWARM_MASTER_PORT", _port, 8080)
    # seconds a run-now or kill request waits for a worker
    request_ttl: int = _setting("CRONSWARM_REQUEST_TTL", _positive_int, 60)
    secret_key: str | None = _setting("CRONSWARM_SECRET_KEY", str, None)
    # mark cookies Secure even on plain HTTP (behind a TLS-terminating proxy)
    secure_cookies: bool = _setting("CRONSWARM_SECURE_COOKIES", _boolean, False)
    # None: /metrics of masters is open; else it needs "Authorization: Bearer <this>"
    metrics_token: str | None = _setting("CRONSWARM_METRICS_TOKEN", str, None)
    # failed logins or bad tokens one address may send per minute (per master)
    auth_failure_limit: int = _setting("CRONSWARM_AUTH_FAILURE_LIMIT", _positive_int, 10)
    # proxies of ours in front of the masters, each appending to X-Forwarded-For
    trusted_proxy_hops: int = _setting("CRONSWARM_TRUSTED_PROXY_HOPS", _non_negative_int, 0)
    retention_days: int = _setting("CRONSWARM_RETENTION_DAYS", _positive_int, 30)
    master_id: str = _setting("CRONSWARM_MASTER_ID", _worker_id, factory=default_worker_id)
    # alerts (sent by the elected master)
    cluster_name: str = _setting("CRONSWARM_CLUSTER_NAME", str, "cronswarm")
    alert_silence: float = _setting("CRONSWARM_ALERT_SILENCE", _positive_float, 900.0)
    alert_poll_interval: float = _setting("CRONSWARM_ALERT_POLL_INTERVAL", _positive_float,
                                          2.0)
    alert_lookback: float = _setting("CRONSWARM_ALERT_LOOKBACK", _positive_float, 120.0)
    dead_man_interval: float = _setting("CRONSWARM_DEAD_MAN_INTERVAL", _positive_float, 15.0)
    alert_attempts: int = _setting("CRONSWARM_ALERT_ATTEMPTS", _positive_int, 5)
    alert_retry_delay: float = _setting("CRONSWARM_ALERT_RETRY_DELAY", _non_negative_float,
                                        2.0)
    alert_timeout: float = _setting("CRONSWARM_ALERT_TIMEOUT", _positive_float, 10.0)
    # worker
    worker_id: str = _setting("CRONSWARM_WORKER_ID", _worker_id, factory=default_worker_id)
    worker_labels: Mapping[str, str] = _setting("CRONSWARM_WORKER_LABELS", _labels,
                                                factory=dict)
    lease_ttl: int = _setting("CRONSWARM_LEASE_TTL", _positive_int, 10)
    max_concurrent_runs: int = _setting("CRONSWARM_MAX_CONCURRENT_RUNS", _positive_int, 32)
    shell: str = _setting("CRONSWARM_SHELL", str, "/bin/sh")
    handoff_delay: float = _setting("CRONSWARM_HANDOFF_DELAY", _non_negative_float, 0.25)
    shutdown_grace: float = _setting("CRONSWARM_SHUTDOWN_GRACE", _non_negative_float, 30.0)
    stats_interval: float = _setting("CRONSWARM_STATS_INTERVAL", _positive_float, 5.0)
    output_head_bytes: int = _setting("CRONSWARM_OUTPUT_HEAD_BYTES", _output_bytes, 65536)
    output_tail_bytes: int = _setting("CRONSWARM_OUTPUT_TAIL_BYTES", _output_bytes, 65536)
    worker_http_host: str = _setting("CRONSWARM_WORKER_HTTP_HOST", str, "127.0.0.1")
    worker_http_port: int = _setting("CRONSWARM_WORKER_HTTP_PORT", _port, 0)  # 0: ephemeral
    log_batch_size: int = _setting("CRONSWARM_LOG_BATCH_SIZE", _positive_int, 200)
    log_flush_interval: float = _setting("CRONSWARM_LOG_FLUSH_INTERVAL", _positive_float, 0.5)
    spool_dir: str = _setting("CRONSWARM_SPOOL_DIR", str, "var/spool")
    spool_max_bytes: int = _setting("CRONSWARM_SPOOL_MAX_BYTES", _positive_int, 1 << 30)
    allow_run_as: bool = _setting("CRONSWARM_ALLOW_RUN_AS", _boolean, True)
    # HTTP jobs may not call loopback, link-local or metadata addresses (masters
    # check literal IPs in jobs; workers every address they connect to)
    http_deny_local: bool = _setting("CRONSWARM_HTTP_DENY_LOCAL", _boolean, False)
    # beyond this offset from the cluster's clock a worker claims nothing (ms)
    max_clock_offset_ms: int = _setting("CRONSWARM_MAX_CLOCK_OFFSET_MS", _positive_int, 500)
    # Job secrets: "id:base64-32-byte-key,..."; the first seals, all open (masters
    # seal, workers open). Kept as given (``Keyring.from_setting`` reads it).
    job_secret_keys: str | None = field(default=None, repr=False, metadata={
        "env": KEYS_SETTING, "parse": _job_secret_keys})
    # live output streams (masters and workers each): open at once per viewer, and in all
    live_streams_per_viewer: int = _setting("CRONSWARM_LIVE_STREAMS_PER_VIEWER", _positive_int,
                                            4)
    live_streams_total: int = _setting("CRONSWARM_LIVE_STREAMS_TOTAL", _positive_int, 64)

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        config_file: str | Path | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings: defaults < ``config_file`` < ``env`` < ``overrides``."""
        env = os.environ if env is None else env
        file_values: dict[str, Any] = {}
        if config_file is not None:
            file_values = _read_toml(Path(config_file))
        known = {f.name for f in fields(cls)}
        for key in file_values:
            if key not in known:
                raise ConfigError(f"{config_file}: {key}", "unknown setting")
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = f.metadata["env"]
            parse = f.metadata["parse"]
            if f.name in overrides:
                values[f.name] = overrides[f.name]
                continue
            if var in env and env[var].strip() != "":
                raw, source = env[var], var
            elif f.name in file_values:
                raw, source = file_values[f.name], f"{config_file}: {f.name}"
            else:
                continue
            try:
                values[f.name] = parse(raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(source, str(exc)) from exc
        missing = [f for f in fields(cls) if f.name not in values and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing:
            var = missing[0].metadata["env"]
            raise ConfigError(var, f"is required (set the environment variable {var} "
                                   f"or '{missing[0].name}' in the config file)")
        settings = cls(**values)
        settings.check_pairs()
        return settings

    def check_pairs(self) -> None:
        """Settings that only make sense together; ConfigError naming the missing one."""
        for given, needed, what in (
            ("etcd_cert_file", "etcd_key_file", "mutual TLS needs the certificate and its key"),
            ("etcd_key_file", "etcd_cert_file", "mutual TLS needs the certificate and its key"),
            ("etcd_user", "etcd_password", "etcd authentication needs a user and a password"),
            ("etcd_password", "etcd_user", "etcd authentication needs a user and a password"),
        ):
            if getattr(self, given) is not None and getattr(self, needed) is None:
                raise ConfigError(_env_of(needed), f"is required when {_env_of(given)} is "
                                                   f"set ({what})")

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def env(self) -> dict[str, str]:
        """These settings as environment variables (to start child processes)."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                text = ",".join(value)
            elif isinstance(value, Mapping):
                text = ",".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            out[f.metadata["env"]] = text
        return out


def _env_of(name: str) -> str:
    return next(str(f.metadata["env"]) for f in fields(Settings) if f.name == name)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "config file not found") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc}") from exc
    section = data.get("cronswarm", data)
    if not isinstance(section, dict):
        raise ConfigError(str(path), "the [cronswarm] table must be a table")
    return section
