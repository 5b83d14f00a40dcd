"""The run store: run.json, the journal of finished samples, saved images, and rebuilding a Run
from a finished folder. No engine here; resuming real runs is tested in test_resume.py."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, noise_image
from hypothesis import given, settings
from hypothesis import strategies as st

from pr_eval.run.faults import parse_fault
from pr_eval.run.folder import Run, RunError, load_run
from pr_eval.run.store import (JOURNAL_FILE, RUN_FILE, SCHEMA, ResumeRefused, RunStore, StoreError,
                               find_unfinished, journal_line, parse_journal, resume_mismatches)
from pr_eval.trajectory import ImageInfo, Trajectory


def _finished_folder(tmp_path, with_layout=True):
    """A results.json as pr_eval.run.evaluate writes it: MVBench's group with two subtasks, and V*."""
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


# --- The journal ----------------------------------------------------------------------------------


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_records = st.lists(st.builds(lambda k, s, t: {"key": f"t/{k}", "sample_id": s, "trajectory": {"text": t}},
                              st.integers(0, 30), _text, _text), max_size=8)


def _journal(records) -> bytes:
    return b"".join(journal_line(r) for r in records)


def _first_per_key(records):
    seen = {}
    for r in records:
        seen.setdefault(r["key"], r)
    return seen


@settings(max_examples=300, deadline=None)
@given(_records, st.data())
def test_any_cut_of_a_journal_yields_a_prefix_of_its_records(records, data):
    """A crash can stop a write anywhere: what is read back is always the records of the complete
    lines before the cut (first record per key), never a damaged or invented one."""
    blob = _journal(records)
    cut = data.draw(st.integers(0, len(blob)))
    journal = parse_journal(blob[:cut])
    complete = blob[:cut].count(b"\n")
    assert journal.lines == complete
    assert journal.records == _first_per_key(records[:complete])
    assert journal.end == (blob[:cut].rfind(b"\n") + 1)
    assert blob[:journal.end] == _journal(records[:complete])


def test_a_duplicated_key_keeps_its_first_record():
    first = {"key": "t/1", "sample_id": "a", "trajectory": {"n": 1}}
    again = {"key": "t/1", "sample_id": "a", "trajectory": {"n": 2}}
    journal = parse_journal(_journal([first, {"key": "t/2", "sample_id": "b", "trajectory": {}}, again]))
    assert journal.records["t/1"] == first and journal.duplicates == ["t/1"] and list(journal.records) == ["t/1", "t/2"]


def test_a_damaged_line_before_the_last_is_an_error_naming_it():
    good = journal_line({"key": "t/1", "sample_id": "a", "trajectory": {}})
    with pytest.raises(StoreError, match="line 2 of the journal is not a sample record"):
        parse_journal(good + b'{"key": "t/2"}\n' + good)
    with pytest.raises(StoreError, match="line 1"):
        parse_journal(b"not json\n")


# --- The store on disk ------------------------------------------------------------------------------


