"""InfographicVQA (validation): free-form questions about infographics, scored by ANLS.

Sources: Pixel-Reasoner's eval copy on the hub (the default); the official release
`lmms-lab-encoder/DocVQA` (schema of `lmms-lab/DocVQA`), config InfographicVQA, split
validation: parquet files whose rows embed the image (questionId, question, answers, image).
Each distinct image is written ONCE to a cache folder (content-addressed) while the parquet is
read a few rows at a time, so rows become relative paths like every other source and no run
holds the images in memory. Reading images back by row index instead would need random access
into parquet row groups for every sample, and lmms-eval documents must be plain columns.
Bundled samples: `make_infovqa` of scripts/make_samples.py.

The paper's InfoVQA number is ANLS (threshold 0.5, best over the reference answers), so the
documents keep every reference answer.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import DataError
from ..scoring import answers
from .common import embedded_rows, write_cached
from .registry import Benchmark, Converted, Release

LAYOUT = "InfographicVQA/validation-*.parquet (or validation-*.parquet)"
INFOVQA_COLUMNS = ("questionId", "question", "answers", "image")


def convert(folder: Path, cache: Path, key: str, seed: int, limit: int | None = None) -> Converted:
    files = infovqa_files(folder)
    dest = cache / f"infovqa-{key}"
    rows, revision = embedded_rows(files, dest, INFOVQA_COLUMNS, INFOVQA_COLUMNS, _row, batch_size=16)
    if rows and all(not row.get("answer") for row in rows):
        raise DataError(f"{files[0].parent} has no answers (the test split?); use the validation split")
    details = {"format": "docvqa-infographicvqa-parquet", "config": "InfographicVQA", "split": "validation",
               "images": len({r["image"][0] for r in rows if r.get("image")}), "image_cache": str(dest)}
    return Converted(rows, dest, details, revision)


def infovqa_files(folder: Path) -> list[Path]:
    """The parquet files of InfographicVQA's validation split in a DocVQA snapshot or folder."""
    for pattern in ("InfographicVQA/validation-*.parquet", "validation-*.parquet", "*.parquet"):
        found = sorted(folder.glob(pattern))
        if found:
            return found
    raise DataError(f"no InfographicVQA parquet files in {folder}; expected {LAYOUT}")


def _row(record: dict, images: Path, position: int) -> dict:
    return infovqa_row(record, *save_embedded_image(record.get("image"), images))


def infovqa_row(record: dict, image: str | None, error: str | None) -> dict:
    qid = f"infovqa-{record.get('questionId')}"
    answers = [str(a) for a in (record.get("answers") or []) if a is not None]
    row = {"qid": qid, "question": record.get("question"), "image": [image] if image else [],
           "answer": answers}
    if error:
        row["_error"] = error
    elif not answers:
        row["_error"] = "the question has no reference answers"
    return row


def save_embedded_image(value, images: Path) -> tuple[str | None, str | None]:
    """Write an embedded image ({"bytes", "path"} as the hub stores it) once, named by its
    sha256; return (path relative to images/.., None) or (None, why not)."""
    payload = value.get("bytes") if isinstance(value, dict) else None
    if not payload:
        return None, "the row embeds no image bytes"
    name = hashlib.sha256(payload).hexdigest()[:24] + _image_suffix(payload, value.get("path"))
    target = images / name
    if not target.is_file():
        write_cached(target, payload)
    return f"{images.name}/{name}", None


def _image_suffix(payload: bytes, original: str | None) -> str:
    if payload.startswith(b"\xff\xd8"):
        return ".jpg"
    if payload.startswith(b"\x89PNG"):
        return ".png"
    if payload[:4] == b"RIFF" and payload[8:12] == b"WEBP":
        return ".webp"
    if payload.startswith(b"GIF8"):
        return ".gif"
    suffix = Path(original or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".img"


def anls(text: str, doc: dict) -> float:
    return answers.anls(text, doc["answer"])


BENCHMARK = Benchmark(
    name="infovqa", title="InfographicsVQA", task="pr_infovqa", in_suite=True,
    hub_id="JasperHaozhe/InfoVQA-EvalData-PixelReasoner",
    release=Release("lmms-lab-encoder/DocVQA", convert, allow_patterns=("InfographicVQA/validation-*",), layout=LAYOUT),
    samples="scripts/make_samples.py --only infovqa",
    main="anls", main_label="ANLS", score=anls, graded=True, list_answers=True,
)
