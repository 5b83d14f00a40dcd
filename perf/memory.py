"""Peak memory of a run against its size: a 2,000-question run must stay within 1.2x of a 200 one.

Images load one sample at a time and finished trajectories hold no pixels, so a run's memory
should not grow with the number of questions beyond their text. Each size runs in its own
process (through `pr_eval.run.evaluate.evaluate`: lmms-eval, the model adapter, the loop and the real
vLLM engine with the tiny model), on V*-schema data generated here: 40 realistic images
(1200x900 to 2000x1500 JPEGs) that N rows refer to in turn, every third question forced to crop
once before answering. The peak resident memory of the run's whole process tree (our process
plus vLLM's engine processes) is sampled every 50 ms.

    python perf/memory.py                      # 200 and 2000 questions, writes BENCHMARKS.md
    python perf/memory.py --sizes 100,400 --no-write
    python perf/memory.py --hrbench8k          # a >= 1 GB HR-Bench-8K TSV against 10% of it

With --hrbench8k the data is an HR-Bench-8K-schema TSV (7680x4320 noise JPEGs in base64, each
asked in 4 option rotations whose rows name the first row's image, as VLMEvalKit writes them),
made once before the runs: the whole file (at least 1 GB) and a file of 10% of its questions.
Each image is about 33 MP, so the protocol's input resize (to at most 6,272,000 pixels) runs on
every question; the TSV is indexed once and each image decoded when its question starts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Memory against run size"
TSV_SECTION = "## Memory against the size of a TSV benchmark (HR-Bench 8K schema)"


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


def make_hrbench8k(folder: Path, images: int, seed: int = 0) -> Path:
    """DIR/hrbench8k/hr_bench_8k.tsv with `images` 8K noise JPEGs, 4 rotations each; written a row
    at a time (csv quoting as pandas writes it)."""
    import base64
    import csv
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = folder / "hrbench8k"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "hr_bench_8k.tsv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "question", "answer", "category", "A", "B", "C", "D", "cycle_category", "image"])
        for k in range(images):
            pixels = rng.integers(0, 256, size=(4320, 7680, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
            encoded = base64.b64encode(buffer.getvalue()).decode()
            del pixels, buffer
            for rotation in range(4):
                index = 4 * k + rotation
                options = ["red", "green", "blue", "yellow"][rotation:] + ["red", "green", "blue", "yellow"][:rotation]
                writer.writerow([index, "What color is the small square?", "ABCD"[options.index("red")],
                                 "single" if k % 2 == 0 else "cross", *options, k,
                                 encoded if rotation == 0 else str(4 * k)])
    return folder


class PeakSampler(threading.Thread):
    """Largest summed RSS of this process and its descendants (with `children`; else of this
    process alone), sampled every `interval` s."""

    def __init__(self, interval: float = 0.05, children: bool = True):
        super().__init__(daemon=True)
        import psutil

        self.me, self.interval, self.peak, self.stop = psutil.Process(), interval, 0, threading.Event()
        self.children = children

    def run(self):
        import psutil

        while not self.stop.is_set():
            total = 0
            for proc in [self.me, *(self.me.children(recursive=True) if self.children else [])]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.interval)


def one_run(n: int, data: str | None = None, batch_size: int = 64, mm_cache_gb: float | None = None) -> dict:
    """Run n V* questions (or, with `data`, the HR-Bench 8K TSV there) in this process; returns
    the measurements."""
    import resource

    from pr_eval.models import resolve_model
    from pr_eval.run.evaluate import evaluate
    from pr_eval.loop.tools import crop_call

    task = "pr_hrbench8k" if data else "pr_vstar"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PR_EVAL_DATA"] = data or str(make_data(Path(tmp) / "data", n))
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # the TSV index is built in the run
        model = resolve_model("tiny")
        crop = crop_call([0.3, 0.3, 0.6, 0.6])

        def guide(traj):  # every third question crops once, then all answer
            number = int(re.findall(r"\d+", traj.sample_id)[-1])
            if not traj.generations and number % 3 == 0:
                return re.escape(crop)
            return r"\\boxed\{[A-D]\}"

        sampler = PeakSampler()
        sampler.start()
        started = time.perf_counter()
        run = evaluate(model="tiny", model_path=model, tasks=[task], output=Path(tmp) / "out", guide=guide,
                       batch_size=batch_size, engine_args={"mm_cache_gb": mm_cache_gb})
        seconds = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        samples = run.counts[task]
    return {"n": n, "samples": samples, "seconds": round(seconds, 1),
            "peak_tree_mib": round(sampler.peak / 2**20),
            "peak_main_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rapr": run.metrics[task]["rapr"], "tsv_mb": round(_tsv_size(data) / 1e6) if data else None}


def _tsv_size(data: str) -> int:
    return (Path(data) / "hrbench8k" / "hr_bench_8k.tsv").stat().st_size


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


def command_line(script: str, argv=None) -> str:
    """How a benchmark was run, for its section: `python perf/<script> [ARGS]`."""
    raw = sys.argv[1:] if argv is None else list(argv)
    return f"python perf/{script}" + (" " + shlex.join(raw) if raw else "")


def publish(text: str, no_write: bool) -> None:
    """A benchmark's section: printed with --no-write, else put into BENCHMARKS.md (and said so)."""
    if no_write:
        print(text)
    else:
        write_section(text)
        print(f"wrote {ROOT / 'BENCHMARKS.md'}")


