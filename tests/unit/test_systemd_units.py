"""The systemd units in deploy/systemd pass ``systemd-analyze verify`` and say
what the operator guide says; their env files name only real settings.

What is checked, honestly: ``systemd-analyze verify`` needs the ExecStart
binary to exist, and the units name the installed path
``/usr/local/bin/cronswarm``; so it verifies a copy whose ExecStart points at
this environment's ``cronswarm`` instead (nothing else is changed). It checks
the units' syntax, every key and value, and that the command exists; it does
not check that the ``cronswarm`` user exists or start anything (that is
``tests/integration/test_systemd_layout.py``). It needs no systemd running as
PID 1. ``systemd-analyze`` comes from Debian's ``systemd`` package
(``scripts/bootstrap.sh`` installs it); a machine without it fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from cronswarm.common import Settings
from tests.units import (
    INSTALLED_BINARY,
    ROOT,
    SYSTEMD_DIR,
    UNITS,
    example_env,
    exec_start,
    read_env_file,
    service,
)

SETTINGS = {f.metadata["env"] for f in fields(Settings)}
# Variables of the job's environment or of the CLI client, not settings.
NOT_SETTINGS = {"CRONSWARM_RUN_ID", "CRONSWARM_URL", "CRONSWARM_TOKEN"}


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: apt-get install systemd (scripts/bootstrap.sh)"
    return found


def verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           # warnings are printed at this level: none may be hidden
           "SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([systemd_analyze(), "verify", *map(str, units)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def local_copy(unit: Path, directory: Path, extra: str = "") -> Path:
    """``unit`` with ExecStart's binary pointing at this environment's cronswarm."""
    binary = Path(sys.executable).parent / "cronswarm"
    assert binary.exists(), binary
    text = unit.read_text()
    assert INSTALLED_BINARY in text
    copy = directory / unit.name
    copy.write_text(text.replace(INSTALLED_BINARY, str(binary)) + extra)
    return copy


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    copies = [local_copy(SYSTEMD_DIR / name, tmp_path) for name in UNITS]
    result = verify(copies)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_does_report_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a wrong key, and a missing binary, are reported."""
    bad = local_copy(SYSTEMD_DIR / UNITS[1], tmp_path, "\n[Service]\nKilMode=mixed\n")
    assert "Unknown key 'KilMode'" in (verify([bad]).stderr)
    missing = tmp_path / "missing" / UNITS[0]
    missing.parent.mkdir()
    missing.write_text((SYSTEMD_DIR / UNITS[0]).read_text().replace(
        INSTALLED_BINARY, str(tmp_path / "no-such-cronswarm")))
    result = verify([missing])
    assert result.returncode != 0 and "is not executable" in result.stderr


def test_the_units_run_as_the_guide_says() -> None:
    master, worker = (service(SYSTEMD_DIR / name) for name in UNITS)
    for unit, role in ((master, "master"), (worker, "worker")):
        assert exec_start(SYSTEMD_DIR / f"cronswarm-{role}.service") == [
            INSTALLED_BINARY, role]
        assert unit["EnvironmentFile"] == [f"/etc/cronswarm/{role}.env"]
        assert unit["User"] == ["cronswarm"] and unit["Restart"] == ["on-failure"]
        assert unit["NoNewPrivileges"] == ["yes"]
    # The worker drains on SIGTERM: the signal goes to it alone (its runs'
    # processes are its to stop), and systemd waits longer than the drain.
    assert worker["KillMode"] == ["mixed"]
    defaults = Settings.load({"CRONSWARM_ETCD_ENDPOINTS": "h:1", "MONGODB_URI": "mongodb://h"})
    env = example_env(SYSTEMD_DIR / UNITS[1])
    grace = float(env.get("CRONSWARM_SHUTDOWN_GRACE", defaults.shutdown_grace))
    default_kill_grace = 5
    assert int(worker["TimeoutStopSec"][0]) >= grace + default_kill_grace + 15


def test_env_files_and_the_guide_name_only_real_settings() -> None:
    named: dict[str, set[str]] = {}
    for path in sorted(SYSTEMD_DIR.glob("*.env.example")):
        named[path.name] = set(read_env_file(path))
    guide = (ROOT / "docs" / "deploy.md").read_text()
    named["docs/deploy.md"] = set(re.findall(r"\b(?:CRONSWARM_[A-Z0-9_]+|MONGODB_URI)\b",
                                             guide))
    for where, names in named.items():
        unknown = names - SETTINGS - NOT_SETTINGS
        assert not unknown, f"{where} names settings that do not exist: {sorted(unknown)}"
    master_env, worker_env = (named[f"{r}.env.example"] for r in ("master", "worker"))
    assert {"CRONSWARM_ETCD_ENDPOINTS", "MONGODB_URI", "CRONSWARM_SECRET_KEY"} <= (
        master_env & worker_env)
