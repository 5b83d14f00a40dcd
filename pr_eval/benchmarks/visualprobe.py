"""VisualProbe Easy, Medium and Hard: visual-search questions on high-resolution images (Mini-o3,
Lai et al., 2025).

Sources: the release only, one hub repo per difficulty (`Mini-o3/VisualProbe_Easy`,
`Mini-o3/VisualProbe_Medium`, `Mini-o3/VisualProbe_Hard`), each holding `val.json` (a JSON list
of records: images, doc_id, problem, solution, data_source) and a `data/` folder of images. There
is no Pixel-Reasoner copy, so `--data hub` (the repo), `--data samples` and a local folder all go
through the converter. A row per record: qid `visualprobe-<difficulty>-<doc_id>`, the question
the `problem` without its leading "<image>" token and newline (the protocol shows the image
itself), the image(s) the `images` paths, the answer the `solution`. A record lacking its
problem, solution or images keeps its place with `_error` set (the run records it as lost); an
image path that leaves the folder is kept and refused per sample when its images load. Bundled
samples: `write_samples` (a few colour questions per difficulty in the same schema).

Scored here by an exact match of the answer (`exact_match`, 0 or 1):
  - the prediction is what `pr_eval.scoring.answers.extract_answer` reads from the final turn (the last
    `\\boxed{}`, else the last `<answer>...</answer>`, else the rest of the last "Answer:" line;
    an empty box is an empty answer), or the whole final turn where it finds none;
  - the prediction and the solution are each normalized: lower-cased, inner runs of whitespace
    collapsed to one space, and surrounding whitespace and trailing punctuation (any run of the
    characters . , ; : ! ? and whitespace at the end) stripped;
  - equal normalized texts score 1.0, anything else 0.0 (no partial credit, no synonyms).
Mini-o3 itself scores the `<answer>` content with a GPT-4o judge (0/1) at Avg@32 (the mean over
32 sampled answers per question); no lmms-eval or VLMEvalKit task exists upstream. The judge is
not part of this module: exact match is a lower bound of the judged score (a correct answer worded
differently, "crimson" for "red", scores 0 here), so the figures are not the paper's.

Assumptions (not confirmed against the hub repos):
  - the `images` paths are relative to the repo folder (e.g. "data/xxx.jpg"). Mini-o3's training
    config names the files as `${BASE_IMAGE_DIR}/VisualProbe_Easy/val.json`, so the paths may
    instead be relative to that parent folder ("VisualProbe_Easy/data/xxx.jpg"): a relative path
    that names no file in the folder, but does once its first component is dropped, is read
    without it (counted in the run's details as `images_rerooted`);
  - `images` is a list (one path given as a string is taken as a list of one); `solution` is a
    text (a number is taken as its text; anything else makes the row an error); `doc_id` is
    unique within a difficulty (the data layer refuses duplicated question ids), and a record
    without one is numbered by its position;
  - `problem` starts with "<image>\\n" (removed where present, kept as is otherwise);
  - 500 test questions: Easy 141, Hard 106, Medium the rest (about 253, inferred: `rows` None);
  - the prompt is the protocol's (Pixel-Reasoner's), not Mini-o3's own system prompt.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path, PurePosixPath

from PIL import Image, ImageDraw

from ..errors import DataError
from ..scoring import answers
from .common import digest_files, read_json_list
from .registry import Benchmark, Converted, Group, Release

DIFFICULTIES = ("easy", "medium", "hard")
ROWS = {"easy": 141, "medium": None, "hard": 106}
ANNOTATION = "val.json"
_IMAGE_TOKEN = re.compile(r"^\s*<image>[ \t]*\r?\n?")
_TRAILING = re.compile(r"[\s.,;:!?]+$")


def hub_id(difficulty: str) -> str:
    return f"Mini-o3/VisualProbe_{difficulty.capitalize()}"


def layout(difficulty: str) -> str:
    return f"{ANNOTATION} and the data/ folder of images it names (the hub repo {hub_id(difficulty)})"


# --- the release -> rows --------------------------------------------------------------------------

def converter(difficulty: str):
    """The converter of one difficulty's release folder."""

    def convert(folder: Path, cache: Path, key: str, seed: int, limit: int | None = None) -> Converted:
        path = folder / ANNOTATION
        if not path.is_file():
            present = sorted(p.name for p in folder.glob("*.json"))
            raise DataError(f"no {ANNOTATION} in {folder} (JSON files there: {', '.join(present) or 'none'}); "
                            f"expected {layout(difficulty)}, or pass the folder that holds it")
        records = read_json_list(path)  # each record is checked by visualprobe_row
        rows = [visualprobe_row(difficulty, record, index) for index, record in enumerate(records)]
        rerooted = 0
        for row in rows:
            images = [_in_folder(folder, image) for image in row["image"]]
            rerooted += sum(new != old for new, old in zip(images, row["image"]))
            row["image"] = images
        details = {"format": "mini-o3-json", "file": ANNOTATION, "difficulty": difficulty,
                   "questions_in_file": len(records), "images_rerooted": rerooted,
                   "score": "exact match of the extracted answer (normalized); not Mini-o3's GPT-4o judge"}
        return Converted(rows, folder, details, digest_files([path], folder))

    return convert


