"""The run store: run.json, the journal of finished samples, saved images, and rebuilding a Run
from a finished folder. No engine here; resuming real runs is tested in test_resume.py."""

from __future__ import annotations

import json
import math

import pytest

from pr_eval.runner import Run, RunError, load_run


def _finished_folder(tmp_path, with_layout=True):
    """A results.json as the runner writes it: MVBench's group with two subtasks, and V*."""
    summary = {
        "metrics": {"pr_mvbench": {"letter_accuracy": 0.5, "accuracy": 0.5, "rapr": None},
                    "pr_mvbench_action_count": {"letter_accuracy": 1.0, "accuracy": 1.0, "rapr": 0.0},
                    "pr_mvbench_fine_grained_pose": {"letter_accuracy": 0.0, "accuracy": 0.0, "rapr": 0.0},
                    "pr_vstar": {"letter_accuracy": 0.75, "accuracy": 0.5, "attribute_accuracy": 1.0,
                                 "spatial_accuracy": 0.0, "rapr": 0.25}},
        "n_samples": {"pr_mvbench": 2, "pr_mvbench_action_count": 1, "pr_mvbench_fine_grained_pose": 1,
                      "pr_vstar": 4},
        "lmms_eval": {"group_subtasks": {"pr_mvbench": ["pr_mvbench_action_count", "pr_mvbench_fine_grained_pose"],
                                         "pr_vstar": []},
                      "configs": {"pr_mvbench_action_count": {"metadata": {"benchmark": "mvbench"}},
                                  "pr_mvbench_fine_grained_pose": {"metadata": {"benchmark": "mvbench"}},
                                  "pr_vstar": {"metadata": {"benchmark": "vstar"}}}},
    }
    if with_layout:
        summary["members"] = {"pr_mvbench": ["pr_mvbench_action_count", "pr_mvbench_fine_grained_pose"]}
        summary["benchmarks"] = {"pr_mvbench": "mvbench", "pr_mvbench_action_count": "mvbench",
                                 "pr_mvbench_fine_grained_pose": "mvbench", "pr_vstar": "vstar"}
    (tmp_path / "results.json").write_text(json.dumps(summary))
    return summary


@pytest.mark.parametrize("with_layout", [True, False], ids=["members-saved", "members-from-lmms-eval"])
def test_load_run_rebuilds_the_table_of_a_finished_folder(tmp_path, with_layout):
    summary = _finished_folder(tmp_path, with_layout)
    run = load_run(tmp_path)
    assert isinstance(run, Run) and run.folder == tmp_path
    assert list(run.metrics) == list(summary["metrics"])
    assert run.counts == summary["n_samples"]
    assert run.members == {"pr_mvbench": ["pr_mvbench_action_count", "pr_mvbench_fine_grained_pose"]}
    assert run.benchmarks["pr_vstar"] == "vstar" and run.benchmarks["pr_mvbench"] == "mvbench"
    assert math.isnan(run.metrics["pr_mvbench"]["rapr"])  # null in the file: NaN, as in a fresh Run
    lines = run.table().splitlines()
    rows = [line.split()[0] for line in lines[2:7]]
    assert rows == ["pr_mvbench", "action_count", "fine_grained_pose", "pr_vstar", "attribute"]
    assert "  action_count" in lines[3] and "letter acc" in lines[2] and "75.0" in lines[5]


def test_load_run_says_what_is_missing(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(RunError, match="no results.json: not a finished run folder.*--resume"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text("{broken")
    with pytest.raises(RunError, match="not valid JSON"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text("[]")
    with pytest.raises(RunError, match="no \"metrics\" object"):
        load_run(tmp_path)
