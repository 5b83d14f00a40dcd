"""The synthetic zoom benchmark: deterministic, in V*'s schema, balanced, and built so that the
protocol's crop of the right cell shows the small dot 4x larger."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from pr_eval.data import load as data, sources
from pr_eval.benchmarks import BENCHMARKS
from pr_eval.benchmarks import zoom as synthetic
from pr_eval.engines.base import GenerationResult
from pr_eval.errors import DataError
from pr_eval.data.imaging import fit_size
from pr_eval.lmms.task import _doc
from pr_eval.loop.steps import start, step
from pr_eval.protocol import PIXEL_REASONER
from pr_eval.scoring.answers import parse_options
from pr_eval.loop.tools import crop_call


def test_same_seed_same_questions_and_pixels():
    first, again = synthetic.make_benchmark(12, seed=0), synthetic.make_benchmark(12, seed=0)
    assert synthetic.digest(first) == synthetic.digest(again)
    assert synthetic.digest(synthetic.make_benchmark(12, seed=1)) != synthetic.digest(first)


def test_training_questions_are_not_benchmark_questions():
    test = {synthetic.digest([item]) for item in synthetic.make_benchmark(96)}
    train = {synthetic.digest([synthetic.train_item(k, seed=0)]) for k in range(200)}
    assert not test & train


def test_benchmark_is_balanced_over_cells_and_answers():
    items = synthetic.make_benchmark(96)
    assert set(Counter(i.cell for i in items).values()) == {6}
    assert set(Counter(i.color for i in items).values()) == {24}
    assert set(Counter(i.answer for i in items).values()) == {24}


def test_bad_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match="unknown split"):
        synthetic.make_item(0, split="validation")
    with pytest.raises(ValueError, match="scale must be 1 to 5"):
        synthetic.make_item(0, scale=6)
    with pytest.raises(ValueError, match="at least one question"):
        synthetic.make_benchmark(0)


def test_a_larger_training_target_is_the_same_question():
    small, large = synthetic.train_item(3, seed=0), synthetic.train_item(3, seed=0, scale=3)
    assert (small.question, small.answer, small.cell) == (large.question, large.answer, large.cell)
    color = np.array(synthetic.COLORS[small.color])

    def count(item):
        return int((np.asarray(item.image) == color).all(axis=2).sum())

    assert count(small) == synthetic.DOT ** 2 and count(large) == 48 ** 2  # the dot grows faster than the card


@pytest.mark.parametrize("index", range(6))
def test_the_answer_box_crops_exactly_the_cell_and_enlarges_the_dot_4x(index):
    item = synthetic.make_benchmark(96)[index]
    traj = start(item.sample(), PIXEL_REASONER)
    assert traj.pixels[0].size == (644, 644)  # the canvas is shown as it is: no resize before the engine
    step(traj, GenerationResult(text=crop_call(item.box, digits=2)), PIXEL_REASONER)
    call = traj.tool_calls[0]
    assert call.ok, call.error
    row, column = item.cell
    cell = [column * 161, row * 161, (column + 1) * 161, (row + 1) * 161]
    assert traj.images[1].box == cell
    crop = traj.pixels[1]
    assert crop.size == (448, 448)
    engine_size = fit_size(*crop.size, PIXEL_REASONER.engine_pixels)
    assert engine_size == (644, 644)  # what the model sees: the cell 644/161 = 4x larger
    # the whole square and dot are inside the crop
    pixels = np.asarray(item.image)[cell[1]:cell[3], cell[0]:cell[2]]
    color = np.array(synthetic.COLORS[item.color])
    assert (pixels == color).all(axis=2).sum() == synthetic.DOT ** 2
    assert (pixels == 255).all(axis=2).sum() == synthetic.CARD ** 2 - synthetic.DOT ** 2
    # as the engine gets it the dot is 4x wider: 40 px, more than a 28 px visual token
    seen = np.asarray(crop.resize(engine_size, Image.Resampling.BICUBIC)).astype(int)
    near = (np.abs(seen - color).max(axis=2) < 40)
    columns, rows = np.nonzero(near.any(axis=0))[0], np.nonzero(near.any(axis=1))[0]
    assert 36 <= columns[-1] - columns[0] + 1 <= 44 and 36 <= rows[-1] - rows[0] + 1 <= 44


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_the_tints_encode_row_and_column(index):
    """Grey, except the card's row (red level = row), its column (green level = column) and
    their crossing (blue too)."""
    item = synthetic.train_item(index, seed=0)
    pixels = np.asarray(item.image).astype(int)
    row, column = item.cell
    for r in range(4):
        for c in range(4):
            corner = tuple(pixels[r * 161 + 2, c * 161 + 2])
            expected = (synthetic.ROW_RED[row] if r == row else synthetic.GREY,
                        synthetic.COLUMN_GREEN[column] if c == column else synthetic.GREY,
                        synthetic.TARGET_BLUE if (r, c) == (row, column) else synthetic.GREY)
            assert corner == expected, (r, c)


def test_written_rows_follow_the_vstar_schema(tmp_path):
    synthetic.write_benchmark(tmp_path / "zoom", n=16)
    source = data.resolve("zoom", str(tmp_path / "zoom"), cache_dir=tmp_path / "cache")
    rows = data.read_rows(source)
    items = synthetic.make_benchmark(16)
    assert [r["qid"] for r in rows] == [i.qid for i in items]
    for row, item in zip(rows, items):
        assert set(data.REQUIRED_FIELDS) <= set(row) and "_error" not in row
        assert row["image"] == [f"images/{item.qid}.png"] and row["answer"] == item.answer
        options = parse_options(row["question"])
        assert options == dict(zip("ABCD", synthetic.COLORS)) and options[row["answer"]] == item.color
        loaded = data.load_visuals(row, source.root)
        assert len(loaded) == 1 and loaded[0].tobytes() == item.image.tobytes()  # PNG: lossless
        doc = _doc(row, source)
        assert doc["category"] == "" and doc["data_error"] == ""


def test_the_bundled_benchmark_is_the_generated_one(tmp_path):
    """`--data samples` reads the copy in the package; it holds exactly what the generator makes
    (regenerate with `python -m pr_eval.benchmarks.zoom`)."""
    source = data.resolve("zoom", "samples", cache_dir=tmp_path)
    assert source.kind == "samples" and source.root == (data.SAMPLES_DIR / "zoom").resolve()
    rows = data.read_rows(source)
    items = synthetic.make_benchmark()
    assert len(rows) == source.rows == BENCHMARKS["zoom"].rows == len(items) == 96
    for row, item in zip(rows, items):
        assert (row["qid"], row["question"], row["answer"]) == (item.qid, item.question, item.answer)
        (image,) = data.load_visuals(row, source.root)
        assert image.tobytes() == item.image.tobytes()
    _, samples = data.load_samples("zoom", "samples", limit=3, cache_dir=tmp_path)
    assert [s.sample_id for s in samples] == ["zoom-0", "zoom-1", "zoom-2"]
    assert not list(tmp_path.iterdir())  # nothing unpacked or generated


def test_the_generator_writes_the_same_files_twice(tmp_path):
    first = synthetic.write_benchmark(tmp_path / "a", n=8)
    second = synthetic.write_benchmark(tmp_path / "b", n=8)
    assert sources.sha256_file(first) == sources.sha256_file(second)
    image = "images/zoom-5.png"
    assert (tmp_path / "a" / image).read_bytes() == (tmp_path / "b" / image).read_bytes()


@pytest.mark.parametrize("spec", ["hub", "official", "someone/zoom-copy"])
def test_there_is_no_hub_copy(spec, tmp_path, monkeypatch):
    monkeypatch.delenv("PR_EVAL_FRONT_END", raising=False)
    with pytest.raises(DataError, match="use PR_EVAL_DATA=samples"):
        data.resolve("zoom", spec, cache_dir=tmp_path)


def test_a_picture_is_a_valid_png(tmp_path):
    parquet = synthetic.write_benchmark(tmp_path, n=1)
    with Image.open(parquet.parent / "images" / "zoom-0.png") as image:
        assert image.format == "PNG" and image.size == (644, 644) and image.mode == "RGB"
