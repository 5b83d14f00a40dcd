#!/usr/bin/env bash
# The virtual environment (CPython 3.11, what the lock is made for) with uv in it, pinned with its
# hashes by requirements/uv.txt. Used by setup_env.sh before it installs the lock, and by `make lock`,
# which needs uv but not the stack. Idempotent: an environment with the locked uv is left as it is.
set -euo pipefail
VENV=$(realpath -m "${1:-.venv}")
cd "$(dirname "$0")/.."

# No pip settings of this machine or user take part (pip.conf, PIP_FIND_LINKS, constraints files).
for var in $(compgen -e); do case "$var" in PIP_*) unset "$var";; esac; done
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1

is311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }
if [ ! -x "$VENV/bin/python" ]; then
    if [ -z "${PYTHON:-}" ]; then
        for candidate in python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 && is311 "$candidate"; then PYTHON=$candidate; break; fi
        done
    fi
    if [ -z "${PYTHON:-}" ] || ! is311 "$PYTHON"; then
        echo "setup: the lock is made for Python 3.11, and no python3.11 was found (python3 is $(python3 -V 2>&1))." >&2
        echo "setup: install Python 3.11 (e.g. 'apt-get install python3.11 python3.11-venv', pyenv, or 'uv python install 3.11') or pass PYTHON=/path/to/python3.11." >&2
        exit 1
    fi
    "$PYTHON" -m venv "$VENV"
elif ! is311 "$VENV/bin/python"; then
    echo "setup: $VENV holds Python $("$VENV/bin/python" -V 2>&1 | cut -d' ' -f2), the lock is for 3.11: remove it (make clean) and run again." >&2
    exit 1
fi
WANT=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements/uv.txt)
if [ "$("$VENV/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install -q --no-deps --require-hashes --no-cache-dir -r requirements/uv.txt
fi
