"""MME-RealWorld and MME-RealWorld-Lite: five-option questions on large real-world images
(Zhang et al., 2024).

29,429 questions on 13,366 images (about 2000x1500) in 43 subtasks (`l2-category`) of 5 domains
(`DOMAINS`), each asked as Perception or Reasoning; Lite keeps at most 50 questions per subtask.
Sources, each a local copy being any folder holding the file(s):
- the VLMEvalKit TSV (hub `yifanzhang114/MME-RealWorld-Base64`; Lite: `mme_realworld_lite.tsv`,
  the download of `mmerw_lite`): index, image (base64, or the index of a row sharing it),
  question, `multi-choice options` (five "(A) ..." strings written by pandas as Python's repr of a
  list), answer (A-E), category ("Perception/Monitoring", ...), `l2-category` (the subtask).
  Indexed once, images decoded one question at a time (`pr_eval.data.tsv`);
- lmms-eval's parquet copies (`yifanzhang114/MME-RealWorld-Lmms-eval`, the download of `mmerw`,
  and `yifanzhang114/MME-RealWorld-lite-lmms-eval`; split `train`): the same columns, the options
  a list, the image in the column `bytes`. Read a few rows at a time; each distinct image is
  written once, named by its content, to a cache folder (as InfographicVQA's images are).
The raw release (`yifanzhang114/MME-RealWorld`: image folders and JSON annotations) is not read.
Bundled samples: `write_samples`.

Scored by the option letter (`common.option_letter`, V*'s rule: the marked answer's letter or
option text; no judge), with the paper-compatible accuracy broken down by Perception/Reasoning
and by domain. lmms-eval's and VLMEvalKit's own rule is looser (the first capital A-E anywhere
after stripping "The answer is" and the like): a deliberate difference, as for V*.
Options are shown as V*'s are in Pixel-Reasoner's copy ("(A) ..." lines and its answer
instruction), not in lmms-eval's wording ("The choices are listed below: ... The best answer is:").

Assumptions (not confirmed against the files):
- the full TSV is `MME-RealWorld.tsv` or `mme_realworld.tsv` (VLMEvalKit's code builds
  `MME-RealWorld.tsv` locally from the JSON files of the Base64 repo, so the hub may hold none:
  hence the parquet copy is what `official` downloads for `mmerw`); its `multi-choice options` may
  also be written as VLMEvalKit writes it there, "The choices are listed below:" and one option a
  line, with the options repeated in columns A-E (all three forms are read);
- the parquet copies' `bytes` holds the encoded image as base64 text (what lmms-eval's
  `doc_to_visual` decodes), raw image bytes, or {"bytes": ..., "path": ...} as the hub stores
  images; all three are read;
- category is "<Perception|Reasoning>/<domain>" (VLMEvalKit splits it so); where it is only
  "Perception" or "Reasoning", the domain is read from `l2-category`;
- Lite has about 1,919 questions (50 per subtask or all of a smaller one): not checked.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import re
from pathlib import Path

from ..data.tsv import index_tsv
from ..errors import DataError
from .common import LETTERS, embedded_rows, missing, option_letter, option_text, render_options
from .infovqa import save_embedded_image
from .registry import Benchmark, Converted, Release

TSV_HUB_ID = "yifanzhang114/MME-RealWorld-Base64"
PARQUET_HUB_IDS = {False: "yifanzhang114/MME-RealWorld-Lmms-eval", True: "yifanzhang114/MME-RealWorld-lite-lmms-eval"}
TSV_FILES = {False: ("MME-RealWorld.tsv", "mme_realworld.tsv"), True: ("mme_realworld_lite.tsv", "MME-RealWorld-Lite.tsv")}
TASKS = ("Perception", "Reasoning")
DOMAINS = ("Monitoring", "Autonomous_Driving", "OCR with Complex Context", "Diagram and Table", "Remote Sensing")
BREAKDOWN = {"perception_accuracy": "Perception", "reasoning_accuracy": "Reasoning",
             "monitoring_accuracy": "Monitoring", "autonomous_driving_accuracy": "Autonomous_Driving",
             "ocr_accuracy": "OCR with Complex Context", "diagram_and_table_accuracy": "Diagram and Table",
             "remote_sensing_accuracy": "Remote Sensing"}
OPTIONS = "multi-choice options"
COLUMNS = ("question", OPTIONS, "answer", "category")        # required in either format
PARQUET_COLUMNS = ("index", "question", OPTIONS, "answer", "category", "l2-category", "bytes")
ANSWERS = LETTERS[:5]
OPTIONS_MAX = 20_000        # longer than any five options: not parsed
_OPTION_LINE = re.compile(r"^\s*[(（][A-Z][)）]")
_PREFIX = re.compile(r"^\(([A-Z])\)(?=\s|$)")


def _name(lite: bool) -> str:
    return "mmerw_lite" if lite else "mmerw"


def layout(lite: bool) -> str:
    return (f"{' or '.join(TSV_FILES[lite])} (VLMEvalKit TSV, base64 images) or the parquet files of "
            f"{PARQUET_HUB_IDS[lite]} (lmms-eval's copy)")


# --- rows -----------------------------------------------------------------------------------------

def parse_options(value) -> list[str]:
    """The options ("(A) ...") of a `multi-choice options` field: a list, Python's repr of one
    (read as a literal, never evaluated), or one option a line."""
    if missing(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and len(text) <= OPTIONS_MAX:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return []
        else:
            value = _option_lines(text)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return []
    return [_ascii_parens(v) for v in value]


def option_texts(options: list[str]) -> list[str] | None:
    """The texts of "(A) ..." options ("" for one with none), None where their letters are out
    of order (the answer letter would name another option)."""
    letters = [m.group(1) for m in (_PREFIX.match(o) for o in options) if m]
    if letters and letters != list(LETTERS[:len(options)]):
        return None
    return ["" if _PREFIX.fullmatch(o.strip()) else option_text(o) for o in options]


def _option_lines(text: str) -> list[str]:
    """"(A) ..." lines (a line that starts none continues the option before it)."""
    options: list[str] = []
    for line in text.splitlines():
        if _OPTION_LINE.match(line):
            options.append(line.strip())
        elif options and line.strip():
            options[-1] += " " + line.strip()
    return options


def _ascii_parens(option: str) -> str:
    option = option.strip()
    return "(" + option[1:].replace("）", ")", 1) if option.startswith("（") else option


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


_DOMAIN_KEYS = {_squash(d): d for d in DOMAINS}


def category_of(category, l2_category=None) -> str:
    """"<Perception|Reasoning>/<domain>" (the domain spelled as in `DOMAINS`) from a row's
    category, or from its l2-category where the category names only the task; else as given."""
    raw = "" if missing(category) else str(category).strip()
    parts = [p.strip() for p in raw.split("/") if p.strip()]
    task = next((t for t in TASKS if parts and _squash(parts[0]) == _squash(t)), None)
    places = parts[1:] + ([] if missing(l2_category) else [p for p in str(l2_category).split("/")])
    domain = next((_DOMAIN_KEYS[_squash(p)] for p in places if _squash(p) in _DOMAIN_KEYS), None)
    if task and domain:
        return f"{task}/{domain}"
    return task or raw


def mmerw_row(name: str, record: dict, image: list[str], error: str | None = None) -> dict:
    """One question from its record (a TSV or parquet row); `_error` set where it cannot be asked."""
    row = {"qid": f"{name}-{record.get('index')}", "question": None, "image": image, "answer": None,
           "category": category_of(record.get("category"), record.get("l2-category")),
           "l2_category": "" if missing(record.get("l2-category")) else str(record.get("l2-category"))}
    error = error or record.get("_error")
    if error:
        return {**row, "_error": str(error)}
    options = option_texts(parse_options(record.get(OPTIONS)))
    if not options and all(not missing(record.get(k)) and str(record.get(k)).strip() for k in ANSWERS):
        options = [str(record[k]).strip() for k in ANSWERS]  # VLMEvalKit's columns A-E
    answer = "" if missing(record.get("answer")) else str(record["answer"]).strip().strip("()").strip().upper()
    question = "" if missing(record.get("question")) else str(record["question"]).strip()
    if options is None:
        return {**row, "_error": "the options' letters are not A-E in order"}
    if not question or len(options) != len(ANSWERS) or not all(options):
        return {**row, "_error": f"the row lacks its question or one of its five options ({len(options)} given)"}
    if answer not in ANSWERS:
        return {**row, "_error": f"the answer {record.get('answer')!r} is not one of the letters A-E"}
    return {**row, "question": render_options(question, options), "answer": answer}


def labels(row: dict) -> dict:
    return {"category": row.get("category") or ""}


# --- converters -----------------------------------------------------------------------------------

def converter(lite: bool):
    """The converter of MME-RealWorld (lite=False) or its Lite subset: the TSV where the folder
    holds one, else the parquet files of lmms-eval's copy."""
    name = _name(lite)

    def convert(folder: Path, cache: Path, key: str, seed: int, limit: int | None = None) -> Converted:
        tsv = next((folder / f for f in TSV_FILES[lite] if (folder / f).is_file()), None)
        if tsv is not None:
            return convert_tsv(name, tsv, cache, limit)
        parquets = parquet_files(folder)
        if parquets:
            return convert_parquet(name, parquets, cache / f"{name}-{key}")
        present = sorted(p.name for p in folder.glob("*.tsv"))
        raise DataError(f"no {' or '.join(TSV_FILES[lite])} and no parquet files in {folder} (TSV files there: "
                        f"{', '.join(present) or 'none'}); a local copy holds {layout(lite)}")

    return convert