def _trajectory(doc_id, task="pr_vstar", video=False):
    """A finished trajectory as the loop hands it on: pixels still attached."""
    traj = Trajectory(task=task, sample_id=f"q{doc_id}", question="Q?", target="A", protocol="p", fingerprint="f",
                      meta={"doc_id": doc_id}, stop_reason="answered", started_at=1000.0,
                      messages=[{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{A}"}]}])
    if video:
        traj.pixels = [[noise_image(64, 48, k) for k in range(3)]]
        traj.images = [ImageInfo("video", 64, 48)]
    else:
        traj.pixels = [noise_image(1400, 700), noise_image(300, 200, 1)]
        traj.images = [ImageInfo("input", 1400, 700), ImageInfo("crop", 300, 200, parent=1, box=[0, 0, 600, 400],
                                                              source_size=[2800, 1400])]
    return traj


def _info(**changes):
    info = {"model": "tiny", "model_path": "/m/tiny", "protocol": {"name": "p", "fingerprint": "f1"},
            "tasks": ["pr_vstar"], "limit": 4, "data_spec": "samples", "started": "2026-01-01T00:00:00+00:00"}
    info.update(changes)
    return info


def test_append_saves_images_then_a_line_that_a_reopened_store_reads_back(tmp_path):
    from PIL import Image

    store = RunStore.create(tmp_path / "run", _info())
    store.append(_trajectory(0))
    store.append(_trajectory(1, task="pr_mvbench_x", video=True))
    store.append(_trajectory(0))  # a sample already saved is not written twice
    store.close()
    folder = tmp_path / "run"
    assert json.loads((folder / RUN_FILE).read_text())["schema"] == SCHEMA
    lines = (folder / JOURNAL_FILE).read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["key"] == "pr_vstar/0" and first["sample_id"] == "q0" and first["doc_id"] == 0
    assert first["trajectory"]["messages"][-1]["content"][0]["text"] == "\\boxed{A}"
    assert first["timing"]["started"] == 1000.0 and first["timing"]["seconds"] > 0
    assert first["images"] == {"1": "images/pr_vstar/0/1.jpg", "2": "images/pr_vstar/0/2.jpg"}
    with Image.open(folder / first["images"]["1"]) as shown:  # down-scaled to 1024 px, aspect kept
        assert shown.format == "JPEG" and shown.size == (1024, 512)
    with Image.open(folder / first["images"]["2"]) as crop:  # the crop at the size the model saw it
        assert crop.format == "JPEG" and crop.size == (300, 200)
        # JPEG at quality 95, 4:4:4, for the report: close to the pixels (noise is JPEG's worst case)
        error = np.abs(np.asarray(crop, dtype=float) - np.asarray(noise_image(300, 200, 1), dtype=float)).mean()
        assert error < 5, error
    video = json.loads(lines[1])
    assert video["images"] == {"1": [f"images/pr_mvbench_x/1/1-f{j}.jpg" for j in (1, 2, 3)]}
    assert all((folder / p).is_file() for p in video["images"]["1"])
    reopened = RunStore.open(folder)
    assert list(reopened.done) == ["pr_vstar/0", "pr_mvbench_x/1"]
    assert reopened.done["pr_vstar/0"] == first
    reopened.close()


def test_reopening_cuts_off_a_partial_last_line_and_appends_after_it(tmp_path):
    store = RunStore.create(tmp_path / "run", _info())
    store.append(_trajectory(0))
    store.close()
    journal = tmp_path / "run" / JOURNAL_FILE
    whole = journal.read_bytes()
    journal.write_bytes(whole + whole[: len(whole) // 2].replace(b'"pr_vstar/0"', b'"pr_vstar/1"'))
    store = RunStore.open(tmp_path / "run")
    assert list(store.done) == ["pr_vstar/0"] and journal.read_bytes() == whole
    store.append(_trajectory(1))
    store.close()
    assert [json.loads(x)["key"] for x in journal.read_text().splitlines()] == ["pr_vstar/0", "pr_vstar/1"]


def test_one_run_folder_has_one_writer(tmp_path):
    store = RunStore.create(tmp_path / "run", _info())
    with pytest.raises(StoreError, match="another pr-eval process is writing"):
        RunStore.open(tmp_path / "run")
    store.close()
    RunStore.open(tmp_path / "run").close()


@pytest.mark.server
def test_kill_mid_write_hook_leaves_half_a_line_that_the_next_open_drops(tmp_path):
    """The test hook itself: a real SIGKILL in the middle of the 2nd line of a child process."""
    code = ("import sys; sys.path.insert(0, 'tests'); from test_store import _info, _trajectory; "
            "from pr_eval.run.store import RunStore; s = RunStore.create(sys.argv[1], _info()); "
            "[s.append(_trajectory(i)) for i in range(3)]")
    env = dict(os.environ, PR_EVAL_FAULT="kill-mid-write:2")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    raw = (tmp_path / "run" / JOURNAL_FILE).read_bytes()
    assert raw.count(b"\n") == 1 and len(raw.split(b"\n")[1]) > 100  # one line, then half of the second
    store = RunStore.open(tmp_path / "run")
    assert list(store.done) == ["pr_vstar/0"]
    store.close()
    assert (tmp_path / "run" / JOURNAL_FILE).read_bytes().count(b"\n") == 1


def test_fault_hook_values_are_checked():
    assert parse_fault(None) is None and parse_fault("kill-mid-write:3") == ("kill-mid-write", 3)
    assert parse_fault("kill-before-results") == ("kill-before-results", 0)
    for bad in ("kill-mid-write", "kill-mid-write:0", "explode"):
        with pytest.raises(ValueError, match="PR_EVAL_FAULT"):
            parse_fault(bad)


# --- Resuming: same evaluation or refused --------------------------------------------------------------

@pytest.mark.parametrize("change,message", [
    ({"model": "other", "model_path": "/m/other"}, "model: the run evaluated 'tiny', this command asks for 'other'"),
    ({"protocol": {"name": "no-tool", "fingerprint": "f2"}},
     "protocol: the run used 'p' (fingerprint f1), this command asks for 'no-tool' (fingerprint f2)"),
    ({"tasks": ["pr_infovqa"]}, "tasks: the run has pr_vstar, this command asks for pr_infovqa"),
    ({"limit": None}, "limit: the run has --limit 4, this command None"),
    ({"data_spec": "hub"}, "data: the run read 'samples', this command reads 'hub'"),
])
def test_resume_refuses_another_evaluation_saying_what_differs(tmp_path, change, message):
    assert resume_mismatches(_info(), _info(**change)) == [message]
    RunStore.create(tmp_path / "run", _info()).close()
    with pytest.raises(ResumeRefused) as refused:
        RunStore.resume(tmp_path / "run", _info(**change))
    text = str(refused.value)
    assert text.startswith(f"cannot resume {tmp_path / 'run'}: it is a different evaluation") and message in text
    assert "leave out --resume to start a new run" in text


def test_resume_keeps_what_the_run_recorded_and_notes_the_resume(tmp_path):
    store = RunStore.create(tmp_path / "run", _info())
    store.record_data({"pr_vstar": {"revision": "r1", "rows": 12}})
    store.close()
    same = _info(model="/m/tiny", started="2026-02-02", batch_size=8)  # same checkpoint, named by its path
    store = RunStore.resume(tmp_path / "run", same)
    info = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert info["started"] == "2026-01-01T00:00:00+00:00" and info["batch_size"] == 8 and len(info["resumed"]) == 1
    assert info["data"] == {"pr_vstar": {"revision": "r1", "rows": 12}}
    with pytest.raises(ResumeRefused, match="data of pr_vstar: the run read revision r1, the data found now is revision r2"):
        store.record_data({"pr_vstar": {"revision": "r2", "rows": 12}})
    store.append(_trajectory(3))
    with pytest.raises(ResumeRefused, match="sample pr_vstar/3 was 'q3' when it ran and is 'other' now"):
        store.check_sample("pr_vstar/3", "other")
    store.check_sample("pr_vstar/3", "q3")
    store.close()


def test_find_unfinished_puts_the_most_saved_matching_run_first(tmp_path):
    """Issue 26: a bare --resume picked the newest (empty) folder over one with 125 samples."""
    for name, changes, saved in [("old", {"started": "2026-01-01"}, 2), ("new", {"started": "2026-01-03"}, 0),
                                 ("newer", {"started": "2026-01-04"}, 0),
                                 ("other-protocol", {"started": "2026-01-05",
                                                     "protocol": {"name": "x", "fingerprint": "f9"}}, 5),
                                 ("finished", {"started": "2026-01-06"}, 3)]:
        store = RunStore.create(tmp_path / name, _info(**changes))
        for k in range(saved):
            store.append(_trajectory(k))
        store.close()
    (tmp_path / "finished" / "results.json").write_text("{}")
    (tmp_path / "not-a-run").mkdir()
    with open(tmp_path / "new" / "trajectories.jsonl", "a") as torn:
        torn.write('{"key": "pr_vstar/9"')  # a line cut by a kill is not a saved sample
    assert find_unfinished(tmp_path, _info()) == [(tmp_path / "old", 2), (tmp_path / "newer", 0), (tmp_path / "new", 0)]
    assert find_unfinished(tmp_path, _info(tasks=["pr_infovqa"])) == []
    assert find_unfinished(tmp_path / "nowhere", _info()) == []


def test_a_failing_report_only_warns(tmp_path, monkeypatch, caplog):
    """The run's files are written before the report: a report bug must not turn it into a failure."""
    from pr_eval.report import page as report
    from pr_eval.run.evaluate import write_report_safely

    def broken(folder):
        raise ValueError("bad template")

    monkeypatch.setattr(report, "write_report", broken)
    with caplog.at_level("WARNING"):
        write_report_safely(tmp_path)
    assert "could not be written (ValueError: bad template); the run's results are saved" in caplog.text
    assert f"pr-eval report {tmp_path}" in caplog.text


def test_run_folders_started_in_the_same_second_get_their_own_names(tmp_path):
    import datetime as dt

    from pr_eval.protocol import PIXEL_REASONER
    from pr_eval.run.evaluate import create_run_store

    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    with create_run_store(tmp_path, "org/My Model", PIXEL_REASONER, when, _info()) as first:
        assert first.folder.name == "My_Model-pixel-reasoner-v3-20260102-030405"
    with create_run_store(tmp_path, "org/My Model", PIXEL_REASONER, when, _info()) as second:
        assert second.folder.name == first.folder.name + "-2"
