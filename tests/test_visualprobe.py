"""VisualProbe Easy / Medium / Hard: the release converter on data in the exact schema of
Mini-o3's `val.json`, the exact-match rule on hand-checked answers, and its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from pr_eval.data import load as data, official
from pr_eval.benchmarks import BENCHMARKS
from pr_eval.benchmarks.visualprobe import exact_match, normalize, write_samples
from pr_eval.errors import DataError
from pr_eval.scoring.metrics import sample_metrics, trajectory_from_response
from pr_eval.trajectory import Trajectory

COMMIT = "c" * 40


@pytest.fixture
def release(tmp_path) -> Path:
    """A hard release in Mini-o3's schema: the generated questions, plus a record without its
    solution, one whose image path leaves the folder, one without its <image> prefix and one
    whose path names the folder above the repo's (as Mini-o3's BASE_IMAGE_DIR layout would)."""
    folder = tmp_path / "VisualProbe_Hard"
    write_samples(folder, "hard")
    Image.new("RGB", (32, 32), "red").save(tmp_path / "outside.png")  # exists, but outside the folder
    records = json.loads((folder / "val.json").read_text())
    good = records[0]
    records += [
        {**good, "doc_id": 10, "solution": None},
        {**good, "doc_id": 11, "images": ["../outside.png"]},
        {**good, "doc_id": 12, "problem": "What color is the small square?"},
        {**good, "doc_id": 13, "images": ["VisualProbe_Hard/" + good["images"][0]]},
        {key: value for key, value in good.items() if key != "images"} | {"doc_id": 14},
    ]
    (folder / "val.json").write_text(json.dumps(records), encoding="utf-8")
    return folder


def test_the_converter_reads_val_json(release, tmp_path):
    source = data.resolve("visualprobe_hard", str(release), cache_dir=tmp_path / "cache")
    rows = {row["qid"]: row for row in data.read_rows(source)}
    assert source.kind == "local" and source.rows == 7 and source.details["difficulty"] == "hard"
    assert source.details["images_rerooted"] == 1
    first = rows["visualprobe-hard-0"]
    assert first["question"] == "What color is the small square? Answer with one word."  # "<image>\n" removed
    assert first["image"] == ["data/hard_0.png"] and first["answer"] == "blue" and not first.get("_error")
    assert rows["visualprobe-hard-12"]["question"] == "What color is the small square?"
    assert rows["visualprobe-hard-13"]["image"] == ["data/hard_0.png"]
    assert "solution" in rows["visualprobe-hard-10"]["_error"]
    assert "images" in rows["visualprobe-hard-14"]["_error"]
    # the path that leaves the folder is kept, and refused only when its images load
    assert rows["visualprobe-hard-11"]["image"] == ["../outside.png"] and not rows["visualprobe-hard-11"].get("_error")
    loaded, refused = {}, {}
    for qid, row in rows.items():
        try:
            loaded[qid] = data.load_visuals(row, source.root)
        except DataError as exc:
            refused[qid] = str(exc)
    assert set(refused) == {"visualprobe-hard-10", "visualprobe-hard-11", "visualprobe-hard-14"}
    assert "outside the dataset folder" in refused["visualprobe-hard-11"]
    assert loaded["visualprobe-hard-0"][0].size == (2400, 1800)
    assert source.revision == official.resolve("visualprobe_hard", f"official:{release}", tmp_path / "c2").revision


def test_a_folder_without_val_json_is_refused(tmp_path):
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(DataError, match=r"no val\.json in .*train\.json.*Mini-o3/VisualProbe_Easy"):
        data.resolve("visualprobe_easy", str(tmp_path), cache_dir=tmp_path / "cache")
    (tmp_path / "val.json").write_text('{"doc_id": 1}')
    with pytest.raises(DataError, match="JSON list"):
        data.resolve("visualprobe_easy", str(tmp_path), cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_the_bundled_samples_and_the_hub_route(difficulty, tmp_path, monkeypatch):
    name = f"visualprobe_{difficulty}"
    source, samples = data.load_samples(name, "samples", cache_dir=tmp_path / "cache")
    assert source.kind == "samples" and len(samples) >= 2
    assert all(s.sample_id.startswith(f"visualprobe-{difficulty}-") and s.load_images() for s in samples)
    regenerated = tmp_path / "again"
    write_samples(regenerated, difficulty)  # the bundled files are what the record says writes them
    for path in sorted(p for p in (data.SAMPLES_DIR / name).rglob("*") if p.is_file()):
        assert (regenerated / path.relative_to(data.SAMPLES_DIR / name)).read_bytes() == path.read_bytes(), path
    snapshot = tmp_path / "snapshots" / COMMIT
    write_samples(snapshot, difficulty)
    asked = []
    monkeypatch.setattr(official, "download", lambda repo, revision, patterns, fix: asked.append(repo) or snapshot)
    hub = data.resolve(name, "hub", cache_dir=tmp_path / "cache")
    assert asked == [BENCHMARKS[name].release.hub_id] and hub.kind == "hub" and hub.revision == COMMIT
    assert len(data.read_rows(hub)) == len(samples)


def test_the_bundled_samples_are_small():
    files = [p for d in ("easy", "medium", "hard") for p in (data.SAMPLES_DIR / f"visualprobe_{d}").rglob("*")
             if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 120_000


@pytest.mark.parametrize("text, solution, expected", [
    ("\\boxed{Red}", "red", 1.0),                              # case
    ("\\boxed{red.}", "Red", 1.0),                             # trailing punctuation
    ("The answer is \\boxed{ dark   blue ! }", "dark blue", 1.0),  # whitespace inside and around
    ("<answer>The Eiffel Tower</answer>", "the eiffel tower.", 1.0),
    ("<think>maybe green</think><answer>green</answer>", "green", 1.0),
    ("Answer: 12", "12", 1.0),
    ("yellow", "Yellow", 1.0),                                 # no marked answer: the whole text
    ("It is yellow.", "yellow", 0.0),                          # ... which must then be the answer itself
    ("\\boxed{reddish}", "red", 0.0),                          # a near miss
    ("\\boxed{red car}", "red", 0.0),
    ("\\boxed{3.5}", "3", 0.0),
    ("\\boxed{}", "red", 0.0),                                 # an empty box is an empty answer
    ("<answer>blue</answer> \\boxed{red}", "blue", 0.0),       # the box comes first, as in extract_answer
    ("", "red", 0.0),
])
def test_exact_match(text, solution, expected):
    assert exact_match(text, {"answer": solution}) == expected


def test_normalize():
    assert normalize("  The  Red\tCar?!. ") == "the red car"
    assert normalize("U.S.A.") == "u.s.a" and normalize("3.50") == "3.50"


def one_turn(text: str) -> Trajectory:
    traj = Trajectory(task="pr_visualprobe_easy", sample_id="s", question="q", target=None,
                      protocol="pixel-reasoner-v3", fingerprint="0" * 16, stop_reason="answered",
                      messages=[{"role": "assistant", "content": [{"type": "text", "text": text}]}])
    return trajectory_from_response(traj.to_json(), {}, "pr_visualprobe_easy")


@pytest.mark.parametrize("name", ["visualprobe_easy", "visualprobe_medium", "visualprobe_hard"])
def test_sample_metrics(name):
    doc = {"qid": "visualprobe-easy-0", "question": "What color is the small square?", "answer": "red"}
    right = sample_metrics(one_turn("The square is red. \\boxed{Red}"), doc, name)
    assert right["exact_match"] == 1.0 and right["accuracy"] == 1.0
    wrong = sample_metrics(one_turn("\\boxed{blue}"), doc, name)
    assert wrong["exact_match"] == 0.0 and wrong["accuracy"] == 0.0


def test_the_records():
    easy, medium, hard = (BENCHMARKS[f"visualprobe_{d}"] for d in ("easy", "medium", "hard"))
    assert [b.rows for b in (easy, medium, hard)] == [141, None, 106]
    assert [b.task for b in (easy, medium, hard)] == ["pr_visualprobe_easy", "pr_visualprobe_medium",
                                                      "pr_visualprobe_hard"]
    assert all(b.in_field and b.main == "exact_match" and b.main_label == "exact match" and not b.hub_id
               for b in (easy, medium, hard))
    assert medium.release.hub_id == "Mini-o3/VisualProbe_Medium"
