"""The lmms-eval tasks: found from our folder, and scored end to end by lmms-eval itself.

The run goes through lmms-eval's `simple_evaluate` with a stand-in model that answers each
document from a script (the real engine is covered by test_end_to_end.py): this tests the harness
plumbing (task YAMLs, data loading, MVBench's subtask split, metrics, group aggregation, the
pr-eval table) on small generated datasets in the Pixel-Reasoner schema.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from lmms_eval.api.model import lmms
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.tasks import TaskManager
from PIL import Image
from pr_eval.benchmarks.mvbench import SUBTASKS, keep_subtask, subtask_of

from pr_eval.data.load import SAMPLES_DIR
from pr_eval.errors import DataError
from pr_eval.run.evaluate import TASKS_DIR, collect
from pr_eval.trajectory import DATA_ERROR, ToolCall, Trajectory

BENCHMARK_TASKS = ["pr_vstar", "pr_tallyqa_complex", "pr_infovqa", "pr_mvbench"]
MVBENCH_TASKS = [f"pr_mvbench_{name}" for name in SUBTASKS]


@pytest.fixture(scope="module")
def task_manager():
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


def test_our_folder_holds_every_task_and_group(task_manager):
    assert set(BENCHMARK_TASKS + MVBENCH_TASKS + ["pr_suite"]) <= set(task_manager.all_tasks)
    assert set(task_manager.all_groups) == {"pr_mvbench", "pr_suite", "pr_field", "pr_visualprobe"}
    assert len(MVBENCH_TASKS) == 20


def test_mvbench_subtask_comes_from_the_doc_or_its_qid():
    assert subtask_of({"subtask": "Action Sequence", "qid": "mvbench-7"}) == "action_sequence"
    assert subtask_of({"subtask": "", "qid": "mvbench-fine_grained_pose-3"}) == "fine_grained_pose"
    assert subtask_of({"subtask": "", "qid": "mvbench-17"}) == ""


def test_mvbench_data_without_subtasks_stops_the_run_instead_of_scoring_less():
    import datasets

    docs = datasets.Dataset.from_list([{"qid": "mvbench-action_count-0", "subtask": ""},
                                       {"qid": "mvbench-1", "subtask": ""}])
    assert keep_subtask("action_count")(docs.select([0]))["qid"] == ["mvbench-action_count-0"]
    with pytest.raises(DataError, match="'mvbench-1'"):
        keep_subtask("action_count")(docs)
    with pytest.raises(DataError, match="no question of subtask 'state_change' .*1 of the 20: action_count"):
        keep_subtask("state_change")(docs.select([0]))


# --- generated data -------------------------------------------------------------------------------

def _image(path: Path, color) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), color).save(path)
    return path.as_posix()


def _write(root: Path, benchmark: str, rows: list[dict]) -> None:
    folder = root / benchmark
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(folder / f"{benchmark}.parquet")


def make_tallyqa(root: Path) -> None:
    rows = []
    for i, answer in enumerate(["3", "2", "5", "1"]):
        name = f"images/{i}.jpg"
        if i < 3:  # the last row's image is missing: a data error
            _image(root / "tallyqa" / name, (40 * i, 90, 120))
        rows.append({"qid": f"tallyqa-{i}", "question": "How many dogs are sitting?", "image": [name],
                     "answer": answer})
    _write(root, "tallyqa", rows)


def make_infovqa(root: Path) -> None:
    rows = []
    for i, answers in enumerate([["42%", "42 percent"], ["blue whale"]]):
        name = f"images/{i}.png"
        _image(root / "infovqa" / name, (200, 200, 40 * i))
        rows.append({"qid": f"infovqa-{i}", "question": "What does the chart say?", "image": [name],
                     "answer": answers})
    _write(root, "infovqa", rows)


MVBENCH_QUESTION = ("What did the person do first?\n(A) opened the door\n(B) sat down\n"
                    "(C) picked up the cup\n(D) waved")


def make_mvbench(root: Path) -> list[dict]:
    """Four action_sequence questions and one of each other subtask, 16 frames each."""
    rows = []
    for subtask in SUBTASKS:
        for n in range(4 if subtask == "action_sequence" else 1):
            frames = [f"images/{subtask}/{n}/{k:02d}.jpg" for k in range(1, 17)]
            for k, frame in enumerate(frames):
                _image(root / "mvbench" / frame, (10 * k, 60, 90))
            rows.append({"qid": f"mvbench-{subtask}-{n}", "question": MVBENCH_QUESTION, "image": frames,
                         "answer": "B", "is_video": True})
    _write(root, "mvbench", rows)
    return rows


# --- a stand-in model -----------------------------------------------------------------------------

def answered(text: str, tool: bool = False) -> str:
    """A trajectory as our model adapter returns it: the final turn, after one crop if `tool`."""
    calls = [ToolCall(turn=0, raw="{}", name="crop_image_normalized",
                      arguments={"bbox_2d": [0.1, 0.1, 0.5, 0.5], "target_image": 1}, ok=True)] if tool else []
    return Trajectory(task="", sample_id="", question="", target=None, protocol="test", fingerprint="",
                      messages=[{"role": "assistant", "content": [{"type": "text", "text": text}]}],
                      tool_calls=calls, stop_reason="answered").to_json()


class ScriptedModel(lmms):
    """Answers each document from a script keyed by qid; loads its images first, as a real model
    would, and reports a sample whose images fail as lost (what our adapter does)."""

    is_simple = True

    def __init__(self, script: dict[str, str]):
        super().__init__()
        self.script = script

    def generate_until(self, requests) -> list[str]:
        responses = []
        for request in requests:
            _context, _kwargs, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            try:
                doc_to_visual(doc)
            except DataError as exc:
                responses.append(Trajectory(task=task, sample_id=doc["qid"], question="", target=None,
                                            protocol="test", fingerprint="", stop_reason=DATA_ERROR,
                                            error=str(exc)).to_json())
                continue
            responses.append(self.script[doc["qid"]])
        return responses

    def loglikelihood(self, requests):
        raise NotImplementedError

    def generate_until_multi_round(self, requests):
        raise NotImplementedError


def script_for(root: Path) -> dict[str, str]:
    vstar = pd.read_parquet(SAMPLES_DIR / "vstar" / "vstar.parquet")
    script = {qid: f"\\boxed{{{answer}}}" for qid, answer in zip(vstar.qid, vstar.answer)}
    script.update({
        "tallyqa-0": "\\boxed{3}",        # right by both rules
        "tallyqa-1": "\\boxed{two}",      # a right count, but math_verify does not read "two"
        "tallyqa-2": "\\boxed{4}",        # wrong
        "infovqa-0": "\\boxed{42}",       # the reference accepts 45 for 45%; ANLS 1 - 1/3
        "infovqa-1": "\\boxed{blue whales}",  # ANLS 1 - 1/11
    })
    # MVBench: the four action_sequence questions right (two after a crop), object_shuffle wrong
    # after a crop, the other 18 subtasks wrong without tools.
    for n in range(4):
        script[f"mvbench-action_sequence-{n}"] = answered("\\boxed{B}", tool=n < 2)
    for subtask in SUBTASKS[1:]:
        script[f"mvbench-{subtask}-0"] = answered("\\boxed{C}", tool=subtask == "object_shuffle")
    return script


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory, task_manager):
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(SAMPLES_DIR / "vstar", root / "vstar")
    make_tallyqa(root)
    make_infovqa(root)
    make_mvbench(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", str(root))
        results = simple_evaluate(model=ScriptedModel(script_for(root)), tasks=["pr_suite"],
                                  task_manager=task_manager, log_samples=True, verbosity="WARNING")
    return results


def test_suite_reports_every_benchmark_with_its_own_metric(suite_run):
    results = suite_run["results"]
    vstar = results["pr_vstar"]
    assert vstar["accuracy,none"] == vstar["letter_accuracy,none"] == 1.0
    tally = results["pr_tallyqa_complex"]
    assert tally["count_accuracy,none"] == pytest.approx(2 / 4)
    assert tally["accuracy,none"] == pytest.approx(1 / 4)
    assert tally["error_rate,none"] == pytest.approx(1 / 4)  # the missing image: lost, and wrong
    info = results["pr_infovqa"]
    assert info["anls,none"] == pytest.approx(((1 - 1 / 3) + (1 - 1 / 11)) / 2)
    assert info["accuracy,none"] == pytest.approx(1 / 2)
    for task in BENCHMARK_TASKS + MVBENCH_TASKS:
        assert {"accuracy,none", "rapr,none", "tool_calls,none", "error_rate,none"} <= set(results[task])


def test_mvbench_overall_is_the_mean_over_questions(suite_run):
    results = suite_run["results"]
    assert set(suite_run["group_subtasks"]["pr_mvbench"]) == set(MVBENCH_TASKS)
    assert sum(suite_run["n-samples"][t]["effective"] for t in MVBENCH_TASKS) == 23
    per_subtask = {t: results[t]["letter_accuracy,none"] for t in MVBENCH_TASKS}
    assert per_subtask["pr_mvbench_action_sequence"] == 1.0
    assert sum(per_subtask.values()) == 1.0  # every other subtask: 0
    overall = results["pr_mvbench"]
    assert overall["letter_accuracy,none"] == pytest.approx(4 / 23)  # not 1/20, the subtask mean
    assert overall["accuracy,none"] == pytest.approx(4 / 23)
    assert overall["rapr,none"] == pytest.approx(3 / 23)
    # Means over different subsets of each subtask: lmms-eval must not pool them by size.
    assert "accuracy_with_tools,none" not in overall


def test_pr_eval_collects_groups_pooling_what_lmms_eval_cannot(suite_run, tmp_path):
    run = collect(suite_run, ["pr_suite"], tmp_path)
    metrics, counts, benchmarks = run.metrics, run.counts, run.benchmarks
    assert "pr_suite" not in metrics  # a collection of benchmarks, not a score
    assert set(BENCHMARK_TASKS + MVBENCH_TASKS) == set(metrics)
    mvbench = metrics["pr_mvbench"]
    assert mvbench["letter_accuracy"] == pytest.approx(4 / 23) and counts["pr_mvbench"] == 23
    assert mvbench["accuracy_with_tools"] == pytest.approx(2 / 3)  # 2 of the 3 crops were right
    assert mvbench["accuracy_without_tools"] == pytest.approx(2 / 20)
    assert metrics["pr_mvbench_object_shuffle"]["accuracy_with_tools"] == 0.0
    assert math.isnan(metrics["pr_mvbench_moving_count"]["accuracy_with_tools"])
    assert counts["pr_mvbench_action_sequence"] == 4 and counts["pr_vstar"] == 12
    assert benchmarks["pr_mvbench"] == "mvbench" and benchmarks["pr_infovqa"] == "infovqa"

    lines = run.table().split("\n\n")[0].splitlines()  # the score table (the tool table follows)
    assert lines[0].split() == ["task", "n", "metric", "score", "accuracy", "RaPR", "calls/sample", "failed", "lost"]
    body = lines[2:-2]  # between the header's rule and the two-line footnote
    names = [line.split()[0] for line in body]
    assert names[:6] == ["pr_vstar", "attribute", "spatial", "pr_tallyqa_complex", "pr_infovqa", "pr_mvbench"]
    assert names[6:] == list(SUBTASKS)  # each subtask under the group, in MVBench's order
    row = {line.split()[0]: line for line in body}
    assert row["pr_mvbench"].split()[1:6] == ["23", "letter", "acc", "17.4", "17.4"]  # mean over questions
    assert row["action_sequence"].startswith("  action_sequence ")
    assert row["action_sequence"].split()[1:6] == ["4", "letter", "acc", "100.0", "100.0"]
    assert row["pr_tallyqa_complex"].split()[1:6] == ["4", "count", "acc", "50.0", "25.0"]
    assert row["pr_tallyqa_complex"].split()[-1] == "25.0"  # lost samples
    assert row["pr_infovqa"].split()[1:5] == ["2", "ANLS", "78.8", "50.0"]
    assert row["attribute"].split() == ["attribute", "100.0"]  # V*'s breakdown: accuracy only


def test_sample_records_keep_every_metric_and_leave_out_what_a_sample_is_not_in(suite_run):
    """The records are the journal's trajectories (what the store saved as each sample ended) with
    lmms-eval's metrics of the sample; an answer without a saved trajectory stops the run."""
    from pr_eval.run.evaluate import RunError, sample_records, task_metric_names
    from pr_eval.run.store import sample_key

    task = "pr_mvbench_object_shuffle"
    names = task_metric_names(suite_run["configs"][task])
    entry = suite_run["samples"][task][0]
    saved = {"trajectory": json.loads(entry["resps"][0][0]), "timing": {"seconds": 1.5}, "images": ["a.png"]}
    journal = {sample_key(task, entry["doc_id"]): saved}
    [record] = sample_records(task, entry, names, "mvbench", journal)
    assert record["timing"] == {"seconds": 1.5} and record["image_files"] == ["a.png"]
    with pytest.raises(RunError, match="no saved trajectory"):
        sample_records(task, entry, names, "mvbench", {})
    assert record["metrics"]["letter_accuracy"] == 0.0 and record["metrics"]["rapr"] == 1.0
    assert record["metrics"]["accuracy_with_tools"] == 0.0 and record["metrics"]["accuracy_without_tools"] is None
    assert record["tool_calls"][0]["name"] == "crop_image_normalized"


def test_a_run_records_the_data_load_of_its_own_limit():
    """A process that loaded a benchmark whole (an earlier run) records a limited run's data as
    the limited run alone would: the record comes from the load of the run's own limit."""
    from pr_eval.data import sources
    from pr_eval.lmms import task

    whole, _ = task._documents("zoom", "samples", None)
    part, _ = task._documents("zoom", "samples", 8)
    assert str(whole.root) == str(part.root) and whole.rows > part.rows
    with sources.limited(8):
        assert task.loaded_source(str(part.root)) is part
    with sources.limited(None):
        assert task.loaded_source(str(whole.root)) is whole
