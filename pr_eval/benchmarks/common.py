"""What several benchmarks share: lettered options (rendering, seeded shuffles, the letter
scorer) and the small file helpers of their converters."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from pathlib import Path

from ..errors import DataError
from ..files import write_atomic
from ..scoring import answers

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
OPTION_SUFFIX = "Answer with the option's letter from the given choices directly."


def missing(value) -> bool:
    """None, NaN, or pandas' NA/NaT: a value a row does not have."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def option_letter(text: str, doc: dict) -> float:
    """The option letter (or its text) of `text` matches the document's answer letter."""
    return answers.letter_accuracy(text, doc["answer"], answers.parse_options(doc.get("question") or ""))


def shuffled_order(n: int, seed: int, qid: str) -> list[int]:
    """A permutation of range(n) fixed by (seed, qid): order[k] is the original index shown k-th.
    String seeds are hashed with sha512 by `random`, so the order is the same on every machine."""
    order = list(range(n))
    random.Random(f"{seed}:{qid}").shuffle(order)
    return order


def render_options(question: str, options: list[str]) -> str:
    """The question with lettered options, in the style of Pixel-Reasoner's V* copy."""
    lines = [question.rstrip()] + [f"({LETTERS[i]}) {option}" for i, option in enumerate(options)]
    return "\n".join(lines + [OPTION_SUFFIX])


_LETTER_PREFIX = re.compile(r"^\([A-Z]\)\s+")


def option_text(option) -> str:
    """An option as text, without a leading "(A) " some copies carry."""
    return _LETTER_PREFIX.sub("", str(option).strip())


def digest_files(paths: list[Path], root: Path) -> str:
    """sha256 over the relative names and contents of `paths` (small annotation files)."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def read_json_list(path: Path) -> list:
    """The JSON list of questions in a release's annotation file (DataError when it is unreadable
    or not a list; its items are each caller's to check)."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(items, list):
        raise DataError(f"{path} does not hold a JSON list of questions (found {type(items).__name__})")
    return items


def read_json_object(path: Path) -> dict | str:
    """The JSON object in `path`, or the reason it cannot be used."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"unreadable annotation {path.name}: {exc}"
    return value if isinstance(value, dict) else f"{path.name} does not hold a JSON object"


def embedded_rows(files: list[Path], dest: Path, required, columns, row_of, batch_size: int = 8) -> tuple[list[dict], str]:
    """(rows, digest) of parquet files whose rows embed their images (the hub's copies of
    InfographicVQA, MME-RealWorld, HR-Bench): converted once into `dest` (each image written
    once, by `row_of`, into dest/images/), then read back from dest/rows.json."""
    manifest = dest / "rows.json"
    if not manifest.is_file():
        rows, revision = materialize_parquet(files, dest, required, columns, row_of, batch_size)
        write_cached(manifest, json.dumps({"revision": revision, "rows": rows}).encode())
    saved = json.loads(manifest.read_text(encoding="utf-8"))
    return saved["rows"], saved["revision"]


def materialize_parquet(files: list[Path], dest: Path, required, columns, row_of,
                        batch_size: int = 8) -> tuple[list[dict], str]:
    """Rows of the parquet files, read `batch_size` rows at a time (the `columns` each file has;
    None: all): `row_of(record, images folder, position)` makes one row, writing its image.
    DataError when a file lacks one of the `required` columns or cannot be read."""
    import pyarrow.parquet as pq

    images = dest / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, digest = [], hashlib.sha256()
    for path in files:
        try:
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            absent = [c for c in required if c not in names]
            if absent:
                raise DataError(f"{path} lacks the column(s) {', '.join(absent)}; columns present: {', '.join(names)}")
            wanted = None if columns is None else [c for c in columns if c in names]
            for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
                for record in batch.to_pylist():
                    row = row_of(record, images, len(rows))
                    digest.update(json.dumps(row, sort_keys=True).encode())
                    rows.append(row)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"cannot read {path}: {exc}") from None
    return rows, digest.hexdigest()


def write_cached(path: Path, payload: bytes) -> None:
    """Never a half-written file after a crash; not synced (thousands of images, rebuilt if lost)."""
    write_atomic(path, payload, sync=False)
