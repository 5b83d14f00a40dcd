"""HR-Bench 4K and 8K: multiple-choice questions on 4K and 8K images (Wang et al., 2024).

Sources: the release on the hub (`DreamMr/HR-Bench`): VLMEvalKit TSVs `hr_bench_4k.tsv` (1.93 GB)
and `hr_bench_8k.tsv` (4.63 GB) with columns index, question, answer (a letter), category
(`single`: fine-grained single-instance perception, FSP; `cross`: cross-instance, FCP), A, B, C,
D, cycle_category and image (base64, or the index of a row sharing it). 800 rows each: 200
questions, each asked with its options in 4 rotations. The TSV is indexed once and each image
decoded when its question runs (`pr_eval.data.tsv`); a local copy is any folder holding the file.
Bundled samples: `write_samples` (a few questions in the same schema, rotations sharing one
image by reference, as VLMEvalKit writes them).

Scored by HR-Bench's own rule: the option letter, averaged within each `cycle_category` group,
then over the groups (`cycle_accuracy`; not CircularEval, which would need all rotations right).
Peers differ here (DeepEyes reports the mean of the single and cross accuracies): the FSP/FCP
breakdown of the paper-compatible accuracy is reported beside it. Options are shown as V*'s are
in Pixel-Reasoner's copy ("(A) ..." lines and its answer instruction): an assumption, as the
reference evaluated no HR-Bench.

The images are far above the protocol's 6,272,000-pixel input bound (8K: about 33 MP): the input
resize and the crop-source rule of the protocol decide what the model sees, as for V*.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from ..data.tsv import index_tsv
from ..errors import DataError
from .common import LETTERS, embedded_rows, option_letter, render_options
from .infovqa import save_embedded_image
from .registry import Benchmark, Converted, Release

HUB_ID = "DreamMr/HR-Bench"
COLUMNS = ("index", "question", "answer", "category", "A", "B", "C", "D", "cycle_category", "image")
CATEGORIES = {"single": "FSP", "cross": "FCP"}


def files_for(size: str) -> str:
    return f"hr_bench_{size}.tsv"


def converter(size: str):
    """The converter of one of HR-Bench's two files ("4k" or "8k")."""

    def convert(folder: Path, cache: Path, key: str, seed: int, limit: int | None = None) -> Converted:
        path = folder / files_for(size)
        parquets = sorted(folder.glob(f"**/hrbench_{size}*.parquet"))
        if not path.is_file() and parquets:
            return from_parquet(size, parquets, cache / f"hrbench{size}-{key}")
        if not path.is_file():
            present = sorted(p.name for p in folder.glob("*.tsv"))
            raise DataError(f"no {path.name} (or lmms-eval's hrbench_{size}-*.parquet) in {folder} (TSV files "
                            f"there: {', '.join(present) or 'none'}); download it from the hub ({HUB_ID}) or pass "
                            f"the folder that holds it")
        columns, records, sha256 = index_tsv(path, cache, limit)
        missing = [c for c in COLUMNS if c != "image" and c not in columns]
        if missing:
            raise DataError(f"{path} lacks the column(s) {', '.join(missing)} (columns: {', '.join(columns)})")
        rows = [hrbench_row(size, record) for record in records]
        details = {"format": "vlmevalkit-tsv", "file": path.name, "rotations": "as released",
                   "score": "letter accuracy per cycle_category, then the mean over the groups"}
        return Converted(rows, folder, details, sha256)

    return convert


def from_parquet(size: str, files: list[Path], dest: Path) -> Converted:
    """lmms-eval's parquet copy (config hrbench_version_split, split hrbench_<size>; the TSV's
    columns with the image embedded): read a few rows at a time, each distinct image written once
    to `dest` (as InfographicVQA's release is), so rows hold paths like every other source."""

    def row_of(record: dict, images: Path, position: int) -> dict:
        image, error = save_embedded_image(record.pop("image", None), images)
        record = {k: (None if v is None else str(v)) for k, v in record.items()}
        return hrbench_row(size, {**record, "image": [image] if image else [], **({"_error": error} if error else {})})

    rows, revision = embedded_rows(files, dest, (), None, row_of)
    details = {"format": "lmms-eval-parquet", "files": [p.name for p in files], "image_cache": str(dest),
               "score": "letter accuracy per cycle_category, then the mean over the groups"}
    return Converted(rows, dest, details, revision)