def visualprobe_row(difficulty: str, record, index: int) -> dict:
    """One question from its `val.json` record; `_error` says what makes it unusable."""
    if not isinstance(record, dict):
        return {"qid": f"visualprobe-{difficulty}-row{index}", "question": None, "image": [], "answer": None,
                "_error": f"record {index} of {ANNOTATION} is not a JSON object"}
    doc_id = record.get("doc_id")
    qid = f"visualprobe-{difficulty}-{doc_id if doc_id not in (None, '') else f'row{index}'}"
    images = record.get("images")
    images = [images] if isinstance(images, str) else images
    problem, solution = record.get("problem"), record.get("solution")
    row = {"qid": qid, "question": None, "image": [], "answer": None}
    errors = []
    if isinstance(images, list) and images and all(isinstance(p, str) and p for p in images):
        row["image"] = list(images)
    else:
        errors.append(f"'images' is {images!r}, not a list of image paths")
    if isinstance(problem, str) and _IMAGE_TOKEN.sub("", problem, count=1).strip():
        row["question"] = _IMAGE_TOKEN.sub("", problem, count=1).strip()
    else:
        errors.append("the record has no 'problem' (question) text")
    if isinstance(solution, (int, float)) and not isinstance(solution, bool):
        solution = str(solution)
    if isinstance(solution, str) and solution.strip():
        row["answer"] = solution.strip()
    else:
        errors.append(f"'solution' is {solution!r}, not an answer text")
    return {**row, "_error": "; ".join(errors)} if errors else row


def _in_folder(folder: Path, image: str) -> str:
    """`image`, or `image` without its first component where only that names a file in `folder`
    (paths written relative to the folder above the repo's, see the module doc)."""
    parts = PurePosixPath(image.replace("\\", "/")).parts
    if (folder / image).is_file() or len(parts) < 2 or PurePosixPath(image).is_absolute() or ".." in parts:
        return image
    tail = PurePosixPath(*parts[1:]).as_posix()
    return tail if (folder / tail).is_file() else image


# --- the benchmark's rule -------------------------------------------------------------------------

def normalize(text) -> str:
    """Lower-cased, inner whitespace collapsed, surrounding whitespace and trailing . , ; : ! ?
    stripped: the form the prediction and the solution are compared in."""
    return _TRAILING.sub("", " ".join(str(text).lower().split()))


def prediction(text: str) -> str:
    """The extracted answer of the final turn, else the whole turn."""
    if not isinstance(text, str):
        return ""
    found = answers.extract_answer(text)
    return text if found is None else found


def exact_match(text: str, doc: dict) -> float:
    """1.0 when the normalized prediction equals the normalized solution (any of them, if a list)."""
    gold = doc.get("answer")
    golds = gold if isinstance(gold, (list, tuple)) else [gold]
    predicted = normalize(prediction(text))
    return float(any(g is not None and normalize(g) != "" and predicted == normalize(g) for g in golds))


# --- bundled samples ------------------------------------------------------------------------------

COLORS = {"red": (210, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 210), "yellow": (230, 200, 40)}
SHAPES = ("square", "circle")
# (questions, image width, image height, side of the object in pixels) per difficulty
SAMPLE_SIZES = {"easy": (3, 1024, 768, 48), "medium": (3, 1600, 1200, 24), "hard": (2, 2400, 1800, 12)}


def write_samples(out: Path, difficulty: str = "easy", seed: int | None = None) -> Path:
    """`val.json` and `data/<difficulty>_<k>.png` in `out`, in the release's schema: "What color
    is the small <shape>?" about one small coloured shape on a grey picture (smaller, on larger
    pictures, the harder the difficulty). Byte-identical for the same arguments."""
    questions, width, height, side = SAMPLE_SIZES[difficulty]
    rng = random.Random(f"visualprobe-{difficulty}-{DIFFICULTIES.index(difficulty) if seed is None else seed}")
    (out / "data").mkdir(parents=True, exist_ok=True)
    records = []
    for k in range(questions):
        color, shape = rng.choice(sorted(COLORS)), SHAPES[k % len(SHAPES)]
        image = Image.new("RGB", (width, height), (128, 128, 128))
        draw = ImageDraw.Draw(image)
        x, y = rng.randrange(side, width - 2 * side), rng.randrange(side, height - 2 * side)
        (draw.rectangle if shape == "square" else draw.ellipse)([x, y, x + side, y + side], fill=COLORS[color])
        name = f"data/{difficulty}_{k}.png"
        image.save(out / name, optimize=True)
        records.append({"images": [name], "doc_id": k,
                        "problem": f"<image>\nWhat color is the small {shape}? Answer with one word.",
                        "solution": color, "data_source": f"visualprobe_{difficulty}"})
    (out / ANNOTATION).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return out / ANNOTATION


def _benchmark(difficulty: str) -> Benchmark:
    return Benchmark(
        name=f"visualprobe_{difficulty}", title=f"VisualProbe {difficulty.capitalize()}",
        task=f"pr_visualprobe_{difficulty}", in_field=True, rows=ROWS[difficulty],
        release=Release(hub_id(difficulty), converter(difficulty), layout=layout(difficulty)),
        samples=f"pr_eval.benchmarks.visualprobe.write_samples(out, '{difficulty}')",
        main="exact_match", main_label="exact match", score=exact_match,
    )


BENCHMARKS = tuple(_benchmark(d) for d in DIFFICULTIES)
# `--tasks visualprobe` runs the three (tasks/pr_visualprobe/pr_visualprobe.yaml); each difficulty
# keeps its own figures, as Mini-o3 reports them (no mean over the difficulties).
GROUPS = (Group("visualprobe", "pr_visualprobe", tuple(b.short for b in BENCHMARKS)),)


if __name__ == "__main__":  # regenerate the bundled samples
    for _difficulty in DIFFICULTIES:
        _out = Path(__file__).resolve().parent.parent / "samples" / f"visualprobe_{_difficulty}"
        print(write_samples(_out, _difficulty))
