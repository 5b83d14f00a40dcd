#!/usr/bin/env bash
# `make demo`: the trained demo model (pr_eval/demo_model) on its synthetic zoom benchmark and on
# the bundled samples of the four benchmarks under the paper's protocol, then on zoom under the
# blind-tool ablation (crops return the uncropped picture), then the two compared question by
# question. Nothing is downloaded; the run folders land under results/demo/.
set -euo pipefail
VENV=${1:-.venv}
OUT=${2:-results/demo}
PR="$VENV/bin/pr-eval"
newest() { ls -d "$1"/*/ | sort | tail -1; }

"$PR" --model demo --tasks zoom,vstar,tallyqa,infovqa,mvbench --data samples --output "$OUT/pixel-reasoner-v3" --resume auto
"$PR" --model demo --tasks zoom --protocol blind-tool --data samples --output "$OUT/blind-tool" --resume auto
echo
echo "== zoom: blind-tool (A) against pixel-reasoner-v3 (B): what zooming buys =="
# The protocols differ on purpose: compare's warning saying so is expected here, its errors are not.
"$PR" compare "$(newest "$OUT/blind-tool")" "$(newest "$OUT/pixel-reasoner-v3")" 2> >(grep -v "the protocols differ" >&2)
echo
echo "report: $(newest "$OUT/pixel-reasoner-v3")report.html"
