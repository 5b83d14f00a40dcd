"""Client shards on one machine: harness questions/s with 1, 2 and 4 `--shard K/N` processes
against the instant engine, beside one unsharded process; and what one process gains from a
second core (taskset 1 vs 2 cores).

    python perf/shards.py                  # writes its section of BENCHMARKS.md
    python perf/shards.py --samples 48 --no-write

Workload: perf/ceiling.py's (V*-sized photos, 0-4 crops a question, every turn answered at once),
so what is measured is pr-eval's own work: lmms-eval, image decode and resize, crops, the store,
scoring. Each shard is its own process (`python perf/shards.py --worker K/N`), as a Slurm array
task or a Ray task would be; the N start together and the wall time runs from the first start to
the last exit, start-up (imports, lmms-eval's task set-up) included, as a user pays it. Each
process's peak resident memory is read from the OS (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "perf"))
from memory import publish  # noqa: E402  (the memory benchmark's helpers)


def worker(shard: str | None, data: Path, out: Path, n: int) -> None:
    from ceiling import InstantEngine

    from pr_eval.data.shards import parse
    from pr_eval.run.evaluate import evaluate

    os.environ["PR_EVAL_DATA"] = str(data)
    evaluate(model="instant", model_path="instant", tasks=["pr_vstar"], limit=n, output=out, engine=InstantEngine(),
             batch_size=64, shard=parse(shard) if shard else None)


def launch(count: int | None, data: Path, out: Path, n: int, cores: str | None = None) -> tuple[float, list[float]]:
    """(wall seconds, each process's peak RSS in MiB) of `count` shard processes (None: one unsharded)."""
    shards = [None] if count is None else [f"{k}/{count}" for k in range(count)]
    started = time.perf_counter()
    procs = []
    for shard in shards:
        cmd = [sys.executable, __file__, "--worker", shard or "-", "--data", str(data), "--out", str(out),
               "--samples", str(n)]
        if cores:
            cmd = ["taskset", "-c", cores, *cmd]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    peaks = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"a shard process failed ({proc.args})")
        peaks.append(usage.ru_maxrss / 1024)
    return time.perf_counter() - started, peaks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=96, help="questions in the run (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds, each running every configuration once, interleaved; the median wall time "
                             "counts (default %(default)s)")
    parser.add_argument("--no-write", action="store_true", help="print the section, do not write BENCHMARKS.md")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(None if args.worker == "-" else args.worker, Path(args.data), Path(args.out), args.samples)
        return 0
    from ceiling import make_data

    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data", args.samples)
        launch(None, data, Path(tmp) / "warm", 4)  # the first start pays the disk cache
        configs = (("1 process, unsharded", None, None), ("1 shard of 1", 1, None), ("2 shards", 2, None),
                   ("4 shards", 4, None), ("1 process on 1 core (taskset)", None, "0"),
                   ("1 process on 2 cores (taskset)", None, "0,1"))
        walls = {label: [] for label, _, _ in configs}
        peaks = {label: 0.0 for label, _, _ in configs}
        for round_ in range(args.repeats):  # interleaved: a slow spell of the machine hits every row alike
            for label, count, cores in configs:
                wall, peak = launch(count, data, Path(tmp) / f"out-{round_}-{len(walls[label])}-{label[:1]}",
                                    args.samples, cores)
                walls[label].append(wall)
                peaks[label] = max(peaks[label], max(peak))
        rows = []
        for label, _, _ in configs:
            wall = sorted(walls[label])[len(walls[label]) // 2]
            rows.append((label, wall, args.samples / wall, peaks[label], walls[label]))
    base = rows[0][2]
    lines = ["## Client shards: `--shard K/N` processes on one machine", "",
             f"Command: `python perf/shards.py --samples {args.samples} --repeats {args.repeats}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, no GPU  ",
             f"Date: {time.strftime('%Y-%m-%d')}", "",
             f"{args.samples} V*-sized questions (perf/ceiling.py's workload) against the instant engine; wall time "
             "from the first process's start to the last one's exit, start-up included; the median of "
             f"{args.repeats} interleaved rounds (all rounds' walls in the last column).", "",
             "| processes | wall s | questions/s | vs one process | peak RSS MiB (largest process) | rounds' wall s |",
             "|---|---|---|---|---|---|"]
    for label, wall, rate, peak, all_walls in rows:
        lines.append(f"| {label} | {wall:.1f} | {rate:.2f} | {rate / base:.2f}x | {peak:.0f} | "
                     f"{', '.join(f'{w:.1f}' for w in all_walls)} |")
    by = {label: (wall, rate, peak) for label, wall, rate, peak, _ in rows}
    two, four = by["2 shards"], by["4 shards"]
    one_core, two_cores = by["1 process on 1 core (taskset)"], by["1 process on 2 cores (taskset)"]
    gain = two_cores[1] / one_core[1]
    lines += ["", "Reading it:",
              f"- One process on two cores against one core (taskset): {gain:.2f}x ({one_core[1]:.2f} -> "
              f"{two_cores[1]:.2f} questions/s), what one process gains from a second core.",
              f"- Two shards on the two cores: {two[1] / base:.2f}x one process; four: {four[1] / base:.2f}x (four "
              "processes on two cores, each paying its own start-up of imports and task set-up).",
              f"- Extrapolation (not measured): with a process gaining {gain:.2f}x from a second core, a shard is "
              f"worth about {1 / max(gain, 1.0):.1f}-1 cores' share of a node, so on a 16-64 core node questions/s "
              f"should grow about linearly with shards up to about one per core, near {one_core[1]:.1f} "
              "questions/s each on this workload, until disk, start-up or the engines behind the shards set the "
              "pace; with a real model behind each shard the engine, not the harness, is the limit "
              "(docs/scale-out.md).",
              f"- Memory: the largest shard's peak is {two[2]:.0f} MiB of 2 and {four[2]:.0f} MiB of 4, against "
              f"{by['1 process, unsharded'][2]:.0f} MiB unsharded ({two[2] / by['1 process, unsharded'][2]:.2f}x and "
              f"{four[2] / by['1 process, unsharded'][2]:.2f}x): a shard stays within the 1.2x bound that holds for "
              "any run size (\"Memory against run size\"), since a run's memory does not grow with its questions."]
    publish("\n".join(lines) + "\n", args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
