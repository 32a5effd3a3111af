from pathlib import Path

import pytest

from cronswarm.common import ConfigError, Settings

BASE = {"CRONSWARM_ETCD_ENDPOINTS": "127.0.0.1:2379", "MONGODB_URI": "mongodb://x"}


def test_required_settings_name_their_variable() -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.load({"MONGODB_URI": "mongodb://x"})
    assert "CRONSWARM_ETCD_ENDPOINTS" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        Settings.load({"CRONSWARM_ETCD_ENDPOINTS": "h:1"})
    assert "MONGODB_URI" in str(exc.value)


def test_environment_parses_types() -> None:
    s = Settings.load({**BASE, "CRONSWARM_ETCD_ENDPOINTS": "http://a:1, b:2",
                       "CRONSWARM_WORKER_LABELS": "zone=eu,gpu=yes",
                       "CRONSWARM_LEASE_TTL": "7", "CRONSWARM_KEY_PREFIX": "jobs/prod/"})
    assert s.etcd_endpoints == ("a:1", "b:2")
    assert dict(s.worker_labels) == {"zone": "eu", "gpu": "yes"}
    assert s.lease_ttl == 7
    assert s.key_prefix == "/jobs/prod"


@pytest.mark.parametrize(
    ("var", "value"),
    [("CRONSWARM_LEASE_TTL", "0"), ("CRONSWARM_MASTER_PORT", "70000"),
     ("CRONSWARM_ETCD_ENDPOINTS", "nohostport"), ("CRONSWARM_KEY_PREFIX", "/a/../b"),
     ("CRONSWARM_WORKER_LABELS", "novalue"), ("CRONSWARM_ALLOW_RUN_AS", "maybe"),
     ("CRONSWARM_OUTPUT_HEAD_BYTES", "0"), ("CRONSWARM_OUTPUT_TAIL_BYTES", str((2 << 20) + 1)),
     ("CRONSWARM_SECURE_COOKIES", "sometimes"), ("CRONSWARM_TRUSTED_PROXY_HOPS", "-1"),
     ("CRONSWARM_AUTH_FAILURE_LIMIT", "0"), ("CRONSWARM_HTTP_DENY_LOCAL", "maybe")],
)
def test_bad_values_name_their_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.load({**BASE, var: value})
    assert exc.value.setting == var


def test_toml_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[cronswarm]\nmaster_port = 9000\nlease_ttl = 4\n'
                    'etcd_endpoints = ["h1:1", "h2:2"]\nmongodb_uri = "mongodb://f"\n')
    s = Settings.load({"CRONSWARM_LEASE_TTL": "6"}, path)
    assert (s.master_port, s.lease_ttl, s.etcd_endpoints) == (9000, 6, ("h1:1", "h2:2"))
    path.write_text("unknown_key = 1\n")
    with pytest.raises(ConfigError) as exc:
        Settings.load(BASE, path)
    assert "unknown_key" in str(exc.value)
    with pytest.raises(ConfigError):
        Settings.load(BASE, tmp_path / "missing.toml")


def test_env_round_trip() -> None:
    s = Settings.load({**BASE, "CRONSWARM_WORKER_LABELS": "a=1"})
    assert Settings.load(s.env()) == s


def test_production_settings_default_and_parse() -> None:
    s = Settings.load(BASE)
    assert (s.secure_cookies, s.trusted_proxy_hops, s.auth_failure_limit, s.metrics_token,
            s.http_deny_local) == (False, 0, 10, None, False)
    s = Settings.load({**BASE, "CRONSWARM_SECURE_COOKIES": "true",
                       "CRONSWARM_TRUSTED_PROXY_HOPS": "2", "CRONSWARM_AUTH_FAILURE_LIMIT": "5",
                       "CRONSWARM_METRICS_TOKEN": "scrape", "CRONSWARM_HTTP_DENY_LOCAL": "yes"})
    assert (s.secure_cookies, s.trusted_proxy_hops, s.auth_failure_limit, s.metrics_token,
            s.http_deny_local) == (True, 2, 5, "scrape", True)


def test_live_stream_limits_default_parse_and_refuse_zero() -> None:
    s = Settings.load(BASE)
    assert (s.live_streams_per_viewer, s.live_streams_total) == (4, 64)
    s = Settings.load({**BASE, "CRONSWARM_LIVE_STREAMS_PER_VIEWER": "2",
                       "CRONSWARM_LIVE_STREAMS_TOTAL": "10"})
    assert (s.live_streams_per_viewer, s.live_streams_total) == (2, 10)
    for var in ("CRONSWARM_LIVE_STREAMS_PER_VIEWER", "CRONSWARM_LIVE_STREAMS_TOTAL"):
        with pytest.raises(ConfigError) as exc:
            Settings.load({**BASE, var: "0"})
        assert exc.value.setting == var
