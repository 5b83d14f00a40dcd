"""TallyQA-Complex: counting questions whose answer needs more than detecting one object class.

Sources: Pixel-Reasoner's eval copy on the hub (the default); the TallyQA release (`test.json`:
image, question, answer, issimple, ...) with the Visual Genome / COCO images it names, of which
only the complex questions (`issimple` false) are kept. The release is not on the hub: pass
"official:DIR". Bundled samples: `make_tallyqa` of scripts/make_samples.py.

Scored by the exact count.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..scoring import answers
from .common import digest_files, read_json_list
from .registry import Benchmark, Converted, Release

LAYOUT = ("test.json from tallyqa.zip (github.com/manoja328/TallyQA_dataset) and the "
          "Visual Genome / COCO images it names (VG_100K/, VG_100K_2/, val2014/, ...)")


def convert(folder: Path, cache: Path, key: str, seed: int, limit: int | None = None) -> Converted:
    path = folder / "test.json"
    if not path.is_file():
        raise DataError(f"no test.json in {folder}; expected {LAYOUT}")
    items = read_json_list(path)
    if not all(isinstance(i, dict) for i in items):
        raise DataError(f"{path} does not hold a JSON list of questions (some are not objects)")
    if items and not any("issimple" in item for item in items):
        raise DataError(f"{path} has no 'issimple' field, so complex questions cannot be told apart")
    complex_items = [item for item in items if item.get("issimple") is False]
    root = _tallyqa_root(folder, complex_items)
    rows = [tallyqa_row(item, index) for index, item in enumerate(complex_items)]
    details = {"format": "tallyqa-json", "split": "test", "subset": "complex (issimple == false)",
               "questions_in_file": len(items), "simple_skipped": len(items) - len(complex_items)}
    return Converted(rows, root, details, digest_files([path], folder))


def _tallyqa_root(folder: Path, items: list[dict]) -> Path:
    """`folder`, or its images/ subfolder where the image paths resolve there."""
    sample = [str(i.get("image")) for i in items[:20] if i.get("image")]
    for base in (folder, folder / "images"):
        if sample and any((base / image).is_file() for image in sample):
            return base
    return folder


def tallyqa_row(item: dict, index: int) -> dict:
    qid = f"tallyqa-{item.get('question_id', index)}"
    row = {"qid": qid, "question": item.get("question"),
           "image": [str(item["image"])] if item.get("image") else [], "answer": None}
    answer = item.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or answer != int(answer) or answer < 0:
        return {**row, "_error": f"answer {answer!r} is not a count"}
    return {**row, "answer": str(int(answer))}


def exact_count(text: str, doc: dict) -> float:
    return answers.count_accuracy(text, doc["answer"])


BENCHMARK = Benchmark(
    name="tallyqa", title="TallyQA-Complex", task="pr_tallyqa_complex", in_suite=True,
    hub_id="JasperHaozhe/TallyQA-EvalData-PixelReasoner",
    release=Release(None, convert, layout=LAYOUT),
    samples="scripts/make_samples.py --only tallyqa",
    main="count_accuracy", main_label="count acc", score=exact_count,
)
