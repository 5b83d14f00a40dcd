"""Writing a file so that a reader, or a crash, sees the old file or the new one, whole.

Every writer of a finished file uses it: the run store (run.json, results.json), the report, a
submission, the TSV index and a converted release's cache. And `link_tree`: a run's images in a
folder made from it (a re-scoring, a merge of shards) without a second copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, sync: bool = True) -> None:
    """Write via a temporary file and rename: a reader (or a crash) sees the old file or the new
    one, whole. `sync` also flushes it to disk first; the folder is made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)
        if sync:
            out.flush()
            os.fsync(out.fileno())
    os.replace(tmp, path)


def link_tree(source: Path, target: Path) -> None:
    """Every file under `source` also under `target`: hard links where the disk allows (no second
    copy), copies otherwise; files `target` already has are kept (an interrupted copy completes)."""
    def link_missing(src, dst):
        if os.path.exists(dst):
            return
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_missing, dirs_exist_ok=True)