def hrbench_row(size: str, record: dict) -> dict:
    """One question (one rotation of its options) from its TSV record."""
    row = {"qid": f"hrbench{size}-{record.get('index')}", "question": None, "image": record.get("image") or [],
           "answer": None, "category": CATEGORIES.get(str(record.get("category")), str(record.get("category") or "")),
           "cycle": str(record.get("cycle_category") or "")}
    if record.get("_error"):
        return {**row, "_error": record["_error"]}
    options = [str(record.get(letter) or "").strip() for letter in LETTERS[:4]]
    answer = str(record.get("answer") or "").strip().upper()
    if not record.get("question") or not all(options):
        return {**row, "_error": "the row lacks its question or one of the options A-D"}
    if answer not in LETTERS[:4]:
        return {**row, "_error": f"the answer {record.get('answer')!r} is not one of the letters A-D"}
    return {**row, "question": render_options(str(record["question"]), options), "answer": answer}


def labels(row: dict) -> dict:
    return {"category": row.get("category") or "", "group": row.get("cycle") or ""}


# --- bundled samples ------------------------------------------------------------------------------

SIDES = {"4k": (3840, 2160), "8k": (7680, 4320)}


def write_samples(out: Path, size: str = "4k", questions: int | None = None) -> Path:
    """`hr_bench_<size>.tsv` in `out`: `questions` questions (half FSP, half FCP), each in 4
    rotations whose rows after the first name the first row's index instead of the image."""
    import numpy as np
    import pandas as pd
    from PIL import Image, ImageDraw

    colors = {"red": (210, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 210), "yellow": (230, 200, 40)}
    questions = questions or (4 if size == "4k" else 2)  # the bundled 8K images are the larger
    rng = np.random.default_rng(0 if size == "4k" else 1)
    width, height = SIDES[size]
    rows = []
    for q in range(questions):
        image = Image.new("RGB", (width, height), (120, 120, 120))
        draw = ImageDraw.Draw(image)
        names = list(colors)
        color = names[int(rng.integers(0, 4))]
        x, y = int(rng.integers(100, width - 200)), int(rng.integers(100, height - 200))
        draw.rectangle([x, y, x + width // 100, y + width // 100], fill=colors[color])
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")  # flat colours: a few kB even at 8K
        encoded = base64.b64encode(buffer.getvalue()).decode()
        first = len(rows)
        for rotation in range(4):
            shown = names[rotation:] + names[:rotation]
            rows.append({"index": first + rotation, "question": "What color is the small square?",
                         "answer": LETTERS[shown.index(color)], "category": "single" if q % 2 == 0 else "cross",
                         **dict(zip(LETTERS[:4], shown)), "cycle_category": str(q),
                         "image": encoded if rotation == 0 else str(first)})
    out.mkdir(parents=True, exist_ok=True)
    path = out / files_for(size)
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(path, sep="\t", index=False)
    return path


def _benchmark(size: str) -> Benchmark:
    return Benchmark(
        name=f"hrbench{size}", title=f"HR-Bench {size.upper()}", task=f"pr_hrbench{size}", in_field=True,
        release=Release(HUB_ID, converter(size), allow_patterns=(files_for(size),),
                        layout=f"{files_for(size)} (VLMEvalKit TSV, base64 images)"),
        rows=800, samples=f"pr_eval.benchmarks.hrbench.write_samples(out, '{size}')",
        main="cycle_accuracy", main_label="cycle acc", score=option_letter, main_by_group=True,
        labels=labels, breakdown={"fsp_accuracy": "FSP", "fcp_accuracy": "FCP"},
    )


BENCHMARKS = (_benchmark("4k"), _benchmark("8k"))
