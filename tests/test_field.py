"""The field's benchmarks through lmms-eval: HR-Bench's cycle rule and TreeBench's crop
grounding, checked against figures worked out by hand on small tables in each release's schema."""

from __future__ import annotations

import base64
import io
import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.tasks import TaskManager
from PIL import Image
from test_tasks import ScriptedModel

from pr_eval.data import load as data
from pr_eval.scoring import grounding
from pr_eval.benchmarks.hrbench import write_samples
from pr_eval.errors import DataError
from pr_eval.scoring.metrics import mean_over_groups
from pr_eval.run.evaluate import TASKS_DIR, collect
from pr_eval.trajectory import ImageInfo, ToolCall, Trajectory
from pr_eval.cli import compare as cli_compare

pytestmark = pytest.mark.engine  # starts an engine: not in make test-fast


def _png(size, color=(128, 128, 128)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def turn(text: str, images=(), calls=()) -> str:
    """A finished trajectory as our adapter returns it: its images, tool calls and final text."""
    return Trajectory(task="", sample_id="", question="", target=None, protocol="test", fingerprint="",
                      messages=[{"role": "assistant", "content": [{"type": "text", "text": text}]}],
                      images=list(images), tool_calls=list(calls), stop_reason="answered").to_json()


def run(task: str, data_root, script: dict, tmp_path, monkeypatch):
    monkeypatch.setenv("PR_EVAL_DATA", str(data_root))
    results = simple_evaluate(model=ScriptedModel(script), tasks=[task], log_samples=True, verbosity="WARNING",
                              task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False))
    return collect(results, [task], tmp_path).metrics[task], results


# --- HR-Bench -------------------------------------------------------------------------------------

def test_hrbench_scores_by_its_cycle_rule(tmp_path, monkeypatch):
    """Three questions: cycle 0 (FSP) in 4 rotations, all right; cycle 1 (FCP) in 4, one right;
    cycle 2 (FSP) in 2, none right. By hand: cycle rule (1 + 1/4 + 0) / 3 = 0.41667, the plain
    mean 5/10; FSP accuracy 4/6, FCP 1/4."""
    image = _png((64, 48))
    rows, script = [], {}
    for cycle, (category, rotations, right) in enumerate([("single", 4, 4), ("cross", 4, 1), ("single", 2, 0)]):
        first = len(rows)
        for r in range(rotations):
            index = len(rows)
            rows.append({"index": index, "question": "Which?", "answer": "B", "category": category,
                         "A": "a", "B": "b", "C": "c", "D": "d", "cycle_category": str(cycle),
                         "image": image if r == 0 else str(first)})
            script[f"hrbench4k-{index}"] = turn("\\boxed{B}" if r < right else "\\boxed{C}")
    (tmp_path / "data" / "hrbench4k").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "data" / "hrbench4k" / "hr_bench_4k.tsv", sep="\t", index=False)
    figures, results = run("pr_hrbench4k", tmp_path / "data", script, tmp_path, monkeypatch)
    assert figures["cycle_accuracy"] == pytest.approx((1 + 0.25 + 0) / 3)
    assert figures["accuracy"] == pytest.approx(0.5)
    assert figures["fsp_accuracy"] == pytest.approx(4 / 6) and figures["fcp_accuracy"] == pytest.approx(1 / 4)
    assert results["configs"]["pr_hrbench4k"]["metadata"]["data"]["format"] == "vlmevalkit-tsv"


def test_the_cycle_rule_is_the_mean_of_group_means():
    items = [{"value": v, "weight": 1.0, "group": g} for g, v in [("a", 1), ("a", 1), ("a", 0), ("b", 0)]]
    assert mean_over_groups(items) == pytest.approx((2 / 3 + 0) / 2)
    assert mean_over_groups([{"value": 1.0, "weight": 1.0}]) == 1.0  # no group label: one group


# --- TreeBench and crop grounding -----------------------------------------------------------------

def crop(parent: int, box, source_size, shown=(448, 448)) -> ImageInfo:
    return ImageInfo(kind="crop", width=shown[0], height=shown[1], parent=parent, box=list(box),
                     source_size=list(source_size))


