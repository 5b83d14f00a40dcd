"""TreeBench: 405 questions whose answers need the right region of the image, with its boxes.

Source: the release on the hub (`HaochenWang/TreeBench`), a VLMEvalKit TSV `TreeBench.tsv`:
index, image (base64, or the index of a row sharing it), question, `multi-choice options`, A-D,
answer (a letter), category ("Perception/OCR", "Reasoning/Perspective Transform", ...) and
`target_instances` (the boxes [x1, y1, x2, y2] of the objects the question is about, in pixels of
the image). 10 subtasks: Perception (Attributes 29, Material 13, Physical State 23, Object
Retrieval 16, OCR 68) and Reasoning (Perspective Transform 85, Ordering 57, Contact and Occlusion
41, Spatial Containment 29, Comparison 44). Indexed once, images decoded one question at a time
(`pr_eval.data.tsv`). Bundled samples: `write_samples`.

Scored by the option letter, with the paper-compatible accuracy broken down by Perception and
Reasoning and by subtask. The boxes make the crop-grounding figures possible
(`pr_eval.scoring.grounding`): whether the model's crops hold the targets, the best IoU per target, and
accuracy when the crops hit or missed. TreeBench's own mIoU reads boxes the model writes in its
reasoning; a pixel reasoner shows where it looks by cropping, so its crops are what is measured
here (a different figure, named differently). Boxes are read as JSON, or as four numbers each;
never evaluated.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from ..data.tsv import index_tsv
from ..errors import DataError
from .common import LETTERS, option_letter, option_text, render_options
from .registry import Benchmark, Converted, Release

HUB_ID = "HaochenWang/TreeBench"
FILE = "TreeBench.tsv"
SUBTASKS = {"Perception": ("Attributes", "Material", "Physical State", "Object Retrieval", "OCR"),
            "Reasoning": ("Perspective Transform", "Ordering", "Contact and Occlusion", "Spatial Containment",
                          "Comparison")}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def metric_name(category: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_") + "_accuracy"


BREAKDOWN = {metric_name(area): area for area in SUBTASKS}
BREAKDOWN.update({metric_name(name): name for names in SUBTASKS.values() for name in names})


def boxes(value) -> list[list[float]]:
    """`target_instances` as a list of [x1, y1, x2, y2] (JSON, else every four numbers in it)."""
    if value is None or value == "":
        return []
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        numbers = [float(n) for n in _NUMBER.findall(str(value))]
        parsed = [numbers[i:i + 4] for i in range(0, len(numbers) - len(numbers) % 4, 4)]
    if parsed and all(isinstance(v, (int, float)) for v in parsed):
        parsed = [parsed]  # one box written flat
    found = []
    for box in parsed if isinstance(parsed, list) else []:
        if isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
            found.append([float(v) for v in box])
    return found


def _options(record: dict) -> list[str]:
    listed = [str(record.get(letter) or "").strip() for letter in LETTERS[:4]]
    listed = [option for option in listed if option and option.lower() != "nan"]
    if listed:
        return listed
    text = str(record.get("multi-choice options") or "")
    quoted = [single or double for single, double in re.findall(r"'([^']*)'|\"([^\"]*)\"", text)]
    return [option_text(option) for option in quoted if option]


def convert(folder: Path, cache: Path, key: str, seed: int, limit: int | None = None) -> Converted:
    path = folder / FILE
    if not path.is_file():
        present = sorted(p.name for p in folder.glob("*.tsv"))
        raise DataError(f"no {FILE} in {folder} (TSV files there: {', '.join(present) or 'none'}); "
                        f"download it from the hub ({HUB_ID}) or pass the folder that holds it")
    columns, records, sha256 = index_tsv(path, cache, limit)
    missing = [c for c in ("index", "question", "answer", "category") if c not in columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)} (columns: {', '.join(columns)})")
    rows = [treebench_row(record) for record in records]
    details = {"format": "vlmevalkit-tsv", "file": FILE, "targets": "target_instances, pixels of the image"}
    return Converted(rows, folder, details, sha256)


def treebench_row(record: dict) -> dict:
    row = {"qid": f"treebench-{record.get('index')}", "question": None, "image": record.get("image") or [],
           "answer": None, "category": str(record.get("category") or ""),
           "targets": boxes(record.get("target_instances"))}
    if record.get("_error"):
        return {**row, "_error": record["_error"]}
    options, answer = _options(record), str(record.get("answer") or "").strip().upper()
    if not record.get("question") or len(options) < 2:
        return {**row, "_error": "the row lacks its question or its options"}
    if answer not in LETTERS[:len(options)]:
        return {**row, "_error": f"the answer {record.get('answer')!r} is not one of the options' letters"}
    return {**row, "question": render_options(str(record["question"]), options), "answer": answer}


# --- bundled samples ------------------------------------------------------------------------------

def write_samples(out: Path, width: int = 1600, height: int = 1200) -> Path:
    """`TreeBench.tsv` in `out`: one question per subtask about a small coloured square whose
    box is its target (the answer needs it), the second question sharing the first's image."""
    import pandas as pd
    from PIL import Image, ImageDraw

    colors = ["red", "green", "blue", "yellow"]
    fills = {"red": (210, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 210), "yellow": (230, 200, 40)}
    rows = []
    categories = [f"{area}/{name}" for area, names in SUBTASKS.items() for name in names]
    for k, category in enumerate(categories):
        color = colors[k % 4]
        x, y = 150 + 120 * k, 200 + 70 * k
        box = [x, y, x + 48, y + 48]
        if k == 1:  # VLMEvalKit's way of repeating an image: the index of the row that holds it
            image_field, box, color = "0", rows[0]["_box"], rows[0]["_color"]
        else:
            image = Image.new("RGB", (width, height), (128, 128, 128))
            ImageDraw.Draw(image).rectangle(box, fill=fills[color])
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            image_field = base64.b64encode(buffer.getvalue()).decode()
        rows.append({"index": k, "image": image_field, "question": "What color is the small square?",
                     "multi-choice options": str([f"({LETTERS[i]}) {c}" for i, c in enumerate(colors)]),
                     **dict(zip(LETTERS[:4], colors)), "answer": LETTERS[colors.index(color)],
                     "category": category, "target_instances": json.dumps([box]), "_color": color, "_box": box})
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows).drop(columns=["_color", "_box"])
    frame.to_csv(out / FILE, sep="\t", index=False)
    return out / FILE


BENCHMARK = Benchmark(
    name="treebench", title="TreeBench", task="pr_treebench", in_field=True, rows=405,
    release=Release(HUB_ID, convert, allow_patterns=(FILE,), layout=f"{FILE} (VLMEvalKit TSV, base64 images)"),
    samples="pr_eval.benchmarks.treebench.write_samples(out)",
    main="letter_accuracy", main_label="letter acc", score=option_letter,
    labels=lambda row: {"category": row.get("category") or ""},
    breakdown=BREAKDOWN, grounding=True,
)
