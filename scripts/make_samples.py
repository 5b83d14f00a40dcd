"""Generate the small sample sets bundled at pr_eval/samples/ (`--data samples`), and, for tests,
small copies of the benchmarks' official releases.

Bundled sets, in the schema of Pixel-Reasoner's eval copies (one parquet file with `qid`,
`question`, `image` (a list of paths), `answer`, and `is_video` for MVBench; images under
`images/`), so the whole pipeline runs without the hub:

- vstar/    12 questions about one small shape on a large textured picture (zooming in helps)
- tallyqa/  8 "how many" questions about small shapes; answers are small counts
- infovqa/  8 questions about 4 infographic-like pictures; answers are lists of strings
- mvbench/  25 questions covering all 20 subtasks (8 over 3 of them, one for each other), each a video given as 16 frame JPEGs in
            images/<qid>/frame_XX.jpg; the subtask is the middle of the qid
            ("mvbench-moving_direction-0"): the copy's schema has no subtask column

Official-release generators (used by tests, written to temporary folders): `make_vstar_raw`,
`make_docvqa_infographic`, `make_mvbench_official` (json + short mp4 videos, written with
OpenCV) and `make_tallyqa_official`.

    python scripts/make_samples.py                          # all four into pr_eval/samples/<name>/
    python scripts/make_samples.py --out DIR --only vstar   # DIR/vstar/

The output is a pure function of the arguments: the same seed gives byte-identical files (with
the same Pillow and libjpeg).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "pr_eval" / "samples"
LETTERS = "ABCD"
SIZES = [(1200, 900), (1400, 1050), (1600, 1200), (1800, 1350), (2000, 1500)]
COLORS = {  # saturated, so the answer is clear once the shape is seen at full resolution
    "red": (215, 25, 30), "blue": (30, 70, 220), "green": (25, 165, 60), "yellow": (245, 215, 20),
    "orange": (250, 130, 15), "purple": (135, 40, 185), "pink": (245, 105, 185), "white": (250, 250, 250),
    "black": (12, 12, 12),
}
SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross", "hexagon"]
SUFFIX = "Answer with the option's letter from the given choices directly."
SCHEMA = pa.schema([("qid", pa.string()), ("question", pa.string()), ("image", pa.list_(pa.string())),
                    ("answer", pa.string())])


def background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A muted, blotchy texture (mostly brightness, a little tint) at two scales, plus grain."""
    base = rng.uniform(80, 160, size=3)

    def layer(cell: int, light: float, tint: float) -> np.ndarray:
        shape = (height // cell + 2, width // cell + 2)
        noise = rng.normal(0, light, size=shape + (1,)) + rng.normal(0, tint, size=shape + (3,))
        small = Image.fromarray(np.clip(128 + noise, 0, 255).astype(np.uint8))
        return np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.float32) - 128

    pixels = base + layer(160, 30, 8) + layer(24, 10, 3)
    pixels += rng.normal(0, 2.0, size=(height, width, 1))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, center: tuple[int, int], size: int, color) -> None:
    x, y = center
    r = size / 2
    outline = (40, 40, 40) if color != COLORS["black"] else (200, 200, 200)
    if shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline=outline, width=2)
    elif shape == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=color, outline=outline, width=2)
    elif shape == "cross":
        t = r / 3
        for box in ([x - r, y - t, x + r, y + t], [x - t, y - r, x + t, y + r]):
            draw.rectangle(box, fill=color)
    else:
        corners = {"triangle": 3, "diamond": 4, "hexagon": 6, "star": 10}[shape]
        start = {"triangle": -np.pi / 2, "diamond": 0.0, "hexagon": 0.0, "star": -np.pi / 2}[shape]
        points = []
        for k in range(corners):
            radius = r * (0.45 if shape == "star" and k % 2 else 1.0)
            angle = start + 2 * np.pi * k / corners
            points.append((x + radius * np.cos(angle), y + radius * np.sin(angle)))
        draw.polygon(points, fill=color, outline=outline)


