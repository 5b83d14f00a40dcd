"""MME-RealWorld and its Lite subset (pr_eval/benchmarks/mmerw.py): the VLMEvalKit TSV and
lmms-eval's parquet copy, generated here in their exact schemas, read into rows; the
Perception/Reasoning and domain breakdowns; the option-letter scoring."""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import huggingface_hub
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pr_eval import benchmarks
from pr_eval.benchmarks import mmerw
from pr_eval.benchmarks.common import option_letter, render_options
from pr_eval.data.load import DataError, load_samples, read_rows, resolve

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FIVE = ["(A) red", "(B) green", "(C) blue", "(D) yellow", "(E) purple"]


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def png(color=(200, 30, 30), size=(48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def record(index, image, category="Perception/Monitoring", options=FIVE, answer="C", l2="vehicle/color"):
    return {"index": index, "image": image, "question": "What color is the car?", "multi-choice options": options,
            "answer": answer, "category": category, "l2-category": l2}


def write_tsv(path: Path, rows: list[dict]) -> Path:
    """As VLMEvalKit's TSVs are written: pandas, the options list as Python's repr of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["index", "image", "question", "multi-choice options", "answer", "category", "l2-category"]
    pd.DataFrame(rows, columns=columns).to_csv(path, sep="\t", index=False)
    return path


def tsv_case(folder: Path) -> Path:
    encoded = base64.b64encode(png()).decode()
    rows = [
        record(10, encoded),
        record(11, "10", category="Reasoning/Monitoring", answer="E", l2="vehicle/intention",
               options=[*FIVE[:4], "(E) the driver's side"]),                           # shares row 10's image
        record(12, "!!not base64 at all, but long enough to be an image field!!" * 2),   # corrupt image
        record(13, encoded, options=FIVE[:4]),                                            # an option missing
        record(14, encoded, answer="F"),                                                  # answer outside A-E
        record(15, encoded, category="Perception", l2="Remote Sensing/color"),           # domain in l2-category
        record(16, encoded, category="Reasoning/OCR with Complex Context", answer="(B)",
               options=['(A) "Main St."', "(B) it's 5 o'clock", "(C) a\tb", "(D) x", "(E) y"]),
    ]
    return write_tsv(folder / "mme_realworld_lite.tsv", rows)


def test_tsv_rows_images_and_errors(tmp_path, cache):
    folder = tmp_path / "lite"
    tsv_case(folder)
    source = resolve("mmerw_lite", str(folder), cache_dir=cache)
    assert source.kind == "local" and source.details["format"] == "vlmevalkit-tsv"
    rows = {row["qid"]: row for row in read_rows(source)}
    assert list(rows) == [f"mmerw_lite-{i}" for i in range(10, 17)]
    first, shared = rows["mmerw_lite-10"], rows["mmerw_lite-11"]
    assert first["question"] == render_options("What color is the car?", ["red", "green", "blue", "yellow", "purple"])
    assert first["answer"] == "C" and first["category"] == "Perception/Monitoring" and not first.get("_error")
    assert shared["image"] == first["image"] and shared["answer"] == "E"
    assert "(E) the driver's side" in shared["question"]
    assert "five options" in rows["mmerw_lite-13"]["_error"]
    assert "A-E" in rows["mmerw_lite-14"]["_error"]
    assert rows["mmerw_lite-15"]["category"] == "Perception/Remote Sensing"
    quoted = rows["mmerw_lite-16"]
    assert quoted["answer"] == "B" and '(A) "Main St."' in quoted["question"] and "(C) a\tb" in quoted["question"]

    _, samples = load_samples("mmerw_lite", str(folder), cache_dir=cache)
    by_id = {s.sample_id: s for s in samples}
    assert by_id["mmerw_lite-10"].load_images()[0].size == (48, 32)
    assert by_id["mmerw_lite-11"].load_images()[0].size == (48, 32)
    with pytest.raises(DataError, match="base64"):
        by_id["mmerw_lite-12"].load_images()  # only its own sample is lost
    with pytest.raises(DataError, match="five options"):
        by_id["mmerw_lite-13"].load_images()
    assert by_id["mmerw_lite-16"].load_images()[0].size == (48, 32)
    assert by_id["mmerw_lite-15"].meta["category"] == "Perception/Remote Sensing"


def test_the_full_tsv_under_either_name_and_vlmevalkits_own_layout(tmp_path, cache):
    encoded = base64.b64encode(png()).decode()
    joined = "The choices are listed below:\n" + "\n".join(FIVE)  # as VLMEvalKit's generate_tsv writes it
    rows = [dict(record(1, encoded, options=joined), **{"A": "red", "B": "green", "C": "blue", "D": "yellow",
                                                       "E": "purple"}),
            dict(record(2, "1", options=None, category="Reasoning/Diagram and Table"),
                 A="one", B="two", C="three", D="four", E="five")]
    folder = tmp_path / "full"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "mme_realworld.tsv", sep="\t", index=False)
    (folder / "mme_realworld_lite.tsv").write_text("not this one\n")
    got = read_rows(resolve("mmerw", str(folder), cache_dir=cache))
    assert [r["qid"] for r in got] == ["mmerw-1", "mmerw-2"] and not any(r.get("_error") for r in got)
    assert got[0]["question"].splitlines()[1:6] == FIVE
    assert "(C) three" in got[1]["question"] and got[1]["category"] == "Reasoning/Diagram and Table"
    tsv_case(tmp_path / "lite-only")  # the Lite file only: not the full benchmark
    with pytest.raises(DataError, match="MME-RealWorld.tsv or mme_realworld.tsv"):
        resolve("mmerw", str(tmp_path / "lite-only"), cache_dir=cache)


def test_options_are_read_never_evaluated():
    assert mmerw.parse_options("['(A) a', \"(B) it's\"]") == ["(A) a", "(B) it's"]
    assert mmerw.parse_options("__import__('os').system('true')") == []          # not a list: no options
    assert mmerw.parse_options("[__import__('os')]") == []                       # not a literal
    assert mmerw.parse_options("（A） full-width\n(B) b\n  continued") == ["(A) full-width", "(B) b continued"]
    assert mmerw.option_texts(["(A) a", "(B)", "(C) c"]) == ["a", "", "c"]
    assert mmerw.option_texts(["(B) b", "(A) a"]) is None


def lmms_parquet(path: Path, images: list, image_type=pa.string()) -> Path:
    """A file of lmms-eval's copy: the same columns as the TSV, the options a list, the image in
    `bytes`."""
    n = len(images)
    table = pa.table({
        "index": pa.array(list(range(100, 100 + n)), pa.int64()),
        "question": ["What color is the car?"] * n,
        "multi-choice options": pa.array([FIVE] * n, pa.list_(pa.string())),
        "answer": ["C", "D", "A", "B", "E"][:n],
        "category": ["Perception/Autonomous_Driving", "Reasoning/Remote Sensing", "Perception/Diagram and Table",
                     "Reasoning/Monitoring", "Perception/OCR with Complex Context"][:n],
        "l2-category": ["object_identification/color"] * n,
        "bytes": pa.array(images, image_type),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=2)
    return path


def test_parquet_images_are_written_once(tmp_path, cache):
    red, blue = png(), png((20, 20, 200), (40, 30))
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    folder = tmp_path / "lmms"
    lmms_parquet(folder / "data" / "train-00000-of-00001.parquet", [b64(red), b64(blue), b64(red), "@@corrupt@@", b64(blue)])
    source = resolve("mmerw", str(folder), cache_dir=cache)
    assert source.details["format"] == "lmms-eval-parquet" and source.details["images"] == 2
    assert source.root.parent == cache.resolve() / "official"
    rows = read_rows(source)
    assert [r["qid"] for r in rows] == [f"mmerw-{i}" for i in range(100, 105)]
    assert rows[0]["image"] == rows[2]["image"] and rows[0]["image"][0].startswith("images/")
    assert rows[0]["image"][0].endswith(".png") and len(list((source.root / "images").iterdir())) == 2
    assert [r["answer"] for r in rows if not r.get("_error")] == ["C", "D", "A", "E"]
    assert rows[1]["category"] == "Reasoning/Remote Sensing" and "not base64" in rows[3]["_error"]
    _, samples = load_samples("mmerw", str(folder), cache_dir=cache)
    assert samples[1].load_images()[0].size == (40, 30)
    with pytest.raises(DataError, match="not base64"):
        samples[3].load_images()
    assert resolve("mmerw", str(folder), cache_dir=cache).root == source.root  # converted once


def test_parquet_with_hub_image_structs_or_raw_bytes(tmp_path, cache):
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    lmms_parquet(tmp_path / "a" / "train.parquet", [{"bytes": png(), "path": "x.png"}, {"bytes": None, "path": None}], struct)
    rows = read_rows(resolve("mmerw_lite", str(tmp_path / "a"), cache_dir=cache))
    assert rows[0]["image"][0].endswith(".png") and not rows[0].get("_error")
    assert "no image bytes" in rows[1]["_error"]
    lmms_parquet(tmp_path / "b" / "train.parquet", [png(), base64.b64encode(png((1, 2, 3))).decode().encode()], pa.binary())
    rows = read_rows(resolve("mmerw_lite", str(tmp_path / "b"), cache_dir=cache))
    assert all(r["image"][0].endswith(".png") and not r.get("_error") for r in rows)


def test_a_parquet_without_its_columns_is_refused(tmp_path, cache):
    (tmp_path / "bad").mkdir()
    pq.write_table(pa.table({"question": ["q"]}), tmp_path / "bad" / "train.parquet")
    with pytest.raises(DataError, match="lacks the column"):
        resolve("mmerw", str(tmp_path / "bad"), cache_dir=cache)


def test_lite_from_the_hub_cache(tmp_path, cache, monkeypatch):
    """The download of `mmerw_lite` is the Base64 repo's TSV; its rows are re-rooted at the repo."""
    tsv_case(tmp_path / "files")
    repo = tmp_path / "hub" / "datasets--yifanzhang114--MME-RealWorld-Base64"
    snapshot = repo / "snapshots" / COMMIT
    for path in (tmp_path / "files").iterdir():
        blob = repo / "blobs" / path.name
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, blob)
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kwargs: calls.append((repo_id, kwargs)) or str(snapshot))
    source, samples = load_samples("mmerw_lite", "hub", cache_dir=cache)
    assert calls[0][0] == "yifanzhang114/MME-RealWorld-Base64"
    assert calls[0][1]["allow_patterns"] == ["mme_realworld_lite.tsv"]
    assert source.revision == COMMIT and source.root == repo.resolve()
    assert samples[0].load_images()[0].size == (48, 32)


