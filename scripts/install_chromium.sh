#!/usr/bin/env bash
# Headless Chromium for the report's browser test (tests/test_report.py), from Debian's packages.
# Best effort: without root (or passwordless sudo) it says so, and that test is skipped with the reason.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "setup: chromium not installed and no root: the report's browser test will be skipped" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no apt-get: install Chromium yourself for the report's browser test" >&2
    exit 0
fi
echo "setup: installing Debian's chromium (headless report test)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "setup: could not install chromium; the report's browser test will be skipped" >&2
exit 0
