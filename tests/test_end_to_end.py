"""End to end: lmms-eval task + pixel_reasoner model + loop + scoring + run folder.

In-process runs share the session's engine; the two command-line runs (`pr-eval`, lmms-eval's
own CLI) start their own, as a user's would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, crop_call, scripted

from pr_eval.data.load import SAMPLES_DIR
from pr_eval.run.evaluate import evaluate

pytestmark = pytest.mark.server  # starts a server, a subprocess or a browser: not in make test-fast

BIN = Path(sys.executable).parent


def answers_key() -> dict[str, str]:
    frame = pd.read_parquet(SAMPLES_DIR / "vstar" / "vstar.parquet")
    return dict(zip(frame.qid, frame.answer))


def _wrong(letter: str) -> str:
    return "A" if letter != "A" else "B"


@pytest.fixture(scope="module")
def scripted_run(engine, tmp_path_factory, tiny_model):
    """The 12 sample questions: even ones crop then answer right, odd ones answer at once, every
    third of those wrongly. Expected: RaPR 6/12, accuracy (12 - 2) / 12."""
    key = answers_key()
    turns = {}
    for i, (qid, letter) in enumerate(sorted(key.items())):
        if i % 2 == 0:
            turns[qid] = [crop_call([0.25, 0.25, 0.75, 0.75]), f"Zoomed in. \\boxed{{{letter}}}"]
        else:
            turns[qid] = [f"\\boxed{{{_wrong(letter) if i % 3 == 0 else letter}}}"]
    os.environ["PR_EVAL_DATA"] = "samples"
    out = tmp_path_factory.mktemp("runs")
    run = evaluate(model="tiny", model_path=tiny_model, tasks=["pr_vstar"], output=out, engine=engine,
                   guide=scripted(turns))
    return run, turns


def test_scores_and_tool_use_reach_lmms_eval_metrics(scripted_run):
    run, turns = scripted_run
    m = run.metrics["pr_vstar"]
    key = answers_key()
    wrong = {qid for qid, t in turns.items() if re.search(r"boxed\{(.)\}", t[-1]).group(1) != key[qid]}
    assert len(wrong) == 2
    assert m["accuracy"] == pytest.approx(10 / 12)
    assert m["letter_accuracy"] == pytest.approx(10 / 12)
    assert m["rapr"] == pytest.approx(0.5) and m["tool_calls"] == pytest.approx(0.5)
    assert m["accuracy_with_tools"] == pytest.approx(1.0)
    assert m["accuracy_without_tools"] == pytest.approx(4 / 6)
    attribute = [q for q in key if "direct_attributes" in q]
    spatial = [q for q in key if "relative_position" in q]
    assert len(attribute) == 8 and len(spatial) == 4
    assert m["attribute_accuracy"] == pytest.approx(1 - len(wrong & set(attribute)) / 8)
    assert m["spatial_accuracy"] == pytest.approx(1 - len(wrong & set(spatial)) / 4)
    assert m["error_rate"] == 0
    assert "RaPR" in run.table() and "pr_vstar" in run.table()


def test_run_folder_holds_protocol_results_and_trajectories(scripted_run):
    run, turns = scripted_run
    summary = json.loads((run.folder / "results.json").read_text())
    assert summary["pr_eval"]["protocol"]["name"] == "pixel-reasoner-v3"
    assert len(summary["pr_eval"]["protocol"]["fingerprint"]) == 16
    assert summary["pr_eval"]["data"]["pr_vstar"]["kind"] == "samples"
    assert summary["pr_eval"]["data"]["pr_vstar"]["rows"] == 12
    assert summary["lmms_eval"]["results"]["pr_vstar"]["accuracy,none"] == pytest.approx(10 / 12)
    records = [json.loads(line) for line in (run.folder / "samples_pr_vstar.jsonl").read_text().splitlines()]
    assert len(records) == 12 and len({r["sample_id"] for r in records}) == 12
    for record in records:
        assert record["fingerprint"] == summary["pr_eval"]["protocol"]["fingerprint"]
        assert record["messages"][-1]["role"] == "assistant"
        assert record["messages"][-1]["content"][0]["text"] == turns[record["sample_id"]][-1]
        assert len(record["tool_calls"]) == len(turns[record["sample_id"]]) - 1
        assert record["metrics"]["accuracy"] in (0.0, 1.0)
    cropped = [r for r in records if r["tool_calls"]]
    assert all(r["images"][1]["kind"] == "crop" and r["images"][1]["box"] for r in cropped)


@pytest.mark.parametrize("protocol", ["blind-tool", "no-tool"])
def test_protocol_variants_run_and_record_their_fingerprint(engine, tiny_model, tmp_path, monkeypatch, protocol):
    from pr_eval.families import get_protocol
    from pr_eval.protocol import PIXEL_REASONER

    monkeypatch.setenv("PR_EVAL_DATA", "samples")
    crop = crop_call([0.25, 0.25, 0.75, 0.75])
    guide = lambda t: re.escape(crop) if not t.generations else r"\\boxed\{A\}"  # noqa: E731
    run = evaluate(model="tiny", model_path=tiny_model, tasks=["pr_vstar"], output=tmp_path, engine=engine,
                   protocol=protocol, limit=2, guide=guide)
    summary = json.loads((run.folder / "results.json").read_text())
    assert summary["pr_eval"]["protocol"]["name"] == protocol
    assert summary["pr_eval"]["protocol"]["fingerprint"] == get_protocol(protocol).fingerprint
    assert get_protocol(protocol).fingerprint != PIXEL_REASONER.fingerprint
    m = summary["metrics"]["pr_vstar"]
    # blind-tool: the crops "succeed" (the uncropped image comes back); no-tool: no tool block in the
    # prompt, but a turn ending with </tool_call> is still executed, as in the reference
    assert m["rapr"] == 1.0
    assert m["calls_1"] == m["rapr"] and m["turns"] == 2.0
    assert "crop area" in run.table() and "acc w/ tools" in run.table()
    records = [json.loads(x) for x in (run.folder / "samples_pr_vstar.jsonl").read_text().splitlines()]
    if protocol == "blind-tool":
        assert all(r["images"][1]["width"] == r["images"][0]["width"] for r in records)


def test_unreadable_image_is_recorded_and_the_run_finishes(engine, tiny_model, tmp_path, monkeypatch):
    data = tmp_path / "vstar"
    shutil.copytree(SAMPLES_DIR / "vstar", data)
    frame = pd.read_parquet(data / "vstar.parquet")
    (data / frame.image[1][0]).write_bytes(b"this is not a jpeg")
    monkeypatch.setenv("PR_EVAL_DATA", str(tmp_path))
    run = evaluate(model="tiny", model_path=tiny_model, tasks=["pr_vstar"], output=tmp_path / "out",
                   engine=engine, limit=3, guide=lambda t: r"\\boxed\{A\}")
    assert run.metrics["pr_vstar"]["error_rate"] == pytest.approx(1 / 3)
    records = [json.loads(x) for x in next(run.folder.glob("samples_*.jsonl")).read_text().splitlines()]
    lost = [r for r in records if r["stop_reason"] == "data_error"]
    assert len(records) == 3 and len(lost) == 1
    assert lost[0]["sample_id"] == frame.qid[1] and "unreadable image" in lost[0]["error"]


def test_duplicate_ids_and_an_unwritable_output_stop_the_run_before_any_engine_with_one_line(tmp_path):
    data = tmp_path / "vstar"
    shutil.copytree(SAMPLES_DIR / "vstar", data)
    frame = pd.read_parquet(data / "vstar.parquet")
    frame.loc[2, "qid"] = frame.qid[0]
    frame.to_parquet(data / "vstar.parquet")
    result = _run([str(BIN / "pr-eval"), "--model", "tiny", "--tasks", "vstar", "--data-dir", str(tmp_path),
                   "--output", str(tmp_path / "out")], timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pr-eval: error: ") and f"question id {frame.qid[0]!r} appears 2 times (rows 0, 2)" in last
    assert "Traceback" not in result.stderr and "EngineCore" not in result.stderr

    result = _run([str(BIN / "pr-eval"), "--model", "tiny", "--tasks", "vstar", "--data", "samples",
                   "--output", "/dev/null/runs"], timeout=120)
    assert result.returncode == 2  # a bad command line, found before anything is loaded (issue 26)
    assert result.stderr.strip().splitlines() == [
        "pr-eval: error: --output /dev/null/runs: cannot write there (Not a directory); choose a writable folder"]


def test_an_output_folder_that_becomes_unwritable_mid_run_ends_it_with_one_line_and_keeps_the_saved(
        engine, tiny_model, tmp_path, monkeypatch):
    from pr_eval.run import store as store_module
    from pr_eval.run.store import StoreError

    real, calls = store_module.save_images, []

    def read_only_after_two(folder, task, doc_id, traj):
        calls.append(doc_id)
        if len(calls) > 2:
            raise PermissionError(13, "Permission denied", str(folder / "images"))
        return real(folder, task, doc_id, traj)

    monkeypatch.setattr(store_module, "save_images", read_only_after_two)
    monkeypatch.setenv("PR_EVAL_DATA", "samples")
    with pytest.raises(StoreError) as info:
        evaluate(model="tiny", model_path=tiny_model, tasks=["pr_vstar"], output=tmp_path / "out", engine=engine,
                 limit=4, guide=lambda t: r"\\boxed\{A\}", schedule="one-at-a-time")
    message = str(info.value)
    assert "Permission denied" in message and "the 2 samples saved so far are kept" in message
    assert "run the same command with --resume" in message
    [folder] = (tmp_path / "out").iterdir()
    assert len((folder / "trajectories.jsonl").read_text().splitlines()) == 2


def _run(cmd, env_extra=None, timeout=300):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["--model", "tiny", "--tasks", "vstar,nope"], "unknown task 'nope'; choose from: vstar"),
    (["--model", "/no/such/ckpt", "--tasks", "vstar"], "checkpoint not found: /no/such/ckpt"),
    (["--model", "tiny", "--tasks", "vstar", "--limit", "0"], "--limit must be a positive number"),
    (["--model", "tiny", "--tasks", "vstar", "--data-dir", "/no/such/dir"], "--data-dir /no/such/dir: no such folder"),
    (["--model", "tiny", "--tasks", "vstar", "--engine", "openai"], "--engine openai needs --base-url"),
    (["--model", "tiny", "--tasks", "vstar", "--base-url", "http://x:1/v1"], "--base-url and --api-model go with"),
    (["--model", "tiny", "--tasks", "vstar", "--max-images", "0"], "--max-images must be at least 1"),
    (["--model", "tiny", "--tasks", "vstar", "--mm-cache-gb", "-1"], "--mm-cache-gb goes with --engine vllm"),
    (["--model", "tiny", "--tasks", "treebench,nope"], "unknown task 'nope'; choose from: vstar"),
    (["--model", "tiny", "--tasks", "vstar", "--media-dir", "/tmp"], "--media-dir and --no-pixel-check go with --engine openai"),
    (["--model", "tiny", "--tasks", "vstar", "--engine", "openai", "--base-url", "http://x:1/v1", "--media-dir",
      "/no/such/dir"], "--media-dir /no/such/dir: no such folder"),
])
def test_bad_command_lines_give_one_clear_line(args, message):
    result = _run([str(BIN / "pr-eval"), *args], timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.smoke
def test_pr_eval_command_runs(tmp_path, engine, tiny_model, monkeypatch, capsys):
    """`pr-eval` from its command line to its tables and files, in this process on the session's
    engine (the console script with its own engine start runs in test_sampling's kill test and in
    CI's `make regression`)."""
    from conftest import Borrowed

    from pr_eval.cli import run as cli
    from pr_eval import engines
    from pr_eval.run import quiet

    lent = Borrowed(engine)
    monkeypatch.setattr(engines, "build_engine", lent.build_engine)
    for name in quiet.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)  # main() sets them: restored afterwards
    status = cli.main(["--model", "tiny", "--tasks", "vstar", "--data", "samples", "--limit", "3",
                       "--output", str(tmp_path)])
    out = capsys.readouterr()
    assert status == 0, out.err[-3000:]
    assert lent.built == [("vllm", str(tiny_model), "pixel-reasoner-v3")]
    assert "pr_vstar" in out.out and "RaPR" in out.out and f"results: {tmp_path}" in out.out
    folder = next(tmp_path.iterdir())
    summary = json.loads((folder / "results.json").read_text())
    assert summary["n_samples"] == {"pr_vstar": 3}
    assert len((folder / "samples_pr_vstar.jsonl").read_text().splitlines()) == 3