def call(turn_index=0) -> ToolCall:
    return ToolCall(turn=turn_index, raw="{}", name="crop_image_normalized", ok=True, box_normalized=[0, 0, 1, 1])


def treebench_case(tmp_path):
    """Four questions on 1000x800 images, each about one target box. By hand:
    q0: one crop (drawn on the input shown at 500x400) of [50,50,250,250] around target
        [100,100,200,200]: a hit, IoU 0.25; right.
    q1: one crop [0,0,300,300], target [600,400,700,500]: a miss, IoU 0; wrong.
    q2: no crop; right.
    q3: a crop [300,200,700,600] (holds target [400,300,500,400], IoU 0.0625), then a crop of that
        crop, [112,112,224,224] of its 448x448 pixels, which is the target exactly (IoU 1); right.
    Crops 4, hits 3: hit rate 0.75. crop_iou (0.25 + 0 + 0 + 1) / 4 = 0.3125. Accuracy of the
    samples whose crops hit (q0, q3) 1.0; of those that cropped and missed (q1) 0.0. Letters 3/4."""
    targets = [[100, 100, 200, 200], [600, 400, 700, 500], [100, 100, 200, 200], [400, 300, 500, 400]]
    rows = [{"index": k, "image": _png((1000, 800)), "question": "What is in the box?",
             "multi-choice options": "['(A) x', '(B) y']", "A": "x", "B": "y", "answer": "A",
             "category": "Perception/Attributes" if k < 2 else "Reasoning/Ordering",
             "target_instances": json.dumps([box])} for k, box in enumerate(targets)]
    (tmp_path / "data" / "treebench").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / "data" / "treebench" / "TreeBench.tsv", sep="\t", index=False)
    full = ImageInfo(kind="input", width=1000, height=800, original_size=[1000, 800])
    script = {
        "treebench-0": turn("\\boxed{A}", [ImageInfo(kind="input", width=500, height=400, original_size=[1000, 800]),
                                           crop(1, [25, 25, 125, 125], [500, 400])], [call()]),
        "treebench-1": turn("\\boxed{B}", [full, crop(1, [0, 0, 300, 300], [1000, 800])], [call()]),
        "treebench-2": turn("\\boxed{A}", [full]),
        "treebench-3": turn("\\boxed{A}", [full, crop(1, [300, 200, 700, 600], [1000, 800]),
                                           crop(2, [112, 112, 224, 224], [448, 448])], [call(), call(1)]),
    }
    return tmp_path / "data", script


def test_treebench_reports_where_the_crops_went(tmp_path, monkeypatch):
    root, script = treebench_case(tmp_path)
    figures, results = run("pr_treebench", root, script, tmp_path, monkeypatch)
    assert figures["letter_accuracy"] == pytest.approx(0.75) and figures["accuracy"] == pytest.approx(0.75)
    assert figures["crop_hit_rate"] == pytest.approx(0.75)
    assert figures["crop_iou"] == pytest.approx(0.3125)
    assert figures["accuracy_crop_hit"] == pytest.approx(1.0) and figures["accuracy_crop_miss"] == pytest.approx(0.0)
    assert figures["perception_accuracy"] == pytest.approx(0.5) and figures["reasoning_accuracy"] == pytest.approx(1.0)
    assert figures["attributes_accuracy"] == pytest.approx(0.5) and figures["ordering_accuracy"] == pytest.approx(1.0)
    samples = results["samples"]["pr_treebench"]
    assert [s["doc"]["targets"] for s in samples][3] == [[400.0, 300.0, 500.0, 400.0]]


boxes = st.tuples(*[st.floats(0, 1)] * 4).map(lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])))


@given(boxes, boxes)
def test_iou_and_coverage_are_bounded_and_symmetric(a, b):
    assert 0.0 <= grounding.iou(a, b) <= 1.0 and grounding.iou(a, b) == pytest.approx(grounding.iou(b, a))
    assert 0.0 <= grounding.coverage(a, b) <= 1.0 + 1e-9
    if grounding._area(b) > 0:
        assert grounding.coverage((0, 0, 1, 1), b) == pytest.approx(1.0)


