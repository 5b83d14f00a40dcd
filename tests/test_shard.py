"""Sharded runs (`--shard K/N`) and `pr-eval merge`: the shards split every task's questions into
disjoint, balanced parts whose union is the run; merged, their folders equal the unsharded run's
folder (results, samples files, report: scripts/same_run.py), under the real engine and the
tiny model too; merge refuses, in one line, anything that is not the finished shards of one run."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from canned import boxed
from conftest import ROOT, crop_call, scripted
from hypothesis import given, settings
from hypothesis import strategies as st

from pr_eval.cli import merge as merge_command
from pr_eval.cli import run as cli
from pr_eval.data.shards import Shard, parse, positions
from pr_eval.errors import DataError
from pr_eval.protocol import SAMPLED, with_overrides
from pr_eval.run.evaluate import evaluate
from pr_eval.run.merge import merge

_spec = importlib.util.spec_from_file_location("same_run", ROOT / "scripts" / "same_run.py")
same_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(same_run)
TASKS = ["pr_zoom", "pr_vstar", "pr_hrbench4k"]


# --- which questions a shard runs (pure) ------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9), qids=st.lists(st.text(min_size=1, max_size=8), min_size=9, max_size=80, unique=True),
       limit=st.one_of(st.none(), st.integers(9, 100)))
def test_shards_are_disjoint_balanced_and_add_up_to_the_run(n, qids, limit):
    parts = [positions("pr_task", qids, Shard(k, n), limit) for k in range(n)]
    upto = len(qids) if limit is None else min(limit, len(qids))
    every = [i for part in parts for i in part]
    assert sorted(every) == list(range(upto))                            # disjoint, and the whole run
    assert max(map(len, parts)) - min(map(len, parts)) <= 1              # balanced
    assert all(part == sorted(part) for part in parts)                  # in the run's order
    shuffled = list(reversed(qids[:upto]))                               # the rows' order does not matter
    again = [sorted(shuffled[i] for i in positions("pr_task", shuffled, Shard(k, n))) for k in range(n)]
    assert again == [sorted(qids[i] for i in part) for part in parts]


def test_a_shard_spec_is_checked():
    assert parse("0/4") == Shard(0, 4) and str(parse(" 3/4 ")) == "3/4"
    for bad, says in (("4/4", "K must lie in 0..N-1"), ("1/0", "K must lie in 0..N-1"), ("a/b", "expected K/N")):
        with pytest.raises(ValueError, match=says):
            parse(bad)
    with pytest.raises(DataError, match="task pr_t has 2 questions in this run, fewer than the 3 shards"):
        positions("pr_t", ["a", "b"], Shard(0, 3))


# --- sharded runs, merged -----------------------------------------------------------------------------

def _run(out: Path, shard=None, protocol="pixel-reasoner-v3", model="m", seed=0, engine=None):
    return evaluate(model, "x", TASKS, protocol=protocol, limit=9, output=out, engine=engine or boxed(*"ABCD"),
                    shard=shard, seed=seed).folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    sampled = with_overrides(SAMPLED, samples_per_question=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        return {
            # the canned engine answers in turn, so each shard gets the answers the whole run gives it
            # only if every question gets the same answer: one letter throughout
            "whole": _run(out / "whole", engine=boxed("B")),
            "parts": [_run(out / "parts", Shard(k, 3), engine=boxed("B")) for k in range(3)],
            "sampled": _run(out / "sampled-whole", protocol=sampled, seed=5, engine=boxed("C")),
            "sampled_parts": [_run(out / "sampled-parts", Shard(k, 2), protocol=sampled, seed=5, engine=boxed("C"))
                              for k in range(2)],
            "other_seed": _run(out / "other", Shard(1, 3), seed=9, engine=boxed("B")),
            "four": _run(out / "four", Shard(0, 4), engine=boxed("B")),
        }


def records(folder: Path) -> dict:
    found = {}
    for path in folder.glob("samples_*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            found[(path.name, record["sample_id"], record.get("rollout"))] = record
    return found


def test_each_shard_is_a_run_folder_of_its_part_with_the_unsharded_ids(shards):
    whole, parts = records(shards["whole"]), [records(p) for p in shards["parts"]]
    assert sum(map(len, parts)) == len(whole) == 27 and all(8 <= len(p) <= 10 for p in parts)
    for part in parts:
        for key, record in part.items():
            assert record["doc_id"] == whole[key]["doc_id"] and record["image_files"] == whole[key]["image_files"]
    info = json.loads((shards["parts"][1] / "run.json").read_text())
    assert info["shard"] == "1/3" and "-shard1of3-" in shards["parts"][1].name


@pytest.mark.parametrize("kind", ["greedy", "sampled"])
def test_the_merged_shards_are_the_unsharded_run(shards, tmp_path, kind):
    whole, parts = (shards["whole"], shards["parts"]) if kind == "greedy" else (shards["sampled"], shards["sampled_parts"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "elsewhere")  # merge reads the data the shards recorded
        merged = merge(list(reversed(parts)), tmp_path / "merged")
    assert same_run.compare(whole, merged) == []
    summary = json.loads((merged / "results.json").read_text())
    assert len(summary["run"]["merged"]["shards"]) == len(parts) and "shard" not in summary["run"]
    assert "resumed" not in summary["run"]  # finished from the shards' journals, not a resumption
    if kind == "sampled":
        assert summary["sampled"] == json.loads((whole / "results.json").read_text())["sampled"]


def test_merge_refuses_what_is_not_one_finished_run(shards, tmp_path, capsys):
    parts = [str(p) for p in shards["parts"]]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(shards["parts"][2], unfinished)
    (unfinished / "results.json").unlink()
    for argv, says in (
            (parts[:2], "shard(s) 2/3 missing"),
            ([*parts, parts[0]], "shard 0/3 is given twice"),
            ([parts[0], str(shards["other_seed"]), parts[2]], "their seed differs (9 vs 0)"),
            ([*parts[:2], str(shards["four"])], "different numbers of parts (3, 4)"),
            ([*parts[:2], str(unfinished)], "unfinished shard(s): unfinished; finish each with its command and --resume"),
            ([str(shards["whole"]), *parts], "is not a shard"),
            ([*parts, "/nonexistent"], "/nonexistent: no such run folder")):
        assert merge_command.main([*argv, "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "out").exists()


def test_merge_refuses_data_that_changed_since_the_shards_ran_and_leaves_nothing(shards, tmp_path, capsys):
    parts = []
    for k, folder in enumerate(shards["parts"]):  # as if the data had another revision when they ran
        copy = tmp_path / folder.name
        shutil.copytree(folder, copy)
        info = json.loads((copy / "run.json").read_text())
        info["data"]["pr_vstar"]["revision"] = "0123abcd"
        (copy / "run.json").write_text(json.dumps(info))
        parts.append(str(copy))
    assert merge_command.main([*parts, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "the run read revision 0123abcd" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_shard_that_cannot_hold_every_task_is_refused_before_it_starts(tmp_path):
    with pytest.MonkeyPatch.context() as patch, pytest.raises(DataError, match="has 2 questions in this run"):
        patch.setenv("PR_EVAL_DATA", "samples")
        evaluate("m", "x", ["pr_zoom"], limit=2, output=tmp_path, engine=boxed("A"), shard=Shard(0, 3))
    assert list(tmp_path.iterdir()) == []


def test_a_finished_shard_is_not_run_again(shards, capsys):
    import argparse

    args = argparse.Namespace(resume="auto", shard="1/3", output=str(shards["parts"][1].parent), model="m", limit=9,
                              data="samples", data_dir=None, seed=0)
    from pr_eval.protocol import PIXEL_REASONER

    with pytest.raises(cli.ShardDone) as done:
        cli.resume_folder(args, "x", PIXEL_REASONER, TASKS)
    assert done.value.args[0] == shards["parts"][1]
    assert cli.main(["--model", "tiny", "--tasks", "zoom", "--data", "samples", "--shard", "0/2",
                     "--judge-base-url", "http://127.0.0.1:9/v1", "--judge-model", "j"]) == 2
    assert "--shard with a judge" in capsys.readouterr().err


def test_a_shard_resumes_only_its_own_folder(shards, capsys):
    with pytest.MonkeyPatch.context() as patch, pytest.raises(Exception, match="shard: the run is shard 1/3"):
        patch.setenv("PR_EVAL_DATA", "samples")
        evaluate("m", "x", TASKS, limit=9, output=shards["parts"][1].parent, engine=boxed("B"), shard=Shard(2, 3),
                 resume=shards["parts"][1])
    assert cli.main(["--model", "tiny", "--tasks", "zoom", "--shard", "3/3"]) == 2
    assert "K must lie in 0..N-1" in capsys.readouterr().err


@pytest.mark.engine
def test_sharded_under_the_real_engine_merge_to_the_unsharded_run(engine, tiny_model, tmp_path):
    """The tiny model through vLLM, with crops the structured outputs make it call."""
    from pr_eval.data.load import load_samples

    key = {s.sample_id: str(s.answer) for s in load_samples("vstar", "samples", limit=6)[1]}
    turns = {q: [crop_call([0.1, 0.1, 0.6, 0.6]), f"\\boxed{{{a}}}"] if i % 2 else [f"\\boxed{{{a}}}"]
             for i, (q, a) in enumerate(sorted(key.items()))}

    def run(out, shard=None):
        return evaluate("tiny", tiny_model, ["pr_vstar"], limit=6, output=out, engine=engine, guide=scripted(turns),
                        shard=shard).folder

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", "samples")
        whole = run(tmp_path / "whole")
        parts = [run(tmp_path / "parts", Shard(k, 2)) for k in range(2)]
        merged = merge(parts, tmp_path / "merged")
    assert same_run.compare(whole, merged) == []
    assert json.loads((merged / "results.json").read_text())["metrics"]["pr_vstar"]["rapr"] == 0.5


@pytest.mark.server
def test_the_slurm_example_runs_its_shard(tmp_path):
    """docs/examples/shards.sbatch under bash, with a pr-eval that prints its arguments."""
    import subprocess

    fake = tmp_path / "bin" / "pr-eval"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "N": "4", "SLURM_ARRAY_TASK_ID": "2", "OUT": "results/run-1"}
    done = subprocess.run(["bash", str(ROOT / "docs" / "examples" / "shards.sbatch")], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["--model", "TIGER-Lab/PixelReasoner-RL-v1", "--tasks", "suite", "--shard", "2/4",
                                   "--output", "results/run-1", "--resume", "auto"]
    unset = subprocess.run(["bash", str(ROOT / "docs" / "examples" / "shards.sbatch")], env={**env, "N": ""},
                           capture_output=True, text=True, timeout=30)
    assert unset.returncode != 0 and "set N" in unset.stderr


def test_mvbench_subtasks_sharded_merge_to_the_unsharded_group(tmp_path):
    """MVBench is a group of 20 subtasks, each its own lmms-eval task: every shard holds a share of
    every subtask, and the merged group figure (the mean over all questions) is the unsharded one.
    The bundled set has one question for most subtasks, so each row is here twice (a second qid)."""
    import pandas as pd

    from pr_eval.data.load import SAMPLES_DIR

    source = SAMPLES_DIR / "mvbench"
    folder = tmp_path / "data" / "mvbench"
    folder.mkdir(parents=True)
    shutil.copytree(source / "images", folder / "images")  # a link out of the data folder is refused
    rows = pd.read_parquet(source / "mvbench.parquet")
    twice = rows.assign(qid=rows.qid.str.replace(r"-(\d+)$", lambda m: f"-{int(m.group(1)) + 50}", regex=True))
    pd.concat([rows, twice]).to_parquet(folder / "mvbench.parquet")

    def run(out, shard=None):
        return evaluate("m", "x", ["pr_mvbench"], output=out, engine=boxed("B"), shard=shard).folder

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR_EVAL_DATA", str(tmp_path / "data"))
        whole = run(tmp_path / "whole")
        parts = [run(tmp_path / "parts", Shard(k, 2)) for k in range(2)]
        merged = merge(parts, tmp_path / "m" / "merged")
    assert same_run.compare(whole, merged) == []
    summary = json.loads((merged / "results.json").read_text())
    assert summary["n_samples"]["pr_mvbench"] == 2 * len(rows) and len(summary["members"]["pr_mvbench"]) == 20
    for part in parts:  # both shards ran every subtask
        assert len(list(part.glob("samples_pr_mvbench_*.jsonl"))) == 20
