"""Peak memory of `make demo`'s main run: vLLM's CPU defaults against pr-eval's sizing.

Runs the demo model on the bundled samples of zoom and the paper's four benchmarks (the first
command of scripts/demo.sh) in a fresh process, twice: with the engine settings pr-eval used
before (a quarter of RAM for the KV cache, vLLM's 4 GiB processed-image cache per process:
`--gpu-memory-utilization 0.25 --mm-cache-gb 4`) and with today's defaults (the KV cache sized
to the model, `pr_eval.engines.vllm.cpu_kv_cache_bytes`; a 1 GiB image cache). The summed
resident memory of the run's process tree (pr-eval and vLLM's engine processes) is sampled every
50 ms; the figure is its peak. Also prints wall seconds and the run's zoom score, which must not
change.

    python perf/demo_memory.py             # both, in turn
    python perf/demo_memory.py --whole     # also `bash scripts/demo.sh` (make demo's job)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PR_EVAL = [sys.executable, "-m", "pr_eval.cli"]
DEMO = ["--model", "demo", "--tasks", "zoom,vstar,tallyqa,infovqa,mvbench", "--data", "samples"]
BEFORE = ["--gpu-memory-utilization", "0.25", "--mm-cache-gb", "4"]


def measure(command: list[str]) -> dict:
    """Run `command`; its wall seconds, exit status and the peak RSS of its process tree (MiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, HF_HUB_OFFLINE="1"))
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        total = 0
        try:
            for proc in [root, *root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.05)
    return {"status": process.returncode, "wall_s": time.perf_counter() - started, "peak_mib": peak / 2 ** 20}


def zoom_score(output: Path) -> float | None:
    found = sorted(output.glob("*/results.json"))
    if not found:
        return None
    metrics = json.loads(found[-1].read_text())["metrics"]
    return metrics.get("pr_zoom", {}).get("accuracy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whole", action="store_true", help="also time scripts/demo.sh, make demo's whole job")
    args = parser.parse_args(argv)
    memory = psutil.virtual_memory()
    print(f"{platform.machine()}, {os.cpu_count()} cores, {memory.total / 2 ** 30:.0f} GiB RAM "
          f"({memory.available / 2 ** 30:.1f} GiB available), Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("before: 0.25 of RAM, 4 GiB image cache", BEFORE), ("now: sized to the model", [])):
            output = Path(tmp) / name.split(":")[0]
            result = measure([*PR_EVAL, *DEMO, *extra, "--output", str(output)])
            print(f"{name:42} exit {result['status']}  {result['wall_s']:7.1f} s  peak {result['peak_mib']:7.0f} MiB  "
                  f"zoom accuracy {zoom_score(output)}")
        if args.whole:
            result = measure(["bash", "scripts/demo.sh", str(Path(sys.executable).parents[1]), str(Path(tmp) / "demo")])
            print(f"{'scripts/demo.sh (make demo after set-up)':42} exit {result['status']}  {result['wall_s']:7.1f} s  "
                  f"peak {result['peak_mib']:7.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
