# Sourced by scripts/up.sh, scripts/test.sh and .ci/run: make sure this machine
# has what the project cannot get from PyPI, installing it with apt when we
# are root on Debian/Ubuntu, and saying what is missing otherwise.
#   need_python   Python >= 3.11 with venv and ensurepip (sets PYTHON)
#   need_chromium Debian's Chromium, for the browser tests (sets CHROMIUM)
#   need_faketime Debian's libfaketime: the fault tests run workers on clocks of
#                 their own (sets FAKETIME_LIB)
#   need_systemd_analyze Debian's systemd (only its systemd-analyze is used): the
#                 tests verify the units in deploy/systemd; no systemd need run

_apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "$@"
    else
        echo "$(basename "$0"): this machine needs: $*" \
             "(install them, e.g. apt-get install $*, or run this as root)" >&2
        exit 1
    fi
}

_python_ok() {
    "$1" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null
}

need_python() {
    PYTHON=${PYTHON:-python3}
    if _python_ok "$PYTHON"; then
        return
    fi
    if "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        _apt_install python3-venv
    else
        _apt_install python3 python3-venv python3-pip
        PYTHON=python3
    fi
    if ! _python_ok "$PYTHON"; then
        echo "$(basename "$0"): $PYTHON is not Python >= 3.11 with venv" >&2
        exit 1
    fi
}

need_chromium() {
    CHROMIUM=${CRONSWARM_CHROMIUM:-/usr/bin/chromium}
    if [ ! -x "$CHROMIUM" ]; then
        if [ -n "${CRONSWARM_CHROMIUM:-}" ]; then
            echo "$(basename "$0"): CRONSWARM_CHROMIUM=$CHROMIUM is not executable" >&2
            exit 1
        fi
        _apt_install chromium
    fi
}

need_faketime() {
    FAKETIME_LIB=${CRONSWARM_FAKETIME_LIB:-/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1}
    if [ ! -f "$FAKETIME_LIB" ]; then
        found=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n 1)
        if [ -n "$found" ]; then
            FAKETIME_LIB=$found
        else
            _apt_install faketime
            FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 | head -n 1)
        fi
    fi
    export CRONSWARM_FAKETIME_LIB=$FAKETIME_LIB
}

need_systemd_analyze() {
    if ! command -v systemd-analyze >/dev/null; then
        _apt_install systemd
    fi
}
