"""The `zoom` benchmark: a synthetic "find the small thing, zoom, read it" task in the V* schema.

It is generated here and bundled whole as its samples (`python -m pr_eval.benchmarks.zoom` writes
pr_eval/samples/zoom/), so it has no hub copy and no official release; scored like V* by the
option letter. The demo model (`--model demo`) was trained on its training split.

Each picture is a 644x644 grey canvas, a 4x4 grid of cells crossed by one tinted row and one
tinted column; the cell where they cross holds near its centre a small white card (24 px) with a
coloured dot (10 px) in its middle. The question asks the dot's colour (red, green, blue or yellow; chance 25%). At the
picture's own resolution the dot is an eighth of one visual token (the model merges 28x28 px into
a token); the protocol's crop of the card's cell shows it 4x larger, as a 40 px patch of pure
colour that fills whole tokens.

Why it looks like this (it exists to make the harness observable with a model trained on a CPU):
- 644x644 is the smallest canvas the engine does not resize (a multiple of 28 within the
  protocol's and Qwen's pixel bounds), so each picture costs the minimum of 529 visual tokens.
  No picture this small loses information at input resolution: the crop adds no pixels, only
  size. What makes the zoom necessary is the reader: the demo model learned to read dots that
  fill tokens, and reads no better than chance without the crop (the blind-tool ablation).
- A tiny model hardly knows WHERE something is from RoPE attention alone, so the tints encode
  position (the row's red level, the column's green level; the crossing cell is also blue) and
  the card sits at a grid point: the box to crop is a function of what the model sees, even of
  the picture's mean colour (a row or column is a quarter of it), so a model can learn it before
  its attention has learned to find the cell. Finding the cell is not what the benchmark
  measures; reading the dot is.
- The box around a grid point, `centre -/+ 0.025`, is padded by the protocol's 0.1 per side into
  exactly one grid cell (161x161 px), which the tools enlarge to 448x448 and the engine to
  644x644: the model sees the card 4x larger.

The picture and question are a pure function of (split, seed, index), so the benchmark and the
demo model's training data (`split="train"`) come from the same generator; the card's jitter is
even in the benchmark and odd in training data, so no training picture is a benchmark picture.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..trajectory import Sample
from .common import option_letter
from .registry import Benchmark

VERSION = "1"             # bump when the pictures or questions change: the cache key changes too
CANVAS = 644              # 23 * 28 px
GRID = 4                  # cells per side
CELL = CANVAS / GRID      # 161 px
CARD = 24                 # the white card's side, px
DOT = 10                  # the coloured dot's side, px
DOT_GROWTH = 1.43         # an enlarged target's dot grows as scale ** this (10 px -> 100 px at 5)
JITTER = 4                # the square's centre moves up to this many px from its grid point:
                          # by an even number in the benchmark, an odd one in training data, so
                          # no training picture is a benchmark picture
HALF_BOX = 0.025          # the answer box is grid point -/+ this (normalized)
LETTERS = "ABCD"
COLORS = {"red": (225, 30, 30), "green": (30, 175, 40), "blue": (35, 70, 235), "yellow": (235, 215, 25)}
QUESTION = "What color is the dot on the small white card?"
SUFFIX = "Answer with the option's letter from the given choices directly."
GREY = 128                       # the canvas, except the card's row and column of cells:
ROW_RED = (30, 100, 170, 240)    # the card's row of cells has this red level,
COLUMN_GREEN = (30, 100, 170, 240)  # its column this green level,
TARGET_BLUE = 230                # and the cell where they cross this blue level
WHITE = (255, 255, 255)
SPLITS = {"test": 0, "train": 1}
DEFAULT_ROWS = 96         # the benchmark: every cell 6 times, every colour (and answer letter) 24


@dataclass(frozen=True)
class Item:
    """One generated question with everything needed to score it or to script its answer."""

    index: int
    image: Image.Image
    question: str
    answer: str              # the correct option's letter
    color: str               # the dot's colour (the correct option's text)
    cell: tuple[int, int]    # (row, column) of the square's grid cell
    box: tuple[float, float, float, float]  # normalized [x1, y1, x2, y2] around the grid point
    card: tuple[int, int, int, int]  # the white card's pixels [x1, y1, x2, y2]: the target box

    @property
    def qid(self) -> str:
        return f"zoom-{self.index}"

    def sample(self) -> Sample:
        """The question as the loop's Sample, its picture already in memory."""
        image = self.image
        return Sample(task="zoom", sample_id=self.qid, question=self.question, answer=self.answer,
                      load_images=lambda: [image])