def test_breakdown_labels():
    bench = benchmarks.get("mmerw")
    assert set(bench.breakdown) == {"perception_accuracy", "reasoning_accuracy", "monitoring_accuracy",
                                    "autonomous_driving_accuracy", "ocr_accuracy", "diagram_and_table_accuracy",
                                    "remote_sensing_accuracy"}
    assert all(name.isidentifier() for name in bench.breakdown)
    assert set(bench.breakdown.values()) == {"Perception", "Reasoning", *mmerw.DOMAINS}
    label = bench.labels({"category": "Reasoning/OCR with Complex Context"})["category"]
    counted = {name for name, wanted in bench.breakdown.items() if bench.in_category(label, wanted)}
    assert counted == {"reasoning_accuracy", "ocr_accuracy"}
    assert mmerw.category_of("perception/autonomous driving") == "Perception/Autonomous_Driving"
    assert mmerw.category_of("Reasoning", "Diagram and Table/table") == "Reasoning/Diagram and Table"
    assert mmerw.category_of("Reasoning", "something else") == "Reasoning"
    assert mmerw.category_of(None) == ""


@pytest.mark.parametrize("text, right", [
    ("C", 1.0), ("(C)", 1.0), ("\\boxed{C}", 1.0), ("<answer>C</answer>", 1.0), ("blue", 1.0),
    ("The box is blue, so \\boxed{C}", 1.0), ("A", 0.0), ("B. green", 0.0), ("purple", 0.0), ("", 0.0),
])
def test_letter_scoring(text, right):
    doc = {"question": render_options("What color is the box?", ["red", "green", "blue", "yellow", "purple"]),
           "answer": "C"}
    assert option_letter(text, doc) == right
    assert benchmarks.get("mmerw_lite").score(text, doc) == right