def place(rng: np.random.Generator, width: int, height: int, taken: list, size: int,
          x_range: tuple[float, float] = (0.05, 0.95)) -> tuple[int, int]:
    """A random center at least a few shape sizes away from the shapes already placed."""
    for _ in range(100_000):
        x = int(rng.uniform(*x_range) * width)
        y = int(rng.uniform(0.08, 0.92) * height)
        if all(abs(x - tx) > 3 * size and abs(y - ty) > 3 * size or abs(x - tx) > 6 * size
               or abs(y - ty) > 6 * size for tx, ty in taken):
            taken.append((x, y))
            return x, y
    raise RuntimeError(f"no room for another shape of size {size} in a {width}x{height} picture")


def scene(rng: np.random.Generator, targets: list[tuple[str, str, tuple[float, float]]],
          sizes: list[tuple[int, int]] = SIZES, boxes: list | None = None) -> Image.Image:
    """A picture holding the `targets` (shape, color, x range) and a few distractor shapes of
    other kinds, all small. The targets' [x, y, w, h] boxes are appended to `boxes`."""
    width, height = sizes[rng.integers(len(sizes))]
    image = background(rng, width, height)
    draw = ImageDraw.Draw(image)
    taken: list = []
    for shape, color, x_range in targets:
        size = int(rng.integers(30, 61))
        center = place(rng, width, height, taken, size, x_range)
        draw_shape(draw, shape, center, size, COLORS[color])
        if boxes is not None:
            boxes.append([center[0] - size // 2, center[1] - size // 2, size, size])
    others = [s for s in SHAPES if s not in {t[0] for t in targets}]
    for _ in range(int(rng.integers(3, 7))):
        size = int(rng.integers(30, 61))
        color = list(COLORS)[rng.integers(len(COLORS))]
        shape = others[rng.integers(len(others))]
        draw_shape(draw, shape, place(rng, width, height, taken, size), size, COLORS[color])
    return image


def letter_plan(rng: np.random.Generator, n: int, letters: str) -> list[str]:
    """The correct letter of each question: every letter about equally often, in random order."""
    plan = [letters[i % len(letters)] for i in range(n)]
    return [plan[i] for i in rng.permutation(n)]


def options_text(question: str, options: list[str]) -> str:
    lines = [question] + [f"({LETTERS[i]}) {option}" for i, option in enumerate(options)] + [SUFFIX]
    return "\n".join(lines)


def save_jpeg(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=85, subsampling=2, optimize=True, progressive=False)


def make_vstar(out_dir: str | Path, n_attribute: int = 8, n_spatial: int = 4, seed: int = 0) -> Path:
    """Write `vstar.parquet` and `images/` into `out_dir`; return the parquet path."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    rows = []
    for i, letter in enumerate(letter_plan(rng, n_attribute, LETTERS)):
        shape = SHAPES[rng.integers(len(SHAPES))]
        names = list(COLORS)
        picks = [names[k] for k in rng.permutation(len(names))[:4]]
        answer_color = picks[0]
        options = picks[1:]
        options.insert(LETTERS.index(letter), answer_color)
        relative = f"images/direct_attributes/{i}.jpg"
        save_jpeg(scene(rng, [(shape, answer_color, (0.05, 0.95))]), out / relative)
        rows.append({"qid": f"vstar-direct_attributes-{i}",
                     "question": options_text(f"What is the color of the {shape}?", options),
                     "image": [relative], "answer": letter})
    for i, letter in enumerate(letter_plan(rng, n_spatial, LETTERS[:2])):
        first, second = (SHAPES[k] for k in rng.permutation(len(SHAPES))[:2])
        color1, color2 = (list(COLORS)[k] for k in rng.permutation(len(COLORS))[:2])
        side = ["left", "right"][rng.integers(2)]
        # The first object stays in one half and the second in the other: the answer is clear.
        halves = {"left": (0.05, 0.42), "right": (0.58, 0.95)}
        other = "right" if side == "left" else "left"
        options = [side, other] if letter == "A" else [other, side]
        relative = f"images/relative_position/{i}.jpg"
        image = scene(rng, [(first, color1, halves[side]), (second, color2, halves[other])])
        save_jpeg(image, out / relative)
        question = f"Is the {color1} {first} on the left or right side of the {color2} {second}?"
        rows.append({"qid": f"vstar-relative_position-{i}", "question": options_text(question, options),
                     "image": [relative], "answer": letter})
    parquet = out / "vstar.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), parquet, compression="zstd")
    return parquet


# --- TallyQA: counting ------------------------------------------------------------------------------

COUNT_SCHEMA = SCHEMA
COUNT_SIZE = (640, 480)


def grid_centers(rng: np.random.Generator, n: int, width: int, height: int, cols: int = 6,
                 rows: int = 4) -> list[tuple[int, int]]:
    """`n` centers in distinct cells of a cols x rows grid, jittered: shapes never overlap."""
    cells = rng.permutation(cols * rows)[:n]
    cw, ch = width / cols, height / rows
    return [(int((c % cols + rng.uniform(0.3, 0.7)) * cw), int((c // cols + rng.uniform(0.3, 0.7)) * ch))
            for c in cells]


def counting_scene(rng: np.random.Generator, shape: str, color: str, count: int,
                   size: tuple[int, int] = COUNT_SIZE) -> Image.Image:
    """`count` shapes of one kind and color, with distractors of the same shape in other colors
    and of other shapes in the same color (so the question needs both attributes)."""
    width, height = size
    image = background(rng, width, height)
    draw = ImageDraw.Draw(image)
    n_distractors = int(rng.integers(3, 7))
    centers = grid_centers(rng, count + n_distractors, width, height)
    other_colors = [c for c in COLORS if c != color]
    other_shapes = [s for s in SHAPES if s != shape]
    for k, center in enumerate(centers):
        if k < count:
            kind, paint = shape, color
        elif k % 2:
            kind, paint = shape, other_colors[rng.integers(len(other_colors))]
        else:
            kind, paint = other_shapes[rng.integers(len(other_shapes))], color
        draw_shape(draw, kind, center, int(rng.integers(26, 40)), COLORS[paint])
    return image


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def make_tallyqa(out_dir: str | Path, n: int = 8, seed: int = 0) -> Path:
    """Write `tallyqa.parquet` and `images/` into `out_dir`: "how many" questions, answers 0-7."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    counts = [int(c) for c in rng.permutation(8)[:n]] if n <= 8 else [int(c) for c in rng.integers(0, 8, n)]
    rows = []
    for i, count in enumerate(counts):
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = [c for c in COLORS if c != "white"][rng.integers(len(COLORS) - 1)]
        relative = f"images/{i}.jpg"
        save_jpeg(counting_scene(rng, shape, color, count), out / relative)
        rows.append({"qid": f"tallyqa-{i}", "question": f"How many {color} {plural(shape)} are there in the image?",
                     "image": [relative], "answer": str(count)})
    parquet = out / "tallyqa.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=COUNT_SCHEMA), parquet, compression="zstd")
    return parquet


# --- InfoVQA: infographics with text -------------------------------------------------------------

INFO_SCHEMA = pa.schema([("qid", pa.string()), ("question", pa.string()), ("image", pa.list_(pa.string())),
                         ("answer", pa.list_(pa.string()))])
TOPICS = [("Coffee habits", ["Espresso", "Latte", "Filter", "Mocha"]),
          ("Commuting to work", ["Car", "Bus", "Bicycle", "Walking"]),
          ("Household pets", ["Dogs", "Cats", "Fish", "Birds"]),
          ("Energy sources", ["Solar", "Wind", "Hydro", "Gas"]),
          ("Reading time", ["Novels", "News", "Comics", "Poetry"])]
PALETTE = [(52, 101, 164), (204, 80, 62), (90, 160, 90), (230, 160, 40)]


def font(size: int) -> ImageFont.ImageFont:
    """PIL's bundled default font at `size` (a bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def infographic(rng: np.random.Generator, title: str, labels: list[str]) -> tuple[Image.Image, dict]:
    """A tall poster: title, a bar chart with value labels, and a highlighted share. Returns the
    image and the facts drawn on it (values per label, the share and its subject)."""
    width, height = 900, 1300
    image = Image.new("RGB", (width, height), (246, 243, 236))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, width, 130], fill=(40, 52, 72))
    draw.text((40, 38), title.upper(), fill=(255, 255, 255), font=font(44))
    draw.text((40, 160), "Survey of 2,000 adults, 2023", fill=(90, 90, 90), font=font(22))
    values = [int(v) for v in rng.choice(np.arange(5, 60), size=len(labels), replace=False)]
    top, bar_h, gap = 240, 70, 40
    for k, (label, value) in enumerate(zip(labels, values)):
        y = top + k * (bar_h + gap)
        draw.text((40, y + 20), label, fill=(30, 30, 30), font=font(28))
        draw.rectangle([250, y, 250 + value * 9, y + bar_h], fill=PALETTE[k % len(PALETTE)])
        draw.text((262 + value * 9, y + 20), f"{value}%", fill=(30, 30, 30), font=font(28))
    share = int(rng.integers(11, 90))
    subject = labels[int(rng.integers(len(labels)))]
    box = top + len(labels) * (bar_h + gap) + 40
    draw.rounded_rectangle([40, box, width - 40, box + 220], radius=24, fill=(255, 255, 255),
                           outline=(40, 52, 72), width=4)
    draw.text((80, box + 40), f"{share}%", fill=(204, 80, 62), font=font(72))
    draw.text((80, box + 140), f"of {subject.lower()} fans say it is daily", fill=(30, 30, 30), font=font(26))
    for k in range(6):  # small print: the kind of detail infographic questions ask about
        draw.text((40, box + 270 + 28 * k), f"Note {k + 1}: figures rounded to the nearest percent.",
                  fill=(120, 120, 120), font=font(16))
    return image, {"values": dict(zip(labels, values)), "share": share, "subject": subject}


def infovqa_questions(facts: dict) -> list[tuple[str, list[str]]]:
    """Two questions about an infographic, with their reference answers."""
    values = facts["values"]
    best = max(values, key=values.get)
    return [(f"What percentage of {facts['subject'].lower()} fans say it is daily?",
             [f"{facts['share']}%", str(facts["share"])]),
            ("Which category has the highest share?", [best, best.lower()])]


def make_infovqa(out_dir: str | Path, n: int = 8, seed: int = 0) -> Path:
    """Write `infographics.parquet` and `images/`: two questions per infographic."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range((n + 1) // 2):
        title, labels = TOPICS[k % len(TOPICS)]
        image, facts = infographic(rng, title, labels)
        relative = f"images/{k}.jpg"
        save_jpeg(image, out / relative)
        for question, answers in infovqa_questions(facts):
            if len(rows) < n:
                rows.append({"qid": f"infovqa-{len(rows)}", "question": question, "image": [relative],
                             "answer": answers})
    parquet = out / "infographics.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=INFO_SCHEMA), parquet, compression="zstd")
    return parquet


# --- MVBench: videos as 16 frames ----------------------------------------------------------------

VIDEO_SCHEMA = pa.schema([("qid", pa.string()), ("question", pa.string()), ("image", pa.list_(pa.string())),
                          ("answer", pa.string()), ("is_video", pa.bool_())])
FRAME_SIZE = (320, 240)
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
ROOMS = {"red": (190, 60, 50), "blue": (50, 80, 190), "green": (60, 150, 70), "yellow": (220, 190, 50)}


def ball_frames(rng: np.random.Generator, movers: list[tuple[str, str]], still: int, n: int = 16,
                size: tuple[int, int] = FRAME_SIZE) -> list[Image.Image]:
    """Frames of balls: `movers` (color, direction) move 90 px, `still` balls stay put; all stay
    inside the picture."""
    width, height = size
    margin = 60
    starts = [(x + margin, y + margin)
              for x, y in grid_centers(rng, len(movers) + still, width - 2 * margin, height - 2 * margin,
                                       cols=4, rows=3)]
    frames = []
    for t in range(n):
        image = Image.new("RGB", size, (70, 72, 80))
        draw = ImageDraw.Draw(image)
        for k, (x, y) in enumerate(starts):
            color, dx, dy = "white", 0, 0
            if k < len(movers):
                color, direction = movers[k]
                dx, dy = DIRECTIONS[direction]
            shift = (t - n / 2) * 6
            cx, cy = x + dx * shift, y + dy * shift
            draw.ellipse([cx - 12, cy - 12, cx + 12, cy + 12], fill=COLORS[color])
        frames.append(image)
    return frames


def room_frames(first: str, second: str, n: int = 16, size: tuple[int, int] = FRAME_SIZE) -> list[Image.Image]:
    """A scene cut half-way: the first room's color, then the second's, with a table drawn in."""
    frames = []
    for t in range(n):
        image = Image.new("RGB", size, ROOMS[first if t < n // 2 else second])
        draw = ImageDraw.Draw(image)
        draw.rectangle([90, 150, 230, 170], fill=(110, 80, 50))
        draw.rectangle([100, 170, 110, 220], fill=(110, 80, 50))
        draw.rectangle([210, 170, 220, 220], fill=(110, 80, 50))
        frames.append(image)
    return frames


def mvbench_items(rng: np.random.Generator) -> list[tuple[str, list[Image.Image], str, list[str], str]]:
    """(subtask, frames, question, candidates, answer) for 3 moving_direction, 3 moving_count and
    2 scene_transition questions; the answer's position varies."""
    items = []
    ball_colors = ["red", "blue", "green", "yellow", "orange"]
    for direction in ("left", "up", "right"):
        color = ball_colors[rng.integers(len(ball_colors))]
        candidates = [str(d) for d in rng.permutation(list(DIRECTIONS))]
        items.append(("moving_direction", ball_frames(rng, [(color, direction)], still=2),
                      f"Which direction does the {color} ball move?", candidates, direction))
    for moving in (2, 1, 3):
        movers = [(ball_colors[k], list(DIRECTIONS)[k % 4]) for k in range(moving)]
        candidates = [str(c) for c in rng.permutation(["1", "2", "3", "4"])]
        items.append(("moving_count", ball_frames(rng, movers, still=2),
                      "How many balls are moving?", candidates, str(moving)))
    for first, second in (("red", "blue"), ("green", "yellow")):
        answer = f"From the {first} room to the {second} room."
        wrong = [f"From the {second} room to the {first} room.", f"From the {first} room to the green room."
                 if second != "green" else f"From the {first} room to the red room.",
                 f"The scene stays in the {first} room."]
        candidates = [answer] + wrong
        candidates = [candidates[i] for i in rng.permutation(4)]
        items.append(("scene_transition", room_frames(first, second),
                      "What is the scene transition in the video?", candidates, answer))
    # One question for each other subtask, so a run of the 20-subtask group has data everywhere;
    # the clips are synthetic (moving balls), only the subtask label differs.
    from pr_eval.benchmarks.mvbench import SUBTASKS as MVBENCH_SUBTASKS

    covered = {item[0] for item in items}
    for k, subtask in enumerate(s for s in MVBENCH_SUBTASKS if s not in covered):
        color, direction = ball_colors[k % len(ball_colors)], list(DIRECTIONS)[k % 4]
        candidates = [str(d) for d in rng.permutation(list(DIRECTIONS))]
        items.append((subtask, ball_frames(rng, [(color, direction)], still=1),
                      f"Which direction does the {color} ball move?", candidates, direction))
    return items


def make_mvbench(out_dir: str | Path, seed: int = 0) -> Path:
    """Write `mvbench.parquet` and `images/<qid>/frame_XX.jpg` (16 per question)."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    rows, counters = [], {}
    for subtask, frames, question, candidates, answer in mvbench_items(rng):
        index = counters[subtask] = counters.get(subtask, -1) + 1
        qid = f"mvbench-{subtask}-{index}"
        paths = [f"images/{qid}/frame_{k:02d}.jpg" for k in range(len(frames))]
        for frame, relative in zip(frames, paths):
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            frame.save(out / relative, format="JPEG", quality=80, optimize=True)
        rows.append({"qid": qid, "question": options_text(question, candidates), "image": paths,
                     "answer": LETTERS[candidates.index(answer)], "is_video": True})
    parquet = out / "mvbench.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=VIDEO_SCHEMA), parquet, compression="zstd")
    return parquet


# --- Official releases (for tests) ---------------------------------------------------------------

SMALL_SIZES = [(1000, 750), (1100, 825)]


def make_vstar_raw(out_dir: str | Path, n_attribute: int = 3, n_spatial: int = 2, seed: int = 0) -> Path:
    """V*'s raw release: direct_attributes/ and relative_position/ with sa_N.jpg beside sa_N.json
    = {"target_object", "bbox", "question", "options"}, the CORRECT OPTION FIRST."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    number = 100
    for i in range(n_attribute):
        shape = SHAPES[rng.integers(len(SHAPES))]
        names = list(COLORS)
        picks = [names[k] for k in rng.permutation(len(names))[:4]]
        boxes: list = []
        image = scene(rng, [(shape, picks[0], (0.05, 0.95))], sizes=SMALL_SIZES, boxes=boxes)
        number += int(rng.integers(1, 500))
        _save_pair(out / "direct_attributes" / f"sa_{number}", image,
                   {"target_object": [shape], "bbox": boxes, "question": f"What is the color of the {shape}?",
                    "options": picks})
    for i in range(n_spatial):
        first, second = (SHAPES[k] for k in rng.permutation(len(SHAPES))[:2])
        side = ["left", "right"][rng.integers(2)]
        other = "right" if side == "left" else "left"
        halves = {"left": (0.05, 0.42), "right": (0.58, 0.95)}
        boxes = []
        image = scene(rng, [(first, "red", halves[side]), (second, "blue", halves[other])],
                      sizes=SMALL_SIZES, boxes=boxes)
        number += int(rng.integers(1, 500))
        _save_pair(out / "relative_position" / f"sa_{number}", image,
                   {"target_object": [first, second], "bbox": boxes,
                    "question": f"Is the red {first} on the left or right side of the blue {second}?",
                    "options": [side, other]})
    return out


def _save_pair(stem: Path, image: Image.Image, annotation: dict) -> None:
    save_jpeg(image, stem.with_suffix(".jpg"))
    stem.with_suffix(".json").write_text(json.dumps(annotation), encoding="utf-8")


def make_docvqa_infographic(out_dir: str | Path, n_images: int = 3, seed: int = 0) -> Path:
    """DocVQA's InfographicVQA validation split as on the hub: one parquet file of rows with the
    image embedded (questionId, question, answers, answer_type, image, image_url,
    operation/reasoning, ocr, data_split), two questions per image."""
    import datasets  # the hub's own writer, so the file has exactly the hub's schema

    datasets.disable_progress_bars()
    rng = np.random.default_rng(seed)
    records = []
    for k in range(n_images):
        title, labels = TOPICS[k % len(TOPICS)]
        image, facts = infographic(rng, title, labels)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        for question, answers in infovqa_questions(facts):
            records.append({"questionId": str(98000 + len(records)), "question": question, "answers": answers,
                            "answer_type": ["single span"], "image": {"bytes": buffer.getvalue(), "path": f"{k}.jpeg"},
                            "image_url": f"https://example.invalid/{k}.jpeg", "operation/reasoning": [],
                            "ocr": "", "data_split": "val"})
    features = datasets.Features({
        "questionId": datasets.Value("string"), "question": datasets.Value("string"),
        "answers": datasets.Sequence(datasets.Value("string")),
        "answer_type": datasets.Sequence(datasets.Value("string")), "image": datasets.Image(),
        "image_url": datasets.Value("string"), "operation/reasoning": datasets.Sequence(datasets.Value("string")),
        "ocr": datasets.Value("string"), "data_split": datasets.Value("string")})
    path = Path(out_dir) / "InfographicVQA" / "validation-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(records, features=features).to_parquet(str(path))
    return path


VIDEO_FPS = 10
VIDEO_FRAMES = 40
VIDEO_SIZE = (320, 120)
DOT_STEP = 7  # pixels the dot moves per frame: its position tells the frame's index


def coded_frames(n: int = VIDEO_FRAMES, size: tuple[int, int] = VIDEO_SIZE) -> list[np.ndarray]:
    """RGB frames with a red dot whose position tells the frame's index (see `frame_index`), on
    a background that brightens from frame to frame."""
    frames = []
    for t in range(n):
        frame = np.full((size[1], size[0], 3), 30 + 4 * (t % 40), np.uint8)
        x = 10 + DOT_STEP * (t % 40)
        frame[size[1] // 2 - 5:size[1] // 2 + 5, x:x + 10] = (230, 30, 30)
        frames.append(frame)
    return frames


def frame_index(frame) -> int:
    """The index a `coded_frames` frame was made with, read from its dot's center."""
    pixels = np.asarray(frame, dtype=np.int32)
    row = pixels[pixels.shape[0] // 2]
    red = np.nonzero((row[:, 0] > 150) & (row[:, 1] < 110))[0]
    return int(round((red.mean() - 10 - 4.5) / DOT_STEP))


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = VIDEO_FPS, codec: str = "mp4v") -> Path:
    """Write RGB frames as a video decord can read (mp4v in .mp4, MJPG in .avi) with OpenCV."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with codec {codec}")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def make_mvbench_official(out_dir: str | Path, layout: str = "segments", leak_items: int = 20) -> Path:
    """MVBench as released: json/<subtask>.json and the videos, in the hub `video` branch's
    layout ("segments": star/Charades_segment/..., tvqa/video_fps3_hq_segment/...) or the
    original one ("original": video/star/Charades_v1_480/..., frame folders under
    video/tvqa/frames_fps3_hq/<clip>/00001.jpg). Subtasks:
      moving_direction    2 questions, whole videos
      action_sequence     2 questions with start/end seconds (cut segments in the video branch)
      episodic_reasoning  1 question (a frame folder in the original layout)
      object_shuffle      `leak_items` questions whose answer is always the first candidate"""
    out = Path(out_dir)
    frames = coded_frames()
    original = layout == "original"
    clevrer = out / ("video/clevrer/video_validation" if original else "clevrer/video_validation")
    for name in ("video_10000.mp4", "video_10001.mp4"):
        write_video(clevrer / name, frames)
    if original:
        write_video(out / "video/star/Charades_v1_480/ABC12.mp4", frames)
        folder = out / "video/tvqa/frames_fps3_hq/castle_s01e01_seg02_clip_00"
        folder.mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(frames[:30], start=1):
            Image.fromarray(frame).save(folder / f"{k:05d}.jpg", quality=90)
        write_video(out / "video/perception/videos/video_9000.mp4", frames)
    else:
        write_video(out / "star/Charades_segment/ABC12.mp4", frames[10:26])
        write_video(out / "tvqa/video_fps3_hq_segment/castle_s01e01_seg02_clip_00.mp4", frames[:30])
        write_video(out / "perception/videos/video_9000.mp4", frames)
    questions = {
        "moving_direction": [
            {"video": "video_10000.mp4", "question": "Which direction does the red dot move?",
             "candidates": ["up", "right", "left"], "answer": "right"},
            {"video": "video_10001.mp4", "question": "Does the dot stop?",
             "candidates": ["yes", "no"], "answer": "no"}],
        "action_sequence": [
            {"video": "ABC12.mp4", "question": "What happened after the person took the food?",
             "candidates": ["Ate the medicine.", "Tidied up the blanket.", "Took the box."],
             "answer": "Took the box.", "start": 1.0, "end": 2.5},
            {"video": "ABC12.mp4", "question": "What did the person do first?",
             "candidates": ["Sat down.", "Opened the door."], "answer": "Sat down.", "start": 1.0, "end": 2.5}],
        "episodic_reasoning": [
            {"video": "castle_s01e01_seg02_clip_00", "question": "What did Castle hold?",
             "candidates": ["A cup", "A phone", "A book", "A key", "A pen"], "answer": "A phone",
             "start": 2.0, "end": 9.0}],
        "object_shuffle": [
            {"video": "video_9000.mp4", "question": f"Where is the ball at the end? ({k})",
             "candidates": ["under the first cup", "under the second cup", "under the third cup"],
             "answer": "under the first cup"} for k in range(leak_items)],
    }
    (out / "json").mkdir(parents=True, exist_ok=True)
    for name, items in questions.items():
        (out / "json" / f"{name}.json").write_text(json.dumps(items, indent=1), encoding="utf-8")
    return out


def make_tallyqa_official(out_dir: str | Path, n: int = 6, seed: int = 0) -> Path:
    """TallyQA's release: test.json (answer, data_source, image, image_id, issimple, question,
    question_id) beside the Visual Genome / COCO images it names; every other question simple."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        count = int(rng.integers(0, 6))
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = ["red", "blue", "green"][i % 3]
        if i % 2:
            image_id, relative = 2410000 + i, f"VG_100K_2/{2410000 + i}.jpg"
        else:
            image_id, relative = 393000 + i, f"val2014/COCO_val2014_{393000 + i:012d}.jpg"
        save_jpeg(counting_scene(rng, shape, color, count, size=(320, 240)), out / relative)
        simple = i % 2 == 1
        question = f"How many {plural(shape)} are there?" if simple else f"How many {color} {plural(shape)} are there?"
        items.append({"answer": count, "data_source": "amt" if not simple else "imported_genome",
                      "image": relative, "image_id": image_id, "issimple": simple, "question": question,
                      "question_id": 30000000 + i})
    (out / "test.json").write_text(json.dumps(items), encoding="utf-8")
    return out / "test.json"


# --- Command line --------------------------------------------------------------------------------

BUNDLED = ("vstar", "tallyqa", "infovqa", "mvbench")


def tree_digest(folder: Path) -> str:
    """sha256 over the relative paths and contents of every file under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def make_bundled(name: str, out: Path, args) -> Path:
    if name == "vstar":
        return make_vstar(out, args.attribute, args.spatial, args.seed)
    if name == "tallyqa":
        return make_tallyqa(out, seed=args.seed)
    if name == "infovqa":
        return make_infovqa(out, seed=args.seed)
    return make_mvbench(out, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder that receives one subfolder per set (default: %(default)s)")
    parser.add_argument("--only", default=",".join(BUNDLED), help="comma-separated sets (default: all)")
    parser.add_argument("--attribute", type=int, default=8, help="number of V* color questions")
    parser.add_argument("--spatial", type=int, default=4, help="number of V* left/right questions")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUNDLED]
    if unknown:
        parser.error(f"unknown set {unknown[0]!r}; choose from {', '.join(BUNDLED)}")
    for name in names:
        folder = args.out / name
        parquet = make_bundled(name, folder, args)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        total = sum(p.stat().st_size for p in files)
        print(f"wrote {parquet} and {len(files) - 1} images, {total / 1e6:.2f} MB in all; "
              f"sha256 of the folder: {tree_digest(folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