def test_crops_of_crops_land_in_the_input_frame_and_video_frames_are_left_out():
    traj = Trajectory("t", "s", "q", None, "p", "f", images=[
        ImageInfo(kind="input", width=100, height=100, original_size=[100, 100]),
        crop(1, [50, 0, 100, 50], [100, 100]), crop(2, [0, 0, 224, 224], [448, 448]),
        ImageInfo(kind="input", width=10, height=10), crop(4, [0, 0, 5, 5], [10, 10])])
    assert grounding.input_frame_boxes(traj) == [(0.5, 0.0, 1.0, 0.5), (0.5, 0.0, 0.75, 0.25)]
    assert grounding.normalized_targets([[0, 0, 50, 50], [5, 5, 1, 1], "x"], (100, 200)) == [(0, 0, 0.5, 0.25)]


def test_hrbench_reads_lmms_evals_parquet_copy_with_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pr_eval.data import load as data

    tsv_folder = tmp_path / "tsv"
    write_samples(tsv_folder, "4k", questions=2)
    tsv_rows = data.read_rows(data.resolve("hrbench4k", str(tsv_folder), cache_dir=tmp_path / "c1"))
    frame = pd.read_csv(tsv_folder / "hr_bench_4k.tsv", sep="\t", dtype=str)
    pictures = {row["index"]: row["image"] for _, row in frame.iterrows() if len(row["image"]) > 64}
    records = [{**{k: row[k] for k in frame.columns if k != "image"},
                "image": {"bytes": base64.b64decode(pictures.get(row["image"], row["image"])), "path": None}}
               for _, row in frame.iterrows()]
    (tmp_path / "pq" / "hrbench_version_split").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "pq" / "hrbench_version_split" / "hrbench_4k-0.parquet")
    source = data.resolve("hrbench4k", str(tmp_path / "pq"), cache_dir=tmp_path / "c2")
    rows = data.read_rows(source)
    assert source.details["format"] == "lmms-eval-parquet"
    strip = ("image",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in rows] == \
           [{k: v for k, v in r.items() if k not in strip} for r in tsv_rows]
    assert len({r["image"][0] for r in rows}) == 2  # each picture written once
    assert data.load_visuals(rows[1], source.root)[0].size == (3840, 2160)


def test_an_8k_image_is_shown_within_the_protocols_bound():
    from pr_eval.data import load as data
    from pr_eval.data.imaging import fit_image
    from pr_eval.protocol import PIXEL_REASONER

    _, samples = data.load_samples("hrbench8k", "samples")
    stored = samples[0].load_images()[0]
    shown = fit_image(stored, PIXEL_REASONER.input_pixels)
    assert stored.size == (7680, 4320) and shown.width * shown.height <= PIXEL_REASONER.input_pixels.max_pixels
    assert shown.width % 28 == 0 and shown.height % 28 == 0


def test_the_report_draws_the_targets_where_they_are_on_the_shown_image():
    from pr_eval.report.pictures import target_overlay

    traj = Trajectory("t", "s", "q", None, "p", "f", meta={"targets": [[100, 200, 300, 400]]},
                      images=[ImageInfo(kind="input", width=500, height=400, original_size=[1000, 800])])
    svg = target_overlay(traj, 250, 200)  # displayed at a quarter of the stored size
    assert '<rect class="target" x="25.0" y="50.0" width="50.0" height="50.0"/>' in svg
    assert target_overlay(Trajectory("t", "s", "q", None, "p", "f", images=traj.images), 250, 200) == ""


