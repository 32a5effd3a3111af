"""Reading the systemd units and env files of ``deploy/systemd`` as systemd
would, enough to run their commands in tests (no systemd needed)."""

from __future__ import annotations

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD_DIR = ROOT / "deploy" / "systemd"
UNITS = ("cronswarm-master.service", "cronswarm-worker.service")
INSTALLED_BINARY = "/usr/local/bin/cronswarm"


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file, each a list of (key, value) in order (keys repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {line!r} is not key=value"
        current.append((key.strip(), value.strip()))
    return sections


def service(path: Path) -> dict[str, list[str]]:
    """The [Service] section: each key with all its values."""
    out: dict[str, list[str]] = {}
    for key, value in read_unit(path)["Service"]:
        out.setdefault(key, []).append(value)
    return out


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as systemd's EnvironmentFile= reads ours (comments,
    blank lines, optional quotes around the value)."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        assert sep and key.strip().isidentifier(), f"{path}: {line!r} is not KEY=VALUE"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def exec_start(path: Path) -> list[str]:
    (command,) = service(path)["ExecStart"]
    return shlex.split(command)


def example_env(unit: Path) -> dict[str, str]:
    """The example env file of a unit: /etc/cronswarm/master.env ->
    deploy/systemd/master.env.example."""
    (env_file,) = service(unit)["EnvironmentFile"]
    return read_env_file(SYSTEMD_DIR / (Path(env_file.lstrip("-")).name + ".example"))
