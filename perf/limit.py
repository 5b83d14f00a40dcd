"""What `--limit 3` costs on a large TSV benchmark: the rows it runs, or the whole file.

lmms-eval cuts a task's documents to `--limit` only after the task has loaded them all, so before
the task read its own limit (`pr_eval.data.sources.row_limit`) a 3-question run on a 1M-row TSV
loaded, indexed and converted every row. This script makes an HR-Bench-4K-schema TSV of
`--rows` rows (the first question's image in base64, every other row naming it, so the file is
mostly rows, as a long benchmark is), then loads the task's documents the way lmms-eval's task
class does (`pr_eval.lmms.task._documents`), each in a fresh process: with the whole file (what
`--limit 3` used to cost, first with a cold then a warm index cache) and with `--limit`.
It prints wall seconds and the peak resident memory of each.

    python perf/limit.py                     # 1,000,000 rows, --limit 3
    python perf/limit.py --rows 200000 --limit 10
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
started = time.perf_counter()
from pr_eval.lmms import task as lmms_task
import_s = time.perf_counter() - started
limit = None if sys.argv[3] == "none" else int(sys.argv[3])
from pr_eval.data import load as data
data.default_cache_dir = lambda: __import__("pathlib").Path(sys.argv[2])
started = time.perf_counter()
source, docs = lmms_task._documents("hrbench4k", sys.argv[1], limit)
print(json.dumps({"docs": len(docs), "load_s": time.perf_counter() - started, "import_s": import_s,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "revision": source.revision}))
"""


def make_tsv(folder: Path, rows: int) -> Path:
    from pr_eval.benchmarks import hrbench

    hrbench.write_samples(folder, "4k", questions=1)  # 4 rows: one image, three naming it
    path = folder / hrbench.files_for("4k")
    with open(path, "a", encoding="utf-8") as out:
        for i in range(4, rows):
            out.write(f"{i}\tWhat colour is the object in row {i}?\tB\tsingle\tred\tgreen\tblue\tyellow\t{i // 4}\t0\n")
    return path


def load(folder: Path, cache: Path, limit: int | None) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(cache), "none" if limit is None else str(limit)],
                          check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "data", Path(tmp) / "cache"
        folder.mkdir()
        path = make_tsv(folder, args.rows)
        print(f"{args.rows:,} rows, {path.stat().st_size / 2 ** 20:.0f} MiB; {platform.machine()}, "
              f"Python {platform.python_version()}")
        runs = [("whole file, cold index cache", None), ("whole file, warm index cache", None),
                (f"--limit {args.limit}, warm digest cache", args.limit)]
        cold_limited = load(folder, Path(tmp) / "cache-limited", args.limit)
        print(f"{'--limit ' + str(args.limit) + ', cold digest cache':34} {cold_limited['load_s']:8.2f} s "
              f"{cold_limited['peak_mib']:8.0f} MiB  ({cold_limited['docs']} documents)")
        for name, limit in runs:
            result = load(folder, cache, limit)
            print(f"{name:34} {result['load_s']:8.2f} s {result['peak_mib']:8.0f} MiB  ({result['docs']} documents)")
            assert result["revision"] == cold_limited["revision"], "a limited read must report the same revision"
    return 0


if __name__ == "__main__":
    sys.exit(main())
