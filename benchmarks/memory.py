"""Peak memory of a run against its size: a 2,000-question run must stay within 1.2x of a 200 one.

Images load one sample at a time and finished trajectories hold no pixels, so a run's memory
should not grow with the number of questions beyond their text. Each size runs in its own
process (through `pr_eval.runner.evaluate`: lmms-eval, the model adapter, the loop and the real
vLLM engine with the tiny model), on V*-schema data generated here: 40 realistic images
(1200x900 to 2000x1500 JPEGs) that N rows refer to in turn, every third question forced to crop
once before answering. The peak resident memory of the run's whole process tree (our process
plus vLLM's engine processes) is sampled every 50 ms.

    python benchmarks/memory.py                      # 200 and 2000 questions, writes BENCHMARKS.md
    python benchmarks/memory.py --sizes 100,400 --no-write
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Memory against run size"


def make_data(folder: Path, n: int) -> Path:
    """DIR/vstar/ with n rows over 40 generated images (the sample generator's images)."""
    import pandas as pd

    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "scripts" / "make_samples.py")
    make_samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_samples)
    base = folder / "vstar"
    make_samples.make_vstar(base, n_attribute=27, n_spatial=13, seed=1)
    parquet = next(base.glob("*.parquet"))
    rows = pd.read_parquet(parquet)
    many = pd.concat([rows] * (n // len(rows) + 1), ignore_index=True).iloc[:n].copy()
    many["qid"] = [f"{q}-copy{i}" for i, q in enumerate(many.qid)]
    parquet.unlink()
    many.to_parquet(base / "vstar.parquet", index=False)
    return folder


class PeakSampler(threading.Thread):
    """Largest summed RSS of this process and its descendants, sampled every `interval` s."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        import psutil

        self.me, self.interval, self.peak, self.stop = psutil.Process(), interval, 0, threading.Event()

    def run(self):
        import psutil

        while not self.stop.is_set():
            total = 0
            for proc in [self.me, *self.me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.interval)


def one_run(n: int) -> dict:
    """Run n questions in this process; returns the measurements."""
    import resource

    from pr_eval.models import resolve_model
    from pr_eval.runner import evaluate
    from pr_eval.tools import crop_call

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PR_EVAL_DATA"] = str(make_data(Path(tmp) / "data", n))
        model = resolve_model("tiny")
        crop = crop_call([0.3, 0.3, 0.6, 0.6])

        def guide(traj):  # every third question crops once, then all answer
            if not traj.generations and int(traj.sample_id.rsplit("copy", 1)[1]) % 3 == 0:
                return re.escape(crop)
            return r"\\boxed\{[AB]\}"

        sampler = PeakSampler()
        sampler.start()
        started = time.perf_counter()
        run = evaluate(model="tiny", model_path=model, tasks=["pr_vstar"], output=Path(tmp) / "out", guide=guide)
        seconds = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        samples = run.counts["pr_vstar"]
    return {"n": n, "samples": samples, "seconds": round(seconds, 1),
            "peak_tree_mib": round(sampler.peak / 2**20),
            "peak_main_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rapr": run.metrics["pr_vstar"]["rapr"]}


def machine() -> str:
    """The machine a benchmark ran on, in one line (both benchmarks record it)."""
    import psutil

    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception:  # pragma: no cover
        gpu = "no GPU"
    return (f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
            f"Python {platform.python_version()}, {gpu}")


def write_section(text: str) -> None:
    """Put a section into BENCHMARKS.md: replace the one with the same heading, or append it."""
    heading = text.splitlines()[0]
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n\nNumbers recorded by the scripts in `benchmarks/`.\n"
    if heading + "\n" in current:
        head, _, rest = current.partition(heading + "\n")
        tail = rest[rest.find("\n## ") + 1:] if "\n## " in rest else ""
        current = head + text + ("\n" + tail if tail else "")
    else:
        current = current.rstrip() + "\n\n" + text
    path.write_text(current.rstrip() + "\n")


def write(results: list[dict], command: str) -> None:
    small, large = results[0], results[-1]
    ratio = large["peak_tree_mib"] / small["peak_tree_mib"]
    main_ratio = large["peak_main_mib"] / small["peak_main_mib"]
    lines = [SECTION, "", f"Command: `{command}`  ", f"Machine: {machine()}  ",
             f"Date: {time.strftime('%Y-%m-%d')}", "",
             "| questions | wall s | peak RSS, process tree (MiB) | peak RSS, pr-eval process (MiB) | RaPR |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['samples']} | {r['seconds']} | {r['peak_tree_mib']} | {r['peak_main_mib']} | {r['rapr']:.2f} |"
              for r in results]
    lines += ["", f"Ratio {large['samples']} / {small['samples']}: {ratio:.3f} (process tree), "
              f"{main_ratio:.3f} (pr-eval process). Target: at most 1.2. "
              f"{'Met.' if ratio <= 1.2 else 'NOT met.'}", ""]
    write_section("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200,2000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    if args.one:
        print("RESULT " + json.dumps(one_run(args.one)), flush=True)
        return 0
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(out.stderr[-4000:], file=sys.stderr)
            return 1
        results.append(json.loads(line[len("RESULT "):]))
        print(results[-1], flush=True)
    if not args.no_write:
        write(results, "python benchmarks/memory.py" + (f" --sizes {args.sizes}" if argv else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
