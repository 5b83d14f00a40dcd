"""Data sources and rows: local folders, zipped images, the hub (faked), bad rows, bundled samples,
and the lmms-eval document every row becomes.

Every dataset here is generated in the exact schema of Pixel-Reasoner's eval copies by
scripts/make_samples.py; nothing is downloaded. The official releases are tested in
test_official.py, videos in test_video_data.py."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import huggingface_hub
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import load_script, noise_image
from huggingface_hub.errors import LocalEntryNotFoundError
from PIL import Image

from pr_eval.data import load as data, sources
from pr_eval.benchmarks import BENCHMARKS, get
from pr_eval.benchmarks.mvbench import SUBTASKS as MVBENCH_SUBTASKS
from pr_eval.benchmarks.mvbench import subtask_of
from pr_eval.benchmarks.vstar import category as vstar_category
from pr_eval.data.load import DataError, load_samples, read_rows, resolve, to_sample
from pr_eval.data.sources import check_member

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"


make_samples = load_script("make_samples")


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """A small V* set (2 attribute + 1 spatial questions) with an images/ folder."""
    out = tmp_path_factory.mktemp("generated") / "vstar"
    make_samples.make_vstar(out, n_attribute=2, n_spatial=1, seed=3)
    return out


@pytest.fixture
def folder(generated, tmp_path) -> Path:
    """A private copy of the generated set, free to damage."""
    return Path(shutil.copytree(generated, tmp_path / "vstar"))


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def zip_images(folder: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Replace folder/images/ by folder/images.zip, as on the hub."""
    archive = folder / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((folder / "images").rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
        for name, payload in (extra or {}).items():
            zf.writestr(name, payload)
    shutil.rmtree(folder / "images")
    return archive


def rewrite(parquet: Path, **changes) -> None:
    """Rewrite columns of a parquet file: changes maps column -> new list of values (or None to drop)."""
    frame = pd.read_parquet(parquet)
    for column, values in changes.items():
        if values is None:
            frame = frame.drop(columns=[column])
        else:
            frame[column] = pd.Series(values, dtype=object)
    frame.to_parquet(parquet)


# --- The generator ------------------------------------------------------------------------------

def test_generated_set_has_the_vstar_schema(generated):
    table = pq.read_table(generated / "vstar.parquet")
    assert table.column_names == ["qid", "question", "image", "answer"]
    assert table.schema.field("image").type == pa.list_(pa.string())
    rows = table.to_pylist()
    assert [r["qid"] for r in rows] == ["vstar-direct_attributes-0", "vstar-direct_attributes-1",
                                        "vstar-relative_position-0"]
    for row in rows:
        assert row["answer"] in "ABCD" and len(row["answer"]) == 1
        assert row["question"].endswith("\nAnswer with the option's letter from the given choices directly.")
        assert f"({row['answer']}) " in row["question"]
        (relative,) = row["image"]
        assert relative.startswith("images/") and (generated / relative).is_file()
        with Image.open(generated / relative) as image:
            assert image.format == "JPEG" and 1200 <= image.width <= 2000 and 900 <= image.height <= 1500
    assert rows[0]["question"].startswith("What is the color of the ")
    assert "(D) " in rows[0]["question"] and "(C) " not in rows[2]["question"]
    assert rows[2]["question"].startswith("Is the ") and "on the left or right side of the" in rows[2]["question"]


def test_generator_is_deterministic(tmp_path, generated):
    make_samples.main(["--out", str(tmp_path / "again"), "--only", "vstar", "--attribute", "2", "--spatial", "1",
                       "--seed", "3"])
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["vstar"]
    assert make_samples.tree_digest(tmp_path / "again" / "vstar") == make_samples.tree_digest(generated)
    make_samples.make_vstar(tmp_path / "other", n_attribute=2, n_spatial=1, seed=4)
    assert make_samples.tree_digest(tmp_path / "other") != make_samples.tree_digest(generated)


# --- Local folders ------------------------------------------------------------------------------

def test_local_folder_with_images(folder, cache):
    source = resolve("vstar", str(folder), cache_dir=cache)
    assert (source.kind, source.root, source.parquet, source.rows) == ("local", folder, folder / "vstar.parquet", 3)
    assert source.revision == sources.sha256_file(folder / "vstar.parquet")
    assert not cache.exists()  # nothing to unpack
    _, samples = load_samples("vstar", str(folder), cache_dir=cache)
    assert [s.meta["category"] for s in samples] == ["attribute", "attribute", "spatial"]
    for sample in samples:
        (image,) = sample.load_images()
        assert image.mode == "RGB" and image.width >= 1200
        assert sample.task == "vstar" and sample.sample_id == sample.meta["qid"]


def test_folder_holding_a_benchmark_subfolder_and_env_spec(folder, cache, monkeypatch):
    assert resolve("vstar", str(folder.parent), cache_dir=cache).parquet == folder / "vstar.parquet"
    monkeypatch.setenv("PR_EVAL_DATA", str(folder))
    assert data.source_spec() == str(folder) and data.source_spec("samples") == "samples"
    assert resolve("vstar", cache_dir=cache).kind == "local"
    monkeypatch.delenv("PR_EVAL_DATA")
    assert data.source_spec() == "hub"


def test_paths_relative_to_the_images_folder(folder, cache):
    rows = pq.read_table(folder / "vstar.parquet").to_pylist()
    rewrite(folder / "vstar.parquet", image=[[p.removeprefix("images/") for p in r["image"]] for r in rows])
    source = resolve("vstar", str(folder), cache_dir=cache)
    assert source.root == folder / "images"
    assert to_sample("vstar", read_rows(source)[0], source.root).load_images()[0].width >= 1200


def test_local_zip_is_extracted_once(folder, cache, monkeypatch):
    zip_images(folder)
    source = resolve("vstar", str(folder), cache_dir=cache)
    assert source.root.parent == cache.resolve() and source.root.name.startswith("vstar-local-")
    assert (source.root / "images" / "direct_attributes" / "0.jpg").is_file()
    _, samples = load_samples("vstar", str(folder), cache_dir=cache)
    assert all(len(s.load_images()) == 1 for s in samples)

    def no_second_extraction(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", no_second_extraction)
    assert resolve("vstar", str(folder), cache_dir=cache).root == source.root


def test_interrupted_extraction_is_not_taken_as_complete(folder, cache, monkeypatch):
    zip_images(folder)
    real_extractall = zipfile.ZipFile.extractall

    def killed_halfway(self, path, *args, **kwargs):
        self.extract(self.namelist()[0], path)
        raise RuntimeError("killed")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", killed_halfway)
    with pytest.raises(RuntimeError):
        resolve("vstar", str(folder), cache_dir=cache)
    assert [p for p in cache.iterdir()] == []  # the partial folder is gone, no finished one exists
    monkeypatch.setattr(zipfile.ZipFile, "extractall", real_extractall)
    source = resolve("vstar", str(folder), cache_dir=cache)
    assert all(len(s.load_images()) == 1 for s in load_samples("vstar", str(folder), cache_dir=cache)[1])
    assert source.root.is_dir()


@pytest.mark.parametrize("member", ["../evil.txt", "images/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt"])
def test_zip_slip_is_refused(folder, cache, member):
    zip_images(folder, extra={member: b"gotcha"})
    with pytest.raises(DataError, match="refusing to unpack"):
        resolve("vstar", str(folder), cache_dir=cache)
    assert not (cache.parent / "evil.txt").exists() and not (cache.exists() and any(cache.iterdir()))


def test_corrupt_zip_is_a_data_error(folder, cache):
    zip_images(folder).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a readable zip file"):
        resolve("vstar", str(folder), cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_member_check_allows_paths_that_stay_inside():
    for name in ["images/a.jpg", "images/sub/../a.jpg", "./images/a.jpg"]:
        check_member(name)


def test_parquet_must_be_unique(folder, cache, tmp_path):
    shutil.copy(folder / "vstar.parquet", folder / "other.parquet")
    with pytest.raises(DataError, match="found 2: other.parquet, vstar.parquet"):
        resolve("vstar", str(folder), cache_dir=cache)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no \.parquet file in .*it holds: images/"):
        resolve("vstar", str(empty), cache_dir=cache)


def test_bad_specs(tmp_path, cache, monkeypatch):
    with pytest.raises(DataError, match="unknown benchmark 'nope'; known: vstar, tallyqa, infovqa, mvbench"):
        resolve("nope", "samples")
    with pytest.raises(DataError, match="neither 'hub', 'samples', 'official'"):
        resolve("vstar", str(tmp_path / "no" / "such" / "folder"), cache_dir=cache)
    (tmp_path / "bundled" / "vstar").mkdir(parents=True)
    monkeypatch.setattr(data, "SAMPLES_DIR", tmp_path / "bundled")
    with pytest.raises(DataError, match=r"no bundled samples for 'tallyqa' \(bundled: vstar\)"):
        resolve("tallyqa", "samples")


# --- The hub (snapshot_download faked) ----------------------------------------------------------

@pytest.fixture
def snapshot(folder, tmp_path) -> Path:
    """The generated set laid out like a hub snapshot: parquet + images.zip in snapshots/<commit>."""
    zip_images(folder)
    return Path(shutil.copytree(folder, tmp_path / "hub" / "snapshots" / COMMIT))


def test_hub_download_and_extraction(snapshot, cache, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, *, repo_type=None, revision=None, **kwargs):
        calls.append((repo_id, repo_type, revision))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    source, samples = load_samples("vstar", cache_dir=cache)
    assert calls == [(BENCHMARKS["vstar"].hub_id, "dataset", None)]
    assert (source.kind, source.revision, source.rows) == ("hub", COMMIT, 3)
    assert source.root == (cache / f"vstar-{COMMIT}").resolve()
    assert source.to_record()["origin"] == "JasperHaozhe/VStar-EvalData-PixelReasoner"
    assert all(len(s.load_images()) == 1 for s in samples)

    monkeypatch.setattr(zipfile.ZipFile, "extractall", lambda *a, **k: pytest.fail("extracted again"))
    assert resolve("vstar", "someone/vstar-copy@v1.0", cache_dir=cache).root == source.root
    assert calls[-1] == ("someone/vstar-copy", "dataset", "v1.0")


@pytest.mark.parametrize("error", [LocalEntryNotFoundError("no cached snapshot and outgoing traffic disabled"),
                                   ConnectionError("Name or service not known")])
def test_hub_offline_error_says_how_to_fix(monkeypatch, cache, error):
    def offline(*args, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.setenv("PR_EVAL_FRONT_END", "pr-eval")
    with pytest.raises(DataError) as info:
        resolve("vstar", "hub", cache_dir=cache)
    message = str(info.value)
    assert message.startswith("cannot download JasperHaozhe/VStar-EvalData-PixelReasoner (offline?)")
    assert message.endswith("and pass --data-dir DIR, or use --data samples")
    monkeypatch.delenv("PR_EVAL_FRONT_END")  # lmms-eval's own command line: the variable
    with pytest.raises(DataError, match="and pass PR_EVAL_DATA=DIR, or use PR_EVAL_DATA=samples$"):
        resolve("vstar", "hub", cache_dir=cache)


# --- Rows ---------------------------------------------------------------------------------------

def test_missing_column_is_named(folder, cache):
    rewrite(folder / "vstar.parquet", answer=None)
    source = resolve("vstar", str(folder), cache_dir=cache)
    with pytest.raises(DataError) as info:
        read_rows(source)
    assert str(info.value) == (f"{folder / 'vstar.parquet'} lacks the column(s) answer; "
                               f"columns present: qid, question, image")


def test_row_with_missing_field_becomes_a_per_sample_error(folder, cache):
    questions = pq.read_table(folder / "vstar.parquet").column("question").to_pylist()
    rewrite(folder / "vstar.parquet", question=[questions[0], None, questions[2]])
    _, samples = load_samples("vstar", str(folder), cache_dir=cache)
    assert samples[1].question == ""
    with pytest.raises(DataError, match="missing field 'question'"):
        samples[1].load_images()
    assert len(samples[0].load_images()) == len(samples[2].load_images()) == 1


def test_corrupt_image_fails_only_its_sample(folder, cache):
    (folder / "images" / "direct_attributes" / "1.jpg").write_bytes(b"\x00garbage" * 100)
    _, samples = load_samples("vstar", str(folder), cache_dir=cache)
    with pytest.raises(DataError, match="unreadable image"):
        samples[1].load_images()
    assert len(samples[0].load_images()) == len(samples[2].load_images()) == 1


def test_image_path_leaving_the_root_is_refused(folder, cache, tmp_path):
    shutil.copy(folder / "images" / "direct_attributes" / "0.jpg", tmp_path / "outside.jpg")
    rows = pq.read_table(folder / "vstar.parquet").to_pylist()
    rewrite(folder / "vstar.parquet", image=[["../outside.jpg"], rows[1]["image"], rows[2]["image"]])
    _, samples = load_samples("vstar", str(folder), cache_dir=cache)
    with pytest.raises(DataError, match="outside the dataset folder"):
        samples[0].load_images()
    assert len(samples[1].load_images()) == 1


def test_rows_are_normalized(tmp_path, cache):
    """InfoVQA/MVBench/TallyQA shapes: list answers, is_video flags, a bare image string, numbers."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    pd.DataFrame({
        "qid": ["infovqa-0", "mvbench-1", "tallyqa-2"],
        "question": ["<image>What is the total?", "What happens?\n(A) x\n(B) y", "How many dogs?"],
        "image": [["images/a.jpg"], [f"images/f{i}.jpg" for i in range(16)], ["images/c.jpg"]],
        "answer": [["12", "twelve"], ["A"], ["3"]],
        "is_video": [None, True, False],
        "extra": [1.5, 2.5, 3.5],
    }).to_parquet(folder / "data.parquet")
    rows = read_rows(resolve("infovqa", str(folder), cache_dir=cache))
    assert rows[0]["answer"] == ["12", "twelve"] and isinstance(rows[0]["image"], list)
    assert [r["is_video"] for r in rows] == [False, True, False]
    assert len(rows[1]["image"]) == 16 and all(isinstance(p, str) for p in rows[1]["image"])
    assert rows[2]["extra"] == 3.5 and all("_error" not in r for r in rows)
    assert data.normalize_row({"qid": "t-1", "question": "q", "image": "x.jpg", "answer": 3.0}) == {
        "qid": "t-1", "question": "q", "image": ["x.jpg"], "answer": "3", "is_video": False}
    assert data.normalize_row({"qid": None, "question": "q", "image": [], "answer": "A"}, 7)["_error"] == (
        "missing field 'qid'; no image path in field 'image'")
    video = to_sample("mvbench", rows[1], folder)
    assert video.is_video and "category" not in video.meta


@pytest.mark.parametrize("row, category", [
    ({"qid": "vstar-direct_attributes-3", "image": ["images/x.jpg"], "question": "(A) a\n(B) b"}, "attribute"),
    ({"qid": "vstar-7", "image": ["relative_position/sa_1.jpg"], "question": ""}, "spatial"),
    ({"qid": "vstar-1", "image": ["a.jpg"], "question": "Color?\n(A) red\n(B) blue\n(C) green\n(D) gray"},
     "attribute"),
    ({"qid": "vstar-2", "image": ["a.jpg"], "question": "Left or right?\n(A) left\n(B) right"}, "spatial"),
    ({"qid": "vstar-3", "image": ["a.jpg"], "question": "What is it?"}, "unknown"),
    ({"qid": "vstar-4", "image": None, "question": None}, "unknown"),
])
def test_vstar_category(row, category):
    assert vstar_category(row) == category


# --- The bundled samples ------------------------------------------------------------------------

def test_bundled_samples_load():
    source, samples = load_samples("vstar", "samples")
    assert (source.kind, source.rows, len(samples)) == ("samples", 12, 12)
    assert source.root == data.SAMPLES_DIR / "vstar"
    assert [s.meta["category"] for s in samples] == ["attribute"] * 8 + ["spatial"] * 4
    assert len({s.answer for s in samples[:8]}) >= 3 and {s.answer for s in samples[8:]} == {"A", "B"}
    for sample in samples:
        (image,) = sample.load_images()
        assert 1200 <= image.width <= 2000
    size = sum(p.stat().st_size for p in source.root.rglob("*") if p.is_file())
    assert size < 1_500_000
    assert load_samples("vstar", "samples", limit=2)[1][1].sample_id == "vstar-direct_attributes-1"


@pytest.mark.parametrize("benchmark, n, answers", [
    ("tallyqa", 8, str), ("infovqa", 8, list), ("mvbench", 25, str)])
def test_bundled_samples_of_the_other_benchmarks(benchmark, n, answers):
    source, samples = load_samples(benchmark, "samples")
    assert (source.kind, source.rows, len(samples)) == ("samples", n, n)
    assert all(s.sample_id.startswith(f"{benchmark}-") for s in samples)
    assert all(isinstance(s.answer, answers) and s.answer for s in samples)
    for sample in samples:
        images = sample.load_images()
        assert len(images) == (16 if benchmark == "mvbench" else 1)
        assert sample.is_video == (benchmark == "mvbench")
    if benchmark == "tallyqa":
        assert {int(s.answer) for s in samples} <= set(range(8)) and len({s.answer for s in samples}) >= 4
    if benchmark == "mvbench":
        assert {s.meta["subtask"] for s in samples} == set(MVBENCH_SUBTASKS)  # every subtask has data
        assert all(s.answer in "ABCD" and f"({s.answer}) " in s.question for s in samples)
        assert images[0].size == (320, 240)


def test_bundled_samples_stay_small():
    total = sum(p.stat().st_size for p in data.SAMPLES_DIR.rglob("*") if p.is_file())
    assert total < 4_000_000
    assert sorted(p.name for p in data.SAMPLES_DIR.iterdir() if p.is_dir()) == sorted(BENCHMARKS)


def test_bundled_mvbench_has_the_copy_schema():
    """Pixel-Reasoner's MVBench copy: 16 frame paths per row and is_video; no subtask column."""
    (parquet,) = (data.SAMPLES_DIR / "mvbench").glob("*.parquet")
    table = pq.read_table(parquet)
    assert table.column_names == ["qid", "question", "image", "answer", "is_video"]
    for row in table.to_pylist():
        assert row["is_video"] and len(row["image"]) == 16
        assert row["image"][0] == f"images/{row['qid']}/frame_00.jpg"


@pytest.mark.parametrize("row, subtask", [
    ({"qid": "mvbench-action_sequence-3"}, "action_sequence"),
    ({"qid": "mvbench-17", "subtask": "Fine-grained Action"}, "fine_grained_action"),
    ({"qid": "mvbench-fine_grained_action-2"}, "fine_grained_action"),
    ({"qid": "mvbench-action_count-0"}, "action_count"),
    ({"qid": "mvbench-42"}, ""),
])
def test_mvbench_subtask(row, subtask):
    assert subtask_of(row) == subtask


# --- lmms-eval documents ------------------------------------------------------------------------

DOC_COLUMNS = ["qid", "question", "answer", "image", "video", "video_start", "video_end", "is_video",
               "category", "subtask", "group", "targets", "data_root", "data_error"]


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_documents_are_plain_columns(benchmark):
    import datasets

    from pr_eval.lmms.task import _doc, doc_to_visual

    source = resolve(benchmark, "samples")
    docs = [_doc(row, source) for row in read_rows(source)]
    table = datasets.Dataset.from_list(docs)  # lmms-eval keeps documents in a Dataset
    assert table.column_names == DOC_COLUMNS
    answer_type = list if benchmark == "infovqa" else str
    assert all(isinstance(doc["answer"], answer_type) for doc in table)
    doc = table[0]
    assert doc["video"] == "" and doc["video_start"] == doc["video_end"] == -1.0 and doc["data_error"] == ""
    assert doc["category"] == get(benchmark).labels(read_rows(source)[0]).get("category", "")
    assert doc["category"] == {"vstar": "attribute", "hrbench4k": "FSP", "hrbench8k": "FSP", "treebench": "Perception/Attributes",
                               "mmerw": "Perception/Monitoring", "mmerw_lite": "Perception/Monitoring"}.get(benchmark, "")
    assert doc["subtask"] == ("moving_direction" if benchmark == "mvbench" else "")
    assert doc["group"] == ("0" if benchmark.startswith("hrbench") else "")
    assert bool(doc["targets"]) == (benchmark in ("treebench", "zoom"))  # zoom: the card, from its generator
    assert len(doc_to_visual(doc)) == (16 if benchmark == "mvbench" else 1)


def test_document_answers_keep_one_type_per_benchmark():
    from pr_eval.lmms.task import doc_answer

    assert doc_answer(get("infovqa"), "12") == (["12"], None)
    assert doc_answer(get("infovqa"), ["12", "twelve"]) == (["12", "twelve"], None)
    assert doc_answer(get("tallyqa"), ["3"]) == ("3", None)
    assert doc_answer(get("tallyqa"), None) == ("", None)
    answer, error = doc_answer(get("vstar"), ["A", "B"])
    assert answer == "" and error.startswith("expected one answer, the row holds 2")


# --- Bad input of every kind: a clear error, counted, the run goes on ----------------------------

def test_duplicate_question_ids_are_refused_at_load_with_the_rows_named(folder, cache):
    qids = pq.read_table(folder / "vstar.parquet").column("qid").to_pylist()
    rewrite(folder / "vstar.parquet", qid=[qids[0], qids[1], qids[0]])
    source = resolve("vstar", str(folder), cache_dir=cache)
    with pytest.raises(DataError) as info:
        read_rows(source)
    assert str(info.value) == (f"{folder / 'vstar.parquet'}: question id {qids[0]!r} appears 2 times (rows 0, 2); "
                               "ids must be unique: fix the data or drop the duplicates")


def test_a_question_that_is_not_utf8_fails_only_its_sample(folder, cache):
    questions = pq.read_table(folder / "vstar.parquet").column("question").to_pylist()
    raw = [q.encode("utf-8") for q in questions]
    raw[1] = b"What colour is the \xff\xfe mug?"
    rewrite(folder / "vstar.parquet", question=raw)  # a binary column, as some converters write
    _, samples = load_samples("vstar", str(folder), cache_dir=cache)
    assert samples[0].question == questions[0]  # UTF-8 bytes are read as text
    with pytest.raises(DataError, match=r"field 'question' is not UTF-8 text \(byte 0xff at offset 19\)"):
        samples[1].load_images()
    assert len(samples[2].load_images()) == 1


def test_a_truncated_image_is_a_data_error_whatever_lmms_eval_sets(tmp_path):
    from PIL import ImageFile

    from pr_eval.data.imaging import load_image

    path = tmp_path / "half.png"
    buffer = io.BytesIO()
    noise_image(200, 160).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what importing lmms-eval does to the whole process
    try:
        with pytest.raises(DataError, match="unreadable image .*half.png"):
            load_image(path)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # left as lmms-eval wants it
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
