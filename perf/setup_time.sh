#!/usr/bin/env bash
# Fresh set-up time, before and after, on one machine in one run: `make setup` in a fresh clone of
# BASE (default a5927c4, the last commit before the lock: pip, no lock) and of HEAD (uv from the
# lock), each with an empty package cache, then the time one engine process takes to import vLLM
# in each environment (bytecode compiled at install or not). Prints a Markdown table for
# BENCHMARKS.md ("Fresh set-up").
#     bash perf/setup_time.sh [BASE] [HEAD]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${1:-a5927c4}
HEAD=${2:-HEAD}
WORK=$(mktemp -d /tmp/pr-eval-setup-time.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
secs() { /usr/bin/time -f %e -o "$WORK/t" "$@" >"$WORK/log" 2>&1 || { tail -20 "$WORK/log" >&2; exit 1; }; cat "$WORK/t"; }

row() {  # name rev
    git clone -q "$ROOT" "$WORK/$1" && git -C "$WORK/$1" checkout -q "$2"
    local setup import
    # An empty cache for both installers: what a new machine pays.
    setup=$(cd "$WORK/$1" && UV_CACHE_DIR="$WORK/uv-cache-$1" PIP_NO_CACHE_DIR=1 secs make setup)
    import=$(cd "$WORK/$1" && secs .venv/bin/python -c "import vllm.v1.engine.core")
    echo "| $1 ($(git -C "$WORK/$1" rev-parse --short HEAD)) | $setup | $import |"
    rm -rf "$WORK/$1" "$WORK/uv-cache-$1"
}

echo "| set-up | fresh \`make setup\` s | import of vLLM's engine core, s |"
echo "|---|---|---|"
row before "$BASE"
row after "$HEAD"