def _lmms_eval_cli(tmp_path, pretrained, tasks, limit):
    """Runs lmms-eval's own CLI on our tasks and model; returns its results by task."""
    result = _run([str(BIN / "lmms-eval"), "--include_path", "tasks", "--model", "pixel_reasoner",
                   "--model_args", f"pretrained={pretrained}", "--tasks", ",".join(tasks), "--limit", str(limit),
                   "--output_path", str(tmp_path)], env_extra={"PR_EVAL_DATA": "samples"})
    files = list(tmp_path.rglob("*_results.json"))
    assert files, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(files[0].read_text())["results"]


@pytest.mark.smoke
def test_lmms_eval_cli_runs_our_tasks_and_the_demo_model_as_pr_eval_does(tmp_path):
    """`pretrained=demo` through lmms-eval's own CLI (one engine start for two tasks): on zoom the
    trained model crops on every question and scores, question by question, what pr-eval recorded
    in the committed baseline; V* (a task it was not trained on) reports the same metrics."""
    found = _lmms_eval_cli(tmp_path, "demo", ["pr_zoom", "pr_vstar"], 8)
    vstar = found["pr_vstar"]
    assert "accuracy,none" in vstar and "rapr,none" in vstar and "letter_accuracy,none" in vstar
    assert 0 <= vstar["accuracy,none"] <= 1 and 0 <= vstar["rapr,none"] <= 1
    results = found["pr_zoom"]
    baseline = json.loads((ROOT / "results/reference/demo-zoom.submission.json").read_text())
    first8 = [p for p in baseline["predictions"] if p["doc_id"] < 8]
    assert len(first8) == 8
    assert results["rapr,none"] == 1.0
    assert results["accuracy,none"] == pytest.approx(sum(p["scores"]["accuracy"] for p in first8) / 8)