def convert_tsv(name: str, path: Path, cache: Path, limit: int | None = None) -> Converted:
    columns, records, sha256 = index_tsv(path, cache, limit)
    absent = [c for c in COLUMNS if c not in columns and not (c == OPTIONS and set(ANSWERS) <= set(columns))]
    if absent:
        raise DataError(f"{path} lacks the column(s) {', '.join(absent)} (columns: {', '.join(columns)})")
    rows = [mmerw_row(name, record, record.get("image") or []) for record in records]
    details = {"format": "vlmevalkit-tsv", "file": path.name, "score": "option letter"}
    return Converted(rows, path.parent, details, sha256)


def parquet_files(folder: Path) -> list[Path]:
    """The parquet files of a copy (its `train` split where the names say), hidden folders aside."""
    found = sorted(p for p in folder.rglob("*.parquet")
                   if not any(part.startswith(".") for part in p.relative_to(folder).parts))
    train = [p for p in found if "train" in p.relative_to(folder).as_posix()]
    return train or found


def convert_parquet(name: str, files: list[Path], dest: Path) -> Converted:
    def row_of(record: dict, images: Path, position: int) -> dict:
        if missing(record.get("index")):
            record["index"] = position
        payload, error = image_payload(record.pop("bytes", None))
        image = None
        if payload is not None:
            image, error = save_embedded_image(payload, images)
        return mmerw_row(name, record, [image] if image else [], error)

    rows, revision = embedded_rows(files, dest, (*COLUMNS, "bytes"), PARQUET_COLUMNS, row_of)
    details = {"format": "lmms-eval-parquet", "split": "train", "files": len(files),
               "images": len({r["image"][0] for r in rows if r.get("image")}), "image_cache": str(dest),
               "score": "option letter"}
    return Converted(rows, dest, details, revision)