def test_a_grouped_score_is_redone_from_the_records_everywhere(engine, tiny_model, tmp_path, monkeypatch, capsys):
    """HR-Bench with --limit 6: cycle 0 in 4 rotations (one right), cycle 1 in 2 (none right). The
    run's cycle_accuracy is (1/4 + 0) / 2 = 12.5%, the plain mean 1/6 = 16.7%. Each record keeps its
    group, so a submission validates, compare shows the run's 12.5, and an edited figure is refused."""
    from conftest import scripted

    from pr_eval.compare import submission
    from pr_eval.run import evaluate as runner
    from pr_eval.compare.sides import InputError, read_run

    monkeypatch.setenv("PR_EVAL_DATA", "samples")
    _, samples = data.load_samples("hrbench4k", "samples", limit=6)
    script = {s.sample_id: ["\\boxed{%s}" % (s.answer if s.sample_id == "hrbench4k-0" else "Z")] for s in samples}
    run = runner.evaluate("tiny", tiny_model, ["pr_hrbench4k"], limit=6, output=tmp_path, engine=engine,
                          guide=scripted(script))
    assert run.metrics["pr_hrbench4k"]["cycle_accuracy"] == pytest.approx(0.125)
    read = json.loads((run.folder / "run.json").read_text())["data"]["pr_hrbench4k"]
    assert read["limit"] == 6 and read["rows"] == 6  # the task read only the rows the run used
    records = [json.loads(x) for x in (run.folder / "samples_pr_hrbench4k.jsonl").read_text().splitlines()]
    assert [r["group"] for r in records] == ["0", "0", "0", "0", "1", "1"]
    document = submission.build(run.folder)
    assert submission.validate(document) == [] and document["benchmarks"]["hrbench4k"]["score"] == pytest.approx(0.125)
    assert read_run(run.folder).benchmarks["hrbench4k"].groups
    capsys.readouterr()
    assert cli_compare.compare([str(run.folder), str(run.folder), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["rows"]
    assert row["metric"] == "cycle_accuracy" and row["a"] == row["b"] == pytest.approx(0.125)
    assert row["interval"] == "paired bootstrap over groups"
    summary = json.loads((run.folder / "results.json").read_text())
    summary["metrics"]["pr_hrbench4k"]["cycle_accuracy"] = 0.9
    (run.folder / "results.json").write_text(json.dumps(summary))
    with pytest.raises(InputError, match="results.json gives hrbench4k cycle_accuracy 0.900000 but the per-sample "
                                         "records .* give 0.125000"):
        read_run(run.folder)


@pytest.mark.parametrize("image, problem", [
    ("999", "its image field '999' (short, so the index of the row holding its image) names no row of the file"),
    ("2", "its image names row '2', which holds no image itself"),
])
def test_a_row_whose_image_names_a_wrong_row_says_only_that(tmp_path, image, problem):
    """Not also "missing field 'question'" for a row that has one (issue 25)."""
    write_samples(tmp_path / "tsv", "4k", questions=2)
    path = tmp_path / "tsv" / "hr_bench_4k.tsv"
    frame = pd.read_csv(path, sep="\t", dtype=str)
    frame.loc[1, "image"] = image
    frame.to_csv(path, sep="\t", index=False)
    rows = data.read_rows(data.resolve("hrbench4k", str(tmp_path / "tsv"), cache_dir=tmp_path / "c"))
    assert rows[1]["_error"] == problem and "_error" not in rows[0] and "_error" not in rows[2]


def test_limit_reads_only_the_rows_it_runs(tmp_path, monkeypatch):
    """`--limit 2` on a TSV whose later rows are not even TSV: lmms-eval cuts documents only after
    the task has loaded them, so the task reads the first rows itself (issue 25: a 1M-row TSV
    took minutes and GBs with --limit 3). The data record says the run read 2 rows of a limit 2."""
    from pr_eval.data import sources

    folder = tmp_path / "data" / "hrbench4k"
    write_samples(folder, "4k", questions=1)
    path = folder / "hr_bench_4k.tsv"
    path.write_bytes(path.read_bytes() + b"99\tbro\rken\n")
    monkeypatch.setenv("PR_EVAL_DATA", str(tmp_path / "data"))
    script = {f"hrbench4k-{i}": turn("\\boxed{A}") for i in range(4)}
    with sources.limited(2):
        results = simple_evaluate(model=ScriptedModel(script), tasks=["pr_hrbench4k"], log_samples=True, limit=2,
                                  verbosity="WARNING",
                                  task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False))
    assert [s["doc"]["qid"] for s in results["samples"]["pr_hrbench4k"]] == ["hrbench4k-0", "hrbench4k-1"]
    record = results["configs"]["pr_hrbench4k"]["metadata"]["data"]
    assert record["rows"] == 2 and record["limit"] == 2
    with pytest.raises(DataError, match="not valid TSV"):
        data.read_rows(data.resolve("hrbench4k", str(tmp_path / "data"), cache_dir=tmp_path / "c"))
