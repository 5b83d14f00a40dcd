#!/usr/bin/env bash
# The prepared GPU check: one short script for a machine with an NVIDIA GPU. From a clone:
#     bash scripts/gpu_check.sh                 (writes its log to $OUT, default results/gpu-check)
# 1. installs the GPU route from requirements/gpu.lock (CUDA vLLM 0.32.0) and times it; on a
#    machine that reaches no package index, set GPU_CHECK_PYTHON=/path/to/python of an environment
#    that already holds vLLM, and the check says which versions it ran with instead;
# 2. runs the tiny model on the bundled samples of the four benchmarks, and the trained demo model
#    as `make demo` does, through CUDA vLLM, printing the tables and each wall time;
# 3. counts the image tokens of V*-sized prompts (scripts/image_tokens.py): the protocol's pixel
#    bounds must reach the engine on CUDA as they do on the CPU build.
# Exit status: 0 when every step passed. Record its output in BENCHMARKS.md ("GPU check").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1

nvidia-smi -L || { echo "gpu-check: no NVIDIA GPU is visible (nvidia-smi -L failed); nothing to check"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t0=$(now)
if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
    PY=$GPU_CHECK_PYTHON
    echo "gpu-check: using the existing environment of $PY (not the lock)"
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || true
    BIN=$(dirname "$PY")
else
    VENV=${VENV:-.venv-gpu}
    ROUTE=gpu bash scripts/setup_env.sh "$VENV"
    PY=$VENV/bin/python
    BIN=$VENV/bin
    echo "gpu-check: set-up from requirements/gpu.lock took $(took "$t0") s"
fi
"$PY" - <<'EOF'
from importlib.metadata import version
import torch
print("gpu-check: versions:", ", ".join(f"{p} {version(p)}" for p in ("vllm", "torch", "torchvision", "transformers", "lmms-eval")))
print("gpu-check: torch sees", torch.cuda.device_count(), "GPU(s):", torch.cuda.get_device_name(0))
EOF

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
t=$(now)
"$BIN/pr-eval" --model tiny --tasks suite --data samples --output "$OUT/runs/tiny"
echo "gpu-check: tiny model on the four benchmarks' samples: $(took "$t") s wall"
t=$(now)
"$BIN/pr-eval" --model demo --tasks zoom,vstar,tallyqa,infovqa,mvbench --data samples --output "$OUT/runs/demo"
echo "gpu-check: demo model as make demo runs it: $(took "$t") s wall"
"$PY" scripts/image_tokens.py --model tiny
echo "gpu-check: done in $(took "$t0") s"