_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")


def image_payload(value) -> tuple[dict | None, str | None]:
    """({"bytes", "path"} as `save_embedded_image` takes it, None) of a `bytes` value (base64
    text, raw image bytes, or the hub's {"bytes", "path"}), or (None, why not)."""
    path = None
    if isinstance(value, dict):
        value, path = value.get("bytes"), value.get("path")
    if isinstance(value, (bytes, bytearray)) and not bytes(value).startswith(_MAGIC):
        try:  # base64 stored as a binary column
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            pass  # raw bytes of some other format: the image loader says what they are
    if isinstance(value, str):
        try:
            value = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            return None, f"the row's image is not base64: {exc}"
    if not value:
        return None, "the row embeds no image bytes"
    return {"bytes": bytes(value), "path": path}, None


# --- bundled samples ------------------------------------------------------------------------------

SAMPLE_COLORS = {"red": (210, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 210), "yellow": (230, 200, 40),
                 "purple": (140, 60, 170)}
SAMPLE_SUBTASKS = {"Monitoring": "vehicle/color", "Autonomous_Driving": "object_identification/color",
                   "OCR with Complex Context": "text recognition/color", "Diagram and Table": "table/color",
                   "Remote Sensing": "color"}


def write_samples(out: Path, lite: bool = False) -> Path:
    """The TSV of `mmerw` (or, lite, `mmerw_lite`) in `out`: per domain, a Perception question
    (which color is the box) and a Reasoning one (which side is it on) naming the first row's
    index instead of its image, as VLMEvalKit writes shared images."""
    import random

    import pandas as pd
    from PIL import Image, ImageDraw

    rng = random.Random(7 if lite else 3)
    colors, rows = list(SAMPLE_COLORS), []
    for d, domain in enumerate(DOMAINS):
        image = Image.new("RGB", (320, 240), (128, 128, 128))
        draw = ImageDraw.Draw(image)
        color, left = colors[rng.randrange(5)], rng.random() < 0.5
        x, y = rng.randrange(10, 130) + (0 if left else 160), rng.randrange(10, 200)
        draw.rectangle([x, y, x + 24, y + 24], fill=SAMPLE_COLORS[color])
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        first = 100 * (d + 1) + (50 if lite else 0)
        sides = ["the left half", "the right half", "the top edge", "the bottom edge", "the viewer's position"]
        rows.append({"index": first, "image": base64.b64encode(buffer.getvalue()).decode(),
                     "question": "What color is the small square box?",
                     OPTIONS: [f"({LETTERS[k]}) {c}" for k, c in enumerate(colors)],
                     "answer": LETTERS[colors.index(color)], "category": f"Perception/{domain}",
                     "l2-category": SAMPLE_SUBTASKS[domain]})
        rows.append({"index": first + 1, "image": str(first),
                     "question": "Where in the image is the small square box?",
                     OPTIONS: [f"({LETTERS[k]}) {s}" for k, s in enumerate(sides)],
                     "answer": "A" if left else "B", "category": f"Reasoning/{domain}",
                     "l2-category": SAMPLE_SUBTASKS[domain].split("/")[0] + "/position"})
    out.mkdir(parents=True, exist_ok=True)
    path = out / TSV_FILES[lite][0]
    columns = ["index", "image", "question", OPTIONS, "answer", "category", "l2-category"]
    pd.DataFrame(rows, columns=columns).to_csv(path, sep="\t", index=False)
    return path


def _benchmark(lite: bool) -> Benchmark:
    hub_id = TSV_HUB_ID if lite else PARQUET_HUB_IDS[False]
    patterns = (TSV_FILES[True][0],) if lite else ("*.parquet",)
    return Benchmark(
        name=_name(lite), title="MME-RealWorld-Lite" if lite else "MME-RealWorld",
        task="pr_mmerealworld_lite" if lite else "pr_mmerealworld", cli="mmerw-lite" if lite else "mmerw",
        in_field=lite, rows=None if lite else 29429,  # `--tasks field` runs Lite: 29,429 questions are a run of their own
        release=Release(hub_id, converter(lite), allow_patterns=patterns, layout=layout(lite)),
        samples=f"pr_eval.benchmarks.mmerw.write_samples(out, lite={lite})",
        main="letter_accuracy", main_label="letter acc", score=option_letter,
        labels=labels, breakdown=dict(BREAKDOWN),
    )


BENCHMARKS = (_benchmark(False), _benchmark(True))
