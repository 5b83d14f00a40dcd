"""V* Bench: 191 high-resolution questions about small objects (115 attribute, 76 spatial).

Sources: Pixel-Reasoner's eval copy on the hub (the default); the official release
`craigwu/vstar_bench`, folders `direct_attributes/` and `relative_position/`, each image `X.jpg`
beside `X.json` = {"question", "options", "target_object", "bbox"}. The raw files list the
CORRECT OPTION FIRST, so options are shuffled per question with `random.Random(f"{seed}:{qid}")`
and the answer is the letter the correct option landed on. Bundled samples: `make_vstar` of
scripts/make_samples.py.

Scored by the option letter; the paper-compatible accuracy is broken down by category
(attribute / spatial), read from the row, its qid or image path, or its number of options. The
official release's `bbox` annotations give the crop-grounding figures (pr_eval.scoring.grounding);
Pixel-Reasoner's copy has no boxes, so there they are empty ("-").
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import DataError
from .common import (LETTERS, digest_files, option_letter, option_text, read_json_object, render_options,
                     shuffled_order)
from .registry import Benchmark, Converted, Release

CATEGORIES = {"direct_attributes": "attribute", "relative_position": "spatial"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUT = "direct_attributes/ and relative_position/ with X.jpg beside X.json"
_OPTION = re.compile(r"\(([A-Z])\)")


def category(row: dict) -> str:
    """"attribute" or "spatial" (V*'s direct_attributes / relative_position), else "unknown".

    The category is the row's own where it has one, else read from the qid or image path where
    they name it, else from the number of options in the question (attribute questions have 4,
    spatial ones 2)."""
    if row.get("category"):
        return row["category"]
    names = " ".join([str(row.get("qid") or "")] + [str(p) for p in row.get("image") or []])
    if "direct_attributes" in names:
        return "attribute"
    if "relative_position" in names:
        return "spatial"
    options = set(_OPTION.findall(str(row.get("question") or "")))
    return {4: "attribute", 2: "spatial"}.get(len(options), "unknown")


def convert(folder: Path, cache: Path, key: str, seed: int, limit: int | None = None) -> Converted:
    files = [(name, path) for name in CATEGORIES for path in sorted((folder / name).glob("*.json"))]
    if not files:
        raise DataError(f"no V* annotation files in {folder}; expected {LAYOUT}")
    rows = [vstar_row(name, path.stem, read_json_object(path), _image_beside(path, folder), seed)
            for name, path in files]
    counts = Counter(CATEGORIES[name] for name, _ in files)
    details = {"format": "vstar-raw", "seed": seed, "option_order": "shuffled",
               "shuffle": "random.Random(f'{seed}:{qid}').shuffle; the raw files list the correct option first",
               "categories": dict(counts)}
    return Converted(rows, folder, details, digest_files([p for _, p in files], folder))


def vstar_row(folder_name: str, stem: str, annotation: dict | str, image: str, seed: int) -> dict:
    """One V* question from its raw annotation (or the reason it could not be read)."""
    qid = f"vstar-{folder_name}-{stem}"
    row = {"qid": qid, "question": None, "image": [image], "answer": None,
           "category": CATEGORIES[folder_name]}
    if isinstance(annotation, str):
        return {**row, "_error": annotation}
    question, options = annotation.get("question"), annotation.get("options")
    if not isinstance(question, str) or not question.strip():
        return {**row, "_error": f"{folder_name}/{stem}.json has no 'question' text"}
    if not isinstance(options, list) or len(options) < 2 or len(options) > len(LETTERS):
        return {**row, "_error": f"{folder_name}/{stem}.json needs a list of 2 or more 'options'"}
    order = shuffled_order(len(options), seed, qid)
    shown = [option_text(options[i]) for i in order]
    return {**row, "question": render_options(question, shown), "answer": LETTERS[order.index(0)],
            "targets": targets(annotation.get("bbox"))}


def targets(bbox) -> list[list[float]]:
    """The annotated objects' boxes as [x1, y1, x2, y2] pixels. ASSUMED: the raw files give one
    [x, y, width, height] per `target_object` (not confirmed against the release); anything else
    is left out, so a different layout loses the grounding figures, never the question."""
    found = []
    for box in bbox if isinstance(bbox, list) else []:
        if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box) \
                and box[2] > 0 and box[3] > 0:
            found.append([float(box[0]), float(box[1]), float(box[0] + box[2]), float(box[1] + box[3])])
    return found


def _image_beside(annotation: Path, folder: Path) -> str:
    """The image next to an annotation file (same name), relative to `folder`."""
    for suffix in IMAGE_SUFFIXES:
        candidate = annotation.with_suffix(suffix)
        if candidate.is_file():
            return candidate.relative_to(folder).as_posix()
    return annotation.with_suffix(".jpg").relative_to(folder).as_posix()  # missing: a per-sample error



BENCHMARK = Benchmark(
    name="vstar", title="V* Bench", task="pr_vstar", in_suite=True,
    hub_id="JasperHaozhe/VStar-EvalData-PixelReasoner", rows=191,
    release=Release("craigwu/vstar_bench", convert, allow_patterns=("direct_attributes/*", "relative_position/*"),
                    layout=LAYOUT),
    samples="scripts/make_samples.py --only vstar",
    main="letter_accuracy", main_label="letter acc", score=option_letter,
    labels=lambda row: {"category": category(row)},
    breakdown={"attribute_accuracy": "attribute", "spatial_accuracy": "spatial"},
    grounding=True,  # the official release's annotated boxes; Pixel-Reasoner's copy has none
)