def grid_point(cell: tuple[int, int]) -> tuple[float, float]:
    """The normalized (x, y) centre of a grid cell (row, column)."""
    row, column = cell
    return (column + 0.5) / GRID, (row + 0.5) / GRID


def answer_box(cell: tuple[int, int]) -> tuple[float, float, float, float]:
    """The box a good model asks to crop: the grid point -/+ HALF_BOX, two decimals."""
    x, y = grid_point(cell)
    return tuple(round(v, 2) for v in (x - HALF_BOX, y - HALF_BOX, x + HALF_BOX, y + HALF_BOX))


def card_box(cell: tuple[int, int], offset: tuple[int, int], scale: float = 1) -> tuple[int, int, int, int]:
    """The white card's pixels [x1, y1, x2, y2) on the canvas: the question's target box."""
    x, y = grid_point(cell)
    cx, cy = round(x * CANVAS) + offset[0], round(y * CANVAS) + offset[1]
    side = 2 * round(CARD * scale / 2)
    return cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side


def canvas(cell: tuple[int, int], color: str, offset: tuple[int, int], scale: float = 1) -> Image.Image:
    """The picture: tinted cells, and the white square with its dot at the cell's grid point +
    offset (px). `scale` (1 to 5) enlarges the target for easier training: the card `scale`
    times, the dot faster, so that at 5 it covers most of the card (100 of 120 px)."""
    pixels = np.full((CANVAS, CANVAS, 3), GREY, np.uint8)
    row, column = cell
    edges = [round(k * CELL) for k in range(GRID + 1)]
    rows, columns = slice(edges[row], edges[row + 1]), slice(edges[column], edges[column + 1])
    pixels[rows, :, 0] = ROW_RED[row]
    pixels[:, columns, 1] = COLUMN_GREEN[column]
    pixels[rows, columns, 2] = TARGET_BLUE
    x, y = grid_point(cell)
    cx, cy = round(x * CANVAS) + offset[0], round(y * CANVAS) + offset[1]
    dot = DOT * scale ** DOT_GROWTH
    for side, paint in ((2 * round(CARD * scale / 2), WHITE), (2 * round(dot / 2), COLORS[color])):
        pixels[cy - side // 2:cy - side // 2 + side, cx - side // 2:cx - side // 2 + side] = paint
    return Image.fromarray(pixels, "RGB")


def question_text() -> str:
    """The question with its options one per line, in V*'s style (always in the same order)."""
    return "\n".join([QUESTION] + [f"({LETTERS[i]}) {c}" for i, c in enumerate(COLORS)] + [SUFFIX])


def _rng(split: str, seed: int, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from: {', '.join(SPLITS)}")
    return np.random.default_rng([SPLITS[split], seed, index])


def _plan(seed: int, n: int) -> list[tuple[int, int]]:
    """(cell, colour) of each test question: cells and colours each cycle evenly through a
    shuffled order, so no place or answer is favoured."""
    rng = np.random.default_rng([SPLITS["test"], seed, 2**31])
    cells = [int(c) % (GRID * GRID) for c in rng.permutation(n)]
    colors = [int(c) % len(COLORS) for c in rng.permutation(n)]
    return list(zip(cells, colors))


def make_item(index: int, seed: int = 0, split: str = "test", plan: tuple[int, int] | None = None,
              scale: float = 1) -> Item:
    """Question `index` of a split. `plan` fixes (cell, colour) as indices; without it they are
    drawn at random (training data). `scale` > 1 enlarges the target (training starts so)."""
    if not 1 <= scale <= 5:
        raise ValueError(f"scale must be 1 to 5, got {scale}")
    rng = _rng(split, seed, index)
    if plan is None:
        plan = (int(rng.integers(GRID * GRID)), int(rng.integers(len(COLORS))))
    cell_index, color_index = plan
    cell = divmod(cell_index, GRID)
    color = list(COLORS)[color_index]
    parity = SPLITS[split] % 2
    offset = tuple(int(v) for v in rng.choice(np.arange(-JITTER + parity, JITTER + 1, 2), size=2))
    return Item(index=index, image=canvas(cell, color, offset, scale), question=question_text(),
                answer=LETTERS[color_index], color=color, cell=cell, box=answer_box(cell),
                card=card_box(cell, offset, scale))


def make_benchmark(n: int = DEFAULT_ROWS, seed: int = 0) -> list[Item]:
    """The benchmark's questions, balanced over cells and colours."""
    if n < 1:
        raise ValueError(f"the benchmark needs at least one question, got n={n}")
    return [make_item(i, seed, "test", plan) for i, plan in enumerate(_plan(seed, n))]


def train_item(index: int, seed: int, scale: float = 1) -> Item:
    """Training question `index` (split "train": never a benchmark question)."""
    return make_item(index, seed, "train", scale=scale)


# --- The benchmark on disk (V* schema) ----------------------------------------------------------

PARQUET = "zoom.parquet"


def write_benchmark(out_dir: str | os.PathLike, n: int = DEFAULT_ROWS, seed: int = 0) -> Path:
    """Write `zoom.parquet` (qid, question, image, answer, as Pixel-Reasoner's V* copy, and the
    card's box as `targets`, as TreeBench's rows give theirs) and
    `images/<qid>.png` (lossless: JPEG would smear the small dot's colour) into `out_dir`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for item in make_benchmark(n, seed):
        relative = f"images/{item.qid}.png"
        item.image.save(out / relative, format="PNG", optimize=False, compress_level=6)
        rows.append({"qid": item.qid, "question": item.question, "image": [relative], "answer": item.answer,
                     "targets": [[float(v) for v in item.card]]})
    schema = pa.schema([("qid", pa.string()), ("question", pa.string()), ("image", pa.list_(pa.string())),
                        ("answer", pa.string()), ("targets", pa.list_(pa.list_(pa.float64())))])
    parquet = out / PARQUET
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), parquet, compression="zstd")
    return parquet


def digest(items) -> str:
    """sha256 over the questions, answers and pixels of generated items (determinism checks)."""
    h = hashlib.sha256()
    for item in items:
        h.update(item.question.encode() + b"\0" + item.answer.encode() + b"\0" + item.image.tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Write the benchmark (by default into the package, where `--data samples` finds it)."""
    parser = argparse.ArgumentParser(description="Write the zoom benchmark (zoom.parquet and images/).")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "samples" / "zoom")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    parquet = write_benchmark(args.out, args.rows, args.seed)
    print(f"wrote {parquet} and {args.rows} images; sha256 of the questions and pixels: "
          f"{digest(make_benchmark(args.rows, args.seed))}")
    return 0


BENCHMARK = Benchmark(
    name="zoom", title="Zoom (synthetic)", task="pr_zoom", rows=DEFAULT_ROWS, synthetic=True,
    samples="python -m pr_eval.benchmarks.zoom",
    main="letter_accuracy", main_label="letter acc", score=option_letter, grounding=True,
    palette=COLORS,
)


if __name__ == "__main__":
    sys.exit(main())
