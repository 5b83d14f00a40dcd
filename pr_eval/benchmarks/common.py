"""What several benchmarks share: lettered options (rendering, seeded shuffles, the letter
scorer) and the small file helpers of their converters."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from pathlib import Path

from .. import answers
from ..store import write_atomic

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


def read_json_object(path: Path) -> dict | str:
    """The JSON object in `path`, or the reason it cannot be used."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"unreadable annotation {path.name}: {exc}"
    return value if isinstance(value, dict) else f"{path.name} does not hold a JSON object"


def write_cached(path: Path, payload: bytes) -> None:
    """Never a half-written file after a crash; not synced (thousands of images, rebuilt if lost)."""
    write_atomic(path, payload, sync=False)