def write_section(text: str) -> None:
    """Put a section into BENCHMARKS.md: replace the one with the same heading, or append it."""
    heading = text.splitlines()[0]
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n\nNumbers recorded by the scripts in `perf/`.\n"
    if heading + "\n" in current:
        head, _, rest = current.partition(heading + "\n")
        tail = rest[rest.find("\n## ") + 1:] if "\n## " in rest else ""
        current = head + text + ("\n" + tail if tail else "")
    else:
        current = current.rstrip() + "\n\n" + text
    path.write_text(current.rstrip() + "\n")


def write_tsv(results: list[dict], command: str, batch_size: int, mm_cache_gb: float | None) -> None:
    small, large = results[0], results[-1]
    ratio = large["peak_tree_mib"] / small["peak_tree_mib"]
    main_ratio = large["peak_main_mib"] / small["peak_main_mib"]
    lines = [TSV_SECTION, "", f"Command: `{command}`  ", f"Machine: {machine()}  ",
             f"Date: {time.strftime('%Y-%m-%d')}", "",
             "Each image 7680x4320 (33 MP), shown within the protocol's 6,272,000 pixels; one crop every third "
             f"question; the tiny model; {batch_size} trajectories open at once (both runs fill that); vLLM's "
             f"processed-image cache {'its default 4 GiB' if mm_cache_gb is None else f'{mm_cache_gb:g} GiB'} "
             "per process.", "",
             "| TSV (MB) | questions | wall s | peak RSS, process tree (MiB) | peak RSS, pr-eval process (MiB) | RaPR |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['tsv_mb']} | {r['samples']} | {r['seconds']} | {r['peak_tree_mib']} | {r['peak_main_mib']} | "
              f"{r['rapr']:.2f} |" for r in results]
    lines += ["", f"Ratio full / 10%: {ratio:.3f} (process tree), {main_ratio:.3f} (pr-eval process). "
              f"Target: at most 1.2. {'Met.' if ratio <= 1.2 else 'NOT met.'}", ""]
    write_section("\n".join(lines))


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
    parser.add_argument("--hrbench8k", action="store_true", help="an HR-Bench-8K TSV of >= 1 GB against 10%% of it")
    parser.add_argument("--images", type=int, default=50, help="with --hrbench8k: distinct 8K images (default 50)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="trajectories open at once (default: pr-eval's 64; --hrbench8k: 8, so both runs fill it)")
    parser.add_argument("--mm-cache-gb", type=float, default=None,
                        help="vLLM's processed-image cache per process (default: vLLM's 4 GiB)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    if args.one:
        print("RESULT " + json.dumps(one_run(args.one, args.data, args.batch_size or 64, args.mm_cache_gb)), flush=True)
        return 0
    if args.hrbench8k:
        return tsv_runs(args, argv)
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        result = child_run(["--one", str(n)])
        if result is None:
            return 1
        results.append(result)
    if not args.no_write:
        write(results, "python perf/memory.py" + (f" --sizes {args.sizes}" if argv else ""))
    return 0


def child_run(arguments: list[str]) -> dict | None:
    """One measured run in its own process: its RESULT line, printed; None (its stderr printed)
    when it gave none."""
    out = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        print(out.stderr[-4000:], file=sys.stderr)
        return None
    result = json.loads(line[len("RESULT "):])
    print(result, flush=True)
    return result


def tsv_runs(args, argv) -> int:
    """The HR-Bench 8K memory runs: 10% of the questions, then all, each in its own process."""
    results = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("PR_EVAL_BENCH_TMP")) as tmp:
        small = make_hrbench8k(Path(tmp) / "small", max(1, args.images // 10), seed=1)
        large = make_hrbench8k(Path(tmp) / "large", args.images, seed=2)
        for folder, n in ((small, max(1, args.images // 10)), (large, args.images)):
            settings = ["--batch-size", str(args.batch_size or 8)]
            settings += ["--mm-cache-gb", str(args.mm_cache_gb)] if args.mm_cache_gb is not None else []
            result = child_run(["--one", str(n * 4), "--data", str(folder), *settings])
            if result is None:
                return 1
            results.append(result)
    if not args.no_write:
        write_tsv(results, "python perf/memory.py --hrbench8k" + (f" --images {args.images}" if args.images != 50 else "")
                  + (f" --batch-size {args.batch_size}" if args.batch_size else "")
                  + (f" --mm-cache-gb {args.mm_cache_gb:g}" if args.mm_cache_gb is not None else ""),
                  args.batch_size or 8, args.mm_cache_gb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
