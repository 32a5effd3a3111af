"""Settings of etcd's TLS and user: files read at load, pairs given together."""

from pathlib import Path

import pytest
import trustme

from cronswarm.common import ConfigError, Settings
from cronswarm.coord import etcd_store

BASE = {"CRONSWARM_ETCD_ENDPOINTS": "127.0.0.1:2379", "MONGODB_URI": "mongodb://x"}


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    leaf = ca.issue_cert("client")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "c.pem", "key": tmp_path / "c.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    leaf.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    return {k: str(v) for k, v in paths.items()}


def test_tls_and_user_settings_from_environment(pems: dict[str, str]) -> None:
    s = Settings.load({**BASE, "CRONSWARM_ETCD_CA_FILE": pems["ca"],
                       "CRONSWARM_ETCD_CERT_FILE": pems["cert"],
                       "CRONSWARM_ETCD_KEY_FILE": pems["key"],
                       "CRONSWARM_ETCD_USER": "cron", "CRONSWARM_ETCD_PASSWORD": "pw"})
    assert (s.etcd_ca_file, s.etcd_cert_file, s.etcd_key_file) == (
        pems["ca"], pems["cert"], pems["key"])
    assert (s.etcd_user, s.etcd_password) == ("cron", "pw")
    assert "'pw'" not in repr(s)
    store = etcd_store(s)
    assert store.tls is not None and store.tls.ca == Path(pems["ca"]).read_bytes()
    assert store.credentials is not None and store.credentials.user == "cron"
    assert "pw" not in repr(store.credentials)
    # Child processes get them back (cronswarm up, tests).
    env = s.env()
    assert env["CRONSWARM_ETCD_CA_FILE"] == pems["ca"]
    assert env["CRONSWARM_ETCD_PASSWORD"] == "pw"


def test_tls_and_user_settings_from_the_config_file(pems: dict[str, str],
                                                    tmp_path: Path) -> None:
    config = tmp_path / "cronswarm.toml"
    config.write_text(f'[cronswarm]\netcd_ca_file = "{pems["ca"]}"\n'
                      'etcd_user = "cron"\netcd_password = "pw"\n')
    s = Settings.load(BASE, config)
    assert (s.etcd_ca_file, s.etcd_user, s.etcd_password) == (pems["ca"], "cron", "pw")
    store = etcd_store(s)
    assert store.tls is not None and store.tls.cert is None  # TLS without a client cert


def test_without_tls_settings_the_store_is_plain() -> None:
    store = etcd_store(Settings.load(BASE))
    assert store.tls is None and store.credentials is None


@pytest.mark.parametrize("var", ["CRONSWARM_ETCD_CA_FILE", "CRONSWARM_ETCD_CERT_FILE",
                                 "CRONSWARM_ETCD_KEY_FILE"])
def test_a_missing_file_names_its_variable_and_path(var: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.pem")
    with pytest.raises(ConfigError) as exc:
        Settings.load({**BASE, var: missing})
    assert exc.value.setting == var
    assert missing in str(exc.value) and "No such file" in str(exc.value)


def test_an_unreadable_file_names_its_variable_and_path(pems: dict[str, str],
                                                        tmp_path: Path) -> None:
    # A directory: unreadable as a file for every user (root ignores modes).
    with pytest.raises(ConfigError) as exc:
        Settings.load({**BASE, "CRONSWARM_ETCD_CERT_FILE": pems["cert"],
                       "CRONSWARM_ETCD_KEY_FILE": str(tmp_path)})
    assert exc.value.setting == "CRONSWARM_ETCD_KEY_FILE"
    assert f"cannot read {str(tmp_path)!r}: Is a directory" in str(exc.value)


def test_a_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    der = tmp_path / "ca.der"
    der.write_bytes(b"\x30\x82\x01\x0a")
    with pytest.raises(ConfigError) as exc:
        Settings.load({**BASE, "CRONSWARM_ETCD_CA_FILE": str(der)})
    assert exc.value.setting == "CRONSWARM_ETCD_CA_FILE"
    assert "is not a PEM file" in str(exc.value)


@pytest.mark.parametrize(("given", "missing"), [
    ("CRONSWARM_ETCD_CERT_FILE", "CRONSWARM_ETCD_KEY_FILE"),
    ("CRONSWARM_ETCD_KEY_FILE", "CRONSWARM_ETCD_CERT_FILE"),
])
def test_certificate_and_key_go_together(given: str, missing: str,
                                         pems: dict[str, str]) -> None:
    path = pems["cert"] if given.endswith("CERT_FILE") else pems["key"]
    with pytest.raises(ConfigError) as exc:
        Settings.load({**BASE, "CRONSWARM_ETCD_CA_FILE": pems["ca"], given: path})
    assert exc.value.setting == missing
    assert f"is required when {given} is set" in str(exc.value)
    assert "mutual TLS needs the certificate and its key" in str(exc.value)


@pytest.mark.parametrize(("given", "missing"), [
    ("CRONSWARM_ETCD_USER", "CRONSWARM_ETCD_PASSWORD"),
    ("CRONSWARM_ETCD_PASSWORD", "CRONSWARM_ETCD_USER"),
])
def test_user_and_password_go_together(given: str, missing: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.load({**BASE, given: "x"})
    assert exc.value.setting == missing
    assert "etcd authentication needs a user and a password" in str(exc.value)


def test_pairs_are_checked_for_overrides_too() -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.load(BASE, etcd_user="cron")
    assert exc.value.setting == "CRONSWARM_ETCD_PASSWORD"


def test_an_empty_user_in_the_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "cronswarm.toml"
    config.write_text('etcd_user = " "\netcd_password = "pw"\n')
    with pytest.raises(ConfigError) as exc:
        Settings.load(BASE, config)
    assert "etcd_user" in exc.value.setting and "must not be empty" in str(exc.value)