def test_the_records_and_the_bundled_samples(cache):
    full, lite = mmerw.BENCHMARKS
    assert (full.name, full.task, full.short, full.rows) == ("mmerw", "pr_mmerealworld", "mmerw", 29429)
    assert (lite.name, lite.task, lite.short, lite.rows) == ("mmerw_lite", "pr_mmerealworld_lite", "mmerw-lite", None)
    assert lite.in_field and not full.in_field and full.main == lite.main == "letter_accuracy"  # field: Lite
    for bench in mmerw.BENCHMARKS:
        folder = Path(mmerw.__file__).resolve().parent.parent / "samples" / bench.name
        assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 150_000
        rows = read_rows(resolve(bench.name, "samples", cache_dir=cache))
        assert rows and not any(r.get("_error") for r in rows)
        assert {r["category"].split("/")[1] for r in rows} == set(mmerw.DOMAINS)
        assert {r["category"].split("/")[0] for r in rows} == {"Perception", "Reasoning"}
        assert len({r["image"][0] for r in rows}) < len(rows)  # rows share an image by reference


def test_the_samples_are_regenerated_byte_for_byte(tmp_path):
    for lite in (False, True):
        path = mmerw.write_samples(tmp_path / str(lite), lite=lite)
        bundled = Path(mmerw.__file__).resolve().parent.parent / "samples" / mmerw._name(lite) / path.name
        assert path.read_bytes() == bundled.read_bytes()
