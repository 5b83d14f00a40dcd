"""Writing a file so that a reader, or a crash, sees the old file or the new one, whole.

Every writer of a finished file uses it: the run store (run.json, results.json), the report, a
submission, the TSV index and a converted release's cache."""

from __future__ import annotations

import os
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
