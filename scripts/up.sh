#!/usr/bin/env bash
# Install cronswarm into .venv and start the whole system locally: etcd, a
# MongoDB-protocol server, one master and two workers. Prints the dashboard
# URL and an admin token; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
need_python
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[services]'
exec .venv/bin/cronswarm up "$@"
