"""The official releases (`--data official`): V* raw files with shuffled options, DocVQA's
InfographicVQA parquet with embedded images, MVBench json + videos, TallyQA's test.json.

Each release is generated in its own schema by scripts/make_samples.py; the hub routes are real
code run against a faked `huggingface_hub.snapshot_download` that returns a folder laid out like
the hub cache (snapshots/<commit>/ files are symlinks into blobs/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import huggingface_hub
import pyarrow.parquet as pq
import pytest
from conftest import load_script

from pr_eval.data import load as data, official
from pr_eval.benchmarks import common
from pr_eval.data.load import DataError, load_samples, read_rows, resolve

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


make_samples = load_script("make_samples")


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> Path:
    """One folder holding vstar/, infovqa/, tallyqa/ in their official layouts."""
    out = tmp_path_factory.mktemp("official")
    make_samples.make_vstar_raw(out / "vstar", n_attribute=8, n_spatial=4, seed=5)
    make_samples.make_docvqa_infographic(out / "infovqa", n_images=3)
    make_samples.make_tallyqa_official(out / "tallyqa", n=6)
    return out


@pytest.fixture
def copy(releases, tmp_path):
    """A private copy of one release, free to damage."""
    return lambda name: Path(shutil.copytree(releases / name, tmp_path / name))


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def hub_cache(folder: Path, root: Path, commit: str = COMMIT) -> Path:
    """`folder` laid out as the hub cache keeps a snapshot: blobs/ plus snapshots/<commit>/ of
    symlinks into it. Returns the snapshot folder."""
    snapshot = root / "snapshots" / commit
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = root / "blobs" / f"{abs(hash(path.as_posix())):x}-{path.name}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def fake_hub(monkeypatch, snapshot: Path) -> list:
    calls = []

    def snapshot_download(repo_id, *, repo_type=None, revision=None, **kwargs):
        calls.append({"repo_id": repo_id, "repo_type": repo_type, "revision": revision, **kwargs})
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def options_of(question: str) -> dict[str, str]:
    return dict(re.findall(r"^\(([A-Z])\) (.*)$", question, flags=re.MULTILINE))


# --- Specs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, parsed", [
    ("official", (None, 0)), ("official,seed=7", (None, 7)), ("official:/data/vstar", ("/data/vstar", 0)),
    ("official:/data/v,seed=3", ("/data/v", 3)), ("official:lmms-lab/DocVQA@main", ("lmms-lab/DocVQA@main", 0))])
def test_official_specs(spec, parsed):
    assert official.parse_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["official:", "official,seed=x", "officials"])
def test_bad_official_specs(spec, cache):
    with pytest.raises(DataError):
        resolve("vstar", spec, cache_dir=cache)


@pytest.mark.parametrize("front_end, option", [(None, "PR_EVAL_DATA=official:DIR"),
                                               ("pr-eval", "--data official --data-dir DIR")])
def test_tallyqa_has_no_hub_release(cache, monkeypatch, front_end, option):
    """The fix names what the running front end takes: pr-eval's options, or under lmms-eval's
    own command line the PR_EVAL_DATA variable (issue 26: `--data official:DIR` fits neither)."""
    if front_end:
        monkeypatch.setenv("PR_EVAL_FRONT_END", front_end)
    else:
        monkeypatch.delenv("PR_EVAL_FRONT_END", raising=False)
    with pytest.raises(DataError, match=f"not on the hub; put test.json .* and pass {option}$"):
        resolve("tallyqa", "official", cache_dir=cache)


# --- V* ------------------------------------------------------------------------------------------

def raw_vstar(folder: Path) -> dict[str, dict]:
    return {f"vstar-{p.parent.name}-{p.stem}": json.loads(p.read_text()) for p in folder.rglob("*.json")}


def test_vstar_raw_release(releases, cache):
    source = resolve("vstar", f"official:{releases}", cache_dir=cache)
    record = source.to_record()
    assert (record["kind"], record["format"], record["seed"], record["rows"]) == ("official", "vstar-raw", 0, 12)
    assert record["categories"] == {"attribute": 8, "spatial": 4}
    assert record["revision"] == common.digest_files(sorted((releases / "vstar").rglob("*.json")),
                                                       releases / "vstar")
    raw = raw_vstar(releases / "vstar")
    rows = read_rows(source)
    for row in rows:
        options = options_of(row["question"])
        annotation = raw[row["qid"]]
        assert options[row["answer"]] == annotation["options"][0]  # the answer follows the correct option
        assert sorted(options.values()) == sorted(annotation["options"])
        assert row["question"].startswith(annotation["question"] + "\n(A) ")
        assert row["question"].endswith("\nAnswer with the option's letter from the given choices directly.")
        assert row["category"] == ("attribute" if "direct_attributes" in row["qid"] else "spatial")
        # the annotated [x, y, w, h] boxes become the targets of the crop-grounding figures
        assert row["targets"] == [[x, y, x + w, y + h] for x, y, w, h in annotation["bbox"]] and row["targets"]
    assert {row["answer"] for row in rows} != {"A"}  # the correct option is not always first
    _, samples = load_samples("vstar", f"official:{releases}", cache_dir=cache)
    assert all(len(s.load_images()) == 1 for s in samples)
    assert samples[0].meta["category"] == "attribute"


def test_vstar_shuffle_is_fixed_by_the_seed(releases, cache):
    def answers(spec):
        return {r["qid"]: (r["question"], r["answer"]) for r in read_rows(resolve("vstar", spec, cache_dir=cache))}

    first = answers(f"official:{releases}")
    assert answers(f"official:{releases},seed=0") == first  # the default seed is 0
    assert answers(f"official:{releases}") == first
    other = answers(f"official:{releases},seed=1")
    assert other.keys() == first.keys() and other != first
    assert resolve("vstar", f"official:{releases},seed=1", cache_dir=cache).to_record()["seed"] == 1


def test_shuffled_order_puts_the_correct_option_everywhere():
    positions = [common.shuffled_order(4, 0, f"vstar-direct_attributes-{k}").index(0) for k in range(400)]
    counts = [positions.count(p) for p in range(4)]
    assert min(counts) > 60  # about 100 each
    assert common.shuffled_order(4, 0, "q") == common.shuffled_order(4, 0, "q")
    assert sorted(common.shuffled_order(5, 3, "q")) == list(range(5))


def test_vstar_bad_files_fail_only_their_samples(copy, cache):
    folder = copy("vstar")
    annotations = sorted((folder / "direct_attributes").glob("*.json"))
    annotations[0].write_text("{not json")
    annotations[1].write_text(json.dumps({"question": "What?", "options": ["only one"]}))
    annotations[2].with_suffix(".jpg").unlink()
    _, samples = load_samples("vstar", f"official:{folder}", cache_dir=cache)
    errors = {}
    for sample in samples:
        try:
            sample.load_images()
        except DataError as exc:
            errors[sample.sample_id] = str(exc)
    assert len(errors) == 3 and len(samples) == 12
    assert errors[f"vstar-direct_attributes-{annotations[0].stem}"].startswith(f"unreadable annotation {annotations[0].name}")
    assert "needs a list of 2 or more 'options'" in errors[f"vstar-direct_attributes-{annotations[1].stem}"]
    assert errors[f"vstar-direct_attributes-{annotations[2].stem}"].startswith("image file not found")


def test_vstar_from_the_hub_cache(releases, cache, tmp_path, monkeypatch):
    snapshot = hub_cache(releases / "vstar", tmp_path / "hub" / "datasets--craigwu--vstar_bench")
    calls = fake_hub(monkeypatch, snapshot)
    source, samples = load_samples("vstar", "official", cache_dir=cache)
    assert calls == [{"repo_id": "craigwu/vstar_bench", "repo_type": "dataset", "revision": None,
                      "allow_patterns": ["direct_attributes/*", "relative_position/*"]}]
    assert (source.kind, source.revision, source.origin) == ("official", COMMIT, "craigwu/vstar_bench")
    # Snapshot files are symlinks into blobs/: the root is the repo folder holding both.
    assert source.root == (tmp_path / "hub" / "datasets--craigwu--vstar_bench").resolve()
    assert samples[0].meta["image"][0].startswith(f"snapshots/{COMMIT}/direct_attributes/")
    assert all(len(s.load_images()) == 1 for s in samples)


def test_offline_official_download_says_how_to_fix(monkeypatch, cache):
    monkeypatch.delenv("PR_EVAL_FRONT_END", raising=False)
    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("outgoing traffic disabled")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(DataError, match=r"cannot download OpenGVLab/MVBench \(offline\?\).*--revision video.*"
                                        r"pass PR_EVAL_DATA=official:DIR"):
        resolve("mvbench", "official", cache_dir=cache)


# --- InfographicVQA ------------------------------------------------------------------------------

def test_infovqa_images_are_written_once(releases, cache, monkeypatch):
    (parquet,) = (releases / "infovqa").rglob("*.parquet")
    assert pq.read_schema(parquet).field("image").type.names == ["bytes", "path"]  # the hub's Image()
    source = resolve("infovqa", f"official:{releases}", cache_dir=cache)
    record = source.to_record()
    assert (record["config"], record["split"], record["rows"], record["images"]) == ("InfographicVQA", "validation", 6, 3)
    assert source.root.parent == cache.resolve() / "official"
    rows = read_rows(source)
    assert [r["qid"] for r in rows] == [f"infovqa-{98000 + k}" for k in range(6)]
    assert all(isinstance(r["answer"], list) and len(r["answer"]) == 2 for r in rows)
    assert rows[0]["image"] == rows[1]["image"] and rows[0]["image"] != rows[2]["image"]  # one file per image
    assert len(list((source.root / "images").iterdir())) == 3
    _, samples = load_samples("infovqa", f"official:{releases}", cache_dir=cache)
    assert samples[0].load_images()[0].size == (900, 1300)

    monkeypatch.setattr(common, "materialize_parquet", lambda *a: pytest.fail("materialized again"))
    again = resolve("infovqa", f"official:{releases}", cache_dir=cache)
    assert again.root == source.root and again.revision == source.revision


def test_infovqa_corrupt_image_fails_only_its_samples(copy, cache):
    folder = copy("infovqa")
    (parquet,) = folder.rglob("*.parquet")
    table = pq.read_table(parquet)
    images = table.column("image").to_pylist()
    images[2] = {"bytes": b"\xff\xd8 truncated jpeg", "path": "1.jpeg"}
    images[5] = {"bytes": None, "path": None}
    import pyarrow as pa

    table = table.set_column(table.column_names.index("image"), "image",
                             pa.array(images, type=table.schema.field("image").type))
    pq.write_table(table, parquet)
    _, samples = load_samples("infovqa", f"official:{folder}", cache_dir=cache)
    with pytest.raises(DataError, match="unreadable image"):
        samples[2].load_images()
    with pytest.raises(DataError, match="embeds no image bytes"):
        samples[5].load_images()
    assert [len(samples[k].load_images()) for k in (0, 1, 3, 4)] == [1, 1, 1, 1]


def test_infovqa_without_answers_is_refused(copy, cache):
    folder = copy("infovqa")
    (parquet,) = folder.rglob("*.parquet")
    table = pq.read_table(parquet)
    import pyarrow as pa

    empty = pa.array([[] for _ in range(table.num_rows)], type=table.schema.field("answers").type)
    pq.write_table(table.set_column(table.column_names.index("answers"), "answers", empty), parquet)
    with pytest.raises(DataError, match="has no answers \\(the test split\\?\\)"):
        resolve("infovqa", f"official:{folder}", cache_dir=cache)


def test_infovqa_from_the_hub(releases, cache, tmp_path, monkeypatch):
    snapshot = hub_cache(releases / "infovqa", tmp_path / "hub" / "datasets--lmms-lab-encoder--DocVQA")
    calls = fake_hub(monkeypatch, snapshot)
    source, samples = load_samples("infovqa", "official", cache_dir=cache)
    assert calls[0]["repo_id"] == "lmms-lab-encoder/DocVQA"
    assert calls[0]["allow_patterns"] == ["InfographicVQA/validation-*"]
    assert source.revision == COMMIT and source.root.name == f"infovqa-{COMMIT}"
    assert all(len(s.load_images()) == 1 for s in samples)
    resolve("infovqa", "official:lmms-lab/DocVQA", cache_dir=cache)  # a mirror: same layout
    assert calls[-1]["repo_id"] == "lmms-lab/DocVQA"


# --- MVBench -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mvbench_branch(tmp_path_factory) -> Path:
    return make_samples.make_mvbench_official(tmp_path_factory.mktemp("mvb") / "mvbench", layout="segments")


def test_mvbench_video_branch(mvbench_branch, cache):
    source = resolve("mvbench", f"official:{mvbench_branch}", cache_dir=cache)
    record = source.to_record()
    assert record["subtasks"] == {"action_sequence": 2, "object_shuffle": 20, "moving_direction": 2,
                                  "episodic_reasoning": 1}
    assert record["video_layout"] == {"segments": 25}
    rows = {r["qid"]: r for r in read_rows(source)}
    sequence = rows["mvbench-action_sequence-0"]
    assert sequence["video"] == "star/Charades_segment/ABC12.mp4" and sequence["subtask"] == "action_sequence"
    assert (sequence["video_start"], sequence["video_end"]) == (-1.0, -1.0)  # the segment is cut already
    assert sequence["answer"] == "C" and options_of(sequence["question"])["C"] == "Took the box."
    assert sequence["is_video"] and sequence["image"] == []
    assert rows["mvbench-episodic_reasoning-0"]["video"] == "tvqa/video_fps3_hq_segment/castle_s01e01_seg02_clip_00.mp4"
    direction = rows["mvbench-moving_direction-0"]
    assert direction["answer"] == "B" and options_of(direction["question"]) == {"A": "up", "B": "right", "C": "left"}


def test_mvbench_answer_order_leak_is_shuffled_and_recorded(mvbench_branch, cache):
    source = resolve("mvbench", f"official:{mvbench_branch},seed=4", cache_dir=cache)
    record = source.to_record()
    assert record["shuffled_subtasks"] == ["object_shuffle"] and record["seed"] == 4
    assert record["answer_positions"]["object_shuffle"] == {"A": 20}
    assert record["answer_positions"]["moving_direction"] == {"B": 2}
    rows = [r for r in read_rows(source) if r["subtask"] == "object_shuffle"]
    assert len({r["answer"] for r in rows}) > 1
    assert all(options_of(r["question"])[r["answer"]] == "under the first cup" for r in rows)
    released = [r for r in read_rows(source) if r["subtask"] == "action_sequence"]
    assert [r["answer"] for r in released] == ["C", "A"]  # other subtasks keep the released order


def test_mvbench_bad_questions_fail_alone(tmp_path, cache):
    folder = make_samples.make_mvbench_official(tmp_path / "mvbench", leak_items=1)
    items = json.loads((folder / "json" / "moving_direction.json").read_text())
    items[0]["answer"] = "sideways"
    (folder / "json" / "moving_direction.json").write_text(json.dumps(items))
    (folder / "star" / "Charades_segment" / "ABC12.mp4").unlink()
    _, samples = load_samples("mvbench", f"official:{folder}", cache_dir=cache)
    by_id = {s.sample_id: s for s in samples}
    with pytest.raises(DataError, match="the answer 'sideways' is not one of the candidates"):
        by_id["mvbench-moving_direction-0"].load_images()
    with pytest.raises(DataError, match="video file not found: .*star/Charades_segment/ABC12.mp4"):
        by_id["mvbench-action_sequence-0"].load_images()
    assert len(by_id["mvbench-moving_direction-1"].load_images()) == 16


def test_mvbench_zipped_videos_are_unpacked_once(tmp_path, cache, monkeypatch):
    """The main branch: json/ plus video/*.zip that unpack to the original layout."""
    folder = make_samples.make_mvbench_official(tmp_path / "mvbench", layout="original", leak_items=1)
    for top in ("clevrer", "star", "tvqa", "perception"):
        with zipfile.ZipFile(folder / "video" / f"{top}.zip", "w") as zf:
            for path in sorted((folder / "video" / top).rglob("*")):
                zf.write(path, path.relative_to(folder / "video").as_posix())
        shutil.rmtree(folder / "video" / top)
    source = resolve("mvbench", f"official:{folder}", cache_dir=cache)
    assert source.root.name.startswith("mvbench-video-") and source.root.parent == cache.resolve() / "official"
    rows = {r["qid"]: r for r in read_rows(source)}
    assert rows["mvbench-action_sequence-0"]["video"] == "star/Charades_v1_480/ABC12.mp4"
    assert (rows["mvbench-action_sequence-0"]["video_start"], rows["mvbench-action_sequence-0"]["video_end"]) == (1.0, 2.5)
    _, samples = load_samples("mvbench", f"official:{folder}", cache_dir=cache)
    assert all(len(s.load_images()) == 16 for s in samples)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", lambda *a, **k: pytest.fail("extracted again"))
    assert resolve("mvbench", f"official:{folder}", cache_dir=cache).root == source.root


def test_mvbench_zip_slip_is_refused(tmp_path, cache):
    folder = make_samples.make_mvbench_official(tmp_path / "mvbench", layout="original", leak_items=1)
    with zipfile.ZipFile(folder / "video" / "evil.zip", "w") as zf:
        zf.writestr("../../evil.txt", b"gotcha")
    with pytest.raises(DataError, match="refusing to unpack .*evil.zip: member '../../evil.txt' points outside"):
        resolve("mvbench", f"official:{folder}", cache_dir=cache)
    assert not (cache / "evil.txt").exists() and not any((cache / "official").glob("mvbench-video-*"))


def test_mvbench_from_the_video_branch(mvbench_branch, cache, tmp_path, monkeypatch):
    snapshot = hub_cache(mvbench_branch, tmp_path / "hub" / "datasets--OpenGVLab--MVBench")
    calls = fake_hub(monkeypatch, snapshot)
    source, samples = load_samples("mvbench", "official", cache_dir=cache)
    assert (calls[0]["repo_id"], calls[0]["revision"]) == ("OpenGVLab/MVBench", "video")
    assert (source.revision, source.origin) == (COMMIT, "OpenGVLab/MVBench@video")
    sample = next(s for s in samples if s.sample_id == "mvbench-moving_direction-0")
    assert sample.meta["video"] == f"snapshots/{COMMIT}/clevrer/video_validation/video_10000.mp4"
    assert len(sample.load_images()) == 16


def test_mvbench_without_json_names_the_layout(tmp_path, cache):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MVBench json files in .*json/<subtask>.json"):
        resolve("mvbench", f"official:{tmp_path / 'empty'}", cache_dir=cache)


# --- TallyQA -------------------------------------------------------------------------------------

def test_tallyqa_keeps_complex_questions(releases, cache):
    source, samples = load_samples("tallyqa", f"official:{releases}", cache_dir=cache)
    record = source.to_record()
    assert (record["rows"], record["questions_in_file"], record["simple_skipped"]) == (3, 6, 3)
    items = {f"tallyqa-{i['question_id']}": i for i in json.loads((releases / "tallyqa" / "test.json").read_text())}
    for sample in samples:
        item = items[sample.sample_id]
        assert item["issimple"] is False and sample.answer == str(item["answer"])
        assert sample.meta["image"] == [item["image"]]
        assert len(sample.load_images()) == 1


def test_tallyqa_images_under_an_images_folder_and_bad_rows(copy, cache):
    folder = copy("tallyqa")
    (folder / "images").mkdir()
    for top in ("VG_100K_2", "val2014"):
        shutil.move(folder / top, folder / "images" / top)
    items = json.loads((folder / "test.json").read_text())
    items[0]["answer"] = "many"
    (folder / "test.json").write_text(json.dumps(items))
    source, samples = load_samples("tallyqa", f"official:{folder}", cache_dir=cache)
    assert source.root == folder / "images"
    with pytest.raises(DataError, match="answer 'many' is not a count"):
        samples[0].load_images()
    assert [len(s.load_images()) for s in samples[1:]] == [1, 1]
    for item in items:
        item.pop("issimple")
    (folder / "test.json").write_text(json.dumps(items))
    with pytest.raises(DataError, match="no 'issimple' field"):
        resolve("tallyqa", f"official:{folder}", cache_dir=cache)


# --- Documents -----------------------------------------------------------------------------------

@pytest.mark.parametrize("benchmark", ["vstar", "infovqa", "tallyqa", "mvbench"])
def test_official_documents_are_plain_columns(benchmark, releases, mvbench_branch, cache, monkeypatch):
    import datasets

    from pr_eval.lmms.task import _doc

    where = mvbench_branch if benchmark == "mvbench" else releases
    source = resolve(benchmark, f"official:{where}", cache_dir=cache)
    docs = [_doc(row, source) for row in read_rows(source)]
    table = datasets.Dataset.from_list(docs)
    assert table.column_names[:3] == ["qid", "question", "answer"]
    assert all(doc["data_error"] == "" for doc in docs)
    assert all(doc["is_video"] == (benchmark == "mvbench") for doc in docs)
    if benchmark == "mvbench":
        assert {doc["subtask"] for doc in docs} == {"action_sequence", "object_shuffle", "moving_direction",
                                                    "episodic_reasoning"}
    monkeypatch.setenv("PR_EVAL_DATA", f"official:{where}")
    assert data.source_spec() == f"official:{where}"
