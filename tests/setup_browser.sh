#!/usr/bin/env bash
# Installs Debian's Chromium for the report's browser tests (tests/test_dashboard*.py) when it is missing.
# `make test` runs it, so CI's fresh machine gets the browser from the distribution's packages: nothing
# is downloaded at test time. Needs root (CI runs as root) or sudo; without either it says so and the
# browser tests skip.
set -euo pipefail

if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser: no apt-get here; install Chromium yourself (or set CURATE_CHROMIUM) to run the browser tests" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "setup_browser: not root and no sudo; install chromium (apt-get install chromium) to run the browser tests" >&2
        exit 0
    fi
fi
echo "setup_browser: installing Debian's chromium (once)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# fonts-liberation: the metric-compatible fonts the report's charts are measured with
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-liberation
