"""Whether two run folders hold the same evaluation: results.json (metrics, counts, members,
benchmarks, protocol record), every samples_<task>.jsonl (timings aside) and report.html (dates,
wall clocks, folder paths, the git revision and its "uncommitted" mark, and the command line that
launched the run aside: `pr-eval ray` and a plain run are one evaluation). Exit 0 when all agree.

    python scripts/same_run.py RUN_A RUN_B

Used to show that a refactor changed no result: run the same command before and after it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SUMMARY_KEYS = ("metrics", "n_samples", "members", "benchmarks")


def samples(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record.pop("timing", None)
        records.append(record)
    return records


def report(folder: Path) -> str:
    text = (folder / "report.html").read_text(encoding="utf-8")
    text = text.replace(str(folder), "RUN").replace(str(folder.parent), "OUTPUT").replace(folder.name, "RUN")
    text = re.sub(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?(\.\d+)?(\+00:00| UTC)?", "DATE", text)
    text = re.sub(r"[\d.]+ s( wall</span|</span|: wall-clock)", r"SECONDS\1", text)  # a sample's wall time
    text = re.sub(r"/[^<>\"' ]*/pr_eval/", "CHECKOUT/pr_eval/", text)  # the package's place (a worktree)
    text = re.sub(r"\b[0-9a-f]{40}\b", "REVISION", text)  # the checkout's git revision
    text = re.sub(r"<dt>command</dt><dd>.*?</dd>", "<dt>command</dt><dd>COMMAND</dd>", text)
    return text.replace(" (uncommitted changes)", "")


def compare(a: Path, b: Path) -> list[str]:
    """What differs between the two folders (nothing: the same evaluation)."""
    found = []
    ra = json.loads((a / "results.json").read_text(encoding="utf-8"))
    rb = json.loads((b / "results.json").read_text(encoding="utf-8"))
    for key in SUMMARY_KEYS:
        for task in sorted(set(ra[key]) | set(rb[key])):
            if ra[key].get(task) != rb[key].get(task):
                found.append(f"results.json {key}[{task}]: {ra[key].get(task)} vs {rb[key].get(task)}")
    if ra["pr_eval"]["protocol"] != rb["pr_eval"]["protocol"]:
        found.append("results.json: the protocol records differ")
    names = sorted({p.name for p in a.glob("samples_*.jsonl")} | {p.name for p in b.glob("samples_*.jsonl")})
    for name in names:
        if not (a / name).is_file() or not (b / name).is_file():
            found.append(f"{name}: in one folder only")
        elif samples(a / name) != samples(b / name):
            found.append(f"{name}: the records differ")
    if report(a) != report(b):
        found.append("report.html differs")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    a, b = (Path(p) for p in argv)
    found = compare(a, b)
    tasks = len(list(a.glob("samples_*.jsonl")))
    print("\n".join(found) if found else f"the same evaluation: results, {tasks} samples files and the report agree")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
