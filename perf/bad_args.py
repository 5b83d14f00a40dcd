"""How long `pr-eval` takes to refuse a bad command line, and to print a command's --help.

Each case is the installed `pr-eval` script as a user runs it, a fresh process, `--runs` times;
prints the median and the largest wall time, the exit status and the line count of stderr. The
target: every bad command line exits 2 with one line in under 2 s (issue 26 measured 8-40 s for
some of these on a loaded machine, and 19-20 s for `ask --help`).

    python perf/bad_args.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PR_EVAL = str(Path(sys.executable).parent / "pr-eval")
CASES = [
    ["--model", "tiny", "--tasks", "vstr"],
    ["--model", "tiny", "--tasks", "vstar", "--engine", "openai", "--base-url", "gpu1:8000"],
    ["--model", "tiny", "--tasks", "zoom"],
    ["--model", "tiny", "--tasks", "vstar", "--output", "/dev/null/runs"],
    ["--model", "tiny", "--tasks", "vstar", "--protocol", "pixel-reasoner-v2"],
    ["ask", "--model", "demo", "--image", "/nonexistent.png", "what?"],
    ["compare", "/nonexistent/a", "/nonexistent/b"],
    ["--help"],
    ["ask", "--help"],
    ["compare", "--help"],
    ["check", "--help"],
    ["submit", "--help"],
    ["report", "--help"],
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {args.runs} runs each")
    for case in CASES:
        times, status, lines = [], None, None
        for _ in range(args.runs):
            started = time.perf_counter()
            done = subprocess.run([PR_EVAL, *case], capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
            times.append(time.perf_counter() - started)
            status, lines = done.returncode, len(done.stderr.strip().splitlines())
        print(f"{' '.join(case)[:70]:72} exit {status}  stderr lines {lines}  "
              f"median {statistics.median(times):5.2f} s  max {max(times):5.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
